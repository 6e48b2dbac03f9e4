// clearMap (host/datapath.ts): the ABI datapath's raw-key clear (no codec on either side) leaves a map
// empty, as the portable fallback (entries() then delete() each) does, and leaves other maps alone.
import { describe, expect, it } from "vitest";
import { MAP_SPECS, type CtEntry, type CtTuple } from "../../host/codecs.gen.ts";
import { clearMap, type MapHandle } from "../../host/datapath.ts";
import { createWasmDatapath } from "../../host/wasm-core.ts";

function fill(h: MapHandle<CtTuple, CtEntry>, n: number): void {
  for (let i = 0; i < n; i++) h.update({ saddr: new Uint8Array([10, 0, i >> 8, i & 255]), daddr: new Uint8Array([10, 1, 0, 1]), sport: 40000 + i, dport: 80, nexthdr: 6, family: 4 }, { lifetime: 100 + i });
}

describe("clearMap", () => {
  it("empties a map through the raw-key clear and through the fallback alike, other maps untouched", () => {
    const dp = createWasmDatapath();
    try {
      const ct = dp.map(MAP_SPECS.Conntrack);
      const pol = dp.map(MAP_SPECS.Policy);
      pol.update({ prefixlen: 64, secLabel: 7, epId: 1, egress: 0, protocol: 6, dport: 80 }, {});
      fill(ct, 300);
      expect(ct.count()).toBe(300);
      expect(ct.clear).toBeTypeOf("function");
      clearMap(ct);
      expect(ct.count()).toBe(0);
      expect([...ct.entries()]).toEqual([]);
      expect(pol.count()).toBe(1);
      // The fallback, for a handle without clear (the kernel's).
      fill(ct, 50);
      const { clear: _, ...bare } = ct;
      clearMap(bare as MapHandle<unknown, unknown>);
      expect(ct.count()).toBe(0);
      // Empty stays empty; a cleared map takes new entries.
      clearMap(ct);
      fill(ct, 3);
      expect(ct.count()).toBe(3);
    } finally {
      dp.close();
    }
  });
});
