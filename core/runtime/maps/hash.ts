/*
 * BPF_MAP_TYPE_HASH and BPF_MAP_TYPE_LRU_HASH in linear memory, for the WASM and JS hosts of core.
 * Host-side only: core/maps.ts dispatches to these functions, codegen binds mapLookup/mapUpdate/... to
 * real BPF maps and never translates this file. Loops here are bounded by a table's capacity, which is
 * fixed when the table is created (nothing grows after hashCreate).
 *
 * Semantics follow the kernel's hash tables (kernel/bpf/hashtab.c): fixed max entries, keys and values
 * copied in, lookup returns a pointer to the stored value (writes through it change the map), the
 * BPF_ANY / BPF_NOEXIST / BPF_EXIST checks of check_flags(), -E2BIG when a plain hash is full (an
 * existing key can still be replaced), and an LRU hash that makes room by evicting instead of failing.
 *
 * Design:
 *   - An entry pool of maxEntries fixed-size entries (header | key | value). Entries never move, so a
 *     value pointer stays valid until its key is deleted or evicted. Freed entries go on a LIFO free list.
 *   - An open-addressing index of `cap` slots (power of two, cap >= 2 * maxEntries, so the load factor
 *     is at most 0.5) with linear probing; each slot is (entry index + 1, hash), 0 = empty. Deletion
 *     uses backward shift, so there are no tombstones and probe chains never degrade.
 *   - LRU: an exact LRU order kept as an intrusive doubly-linked list through the entry headers (most
 *     recently used at the head). A successful lookup or update moves the entry to the head; inserting
 *     into a full LRU table evicts the tail first. The kernel's LRU (kernel/bpf/bpf_lru_list.c) is only
 *     approximate (per-CPU lists, reference bits, batch shrinking), so tests that compare with the kernel
 *     must not fill LRU maps.
 *   - Iteration (hashNextKey) walks the entry pool in index order: deterministic for a given history,
 *     each live key exactly once when nothing changes, and like htab_map_get_next_key() a key that is
 *     not present restarts from the first key.
 *
 * Keys and values are multiples of 4 bytes: keys are hashed and compared word by word.
 */
import { allocStatic } from "../../alloc";
import { memCopy, mul32, read32, write32 } from "../../env";
import { BPF_EXIST, BPF_NOEXIST, E2BIG, EEXIST, EINVAL, ENOENT } from "../../constants";

// Descriptor fields (u32 each).
const D_KEY_SIZE: usize = 0;
const D_VALUE_SIZE: usize = 4;
const D_MAX: usize = 8;
const D_MASK: usize = 12; // slot count - 1
const D_COUNT: usize = 16;
const D_LRU: usize = 20;
const D_SLOTS: usize = 24;
const D_ENTRIES: usize = 28;
const D_STRIDE: usize = 32;
const D_HIGH: usize = 36; // entries [0, high) have been used at least once
const D_FREE: usize = 40; // free-list head, entry index + 1 (0 = empty)
const D_HEAD: usize = 44; // LRU: most recently used, entry index + 1
const D_TAIL: usize = 48; // LRU: least recently used, entry index + 1
const D_KEY_OFF: usize = 52;
const D_VAL_OFF: usize = 56;
const D_SIZE: usize = 60;

// Entry header fields (u32 each); prev/next exist only in LRU tables.
const E_LIVE: usize = 0;
const E_FREE_NEXT: usize = 4;
const E_PREV: usize = 8;
const E_NEXT: usize = 12;

const NONE: u32 = 0xffffffff;
// Largest table accepted; bigger ones could not fit in a 32-bit address space anyway.
const MAX_ENTRIES_LIMIT: u32 = 0x4000000;
const MAX_REGION: u32 = 0x7fffffff;
const HASH_SEED: u32 = 0x9747b28c;

function align8(x: u32): u32 {
  return (x + 7) & ~7;
}

function rotl(x: u32, r: u32): u32 {
  return u32((x << r) | (x >>> (32 - r)));
}

