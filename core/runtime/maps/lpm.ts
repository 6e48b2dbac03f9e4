/*
 * BPF_MAP_TYPE_LPM_TRIE semantics in linear memory, for the WASM and JS hosts of core. Host-side only:
 * codegen binds mapLookup & co. on LPM maps to real BPF LPM tries and never translates this file. Loops
 * are bounded by the key's bit length or a table's capacity, both fixed at lpmCreate.
 *
 * Keys are `u32 prefixlen (little-endian) | data`, as struct bpf_lpm_trie_key. prefixlen counts bits of
 * `data` from the most significant bit of its first byte (kernel/bpf/lpm_trie.c treats data as big
 * endian); the largest prefixlen is 8 * (keySize - 4).
 *
 * Behaviour (kernel/bpf/lpm_trie.c):
 *   - an entry is identified by (prefixlen, first prefixlen bits of data); the data is stored as given,
 *     so iteration returns the bytes of the last update for that entry, as the kernel's node copy does;
 *   - lookup treats the key's prefixlen as the number of valid bits (clamped to the maximum) and returns
 *     the entry with the longest prefix p <= that whose first p bits equal the key's;
 *   - update/delete with a prefixlen above the maximum fail with -EINVAL.
 * Differences from the kernel, deliberate: a full table fails with -E2BIG like a hash table (the kernel
 * says -ENOSPC, and before Linux 6.13 it also refused to replace an existing entry in a full trie and
 * ignored BPF_NOEXIST / BPF_EXIST); iteration order is not the kernel's post-order (it is the inner hash
 * table's pool order: deterministic for a given history, every entry once when nothing changes, and a key
 * that is not present restarts from the first entry, as trie_get_next_key() does).
 *
 * Design: one hash table (core/runtime/maps/hash.ts) keyed by (prefixlen, data masked to prefixlen bits) whose
 * value is (the key as given | the value), plus a count of entries per prefix length and a bitmap of the
 * prefix lengths in use. Lookup visits only the lengths in use, longest first (found with clz on the
 * bitmap words, not by stepping through every length), and narrows one masked copy of the key as it
 * goes, so a lookup that hits at the longest length in use costs one hash probe, and each further length
 * in use one more. The tables that matter have few lengths in use (ipcache: the CIDR sizes the cluster
 * uses; policy: any-protocol, protocol and exact port, plus port-range prefixes).
 */
import { allocStatic } from "../../alloc";
import { clz32, memCopy, read32, write32 } from "../../env";
import { bswap32 } from "../../bytes";
import { BPF_EXIST, BPF_NOEXIST, E2BIG, EEXIST, EINVAL, ENOENT } from "../../constants";
import { hashCount, hashCreate, hashDelete, hashLookup, hashNextKey, hashUpdate } from "./hash";

// Descriptor fields (u32 each).
const L_INNER: usize = 0;
const L_KEY_SIZE: usize = 4;
const L_VALUE_SIZE: usize = 8;
const L_MAX_PREFIX: usize = 12;
const L_COUNTS: usize = 16; // u32 per prefix length 0..max
const L_MASKED: usize = 20; // scratch: a masked key
const L_STAGE: usize = 24; // scratch: an inner value (key as given | value)
const L_NEXT: usize = 28; // scratch: an inner key from iteration
const L_VAL_OFF: usize = 32; // offset of the value in an inner value
const L_MAX_ENTRIES: usize = 36;
const L_BITMAP: usize = 40; // u32 words: bit (p & 31) of word (p >> 5) is set when prefix length p is in use
const L_SIZE: usize = 44;

// The kernel accepts at most 256 data bytes (LPM_DATA_SIZE_MAX).
const MAX_DATA_SIZE: u32 = 256;

/** Writes `key` masked to its first `plen` data bits, with prefixlen = plen, to `dst`. */
function maskKey(dst: usize, key: usize, plen: u32, keySize: u32): void {
  write32(dst, plen);
  const words = (keySize - 4) >>> 2;
  for (let w: u32 = 0; w < words; w++) {
    const first = w << 5; // index of the word's first data bit
    let m: u32 = 0;
    if (plen >= first + 32) m = 0xffffffff;
    else if (plen > first) m = bswap32(u32(0xffffffff << (32 - (plen - first)))); // data is big endian
    const off: usize = (<usize>w << 2) + 4;
    write32(dst + off, u32(read32(key + off) & m));
  }
}

