/*
 * Bob Jenkins' lookup3 hash as the Linux kernel spells it (include/linux/jhash.h: __jhash_mix,
 * __jhash_final, jhash2, jhash_3words) and the flow hashes Cilium builds on it (bpf/lib/hash.h:
 * hash_from_tuple_v4 / hash_from_tuple_v6). Backend selection (core/lb.ts) uses these so that the same
 * packet hashes to the same value in WASM, JavaScript and the kernel.
 *
 * Portability: every addition, subtraction and xor is wrapped in u32() because JavaScript's operators
 * return doubles / signed int32; rotations use >>>. The mix and final steps are written out inline in each
 * function (core has no pass-by-reference and no arrays to return three words from a helper).
 */
import { read32 } from "./env";
import { bswap16 } from "./bytes";

/** JHASH_INITVAL of include/linux/jhash.h. */
export const JHASH_INITVAL: u32 = 0xdeadbeef;
/** Largest word count jhash2 accepts (loops need a constant bound). */
export const JHASH2_MAX_WORDS: u32 = 64;

/** Rotate left by k (1 ≤ k ≤ 31). */
export function rol32(x: u32, k: u32): u32 {
  return u32((x << k) | (x >>> (32 - k)));
}

/**
 * __jhash_nwords + __jhash_final: the tail of jhash_3words/jhash_2words/jhash_1word once the caller has
 * added JHASH_INITVAL + (n << 2) to `initval`. Returns c.
 */
function jhashFinal3(a0: u32, b0: u32, c0: u32, initval: u32): u32 {
  let a: u32 = u32(a0 + initval);
  let b: u32 = u32(b0 + initval);
  let c: u32 = u32(c0 + initval);
  c = u32(c ^ b); c = u32(c - rol32(b, 14));
  a = u32(a ^ c); a = u32(a - rol32(c, 11));
  b = u32(b ^ a); b = u32(b - rol32(a, 25));
  c = u32(c ^ b); c = u32(c - rol32(b, 16));
  a = u32(a ^ c); a = u32(a - rol32(c, 4));
  b = u32(b ^ a); b = u32(b - rol32(a, 14));
  c = u32(c ^ b); c = u32(c - rol32(b, 24));
  return c;
}

/** jhash_3words(a, b, c, initval) of include/linux/jhash.h. Always returns the 32-bit hash. */
export function jhash3Words(a: u32, b: u32, c: u32, initval: u32): u32 {
  return jhashFinal3(a, b, c, u32(initval + JHASH_INITVAL + 12));
}

/** jhash_2words(a, b, initval). Always returns the 32-bit hash. */
export function jhash2Words(a: u32, b: u32, initval: u32): u32 {
  return jhashFinal3(a, b, 0, u32(initval + JHASH_INITVAL + 8));
}

/** jhash_1word(a, initval). Always returns the 32-bit hash. */
export function jhash1Word(a: u32, initval: u32): u32 {
  return jhashFinal3(a, 0, 0, u32(initval + JHASH_INITVAL + 4));
}

/**
 * jhash2(k, length, initval): hashes `length` u32 words read (little-endian, as the kernel reads them on
 * x86/arm64) from memory at `k`. Returns the 32-bit hash; `length` above JHASH2_MAX_WORDS is clamped to
 * JHASH2_MAX_WORDS (the words after that are not hashed), `length` 0 returns the initial value as the
 * kernel does.
 */
