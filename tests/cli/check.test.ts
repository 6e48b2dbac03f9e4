// `ciliate check` output fits the terminal: names and reasons wrap (never "…"), narrow terminals get one
// block per expectation, --wide gives one line per expectation; the numbers at the end stay.
import { describe, expect, it } from "vitest";
import { checkTable, type CheckResult } from "../../cli/commands/check.ts";
import { ciliate } from "./run.ts";

const long = "nobody-reaches-the-exhaust-port-of-the-death-star-from-any-namespace-at-all";
const results: CheckResult[] = [
  { name: long, expected: "denied", actual: "denied", passed: true, reason: "service default/deathstar (10.96.0.10:80/TCP) → backend default/deathstar-1:80; ingress: Policy denied (default deny)" },
  { name: "short", expected: "allowed", actual: "denied", passed: false, reason: "egress: Policy denied" },
];
const lines = (s: string) => s.split("\n");
// A table's column read top to bottom (blocks: the whole text), without the spaces wrapping moved.
const column = (s: string, i: number) =>
  s.includes("│") ? lines(s).filter((l) => l.startsWith("│")).map((l) => l.split("│")[i + 1]!.trim()).join("").replace(/ /g, "") : s.replace(/\s/g, "");

describe("check table", () => {
  for (const width of [60, 80, 100, 120, 200])
    it(`stays within ${width} columns and keeps every name and reason whole`, () => {
      const t = checkTable(results, width);
      for (const l of lines(t)) expect([...l].length, l).toBeLessThanOrEqual(width);
      expect(t).not.toContain("…");
      // Wrapped across lines, each name and reason is still all there, in order.
      expect(column(t, 1)).toContain(long);
      expect(column(t, 4)).toContain(results[0]!.reason.replace(/ /g, ""));
    });

  it("narrow terminals get one block per expectation", () => {
    const t = checkTable(results, 60);
    expect(t).not.toContain("┌");
    expect(t).toMatch(/^PASS nobody-reaches/);
    expect(t).toContain("\n\nFAIL short\n     expected allowed, got denied\n     egress: Policy denied");
  });

  it("--wide: one line per expectation", () => {
    const t = checkTable(results, undefined);
    const rows = lines(t).filter((l) => l.includes("PASS") || l.includes("FAIL"));
    expect(rows).toHaveLength(2);
    expect(rows[0]).toContain(long);
    expect(rows[0]).toContain(results[0]!.reason);
  });

  it("the command fits $COLUMNS when not on a terminal, and --wide does not wrap", () => {
    const r = ciliate("check", "-f", "scenarios/starwars");
    expect(r.code).toBe(0);
    for (const l of lines(r.stdout)) expect([...l].length).toBeLessThanOrEqual(120);
    expect(r.stdout).toContain("nobody-reaches-the-exhaust-port ");
    expect(r.stdout).toMatch(/3 passed, 0 failed\n$/);
    const w = ciliate("check", "-f", "scenarios/starwars", "--wide");
    expect(lines(w.stdout).filter((l) => /^│ PASS/.test(l))).toHaveLength(3);
  });
});