/** Creates an LPM table for `keySize`-byte keys (4 + data, data a non-zero multiple of 4 bytes, at most
 * 256) and `valueSize`-byte values (a multiple of 4) holding at most `maxEntries` entries. All memory is
 * allocated now. Returns the descriptor pointer, or 0 when memory is short or the sizes are unusable. */
export function lpmCreate(keySize: u32, valueSize: u32, maxEntries: u32): usize {
  if (keySize < 8 || (keySize & 3) != 0 || keySize - 4 > MAX_DATA_SIZE) return 0;
  if ((valueSize & 3) != 0 || maxEntries == 0) return 0;
  const valOff = (keySize + 7) & ~7;
  const maxPrefix = (keySize - 4) << 3;
  const inner = hashCreate(keySize, valOff + valueSize, maxEntries, false);
  if (inner == 0) return 0;
  const d = allocStatic(L_SIZE, 8);
  if (d == 0) return 0;
  const counts = allocStatic(<usize>(maxPrefix + 1) << 2, 8);
  const masked = allocStatic(<usize>keySize, 8);
  const stage = allocStatic(<usize>(valOff + valueSize), 8);
  const next = allocStatic(<usize>keySize, 8);
  const bitmap = allocStatic(<usize>((maxPrefix >>> 5) + 1) << 2, 8);
  if (counts == 0 || masked == 0 || stage == 0 || next == 0 || bitmap == 0) return 0;
  write32(d + L_INNER, <u32>inner);
  write32(d + L_KEY_SIZE, keySize);
  write32(d + L_VALUE_SIZE, valueSize);
  write32(d + L_MAX_PREFIX, maxPrefix);
  write32(d + L_COUNTS, <u32>counts);
  write32(d + L_MASKED, <u32>masked);
  write32(d + L_STAGE, <u32>stage);
  write32(d + L_NEXT, <u32>next);
  write32(d + L_VAL_OFF, valOff);
  write32(d + L_MAX_ENTRIES, maxEntries);
  write32(d + L_BITMAP, <u32>bitmap);
  return d;
}

/** Adds `delta` (+1 / -1) to the entry count of prefix length `plen`, keeping the bitmap in step. */
function countPrefix(d: usize, plen: u32, delta: i32): void {
  const cp = <usize>read32(d + L_COUNTS) + (<usize>plen << 2);
  const n = <u32>(<i32>read32(cp) + delta);
  write32(cp, n);
  const wp = <usize>read32(d + L_BITMAP) + (<usize>(plen >>> 5) << 2);
  const bit: u32 = 1 << (plen & 31);
  write32(wp, n == 0 ? read32(wp) & ~bit : read32(wp) | bit);
}

/** The longest prefix length in use that is <= `p`, or -1 when there is none. */
function prevInUse(bitmap: usize, p: i32): i32 {
  let w = p >> 5;
  // Bits 0..(p & 31) of the first word, then whole words below it.
  let bits = read32(bitmap + (<usize>w << 2)) & (0xffffffff >>> (31 - (p & 31)));
  while (bits == 0) {
    w--;
    if (w < 0) return -1;
    bits = read32(bitmap + (<usize>w << 2));
  }
  return (w << 5) + 31 - <i32>clz32(bits);
}

/** Clears the data bits of `masked` from bit `p` up to (not including) bit `upTo`, and sets its
 * prefixlen to `p`: narrows a key already masked to `upTo` bits down to `p` bits. */
function narrowKey(masked: usize, p: u32, upTo: u32): void {
  write32(masked, p);
  const last = (upTo + 31) >>> 5; // words at or past this index are already clear
  for (let w: u32 = p >>> 5; w < last; w++) {
    const first = w << 5;
    let m: u32 = 0;
    if (p > first) m = bswap32(u32(0xffffffff << (32 - (p - first)))); // data is big endian
    const off: usize = (<usize>w << 2) + 4;
    write32(masked + off, u32(read32(masked + off) & m));
  }
}

/** Longest-prefix lookup: the key's prefixlen is the number of valid bits (normally the maximum; larger
 * values count as the maximum). Returns a pointer to the value of the stored entry with the longest
 * prefix p <= prefixlen whose first p bits equal the key's, or 0 when no entry covers the key. */
