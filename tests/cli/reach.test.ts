// `ciliate reach` on the network-policy conformance layout (scenarios/k8s-netpol) equals the tables
// derived by hand from its three policies, with and without the policy-class shortcut.
import { mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { describe, expect, it } from "vitest";
import { syntheticCluster } from "../../bench/cases/control-plane.ts";
import { ciliate, ciliateEnv, json } from "./run.ts";

const PODS = ["x/a", "x/b", "x/c", "y/a", "y/b", "y/c", "z/a", "z/b", "z/c"];

/** By hand: x/a admits only namespace y on 80; y/c sends nothing; z admits only z. */
function expected(port: number): Record<string, Record<string, boolean>> {
  const m: Record<string, Record<string, boolean>> = {};
  for (const s of PODS) {
    m[s] = {};
    for (const d of PODS) {
      let ok = s !== "y/c";
      if (d === "x/a") ok &&= port === 80 && s.startsWith("y/");
      if (d.startsWith("z/")) ok &&= s.startsWith("z/");
      m[s]![d] = ok;
    }
  }
  return m;
}

describe("reach on k8s-netpol", () => {
  it("matches the hand-derived tables for 80/TCP and 81/TCP (JSON shape of docs/cli.md)", () => {
    const r = ciliate("reach", "-f", "scenarios/k8s-netpol", "--port", "80/TCP", "--port", "81/TCP", "-o", "json");
    expect(r.code).toBe(0);
    const { diagnostics, ...out } = json(r);
    expect(diagnostics).toMatchObject({ errors: 0, warnings: 0, refused: [] });
    expect(out).toEqual({
      probes: [
        { port: 80, protocol: "TCP", matrix: expected(80) },
        { port: 81, protocol: "TCP", matrix: expected(81) },
      ],
    });
  });

  it("runs every pair through the datapath with --no-dedupe and gets the same table", () => {
    const r = ciliate("reach", "-f", "scenarios/k8s-netpol", "--port", "81", "-o", "json", "--no-dedupe");
    expect(json(r).probes[0].matrix).toEqual(expected(81));
  });

  it("defaults to the ports the policies mention, and renders csv", () => {
    const r = ciliate("reach", "-f", "scenarios/k8s-netpol", "-o", "csv");
    const lines = r.stdout.trim().split("\n");
    expect(lines[0]).toBe("port,protocol,from,to,allowed");
    expect(lines).toHaveLength(1 + PODS.length * PODS.length);
    expect(lines).toContain("80,TCP,y/a,x/a,true");
    expect(lines).toContain("80,TCP,x/b,x/a,false");
  });

  it("reports a probe of an IP family the pods have no address of as not applicable, never allowed", () => {
    const j = json(ciliate("reach", "-f", "scenarios/k8s-netpol", "--port", "128/ICMPv6", "-o", "json"));
    const cells = Object.values(j.probes[0].matrix).flatMap((row: any) => Object.values(row));
    expect(cells).toHaveLength(81);
    expect(new Set(cells)).toEqual(new Set([null]));
    const csv = ciliate("reach", "-f", "scenarios/k8s-netpol", "--port", "128/ICMPv6", "-o", "csv").stdout.trim().split("\n");
    expect(csv.slice(1).every((l: string) => l.endsWith(",n/a"))).toBe(true);
  });

  it("shows equivalence classes with a legend when the matrix is wider than the terminal, and everything with --wide", () => {
    const narrow = ciliateEnv({ COLUMNS: "22" }, "reach", "-f", "scenarios/k8s-netpol", "--port", "80/TCP");
    // Every line fits the terminal; what is wrapped is whole once the line breaks are taken out.
    for (const l of narrow.stdout.split("\n")) expect(l.length, l).toBeLessThanOrEqual(22);
    const text = narrow.stdout.replace(/\s+/g, " ");
    expect(text).toMatch(/^80\/TCP: 9 pods in 9 classes .*-o csv, -o json, or --wide/);
    expect(text).toContain(" C6 reaches no class ");
    expect(text).toMatch(/ C1 identity \d+ \(namespace x, pod=a\): x\/a /);
    const wide = ciliateEnv({ COLUMNS: "16" }, "reach", "-f", "scenarios/k8s-netpol", "--port", "80/TCP", "--wide");
    expect(wide.stdout).toMatch(/^6 y\/c {2}X X X X X X X X X$/m);
  });
});

describe("reach on 1,000 pods (the synthetic cluster of bench/cases/control-plane.ts)", () => {
  it("answers in the default format within the terminal: one line per class, a legend naming every class", () => {
    const dir = mkdtempSync(join(tmpdir(), "ciliate-reach-"));
    const file = join(dir, "cluster.yaml");
    writeFileSync(file, syntheticCluster(1000, 500));
    const t0 = performance.now();
    const r = ciliateEnv({ COLUMNS: "100" }, "reach", "-f", file, "--port", "80/TCP");
    const seconds = (performance.now() - t0) / 1000;
    rmSync(dir, { recursive: true, force: true });
    expect(r.code, r.stderr).toBe(0);
    const lines = r.stdout.split("\n");
    for (const l of lines) expect(l.length, l).toBeLessThanOrEqual(100);
    const classes = Number(/1000 pods in (\d+) classes/.exec(r.stdout)?.[1]);
    expect(classes).toBeGreaterThan(10);
    expect(lines.filter((l) => /^C\d+ reaches /.test(l))).toHaveLength(classes);
    expect(lines.filter((l) => /^ {2}C\d+ {2}identity \d+ /.test(l))).toHaveLength(classes);
    expect(r.stdout.length).toBeLessThan(100_000); // the grouped view, not a 1,000 × 1,000 matrix
    // Seconds, not minutes (about 2 s on an idle core; generous for a loaded CI machine).
    expect(seconds).toBeLessThan(60);
  }, 120_000);
});
