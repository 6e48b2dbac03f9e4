/*
 * The central promise: the eBPF programs generated from core/ decide exactly what the WASM build decides.
 * Random node state (policies with wildcards, ranges and denies; ipcache prefixes; services with random and
 * Maglev selection, affinity and backend states) and random packet sequences (valid TCP/UDP/SCTP/ICMP over
 * IPv4 and IPv6, replies, truncations, corruptions, garbage) run through both; verdict, drop reason, output
 * bytes, trace record, tc return code, flow events in the ring buffer and map side effects (conntrack,
 * counters, affinity, SNAT) and the tunnel key an encapsulated packet carries must be identical; masquerading
 * (toNetwork SNAT with port collisions, fromNetwork's reverse SNAT) and the host firewall (the node's own
 * connections through the device, judged by the host endpoint's entries, and their replies) are in the
 * sequences (arbitraries.ts), with both sides at the same virtual time. A case is one packet sequence;
 * DIFF_SEQUENCES (default 8) of them run on one installed node state (a group: one fast-check run), each
 * from the state as installed (runCases). Every run prints its seed (DIFF_SEED=<seed> replays the run); a
 * failure also prints the case (seed/group/sequence) and the command that replays it alone
 * (`npm run test:differential -- --seed S --path G --sequence J`), and fast-check's shrunk group and path.
 * Runs: DIFF_KERNEL_RUNS cases (default 5000; `npm run test:differential -- --runs 100000` for a long run).
 * Long mode (`npm run test:differential:long -- --cases N --seed S`, scripts/differential.mjs): the tc
 * programs only, in chunks of DIFF_CHUNK cases (default 10,000), chunk k with seed S+k (so each chunk, and
 * each case, replays alone), until N cases or the DIFF_DEADLINE (epoch ms) passes; after every chunk the
 * cumulative result (cases, states, packets, events, differences, seeds, duration, CPU time, outcomes
 * reached) is written to DIFF_RESULT, so a run stopped for time still records every finished chunk.
 * The property runs twice: with the tc programs, and with fromNetwork through the XDP program (the agent's
 * --xdp-acceleration), whose return code is the XDP action for the verdict (XDP_DROP / XDP_PASS).
 */
import { mkdirSync, renameSync, writeFileSync } from "node:fs";
import { availableParallelism, loadavg } from "node:os";
import { Session } from "node:inspector/promises";
import { dirname } from "node:path";
import { isDeepStrictEqual } from "node:util";
import { afterAll, describe, expect, it } from "vitest";
import fc from "fast-check";
import { createWasmDatapath } from "../../sim/engines.ts";
import type { AbiDatapath } from "../../host/abi-datapath.ts";
import { DatapathError, type Datapath, type TunnelKey } from "../../host/datapath.ts";
import { MAP_SPECS, type MapSpec, type MetricsKey, type MetricsValue } from "../../host/codecs.gen.ts";
import { addrBytes16 } from "../../host/ip.ts";
import type { BpfMapHandle, RawMap } from "../../datapath/bpf-map.ts";
import { addPolicy } from "../conformance/fixture.ts";
import * as C from "../../host/constants.gen.ts";
import { kernelSuite } from "../../datapath/preflight.ts";
import { KernelDatapath, tcReturnCode, xdpAction, type KernelRunResult } from "../../datapath/kernel-engine.ts";
import { concretize, DIFF_CONFIG_FLAGS, DIFF_TUNNEL_IFINDEX, HOST_EP_DIFF, installState, maglevTables, nodeStateArb, PACKET_MAPS, sideEffects, SMALL_CAPACITIES, stepsArb, type Step } from "./arbitraries.ts";

