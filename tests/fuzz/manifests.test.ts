/*
 * Manifest fuzzing: the bundled scenarios, mutated (fast-check) at the text level (cut, duplicated or
 * re-indented lines, YAML syntax spliced in: anchors, aliases, merge keys, tags, brackets, tabs) and at the
 * object level (a random field replaced by a random value of another type, deleted, or the document
 * re-emitted as JSON), then run through `ciliate check` and `ciliate simulate`. The contract under test
 * (docs/cli.md exit codes, docs/reliability.md): exit 0, 1 or 2 only; on 2 a message naming the file, never an
 * "internal error" and never a stack trace; each case within a time bound.
 * In-process runs (runCheck/runSimulate with the CLI's own error reporting) give volume; a sample also runs
 * through the real `ciliate` binary. FUZZ_RUNS scales the in-process count (default 150).
 *
 * The hostile-size bounds run the real binary with a 256 MB heap: a 100 MB manifest (refused, the limit is
 * 32 MiB per file), a 10,000-deep nesting in YAML flow, YAML block and JSON form (refused past 256 levels),
 * a YAML alias bomb (refused), and a 24 MiB manifest under the limit (processed).
 */
import { mkdtempSync, readFileSync, readdirSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { spawnSync } from "node:child_process";
import { afterAll, describe, expect, it } from "vitest";
import fc from "fast-check";
import { parseAllDocuments, stringify } from "yaml";
import { runCheck } from "../../cli/commands/check.ts";
import { runSimulate } from "../../cli/commands/simulate.ts";
import { reportError } from "../../cli/errors.ts";
import { ROOT } from "../cli/run.ts";

const RUNS = Number(process.env.FUZZ_RUNS ?? 150);
const dir = mkdtempSync(join(tmpdir(), "ciliate-fuzz-manifests-"));
afterAll(() => rmSync(dir, { recursive: true, force: true }));

/** Every bundled scenario as one multi-document text. */
const SCENARIOS = readdirSync(join(ROOT, "scenarios")).map((s) => {
  const d = join(ROOT, "scenarios", s);
  return readdirSync(d)
    .sort()
    .map((f) => readFileSync(join(d, f), "utf8"))
    .join("\n---\n");
});

const SNIPPETS = ["&a ", "*a", "<<: *a\n", "!!binary ", "!!int ", "[", "]", "{", "}", ": ", "- ", "\t", "---\n", "...\n", "? ", "|\n", ">-\n", "'", '"', "#", "%YAML 1.1\n", "\u0000", "\uFEFF", "💥", "~", "0x", "-1", "1e999", "null", "kind: List\nitems: [1, null, {kind: Pod}]\n"];

const textMutation = fc.oneof(
  fc.record({ kind: fc.constant("cut" as const), at: fc.nat(), len: fc.nat({ max: 40 }) }),
  fc.record({ kind: fc.constant("splice" as const), at: fc.nat(), text: fc.oneof(fc.constantFrom(...SNIPPETS), fc.string({ maxLength: 8 })) }),
  fc.record({ kind: fc.constant("dupline" as const), at: fc.nat() }),
  fc.record({ kind: fc.constant("indent" as const), at: fc.nat(), by: fc.integer({ min: -4, max: 4 }) }),
);
type TextMutation = typeof textMutation extends fc.Arbitrary<infer T> ? T : never;

function mutateText(t: string, m: TextMutation): string {
  const at = t.length ? m.at % t.length : 0;
  switch (m.kind) {
    case "cut":
      return t.slice(0, at) + t.slice(at + m.len);
    case "splice":
      return t.slice(0, at) + m.text + t.slice(at);
    case "dupline":
    case "indent": {
      const lines = t.split("\n");
      const i = m.at % lines.length;
      if (m.kind === "dupline") lines.splice(i, 0, lines[i]!);
      else lines[i] = m.by >= 0 ? " ".repeat(m.by) + lines[i] : lines[i]!.slice(-m.by);
      return lines.join("\n");
    }
  }
}

/** Values of every type, including the awkward ones for a validator. */
const strangeValue = fc.oneof(
  fc.jsonValue({ maxDepth: 3 }),
  fc.constantFrom(-1, 0, 65536, 4294967296, 1e308, -0, 0.5, "", " ", "0/0", "::", "10.0.0.0/33", "*", "a".repeat(300), "default/../../etc", "$(reboot)", "`id`", "; rm -rf /"),
);

const objectMutation = fc.record({ path: fc.array(fc.nat(), { minLength: 1, maxLength: 8 }), op: fc.constantFrom("replace", "delete", "wrap"), value: strangeValue });
type ObjectMutation = typeof objectMutation extends fc.Arbitrary<infer T> ? T : never;

/** Applies a mutation at a pseudo-random path (each number picks a key or index at its level). */
function mutateObject(root: unknown, m: ObjectMutation): unknown {
  const box = { root };
  let parent: Record<string, unknown> | unknown[] = box as Record<string, unknown>;
  let key: string | number = "root";
  for (const step of m.path) {
    const cur: unknown = (parent as Record<string | number, unknown>)[key];
    if (!cur || typeof cur !== "object") break;
    const keys: (string | number)[] = Array.isArray(cur) ? cur.map((_, i) => i) : Object.keys(cur);
    if (!keys.length) break;
    parent = cur as Record<string, unknown>;
    key = keys[step % keys.length]!;
  }
  const p = parent as Record<string | number, unknown>;
  if (m.op === "delete") {
    if (Array.isArray(parent)) parent.splice(key as number, 1);
    else delete p[key];
  } else if (m.op === "wrap") p[key] = [p[key], m.value];
  else p[key] = m.value;
  return box.root;
}

const caseArb = fc.record({
  scenario: fc.nat(),
  command: fc.constantFrom("check" as const, "simulate" as const),
  json: fc.boolean(),
  objects: fc.array(fc.record({ doc: fc.nat(), m: objectMutation }), { maxLength: 3 }),
  texts: fc.array(textMutation, { maxLength: 3 }),
});

type Case = typeof caseArb extends fc.Arbitrary<infer T> ? T : never;

let n = 0;
function manifestFor(c: Case): string {
  let text = SCENARIOS[c.scenario % SCENARIOS.length]!;
  if (c.objects.length || c.json) {
    const docs = parseAllDocuments(text).map((d) => d.toJS() as unknown);
    for (const { doc, m } of c.objects) docs[doc % docs.length] = mutateObject(docs[doc % docs.length], m);
    text = c.json ? docs.map((d) => JSON.stringify(d)).join("\n---\n") : docs.map((d) => stringify(d)).join("---\n");
  }
  for (const m of c.texts) text = mutateText(text, m);
  const f = join(dir, `case-${n++}.${c.json && !c.texts.length ? "json" : "yaml"}`);
  writeFileSync(f, text);
  return f;
}

const STACK = /^\s+at .+[:(]\d+:\d+\)?$/m;

function assertContract(code: number, stdout: string, stderr: string, what: string): void {
  expect([0, 1, 2], `${what}: exit code ${code}\n${stderr}`).toContain(code);
  expect(stderr, what).not.toMatch(/internal error/);
  expect(stderr + stdout, what).not.toMatch(STACK);
  if (code === 2) expect(stderr, what).toMatch(/^ciliate: \S/);
}

describe("manifest fuzzing: mutated scenarios through check and simulate", () => {
  it(`${RUNS} mutated manifests in process: exit 0/1/2, no internal error, no stack trace, bounded time`, async () => {
    const codes = new Map<number, number>();
    await fc.assert(
      fc.asyncProperty(caseArb, async (c) => {
        const file = manifestFor(c);
        let stdout = "";
        let stderr = "";
        const out = (s: string) => void (stdout += s);
        const err = (s: string) => void (stderr += s);
        const started = Date.now();
        let code: number;
        try {
          const g = { file: [file], output: "json" };
          code = c.command === "check" ? await runCheck(g, out, err) : await runSimulate(g, out, err);
        } catch (e) {
          code = reportError(e, err);
        }
        codes.set(code, (codes.get(code) ?? 0) + 1);
        assertContract(code, stdout, stderr, `${c.command} -f ${file}`);
        expect(Date.now() - started, `${c.command} -f ${file} took too long`).toBeLessThan(20_000);
      }),
      { numRuns: RUNS, seed: process.env.FUZZ_SEED ? Number(process.env.FUZZ_SEED) : undefined },
    );
    console.log(`manifest fuzz: ${RUNS} cases, exit codes ${[...codes].map(([k, v]) => `${k}: ${v}`).join(", ")}`);
    // Both outcomes must occur, or the mutations are either too weak or too destructive to test anything.
    expect(codes.get(2) ?? 0).toBeGreaterThan(0);
    expect((codes.get(0) ?? 0) + (codes.get(1) ?? 0)).toBeGreaterThan(0);
  }, 600_000);

  it("a sample through the real binary keeps the same contract", () => {
    const samples = fc.sample(caseArb, { numRuns: 6, seed: 42 });
    for (const c of samples) {
      const file = manifestFor(c);
      const r = spawnSync(process.execPath, ["bin/ciliate.js", c.command, "-f", file, "-o", "json"], { cwd: ROOT, encoding: "utf8", timeout: 60_000, env: { ...process.env, CILIATE_DEBUG: "" } });
      assertContract(r.status ?? -1, r.stdout, r.stderr, `${c.command} -f ${file}`);
    }
  }, 600_000);
});

describe("manifest bounds: hostile sizes are refused or processed within 256 MB of heap and 30 s", () => {
  const bounded = (file: string) => {
    const started = Date.now();
    const r = spawnSync(process.execPath, ["--max-old-space-size=256", "bin/ciliate.js", "check", "-f", file], { cwd: ROOT, encoding: "utf8", timeout: 30_000, env: { ...process.env, CILIATE_DEBUG: "" } });
    return { code: r.status ?? -1, stdout: r.stdout, stderr: r.stderr, ms: Date.now() - started, signal: r.signal };
  };
  const refusedInOneLine = (r: ReturnType<typeof bounded>, re: RegExp) => {
    expect(r.signal, r.stderr).toBeNull();
    expect(r.code, r.stderr).toBe(2);
    expect(r.stderr.trimEnd().split("\n"), r.stderr).toHaveLength(1);
    expect(r.stderr).toMatch(re);
  };

  it("a 100 MB manifest is refused: over the 32 MiB limit", () => {
    const f = join(dir, "huge.yaml");
    const pod = "apiVersion: v1\nkind: Pod\nmetadata: {name: p, namespace: default}\n---\n";
    writeFileSync(f, pod.repeat(Math.ceil((100 * 1024 * 1024) / pod.length)));
    const r = bounded(f);
    rmSync(f);
    refusedInOneLine(r, /huge\.yaml: .*file is 100\.0 MiB, over the limit of 32\.0 MiB per manifest/);
  });

  it("a 24 MiB manifest under the limit is processed", () => {
    const f = join(dir, "big.yaml");
    const data = "x".repeat(24 * 1024 * 1024);
    writeFileSync(f, `apiVersion: v1\nkind: Pod\nmetadata: {name: a, annotations: {blob: ${data}}}\n`);
    const r = bounded(f);
    rmSync(f);
    expect(r.signal, r.stderr).toBeNull();
    expect(r.code, r.stderr).toBe(0);
    expect(r.stderr).toMatch(/no Expectation in the manifests/);
  });

  const deep = 10_000;
  for (const [name, text] of [
    ["YAML flow", `apiVersion: v1\nkind: Pod\nmetadata: {name: a}\nspec: ${"[".repeat(deep)}${"]".repeat(deep)}\n`],
    ["JSON", `{"apiVersion":"v1","kind":"Pod","metadata":{"name":"a"},"spec":${'{"a":'.repeat(deep)}1${"}".repeat(deep)}}`],
    // Nested block sequences may share a line ("- - - 1"), so block nesting needs no quadratic indentation.
    ["YAML block", `apiVersion: v1\nkind: Pod\nmetadata: {name: a}\nspec:\n  ${"- ".repeat(deep)}1\n`],
  ] as const) {
    it(`a ${deep}-deep nesting (${name}) is refused past 256 levels`, () => {
      const f = join(dir, `deep.${name === "JSON" ? "json" : "yaml"}`);
      writeFileSync(f, text);
      refusedInOneLine(bounded(f), /deep\.(yaml|json): document 0, line \d+: .*nesting deeper than 256 levels/);
    });
  }

  it("a YAML alias bomb is refused with a clear message, not an internal error", () => {
    const f = join(dir, "bomb.yaml");
    const levels = ["a", "b", "c", "d", "e", "f", "g", "h", "i"];
    const lines = levels.map((l, i) => `${l}: &${l} [${i === 0 ? '"lol"' : `*${levels[i - 1]}`}${`, ${i === 0 ? '"lol"' : `*${levels[i - 1]}`}`.repeat(8)}]`);
    writeFileSync(f, `${lines.join("\n")}\nkind: Pod\n`);
    refusedInOneLine(bounded(f), /bomb\.yaml: document 0, .*too many alias expansions/);
  });
});
