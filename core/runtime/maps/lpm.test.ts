// Unit and property tests for the LPM tables (core/runtime/maps/lpm.ts), directly and through the public map API
// (core/maps.ts, MapId.Ipcache / MapId.Policy). Runs the JavaScript semantics (env.portable).
import { describe, expect, it } from "vitest";
import fc from "fast-check";
import { lpmCount, lpmCreate, lpmDelete, lpmLookup, lpmNextKey, lpmUpdate } from "./lpm";
import { allocStatic } from "../../alloc";
import { read8, read32, write8, write32 } from "../../env";
import { BPF_ANY, BPF_EXIST, BPF_NOEXIST, E2BIG, EEXIST, EINVAL, ENOENT, FAMILY_IPV4, FAMILY_IPV6 } from "../../constants";
import { mapCount, mapCreate, mapDelete, mapLookup, mapNextKey, mapUpdate } from "../../maps";
import {
  MapId,
  IPCACHE_KEY_SIZE,
  IPCACHE_KEY_FAMILY,
  IPCACHE_KEY_ADDR,
  IPCACHE_VALUE_SIZE,
  IPCACHE_VALUE_SEC_IDENTITY,
  POLICY_KEY_SIZE,
  POLICY_KEY_SEC_LABEL,
  POLICY_KEY_EP_ID,
  POLICY_KEY_EGRESS,
  POLICY_KEY_PROTOCOL,
  POLICY_KEY_DPORT_BE,
  POLICY_ENTRY_SIZE,
} from "../../gen/layout";

const K = allocStatic(64, 8);
const V = allocStatic(64, 8);
const OUT = allocStatic(64, 8);
const PREV = allocStatic(64, 8);

/** Writes key = prefixlen | data bytes into K. */
function rawKey(plen: number, data: number[]): number {
  write32(K, plen);
  data.forEach((b, i) => write8(K + 4 + i, b));
  return K;
}
function val(x: number, vs: number): number {
  for (let i = 0; i < vs / 4; i++) write32(V + i * 4, (x + i) >>> 0);
  return V;
}
/** IpcacheKey data (20 bytes) for an IPv4 address "a.b.c.d" or raw IPv6 bytes. */
function ipData(addr: number[], family: number, clusterId = 0): number[] {
  const d = new Array(20).fill(0);
  d[0] = clusterId & 0xff;
  d[1] = clusterId >>> 8;
  d[3] = family;
  addr.forEach((b, i) => (d[4 + i] = b));
  return d;
}
function v4(s: string): number[] {
  return s.split(".").map(Number);
}
/** An ipcache key for CIDR `addr/bits` (prefixlen = 32 static bits + bits), data as given. */
function ipKey(addr: string, bits: number): number {
  return rawKey(32 + bits, ipData(v4(addr), FAMILY_IPV4));
}
function identityOf(addr: string): number | undefined {
  const p = mapLookup(MapId.Ipcache, ipKey(addr, 32));
  return p === 0 ? undefined : read32(p + IPCACHE_VALUE_SEC_IDENTITY);
}
function readKey(p: number, ks: number): number[] {
  const out: number[] = [];
  for (let i = 0; i < ks; i++) out.push(read8(p + i));
  return out;
}

