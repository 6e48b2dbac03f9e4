/*
 * BPF_MAP_TYPE_ARRAY in linear memory: u32 index keys, preallocated zeroed values, no deletion.
 * Descriptor (internal to this file): maxEntries u32 | valueSize u32 | values base u32.
 */
import { allocStatic } from "../../alloc";
import { memCopy, read32, write32 } from "../../env";
import { EEXIST, EINVAL, ENOENT } from "../../constants";

export function arrayCreate(valueSize: u32, maxEntries: u32): usize {
  const d = allocStatic(12, 8);
  if (d == 0) return 0;
  const stride = (valueSize + 7) & ~7;
  const base = allocStatic(<usize>stride * <usize>maxEntries, 8);
  if (base == 0) return 0;
  write32(d, maxEntries);
  write32(d + 4, stride);
  write32(d + 8, <u32>base);
  return d;
}

/** Pointer to element `*key`, or 0 when the index is out of range. */
export function arrayLookup(d: usize, key: usize): usize {
  const i = read32(key);
  if (i >= read32(d)) return 0;
  return <usize>read32(d + 8) + <usize>i * <usize>read32(d + 4);
}

/** 0, -EINVAL out of range, -EEXIST for BPF_NOEXIST (every element always exists). */
export function arrayUpdate(d: usize, key: usize, value: usize, flags: u32): i32 {
  const p = arrayLookup(d, key);
  if (p == 0) return -EINVAL;
  if (flags == 1) return -EEXIST;
  memCopy(p, value, read32(d + 4));
  return 0;
}

/** Arrays cannot delete: -EINVAL, as in the kernel. */
export function arrayDelete(d: usize, key: usize): i32 {
  return arrayLookup(d, key) == 0 ? -ENOENT : -EINVAL;
}

/** Next index after *key (0 when key is 0 pointer), or -ENOENT at the end. */
export function arrayNextKey(d: usize, key: usize, nextKey: usize): i32 {
  let next: u32 = 0;
  if (key != 0) {
    const i = read32(key);
    next = i >= read32(d) ? 0 : i + 1;
  }
  if (next >= read32(d)) return -ENOENT;
  write32(nextKey, next);
  return 0;
}

export function arrayCount(d: usize): u32 {
  return read32(d);
}
