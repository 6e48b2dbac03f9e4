/*
 * Maglev consistent hashing, as Cilium does it (pkg/maglev/maglev.go, pkg/murmur3/murmur3.go, paper:
 * Eisenbud et al., NSDI 2016), in two parts:
 *
 *   1. maglevBuild — host side (exported through the ABI; never on the packet path, never translated to
 *      C): from each backend's hash string, murmur3 x64-128 seeded with the cluster's Maglev seed gives
 *      (h1, h2); offset = h1 % M, skip = h2 % (M − 1) + 1; the backends' preference lists
 *      (offset + j·skip) % M are then filled round-robin, each backend claiming its next free preferred
 *      slot, until all M slots hold a backend id. Optional weights follow Cilium's Envoy-style counter.
 *      The result is identical to Cilium's GetLookupTable for the same backends, seed and M.
 *   2. maglevLookup — packet path: slot = hash % M in the flattened MapId.Maglev table, which the host
 *      fills with maglevStore (and clears with maglevDelete) after maglevBuild.
 *
 * No 64-bit integers: murmur3's u64 arithmetic is done on (lo, hi) u32 pairs kept in memory (the record's
 * work area), with a 32×32→64 multiply built from 16-bit halves.
 *
 * Input buffer of maglevBuild: `n` records of MAGLEV_REC_SIZE (160) bytes, little-endian:
 *     +0   backendId u32    written to the table (0xffffffff is reserved as "empty")
 *     +4   weight    u32    1..65535; when sum(weights) / n ≤ 1 weights are ignored (equal weights)
 *     +8   hashLen   u32    length of the hash string, 1..MAGLEV_HASH_MAX (96)
 *     +12  work area (52 bytes) — maglevBuild's scratch; the host need not clear it
 *     +64  hash string bytes (Cilium's "[<ip>:<port>/<PROTO>[/i],State:active]", see host/maglev.ts)
 * Records must be sorted by hash string, bytewise ascending (Go's string order), as Cilium sorts them;
 * host/maglev.ts formats and packs them. Output: M u32 backend ids at `out`.
 */
import { read8, read32, write16, write32, mul32 } from "./env";
import { mapDelete, mapLookup, mapUpdate } from "./maps";
import { arenaReset, stackAlloc } from "./alloc";
import { MapId, MAGLEV_KEY_SIZE, MAGLEV_KEY_REV_NAT_INDEX, MAGLEV_KEY_SLOT, MAGLEV_VALUE_SIZE, MAGLEV_VALUE_BACKEND_ID } from "./gen/layout";
import { BPF_ANY, EINVAL } from "./constants";

/** Record stride of maglevBuild's input. */
export const MAGLEV_REC_SIZE: u32 = 160;
export const MAGLEV_REC_ID: u32 = 0;
export const MAGLEV_REC_WEIGHT: u32 = 4;
export const MAGLEV_REC_HASH_LEN: u32 = 8;
// Work area (internal): preference-list position, skip, weight counter (u64), murmur scratch (32 bytes).
const REC_POS: u32 = 12;
const REC_SKIP: u32 = 16;
const REC_CNT: u32 = 24;
const REC_MURMUR: u32 = 32;
export const MAGLEV_REC_HASH: u32 = 64;
/** Longest hash string a record holds. */
export const MAGLEV_HASH_MAX: u32 = 96;
/** Largest table size (Cilium's largest supported M is 131071). */
export const MAGLEV_M_MAX: u32 = 131071;
/** Most backends one table build accepts. */
export const MAGLEV_BACKENDS_MAX: u32 = 65536;
/** Value of a slot no backend has claimed (never left in a finished table). */
export const MAGLEV_EMPTY: u32 = 0xffffffff;
/** Longest input murmur3Hash128 accepts (loops need a constant bound). */
export const MURMUR_MAX_LEN: u32 = 4096;

/* ------------------------------------------------------------------------------------------------ */
/* 64-bit arithmetic on little-endian (lo, hi) u32 pairs in memory. */

/** High 32 bits of the 64-bit product a·b. */
export function mulHi32(a: u32, b: u32): u32 {
  const a0: u32 = a & 0xffff;
  const a1: u32 = a >>> 16;
  const b0: u32 = b & 0xffff;
  const b1: u32 = b >>> 16;
  const p00: u32 = mul32(a0, b0);
  const p01: u32 = mul32(a0, b1);
  const p10: u32 = mul32(a1, b0);
  const p11: u32 = mul32(a1, b1);
  const mid: u32 = (p00 >>> 16) + (p01 & 0xffff) + (p10 & 0xffff);
  return u32(p11 + (p01 >>> 16) + (p10 >>> 16) + (mid >>> 16));
}