describe("LPM via the public API: ipcache (IpcacheKey layout)", () => {
  it("returns the longest covering prefix", () => {
    expect(mapCreate(MapId.Ipcache, 8)).toBe(0);
    expect(IPCACHE_KEY_SIZE).toBe(24);
    expect(IPCACHE_KEY_FAMILY).toBe(7);
    expect(IPCACHE_KEY_ADDR).toBe(8);
    expect(mapUpdate(MapId.Ipcache, ipKey("0.0.0.0", 0), val(2, IPCACHE_VALUE_SIZE), BPF_ANY)).toBe(0);
    expect(mapUpdate(MapId.Ipcache, ipKey("10.0.0.0", 8), val(100, IPCACHE_VALUE_SIZE), BPF_ANY)).toBe(0);
    expect(mapUpdate(MapId.Ipcache, ipKey("10.1.0.0", 16), val(200, IPCACHE_VALUE_SIZE), BPF_ANY)).toBe(0);
    expect(mapUpdate(MapId.Ipcache, ipKey("10.1.2.3", 32), val(300, IPCACHE_VALUE_SIZE), BPF_ANY)).toBe(0);
    expect(identityOf("10.1.2.3")).toBe(300);
    expect(identityOf("10.1.2.4")).toBe(200);
    expect(identityOf("10.2.3.4")).toBe(100);
    expect(identityOf("11.0.0.1")).toBe(2);
    // The family byte is part of the exact 32-bit static prefix: an IPv6 key misses the IPv4 entries.
    const v6 = rawKey(160, ipData([0x0a, 0x01, 0x02, 0x03], FAMILY_IPV6));
    expect(mapLookup(MapId.Ipcache, v6)).toBe(0);
    expect(mapCount(MapId.Ipcache)).toBe(4);
  });

  it("falls back to shorter prefixes after deletes", () => {
    expect(mapDelete(MapId.Ipcache, ipKey("10.1.0.0", 16))).toBe(0);
    expect(mapDelete(MapId.Ipcache, ipKey("10.1.0.0", 16))).toBe(-ENOENT);
    expect(identityOf("10.1.2.4")).toBe(100);
    expect(identityOf("10.1.2.3")).toBe(300);
    // Delete identifies the entry by the first prefixlen bits only.
    expect(mapDelete(MapId.Ipcache, ipKey("10.99.98.97", 8))).toBe(0);
    expect(identityOf("10.1.2.4")).toBe(2);
    expect(mapCount(MapId.Ipcache)).toBe(2);
  });

  it("stores the data as given and identifies entries by the masked prefix", () => {
    expect(mapUpdate(MapId.Ipcache, ipKey("172.16.5.6", 12), val(400, IPCACHE_VALUE_SIZE), BPF_NOEXIST)).toBe(0);
    expect(mapUpdate(MapId.Ipcache, ipKey("172.17.0.0", 12), val(401, IPCACHE_VALUE_SIZE), BPF_NOEXIST)).toBe(-EEXIST);
    expect(identityOf("172.31.255.255")).toBe(400);
    expect(identityOf("172.32.0.0")).toBe(2);
    // Find the entry by iteration: its data is what the last successful update gave.
    const found: number[][] = [];
    let rc = mapNextKey(MapId.Ipcache, 0, OUT);
    for (let n = 0; rc === 0 && n < 100; n++) {
      found.push(readKey(OUT, 24));
      for (let i = 0; i < 24; i++) write8(PREV + i, read8(OUT + i));
      rc = mapNextKey(MapId.Ipcache, PREV, OUT);
    }
    expect(rc).toBe(-ENOENT);
    expect(found.length).toBe(3);
    expect(found).toContainEqual(readKey(ipKey("172.16.5.6", 12), 24));
    expect(mapUpdate(MapId.Ipcache, ipKey("172.17.0.0", 12), val(402, IPCACHE_VALUE_SIZE), BPF_EXIST)).toBe(0);
    expect(identityOf("172.16.0.1")).toBe(402);
    rc = mapNextKey(MapId.Ipcache, 0, OUT);
    const again: number[][] = [];
    for (let n = 0; rc === 0 && n < 100; n++) {
      again.push(readKey(OUT, 24));
      for (let i = 0; i < 24; i++) write8(PREV + i, read8(OUT + i));
      rc = mapNextKey(MapId.Ipcache, PREV, OUT);
    }
    expect(again).toContainEqual(readKey(ipKey("172.17.0.0", 12), 24));
    expect(again).not.toContainEqual(readKey(ipKey("172.16.5.6", 12), 24));
  });

  it("rejects prefix lengths above the maximum and honours the flags and the capacity", () => {
    expect(mapUpdate(MapId.Ipcache, rawKey(161, ipData(v4("1.2.3.4"), FAMILY_IPV4)), val(1, IPCACHE_VALUE_SIZE), BPF_ANY)).toBe(-EINVAL);
    expect(mapDelete(MapId.Ipcache, rawKey(161, ipData(v4("1.2.3.4"), FAMILY_IPV4)))).toBe(-EINVAL);
    expect(mapUpdate(MapId.Ipcache, ipKey("1.2.3.4", 32), val(1, IPCACHE_VALUE_SIZE), BPF_EXIST)).toBe(-ENOENT);
    expect(mapUpdate(MapId.Ipcache, ipKey("1.2.3.4", 32), val(1, IPCACHE_VALUE_SIZE), 3)).toBe(-EINVAL);
    for (let i = 0; mapCount(MapId.Ipcache) < 8 && i < 20; i++) {
      expect(mapUpdate(MapId.Ipcache, ipKey(`1.2.3.${i}`, 32), val(i, IPCACHE_VALUE_SIZE), BPF_NOEXIST)).toBe(0);
    }
    expect(mapUpdate(MapId.Ipcache, ipKey("9.9.9.9", 32), val(9, IPCACHE_VALUE_SIZE), BPF_ANY)).toBe(-E2BIG);
    // Replacing an existing entry still works when full.
    expect(mapUpdate(MapId.Ipcache, ipKey("1.2.3.0", 32), val(77, IPCACHE_VALUE_SIZE), BPF_ANY)).toBe(0);
    expect(identityOf("1.2.3.0")).toBe(77);
  });

  it("treats a lookup key's prefixlen as the number of valid bits; larger counts as the maximum", () => {
    // Entries now: 0/0 (2), 10.1.2.3/32 (300), 172.16/12 (402), 1.2.3.x/32 ...
    expect(read32(mapLookup(MapId.Ipcache, ipKey("10.1.2.3", 16)))).toBe(2); // only p <= 48 considered
    expect(read32(mapLookup(MapId.Ipcache, ipKey("10.1.2.3", 200)))).toBe(300); // 232 → clamped to 160
    expect(read32(mapLookup(MapId.Ipcache, rawKey(0xffffffff, ipData(v4("10.1.2.3"), FAMILY_IPV4))))).toBe(300);
  });
});