export function lpmLookup(d: usize, key: usize): usize {
  const maxPrefix = read32(d + L_MAX_PREFIX);
  const bitmap = <usize>read32(d + L_BITMAP);
  let plen = read32(key);
  if (plen > maxPrefix) plen = maxPrefix;
  let p = prevInUse(bitmap, <i32>plen);
  if (p < 0) return 0;
  const masked = <usize>read32(d + L_MASKED);
  const inner = <usize>read32(d + L_INNER);
  memCopy(masked, key, <usize>read32(d + L_KEY_SIZE));
  let upTo = maxPrefix;
  // At most one probe per prefix length in use, each strictly shorter than the last.
  while (p >= 0) {
    narrowKey(masked, <u32>p, upTo);
    const v = hashLookup(inner, masked);
    if (v != 0) return v + <usize>read32(d + L_VAL_OFF);
    upTo = <u32>p;
    if (p == 0) break;
    p = prevInUse(bitmap, p - 1);
  }
  return 0;
}

/** Inserts or replaces the entry (prefixlen, first prefixlen bits of data); the key's bytes are stored as
 * given. Returns:
 *   0        stored;
 *   -EINVAL  flags other than BPF_ANY / BPF_NOEXIST / BPF_EXIST, or prefixlen above the maximum;
 *   -EEXIST  BPF_NOEXIST and the entry is present (nothing changes);
 *   -ENOENT  BPF_EXIST and the entry is absent (nothing changes);
 *   -E2BIG   the entry is absent and the table holds maxEntries entries (the kernel says -ENOSPC). */
export function lpmUpdate(d: usize, key: usize, value: usize, flags: u32): i32 {
  if (flags > BPF_EXIST) return -EINVAL;
  const plen = read32(key);
  if (plen > read32(d + L_MAX_PREFIX)) return -EINVAL;
  const ks = read32(d + L_KEY_SIZE);
  const vs = read32(d + L_VALUE_SIZE);
  const valOff = <usize>read32(d + L_VAL_OFF);
  const masked = <usize>read32(d + L_MASKED);
  const inner = <usize>read32(d + L_INNER);
  maskKey(masked, key, plen, ks);
  const p = hashLookup(inner, masked);
  if (p != 0) {
    if (flags == BPF_NOEXIST) return -EEXIST;
    memCopy(p, key, <usize>ks);
    memCopy(p + valOff, value, <usize>vs);
    return 0;
  }
  if (flags == BPF_EXIST) return -ENOENT;
  if (hashCount(inner) >= read32(d + L_MAX_ENTRIES)) return -E2BIG;
  const stage = <usize>read32(d + L_STAGE);
  memCopy(stage, key, <usize>ks);
  memCopy(stage + valOff, value, <usize>vs);
  const r = hashUpdate(inner, masked, stage, BPF_NOEXIST);
  if (r != 0) return r;
  countPrefix(d, plen, 1);
  return 0;
}

/** Removes the entry (prefixlen, first prefixlen bits of data). Returns 0, -ENOENT when absent, or
 * -EINVAL when prefixlen is above the maximum. */
export function lpmDelete(d: usize, key: usize): i32 {
  const plen = read32(key);
  if (plen > read32(d + L_MAX_PREFIX)) return -EINVAL;
  const masked = <usize>read32(d + L_MASKED);
  maskKey(masked, key, plen, read32(d + L_KEY_SIZE));
  const r = hashDelete(<usize>read32(d + L_INNER), masked);
  if (r != 0) return r;
  countPrefix(d, plen, -1);
  return 0;
}

/** Writes the key (prefixlen and data as stored) of the entry after `key` to `nextKey`; `key` = 0, a
 * prefixlen above the maximum, or an entry that is not present start from the first entry, as
 * trie_get_next_key() does. Returns 0, or -ENOENT when there is no further entry (or none at all). */
export function lpmNextKey(d: usize, key: usize, nextKey: usize): i32 {
  const ks = read32(d + L_KEY_SIZE);
  const inner = <usize>read32(d + L_INNER);
  const next = <usize>read32(d + L_NEXT);
  let from: usize = 0;
  if (key != 0 && read32(key) <= read32(d + L_MAX_PREFIX)) {
    from = <usize>read32(d + L_MASKED);
    maskKey(from, key, read32(key), ks);
  }
  const r = hashNextKey(inner, from, next);
  if (r != 0) return r;
  const p = hashLookup(inner, next);
  memCopy(nextKey, p, <usize>ks);
  return 0;
}

/** Number of entries. */
export function lpmCount(d: usize): u32 {
  return hashCount(<usize>read32(d + L_INNER));
}