const RUNS = Number(process.env.DIFF_KERNEL_RUNS ?? 5000);
const SEED = process.env.DIFF_SEED ? Number(process.env.DIFF_SEED) : (Date.now() ^ (process.pid << 10)) | 0;
/** Packet sequences (cases) run on one installed node state; the replay of one case needs the same. */
const SEQUENCES = Number(process.env.DIFF_SEQUENCES ?? 8);
/** Set by `--sequence J` (scripts/differential.mjs): run only sequence J of each generated group — one case. */
const ONLY_SEQUENCE = process.env.DIFF_SEQUENCE === undefined ? undefined : Number(process.env.DIFF_SEQUENCE);
// 5000 cases take about a minute; the suite timeout scales with the run count.
const TIMEOUT_MS = Math.max(120_000, RUNS * 60);
const k = kernelSuite("differential wasm vs kernel", ["root", "libbpf", "bpffs", "clang"]);
if (!(Number.isInteger(SEQUENCES) && SEQUENCES >= 1) || (ONLY_SEQUENCE !== undefined && !(Number.isInteger(ONLY_SEQUENCE) && ONLY_SEQUENCE >= 0 && ONLY_SEQUENCE < SEQUENCES))) {
  throw new Error(`DIFF_SEQUENCES must be a positive integer and DIFF_SEQUENCE one of 0..DIFF_SEQUENCES-1, got ${process.env.DIFF_SEQUENCES} and ${process.env.DIFF_SEQUENCE}`);
}

let tcKernel: KernelDatapath | undefined;
let xdpKernel: KernelDatapath | undefined;
afterAll(() => {
  tcKernel?.close();
  xdpKernel?.close();
});

/** A kernel mode: its engine, loaded once per process (seconds of verifier time) and reset by runCases. */
interface Mode {
  name: string;
  engine(): KernelDatapath;
}
const MODES: Mode[] = [
  { name: "tc programs", engine: () => (tcKernel ??= new KernelDatapath({ capacities: SMALL_CAPACITIES })) },
  { name: "fromNetwork at XDP", engine: () => (xdpKernel ??= new KernelDatapath({ capacities: SMALL_CAPACITIES, xdp: true })) },
];

/**
 * The WASM engine, instantiated once and restored from snapshots (AbiDatapath.restore) instead of
 * instantiated per case: `fresh` is its state with empty maps. Maglev tables are built by a second
 * instance, so that this one never allocates after its snapshots.
 */
let wasmEngine: { dp: AbiDatapath; fresh: Snapshot; installed?: Snapshot; tables: (ids: number[]) => Uint32Array } | undefined;
type Snapshot = ReturnType<AbiDatapath["snapshot"]>;
function wasmOnce(): NonNullable<typeof wasmEngine> {
  if (!wasmEngine) {
    const dp = createWasmDatapath({ capacities: SMALL_CAPACITIES });
    wasmEngine = { dp, fresh: dp.snapshot(), tables: maglevTables(createWasmDatapath({ capacities: SMALL_CAPACITIES })) };
  }
  return wasmEngine;
}

interface Tally {
  cases: number;
  /** Node states installed (each served SEQUENCES cases, or one when a single sequence is replayed). */
  states: number;
  compared: number;
  events: number;
  rejected: number;
  executed: number;
  /** CPU time of this process (user + system, µs) spent in runCases: the cost per case on a loaded machine. */
  cpuMicros: number;
  outcomes: Map<string, number>;
}

/** The outcomes a run of at least 1,000 cases must reach, or agreement proves little. (Reverse NAT is
 * reached too, but rarely — it needs a service, a local backend and open policy at every hop — so it is
 * reported rather than required; tests/conformance/lb covers it on every engine.) */
const REQUIRED_OUTCOMES = ["fromEndpoint ok", "fromEndpoint drop 133", "toEndpoint ok", "dnat", "ct reply", "ct established", "fromEndpoint drop 132", "toEndpoint drop 134", "fromNetwork ok",
  "fromEndpoint tunnel", "fromEndpoint drop 160", "fromOverlay ok", "fromHost tunnel", "fromHost drop 160", "fromHost ok", "fromOverlay drop 133", "fromOverlay drop 147", "fromOverlay drop 171",
  "toNetwork ok", "masquerade", "masquerade reply", "masquerade port changed", "toNetwork drop 167",
  "masquerade ipv6", "masquerade reply ipv6", "nodeport ipv6 dnat", "nodeport ipv6 snat", "nodeport ipv6 reply",
  "host firewall ingress ok", "host firewall ingress drop 133", "host firewall ingress reply",
  "host firewall egress ok", "host firewall egress drop 133", "host firewall egress reply",
  "later fragment passed", "later fragment masqueraded", "fromEndpoint drop 175"];