describe("LPM via the public API: policy (PolicyKey layout)", () => {
  function pkey(plen: number, label: number, ep: number, egress: number, proto: number, port: number): number {
    for (let i = 0; i < 16; i++) write8(K + i, 0);
    write32(K, plen);
    write32(K + POLICY_KEY_SEC_LABEL, label);
    write8(K + POLICY_KEY_EP_ID, ep & 0xff);
    write8(K + POLICY_KEY_EP_ID + 1, ep >>> 8);
    write8(K + POLICY_KEY_EGRESS, egress);
    write8(K + POLICY_KEY_PROTOCOL, proto);
    write8(K + POLICY_KEY_DPORT_BE, port >>> 8);
    write8(K + POLICY_KEY_DPORT_BE + 1, port & 0xff);
    return K;
  }
  it("picks the most specific protocol/port entry", () => {
    expect(mapCreate(MapId.Policy, 16)).toBe(0);
    expect(POLICY_KEY_SIZE).toBe(16);
    const vs = POLICY_ENTRY_SIZE;
    expect(mapUpdate(MapId.Policy, pkey(56, 7, 1, 0, 0, 0), val(1, vs), BPF_ANY)).toBe(0); // any proto/port
    expect(mapUpdate(MapId.Policy, pkey(64, 7, 1, 0, 6, 0), val(2, vs), BPF_ANY)).toBe(0); // TCP, any port
    expect(mapUpdate(MapId.Policy, pkey(80, 7, 1, 0, 6, 80), val(3, vs), BPF_ANY)).toBe(0); // TCP/80
    expect(mapUpdate(MapId.Policy, pkey(76, 7, 1, 0, 6, 8080), val(4, vs), BPF_ANY)).toBe(0); // TCP 8080-8095
    expect(mapUpdate(MapId.Policy, pkey(97, 7, 1, 0, 6, 80), val(5, vs), BPF_ANY)).toBe(-EINVAL);
    const look = (proto: number, port: number, label = 7, ep = 1, eg = 0) => {
      const p = mapLookup(MapId.Policy, pkey(96, label, ep, eg, proto, port));
      return p === 0 ? 0 : read32(p);
    };
    expect(look(6, 80)).toBe(3);
    expect(look(6, 8090)).toBe(4);
    expect(look(6, 8096)).toBe(2);
    expect(look(17, 53)).toBe(1);
    expect(look(6, 80, 8)).toBe(0);
    expect(look(6, 80, 7, 2)).toBe(0);
    expect(look(6, 80, 7, 1, 1)).toBe(0);
    expect(mapDelete(MapId.Policy, pkey(80, 7, 1, 0, 6, 80))).toBe(0);
    expect(look(6, 80)).toBe(2);
  });
});

