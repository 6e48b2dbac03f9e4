/*
 * The environment seam for the JavaScript build (see core/env.ts for the contract). Memory is one
 * growable ArrayBuffer; hosts reach it through jsMemory().
 */

let buffer = new ArrayBuffer(1 << 16, { maxByteLength: 4 * 1024 * 1024 * 1024 - 65536 });
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
export function read64Lo(p: usize): u32 { return view.getUint32(p, true); }
export function read64Hi(p: usize): u32 { return view.getUint32(p + 4, true); }

export function memCopy(dst: usize, src: usize, n: usize): void { bytesView.copyWithin(dst, src, src + n); }
export function memFill(dst: usize, v: u32, n: usize): void { bytesView.fill(v & 0xff, dst, dst + n); }

export function mul32(a: u32, b: u32): u32 { return Math.imul(a, b) >>> 0; }

/** Static data ends at 1 KiB in the JS build; the rest is core's heap. */
export function heapBase(): usize { return 1024; }

export function ensureMemory(bytes: usize): bool {
  if (bytes <= buffer.byteLength) return true;
  const want = Math.ceil(bytes / 65536) * 65536;
  if (want > buffer.maxByteLength) return false;
  buffer.resize(want);
  view = new DataView(buffer);
  bytesView = new Uint8Array(buffer);
  return true;
}
