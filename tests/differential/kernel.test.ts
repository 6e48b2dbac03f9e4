/*
 * The central promise: the eBPF programs generated from core/ decide exactly what the WASM build decides.
 * Random node state (policies with wildcards, ranges and denies; ipcache prefixes; services with random and
 * Maglev selection, affinity and backend states) and random packet sequences (valid TCP/UDP/SCTP/ICMP over
 * IPv4 and IPv6, replies, truncations, corruptions, garbage) run through both; verdict, drop reason, output
 * bytes, trace record, tc return code, flow events in the ring buffer and map side effects (conntrack,
 * counters, affinity, SNAT) and the tunnel key an encapsulated packet carries must be identical; masquerading
 * (toNetwork SNAT with port collisions, fromNetwork's reverse SNAT) and the host firewall (the node's own
 * connections through the device, judged by the host endpoint's entries, and their replies) are in the
 * sequences (arbitraries.ts), with both sides at the same virtual time. Every run prints
 * its seed (DIFF_SEED=<seed> replays the run); a failure also prints fast-check's shrunk counterexample and
 * path: DIFF_SEED=<seed> DIFF_PATH=<path> replays that one case.
 * Runs: DIFF_KERNEL_RUNS (default 5000; `npm run test:differential -- --runs 100000` for a long run).
 * Long mode (`npm run test:differential:long -- --cases N --seed S`, scripts/differential.mjs): the tc
 * programs only, in chunks of DIFF_CHUNK cases (default 10,000), chunk k with seed S+k (so each chunk, and
 * with its path each case, replays alone), until N cases or the DIFF_DEADLINE (epoch ms) passes; after every
 * chunk the cumulative result (cases, packets, events, differences, seeds, duration, outcomes reached) is
 * written to DIFF_RESULT, so a run stopped for time still records every finished chunk.
 * The property runs twice: with the tc programs, and with fromNetwork through the XDP program (the agent's
 * --xdp-acceleration), whose return code is the XDP action for the verdict (XDP_DROP / XDP_PASS).
 */
import { mkdirSync, renameSync, writeFileSync } from "node:fs";
import { availableParallelism, loadavg } from "node:os";
import { dirname } from "node:path";
import { isDeepStrictEqual } from "node:util";
import { afterAll, describe, expect, it } from "vitest";
import fc from "fast-check";
import { createWasmDatapath } from "../../sim/engines.ts";
import { DatapathError, type Datapath, type TunnelKey } from "../../host/datapath.ts";
import { MAP_SPECS, type MetricsKey, type MetricsValue } from "../../host/codecs.gen.ts";
import type { BpfMapHandle } from "../../datapath/bpf-map.ts";
import { addPolicy } from "../conformance/fixture.ts";
import * as C from "../../host/constants.gen.ts";
import { kernelSuite } from "../../datapath/preflight.ts";
import { KernelDatapath, tcReturnCode, xdpAction, type KernelRunResult } from "../../datapath/kernel-engine.ts";
import { concretize, DIFF_CONFIG_FLAGS, DIFF_TUNNEL_IFINDEX, HOST_EP_DIFF, installState, maglevTables, nodeStateArb, sideEffects, SMALL_CAPACITIES, stepsArb } from "./arbitraries.ts";
import { kernelRuns, sharedKernel, TEST_CAPACITIES } from "../conformance/backends.ts";

const RUNS = Number(process.env.DIFF_KERNEL_RUNS ?? 5000);
const SEED = process.env.DIFF_SEED ? Number(process.env.DIFF_SEED) : (Date.now() ^ (process.pid << 10)) | 0;
// 5000 cases take about a minute; the suite timeout scales with the run count.
const TIMEOUT_MS = Math.max(120_000, RUNS * 60);
const k = kernelSuite("differential wasm vs kernel", ["root", "libbpf", "bpffs", "clang"]);

let xdpKernel: KernelDatapath | undefined;
afterAll(() => xdpKernel?.close());
/** The XDP engine, loaded once and emptied for each case (as sharedKernel). */
function sharedXdpKernel(): KernelDatapath {
  xdpKernel ??= new KernelDatapath({ capacities: TEST_CAPACITIES, xdp: true });
  xdpKernel.reset();
  return xdpKernel;
}

const MODES = [
  { name: "tc programs", kernel: sharedKernel, runs: () => kernelRuns() },
  { name: "fromNetwork at XDP", kernel: sharedXdpKernel, runs: () => xdpKernel?.runs ?? 0 },
];