describe("LPM direct", () => {
  it("rejects unusable sizes", () => {
    expect(lpmCreate(4, 8, 4)).toBe(0);
    expect(lpmCreate(10, 8, 4)).toBe(0);
    expect(lpmCreate(8, 6, 4)).toBe(0);
    expect(lpmCreate(8, 8, 0)).toBe(0);
    expect(lpmCreate(4 + 260, 8, 4)).toBe(0);
  });

  it("handles prefix length 0 and the maximum, and partial-byte prefixes", () => {
    const d = lpmCreate(8, 4, 8);
    expect(lpmUpdate(d, rawKey(0, [1, 2, 3, 4]), val(10, 4), BPF_ANY)).toBe(0);
    expect(lpmUpdate(d, rawKey(32, [0xc0, 0xa8, 0x01, 0x01]), val(11, 4), BPF_ANY)).toBe(0);
    expect(lpmUpdate(d, rawKey(9, [0xc0, 0x80, 0, 0]), val(12, 4), BPF_ANY)).toBe(0);
    expect(lpmUpdate(d, rawKey(33, [0, 0, 0, 0]), val(13, 4), BPF_ANY)).toBe(-EINVAL);
    const look = (b: number[], plen = 32) => {
      const p = lpmLookup(d, rawKey(plen, b));
      return p === 0 ? 0 : read32(p);
    };
    expect(look([0xc0, 0xa8, 0x01, 0x01])).toBe(11);
    expect(look([0xc0, 0xa8, 0x01, 0x02])).toBe(12); // 0xa8 has the top bit set: matches /9 of c0.80
    expect(look([0xc0, 0x28, 0x01, 0x02])).toBe(10);
    expect(look([0xc0, 0xa8, 0x01, 0x01], 9)).toBe(12);
    expect(look([0xc0, 0xa8, 0x01, 0x01], 8)).toBe(10);
    expect(lpmCount(d)).toBe(3);
    expect(lpmDelete(d, rawKey(0, [9, 9, 9, 9]))).toBe(0);
    expect(look([0xc0, 0x28, 0x01, 0x02])).toBe(0);
    expect(lpmUpdate(d, rawKey(9, [0xc0, 0xff, 0xff, 0xff]), val(14, 4), BPF_EXIST)).toBe(0);
    expect(look([0xc0, 0xa8, 0x01, 0x02])).toBe(14);
  });

  it("next key: a missing key or an invalid prefixlen restarts from the first entry", () => {
    const d = lpmCreate(8, 4, 8);
    expect(lpmNextKey(d, 0, OUT)).toBe(-ENOENT);
    lpmUpdate(d, rawKey(8, [10, 0, 0, 0]), val(1, 4), BPF_ANY);
    lpmUpdate(d, rawKey(16, [10, 1, 0, 0]), val(2, 4), BPF_ANY);
    expect(lpmNextKey(d, 0, OUT)).toBe(0);
    const first = readKey(OUT, 8);
    expect(lpmNextKey(d, rawKey(24, [10, 1, 2, 0]), OUT)).toBe(0);
    expect(readKey(OUT, 8)).toEqual(first);
    expect(lpmNextKey(d, rawKey(99, [10, 1, 2, 0]), OUT)).toBe(0);
    expect(readKey(OUT, 8)).toEqual(first);
    for (let i = 0; i < 8; i++) write8(PREV + i, first[i]);
    expect(lpmNextKey(d, PREV, OUT)).toBe(0);
    const second = readKey(OUT, 8);
    expect(second).not.toEqual(first);
    for (let i = 0; i < 8; i++) write8(PREV + i, second[i]);
    expect(lpmNextKey(d, PREV, OUT)).toBe(-ENOENT);
  });
});