/** expect(actual).toEqual(expected), strict deep equality first: values that are equal (nearly all of
 * them) skip vitest's slower matcher, and anything else goes through toEqual exactly as before — it
 * decides and reports every difference (strict equality implies toEqual's). */
function same(actual: unknown, expected: unknown): void {
  if (!isDeepStrictEqual(actual, expected)) expect(actual).toEqual(expected);
}

/** The maps packets write, but for the Metrics array (sideEffects reads and zeroes it; installState writes
 * none of it): their entries right after the node state is installed, restored before every sequence. */
const INSTALLED_MAPS = PACKET_MAPS.filter((m) => m !== MAP_SPECS.Metrics);

/** Raw entries of the kernel's packet maps (but Metrics) after the state is installed (SNAT ports the
 * state marks as taken). */
function kernelInstalled(kernel: KernelDatapath): [RawMap, Uint8Array[], Uint8Array[]][] {
  return INSTALLED_MAPS.map((spec) => {
    const raw = (kernel.map(spec as MapSpec) as BpfMapHandle<unknown, unknown>).raw;
    const entries = [...raw.entriesPerCpu()];
    return [raw, entries.map(([key]) => key), entries.map(([, v]) => v[0]!)];
  });
}

/** The case a failure happened in: the group (fast-check's run index: `--path`) and the sequence in it. */
interface DiffCase {
  group: number;
  sequence: number;
}

interface CaseOptions {
  /** fast-check's path of one group (replays it); DIFF_PATH. */
  path?: string;
  /** Run only this sequence of each group (replays one case alone); DIFF_SEQUENCE. */
  only?: number;
  /** The harness's own test only: changes one engine's maps after the state is installed — a difference
   * the run must then report. */
  tamper?: (wasm: Datapath, kernel: KernelDatapath) => void;
  /** The harness's own test only: changes one engine's maps after the reset between two sequences of one
   * state, before sequence `sequence` (≥ 1) — left-over state the run must report. */
  between?: (wasm: Datapath, kernel: KernelDatapath, sequence: number) => void;
}

/**
 * Runs `runs` random cases with `seed` through WASM and `mode`'s kernel engine, adding to `t`. A case is
 * one packet sequence; SEQUENCES of them run on one installed node state (a group, one fast-check run),
 * each from the state as installed: between two sequences the maps packets write (conntrack, SNAT,
 * affinity, fragments, metrics; the ring buffer is drained after every packet) are compared and emptied on
 * the kernel, the state's own entries of them written back, and the WASM instance is restored to its
 * snapshot taken after the install. So a sequence does exactly what it does alone: `--path <group>
 * --sequence <j>` replays case j of a group by itself. A failure is thrown with `diffCase` set to the
 * group and sequence it happened in (the first failure, before fast-check's shrinking).
 */