/** *p = *p · (ch:cl) mod 2^64. */
function mul64(p: usize, ch: u32, cl: u32): void {
  const lo = read32(p);
  const hi = read32(p + 4);
  write32(p, mul32(lo, cl));
  write32(p + 4, u32(mulHi32(lo, cl) + mul32(hi, cl) + mul32(lo, ch)));
}

/** *p = *p + (bh:bl) mod 2^64. */
function add64c(p: usize, bh: u32, bl: u32): void {
  const lo = read32(p);
  const nlo: u32 = u32(lo + bl);
  const carry: u32 = nlo < lo ? 1 : 0;
  write32(p, nlo);
  write32(p + 4, u32(read32(p + 4) + bh + carry));
}

/** *p = *p + *q mod 2^64. */
function add64m(p: usize, q: usize): void {
  add64c(p, read32(q + 4), read32(q));
}

/** *p ^= *q. */
function xor64m(p: usize, q: usize): void {
  write32(p, u32(read32(p) ^ read32(q)));
  write32(p + 4, u32(read32(p + 4) ^ read32(q + 4)));
}

/** *p = rotl64(*p, r), 1 ≤ r ≤ 63. */
function rotl64(p: usize, r: u32): void {
  let lo = read32(p);
  let hi = read32(p + 4);
  let s = r;
  if (s >= 32) {
    const t = lo;
    lo = hi;
    hi = t;
    s -= 32;
  }
  if (s != 0) {
    const nhi: u32 = u32((hi << s) | (lo >>> (32 - s)));
    const nlo: u32 = u32((lo << s) | (hi >>> (32 - s)));
    hi = nhi;
    lo = nlo;
  }
  write32(p, lo);
  write32(p + 4, hi);
}

/** murmur3 fmix64 on *p. */
function fmix64(p: usize): void {
  // k ^= k >> 33: only the low word changes (it receives hi >> 1).
  write32(p, u32(read32(p) ^ (read32(p + 4) >>> 1)));
  mul64(p, 0xff51afd7, 0xed558ccd);
  write32(p, u32(read32(p) ^ (read32(p + 4) >>> 1)));
  mul64(p, 0xc4ceb9fe, 0x1a85ec53);
  write32(p, u32(read32(p) ^ (read32(p + 4) >>> 1)));
}

/** (*p) mod m for 1 ≤ m < 2^24, byte by byte from the most significant end. */
export function mod64(p: usize, m: u32): u32 {
  let r: u32 = 0;
  for (let i: u32 = 0; i < 8; i++) {
    r = u32((r << 8) | read8(p + 7 - i)) % m;
  }
  return r;
}

/* ------------------------------------------------------------------------------------------------ */

/**
 * MurmurHash3 x64 128 (smhasher MurmurHash3_x64_128, as Cilium's pkg/murmur3 on a little-endian CPU) of
 * the `len` bytes at `data`, with both halves seeded by `seed`. Uses `out` as 32 bytes of state and leaves
 * h1 at out+0 and h2 at out+8 (each a little-endian u64: low word first).
 * Returns 0, or -EINVAL when len > MURMUR_MAX_LEN (out untouched).
 */
export function murmur3Hash128(data: usize, len: u32, seed: u32, out: usize): i32 {
  if (len > MURMUR_MAX_LEN) return -EINVAL;
  const h1 = out;
  const h2 = out + 8;
  const k1 = out + 16;
  const k2 = out + 24;
  write32(h1, seed);
  write32(h1 + 4, 0);
  write32(h2, seed);
  write32(h2 + 4, 0);
  const nblocks: u32 = len >>> 4;
  for (let i: u32 = 0; i < MURMUR_MAX_LEN / 16; i++) {
    if (i >= nblocks) break;
    const b: usize = data + (<usize>i << 4);
    write32(k1, read32(b));
    write32(k1 + 4, read32(b + 4));
    write32(k2, read32(b + 8));
    write32(k2 + 4, read32(b + 12));
    mul64(k1, 0x87c37b91, 0x114253d5);
    rotl64(k1, 31);
    mul64(k1, 0x4cf5ad43, 0x2745937f);
    xor64m(h1, k1);
    rotl64(h1, 27);
    add64m(h1, h2);
    mul64(h1, 0, 5);
    add64c(h1, 0, 0x52dce729);
    mul64(k2, 0x4cf5ad43, 0x2745937f);
    rotl64(k2, 33);
    mul64(k2, 0x87c37b91, 0x114253d5);
    xor64m(h2, k2);
    rotl64(h2, 31);
    add64m(h2, h1);
    mul64(h2, 0, 5);
    add64c(h2, 0, 0x38495ab5);
  }
  // Tail: up to 15 bytes, little-endian into k1 (bytes 0..7) and k2 (bytes 8..14).
  const tail: usize = data + (<usize>nblocks << 4);
  const t: u32 = len & 15;
  write32(k1, 0);
  write32(k1 + 4, 0);
  write32(k2, 0);
  write32(k2 + 4, 0);
  for (let i: u32 = 0; i < 15; i++) {
    if (i >= t) break;
    const byte: u32 = read8(tail + i);
    const w: usize = (i < 8 ? k1 : k2) + ((i & 7) >= 4 ? 4 : 0);
    write32(w, u32(read32(w) | (byte << ((i & 3) << 3))));
  }
  if (t > 8) {
    mul64(k2, 0x4cf5ad43, 0x2745937f);
    rotl64(k2, 33);
    mul64(k2, 0x87c37b91, 0x114253d5);
    xor64m(h2, k2);
  }
  if (t > 0) {
    mul64(k1, 0x87c37b91, 0x114253d5);
    rotl64(k1, 31);
    mul64(k1, 0x4cf5ad43, 0x2745937f);
    xor64m(h1, k1);
  }
  write32(h1, u32(read32(h1) ^ len));
  write32(h2, u32(read32(h2) ^ len));
  add64m(h1, h2);
  add64m(h2, h1);
  fmix64(h1);
  fmix64(h2);
  add64m(h1, h2);
  add64m(h2, h1);
  return 0;
}

