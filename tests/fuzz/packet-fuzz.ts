/*
 * The packet fuzzer: hostile frames (tests/fuzz/frames.ts) through the WASM build of core and through the
 * generated eBPF in the kernel (BPF_PROG_TEST_RUN), frame by frame, on one loaded object. For every frame
 * both engines must agree on verdict, drop reason, the tc return code, the output bytes, the trace record
 * and the flow events written to the ring buffer; at the end of every epoch, on the map side effects
 * (conntrack, SNAT, affinity, counters). A fault — an engine throwing, the WASM build aborting, the kernel
 * refusing to run — is a failure like a difference. Frames the kernel refuses before running any program
 * (shorter than an Ethernet header, or an IP ethertype with less than a minimal IP header: net/bpf/test_run.c)
 * must be drops of DROP_INVALID on WASM, so nothing the kernel would not see is silently skipped.
 *
 * The stream is split into epochs: each starts from empty maps and a node state drawn from the seed, so a
 * failure replays alone with FUZZ_SEED=<seed> FUZZ_EPOCH=<epoch>.
 */
import fc from "fast-check";
import { createWasmDatapath } from "../../sim/engines.ts";
import type { AbiDatapath } from "../../host/abi-datapath.ts";
import { DatapathError, type EntryPoint, type RunResult } from "../../host/datapath.ts";
import type { TraceRecord } from "../../host/codecs.gen.ts";
import * as C from "../../host/constants.gen.ts";
import { KernelDatapath, tcReturnCode, type KernelRunResult } from "../../datapath/kernel-engine.ts";
import { DIFF_CONFIG_FLAGS, DIFF_TUNNEL_IFINDEX, installState, maglevTables, nodeStateArb, sideEffects, SMALL_CAPACITIES, V4_PODS, V6_PODS, VIPS } from "../differential/arbitraries.ts";
import { fuzzFrame, type FrameAddresses } from "./frames.ts";

export const FUZZ_ADDRESSES: FrameAddresses = {
  local4: [V4_PODS[0]!, V4_PODS[1]!],
  remote4: [V4_PODS[2]!, V4_PODS[3]!, ...VIPS, "203.0.113.9", "198.51.100.1"],
  local6: [V6_PODS[0]!],
  remote6: [V6_PODS[1]!, "2001:db8::9"],
};

/** Far above what one epoch can fill, so no LRU map evicts: the kernel's LRU is approximate and ours
 * exact, so at capacity they would evict different entries (not compared yet: docs/reliability.md). */
export const FUZZ_CAPACITIES: Record<string, number> = { ...SMALL_CAPACITIES, ct: 16384, snat: 8192, metrics: 4096, frag_datagrams: 8192 };

export interface PacketFuzzOptions {
  seed: number;
  frames: number;
  /** Frames per epoch (fresh maps and node state). */
  epochSize?: number;
  /** Run only this epoch (replaying a failure). */
  onlyEpoch?: number;
  /** Called after every epoch. */
  progress?: (done: number, report: PacketFuzzReport) => void;
  /** Epoch ms after which no new epoch starts (a long run stopped for time ends on a finished epoch). */
  deadline?: number;
}

export interface PacketFuzzReport {
  seed: number;
  frames: number;
  compared: number;
  refusedByKernel: number;
  events: number;
  epochs: number;
  kernelRuns: number;
  /** "entry verdict/reason" → count, to show which paths the frames reached. */
  outcomes: Map<string, number>;
}

export class FuzzDifference extends Error {}

function traceEqual(a: TraceRecord, b: TraceRecord): string | undefined {
  for (const k of Object.keys(a) as (keyof TraceRecord)[]) {
    const x = a[k];
    const y = b[k];
    if (x instanceof Uint8Array && y instanceof Uint8Array) {
      if (x.length !== y.length || x.some((v, i) => v !== y[i])) return k;
    } else if (x !== y) return k;
  }
  return undefined;
}

function hex(b: Uint8Array): string {
  return Buffer.from(b).toString("hex");
}

type Events = { events(): TraceRecord[] };

/** One loaded kernel object serves the whole run; `reset` empties it between epochs. */
export class PacketFuzzer {
  private readonly kernel: KernelDatapath;

  constructor() {
    this.kernel = new KernelDatapath({ capacities: FUZZ_CAPACITIES });
  }

  close(): void {
    this.kernel.close();
  }

  run(opts: PacketFuzzOptions): PacketFuzzReport {
    const epochSize = opts.epochSize ?? 2000;
    const report: PacketFuzzReport = { seed: opts.seed, frames: 0, compared: 0, refusedByKernel: 0, events: 0, epochs: 0, kernelRuns: 0, outcomes: new Map() };
    const runsBefore = this.kernel.runs;
    const epochs = Math.ceil(opts.frames / epochSize);
    for (let e = 0; e < epochs; e++) {
      if (opts.onlyEpoch !== undefined && e !== opts.onlyEpoch) continue;
      if (opts.deadline !== undefined && Date.now() >= opts.deadline) break;
      this.epoch(opts.seed, e, e * epochSize, Math.min(opts.frames, (e + 1) * epochSize), report);
      report.epochs++;
      opts.progress?.(report.frames, report);
    }
    report.kernelRuns = this.kernel.runs - runsBefore;
    return report;
  }

