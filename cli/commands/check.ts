/*
 * `ciliate check`: evaluate every Expectation by simulating its flow and comparing the verdict; print a
 * PASS/FAIL table that fits the terminal (--wide: one line each; or -o json: {"results":[{name, expected, actual, passed, reason}], "passed", "failed"});
 * --junit FILE writes JUnit XML. Exit 1 when any expectation fails.
 */
import { writeFileSync } from "node:fs";
import Table from "cli-table3";
import { stringify as stringifyYaml } from "yaml";
import { diagnosticsJson, flowSimulation, load, outputOf, type GlobalOptions, type Out } from "../common.ts";
import { CliError, EXIT_CHECK_FAILED, EXIT_OK } from "../errors.ts";
import { hangingIndent, terminalWidth, wrap } from "../text-layout.ts";

export interface CheckResult {
  name: string;
  expected: "allowed" | "denied";
  actual: "allowed" | "denied";
  passed: boolean;
  reason: string;
}

function xml(s: string): string {
  return s.replace(/&/g, "&amp;").replace(/</g, "&lt;").replace(/>/g, "&gt;").replace(/"/g, "&quot;");
}

export function junitXml(results: CheckResult[]): string {
  const failed = results.filter((r) => !r.passed).length;
  const cases = results
    .map((r) => {
      const body = r.passed ? "" : `\n      <failure message="expected ${r.expected}, got ${r.actual}">${xml(r.reason)}</failure>\n    `;
      return `    <testcase classname="ciliate.expectations" name="${xml(r.name)}">${body}</testcase>`;
    })
    .join("\n");
  return `<?xml version="1.0" encoding="UTF-8"?>\n<testsuites tests="${results.length}" failures="${failed}">\n  <testsuite name="ciliate check" tests="${results.length}" failures="${failed}">\n${cases}\n  </testsuite>\n</testsuites>\n`;
}

const HEAD = ["RESULT", "EXPECTATION", "EXPECTED", "ACTUAL", "REASON"];
// RESULT, EXPECTED and ACTUAL hold at most 7 characters ("allowed"); each cell has 1 space of padding a side.
const FIXED = [8, 10, 10];
const BORDERS = HEAD.length + 1;
const MIN_REASON = 30;

/**
 * The results as a table `width` columns wide, names and reasons wrapped (never cut). When even a narrow
 * reason column does not fit, one block per expectation instead. Without a width (--wide): one line each.
 */
export function checkTable(results: CheckResult[], width?: number): string {
  const row = (r: CheckResult) => [r.passed ? "PASS" : "FAIL", r.name, r.expected, r.actual, r.reason];
  const style = { head: [], border: [] };
  if (width === undefined) {
    const t = new Table({ head: HEAD, style });
    for (const r of results) t.push(row(r));
    return t.toString();
  }
  const fixed = FIXED.reduce((a, b) => a + b, 0) + BORDERS;
  const longest = Math.max(HEAD[1]!.length, ...results.map((r) => r.name.length)) + 2;
  const name = Math.min(longest, Math.max(14, Math.floor((width - fixed) * 0.4)));
  const reason = width - fixed - name;
  if (reason < MIN_REASON) {
    // Too narrow for columns: the name on its own line, then what was expected and why, indented.
    return results
      .map((r) => `${r.passed ? "PASS" : "FAIL"} ${hangingIndent(wrap(r.name, width - 5), 5)}\n     expected ${r.expected}, got ${r.actual}\n     ${hangingIndent(wrap(r.reason, width - 5), 5)}`)
      .join("\n\n");
  }
  const t = new Table({ head: HEAD, colWidths: [FIXED[0]!, name, FIXED[1]!, FIXED[2]!, reason], style });
  for (const r of results) {
    const cells = row(r);
    cells[1] = wrap(r.name, name - 2);
    cells[4] = wrap(r.reason, reason - 2);
    t.push(cells);
  }
  return t.toString();
}

/** Writes the --junit report; a file that cannot be written (any errno) is the user's to fix, one line. */
function writeReport(path: string, text: string): void {
  try {
    writeFileSync(path, text);
  } catch (e) {
    const err = e as NodeJS.ErrnoException;
    if (!err.code) throw e;
    throw new CliError(`--junit ${path}: cannot write the report: ${({ ENOENT: "no such directory", EISDIR: "is a directory", ENOTDIR: "a parent is not a directory", EACCES: "permission denied" } as Record<string, string>)[err.code] ?? err.message}`, "BAD_OUTPUT_FILE");
  }
}

export async function runCheck(g: GlobalOptions & { junit?: string; wide?: boolean }, out: Out, err: Out): Promise<number> {
  const fmt = outputOf(g, ["table", "json", "yaml"]);
  const l = load(g);
  if (!l.cluster.expectations.length && !diagnosticsJson(g).errors) err("ciliate: no Expectation in the manifests: nothing to check\n");
  const sim = await flowSimulation(l, g);
  const results: CheckResult[] = [];
  try {
    for (const f of l.cluster.expectations) sim.resolveFlow(f); // every reference is checked before anything is printed
    for (const e of l.cluster.expectations) {
      const r = sim.runFlow(e);
      results.push({ name: e.name, expected: e.verdict, actual: r.verdict, passed: r.verdict === e.verdict, reason: r.reason });
    }
  } finally {
    sim.close();
  }
  const passed = results.filter((r) => r.passed).length;
  const failed = results.length - passed;
  if (g.junit) writeReport(g.junit, junitXml(results));
  if (fmt === "json") out(`${JSON.stringify({ results, passed, failed, diagnostics: diagnosticsJson(g) }, null, 2)}\n`);
  else if (fmt === "yaml") out(stringifyYaml({ results, passed, failed, diagnostics: diagnosticsJson(g) }));
  else out(`${checkTable(results, g.wide ? undefined : terminalWidth())}\n${passed} passed, ${failed} failed\n`);
  return failed ? EXIT_CHECK_FAILED : EXIT_OK;
}
