/*
 * The differential with the conntrack, SNAT and session-affinity maps filled past capacity, so that they
 * evict. The kernel's LRU hash is approximate (per-CPU free lists, a rotated active/inactive list:
 * kernel/bpf/bpf_lru_list.c) and the WASM map's exact, so the two evict different entries and their state
 * parts. The comparison tolerates exactly that, and nothing else:
 *   E1. Each engine decides every packet exactly as core decides it on that engine's own maps: a third,
 *       capacity-free WASM engine (the model) is given the engine's conntrack, SNAT, affinity and fragment
 *       entries as they were before the packet and runs it — verdict, drop reason, output bytes, trace
 *       record, tunnel key and flow events must be identical (for the kernel this is the differential
 *       itself, on whatever state its LRU left; the tc return code must match the verdict).
 *   E2. An engine's maps after the packet are the model's minus evictions: no entry the model does not
 *       have, every entry both have equal, and every entry the engine lacks was eligible — present before
 *       the packet (an entry the packet itself created and the kernel evicted within the same packet is
 *       counted apart, and must still leave the packet's outcome as E1 requires).
 *   X1. When the two engines' own entries (everything but the foreign fill) are the same before a packet,
 *       the two runs are identical.
 *   X2. When they differ but the packet found the same conntrack state on both (its entry survived on
 *       both, or on neither) and the SNAT and affinity entries are the same, the verdicts agree.
 *   X3. Every own entry present in both engines is equal, unless its history parted: it was once present
 *       in one only, or was written by a packet that found different own state on the two.
 *   L2. Neither fails open: an engine that found no conntrack entry decides exactly as a node with the
 *       same maps and an empty conntrack table (a stateless WASM engine) — an evicted established flow or
 *       reply is judged as new traffic by policy, never let through on a memory of it.
 * Before every case each map is filled to capacity with live entries of flows nobody sends (172.16.0.0/16
 * to 172.17.0.0/16: foreign, no differential packet can meet them); in a quarter of the cases a second
 * set is written between the case's two packet sequences (a flood that evicts what the first one set up).
 * Masquerading and session affinity are on as the node state draws them. Metrics are not compared here
 * (the exact differential compares them far below capacity).
 * Runs: DIFF_LRU_RUNS (default 100). DIFF_SEED replays.
 */
import { afterAll, describe, expect, it } from "vitest";
import fc from "fast-check";
import { isDeepStrictEqual } from "node:util";
import { createWasmDatapath } from "../../sim/engines.ts";
import type { AbiDatapath } from "../../host/abi-datapath.ts";
import { DatapathError, type Datapath, type EntryPoint, type RunOptions, type RunResult, type TunnelKey } from "../../host/datapath.ts";
import { MAP_SPECS, type MapSpec } from "../../host/codecs.gen.ts";
import * as C from "../../host/constants.gen.ts";
import { addrBytes16 } from "../../host/ip.ts";
import { buildFrame } from "../../sim/packets.ts";
import { kernelSuite } from "../../datapath/preflight.ts";
import type { BpfMapHandle } from "../../datapath/bpf-map.ts";
import { KernelDatapath, tcReturnCode, type KernelRunResult } from "../../datapath/kernel-engine.ts";
import { concretize, DIFF_CONFIG_FLAGS, DIFF_TUNNEL_IFINDEX, installState, maglevTables, nodeStateArb, SMALL_CAPACITIES, stepsArb, V4_PODS, type NodeState } from "./arbitraries.ts";

const RUNS = Number(process.env.DIFF_LRU_RUNS ?? 100);
const SEED = process.env.DIFF_SEED ? Number(process.env.DIFF_SEED) : (Date.now() ^ (process.pid << 12)) | 0;
/** Capacity of the conntrack, SNAT and affinity maps of both engines: small, so a case's flows evict. */
const CAP = 128;
const CT_CAP = CAP;
const LRU_CAPS = { ct: CAP, snat: CAP, lb_affinity: CAP };
const k = kernelSuite("differential wasm vs kernel at LRU capacity", ["root", "libbpf", "bpffs", "clang"]);