function isPrime(m: u32): bool {
  if (m < 2) return false;
  if (m < 4) return true;
  if ((m & 1) == 0) return false;
  // sqrt(MAGLEV_M_MAX) < 363.
  for (let d: u32 = 3; d < 363; d += 2) {
    if (mul32(d, d) > m) break;
    if (m % d == 0) return false;
  }
  return true;
}

/** Bytewise comparison of two records' hash strings: true when a ≤ b. */
function hashLessEq(a: usize, b: usize): bool {
  const la = read32(a + MAGLEV_REC_HASH_LEN);
  const lb = read32(b + MAGLEV_REC_HASH_LEN);
  for (let i: u32 = 0; i < MAGLEV_HASH_MAX; i++) {
    if (i >= la || i >= lb) break;
    const ca = read8(a + MAGLEV_REC_HASH + i);
    const cb = read8(b + MAGLEV_REC_HASH + i);
    if (ca != cb) return ca < cb;
  }
  return la <= lb;
}

/**
 * Builds one service's Maglev lookup table (Cilium GetLookupTable / computeLookupTable) from `n` backend
 * records at `backends` (format in the file comment) into `out` (m u32 backend ids). Host only.
 * The host then writes MapId.Maglev {revNatIndex, slot j} = out[j] for j in 0..m−1.
 * Returns:
 *   0 — every slot of `out` holds a backend id from the input.
 *   -EINVAL — n is 0 or above MAGLEV_BACKENDS_MAX; m is not a prime in [2, MAGLEV_M_MAX]; a record has
 *     hashLen 0 or above MAGLEV_HASH_MAX, weight 0 or above 65535, or backend id 0xffffffff; or the
 *     records are not sorted by hash string. `out` may be partly written.
 */
