/*
 * Reading the datapath's flow events: the BPF ring buffer map ciliate_events_v1 (core/layout.ts MapId.Events)
 * carries copies of TraceRecord for drops and new flows' policy verdicts (and every packet with
 * CONFIG_F_EVENTS_ALL). libbpf's ring_buffer__new/poll/consume call our callback synchronously, on this
 * thread, once per record.
 */
import { koffi, LIBBPF_SONAME, lastErrno } from "./libbpf.ts";
import { TraceRecordCodec, type TraceRecord } from "../host/codecs.gen.ts";
import { bpfError, BpfErrorCode } from "./errors.ts";

const SampleFn = koffi.proto("int ciliate_ring_buffer_sample_fn(void *ctx, void *data, size_t size)");

interface RingBufferApi {
  ring_buffer__new(fd: number, cb: unknown, ctx: unknown, opts: unknown): unknown;
  ring_buffer__poll(rb: unknown, timeoutMs: number): number;
  ring_buffer__consume(rb: unknown): number;
  ring_buffer__free(rb: unknown): void;
}

let api: RingBufferApi | undefined;

function ringApi(): RingBufferApi {
  if (api) return api;
  const lib = koffi.load(LIBBPF_SONAME);
  api = {
    ring_buffer__new: lib.func("void *ring_buffer__new(int map_fd, ciliate_ring_buffer_sample_fn *sample_cb, void *ctx, const void *opts)"),
    ring_buffer__poll: lib.func("int ring_buffer__poll(void *rb, int timeout_ms)"),
    ring_buffer__consume: lib.func("int ring_buffer__consume(void *rb)"),
    ring_buffer__free: lib.func("void ring_buffer__free(void *rb)"),
  } as unknown as RingBufferApi;
  return api;
}

export interface EventReader {
  /** Waits up to `timeoutMs` for events and returns those that arrived (possibly none). */
  poll(timeoutMs: number): TraceRecord[];
  /** Returns every event already in the buffer without waiting. */
  drain(): TraceRecord[];
  close(): void;
}

/** Opens a reader on a ring buffer map fd (e.g. obj.map("ciliate_events_v1").fd). */
export function openEventReader(mapFd: number): EventReader {
  const rb = ringApi();
  let batch: TraceRecord[] = [];
  const onSample = (_ctx: unknown, data: unknown, size: number | bigint): number => {
    const n = Number(size);
    if (n >= TraceRecordCodec.size) {
      const bytes = new Uint8Array(koffi.view(data as never, TraceRecordCodec.size) as ArrayBuffer).slice();
      batch.push(TraceRecordCodec.decode(bytes));
    }
    return 0;
  };
  const cb = koffi.register(onSample, koffi.pointer(SampleFn));
  const handle = rb.ring_buffer__new(mapFd, cb, null, null);
  if (!handle) {
    koffi.unregister(cb);
    throw bpfError(BpfErrorCode.MapOpFailed, "cannot open the events ring buffer", -lastErrno());
  }
  let open = true;
  const take = (rc: number, what: string): TraceRecord[] => {
    if (rc < 0 && rc !== -4 /* EINTR */) throw bpfError(BpfErrorCode.MapOpFailed, `ring buffer ${what} failed`, rc);
    const out = batch;
    batch = [];
    return out;
  };
  return {
    poll(timeoutMs) {
      if (!open) return [];
      return take(rb.ring_buffer__poll(handle, timeoutMs), "poll");
    },
    drain() {
      if (!open) return [];
      return take(rb.ring_buffer__consume(handle), "consume");
    },
    close() {
      if (!open) return;
      open = false;
      rb.ring_buffer__free(handle);
      koffi.unregister(cb);
    },
  };
}