  private epoch(seed: number, epoch: number, from: number, to: number, report: PacketFuzzReport): void {
    const where = (i: number) => `seed ${seed}, epoch ${epoch}, frame ${i} (replay: FUZZ_SEED=${seed} FUZZ_EPOCH=${epoch})`;
    const [state] = fc.sample(nodeStateArb, { seed: (seed ^ Math.imul(epoch + 1, 0x27d4eb2d)) | 0, numRuns: 1 });
    const kernel = this.kernel;
    kernel.reset();
    const wasm = createWasmDatapath({ capacities: FUZZ_CAPACITIES });
    // Frames the kernel refuses run on a second WASM node with the same state, so the compared nodes stay
    // identical (a drop still bumps a counter).
    const probe = createWasmDatapath({ capacities: FUZZ_CAPACITIES });
    const table = maglevTables(wasm);
    for (const dp of [wasm, probe, kernel]) installState(dp, state!, table, DIFF_CONFIG_FLAGS);
    (kernel as unknown as Events).events();
    let now = 1;
    for (let i = from; i < to; i++) {
      const f = fuzzFrame(seed, i, FUZZ_ADDRESSES);
      now += (i * 2654435761) % 7;
      const run = { now, srcIdentity: f.srcIdentity };
      const what = () => `${where(i)}: ${f.entry} ${f.log.join("; ")} [${hex(f.frame)}]`;
      report.frames++;
      let kr: KernelRunResult;
      try {
        kr = kernel.run(f.entry, f.frame, run);
      } catch (err) {
        if (err instanceof DatapathError && err.code === "PACKET_REJECTED_BY_KERNEL") {
          report.refusedByKernel++;
          const pr = this.wasmRun(probe, f.entry, f.frame, run, what);
          if (pr.verdict !== C.CTX_ACT_DROP || pr.dropReason !== C.DROP_INVALID) {
            throw new FuzzDifference(`kernel refused the frame but WASM gave verdict ${pr.verdict} reason ${pr.dropReason}, not a drop as invalid: ${what()}`);
          }
          (probe as Events).events();
          continue;
        }
        throw new FuzzDifference(`kernel fault ${String(err)}: ${what()}`);
      }
      const wr = this.wasmRun(wasm, f.entry, f.frame, run, what);
      report.compared++;
      const o = `${f.entry} ${wr.verdict === 2 ? `drop ${wr.dropReason}` : wr.verdict === 7 ? "redirect" : "ok"}`;
      report.outcomes.set(o, (report.outcomes.get(o) ?? 0) + 1);
      if (kr.verdict !== wr.verdict || kr.dropReason !== wr.dropReason) {
        throw new FuzzDifference(`verdict kernel ${kr.verdict}/${kr.dropReason} vs wasm ${wr.verdict}/${wr.dropReason}: ${what()}`);
      }
      if (kr.retval !== tcReturnCode(wr.verdict, DIFF_TUNNEL_IFINDEX)) throw new FuzzDifference(`tc return code ${kr.retval} but verdict ${wr.verdict}: ${what()}`);
      if (JSON.stringify(kr.tunnel) !== JSON.stringify(wr.tunnel)) throw new FuzzDifference(`tunnel key kernel ${JSON.stringify(kr.tunnel)} vs wasm ${JSON.stringify(wr.tunnel)}: ${what()}`);
      if (kr.output.length !== wr.output.length || hex(kr.output) !== hex(wr.output)) {
        throw new FuzzDifference(`output kernel ${hex(kr.output)} vs wasm ${hex(wr.output)}: ${what()}`);
      }
      const field = traceEqual(kr.trace, wr.trace);
      if (field) throw new FuzzDifference(`trace field ${field}: kernel ${String(kr.trace[field as keyof TraceRecord])} vs wasm ${String(wr.trace[field as keyof TraceRecord])}: ${what()}`);
      const ke = (kernel as unknown as Events).events();
      const we = (wasm as Events).events();
      if (ke.length !== we.length) throw new FuzzDifference(`events: kernel ${ke.length} vs wasm ${we.length}: ${what()}`);
      for (let j = 0; j < ke.length; j++) {
        const d = traceEqual(ke[j]!, we[j]!);
        if (d) throw new FuzzDifference(`event ${j} field ${d} differs: ${what()}`);
      }
      report.events += ke.length;
    }
    const ks = JSON.stringify(sideEffects(kernel));
    const ws = JSON.stringify(sideEffects(wasm));
    if (ks !== ws) throw new FuzzDifference(`map side effects differ after ${where(to - 1)}:\nkernel ${ks}\nwasm   ${ws}`);
    wasm.close();
    probe.close();
  }

  private wasmRun(dp: AbiDatapath, entry: EntryPoint, frame: Uint8Array, run: { now: number; srcIdentity: number }, what: () => string): RunResult {
    try {
      return dp.run(entry, frame, run);
    } catch (err) {
      throw new FuzzDifference(`WASM fault ${String(err)}: ${what()}`);
    }
  }
}