export function jhash2(k: usize, length: u32, initval: u32): u32 {
  let len: u32 = length > JHASH2_MAX_WORDS ? JHASH2_MAX_WORDS : length;
  let a: u32 = u32(JHASH_INITVAL + (len << 2) + initval);
  let b: u32 = a;
  let c: u32 = a;
  let p: usize = k;
  // Bounded form of `while (length > 3)` (JHASH2_MAX_WORDS / 3 + 1 rounds at most).
  for (let i: u32 = 0; i < 22; i++) {
    if (len <= 3) break;
    a = u32(a + read32(p));
    b = u32(b + read32(p + 4));
    c = u32(c + read32(p + 8));
    // __jhash_mix
    a = u32(a - c); a = u32(a ^ rol32(c, 4)); c = u32(c + b);
    b = u32(b - a); b = u32(b ^ rol32(a, 6)); a = u32(a + c);
    c = u32(c - b); c = u32(c ^ rol32(b, 8)); b = u32(b + a);
    a = u32(a - c); a = u32(a ^ rol32(c, 16)); c = u32(c + b);
    b = u32(b - a); b = u32(b ^ rol32(a, 19)); a = u32(a + c);
    c = u32(c - b); c = u32(c ^ rol32(b, 4)); b = u32(b + a);
    len -= 3;
    p += 12;
  }
  if (len == 0) return c;
  if (len >= 3) c = u32(c + read32(p + 8));
  if (len >= 2) b = u32(b + read32(p + 4));
  a = u32(a + read32(p));
  // __jhash_final (initval already folded in above).
  return jhashFinal3(a, b, c, 0);
}

/**
 * Cilium's IPv4 flow hash (bpf/lib/hash.h __hash_from_tuple_v4): jhash_3words(saddr,
 * (dport << 16) | sport, nexthdr, seed). `saddrRaw` is the address as the kernel holds a __be32 in a
 * register on a little-endian CPU (read32 of the 4 network-order bytes); `dport`/`sport` are host-order
 * numbers and are byte-swapped here so the words equal Cilium's __be16 values on little-endian hosts.
 * The destination address is deliberately not hashed (Maglev must pick the same backend on every node
 * whatever frontend address was used). Always returns the 32-bit hash.
 */
export function hashFromTupleV4(saddrRaw: u32, dport: u32, sport: u32, nexthdr: u32, seed: u32): u32 {
  const ports: u32 = u32((bswap16(dport) << 16) | bswap16(sport));
  return jhash3Words(saddrRaw, ports, nexthdr, seed);
}

/**
 * Cilium's IPv6 flow hash (bpf/lib/hash.h __hash_from_tuple_v6): two mix rounds over the four source
 * address words, the ports and nexthdr, then the seed added to `a` and a final round. `saddr` points to
 * the 16 address bytes. Ports are host-order numbers (see hashFromTupleV4). Always returns the hash.
 */
export function hashFromTupleV6(saddr: usize, dport: u32, sport: u32, nexthdr: u32, seed: u32): u32 {
  let a: u32 = read32(saddr);
  let b: u32 = read32(saddr + 4);
  let c: u32 = read32(saddr + 8);
  // __jhash_mix
  a = u32(a - c); a = u32(a ^ rol32(c, 4)); c = u32(c + b);
  b = u32(b - a); b = u32(b ^ rol32(a, 6)); a = u32(a + c);
  c = u32(c - b); c = u32(c ^ rol32(b, 8)); b = u32(b + a);
  a = u32(a - c); a = u32(a ^ rol32(c, 16)); c = u32(c + b);
  b = u32(b - a); b = u32(b ^ rol32(a, 19)); a = u32(a + c);
  c = u32(c - b); c = u32(c ^ rol32(b, 4)); b = u32(b + a);
  a = u32(a + read32(saddr + 12));
  b = u32(b + u32((bswap16(dport) << 16) | bswap16(sport)));
  c = u32(c + nexthdr);
  // __jhash_mix
  a = u32(a - c); a = u32(a ^ rol32(c, 4)); c = u32(c + b);
  b = u32(b - a); b = u32(b ^ rol32(a, 6)); a = u32(a + c);
  c = u32(c - b); c = u32(c ^ rol32(b, 8)); b = u32(b + a);
  a = u32(a - c); a = u32(a ^ rol32(c, 16)); c = u32(c + b);
  b = u32(b - a); b = u32(b ^ rol32(a, 19)); a = u32(a + c);
  c = u32(c - b); c = u32(c ^ rol32(b, 4)); b = u32(b + a);
  a = u32(a + seed);
  return jhashFinal3(a, b, c, 0);
}