/** The LRU maps filled past capacity, and the fragment map (LRU too, far below capacity) the model also
 * needs. */
const STATE_MAPS = [MAP_SPECS.Conntrack, MAP_SPECS.Snat, MAP_SPECS.Affinity, MAP_SPECS.FragDatagrams] as MapSpec[];
const LRU_MAPS = STATE_MAPS.slice(0, 3);

let kernel: KernelDatapath | undefined;
afterAll(() => kernel?.close());

const tables = maglevTables(createWasmDatapath({ capacities: SMALL_CAPACITIES }));

/** Foreign entries: 172.16.0.0/16 (clients, pods) and 172.17.0.0/16 (servers); no differential packet
 * carries these addresses. A CtTuple has saddr at bytes 16–31, an AffinityKey the client at 0–15. */
function foreignKey(spec: MapSpec, key: Uint8Array): boolean {
  const a = spec === MAP_SPECS.Affinity ? 0 : 16;
  return key[a] === 172 && (key[a + 1] === 16 || key[a + 1] === 17);
}

/** Fills the conntrack, SNAT and affinity maps with CAP live foreign entries each; `wave` > 0 writes
 * another set (a flood that evicts, as new flows would). */
function fill(dp: Datapath, now: number, wave = 0): void {
  const ct = dp.map(MAP_SPECS.Conntrack);
  const snat = dp.map(MAP_SPECS.Snat);
  const aff = dp.map(MAP_SPECS.Affinity);
  for (let i = 0; i < CAP; i++) {
    const client = addrBytes16(`172.16.${wave}.${i}`);
    const server = addrBytes16(`172.17.${wave}.1`);
    ct.update({ saddr: client, daddr: server, sport: 30000 + i, dport: 80, nexthdr: C.IPPROTO_TCP, flags: C.TUPLE_F_OUT, family: C.FAMILY_IPV4 }, { lifetime: now + 1_000_000, srcSecId: 2, flags: C.CT_F_SEEN_NON_SYN });
    // SNAT entries come in pairs as snatEgress writes them: the flow's mapping and the port's reply key.
    if (i % 2 === 0) snat.update({ saddr: client, daddr: server, sport: 30000 + i, dport: 80, nexthdr: C.IPPROTO_TCP, flags: C.TUPLE_F_OUT, family: C.FAMILY_IPV4 }, { toAddr: addrBytes16("192.168.57.11"), toPort: 50000 + i, family: C.FAMILY_IPV4, created: now });
    else snat.update({ daddr: addrBytes16("192.168.57.11"), saddr: server, dport: 50000 + i - 1, sport: 80, nexthdr: C.IPPROTO_TCP, flags: C.TUPLE_F_IN, family: C.FAMILY_IPV4 }, { toAddr: client, toPort: 30000 + i - 1, family: C.FAMILY_IPV4, created: now });
    aff.update({ clientAddr: client, revNatIndex: 1 + (i % 50), family: C.FAMILY_IPV4 }, { lastUsed: now, backendId: 1 + (i % 20) });
  }
}

/** A map's raw entries by key (hex). */
type Dump = Map<string, { key: Uint8Array; value: Uint8Array }>;
const hex = (b: Uint8Array) => Buffer.from(b.buffer, b.byteOffset, b.length).toString("hex");

/** A map's entries as bytes. `peek`: WASM's maps are read without changing what its LRU evicts next. */
function rawEntries(dp: Datapath, spec: MapSpec, peek = true): [Uint8Array, Uint8Array][] {
  if (dp instanceof KernelDatapath) return [...(dp.map(spec) as BpfMapHandle<unknown, unknown>).raw.entries()].map(([key, v]) => [key.slice(), v.slice()]);
  if (peek) return peekWasm(dp as AbiDatapath, () => rawEntries(dp, spec, false));
  return [...dp.map(spec).entries()].map(([key, v]): [Uint8Array, Uint8Array] => [spec.key.encode(key as never), spec.value.encode(v as never)]);
}

