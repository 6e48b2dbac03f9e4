/*
 * BPF_PROG_TEST_RUN through bpf_prog_test_run_opts: runs a loaded program on a packet without attaching
 * it. Returns the program's return value, the packet as the program left it (data_out), the context after
 * the run (ctx_out), and — with `repeat` — the average run time in nanoseconds, which is what the
 * benchmarks use.
 *
 * tc programs (BPF_PROG_TYPE_SCHED_CLS) take a `struct __sk_buff` context. The kernel accepts only a few of
 * its fields as input and requires every other byte to be zero (net/bpf/test_run.c, convert___skb_to_skb):
 * mark, priority, ingress_ifindex, ifindex, cb[5], tstamp, wire_len, gso_segs, gso_size, hwtstamp. SkbContext
 * carries exactly those, so an encoded context is always accepted. The packet must start with an Ethernet
 * header (the kernel runs eth_type_trans on it) and be at least 14 bytes long.
 * XDP and other program types take a raw context (Uint8Array) or none.
 */
import { bpfError, BpfError, BpfErrorCode } from "./errors.ts";
import { BpfTestRunOpts, koffi, libbpf } from "./libbpf.ts";

/** The input fields of struct __sk_buff that BPF_PROG_TEST_RUN accepts (uapi linux/bpf.h offsets). */
export interface SkbContext {
  mark?: number;
  priority?: number;
  ingressIfindex?: number;
  ifindex?: number;
  /** Up to five u32 words, the skb control block (Cilium carries identities in cb[]). */
  cb?: number[];
  tstamp?: bigint;
  wireLen?: number;
  gsoSegs?: number;
  gsoSize?: number;
  hwtstamp?: bigint;
}

/** sizeof(struct __sk_buff) since Linux 5.16 (hwtstamp). Field offsets below are from uapi linux/bpf.h. */
export const SKB_CTX_SIZE = 192;
const OFF = { mark: 8, priority: 32, ingressIfindex: 36, ifindex: 40, cb: 48, tstamp: 152, wireLen: 160, gsoSegs: 164, gsoSize: 176, hwtstamp: 184 } as const;

/** Encodes an SkbContext as a zeroed struct __sk_buff with only the accepted fields set. */
export function encodeSkbContext(ctx: SkbContext): Uint8Array {
  const out = new Uint8Array(SKB_CTX_SIZE);
  const dv = new DataView(out.buffer);
  dv.setUint32(OFF.mark, (ctx.mark ?? 0) >>> 0, true);
  dv.setUint32(OFF.priority, (ctx.priority ?? 0) >>> 0, true);
  dv.setUint32(OFF.ingressIfindex, (ctx.ingressIfindex ?? 0) >>> 0, true);
  dv.setUint32(OFF.ifindex, (ctx.ifindex ?? 0) >>> 0, true);
  const cb = ctx.cb ?? [];
  if (cb.length > 5) throw new BpfError(BpfErrorCode.BadArgument, `__sk_buff.cb has 5 words, got ${cb.length}`);
  for (let i = 0; i < cb.length; i++) dv.setUint32(OFF.cb + 4 * i, cb[i]! >>> 0, true);
  dv.setBigUint64(OFF.tstamp, ctx.tstamp ?? 0n, true);
  dv.setUint32(OFF.wireLen, (ctx.wireLen ?? 0) >>> 0, true);
  dv.setUint32(OFF.gsoSegs, (ctx.gsoSegs ?? 0) >>> 0, true);
  dv.setUint32(OFF.gsoSize, (ctx.gsoSize ?? 0) >>> 0, true);
  dv.setBigUint64(OFF.hwtstamp, ctx.hwtstamp ?? 0n, true);
  return out;
}

/** Decodes the accepted fields of a struct __sk_buff (ctx_out). */
export function decodeSkbContext(bytes: Uint8Array): Required<SkbContext> {
  const dv = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength);
  return {
    mark: dv.getUint32(OFF.mark, true),
    priority: dv.getUint32(OFF.priority, true),
    ingressIfindex: dv.getUint32(OFF.ingressIfindex, true),
    ifindex: dv.getUint32(OFF.ifindex, true),
    cb: [0, 1, 2, 3, 4].map((i) => dv.getUint32(OFF.cb + 4 * i, true)),
    tstamp: dv.getBigUint64(OFF.tstamp, true),
    wireLen: dv.getUint32(OFF.wireLen, true),
    gsoSegs: dv.getUint32(OFF.gsoSegs, true),
    gsoSize: dv.getUint32(OFF.gsoSize, true),
    hwtstamp: dv.getBigUint64(OFF.hwtstamp, true),
  };
}

export interface TestRunOptions {
  /** The packet (from the Ethernet header for tc and XDP programs). */
  data: Uint8Array;
  /** tc: an SkbContext; other program types: raw context bytes. Omitted: no context (kernel defaults). */
  ctx?: SkbContext | Uint8Array;
  /** Room for the output packet; default data.length + 256 (programs may add headers). */
  dataOutSize?: number;
  /** Runs the program this many times (≥ 1); duration is the average. Default 1. */
  repeat?: number;
  /** BPF_F_TEST_RUN_ON_CPU (1) / BPF_F_TEST_XDP_LIVE_FRAMES (2). With live frames (XDP only, Linux 5.18+)
   * the kernel sends the frames on: XDP_PASS into the stack of the ingress device, XDP_TX / XDP_REDIRECT out
   * of a device; no packet or context comes back (the kernel requires data_out and ctx_out to be NULL). */
  flags?: number;
  cpu?: number;
  /** Live frames: frames per batch (kernel default 64 when 0). */
  batchSize?: number;
}

