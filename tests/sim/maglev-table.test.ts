// The simulator's agent-side Maglev table (sim/maglev-table.ts) must equal core's maglevBuild (which
// reproduces Cilium's tables) for equal weights, so every engine reads the table Cilium would write.
import { describe, expect, it } from "vitest";
import fc from "fast-check";
import { maglevHashString, maglevSeeds, packMaglevInput, MAGLEV_REC_SIZE, MAGLEV_DEFAULT_SEED } from "../../core/host/maglev.ts";
import { maglevTable } from "../../sim/maglev-table.ts";

// core/ sources use AssemblyScript types, so they are loaded untyped (vitest gives them the portable env).
const paths = { maglev: "../../core/maglev", alloc: "../../core/alloc", env: "../../core/env.portable.ts" };
const { maglevBuild } = await import(paths.maglev);
const { allocStatic } = await import(paths.alloc);
const { jsMemory, read32 } = await import(paths.env);

const input = allocStatic(MAGLEV_REC_SIZE * 64, 8);
const out = allocStatic(4 * 1021, 8);

function coreTable(bs: { id: number; addr: string; port: number }[], m: number): number[] {
  const { bytes } = packMaglevInput(bs.map((b) => ({ id: b.id, hashString: maglevHashString({ addr: b.addr, port: b.port, protocol: "TCP" }) })));
  new Uint8Array(jsMemory()).set(bytes, input);
  expect(maglevBuild(input, bs.length, m, maglevSeeds(MAGLEV_DEFAULT_SEED).murmur, out)).toBe(0);
  return Array.from({ length: m }, (_, j) => read32(out + 4 * j));
}

describe("sim maglevTable", () => {
  it("equals core's maglevBuild for equal weights", () => {
    fc.assert(
      fc.property(fc.uniqueArray(fc.integer({ min: 1, max: 250 }), { minLength: 1, maxLength: 12 }), fc.constantFrom(251, 509, 1021), (hosts, m) => {
        const bs = hosts.map((h, i) => ({ id: i + 1, addr: `10.244.0.${h}`, port: 8080, protocol: "TCP" }));
        expect(maglevTable(bs, m, MAGLEV_DEFAULT_SEED)).toEqual(coreTable(bs, m));
      }),
      { numRuns: 25 },
    );
  });

  it("fills every slot with a given backend and is empty without backends", () => {
    const t = maglevTable([{ id: 7, addr: "10.0.0.1", port: 80, protocol: "TCP" }, { id: 9, addr: "10.0.0.2", port: 80, protocol: "TCP" }], 251, MAGLEV_DEFAULT_SEED);
    expect(t).toHaveLength(251);
    expect(new Set(t)).toEqual(new Set([7, 9]));
    expect(maglevTable([], 251, MAGLEV_DEFAULT_SEED)).toEqual([]);
  });
});
