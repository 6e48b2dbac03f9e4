// Unit tests for core/hash.ts: jhash against an independent plain-JS transcription of
// include/linux/jhash.h written here, plus Cilium's flow-hash word layout.
import { describe, expect, it } from "vitest";
import fc from "fast-check";
import { jhash1Word, jhash2, jhash2Words, jhash3Words, hashFromTupleV4, hashFromTupleV6, rol32 } from "./hash";
import { allocStatic } from "./alloc";
import { write32 } from "./env";

// ---- independent reference (operates on a JS array of words) ----
const rol = (x: number, k: number) => ((x << k) | (x >>> (32 - k))) >>> 0;
function mix(s: number[]) {
  let [a, b, c] = s;
  a = (a - c) >>> 0; a = (a ^ rol(c, 4)) >>> 0; c = (c + b) >>> 0;
  b = (b - a) >>> 0; b = (b ^ rol(a, 6)) >>> 0; a = (a + c) >>> 0;
  c = (c - b) >>> 0; c = (c ^ rol(b, 8)) >>> 0; b = (b + a) >>> 0;
  a = (a - c) >>> 0; a = (a ^ rol(c, 16)) >>> 0; c = (c + b) >>> 0;
  b = (b - a) >>> 0; b = (b ^ rol(a, 19)) >>> 0; a = (a + c) >>> 0;
  c = (c - b) >>> 0; c = (c ^ rol(b, 4)) >>> 0; b = (b + a) >>> 0;
  s[0] = a; s[1] = b; s[2] = c;
}
function final(s: number[]) {
  let [a, b, c] = s;
  c = (c ^ b) >>> 0; c = (c - rol(b, 14)) >>> 0;
  a = (a ^ c) >>> 0; a = (a - rol(c, 11)) >>> 0;
  b = (b ^ a) >>> 0; b = (b - rol(a, 25)) >>> 0;
  c = (c ^ b) >>> 0; c = (c - rol(b, 16)) >>> 0;
  a = (a ^ c) >>> 0; a = (a - rol(c, 4)) >>> 0;
  b = (b ^ a) >>> 0; b = (b - rol(a, 14)) >>> 0;
  c = (c ^ b) >>> 0; c = (c - rol(b, 24)) >>> 0;
  s[0] = a; s[1] = b; s[2] = c;
}
const INIT = 0xdeadbeef;
function refJhash2(k: number[], initval: number): number {
  const s = Array(3).fill((INIT + (k.length << 2) + initval) >>> 0);
  let i = 0;
  let len = k.length;
  while (len > 3) {
    s[0] = (s[0] + k[i]) >>> 0; s[1] = (s[1] + k[i + 1]) >>> 0; s[2] = (s[2] + k[i + 2]) >>> 0;
    mix(s); len -= 3; i += 3;
  }
  if (len === 0) return s[2];
  if (len >= 3) s[2] = (s[2] + k[i + 2]) >>> 0;
  if (len >= 2) s[1] = (s[1] + k[i + 1]) >>> 0;
  s[0] = (s[0] + k[i]) >>> 0;
  final(s);
  return s[2];
}
function refNwords(a: number, b: number, c: number, initval: number): number {
  const s = [(a + initval) >>> 0, (b + initval) >>> 0, (c + initval) >>> 0];
  final(s);
  return s[2];
}
const ref3 = (a: number, b: number, c: number, iv: number) => refNwords(a, b, c, (iv + INIT + 12) >>> 0);

const u32 = fc.integer({ min: 0, max: 0xffffffff });

describe("jhash", () => {
  it("rol32 rotates", () => {
    expect(rol32(0x80000001, 1)).toBe(3);
    expect(rol32(0x12345678, 8)).toBe(0x34567812);
  });

  it("jhash_3words / 2words / 1word match the reference", () => {
    fc.assert(fc.property(u32, u32, u32, u32, (a, b, c, iv) => {
      expect(jhash3Words(a, b, c, iv)).toBe(ref3(a, b, c, iv));
      expect(jhash2Words(a, b, iv)).toBe(refNwords(a, b, 0, (iv + INIT + 8) >>> 0));
      expect(jhash1Word(a, iv)).toBe(refNwords(a, 0, 0, (iv + INIT + 4) >>> 0));
    }));
  });

  it("jhash_3words fixed vectors (computed by the reference)", () => {
    for (const [a, b, c, iv] of [[0, 0, 0, 0], [1, 2, 3, 4], [0xffffffff, 0x80000000, 0x7fffffff, 0xdeadbeef]]) {
      const h = jhash3Words(a, b, c, iv);
      expect(h).toBe(ref3(a, b, c, iv));
      expect(h).toBeGreaterThanOrEqual(0);
      expect(h).toBeLessThanOrEqual(0xffffffff);
    }
    // Known-answer check: all-zero input differs from a one-bit change (avalanche smoke test).
    expect(jhash3Words(0, 0, 0, 0)).not.toBe(jhash3Words(1, 0, 0, 0));
  });

  it("jhash2 over memory matches the reference for 0..20 words", () => {
    const p = allocStatic(4 * 64, 8);
    fc.assert(fc.property(fc.array(u32, { maxLength: 20 }), u32, (words, iv) => {
      words.forEach((w, i) => write32(p + 4 * i, w));
      expect(jhash2(p, words.length, iv)).toBe(refJhash2(words, iv));
    }));
  });

  it("hashFromTupleV4 hashes (saddr as LE word, be16 dport << 16 | be16 sport, nexthdr)", () => {
    const bs16 = (x: number) => ((x & 0xff) << 8) | (x >>> 8);
    fc.assert(fc.property(u32, fc.integer({ min: 0, max: 65535 }), fc.integer({ min: 0, max: 65535 }), fc.integer({ min: 0, max: 255 }), u32,
      (s, dp, sp, nh, seed) => {
        const want = ref3(s, ((bs16(dp) << 16) | bs16(sp)) >>> 0, nh, seed);
        expect(hashFromTupleV4(s, dp, sp, nh, seed)).toBe(want);
      }));
  });

  it("hashFromTupleV6 follows Cilium's two-mix layout", () => {
    const p = allocStatic(16, 8);
    const bs16 = (x: number) => ((x & 0xff) << 8) | (x >>> 8);
    fc.assert(fc.property(fc.array(u32, { minLength: 4, maxLength: 4 }), fc.integer({ min: 0, max: 65535 }), fc.integer({ min: 0, max: 65535 }), u32,
      (w, dp, sp, seed) => {
        w.forEach((x, i) => write32(p + 4 * i, x));
        const s = [w[0], w[1], w[2]];
        mix(s);
        s[0] = (s[0] + w[3]) >>> 0; s[1] = (s[1] + (((bs16(dp) << 16) | bs16(sp)) >>> 0)) >>> 0; s[2] = (s[2] + 6) >>> 0;
        mix(s);
        s[0] = (s[0] + seed) >>> 0;
        final(s);
        expect(hashFromTupleV6(p, dp, sp, 6, seed)).toBe(s[2]);
      }));
  });
});
