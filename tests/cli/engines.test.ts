// --engine js, --engine wasm and --engine kernel (the generated eBPF under BPF_PROG_TEST_RUN) run the same
// core and must print the same flows for every scenario, and the same reach tables. The kernel cases need
// root, libbpf and bpffs: outside CI they are skipped with the reason printed; in CI (CI=true) a missing
// prerequisite fails the suite (datapath/preflight.ts kernelSuite).
import { describe, expect, it } from "vitest";
import { kernelSuite } from "../../datapath/preflight.ts";
import { ciliate } from "./run.ts";

const SCENARIOS = ["starwars", "k8s-netpol", "lb", "multi-node"];

describe("engines agree", () => {
  for (const s of SCENARIOS)
    it(`${s}: simulate -o json is identical on js and wasm`, () => {
      const w = ciliate("simulate", "-f", `scenarios/${s}`, "-o", "json", "--engine", "wasm");
      const j = ciliate("simulate", "-f", `scenarios/${s}`, "-o", "json", "--engine", "js");
      expect([w.code, j.code]).toEqual([0, 0]);
      expect(w.stdout.length).toBeGreaterThan(100);
      expect(j.stdout).toBe(w.stdout);
    });
});

const k = kernelSuite("ciliate --engine kernel", ["root", "libbpf", "bpffs"]);

describe.skipIf(k.skip)("the kernel engine agrees with wasm", () => {
  for (const s of SCENARIOS)
    it(`${s}: simulate -o json is identical on kernel and wasm`, () => {
      const w = ciliate("simulate", "-f", `scenarios/${s}`, "-o", "json", "--engine", "wasm");
      const kr = ciliate("simulate", "-f", `scenarios/${s}`, "-o", "json", "--engine", "kernel");
      expect(kr.stderr).toBe("");
      expect([w.code, kr.code]).toEqual([0, 0]);
      expect(kr.stdout).toBe(w.stdout);
    });

  it("k8s-netpol: reach tables are identical on kernel and wasm", () => {
    const args = ["reach", "-f", "scenarios/k8s-netpol", "--port", "80/TCP", "--port", "81/TCP", "-o", "json", "--no-dedupe"];
    const w = ciliate(...args, "--engine", "wasm");
    const kr = ciliate(...args, "--engine", "kernel");
    expect(kr.code).toBe(0);
    expect(kr.stdout).toBe(w.stdout);
  });
});
