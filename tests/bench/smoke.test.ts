/*
 * Smoke test of the benchmark harness: runs the --quick code path of every benchmark on the smallest
 * sizes (tiny) into a temporary directory and checks that each writes its JSON, Markdown and SVG files
 * with the machine information. No assertion is about a time. Parts that need root, clang or iptables
 * must either run or appear in `skipped` with a reason (never silently absent).
 */
import { describe, expect, it } from "vitest";
import { existsSync, mkdtempSync, readFileSync, readdirSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { runBenchmarks } from "../../bench/main.ts";
import { benchmarks } from "../../bench/cases/index.ts";
import { svgChart } from "../../bench/report.ts";
import { summarize } from "../../bench/harness.ts";

describe("bench harness", () => {
  it("summarize gives median, min and max", () => {
    expect(summarize([5, 1, 3])).toEqual({ median: 3, min: 1, max: 5, runs: 3 });
    expect(summarize([4, 1, 3, 2])).toMatchObject({ median: 2.5, min: 1, max: 4 });
  });

  it("draws an SVG chart with one path per series", () => {
    const svg = svgChart({ title: "t", xLabel: "x", yLabel: "y", logX: true, series: [{ name: "a", points: [[10, 1], [100, 2]] }, { name: "b", points: [[10, 3]] }] });
    expect(svg.startsWith("<svg")).toBe(true);
    expect(svg.match(/<path /g)).toHaveLength(2);
  });

  it("--only takes several names (the HTTP and DNS proxy overheads in one run) and refuses an unknown one", { timeout: 120_000 }, async () => {
    const out = mkdtempSync(join(tmpdir(), "ciliate-bench-only-"));
    try {
      expect(await runBenchmarks({ quick: true, tiny: true, only: "l7-proxy,dns-proxy", out, progress: false, log: () => undefined })).toEqual(["l7-proxy", "dns-proxy"]);
      for (const name of ["l7-proxy", "dns-proxy"]) {
        const rows = JSON.parse(readFileSync(join(out, `${name}.json`), "utf8")).rows as { label: string }[];
        expect(rows.length, name).toBeGreaterThan(0);
      }
      await expect(runBenchmarks({ quick: true, tiny: true, only: "l7-proxy,nope", out, progress: false })).rejects.toThrow(/no benchmark named nope \(have: /);
    } finally {
      rmSync(out, { recursive: true, force: true });
    }
  });

  it("runs every benchmark's quick path on tiny sizes and writes JSON, Markdown and SVG with the machine", { timeout: 240_000 }, async () => {
    const out = mkdtempSync(join(tmpdir(), "ciliate-bench-smoke-"));
    const logged: string[] = [];
    try {
      const names = await runBenchmarks({ quick: true, tiny: true, out, progress: false, log: (l) => logged.push(l) });
      expect(names).toEqual(benchmarks.map((b) => b.name));
      expect(names).toEqual(expect.arrayContaining(["datapath", "scaling", "iptables", "control-plane", "maglev"]));
      const files = readdirSync(out);
      for (const name of names) {
        const json = JSON.parse(readFileSync(join(out, `${name}.json`), "utf8"));
        expect(json.machine).toMatchObject({ cpuModel: expect.any(String), cores: expect.any(Number), kernel: expect.any(String), node: process.version, clang: expect.any(String), jit: expect.any(String) });
        expect(json.name).toBe(name);
        // Something was measured, or every missing part says why.
        expect(json.rows.length + json.skipped.length).toBeGreaterThan(0);
        for (const s of json.skipped) {
          expect(s.reason.length).toBeGreaterThan(0);
          expect(logged.some((l) => l.includes(s.reason))).toBe(true);
        }
        for (const r of json.rows) {
          expect(Number.isFinite(r.stat.median)).toBe(true);
          expect(r.stat.min).toBeLessThanOrEqual(r.stat.median);
          expect(r.stat.max).toBeGreaterThanOrEqual(r.stat.median);
        }
        const md = readFileSync(join(out, `${name}.md`), "utf8");
        expect(md).toContain(json.machine.cpuModel);
        expect(md).toContain(`BPF JIT ${json.machine.jit}`);
        for (const img of md.matchAll(/!\[[^\]]*\]\(([^)]+\.svg)\)/g)) {
          expect(files).toContain(img[1]);
          expect(readFileSync(join(out, img[1]!), "utf8")).toMatch(/^<svg/);
        }
      }
      // The wasm rows of the per-packet benchmark never depend on root: they must be there.
      const dp = JSON.parse(readFileSync(join(out, "datapath.json"), "utf8"));
      expect(dp.rows.filter((r: { params: { engine: string } }) => r.params.engine === "wasm")).toHaveLength(4);
      expect(dp.ratios.some((r: { name: string }) => r.name.includes("wasm ÷ js"))).toBe(true);
      expect(existsSync(join(out, "maglev.md"))).toBe(true);
    } finally {
      rmSync(out, { recursive: true, force: true });
    }
  });
});