export function maglevBuild(backends: usize, n: u32, m: u32, seedMurmur: u32, out: usize): i32 {
  if (n == 0 || n > MAGLEV_BACKENDS_MAX) return -EINVAL;
  if (m > MAGLEV_M_MAX || !isPrime(m)) return -EINVAL;
  let weightSum: u32 = 0;
  for (let i: u32 = 0; i < MAGLEV_BACKENDS_MAX; i++) {
    if (i >= n) break;
    const r: usize = backends + <usize>mul32(i, MAGLEV_REC_SIZE);
    const hl = read32(r + MAGLEV_REC_HASH_LEN);
    const w = read32(r + MAGLEV_REC_WEIGHT);
    if (hl == 0 || hl > MAGLEV_HASH_MAX || w == 0 || w > 0xffff) return -EINVAL;
    if (read32(r + MAGLEV_REC_ID) == MAGLEV_EMPTY) return -EINVAL;
    if (i > 0 && !hashLessEq(r - MAGLEV_REC_SIZE, r)) return -EINVAL;
    weightSum = u32(weightSum + w);
    // offset = h1 % M, skip = h2 % (M − 1) + 1 (maglev.go getOffsetAndSkip).
    murmur3Hash128(r + MAGLEV_REC_HASH, hl, seedMurmur, r + REC_MURMUR);
    write32(r + REC_POS, mod64(r + REC_MURMUR, m));
    write32(r + REC_SKIP, mod64(r + REC_MURMUR + 8, m - 1) + 1);
    // Weight counter starts at floor(weight / n) (Cilium: float64(weight) / n, compared truncated).
    write32(r + REC_CNT, u32(w / n));
    write32(r + REC_CNT + 4, 0);
  }
  const weightsUsed: bool = u32(weightSum / n) > 1;
  for (let j: u32 = 0; j < MAGLEV_M_MAX; j++) {
    if (j >= m) break;
    write32(out + (<usize>j << 2), MAGLEV_EMPTY);
  }
  for (let k: u32 = 0; k < MAGLEV_M_MAX; k++) {
    if (k >= m) break;
    let i: u32 = k % n;
    let r: usize = backends + <usize>mul32(i, MAGLEV_REC_SIZE);
    if (weightsUsed) {
      // Skip backends whose turn has not come: (k + 1) · weight < counter (64-bit compare). One of the
      // n backends always qualifies (sum of counters ≤ k · weightSum + weightSum / n), so n steps suffice.
      for (let t: u32 = 0; t < MAGLEV_BACKENDS_MAX; t++) {
        if (t >= n) break;
        const w = read32(r + MAGLEV_REC_WEIGHT);
        const pl: u32 = mul32(k + 1, w);
        const ph: u32 = mulHi32(k + 1, w);
        const cl = read32(r + REC_CNT);
        const ch = read32(r + REC_CNT + 4);
        const below: bool = ph < ch || (ph == ch && pl < cl);
        if (!below) break;
        i = i + 1 == n ? 0 : i + 1;
        r = backends + <usize>mul32(i, MAGLEV_REC_SIZE);
      }
      add64c(r + REC_CNT, 0, weightSum);
    }
    // Claim the backend's next unclaimed preferred slot. M is prime and skip in 1..M−1, so the preference
    // list visits every slot and a free one is found within M steps.
    const skip = read32(r + REC_SKIP);
    let pos = read32(r + REC_POS);
    for (let s: u32 = 0; s < MAGLEV_M_MAX; s++) {
      if (read32(out + (<usize>pos << 2)) == MAGLEV_EMPTY) break;
      pos = (pos + skip) % m;
    }
    write32(out + (<usize>pos << 2), read32(r + MAGLEV_REC_ID));
    write32(r + REC_POS, (pos + skip) % m);
  }
  return 0;
}

/**
 * Packet path: the backend id in slot `hash % m` of service `revNatIndex`'s Maglev table (Cilium
 * lb4_select_backend_id_maglev). Returns the backend id, or 0 when m is 0 or the slot is missing (the
 * table was not provisioned) — the caller then drops with DROP_NO_SERVICE, as Cilium does.
 */
export function maglevLookup(revNatIndex: u32, hash: u32, m: u32): u32 {
  if (m == 0) return 0;
  const key = stackAlloc(MAGLEV_KEY_SIZE);
  if (key == 0) return 0;
  write16(key + MAGLEV_KEY_REV_NAT_INDEX, revNatIndex);
  write32(key + MAGLEV_KEY_SLOT, hash % m);
  const v = mapLookup(MapId.Maglev, key);
  if (v == 0) return 0;
  return read32(v + MAGLEV_VALUE_BACKEND_ID);
}

/**
 * Host only: writes a built table (`m` u32 backend ids at `table`, from maglevBuild) into MapId.Maglev as
 * {revNatIndex, slot j} → table[j], so the host needs one call per service instead of m map updates.
 * Returns 0, or the first negative error of mapUpdate (e.g. -E2BIG when the map is full; earlier slots
 * stay written).
 */
export function maglevStore(revNatIndex: u32, table: usize, m: u32): i32 {
  arenaReset(); // host entry: its own scratch (never called from the packet path)
  const key = stackAlloc(MAGLEV_KEY_SIZE);
  const val = stackAlloc(MAGLEV_VALUE_SIZE);
  if (key == 0 || val == 0) return -EINVAL;
  write16(key + MAGLEV_KEY_REV_NAT_INDEX, revNatIndex);
  for (let j: u32 = 0; j < MAGLEV_M_MAX; j++) {
    if (j >= m) break;
    write32(key + MAGLEV_KEY_SLOT, j);
    write32(val + MAGLEV_VALUE_BACKEND_ID, read32(table + (<usize>j << 2)));
    const r = mapUpdate(MapId.Maglev, key, val, BPF_ANY);
    if (r != 0) return r;
  }
  return 0;
}

/** Host only: deletes slots 0..m−1 of service `revNatIndex` from MapId.Maglev. Returns the number of
 * slots that existed and were deleted. */
export function maglevDelete(revNatIndex: u32, m: u32): u32 {
  arenaReset(); // host entry: its own scratch (never called from the packet path)
  const key = stackAlloc(MAGLEV_KEY_SIZE);
  if (key == 0) return 0;
  write16(key + MAGLEV_KEY_REV_NAT_INDEX, revNatIndex);
  let n: u32 = 0;
  for (let j: u32 = 0; j < MAGLEV_M_MAX; j++) {
    if (j >= m) break;
    write32(key + MAGLEV_KEY_SLOT, j);
    if (mapDelete(MapId.Maglev, key) == 0) n++;
  }
  return n;
}