// ---- Property: lookups equal a brute-force longest-prefix scan ------------------------------------

type Entry = { plen: number; data: number[] };
type LpmOp =
  | { t: "update"; e: number; v: number; flags: number; noise: number }
  | { t: "delete"; e: number; noise: number }
  | { t: "lookup"; e: number; flip: number; plenDelta: number };

function prefixEq(a: number[], b: number[], bits: number): boolean {
  for (let i = 0; i < bits; i++) {
    const byte = i >>> 3;
    const m = 0x80 >>> (i & 7);
    if ((a[byte] & m) !== (b[byte] & m)) return false;
  }
  return true;
}
function identity(e: Entry): string {
  const masked = e.data.map((b, i) => {
    const bitsHere = Math.max(0, Math.min(8, e.plen - i * 8));
    return b & ((0xff00 >>> bitsHere) & 0xff);
  });
  return `${e.plen}:${masked.join(",")}`;
}

function runLpmModel(ks: number, max: number, entries: Entry[], ops: LpmOp[]): void {
  const vs = 12;
  const maxPrefix = (ks - 4) * 8;
  const d = lpmCreate(ks, vs, max);
  expect(d).not.toBe(0);
  const model = new Map<string, { plen: number; data: number[]; v: number }>();
  for (const op of ops) {
    const e0 = entries[op.e % entries.length];
    // Updates and deletes may carry noise in the bits after the prefix: same entry, other data bytes.
    let e = e0;
    if (op.t !== "lookup" && op.noise >= e0.plen && op.noise < maxPrefix) {
      e = { plen: e0.plen, data: [...e0.data] };
      e.data[op.noise >>> 3] ^= 0x80 >>> (op.noise & 7);
    }
    if (op.t === "update") {
      const id = identity(e);
      const present = model.has(id);
      let want = 0;
      if (present && op.flags === BPF_NOEXIST) want = -EEXIST;
      else if (!present && op.flags === BPF_EXIST) want = -ENOENT;
      else if (!present && model.size >= max) want = -E2BIG;
      expect(lpmUpdate(d, rawKey(e.plen, e.data), val(op.v, vs), op.flags)).toBe(want);
      if (want === 0) model.set(id, { plen: e.plen, data: e.data, v: op.v });
    } else if (op.t === "delete") {
      const id = identity(e);
      expect(lpmDelete(d, rawKey(e.plen, e.data))).toBe(model.has(id) ? 0 : -ENOENT);
      model.delete(id);
    } else {
      // Look up an entry's data with one bit flipped (or none), with a full or shortened prefixlen.
      const data = [...e.data];
      if (op.flip < maxPrefix) data[op.flip >>> 3] ^= 0x80 >>> (op.flip & 7);
      const plen = Math.max(0, maxPrefix - op.plenDelta);
      let best: { plen: number; v: number } | undefined;
      for (const m of model.values()) {
        if (m.plen <= plen && prefixEq(m.data, data, m.plen) && (!best || m.plen > best.plen)) best = m;
      }
      const p = lpmLookup(d, rawKey(plen, data));
      if (best === undefined) expect(p).toBe(0);
      else {
        expect(p).not.toBe(0);
        expect(read32(p)).toBe(best.v);
        expect(read32(p + 8)).toBe((best.v + 2) >>> 0);
      }
    }
    expect(lpmCount(d)).toBe(model.size);
  }
  // Iteration returns every entry once, with its data as last given.
  const seen: string[] = [];
  let rc = lpmNextKey(d, 0, OUT);
  for (let n = 0; rc === 0 && n < 10000; n++) {
    const k = readKey(OUT, ks);
    seen.push(`${read32(OUT)}|${k.slice(4).join(",")}`);
    for (let i = 0; i < ks; i++) write8(PREV + i, k[i]);
    rc = lpmNextKey(d, PREV, OUT);
  }
  expect(rc).toBe(-ENOENT);
  expect(seen.sort()).toEqual([...model.values()].map((m) => `${m.plen}|${m.data.join(",")}`).sort());
}