/** A lookup through core's ABI is a use: it moves the entry to the head of WASM's exact LRU (the kernel's
 * syscall lookups leave its LRU alone). Reading WASM's maps must not change what it evicts next, so the
 * instance is put back as it was after `read`. */
function peekWasm<T>(wasm: AbiDatapath, read: () => T): T {
  const before = (peekSnapshot = wasm.snapshot(peekSnapshot));
  try {
    return read();
  } finally {
    wasm.restore(before);
  }
}
let peekSnapshot: ReturnType<AbiDatapath["snapshot"]> | undefined;

/** The state maps' entries; `peek` as rawEntries (the model, discarded after the read, needs none). */
function dump(dp: Datapath, peek = true): Dump[] {
  const read = () => STATE_MAPS.map((spec) => new Map(rawEntries(dp, spec, false).map(([key, value]) => [hex(key), { key, value }])));
  return peek && !(dp instanceof KernelDatapath) ? peekWasm(dp as AbiDatapath, read) : read();
}

/** The entries of a dump that are not foreign. */
function own(d: Dump[]): Dump[] {
  return d.map((m, i) => new Map([...m].filter(([, e]) => !foreignKey(STATE_MAPS[i]!, e.key))));
}

const sameDump = (a: Dump, b: Dump) => a.size === b.size && [...a].every(([h, e]) => b.has(h) && Buffer.compare(b.get(h)!.value, e.value) === 0);

/** An entry in readable form, for failure messages. */
function show(spec: MapSpec, e: { key: Uint8Array; value: Uint8Array } | undefined): string {
  if (!e) return "absent";
  return JSON.stringify([spec.key.decode(e.key), spec.value.decode(e.value)], (_, x) => (typeof x === "bigint" ? x.toString() : x instanceof Uint8Array ? Array.from(x).join(".") : x));
}

interface Engines {
  wasm: AbiDatapath;
  kernel: KernelDatapath;
  /** Same maps, capacity-free, loaded with one engine's state before each packet (E1, E2). */
  model: AbiDatapath;
  modelInstalled: ReturnType<AbiDatapath["snapshot"]>;
  /** Same maps, conntrack emptied before every packet: the verdict of a packet judged as new (L2). */
  stateless: AbiDatapath;
}

function setUp(state: NodeState): Engines {
  const caps = { ...SMALL_CAPACITIES, ...LRU_CAPS };
  const wasm = createWasmDatapath({ capacities: caps });
  const stateless = createWasmDatapath({ capacities: caps });
  const model = createWasmDatapath({ capacities: SMALL_CAPACITIES });
  kernel ??= new KernelDatapath({ capacities: { ...SMALL_CAPACITIES, ...LRU_CAPS } });
  kernel.reset();
  for (const dp of [wasm, kernel, stateless, model]) installState(dp, state, tables, DIFF_CONFIG_FLAGS);
  fill(wasm, 1);
  fill(kernel, 1);
  // The model's state maps hold only what it is given before each packet.
  for (const spec of STATE_MAPS) model.map(spec).clear!();
  return { wasm, kernel, stateless, model, modelInstalled: model.snapshot() };
}

interface LruTally {
  packets: number;
  /** Packets run on the model, per engine (E1, E2). */
  modelled: number;
  /** Packets whose engines had the same own entries before (X1: identical runs). */
  sameState: number;
  /** Packets with different own state but the same conntrack state and SNAT and affinity entries (X2). */
  sameCt: number;
  /** Packets whose two engines found different conntrack state (one had evicted the flow's entry). */
  parted: number;
  /** Packets judged as new by an engine whose stateless verdict was a drop (no fail-open possible there). */
  newDenied: number;
  /** Entries evicted (E2), per engine and map. */
  evicted: Record<"wasm" | "kernel", number[]>;
  /** Entries a packet created that the kernel evicted within the same packet. */
  freshEvicted: number;
  /** Own entries present in both engines compared equal (X3). */
  sharedCompared: number;
}

const verdictOf = (r: RunResult) => ({ verdict: r.verdict, dropReason: r.dropReason });
const outcome = (r: RunResult, events: unknown[]) => ({ verdict: r.verdict, dropReason: r.dropReason, output: Array.from(r.output.subarray(0, r.output.length)), trace: r.trace, tunnel: r.tunnel, events });

