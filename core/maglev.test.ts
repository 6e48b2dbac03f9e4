// Unit tests for core/maglev.ts: murmur3 x64-128 against an independent BigInt transcription written
// here, the 64-bit helpers, and the table build (Cilium's reproducible table, fill, balance, disruption).
import { describe, expect, it } from "vitest";
import fc from "fast-check";
import { maglevBuild, maglevDelete, maglevLookup, maglevStore, murmur3Hash128, mod64, mulHi32, MAGLEV_EMPTY } from "./maglev";
import { mapCount, mapCreate } from "./maps";
import { MapId } from "./gen/layout";
import { allocStatic } from "./alloc";
import { read32, write8, write32 } from "./env";
import { maglevHashString, maglevSeeds, packMaglevInput, MAGLEV_REC_SIZE, MAGLEV_DEFAULT_SEED } from "../host/maglev";

// ---- independent BigInt murmur3 x64 128 (smhasher MurmurHash3_x64_128) ----
const M64 = (1n << 64n) - 1n;
const rotl = (x: bigint, r: bigint) => ((x << r) | (x >> (64n - r))) & M64;
const fmix = (k: bigint) => {
  k ^= k >> 33n; k = (k * 0xff51afd7ed558ccdn) & M64;
  k ^= k >> 33n; k = (k * 0xc4ceb9fe1a85ec53n) & M64;
  k ^= k >> 33n; return k;
};
function refMurmur(data: Uint8Array, seed: number): [bigint, bigint] {
  const c1 = 0x87c37b91114253d5n, c2 = 0x4cf5ad432745937fn;
  let h1 = BigInt(seed), h2 = BigInt(seed);
  const le = (off: number, n: number) => { let v = 0n; for (let i = n - 1; i >= 0; i--) v = (v << 8n) | BigInt(data[off + i]); return v; };
  const nb = Math.floor(data.length / 16);
  for (let i = 0; i < nb; i++) {
    let k1 = le(i * 16, 8), k2 = le(i * 16 + 8, 8);
    k1 = (k1 * c1) & M64; k1 = rotl(k1, 31n); k1 = (k1 * c2) & M64; h1 ^= k1;
    h1 = rotl(h1, 27n); h1 = (h1 + h2) & M64; h1 = (h1 * 5n + 0x52dce729n) & M64;
    k2 = (k2 * c2) & M64; k2 = rotl(k2, 33n); k2 = (k2 * c1) & M64; h2 ^= k2;
    h2 = rotl(h2, 31n); h2 = (h2 + h1) & M64; h2 = (h2 * 5n + 0x38495ab5n) & M64;
  }
  const t = data.length & 15, off = nb * 16;
  if (t > 8) { let k2 = le(off + 8, t - 8); k2 = (k2 * c2) & M64; k2 = rotl(k2, 33n); k2 = (k2 * c1) & M64; h2 ^= k2; }
  if (t > 0) { let k1 = le(off, Math.min(t, 8)); k1 = (k1 * c1) & M64; k1 = rotl(k1, 31n); k1 = (k1 * c2) & M64; h1 ^= k1; }
  h1 ^= BigInt(data.length); h2 ^= BigInt(data.length);
  h1 = (h1 + h2) & M64; h2 = (h2 + h1) & M64;
  h1 = fmix(h1); h2 = fmix(h2);
  h1 = (h1 + h2) & M64; h2 = (h2 + h1) & M64;
  return [h1, h2];
}

const copyIn = (p: number, bytes: Uint8Array) => bytes.forEach((b, i) => write8(p + i, b));
const ascii = (s: string) => Uint8Array.from(s, (c) => c.charCodeAt(0));
const read64 = (p: number) => (BigInt(read32(p + 4)) << 32n) | BigInt(read32(p));

describe("64-bit helpers", () => {
  it("mulHi32 is the high word of the exact product", () => {
    fc.assert(fc.property(fc.integer({ min: 0, max: 0xffffffff }), fc.integer({ min: 0, max: 0xffffffff }), (a, b) => {
      expect(mulHi32(a, b)).toBe(Number((BigInt(a) * BigInt(b)) >> 32n));
    }));
  });
  it("mod64 is the exact remainder", () => {
    const p = allocStatic(8, 8);
    fc.assert(fc.property(fc.bigInt({ min: 0n, max: M64 }), fc.integer({ min: 1, max: (1 << 24) - 1 }), (x, m) => {
      write32(p, Number(x & 0xffffffffn)); write32(p + 4, Number(x >> 32n));
      expect(mod64(p, m)).toBe(Number(x % BigInt(m)));
    }));
  });
});