async function runCases(mode: Mode, seed: number, runs: number, t: Tally, opts: CaseOptions = {}): Promise<void> {
  const seen = (k: string) => t.outcomes.set(k, (t.outcomes.get(k) ?? 0) + 1);
  // The engines are loaded (seconds of verifier time, once per process) before the CPU clock starts.
  const kernel = mode.engine();
  const w = wasmOnce();
  const wasm = w.dp;
  kernel.reset();
  const before = kernel.runs;
  const groups = Math.ceil(runs / SEQUENCES);
  const firstGroup = opts.path ? Number(opts.path.split(":")[0]) : 0;
  let calls = 0;
  let failure: DiffCase | undefined;
  // Whether the kernel's packet maps are known empty (the last group drained them): then the next
  // group's reset leaves them unread.
  let drained = true;
  const profile = await startProfile();
  const cpu = process.cpuUsage();
  try {
    await fc.assert(
      fc.asyncProperty(nodeStateArb, fc.array(stepsArb, { minLength: SEQUENCES, maxLength: SEQUENCES }), async (state, sequences) => {
        const group = firstGroup + calls++;
        wasm.restore(w.fresh);
        kernel.reset(drained ? PACKET_MAPS : []);
        drained = false;
        installState(wasm, state, w.tables, DIFF_CONFIG_FLAGS);
        installState(kernel, state, w.tables, DIFF_CONFIG_FLAGS);
        opts.tamper?.(wasm, kernel);
        const installedWasm = (w.installed = wasm.snapshot(w.installed));
        const installedKernel = kernelInstalled(kernel);
        t.states++;
        let ran = 0;
        for (const [j, steps] of sequences.entries()) {
          if (opts.only !== undefined && j !== opts.only) continue;
          if (ran++ > 0) {
            // The kernel's packet maps were drained by the last comparison.
            for (const [raw, keys, values] of installedKernel) if (keys.length) raw.updateBatch(keys, values);
            wasm.restore(installedWasm);
            opts.between?.(wasm, kernel, j);
          }
          try {
            runSequence(steps, wasm, kernel, t, seen);
          } catch (e) {
            failure ??= { group, sequence: j };
            throw e;
          }
          t.cases++;
        }
        drained = true;
      }),
      { numRuns: groups, seed, path: opts.path },
    );
  } catch (e) {
    if (failure && typeof e === "object" && e !== null) Object.assign(e, { diffCase: failure });
    if (failure && !opts.tamper && !opts.between) {
      console.log(`differential: difference in case ${seed}/${failure.group}/${failure.sequence} (seed, group, sequence of ${SEQUENCES} a state); it replays alone with\n  npm run test:differential -- --seed ${seed} --path ${failure.group} --sequences ${SEQUENCES} --sequence ${failure.sequence}`);
    }
    throw e;
  } finally {
    t.executed += kernel.runs - before;
    const used = process.cpuUsage(cpu);
    t.cpuMicros += used.user + used.system;
    await profile?.();
  }
}

/** DIFF_CPU_PROFILE=<file>: a CPU profile (.cpuprofile, for Chrome's DevTools) of runCases after the
 * engines are loaded — node's --cpu-prof cannot be used, since its signals interrupt the verifier (the
 * object's load fails with EAGAIN). Returns the function that stops it and writes the file. */
async function startProfile(): Promise<(() => Promise<void>) | undefined> {
  const file = process.env.DIFF_CPU_PROFILE;
  if (!file) return undefined;
  const session = new Session();
  session.connect();
  await session.post("Profiler.enable");
  await session.post("Profiler.setSamplingInterval", { interval: 200 });
  await session.post("Profiler.start");
  return async () => {
    const { profile } = await session.post("Profiler.stop");
    writeFileSync(file, JSON.stringify(profile));
    session.disconnect();
  };
}

/** One packet sequence from the installed state: every packet compared on both engines, then the maps
 * packets write (the kernel's drained as they are read). */