/** E1 and E2 for one engine: `before` its state before the packet, `r` and `events` its run, `after` its
 * state after. */
function checkAgainstModel(e: Engines, name: "wasm" | "kernel", entry: EntryPoint, packet: Uint8Array, opts: RunOptions, before: Dump[], r: RunResult, events: unknown[], after: Dump[], t: LruTally): void {
  const m = e.model;
  m.restore(e.modelInstalled);
  STATE_MAPS.forEach((spec, i) => {
    const entries = [...before[i]!.values()];
    if (entries.length) m.updateEncoded(spec, entries.map((x) => x.key), entries.map((x) => x.value));
  });
  const mr = m.run(entry, packet, opts);
  const mine = outcome({ ...r, output: r.output.subarray(0, packet.length) }, events);
  const model = outcome(mr, m.events());
  if (!isDeepStrictEqual(mine, model)) expect(mine, `E1: ${name} decides as core on its own maps`).toEqual(model);
  t.modelled++;
  const modelAfter = dump(m, false);
  STATE_MAPS.forEach((spec, i) => {
    const got = after[i]!;
    const want = modelAfter[i]!;
    for (const [h, x] of got) {
      const w = want.get(h);
      if (!w || Buffer.compare(w.value, x.value) !== 0) expect(show(spec, x), `E2: ${name}'s ${spec.name} entry after the packet is the model's`).toBe(show(spec, w));
    }
    for (const [h, w] of want) {
      if (got.has(h)) continue;
      if (before[i]!.has(h)) {
        t.evicted[name][i]!++;
        continue;
      }
      // Created by this packet and gone already: only the kernel's approximate LRU may do that.
      expect(name, `E2: ${name} lost an entry of ${spec.name} the packet created (${show(spec, w)})`).toBe("kernel");
      t.freshEvicted++;
    }
  });
}

/** Runs one packet on both engines (and the model, and the stateless engine) and checks E1, E2, X1–X3 and
 * L2; undefined when the kernel refused the frame. `parted`: X3's own keys whose history parted. */
