/*
 * The differential with the conntrack map at capacity, so that it evicts. The kernel's LRU hash is
 * approximate (per-CPU free lists, a rotated active/inactive list: kernel/bpf/bpf_lru_list.c) and the WASM
 * map's is exact, so the two may evict different entries and the state of the two engines may part. What
 * must still hold, packet by packet:
 *   L1. When both engines see the same conntrack state for the packet (the trace's ctState: both found an
 *       entry of the same kind, both found none, or neither looked), they agree on verdict and drop reason.
 *   L2. Neither fails open: an engine that found no entry (CT_NEW) decides exactly as a node with the same
 *       maps and an empty conntrack table decides (a third, stateless WASM engine) — an evicted established
 *       flow or reply is judged as new traffic by policy, never let through on a memory of it.
 * Not compared here (the exact differential in kernel.test.ts does that, far below capacity): output bytes,
 * events and the conntrack, metrics and counter maps, which legitimately differ once the engines evicted
 * different entries; masquerading and session affinity are off (their SNAT and affinity LRU maps would make
 * the choice of port and backend depend on which entries survived, so only their verdicts could be compared
 * — left for a later step). The map is filled with live foreign flows before every case, so every new flow
 * evicts one; a pinned case opens a connection, floods the table and sends the reply.
 * Runs: DIFF_LRU_RUNS (default 100). DIFF_SEED replays.
 */
import { afterAll, describe, expect, it } from "vitest";
import fc from "fast-check";
import { createWasmDatapath } from "../../sim/engines.ts";
import { DatapathError, type Datapath, type RunResult, type TunnelKey } from "../../host/datapath.ts";
import { MAP_SPECS } from "../../host/codecs.gen.ts";
import * as C from "../../host/constants.gen.ts";
import { addrBytes16 } from "../../host/ip.ts";
import { buildFrame } from "../../sim/packets.ts";
import { kernelSuite } from "../../datapath/preflight.ts";
import { KernelDatapath } from "../../datapath/kernel-engine.ts";
import { concretize, DIFF_CONFIG_FLAGS, installState, maglevTables, nodeStateArb, SMALL_CAPACITIES, stepsArb, V4_PODS, type NodeState } from "./arbitraries.ts";
import { TEST_CAPACITIES } from "../conformance/backends.ts";

const RUNS = Number(process.env.DIFF_LRU_RUNS ?? 100);
const SEED = process.env.DIFF_SEED ? Number(process.env.DIFF_SEED) : (Date.now() ^ (process.pid << 12)) | 0;
/** Conntrack capacity of every engine here: small, so a case's flows evict the foreign fill. */
const CT_CAP = 128;
const k = kernelSuite("differential wasm vs kernel at LRU capacity", ["root", "libbpf", "bpffs", "clang"]);

let kernel: KernelDatapath | undefined;
afterAll(() => kernel?.close());

/** Node state without masquerading or session affinity (see the header). */
const lruStateArb = nodeStateArb.map((s): NodeState => ({ ...s, masquerade: { ...s.masquerade, on: false }, services: s.services.map((v) => ({ ...v, affinity: 0 })) }));

/** Live conntrack entries of flows nobody sends (172.16.x.y → 172.17.0.1:80), enough to fill the map;
 * `wave` > 0 writes another set (a flood that evicts, as new flows would). */
function fillConntrack(dp: Datapath, now: number, wave = 0): void {
  const entries: [object, object][] = [];
  for (let i = 0; i < CT_CAP; i++) {
    entries.push([
      { saddr: addrBytes16(`172.16.${i >> 8}.${i & 255}`), daddr: addrBytes16(`172.17.0.${1 + wave}`), sport: 30000 + i, dport: 80, nexthdr: C.IPPROTO_TCP, flags: C.TUPLE_F_OUT, family: C.FAMILY_IPV4 },
      { lifetime: now + 1_000_000, srcSecId: 2, flags: C.CT_F_SEEN_NON_SYN },
    ]);
  }
  const ct = dp.map(MAP_SPECS.Conntrack);
  for (const [key, value] of entries) ct.update(key as never, value as never);
}

function foreignLeft(dp: Datapath): number {
  return [...dp.map(MAP_SPECS.Conntrack).entries()].filter(([key]) => key.saddr[0] === 172 && key.saddr[1] === 16 && key.daddr[3] === 1).length;
}

interface Engines {
  wasm: ReturnType<typeof createWasmDatapath>;
  kernel: KernelDatapath;
  /** Same maps, conntrack emptied before every packet: the verdict of a packet judged as new. */
  stateless: ReturnType<typeof createWasmDatapath>;
}