function runSequence(steps: Step[], wasm: AbiDatapath, kernel: KernelDatapath, t: Tally, seen: (k: string) => void): void {
  let prevIn: Uint8Array | undefined;
  let prevOut: Uint8Array | undefined;
  let prevTunnel: TunnelKey | undefined;
  for (const s of steps) {
    const c = concretize(s, prevIn, prevOut, prevTunnel);
    if (!c) continue;
    prevIn = c.packet;
    prevOut = undefined;
    prevTunnel = undefined;
    let kr: KernelRunResult;
    try {
      kr = kernel.run(c.entry, c.packet, { now: s.now, srcIdentity: s.srcIdentity, tunnel: c.tunnel });
    } catch (e) {
      // Frames the kernel refuses before running any program are not compared (and not run on WASM,
      // so both keep the same state).
      if (e instanceof DatapathError && e.code === "PACKET_REJECTED_BY_KERNEL") {
        t.rejected++;
        continue;
      }
      throw e;
    }
    const wr = wasm.run(c.entry, c.packet, { now: s.now, srcIdentity: s.srcIdentity, tunnel: c.tunnel });
    if (wr.verdict !== 2) prevOut = wr.output;
    prevTunnel = wr.tunnel;
    t.compared++;
    seen(`${c.entry} ${wr.verdict === 2 ? `drop ${wr.dropReason}` : wr.verdict === 7 ? "redirect" : wr.verdict === C.CTX_ACT_TUNNEL ? "tunnel" : "ok"}`);
    if (wr.trace.traceFlags & C.TRACE_F_DNAT) seen("dnat");
    if (wr.trace.traceFlags & C.TRACE_F_REV_NAT) seen("rev-nat");
    if (wr.trace.ctState === C.CT_REPLY) seen("ct reply");
    if (wr.trace.ctState === C.CT_ESTABLISHED) seen("ct established");
    if (c.entry === "toNetwork" && wr.trace.traceFlags & C.TRACE_F_SNAT) seen("masquerade");
    if (c.entry === "fromNetwork" && wr.trace.traceFlags & C.TRACE_F_SNAT && wr.trace.obsPoint === C.TRACE_TO_ENDPOINT) seen("masquerade reply");
    // IPv6: masquerading to the node's IPv6 address, its replies, and the IPv6 NodePort (DNAT, SNAT to a
    // backend off the node, the reverse-translated reply).
    if (wr.trace.family === C.FAMILY_IPV6) {
      if (c.entry === "toNetwork" && wr.trace.traceFlags & C.TRACE_F_SNAT) seen("masquerade ipv6");
      if (c.entry === "fromNetwork" && wr.trace.traceFlags & C.TRACE_F_SNAT && wr.trace.obsPoint === C.TRACE_TO_ENDPOINT) seen("masquerade reply ipv6");
      if (c.entry === "fromNetwork" && wr.trace.traceFlags & C.TRACE_F_DNAT) seen(wr.trace.traceFlags & C.TRACE_F_SNAT ? "nodeport ipv6 snat" : "nodeport ipv6 dnat");
      if (c.entry === "fromNetwork" && (wr.trace.traceFlags & (C.TRACE_F_SNAT | C.TRACE_F_REV_NAT)) === (C.TRACE_F_SNAT | C.TRACE_F_REV_NAT)) seen("nodeport ipv6 reply");
    }
    // A later IPv4 fragment (non-zero offset) that went on with its first fragment's ports.
    const p = c.packet;
    const laterFragment = p.length >= 34 && p[12] === 0x08 && p[13] === 0x00 && (((p[20]! << 8) | p[21]!) & 0x1fff) !== 0;
    if (laterFragment && wr.verdict !== 2) seen(c.entry === "toNetwork" && wr.trace.traceFlags & C.TRACE_F_SNAT ? "later fragment masqueraded" : "later fragment passed");
    if (wr.trace.epId === HOST_EP_DIFF && (c.entry === "fromNetwork" || c.entry === "toNetwork")) {
      const way = c.entry === "fromNetwork" ? "ingress" : "egress";
      seen(`host firewall ${way} ${wr.verdict === 2 ? `drop ${wr.dropReason}` : wr.trace.ctState === C.CT_REPLY ? "reply" : "ok"}`);
    }
    // The source port is at bytes 34–35 of an IPv4 frame with its L4 header (not in a later fragment).
    if (c.entry === "toNetwork" && wr.trace.traceFlags & C.TRACE_F_SNAT && !laterFragment && p.length >= 36 && wr.output.length >= 36 && new DataView(wr.output.buffer, wr.output.byteOffset).getUint16(34) !== new DataView(c.packet.buffer, c.packet.byteOffset).getUint16(34)) seen("masquerade port changed");
    same({ verdict: kr.verdict, dropReason: kr.dropReason }, { verdict: wr.verdict, dropReason: wr.dropReason });
    const out = kr.output.subarray(0, c.packet.length);
    if (Buffer.compare(out, wr.output) !== 0) expect(Array.from(out)).toEqual(Array.from(wr.output));
    same(kr.trace, wr.trace);
    const xdp = c.entry === "fromNetwork" && kernel.xdp;
    const retval = xdp ? xdpAction(wr.verdict) : tcReturnCode(wr.verdict, DIFF_TUNNEL_IFINDEX, c.entry);
    if (kr.retval !== retval) expect(kr.retval, xdp ? "XDP action" : "tc return code").toBe(retval);
    // The tunnel key: WASM's from the seam, the kernel's read back from the skb after the run.
    same(kr.tunnel, wr.tunnel);
    // The ring buffer: the same flow events, in the same order.
    const ke = kernel.events();
    same(ke, wasm.events());
    t.events += ke.length;
  }
  // The kernel's maps are emptied as they are read (each read once); WASM is restored from its snapshot.
  same(sideEffects(kernel, (h) => (h as BpfMapHandle<never, never>).drain()), sideEffects(wasm));
}