function step(e: Engines, entry: EntryPoint, packet: Uint8Array, opts: RunOptions, t: LruTally, parted: Set<string>[]): { wr: RunResult; kr: KernelRunResult } | undefined {
  const kBefore = dump(e.kernel);
  const wBefore = dump(e.wasm);
  let kr: KernelRunResult;
  try {
    kr = e.kernel.run(entry, packet, opts);
  } catch (err) {
    if (err instanceof DatapathError && err.code === "PACKET_REJECTED_BY_KERNEL") return undefined;
    throw err;
  }
  const kEvents = e.kernel.events();
  const wr = e.wasm.run(entry, packet, opts);
  const wEvents = e.wasm.events();
  t.packets++;
  expect(kr.retval, "tc return code").toBe(tcReturnCode(kr.verdict, DIFF_TUNNEL_IFINDEX));
  const kAfter = dump(e.kernel);
  const wAfter = dump(e.wasm);
  checkAgainstModel(e, "kernel", entry, packet, opts, kBefore, kr, kEvents, kAfter, t);
  checkAgainstModel(e, "wasm", entry, packet, opts, wBefore, wr, wEvents, wAfter, t);
  const ownK = own(kBefore);
  const ownW = own(wBefore);
  const sameOwn = ownK.every((m, i) => sameDump(m, ownW[i]!));
  if (sameOwn) {
    t.sameState++;
    const kOut = outcome({ ...kr, output: kr.output.subarray(0, packet.length) }, kEvents);
    const wOut = outcome(wr, wEvents);
    if (!isDeepStrictEqual(kOut, wOut)) expect(kOut, "X1: same own state, same run").toEqual(wOut);
  } else if (kr.trace.ctState === wr.trace.ctState && sameDump(ownK[1]!, ownW[1]!) && sameDump(ownK[2]!, ownW[2]!)) {
    t.sameCt++;
    expect(verdictOf(kr), "X2: same conntrack state, same SNAT and affinity entries, same verdict").toEqual(verdictOf(wr));
  }
  if (kr.trace.ctState !== wr.trace.ctState) t.parted++;
  // X3: own entries in both engines are equal unless their history parted.
  STATE_MAPS.forEach((spec, i) => {
    const [ka, wa, kb, wb] = [kAfter[i]!, wAfter[i]!, kBefore[i]!, wBefore[i]!];
    if (!sameOwn) {
      // Written by a packet that found different own state: its writes may differ.
      for (const [after, before] of [[ka, kb], [wa, wb]] as const) for (const [h, x] of after) if (Buffer.compare(before.get(h)?.value ?? new Uint8Array(), x.value) !== 0) parted[i]!.add(h);
    }
    for (const h of new Set([...ka.keys(), ...wa.keys()])) {
      const [x, y] = [ka.get(h), wa.get(h)];
      if (foreignKey(spec, (x ?? y)!.key)) continue;
      if (!x || !y) {
        parted[i]!.add(h);
        continue;
      }
      if (parted[i]!.has(h)) continue;
      t.sharedCompared++;
      if (Buffer.compare(x.value, y.value) !== 0) expect(show(spec, x), `X3: ${spec.name} entry in both engines`).toBe(show(spec, y));
    }
  });
  // L2: an engine that found no entry decides as an empty conntrack table does.
  e.stateless.map(MAP_SPECS.Conntrack).clear!();
  const sr = e.stateless.run(entry, packet, opts);
  e.stateless.events();
  for (const [name, r] of [["wasm", wr], ["kernel", kr]] as const) {
    if (r.trace.ctState !== C.CT_NEW) continue;
    expect(verdictOf(r), `L2: ${name} judged the packet as new: it must decide as an empty conntrack table does`).toEqual(verdictOf(sr));
    if (sr.verdict === C.CTX_ACT_DROP) t.newDenied++;
  }
  return { wr, kr };
}

function foreignLeft(dp: Datapath): number {
  return rawEntries(dp, MAP_SPECS.Conntrack).filter(([key]) => foreignKey(MAP_SPECS.Conntrack, key) && key[17] === 16 && key[18] === 0).length;
}

const newTally = (): LruTally => ({ packets: 0, modelled: 0, sameState: 0, sameCt: 0, parted: 0, newDenied: 0, evicted: { wasm: [0, 0, 0, 0], kernel: [0, 0, 0, 0] }, freshEvicted: 0, sharedCompared: 0 });