describe("murmur3Hash128", () => {
  const data = allocStatic(512, 8);
  const out = allocStatic(32, 8);
  it("matches the BigInt reference for random data and seeds (lengths 0..300)", () => {
    fc.assert(fc.property(fc.uint8Array({ maxLength: 300 }), fc.integer({ min: 0, max: 0xffffffff }), (bytes, seed) => {
      copyIn(data, bytes);
      expect(murmur3Hash128(data, bytes.length, seed, out)).toBe(0);
      const [h1, h2] = refMurmur(bytes, seed);
      expect(read64(out)).toBe(h1);
      expect(read64(out + 8)).toBe(h2);
    }), { numRuns: 300 });
  });
  it("covers every tail length with a fixed string", () => {
    const s = ascii("[10.0.0.1:8080/TCP,State:active]-tail-0123456789");
    for (let n = 0; n <= s.length; n++) {
      copyIn(data, s.subarray(0, n));
      murmur3Hash128(data, n, 0x24b7ef82, out);
      const [h1, h2] = refMurmur(s.subarray(0, n), 0x24b7ef82);
      expect([read64(out), read64(out + 8)]).toEqual([h1, h2]);
    }
  });
  it("rejects over-long input", () => {
    expect(murmur3Hash128(data, 4097, 0, out)).toBeLessThan(0);
  });
});

// Cilium's pkg/maglev test address: IPv4 of i big-endian, port i, TCP.
const mkAddr = (i: number) => ({ addr: [i >>> 24, (i >>> 16) & 255, (i >>> 8) & 255, i & 255].join("."), port: i % 65535, protocol: "TCP" });
const seeds = maglevSeeds(MAGLEV_DEFAULT_SEED);
const input = allocStatic(MAGLEV_REC_SIZE * 1100, 8);
const table = allocStatic(4 * 131071, 8);

function build(backends: { id: number; weight?: number; hashString: string }[], m: number, seed = seeds.murmur): number[] {
  copyIn(input, packMaglevInput(backends).bytes);
  const rc = maglevBuild(input, backends.length, m, seed, table);
  expect(rc).toBe(0);
  return Array.from({ length: m }, (_, j) => read32(table + 4 * j));
}
const rle = (ids: number[]) => {
  const runs: string[] = [];
  let cur = ids[0], n = 1;
  for (const id of ids.slice(1)) { if (id === cur) n++; else { runs.push(`${cur}(${n})`); cur = id; n = 1; } }
  runs.push(`${cur}(${n})`);
  return runs.join(",");
};

describe("maglevHashString / seeds", () => {
  it("formats Cilium's hash string", () => {
    expect(maglevHashString({ addr: "10.0.0.1", port: 80, protocol: "tcp" })).toBe("[10.0.0.1:80/TCP,State:active]");
    expect(maglevHashString({ addr: "fd00:0:0::1", port: 443, protocol: "UDP", internal: true })).toBe("[[fd00::1]:443/UDP/i,State:active]");
    expect(maglevHashString({ addr: "2001:db8:0:0:1:0:0:1", port: 1, protocol: "TCP" })).toBe("[[2001:db8::1:0:0:1]:1/TCP,State:active]");
    expect(maglevHashString({ addr: "::ffff:10.1.2.3", port: 5, protocol: "TCP" })).toBe("[[::ffff:10.1.2.3]:5/TCP,State:active]");
    expect(maglevHashString({ addr: "10.0.0.1", port: 80, protocol: "TCP", clusterId: 3 })).toBe("[10.0.0.1@3:80/TCP,State:active]");
    expect(() => maglevHashString({ addr: "10.0.0.300", port: 1, protocol: "TCP" })).toThrow();
  });
  it("decodes the default seed", () => {
    expect(seeds.murmur).toBe(0x24b7ef82);
    expect(() => maglevSeeds("abc")).toThrow();
  });
});