const lpmOpArb = (n: number, maxPrefix: number): fc.Arbitrary<LpmOp> =>
  fc.oneof(
    { weight: 4, arbitrary: fc.record({ t: fc.constant("update" as const), e: fc.nat(n - 1), v: fc.nat(), flags: fc.constantFrom(0, 0, 1, 2), noise: fc.nat(maxPrefix) }) },
    { weight: 2, arbitrary: fc.record({ t: fc.constant("delete" as const), e: fc.nat(n - 1), noise: fc.nat(maxPrefix) }) },
    {
      weight: 4,
      arbitrary: fc.record({
        t: fc.constant("lookup" as const),
        e: fc.nat(n - 1),
        flip: fc.nat(maxPrefix + 40), // >= maxPrefix: no flip
        plenDelta: fc.oneof(fc.constant(0), fc.constant(0), fc.nat(maxPrefix)),
      }),
    },
  );

// IpcacheKey data: clusterId u16 | pad u8 | family u8 | addr[16]; bytes from a small alphabet so that
// prefixes overlap often.
const ipcacheEntryArb: fc.Arbitrary<Entry> = fc
  .record({
    cluster: fc.constantFrom(0, 0, 0, 1),
    family: fc.constantFrom(FAMILY_IPV4, FAMILY_IPV6),
    addr: fc.array(fc.constantFrom(0x00, 0x0a, 0x80, 0xc0, 0xff, 0x01), { minLength: 16, maxLength: 16 }),
    cidr: fc.oneof(fc.integer({ min: 0, max: 128 }), fc.constantFrom(0, 8, 16, 24, 32, 128)),
    low: fc.boolean(),
    rawPlen: fc.integer({ min: 0, max: 160 }),
  })
  .map((r) => ({ plen: r.low ? r.rawPlen : 32 + r.cidr, data: ipData(r.addr, r.family, r.cluster) }));

// PolicyKey data: secLabel u32 | epId u16 | egress u8 | protocol u8 | dport be16 | pad u16.
const policyEntryArb: fc.Arbitrary<Entry> = fc
  .record({
    label: fc.constantFrom(0, 1, 2, 0x10001),
    ep: fc.constantFrom(1, 2),
    egress: fc.constantFrom(0, 1),
    proto: fc.constantFrom(6, 17, 1),
    port: fc.oneof(fc.constantFrom(80, 443, 8080, 0), fc.integer({ min: 0, max: 65535 })),
    portBits: fc.integer({ min: 0, max: 16 }),
    kind: fc.constantFrom("l3", "proto", "port", "any"),
    anyPlen: fc.integer({ min: 0, max: 96 }),
  })
  .map((r) => {
    const data = [
      r.label & 0xff, (r.label >>> 8) & 0xff, (r.label >>> 16) & 0xff, r.label >>> 24,
      r.ep & 0xff, r.ep >>> 8, r.egress, r.proto, r.port >>> 8, r.port & 0xff, 0, 0,
    ];
    const plen = r.kind === "l3" ? 56 : r.kind === "proto" ? 64 : r.kind === "port" ? 64 + r.portBits : r.anyPlen;
    return { plen, data };
  });

describe("LPM properties", () => {
  it("ipcache layout: lookups equal a brute-force longest-prefix scan, through updates and deletes", () => {
    fc.assert(
      fc.property(
        fc.integer({ min: 1, max: 24 }),
        fc.array(ipcacheEntryArb, { minLength: 1, maxLength: 24 }),
        fc.array(lpmOpArb(24, 160), { maxLength: 150 }),
        (max, entries, ops) => runLpmModel(24, max, entries, ops),
      ),
      { numRuns: 150 },
    );
  });

  it("policy layout (12-byte data): lookups equal a brute-force longest-prefix scan", () => {
    fc.assert(
      fc.property(
        fc.integer({ min: 1, max: 24 }),
        fc.array(policyEntryArb, { minLength: 1, maxLength: 24 }),
        fc.array(lpmOpArb(24, 96), { maxLength: 150 }),
        (max, entries, ops) => runLpmModel(16, max, entries, ops),
      ),
      { numRuns: 150 },
    );
  });
});