describe.skipIf(k.skip)("wasm and kernel at conntrack, SNAT and affinity capacity (LRU eviction)", () => {
  it(`decide as core on their own maps, differ only by evictions, and neither fails open (${RUNS} cases)`, async () => {
    const t = newTally();
    await fc.assert(
      fc.asyncProperty(nodeStateArb, stepsArb, stepsArb, fc.integer({ min: 0, max: 3 }), async (state, a, b, flood) => {
        const e = setUp(state);
        const parted = STATE_MAPS.map(() => new Set<string>());
        // In a quarter of the cases, a flood between the two sequences evicts what the first one set up,
        // so that the second one's replies and established packets meet parted state.
        const floodAt = flood === 3 ? a.length : -1;
        let prevIn: Uint8Array | undefined;
        let prevOut: Uint8Array | undefined;
        let prevTunnel: TunnelKey | undefined;
        for (const [i, s] of [...a, ...b].entries()) {
          if (i === floodAt) {
            fill(e.wasm, s.now, 1);
            fill(e.kernel, s.now, 1);
          }
          const c = concretize(s, prevIn, prevOut, prevTunnel);
          if (!c) continue;
          prevIn = c.packet;
          prevOut = undefined;
          prevTunnel = undefined;
          const r = step(e, c.entry, c.packet, { now: s.now, srcIdentity: s.srcIdentity, tunnel: c.tunnel }, t, parted);
          if (!r) continue;
          if (r.wr.verdict !== C.CTX_ACT_DROP) prevOut = r.wr.output;
          prevTunnel = r.wr.tunnel;
        }
        // No map ever holds more than its capacity.
        for (const dp of [e.wasm, e.kernel]) for (const spec of LRU_MAPS) expect(rawEntries(dp, spec).length).toBeLessThanOrEqual(CAP);
      }),
      { numRuns: RUNS, seed: SEED },
    );
    console.log(`LRU maps at capacity (${CAP}) seed ${SEED}: ${RUNS} cases, ${t.packets} packets, ${t.modelled} engine runs checked against the model (E1, E2); ${t.sameState} packets with the same own state on both engines (X1), ${t.sameCt} with the same conntrack state only (X2), ${t.parted} with parted conntrack state; ${t.sharedCompared} own entries compared across engines (X3); ${t.newDenied} judged as new and denied; evicted (conntrack/SNAT/affinity/fragments): WASM ${t.evicted.wasm.join("/")}, kernel ${t.evicted.kernel.join("/")}; entries the kernel evicted in the packet that created them: ${t.freshEvicted}`);
    // Not vacuous: both engines really evicted from each map, and the cross-engine checks ran.
    for (const name of ["wasm", "kernel"] as const) for (const i of [0, 1, 2]) expect(t.evicted[name][i], `${name} evicted from ${STATE_MAPS[i]!.name}`).toBeGreaterThan(0);
    expect(t.sameState).toBeGreaterThan(0);
    expect(t.sharedCompared).toBeGreaterThan(0);
  }, Math.max(600_000, RUNS * 6000));

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
    const t = newTally();
    const parted = STATE_MAPS.map(() => new Set<string>());
    const syn = buildFrame({ src: p0, dst: p1, proto: "TCP", sport: 45000, dport: 80, tcpFlags: 0x02 });
    expect(step(e, "fromEndpoint", syn, { now: 10, srcIdentity: 0 }, t, parted)!.wr.verdict).toBe(C.CTX_ACT_OK);
    expect(step(e, "toEndpoint", syn, { now: 10, srcIdentity: 0 }, t, parted)!.wr.verdict).toBe(C.CTX_ACT_OK);
    const reply = buildFrame({ src: p1, dst: p0, proto: "TCP", sport: 80, dport: 45000, tcpFlags: 0x12 });
    // Before the flood the reply is a reply in both.
    const before = step(e, "fromEndpoint", reply, { now: 11, srcIdentity: 0 }, t, parted)!;
    expect(before.wr.trace.ctState).toBe(C.CT_REPLY);
    expect(before.kr.trace.ctState).toBe(C.CT_REPLY);
    expect(before.kr.verdict).toBe(C.CTX_ACT_OK);
    // A flood of new flows from pod 0 (allowed: it may send anywhere) twice the table's size.
    for (let i = 0; i < 2 * CT_CAP; i++) {
      step(e, "fromEndpoint", buildFrame({ src: p0, dst: "203.0.113.9", proto: "UDP", sport: 20000 + i, dport: 53 }), { now: 12, srcIdentity: 0 }, t, parted);
    }
    const after = step(e, "fromEndpoint", reply, { now: 13, srcIdentity: 0 }, t, parted)!;
    // WASM's LRU is exact: the connection, untouched during the flood, is gone; the reply is new traffic
    // that pod 1's egress policy denies.
    expect(after.wr.trace.ctState).toBe(C.CT_NEW);
    expect(verdictOf(after.wr)).toEqual({ verdict: C.CTX_ACT_DROP, dropReason: C.DROP_POLICY });
    // The kernel either kept the entry (a reply) or judged it the same way: never allowed as new.
    if (after.kr.trace.ctState === C.CT_NEW) expect(verdictOf(after.kr)).toEqual(verdictOf(after.wr));
    else expect(after.kr.trace.ctState).toBe(C.CT_REPLY);
    console.log(`evicted reply: kernel ctState ${after.kr.trace.ctState} verdict ${after.kr.verdict}/${after.kr.dropReason}; foreign entries left: WASM ${foreignLeft(e.wasm)}, kernel ${foreignLeft(e.kernel)}`);
  }, 300_000);
});