interface Tally {
  cases: number;
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

/** Runs `runs` random cases with `seed` through WASM and `mode`'s kernel engine, adding to `t`. `tamper`
 * (the harness's own test only) changes one engine's maps after the state is installed: a difference the
 * run must then report. */
async function runCases(mode: (typeof MODES)[number], seed: number, runs: number, t: Tally, path?: string, tamper?: (wasm: Datapath, kernel: KernelDatapath) => void): Promise<void> {
  const seen = (k: string) => t.outcomes.set(k, (t.outcomes.get(k) ?? 0) + 1);
  const before = mode.runs();
  // The engine is loaded (seconds of verifier time, once per process) before the CPU clock starts.
  mode.kernel();
  const cpu = process.cpuUsage();
  await fc.assert(
    fc.asyncProperty(nodeStateArb, stepsArb, async (state, steps) => {
      const wasm = createWasmDatapath({ capacities: SMALL_CAPACITIES });
      const kernel = mode.kernel();
      const table = maglevTables(wasm);
      installState(wasm, state, table, DIFF_CONFIG_FLAGS);
      installState(kernel, state, table, DIFF_CONFIG_FLAGS);
      tamper?.(wasm, kernel as KernelDatapath);
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
          kr = (kernel as KernelDatapath).run(c.entry, c.packet, { now: s.now, srcIdentity: s.srcIdentity, tunnel: c.tunnel });
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
        if (!isDeepStrictEqual(out, wr.output)) expect(Array.from(out)).toEqual(Array.from(wr.output));
        same(kr.trace, wr.trace);
        const xdp = c.entry === "fromNetwork" && (kernel as KernelDatapath).xdp;
        expect(kr.retval, xdp ? "XDP action" : "tc return code").toBe(xdp ? xdpAction(wr.verdict) : tcReturnCode(wr.verdict, DIFF_TUNNEL_IFINDEX, c.entry));
        // The tunnel key: WASM's from the seam, the kernel's read back from the skb after the run.
        same(kr.tunnel, wr.tunnel);
        // The ring buffer: the same flow events, in the same order.
        const ke = (kernel as KernelDatapath).events();
        same(ke, wasm.events());
        t.events += ke.length;
      }
      same(sideEffects(kernel), sideEffects(wasm));
      wasm.close();
    }),
    { numRuns: runs, seed, path },
  );
  t.cases += runs;
  t.executed += mode.runs() - before;
  const used = process.cpuUsage(cpu);
  t.cpuMicros += used.user + used.system;
}

/** Cases per second of this process's CPU time (the wall clock says little on a shared machine). */
const casesPerCpuSecond = (t: Tally) => Number((t.cases / Math.max(1e-6, t.cpuMicros / 1e6)).toFixed(1));

function report(name: string, seed: number | string, t: Tally): void {
  console.log(`differential (${name}) seed ${seed}: ${t.cases} cases, ${t.compared} packets compared, ${t.events} events compared, ${t.rejected} refused by the kernel, ${t.executed} kernel runs, ${(t.cpuMicros / 1000 / Math.max(1, t.cases)).toFixed(2)} ms CPU a case (${casesPerCpuSecond(t)} cases per CPU-second)`);
  console.log(`outcomes: ${[...t.outcomes].sort((a, b) => b[1] - a[1]).map(([k, n]) => `${k}: ${n}`).join(", ")}`);
}

/** What every run must show: the outcomes reached, the kernel really running every compared packet. */
function checkTally(t: Tally): void {
  if (t.cases >= 1000) for (const k of REQUIRED_OUTCOMES) expect(t.outcomes.get(k) ?? 0, `outcome "${k}" reached`).toBeGreaterThan(0);
  // The comparison is only meaningful if the kernel really ran most packets.
  expect(t.executed).toBe(t.compared);
  expect(t.compared).toBeGreaterThan(t.cases);
  expect(t.events).toBeGreaterThan(0);
  // Side effects are compared from map dumps; make sure the dumps are not trivially empty.
  expect(MAP_SPECS.Conntrack.bpfName).toBe("ciliate_ct_v1");
  // sideEffects compares the metrics array's non-zero indexes: the same capacity on both sides.
  expect(SMALL_CAPACITIES.metrics).toBe(TEST_CAPACITIES.metrics);
}

const tally = (): Tally => ({ cases: 0, compared: 0, events: 0, rejected: 0, executed: 0, cpuMicros: 0, outcomes: new Map() });
// DIFF_LONG=1 is set only by `npm run test:differential:long` (scripts/differential.mjs): that process runs the
// chunked long run instead of the CI-sized suites below; `npm test` never sets it, so CI always runs both modes.
const LONG = process.env.DIFF_LONG === "1";

if (!LONG) describe.skipIf(k.skip).each(MODES)("wasm and kernel agree ($name)", (mode) => {
  it(`on random maps and packets (${RUNS} cases)`, async () => {
    const t = tally();
    await runCases(mode, SEED, RUNS, t, process.env.DIFF_PATH);
    report(mode.name, SEED, t);
    checkTally(t);
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
    const e = await runCases(MODES[0]!, 20261207, 20, t, undefined, tamper).then(() => undefined, (x: Error) => x);
    expect(e?.message).toMatch(/Property failed/);
    // The failing comparison is the one the injection touched (vitest's assertion error, fast-check's cause).
    const cause = (e as Error & { cause?: { actual?: Record<string, unknown>; expected?: Record<string, unknown> } }).cause;
    expect(JSON.stringify(cause?.actual?.[part], (_, x) => (typeof x === "bigint" ? x.toString() : x))).not.toBe(JSON.stringify(cause?.expected?.[part], (_, x) => (typeof x === "bigint" ? x.toString() : x)));
  }, 120_000);
});

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
        replay: "DIFF_SEED=<chunk seed> npm run test:differential -- --runs <chunk cases> [--path <path printed on a failure>]",
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
    checkTally(t);
  }, 0);
});
