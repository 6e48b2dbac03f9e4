/*
 * Maglev on every engine (Cilium pkg/maglev/maglev.go). Tables are built by core/maglev.ts — on the WASM and
 * JS engines directly; the kernel does not build tables (the agent builds them with core and writes the map),
 * so on the kernel the check is that a Maglev service sends each flow to the backend its table slot names.
 * Cases: a table is reproducible for a fixed seed, every slot is filled and balanced, and removing one of N
 * backends (M ≥ 100·N) moves fewer than 2 % of the slots that did not belong to it.
 */
import { describe, expect, it } from "vitest";
import { backends } from "./backends.ts";
import { allowAll, C, POD_A, send, standardNode, VIP } from "./fixture.ts";
import { maglevHashString, maglevSeeds, MAGLEV_DEFAULT_SEED } from "../../host/maglev.ts";
import { MAP_SPECS } from "../../host/codecs.gen.ts";
import { createWasmDatapath } from "../../sim/engines.ts";
import { addrBytes16 } from "../../host/ip.ts";
import { TCP_FLAGS } from "../../sim/packets.ts";
import type { Datapath } from "../../host/datapath.ts";

type Builder = Datapath & { maglevTable(b: { id: number; hashString: string }[], m: number, seed: number): Uint32Array };

const SEED = maglevSeeds(MAGLEV_DEFAULT_SEED).murmur;
const backendList = (n: number) =>
  Array.from({ length: n }, (_, i) => ({ id: i + 1, hashString: maglevHashString({ addr: `10.1.${i >> 8}.${i & 0xff}`, port: 8080, protocol: "TCP" }) }));

function moved(before: Uint32Array, after: Uint32Array, removed: number): number {
  let kept = 0;
  let changed = 0;
  for (let i = 0; i < before.length; i++) {
    if (before[i] === removed) continue;
    kept++;
    if (after[i] !== before[i]) changed++;
  }
  return changed / kept;
}

for (const backend of backends) {
  describe(`maglev [${backend.name}]`, () => {
    const builds = backend.name !== "kernel";

    it.runIf(builds)("builds a reproducible, full and balanced table for a fixed seed", async () => {
      const dp = (await backend.create()) as Builder;
      const b = backendList(10);
      const t1 = dp.maglevTable(b, 16381, SEED);
      const t2 = dp.maglevTable([...b].reverse(), 16381, SEED);
      expect(Array.from(t2)).toEqual(Array.from(t1));
      const counts = new Map<number, number>();
      for (const id of t1) counts.set(id, (counts.get(id) ?? 0) + 1);
      expect([...counts.keys()].sort((x, y) => x - y)).toEqual(b.map((x) => x.id));
      const max = Math.max(...counts.values());
      expect(max / (16381 / 10)).toBeLessThan(1.02);
      expect(Array.from(dp.maglevTable(b, 16381, SEED ^ 1))).not.toEqual(Array.from(t1));
    });

    it.runIf(builds)("moves < 2 % of the other slots when one of N backends is removed (M ≥ 100·N)", async () => {
      const dp = (await backend.create()) as Builder;
      for (const [n, m] of [[10, 16381], [50, 16381], [100, 16381], [100, 65521]] as const) {
        const b = backendList(n);
        const before = dp.maglevTable(b, m, SEED);
        for (const gone of [1, Math.ceil(n / 2), n]) {
          const after = dp.maglevTable(b.filter((x) => x.id !== gone), m, SEED);
          expect(moved(before, after, gone), `M=${m} N=${n} removing ${gone}`).toBeLessThan(0.02);
        }
      }
    });

    it("sends each flow of a Maglev service to the backend its table slot names", async () => {
      const dp = await backend.create();
      standardNode(dp);
      allowAll(dp, POD_A.epId);
      // The table comes from core (WASM), as the agent builds it, and goes into this engine's map.
      const builder = createWasmDatapath({ capacities: { lb_maglev: 4096 } });
      const b = backendList(3).map((x, i) => ({ ...x, ip: `10.244.0.${50 + i}` }));
      const table = builder.maglevTable(b, 251, SEED);
      const key = { addr: addrBytes16(VIP), dport: 80, proto: C.IPPROTO_TCP, family: C.FAMILY_IPV4 };
      dp.map(MAP_SPECS.Services).update({ ...key, backendSlot: 0 }, { backendId: (C.LB_ALG_MAGLEV << 24) >>> 0, count: 3, revNatIndex: 9 });
      b.forEach((x, i) => {
        dp.map(MAP_SPECS.Services).update({ ...key, backendSlot: i + 1 }, { backendId: x.id, revNatIndex: 9 });
        dp.map(MAP_SPECS.Backends).update({ backendId: x.id }, { addr: addrBytes16(x.ip), port: 80, proto: C.IPPROTO_TCP, family: C.FAMILY_IPV4 });
      });
      table.forEach((id, slot) => dp.map(MAP_SPECS.Maglev).update({ revNatIndex: 9, slot }, { backendId: id }));
      const chosen = new Set<number>();
      for (let sport = 30000; sport < 30060; sport++) {
        const r = send(dp, "fromEndpoint", { src: POD_A.ip, dst: VIP, proto: "TCP", sport, dport: 80, tcpFlags: TCP_FLAGS.SYN }, 5);
        expect(r.verdict).toBe(C.CTX_ACT_OK);
        // The slot is Cilium's flow hash modulo M; the table decides, so every engine must pick table[slot].
        expect(table).toContain(r.trace.backendId);
        chosen.add(r.trace.backendId);
      }
      expect(chosen.size).toBeGreaterThan(1);
      // Same flows on the WASM engine give the same backends (the table is the only state that matters).
      const ref = createWasmDatapath();
      standardNode(ref);
      allowAll(ref, POD_A.epId);
      for (const [k, v] of dp.map(MAP_SPECS.Services).entries()) ref.map(MAP_SPECS.Services).update(k, v);
      for (const [k, v] of dp.map(MAP_SPECS.Backends).entries()) ref.map(MAP_SPECS.Backends).update(k, v);
      for (const [k, v] of dp.map(MAP_SPECS.Maglev).entries()) ref.map(MAP_SPECS.Maglev).update(k, v);
      for (let sport = 30000; sport < 30060; sport++) {
        const spec = { src: POD_A.ip, dst: VIP, proto: "TCP" as const, sport, dport: 80, tcpFlags: TCP_FLAGS.SYN };
        expect(send(ref, "fromEndpoint", spec, 6).trace.backendId).toBe(send(dp, "fromEndpoint", { ...spec, tcpFlags: TCP_FLAGS.ACK }, 6).trace.backendId);
      }
    });
  });
}