/** Cases per second of this process's CPU time (the wall clock says little on a shared machine). */
const casesPerCpuSecond = (t: Tally) => Number((t.cases / Math.max(1e-6, t.cpuMicros / 1e6)).toFixed(1));

function report(name: string, seed: number | string, t: Tally): void {
  console.log(`differential (${name}) seed ${seed}: ${t.cases} cases on ${t.states} node states (${SEQUENCES} packet sequences a state), ${t.compared} packets compared, ${t.events} events compared, ${t.rejected} refused by the kernel, ${t.executed} kernel runs, ${(t.cpuMicros / 1000 / Math.max(1, t.cases)).toFixed(2)} ms CPU a case (${casesPerCpuSecond(t)} cases per CPU-second)`);
  console.log(`outcomes: ${[...t.outcomes].sort((a, b) => b[1] - a[1]).map(([k, n]) => `${k}: ${n}`).join(", ")}`);
}

/** What every run must show: the outcomes reached, the kernel really running every compared packet. */
function checkTally(t: Tally, kernel: KernelDatapath, replay = false): void {
  // The kernel really ran every compared packet.
  expect(t.executed).toBe(t.compared);
  // A replayed group or case is whatever it is; the rest is for runs of random cases.
  if (replay) return;
  if (t.cases >= 1000) for (const k of REQUIRED_OUTCOMES) expect(t.outcomes.get(k) ?? 0, `outcome "${k}" reached`).toBeGreaterThan(0);
  expect(t.compared).toBeGreaterThan(t.cases);
  expect(t.events).toBeGreaterThan(0);
  // Side effects are compared from map dumps; make sure the dumps are not trivially empty.
  expect(MAP_SPECS.Conntrack.bpfName).toBe("ciliate_ct_v1");
  // sideEffects compares the metrics array's non-zero indexes: the same capacity on both sides.
  expect((kernel.map(MAP_SPECS.Metrics) as BpfMapHandle<MetricsKey, MetricsValue>).raw.info.maxEntries).toBe(wasmOnce().dp.map(MAP_SPECS.Metrics).count());
}

const tally = (): Tally => ({ cases: 0, states: 0, compared: 0, events: 0, rejected: 0, executed: 0, cpuMicros: 0, outcomes: new Map() });
// DIFF_LONG=1 is set only by `npm run test:differential:long` (scripts/differential.mjs): that process runs the
// chunked long run instead of the CI-sized suites below; `npm test` never sets it, so CI always runs both modes.
const LONG = process.env.DIFF_LONG === "1";

