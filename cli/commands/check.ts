/*
 * `ciliate check`: evaluate every Expectation by simulating its flow and comparing the verdict; print a
 * PASS/FAIL table (or -o json: {"results":[{name, expected, actual, passed, reason}], "passed", "failed"});
 * --junit FILE writes JUnit XML. Exit 1 when any expectation fails.
 */
import { writeFileSync } from "node:fs";
import type { Command } from "commander";
import Table from "cli-table3";
import { stringify as stringifyYaml } from "yaml";
import { diagnosticsJson, load, outputOf, simulation, type GlobalOptions, type Out } from "../common.ts";
import { EXIT_CHECK_FAILED, EXIT_OK } from "../errors.ts";

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

export async function runCheck(g: GlobalOptions & { junit?: string }, out: Out, err: Out): Promise<number> {
  const fmt = outputOf(g, ["table", "json", "yaml"]);
  const l = load(g);
  if (!l.cluster.expectations.length) err("ciliate: no Expectation in the manifests: nothing to check\n");
  const sim = await simulation(l, g);
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
  if (g.junit) writeFileSync(g.junit, junitXml(results));
  if (fmt === "json") out(`${JSON.stringify({ results, passed, failed, diagnostics: diagnosticsJson(g) }, null, 2)}\n`);
  else if (fmt === "yaml") out(stringifyYaml({ results, passed, failed, diagnostics: diagnosticsJson(g) }));
  else {
    const t = new Table({ head: ["RESULT", "EXPECTATION", "EXPECTED", "ACTUAL", "REASON"], wordWrap: true, colWidths: [8, 32, 10, 10, 80], style: { head: [], border: [] } });
    for (const r of results) t.push([r.passed ? "PASS" : "FAIL", r.name, r.expected, r.actual, r.reason]);
    out(`${t.toString()}\n${passed} passed, ${failed} failed\n`);
  }
  return failed ? EXIT_CHECK_FAILED : EXIT_OK;
}

export function registerCheck(program: Command, run: (fn: () => Promise<number>) => Promise<void>): void {
  program
    .command("check")
    .description("evaluate every Expectation in the manifests; exit 1 if any fails")
    .option("--junit <file>", "also write the results as JUnit XML")
    .addHelpText(
      "after",
      `
Examples:
  ciliate check -f scenarios/starwars
  ciliate check -f scenarios/k8s-netpol -o json
  ciliate check -f scenarios/multi-node --junit results.xml

Exit codes: 0 all expectations hold, 1 at least one failed, 2 bad input.`,
    )
    .action(async (_o, cmd: Command) => run(() => runCheck(cmd.optsWithGlobals(), (s) => process.stdout.write(s), (s) => process.stderr.write(s))));
}
