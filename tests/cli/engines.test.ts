// --engine js and --engine wasm run the same core and must print the same flows for every scenario.
import { describe, expect, it } from "vitest";
import { ciliate } from "./run.ts";

describe("engines agree", () => {
  for (const s of ["starwars", "k8s-netpol", "lb", "multi-node"])
    it(`${s}: simulate -o json is identical on js and wasm`, () => {
      const w = ciliate("simulate", "-f", `scenarios/${s}`, "-o", "json", "--engine", "wasm");
      const j = ciliate("simulate", "-f", `scenarios/${s}`, "-o", "json", "--engine", "js");
      expect([w.code, j.code]).toEqual([0, 0]);
      expect(w.stdout.length).toBeGreaterThan(100);
      expect(j.stdout).toBe(w.stdout);
    });
});