/** murmur3_x86_32 over `words` little-endian 32-bit words at `key`. */
function keyHash(key: usize, words: u32): u32 {
  let h: u32 = HASH_SEED;
  for (let i: u32 = 0; i < words; i++) {
    let k = read32(key + (<usize>i << 2));
    k = mul32(k, 0xcc9e2d51);
    k = rotl(k, 15);
    k = mul32(k, 0x1b873593);
    h = u32(h ^ k);
    h = rotl(h, 13);
    h = u32(mul32(h, 5) + 0xe6546b64);
  }
  h = u32(h ^ (words << 2));
  h = u32(h ^ (h >>> 16));
  h = mul32(h, 0x85ebca6b);
  h = u32(h ^ (h >>> 13));
  h = mul32(h, 0xc2b2ae35);
  h = u32(h ^ (h >>> 16));
  return h;
}

function keysEqual(a: usize, b: usize, words: u32): bool {
  for (let i: u32 = 0; i < words; i++) {
    const off = <usize>i << 2;
    if (read32(a + off) != read32(b + off)) return false;
  }
  return true;
}

function entryPtr(d: usize, idx: u32): usize {
  return <usize>read32(d + D_ENTRIES) + <usize>idx * <usize>read32(d + D_STRIDE);
}

function slotPtr(d: usize, s: u32): usize {
  return <usize>read32(d + D_SLOTS) + <usize>s * 8;
}

/** Slot holding `key` (whose hash is `h`), or NONE. */
function findSlot(d: usize, key: usize, h: u32): u32 {
  const mask = read32(d + D_MASK);
  const words = read32(d + D_KEY_SIZE) >>> 2;
  const keyOff = <usize>read32(d + D_KEY_OFF);
  let s = h & mask;
  for (let i: u32 = 0; i <= mask; i++) {
    const sp = slotPtr(d, s);
    const e = read32(sp);
    if (e == 0) return NONE;
    if (read32(sp + 4) == h && keysEqual(entryPtr(d, e - 1) + keyOff, key, words)) return s;
    s = (s + 1) & mask;
  }
  return NONE;
}

/** Puts entry `idx` (hash `h`) into the first empty slot of its probe chain. */
function insertSlot(d: usize, idx: u32, h: u32): void {
  const mask = read32(d + D_MASK);
  let s = h & mask;
  for (let i: u32 = 0; i <= mask; i++) {
    const sp = slotPtr(d, s);
    if (read32(sp) == 0) {
      write32(sp, idx + 1);
      write32(sp + 4, h);
      return;
    }
    s = (s + 1) & mask;
  }
}

/** Empties slot `hole` and shifts later members of the probe cluster back (no tombstones). */
function removeSlot(d: usize, hole: u32): void {
  const mask = read32(d + D_MASK);
  let i = hole;
  let j = hole;
  for (let n: u32 = 0; n < mask; n++) {
    j = (j + 1) & mask;
    const jp = slotPtr(d, j);
    const e = read32(jp);
    if (e == 0) break;
    const home = read32(jp + 4) & mask;
    // The entry at j may stay if its home lies cyclically in (i, j]; otherwise it moves into the hole.
    const stays = i <= j ? (i < home && home <= j) : (i < home || home <= j);
    if (!stays) {
      const ip = slotPtr(d, i);
      write32(ip, e);
      write32(ip + 4, read32(jp + 4));
      i = j;
    }
  }
  const hp = slotPtr(d, i);
  write32(hp, 0);
  write32(hp + 4, 0);
}

function lruUnlink(d: usize, idx: u32): void {
  const ep = entryPtr(d, idx);
  const prev = read32(ep + E_PREV);
  const next = read32(ep + E_NEXT);
  if (prev != 0) write32(entryPtr(d, prev - 1) + E_NEXT, next);
  else write32(d + D_HEAD, next);
  if (next != 0) write32(entryPtr(d, next - 1) + E_PREV, prev);
  else write32(d + D_TAIL, prev);
  write32(ep + E_PREV, 0);
  write32(ep + E_NEXT, 0);
}