if (!LONG) describe.skipIf(k.skip).each(MODES)("wasm and kernel agree ($name)", (mode) => {
  it(`on random maps and packets (${RUNS} cases)`, async () => {
    const t = tally();
    await runCases(mode, SEED, RUNS, t, { path: process.env.DIFF_PATH, only: ONLY_SEQUENCE });
    report(mode.name, SEED, t);
    checkTally(t, mode.engine(), process.env.DIFF_PATH !== undefined);
  }, TIMEOUT_MS);
});

/** A metrics slot no differential packet reaches (reason 255, direction 3): written on one side only. */
const UNREACHED_METRIC = { reason: 255, dir: 3 };

// The comparisons can still fail: each injected difference (on one engine only, after the state is
// installed) must make the property fail, whatever the packets do. The metrics slot is written in the
// kernel's second CPU slot (not CPU 0, which the typed handle writes), so the kernel side's all-zero
// skipping and per-CPU sum are exercised too.
if (!LONG) describe.skipIf(k.skip)("the differential still reports a difference", () => {
  const cases: [string, string, (wasm: Datapath, kernel: KernelDatapath) => void][] = [
    ["a metrics counter in another CPU's slot (kernel only)", "metrics", (_w, kernel) => {
      const raw = (kernel.map(MAP_SPECS.Metrics) as BpfMapHandle<MetricsKey, MetricsValue>).raw;
      const stride = (raw.info.valueSize + 7) & ~7;
      const all = new Uint8Array(raw.cpus * stride);
      all.set(MAP_SPECS.Metrics.value.encode({ packets: 1n }), (raw.cpus - 1) * stride);
      raw.update(MAP_SPECS.Metrics.key.encode(UNREACHED_METRIC), all);
    }],
    ["a metrics counter (WASM only)", "metrics", (wasm) => wasm.map(MAP_SPECS.Metrics).update(UNREACHED_METRIC, { bytes: 1n })],
    ["a conntrack entry (kernel only)", "ct", (_w, kernel) => kernel.map(MAP_SPECS.Conntrack).update({ saddr: new Uint8Array(16).fill(7), daddr: new Uint8Array(16).fill(9), sport: 1, dport: 2, nexthdr: 6, family: C.FAMILY_IPV4 }, { lifetime: 1 })],
    ["every packet denied by policy (kernel only)", "verdict", (_w, kernel) => { for (const epId of [1, 2, 3, HOST_EP_DIFF]) for (const egress of [true, false]) addPolicy(kernel, { epId, egress, identity: 0, deny: true }); }],
  ];
  it.each(cases)("%s", async (_name, part, tamper) => {
    const t = tally();
    // A fixed seed: the same 20 cases on every run.
    const e = await runCases(MODES[0]!, 20261207, 20, t, { tamper }).then(() => undefined, (x: Error) => x);
    expectFailureIn(e, part);
  }, 120_000);

  // Between two sequences of one state only the maps packets write are reset: an entry left over in one
  // engine's conntrack map (one that no packet sends: the comparison after the next sequence must see it,
  // not a packet that happens to meet it) must fail that next sequence — not the first, which ran clean.
  it("a conntrack entry left over between two sequences of one state (kernel only)", async () => {
    const t = tally();
    const leftover = { saddr: addrBytes16("172.16.0.1"), daddr: addrBytes16("172.17.0.1"), sport: 30000, dport: 80, nexthdr: C.IPPROTO_TCP, flags: C.TUPLE_F_OUT, family: C.FAMILY_IPV4 };
    const between = (_w: Datapath, kernel: KernelDatapath) => kernel.map(MAP_SPECS.Conntrack).update(leftover, { lifetime: 1_000_000, srcSecId: 2 });
    const e = await runCases(MODES[0]!, 20261207, 20, t, { between }).then(() => undefined, (x: Error) => x);
    expectFailureIn(e, "ct");
    const at = (e as Error & { diffCase?: DiffCase }).diffCase;
    expect(at?.sequence, "the failing sequence is one after a reset").toBeGreaterThan(0);
    // Every case before it passed: the first sequence of the first group ran with nothing injected.
    expect(t.cases).toBeGreaterThan(0);
  }, 120_000);
});

