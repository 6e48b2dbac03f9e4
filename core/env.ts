/*
 * The environment seam: raw memory access and the few integer operations whose JavaScript spelling
 * differs from AssemblyScript's. This file is the AssemblyScript implementation; core/runtime/env.portable.ts is
 * the JavaScript one (swapped in by scripts/build-js-core.mjs); in C each function is a seam in
 * bpf/include/ciliate_env.h (codegen binds calls by the @seam tag and never translates these bodies).
 *
 * Memory is addressed by usize offsets. Every read returns the zero-extended value of its width; every
 * write stores the low bits of its argument. 64-bit fields are counters only: add64 and read64Lo/Hi.
 */

/** @seam ciliate_read8 */
export function read8(p: usize): u32 { return <u32>load<u8>(p); }
/** @seam ciliate_read16 */
export function read16(p: usize): u32 { return <u32>load<u16>(p); }
/** @seam ciliate_read32 */
export function read32(p: usize): u32 { return load<u32>(p); }
/** @seam ciliate_write8 */
export function write8(p: usize, v: u32): void { store<u8>(p, <u8>v); }
/** @seam ciliate_write16 */
export function write16(p: usize, v: u32): void { store<u16>(p, <u16>v); }
/** @seam ciliate_write32 */
export function write32(p: usize, v: u32): void { store<u32>(p, v); }

/** Adds a 32-bit amount to a little-endian u64 counter. @seam ciliate_add64 */
export function add64(p: usize, v: u32): void { store<u64>(p, load<u64>(p) + <u64>v); }
/** add64 for a value only this CPU writes (a per-CPU map slot): no atomic needed in C.
 * @seam ciliate_add64_local */
export function add64Local(p: usize, v: u32): void { store<u64>(p, load<u64>(p) + <u64>v); }
/** @seam ciliate_read64_lo */
export function read64Lo(p: usize): u32 { return <u32>load<u64>(p); }
/** @seam ciliate_read64_hi */
export function read64Hi(p: usize): u32 { return <u32>(load<u64>(p) >> 32); }

/** @seam __builtin_memcpy */
export function memCopy(dst: usize, src: usize, n: usize): void { memory.copy(dst, src, n); }
/** @seam __builtin_memset */
export function memFill(dst: usize, v: u32, n: usize): void { memory.fill(dst, <u8>v, n); }

/** 32-bit wrapping multiply (JavaScript needs Math.imul). @seam ciliate_mul32 */
export function mul32(a: u32, b: u32): u32 { return a * b; }

/** Leading zero bits of a 32-bit value (32 for 0). Host tables only (core/maps/): the packet path in C
 * never calls it. */
export function clz32(x: u32): u32 { return <u32>clz<u32>(x); }

/** First byte after the static data: where core's allocator starts. Not used by the packet path. */
export function heapBase(): usize { return __heap_base; }

/** How many bytes of memory there are now. What ensureMemory adds beyond them reads as zero (memory.grow
 * zero-fills the new pages). Not used by the packet path. */
export function memoryBytes(): usize { return <usize>memory.size() << 16; }

/** Makes memory at least `bytes` long; returns false when it cannot grow. Not used by the packet path. */
export function ensureMemory(bytes: usize): bool {
  const have = <usize>memory.size() << 16;
  if (bytes <= have) return true;
  const pages = <i32>((bytes - have + 0xffff) >>> 16);
  return memory.grow(pages) >= 0;
}