/** BPF_F_TEST_XDP_LIVE_FRAMES (uapi linux/bpf.h). */
export const BPF_F_TEST_XDP_LIVE_FRAMES = 2;

export interface TestRunResult {
  /** The program's return value (TC_ACT_OK 0, TC_ACT_SHOT 2, TC_ACT_REDIRECT 7; XDP_PASS 2 …). */
  retval: number;
  /** The packet after the program ran. */
  data: Uint8Array;
  /** The context after the run: decoded for an SkbContext input, raw bytes otherwise. */
  ctx?: Required<SkbContext>;
  ctxRaw?: Uint8Array;
  /** Average nanoseconds per run as measured by the kernel. */
  duration: number;
}

/** Native buffers reused by testRun (slot → pointer and capacity); they grow, never shrink. */
const buffers: { ptr: unknown; size: number }[] = [];

function scratch(slot: number, size: number): unknown {
  const b = buffers[slot];
  if (b && b.size >= size) return b.ptr;
  if (b) koffi.free(b.ptr as never);
  const cap = Math.max(size, 256);
  buffers[slot] = { ptr: koffi.alloc("uint8", cap), size: cap };
  return buffers[slot]!.ptr;
}

/**
 * Runs a loaded program once (or `repeat` times). Throws BpfError BPF_TEST_RUN_FAILED with the errno
 * (EINVAL: bad ctx or packet shorter than 14 bytes; ENOSPC: dataOutSize too small; ENOTSUPP: program
 * type without test-run support), BPF_NOT_PERMITTED, or BPF_BAD_ARGUMENT (empty packet, repeat < 1).
 */
export function testRun(prog: number | { fd: number }, opts: TestRunOptions): TestRunResult {
  const fd = typeof prog === "number" ? prog : prog.fd;
  const { data } = opts;
  if (data.length === 0) throw new BpfError(BpfErrorCode.BadArgument, "test run needs a non-empty packet");
  const repeat = opts.repeat ?? 1;
  if (!Number.isInteger(repeat) || repeat < 1) throw new BpfError(BpfErrorCode.BadArgument, `repeat must be an integer ≥ 1, got ${repeat}`);
  const live = ((opts.flags ?? 0) & BPF_F_TEST_XDP_LIVE_FRAMES) !== 0;
  const outSize = live ? 0 : (opts.dataOutSize ?? data.length + 256);
  const ctxIn = opts.ctx === undefined ? undefined : opts.ctx instanceof Uint8Array ? opts.ctx : encodeSkbContext(opts.ctx);

  // Stable native memory the kernel reads and writes during the call, reused across calls: allocating and
  // freeing four buffers per run cost more than the run itself.
  const dataIn = scratch(0, data.length);
  const dataOut = live ? null : scratch(1, outSize);
  const ctxInPtr = ctxIn ? scratch(2, ctxIn.length) : null;
  const ctxOutPtr = ctxIn && !live ? scratch(3, ctxIn.length) : null;
  new Uint8Array(koffi.view(dataIn, data.length)).set(data);
  if (ctxIn && ctxInPtr) new Uint8Array(koffi.view(ctxInPtr, ctxIn.length)).set(ctxIn);
  const o: Record<string, unknown> = {
    sz: koffi.sizeof(BpfTestRunOpts),
    data_in: dataIn,
    data_out: dataOut,
    data_size_in: data.length,
    data_size_out: outSize,
    ctx_in: ctxInPtr,
    ctx_out: ctxOutPtr,
    ctx_size_in: ctxIn ? ctxIn.length : 0,
    ctx_size_out: ctxIn && !live ? ctxIn.length : 0,
    retval: 0,
    repeat,
    duration: 0,
    flags: opts.flags ?? 0,
    cpu: opts.cpu ?? 0,
    batch_size: opts.batchSize ?? 0,
  };
  const ret = libbpf().bpf_prog_test_run_opts(fd, o);
  if (ret < 0) throw bpfError(BpfErrorCode.TestRunFailed, `bpf_prog_test_run_opts(prog fd ${fd}, ${data.length} bytes)`, ret);
  const outLen = Math.min(Number(o.data_size_out), outSize);
  const result: TestRunResult = {
    retval: Number(o.retval) >>> 0,
    data: dataOut ? new Uint8Array(koffi.view(dataOut, outSize)).slice(0, outLen) : new Uint8Array(0),
    duration: Number(o.duration),
  };
  if (ctxIn && ctxOutPtr) {
    const raw = new Uint8Array(koffi.view(ctxOutPtr, ctxIn.length)).slice(0, Math.min(Number(o.ctx_size_out), ctxIn.length));
    result.ctxRaw = raw;
    if (!(opts.ctx instanceof Uint8Array) && raw.length === SKB_CTX_SIZE) result.ctx = decodeSkbContext(raw);
  }
  return result;
}
