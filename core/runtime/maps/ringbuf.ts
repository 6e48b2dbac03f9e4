/*
 * BPF_MAP_TYPE_RINGBUF in linear memory, for the WASM/JS hosts: a circular byte buffer of records, each
 * `len u32 | data` padded to 8 bytes. The producer (the datapath) fails with -ENOSPC when the record does
 * not fit, as bpf_ringbuf_output does (the event is lost, counted by the kernel the same way); the consumer
 * (the host) takes records in order. Host-side only; in C the map is a real ring buffer.
 * Descriptor (internal): size u32 | head u32 (next read) | tail u32 (next write) | pending records u32 |
 * dropped u32 | data base u32.
 */
import { allocStatic } from "../../alloc";
import { memCopy, read32, write32 } from "../../env";

const D_SIZE: usize = 0;
const D_HEAD: usize = 4;
const D_TAIL: usize = 8;
const D_COUNT: usize = 12;
const D_DROPPED: usize = 16;
const D_BASE: usize = 20;

/** Largest record accepted (the kernel's limit is far higher; ours keeps the wrap logic simple). */
export const RINGBUF_RECORD_MAX: u32 = 4096;

function recordSpan(len: u32): u32 {
  return (4 + len + 7) & ~7;
}

/** `size` bytes of buffer (rounded up to 8). Returns the descriptor, or 0 when memory is short. */
export function ringbufCreate(size: u32): usize {
  const d = allocStatic(24, 8);
  if (d == 0) return 0;
  const sz = (size + 7) & ~7;
  const base = allocStatic(<usize>sz, 8);
  if (base == 0) return 0;
  write32(d + D_SIZE, sz);
  write32(d + D_BASE, <u32>base);
  return d;
}

function used(d: usize): u32 {
  const size = read32(d + D_SIZE);
  const head = read32(d + D_HEAD);
  const tail = read32(d + D_TAIL);
  if (read32(d + D_COUNT) == 0) return 0;
  return tail > head ? tail - head : size - head + tail;
}

/**
 * Appends one record of `len` bytes from `data`. Returns 0, -ENOSPC (28) when it does not fit (the record
 * is dropped and counted), or -EINVAL for an empty or oversized record.
 */
export function ringbufOutput(d: usize, data: usize, len: u32): i32 {
  if (len == 0 || len > RINGBUF_RECORD_MAX) return -22;
  const size = read32(d + D_SIZE);
  const span = recordSpan(len);
  // A record never wraps: if it does not fit before the end, the space to the end is skipped.
  let tail = read32(d + D_TAIL);
  let skip: u32 = 0;
  if (tail + span > size) skip = size - tail;
  if (used(d) + skip + span > size) {
    write32(d + D_DROPPED, read32(d + D_DROPPED) + 1);
    return -28;
  }
  const base = <usize>read32(d + D_BASE);
  if (skip != 0) {
    // A zero length marks the skipped tail, which the reader steps over.
    if (skip >= 4) write32(base + tail, 0);
    tail = 0;
  }
  write32(base + tail, len);
  memCopy(base + tail + 4, data, len);
  write32(d + D_TAIL, (tail + span) % size);
  write32(d + D_COUNT, read32(d + D_COUNT) + 1);
  return 0;
}

/** Takes the oldest record into `out` (room for `max` bytes). Returns its length, 0 when empty, or -E2BIG
 * when `max` is too small (the record stays). */
export function ringbufConsume(d: usize, out: usize, max: u32): i32 {
  if (read32(d + D_COUNT) == 0) return 0;
  const size = read32(d + D_SIZE);
  const base = <usize>read32(d + D_BASE);
  let head = read32(d + D_HEAD);
  if (head + 4 > size || read32(base + head) == 0) head = 0;
  const len = read32(base + head);
  if (len > max) return -7;
  memCopy(out, base + head + 4, len);
  write32(d + D_HEAD, (head + recordSpan(len)) % size);
  write32(d + D_COUNT, read32(d + D_COUNT) - 1);
  if (read32(d + D_COUNT) == 0) {
    write32(d + D_HEAD, 0);
    write32(d + D_TAIL, 0);
  }
  return <i32>len;
}

/** Records waiting to be consumed. */
export function ringbufCount(d: usize): u32 {
  return read32(d + D_COUNT);
}

/** Records lost because the buffer was full. */
export function ringbufDropped(d: usize): u32 {
  return read32(d + D_DROPPED);
}