function setUp(state: NodeState): Engines {
  const caps = { ...SMALL_CAPACITIES, ct: CT_CAP };
  const wasm = createWasmDatapath({ capacities: caps });
  const stateless = createWasmDatapath({ capacities: caps });
  kernel ??= new KernelDatapath({ capacities: { ...TEST_CAPACITIES, ct: CT_CAP } });
  kernel.reset();
  const table = maglevTables(wasm);
  for (const dp of [wasm, kernel, stateless]) installState(dp, state, table, DIFF_CONFIG_FLAGS);
  fillConntrack(wasm, 1);
  fillConntrack(kernel, 1);
  return { wasm, kernel, stateless };
}

interface LruTally {
  packets: number;
  /** Packets where the two engines' conntrack state differed (one had evicted the flow's entry). */
  parted: number;
  /** Packets judged as new by an engine whose stateless verdict was a drop (no fail-open possible there). */
  newDenied: number;
  wasmEvicted: number;
  kernelEvicted: number;
}

const verdictOf = (r: RunResult) => ({ verdict: r.verdict, dropReason: r.dropReason });

/** Runs one packet on the three engines and checks L1 and L2; undefined when the kernel refused the frame. */
function step(e: Engines, entry: Parameters<Datapath["run"]>[0], packet: Uint8Array, opts: Parameters<Datapath["run"]>[2], t: LruTally): { wr: RunResult; kr: RunResult } | undefined {
  let kr: RunResult;
  try {
    kr = e.kernel.run(entry, packet, opts);
  } catch (err) {
    if (err instanceof DatapathError && err.code === "PACKET_REJECTED_BY_KERNEL") return undefined;
    throw err;
  }
  const wr = e.wasm.run(entry, packet, opts);
  e.stateless.map(MAP_SPECS.Conntrack).clear!();
  const sr = e.stateless.run(entry, packet, opts);
  t.packets++;
  if (kr.trace.ctState === wr.trace.ctState) {
    expect(verdictOf(kr), "L1: same conntrack state, same verdict").toEqual(verdictOf(wr));
  } else {
    t.parted++;
  }
  for (const [name, r] of [["wasm", wr], ["kernel", kr]] as const) {
    if (r.trace.ctState !== C.CT_NEW) continue;
    expect(verdictOf(r), `L2: ${name} judged the packet as new: it must decide as an empty conntrack table does`).toEqual(verdictOf(sr));
    if (sr.verdict === C.CTX_ACT_DROP) t.newDenied++;
  }
  return { wr, kr };
}