function lruPushFront(d: usize, idx: u32): void {
  const ep = entryPtr(d, idx);
  const head = read32(d + D_HEAD);
  write32(ep + E_PREV, 0);
  write32(ep + E_NEXT, head);
  if (head != 0) write32(entryPtr(d, head - 1) + E_PREV, idx + 1);
  else write32(d + D_TAIL, idx + 1);
  write32(d + D_HEAD, idx + 1);
}

function lruTouch(d: usize, idx: u32): void {
  if (read32(d + D_HEAD) == idx + 1) return;
  lruUnlink(d, idx);
  lruPushFront(d, idx);
}

/** Removes the entry in slot `s`: index, LRU list, pool. */
function removeAt(d: usize, s: u32): void {
  const idx = read32(slotPtr(d, s)) - 1;
  removeSlot(d, s);
  if (read32(d + D_LRU) != 0) lruUnlink(d, idx);
  const ep = entryPtr(d, idx);
  write32(ep + E_LIVE, 0);
  write32(ep + E_FREE_NEXT, read32(d + D_FREE));
  write32(d + D_FREE, idx + 1);
  write32(d + D_COUNT, read32(d + D_COUNT) - 1);
}

/** Takes an entry from the free list, or the next never-used one. The caller checked the count. */
function allocEntry(d: usize): u32 {
  const free = read32(d + D_FREE);
  if (free != 0) {
    write32(d + D_FREE, read32(entryPtr(d, free - 1) + E_FREE_NEXT));
    return free - 1;
  }
  const high = read32(d + D_HIGH);
  write32(d + D_HIGH, high + 1);
  return high;
}

/** Creates a table for `keySize`-byte keys and `valueSize`-byte values (both non-zero multiples of 4)
 * holding at most `maxEntries` entries; `lru` selects LRU-hash behaviour. All memory is allocated now.
 * Returns the descriptor pointer, or 0 when memory is short or the sizes are unusable. */
export function hashCreate(keySize: u32, valueSize: u32, maxEntries: u32, lru: bool): usize {
  if (keySize == 0 || (keySize & 3) != 0 || (valueSize & 3) != 0) return 0;
  if (maxEntries == 0 || maxEntries > MAX_ENTRIES_LIMIT) return 0;
  let cap: u32 = 2;
  for (let i: u32 = 0; i < 32; i++) {
    if (cap >= maxEntries << 1) break;
    cap = cap << 1;
  }
  const hdr: u32 = lru ? 16 : 8;
  const keyOff = hdr;
  const valOff = hdr + align8(keySize);
  const stride = valOff + align8(valueSize);
  if (maxEntries > u32(MAX_REGION / stride) || cap > (MAX_REGION >>> 3)) return 0;
  const d = allocStatic(D_SIZE, 8);
  if (d == 0) return 0;
  const slots = allocStatic(<usize>cap * 8, 8);
  if (slots == 0) return 0;
  const entries = allocStatic(<usize>stride * <usize>maxEntries, 8);
  if (entries == 0) return 0;
  write32(d + D_KEY_SIZE, keySize);
  write32(d + D_VALUE_SIZE, valueSize);
  write32(d + D_MAX, maxEntries);
  write32(d + D_MASK, cap - 1);
  write32(d + D_COUNT, 0);
  write32(d + D_LRU, lru ? 1 : 0);
  write32(d + D_SLOTS, <u32>slots);
  write32(d + D_ENTRIES, <u32>entries);
  write32(d + D_STRIDE, stride);
  write32(d + D_HIGH, 0);
  write32(d + D_FREE, 0);
  write32(d + D_HEAD, 0);
  write32(d + D_TAIL, 0);
  write32(d + D_KEY_OFF, keyOff);
  write32(d + D_VAL_OFF, valOff);
  return d;
}

/** Looks up `key`. Returns a pointer to the stored value (8-byte aligned), or 0 when absent. In an LRU
 * table a hit makes the entry the most recently used. */
export function hashLookup(d: usize, key: usize): usize {
  const s = findSlot(d, key, keyHash(key, read32(d + D_KEY_SIZE) >>> 2));
  if (s == NONE) return 0;
  const idx = read32(slotPtr(d, s)) - 1;
  if (read32(d + D_LRU) != 0) lruTouch(d, idx);
  return entryPtr(d, idx) + <usize>read32(d + D_VAL_OFF);
}

