/*
 * The environment seam for the JavaScript build (see core/env.ts for the contract). Memory is one
 * ArrayBuffer, replaced by a larger copy when it must grow (as WASM memory.grow replaces its buffer);
 * hosts reach the current one through jsMemory(). Not a resizable ArrayBuffer: V8 in Node 20 keeps
 * DataView and typed-array access on resizable buffers off its fast paths, which made every read and
 * write of the JS build several times slower.
 */

const MAX_BYTES = 4 * 1024 * 1024 * 1024 - 65536;
let buffer = new ArrayBuffer(1 << 16);
let view = new DataView(buffer);
let bytesView = new Uint8Array(buffer);

/** The JS build's linear memory (the counterpart of the WASM memory export). */
export function jsMemory(): ArrayBuffer { return buffer; }

export function read8(p: usize): u32 { return view.getUint8(p); }
export function read16(p: usize): u32 { return view.getUint16(p, true); }
export function read32(p: usize): u32 { return view.getUint32(p, true); }
export function write8(p: usize, v: u32): void { view.setUint8(p, v & 0xff); }
export function write16(p: usize, v: u32): void { view.setUint16(p, v & 0xffff, true); }
export function write32(p: usize, v: u32): void { view.setUint32(p, v >>> 0, true); }

export function add64(p: usize, v: u32): void {
  const lo = view.getUint32(p, true) + (v >>> 0);
  view.setUint32(p, lo >>> 0, true);
  if (lo > 0xffffffff) view.setUint32(p + 4, (view.getUint32(p + 4, true) + 1) >>> 0, true);
}
export function add64Local(p: usize, v: u32): void { add64(p, v); }
export function read64Lo(p: usize): u32 { return view.getUint32(p, true); }
export function read64Hi(p: usize): u32 { return view.getUint32(p + 4, true); }

// Core copies and clears small structs (keys, tuples, records) on every packet; a plain loop beats the
// typed-array builtins' call overhead below a few hundred bytes.
const SMALL = 256;

export function memCopy(dst: usize, src: usize, n: usize): void {
  if (n > SMALL || (dst > src && dst < src + n)) {
    bytesView.copyWithin(dst, src, src + n);
    return;
  }
  const b = bytesView;
  for (let i = 0; i < n; i++) b[dst + i] = b[src + i];
}
export function memFill(dst: usize, v: u32, n: usize): void {
  if (n > SMALL) {
    bytesView.fill(v & 0xff, dst, dst + n);
    return;
  }
  const b = bytesView;
  const x = v & 0xff;
  for (let i = 0; i < n; i++) b[dst + i] = x;
}

export function mul32(a: u32, b: u32): u32 { return Math.imul(a, b) >>> 0; }

export function clz32(x: u32): u32 { return Math.clz32(x); }

/** Static data ends at 1 KiB in the JS build; the rest is core's heap. */
export function heapBase(): usize { return 1024; }

/** Bytes of memory now; what ensureMemory adds beyond them is zero (a new ArrayBuffer is). */
export function memoryBytes(): usize { return buffer.byteLength; }

export function ensureMemory(bytes: usize): bool {
  if (bytes <= buffer.byteLength) return true;
  const want = Math.ceil(bytes / 65536) * 65536;
  if (want > MAX_BYTES) return false;
  // Grow geometrically so that filling a large map does not copy the whole memory once per 64 KiB.
  const size = Math.min(MAX_BYTES, Math.max(want, buffer.byteLength * 2));
  const next = new ArrayBuffer(size);
  new Uint8Array(next).set(bytesView);
  buffer = next;
  view = new DataView(buffer);
  bytesView = new Uint8Array(buffer);
  return true;
}