describe.skipIf(k.skip)("wasm and kernel at conntrack capacity (LRU eviction)", () => {
  it(`agree where their state agrees, and neither fails open (${RUNS} cases)`, async () => {
    const t: LruTally = { packets: 0, parted: 0, newDenied: 0, wasmEvicted: 0, kernelEvicted: 0 };
    await fc.assert(
      fc.asyncProperty(lruStateArb, stepsArb, stepsArb, fc.integer({ min: 0, max: 3 }), async (state, a, b, flood) => {
        const e = setUp(state);
        // In a quarter of the cases, a flood between the two sequences evicts what the first one set up,
        // so that the second one's replies and established packets meet parted state.
        const floodAt = flood === 3 ? a.length : -1;
        let prevIn: Uint8Array | undefined;
        let prevOut: Uint8Array | undefined;
        let prevTunnel: TunnelKey | undefined;
        for (const [i, s] of [...a, ...b].entries()) {
          if (i === floodAt) {
            fillConntrack(e.wasm, s.now, 1);
            fillConntrack(e.kernel, s.now, 1);
          }
          const c = concretize(s, prevIn, prevOut, prevTunnel);
          if (!c) continue;
          prevIn = c.packet;
          prevOut = undefined;
          prevTunnel = undefined;
          const r = step(e, c.entry, c.packet, { now: s.now, srcIdentity: s.srcIdentity, tunnel: c.tunnel }, t);
          if (!r) continue;
          if (r.wr.verdict !== C.CTX_ACT_DROP) prevOut = r.wr.output;
          prevTunnel = r.wr.tunnel;
        }
        t.wasmEvicted += CT_CAP - foreignLeft(e.wasm);
        t.kernelEvicted += CT_CAP - foreignLeft(e.kernel);
        // The WASM map stays exactly at capacity: every flow it created evicted one entry.
        expect(e.wasm.map(MAP_SPECS.Conntrack).count()).toBe(CT_CAP);
        e.wasm.close();
        e.stateless.close();
      }),
      { numRuns: RUNS, seed: SEED },
    );
    console.log(`conntrack at capacity (${CT_CAP}) seed ${SEED}: ${RUNS} cases, ${t.packets} packets on three engines, ${t.parted} with parted conntrack state, ${t.newDenied} judged as new and denied; foreign entries evicted: WASM ${t.wasmEvicted}, kernel ${t.kernelEvicted}`);
    // Not vacuous: both maps really evicted.
    expect(t.wasmEvicted).toBeGreaterThan(RUNS / 2);
    expect(t.kernelEvicted).toBeGreaterThan(0);
  }, Math.max(300_000, RUNS * 2000));

  it("an established reply evicted by a flood is judged as new traffic by policy in both engines", () => {
    // Pod 0 may send to pod 1 on TCP 80; pod 1 may receive from pod 0; pod 1's egress allows nothing, so
    // its reply passes only as a reply (conntrack), never as new traffic.
    const [p0, p1] = [V4_PODS[0]!, V4_PODS[1]!];
    const state: NodeState = {
      endpoints: [{ ip: p0, epId: 1, identity: 1000 }, { ip: p1, epId: 2, identity: 1001 }],
      prefixes: [],
      tunnelProtocol: C.TUNNEL_PROTO_NONE,
      policies: [
        { epId: 1, egress: true, identity: 0, deny: false, proxyPort: 0, cookie: 1 },
        { epId: 2, egress: false, identity: 1000, deny: false, proxyPort: 0, cookie: 2 },
        { epId: 2, egress: true, identity: 3000, proto: 17, port: 9, deny: false, proxyPort: 0, cookie: 3 },
      ],
      proxyListening: false,
      hostFirewall: false,
      extendedProtocols: false,
      masquerade: { on: false, exclusion: [0, 0], taken: 0, node6: false, exclusion6: ["::", 0] },
      services: [],
    };
    const e = setUp(state);
    const t: LruTally = { packets: 0, parted: 0, newDenied: 0, wasmEvicted: 0, kernelEvicted: 0 };
    const syn = buildFrame({ src: p0, dst: p1, proto: "TCP", sport: 45000, dport: 80, tcpFlags: 0x02 });
    expect(step(e, "fromEndpoint", syn, { now: 10, srcIdentity: 0 }, t)!.wr.verdict).toBe(C.CTX_ACT_OK);
    expect(step(e, "toEndpoint", syn, { now: 10, srcIdentity: 0 }, t)!.wr.verdict).toBe(C.CTX_ACT_OK);
    const reply = buildFrame({ src: p1, dst: p0, proto: "TCP", sport: 80, dport: 45000, tcpFlags: 0x12 });
    // Before the flood the reply is a reply in both.
    const before = step(e, "fromEndpoint", reply, { now: 11, srcIdentity: 0 }, t)!;
    expect(before.wr.trace.ctState).toBe(C.CT_REPLY);
    expect(before.kr.trace.ctState).toBe(C.CT_REPLY);
    expect(before.kr.verdict).toBe(C.CTX_ACT_OK);
    // A flood of new flows from pod 0 (allowed: it may send anywhere) twice the table's size.
    for (let i = 0; i < 2 * CT_CAP; i++) {
      step(e, "fromEndpoint", buildFrame({ src: p0, dst: "203.0.113.9", proto: "UDP", sport: 20000 + i, dport: 53 }), { now: 12, srcIdentity: 0 }, t);
    }
    const after = step(e, "fromEndpoint", reply, { now: 13, srcIdentity: 0 }, t)!;
    // WASM's LRU is exact: the connection, untouched during the flood, is gone; the reply is new traffic
    // that pod 1's egress policy denies.
    expect(after.wr.trace.ctState).toBe(C.CT_NEW);
    expect(verdictOf(after.wr)).toEqual({ verdict: C.CTX_ACT_DROP, dropReason: C.DROP_POLICY });
    // The kernel either kept the entry (a reply) or judged it the same way: never allowed as new.
    if (after.kr.trace.ctState === C.CT_NEW) expect(verdictOf(after.kr)).toEqual(verdictOf(after.wr));
    else expect(after.kr.trace.ctState).toBe(C.CT_REPLY);
    console.log(`evicted reply: kernel ctState ${after.kr.trace.ctState} verdict ${after.kr.verdict}/${after.kr.dropReason}; foreign entries left: WASM ${foreignLeft(e.wasm)}, kernel ${foreignLeft(e.kernel)}`);
    e.wasm.close();
    e.stateless.close();
  }, 120_000);
});