describe("maglevBuild", () => {
  it("reproduces Cilium's TestReproducible table (M=251, default seed, weights 2/13/111/10)", () => {
    const expected = "2(5),3(1),2(3),1(1),2(2),0(1),2(1),3(1),2(1),3(1),2(1),1(1),2(7),1(1),2(14),3(1),2(1)," +
      "1(2),2(12),3(1),2(3),1(1),2(4),3(1),2(8),3(1),2(2),1(1),2(16),1(2),2(3),3(1),2(11),1(2),2(4),3(1),2(3)," +
      "1(1),2(4),3(1),2(1),0(1),1(1),2(8),1(1),2(7),1(1),2(4),3(1),2(1),3(1),2(9),1(2),2(5),1(1),2(7),3(1),2(1)," +
      "3(1),1(1),2(8),1(1),2(4),0(1),2(1),1(1),2(5),3(1),2(3),1(1),2(4),3(1),2(3),1(1),2(12),0(1),3(1),2(3),3(1)," +
      "2(4),3(1),2(2),1(1),2(7)";
    const bs = [[1, 2, 0], [3, 13, 1], [4, 111, 2], [5, 10, 3]].map(([a, w, id]) => ({ id, weight: w, hashString: maglevHashString(mkAddr(a)) }));
    expect(rle(build(bs, 251))).toBe(expected);
  });

  it("weighted counts match Cilium's TestWeightedBackendWithRemoval (M=1021)", () => {
    const bs = [[1, 2], [2, 13], [3, 111], [4, 10]].map(([i, w]) => ({ id: i, weight: w, hashString: maglevHashString(mkAddr(i)) }));
    const t = build(bs, 1021);
    const count = (id: number) => t.filter((x) => x === id).length;
    expect([count(1), count(2), count(3), count(4)]).toEqual([16, 98, 832, 75]);
  });

  it("is reproducible, fills every slot and balances equal weights (max/mean ≤ 1.1)", () => {
    const n = 10, m = 1021;
    const bs = Array.from({ length: n }, (_, i) => ({ id: 100 + i, hashString: maglevHashString({ addr: `10.0.1.${i + 1}`, port: 8080, protocol: "TCP" }) }));
    const a = build(bs, m);
    const b = build([...bs].reverse(), m); // input order does not matter: the host sorts
    expect(b).toEqual(a);
    expect(a.includes(MAGLEV_EMPTY)).toBe(false);
    const counts = bs.map((x) => a.filter((id) => id === x.id).length);
    expect(counts.reduce((s, c) => s + c, 0)).toBe(m);
    expect(Math.max(...counts) / (m / n)).toBeLessThanOrEqual(1.1);
    expect(Math.min(...counts)).toBeGreaterThan(0);
    // A different seed gives a different table.
    expect(build(bs, m, seeds.murmur ^ 1)).not.toEqual(a);
  });

  it("Cilium's TestBackendRemoval: removing the last of 3 backends (M=1021) moves < 1% of the others' slots", () => {
    const bs = [1, 2, 3].map((i) => ({ id: i, hashString: maglevHashString(mkAddr(i)) }));
    const before = build(bs, 1021);
    const after = build(bs.slice(0, 2), 1021);
    let moved = 0;
    for (let j = 0; j < 1021; j++) {
      if (before[j] === 3) expect([1, 2]).toContain(after[j]);
      else if (after[j] !== before[j]) moved++;
    }
    expect(moved / 1021).toBeLessThan(0.01);
  });

  // Skip of one backend's preference list at table size m, as maglevBuild computes it (h2 % (m − 1) + 1).
  const skipOf = (hashString: string, m: number): number => {
    const at = allocStatic(128, 8), out = allocStatic(32, 8);
    copyIn(at, ascii(hashString));
    murmur3Hash128(at, hashString.length, seeds.murmur, out);
    return Number(read64(out + 8) % BigInt(m - 1)) + 1;
  };
  const saltedBackends = (n: number, salt: number) => Array.from({ length: n }, (_, i) => ({
    id: i + 1, hashString: maglevHashString({ addr: `10.${salt >> 8}.${salt & 255}.${i + 1}`, port: 80, protocol: "TCP" }),
  }));
  const movedShare = (bs: { id: number; hashString: string }[], gone: number, m: number): number => {
    const before = build(bs, m);
    const after = build(bs.filter((b) => b.id !== gone), m);
    let moved = 0;
    let leftBehind = 0; // one expect per table, not per slot: this runs for hundreds of tables
    for (let j = 0; j < m; j++) {
      if (before[j] === gone) leftBehind += after[j] === gone ? 1 : 0;
      else if (after[j] !== before[j]) moved++;
    }
    expect(leftBehind).toBe(0);
    return moved / m;
  };

  // Maglev promises minimal disruption on average, not for every backend set: its worst cases come from
  // preference lists that happen to collide. Measured over 5,600 removals at M=16381 (N = 2..10): median
  // 0.16%, p99 0.87%, p99.9 2.2%, worst 4.1% (identical tables to Cilium's, see above). So the bound is
  // checked on a fixed sample, as a distribution, and the random property checks only what must always hold.
  it("removing one of N backends at the default M=16381 moves a median < 0.5% and a p99 < 2% of the others' slots", () => {
    const m = 16381;
    const shares: number[] = [];
    for (let salt = 0; salt < 80; salt++) {
      for (const n of [2, 4, 10]) {
        const bs = saltedBackends(n, salt);
        shares.push(movedShare(bs, bs[salt % n].id, m));
      }
    }
    shares.sort((a, b) => a - b);
    expect(shares[Math.floor(shares.length / 2)]).toBeLessThan(0.005);
    expect(shares[Math.floor(shares.length * 0.99)]).toBeLessThan(0.02);
  }, 240_000); // 480 table builds: about 10 s on an idle machine, several times that under load

  it("removing any one of N backends hands all its slots to the others (random backend sets)", () => {
    fc.assert(fc.property(fc.integer({ min: 2, max: 10 }), fc.integer({ min: 0, max: 9 }), fc.integer({ min: 0, max: 65535 }), (n, which, salt) => {
      const bs = saltedBackends(n, salt);
      expect(movedShare(bs, bs[which % n].id, 1021)).toBeLessThan(1);
    }), { numRuns: 30 });
  });

  // Two backends whose hashes give the same skip (chance ≈ 1/(M−1) per pair) walk the same cycle of slots a
  // fixed distance apart, so they contend for every slot and removing a third backend reshuffles much of
  // what they hold. That is Maglev's construction, not ours: Cilium's pkg/maglev builds the same table.
  // Found by a random property run (seed 1154520693); pinned so the exception stays explained.
  it("two backends sharing a skip: removing a third still never leaves its slots behind, but moves ≈ 31%", () => {
    const m = 16381;
    const bs = saltedBackends(3, 668);
    expect(skipOf(bs[1].hashString, m)).toBe(skipOf(bs[2].hashString, m));
    const share = movedShare(bs, 1, m);
    expect(share).toBeGreaterThan(0.25);
    expect(share).toBeLessThan(0.35);
  });

  it("rejects bad input", () => {
    const bs = [{ id: 1, hashString: "[10.0.0.1:80/TCP,State:active]" }, { id: 2, hashString: "[10.0.0.2:80/TCP,State:active]" }];
    copyIn(input, packMaglevInput(bs).bytes);
    expect(maglevBuild(input, 2, 250, 0, table)).toBeLessThan(0); // not prime
    expect(maglevBuild(input, 2, 131101, 0, table)).toBeLessThan(0); // too large
    expect(maglevBuild(input, 0, 251, 0, table)).toBeLessThan(0);
    // Unsorted records: swap the two hash strings' last differing byte.
    write8(input + 64 + 7, "9".charCodeAt(0));
    expect(maglevBuild(input, 2, 251, 0, table)).toBeLessThan(0);
    copyIn(input, packMaglevInput(bs).bytes);
    write32(input + 4, 0); // weight 0
    expect(maglevBuild(input, 2, 251, 0, table)).toBeLessThan(0);
  });
});

describe("maglevStore / maglevLookup / maglevDelete", () => {
  it("stores a table in MapId.Maglev, looks slots up by hash % M, and deletes it", () => {
    mapCreate(MapId.Maglev, 4096);
    const bs = [1, 2, 3].map((i) => ({ id: 10 + i, hashString: maglevHashString(mkAddr(i)) }));
    const t = build(bs, 251);
    expect(maglevStore(42, table, 251)).toBe(0);
    expect(mapCount(MapId.Maglev)).toBe(251);
    for (const h of [0, 1, 250, 251, 0xffffffff, 123456789]) expect(maglevLookup(42, h, 251)).toBe(t[h % 251]);
    expect(maglevLookup(43, 5, 251)).toBe(0); // another service: not provisioned
    expect(maglevLookup(42, 5, 0)).toBe(0); // M = 0: Maglev off
    expect(maglevDelete(42, 251)).toBe(251);
    expect(maglevLookup(42, 5, 251)).toBe(0);
  });
});