/** The run failed (fast-check's "Property failed") on the comparison of `part`: vitest's assertion error,
 * fast-check's cause, has different `part`s. */
function expectFailureIn(e: Error | undefined, part: string): void {
  expect(e?.message).toMatch(/Property failed/);
  const cause = (e as Error & { cause?: { actual?: Record<string, unknown>; expected?: Record<string, unknown> } }).cause;
  const text = (x: unknown) => JSON.stringify(x, (_, v) => (typeof v === "bigint" ? v.toString() : v));
  expect(cause?.actual && part in cause.actual, `the failing comparison has a "${part}" part`).toBe(true);
  expect(text(cause?.actual?.[part])).not.toBe(text(cause?.expected?.[part]));
}

// Defined only in long mode, so that an ordinary run has no skipped test for it.
if (LONG) describe.skipIf(k.skip)("wasm and kernel agree, long run (tc programs)", () => {
  it(`${RUNS} cases in chunks`, async () => {
    const chunk = Number(process.env.DIFF_CHUNK ?? 10_000);
    const deadline = process.env.DIFF_DEADLINE ? Number(process.env.DIFF_DEADLINE) : Infinity;
    const out = process.env.DIFF_RESULT;
    const t = tally();
    const started = Date.now();
    const chunks: { seed: number; cases: number }[] = [];
    const write = (status: string) => {
      if (!out) return;
      mkdirSync(dirname(out), { recursive: true });
      const result = {
        suite: "tests/differential/kernel.test.ts (tc programs)",
        status,
        seed: SEED,
        chunkSize: chunk,
        chunks,
        sequencesPerState: SEQUENCES,
        replay: `npm run test:differential -- --seed <chunk seed> --path <group> --sequences ${SEQUENCES} --sequence <j>  (case <chunk seed>/<group>/<j>: group g of a chunk is fast-check's run g, its cases g*${SEQUENCES}..g*${SEQUENCES}+${SEQUENCES - 1}; a whole chunk: npm run test:differential -- --seed <chunk seed> --runs <chunk cases> --sequences ${SEQUENCES})`,
        states: t.states,
        casesRequested: RUNS,
        cases: t.cases,
        packets: t.compared,
        events: t.events,
        refusedByKernel: t.rejected,
        kernelRuns: t.executed,
        differences: 0,
        durationSeconds: Math.round((Date.now() - started) / 1000),
        casesPerSecond: Number((t.cases / Math.max(1, (Date.now() - started) / 1000)).toFixed(1)),
        cpuSeconds: Math.round(t.cpuMicros / 1e6),
        casesPerCpuSecond: casesPerCpuSecond(t),
        outcomes: Object.fromEntries([...t.outcomes].sort((a, b) => b[1] - a[1])),
        host: { cpus: availableParallelism(), loadAverage: loadavg().map((x) => Number(x.toFixed(1))) },
        finishedAt: new Date().toISOString(),
      };
      writeFileSync(`${out}.tmp`, JSON.stringify(result, null, 2) + "\n");
      renameSync(`${out}.tmp`, out);
    };
    for (let i = 0; t.cases < RUNS && Date.now() < deadline; i++) {
      const seed = (SEED + i) | 0;
      const runs = Math.min(chunk, RUNS - t.cases);
      try {
        await runCases(MODES[0]!, seed, runs, t);
      } catch (e) {
        // A difference: the chunk's seed and fast-check's path replay it; the file says so.
        chunks.push({ seed, cases: runs });
        write(`difference in chunk seed ${seed}: ${String((e as Error).message).split("\n").slice(0, 3).join(" ")}`);
        throw e;
      }
      chunks.push({ seed, cases: runs });
      write(t.cases >= RUNS ? "complete" : "running");
      report(`tc programs, ${chunks.length} chunks`, SEED, t);
    }
    write(t.cases >= RUNS ? "complete" : "stopped at the deadline");
    checkTally(t, MODES[0]!.engine());
  }, 0);
});