/** Inserts or replaces `key` with the value at `value` (kernel check_flags() for the flag checks).
 * Returns:
 *   0        stored (a replaced entry keeps its place in iteration; LRU: now most recently used);
 *   -EINVAL  flags other than BPF_ANY / BPF_NOEXIST / BPF_EXIST;
 *   -EEXIST  BPF_NOEXIST and the key is present (nothing changes);
 *   -ENOENT  BPF_EXIST and the key is absent (nothing changes);
 *   -E2BIG   plain hash, key absent and the table holds maxEntries entries (an LRU table evicts its
 *            least recently used entry instead and succeeds). */
export function hashUpdate(d: usize, key: usize, value: usize, flags: u32): i32 {
  if (flags > BPF_EXIST) return -EINVAL;
  const ks = read32(d + D_KEY_SIZE);
  const vs = read32(d + D_VALUE_SIZE);
  const lru = read32(d + D_LRU) != 0;
  const h = keyHash(key, ks >>> 2);
  const s = findSlot(d, key, h);
  if (s != NONE) {
    if (flags == BPF_NOEXIST) return -EEXIST;
    const idx = read32(slotPtr(d, s)) - 1;
    memCopy(entryPtr(d, idx) + <usize>read32(d + D_VAL_OFF), value, <usize>vs);
    if (lru) lruTouch(d, idx);
    return 0;
  }
  if (flags == BPF_EXIST) return -ENOENT;
  if (read32(d + D_COUNT) >= read32(d + D_MAX)) {
    if (!lru) return -E2BIG;
    // Evict the least recently used entry. If `key`/`value` point into it, the copies below read the
    // same bytes they write (the entry is reused), which is harmless.
    const tail = read32(d + D_TAIL);
    const victim = entryPtr(d, tail - 1);
    const vs2 = findSlot(d, victim + <usize>read32(d + D_KEY_OFF),
      keyHash(victim + <usize>read32(d + D_KEY_OFF), ks >>> 2));
    removeAt(d, vs2);
  }
  const idx = allocEntry(d);
  const ep = entryPtr(d, idx);
  memCopy(ep + <usize>read32(d + D_KEY_OFF), key, <usize>ks);
  memCopy(ep + <usize>read32(d + D_VAL_OFF), value, <usize>vs);
  write32(ep + E_LIVE, 1);
  write32(ep + E_FREE_NEXT, 0);
  insertSlot(d, idx, h);
  if (lru) lruPushFront(d, idx);
  write32(d + D_COUNT, read32(d + D_COUNT) + 1);
  return 0;
}

/** Removes `key`. Returns 0, or -ENOENT when it is absent. */
export function hashDelete(d: usize, key: usize): i32 {
  const s = findSlot(d, key, keyHash(key, read32(d + D_KEY_SIZE) >>> 2));
  if (s == NONE) return -ENOENT;
  removeAt(d, s);
  return 0;
}

/** Writes the key that follows `key` in iteration order to `nextKey` (`key` = 0, or a key that is not
 * present: the first key, as htab_map_get_next_key() does). Order: entry-pool index order, deterministic
 * for a given history; with no changes every live key is visited exactly once. Does not touch LRU order.
 * Returns 0, or -ENOENT when there is no further key (or the table is empty). */
export function hashNextKey(d: usize, key: usize, nextKey: usize): i32 {
  const ks = read32(d + D_KEY_SIZE);
  let start: u32 = 0;
  if (key != 0) {
    const s = findSlot(d, key, keyHash(key, ks >>> 2));
    if (s != NONE) start = read32(slotPtr(d, s)); // index of the found entry + 1
  }
  const high = read32(d + D_HIGH);
  for (let i = start; i < high; i++) {
    const ep = entryPtr(d, i);
    if (read32(ep + E_LIVE) != 0) {
      memCopy(nextKey, ep + <usize>read32(d + D_KEY_OFF), <usize>ks);
      return 0;
    }
  }
  return -ENOENT;
}

/** Number of live entries. */
export function hashCount(d: usize): u32 {
  return read32(d + D_COUNT);
}
