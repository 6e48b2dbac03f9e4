// Unit and property tests for core/ipcache.ts (ipcacheLookup, ipcacheIdentity, endpointLookup) through
// the real map API (core/maps.ts). Runs the JavaScript semantics (env.portable).
import { beforeAll, beforeEach, describe, expect, it } from "vitest";
import fc from "fast-check";
import { endpointLookup, ipcacheIdentity, ipcacheLookup } from "./ipcache";
import { allocStatic, arenaReset } from "./alloc";
import { memFill, read16, read32, write8, write16, write32 } from "./env";
import { BPF_ANY, FAMILY_IPV4, FAMILY_IPV6, ID_WORLD, IPCACHE_STATIC_PREFIX } from "./constants";
import { mapCreate, mapDelete, mapNextKey, mapUpdate } from "./maps";
import {
  MapId,
  ENDPOINT_INFO_EP_ID,
  ENDPOINT_INFO_SEC_IDENTITY,
  ENDPOINT_INFO_SIZE,
  ENDPOINT_KEY_ADDR,
  ENDPOINT_KEY_FAMILY,
  ENDPOINT_KEY_SIZE,
  IPCACHE_KEY_ADDR,
  IPCACHE_KEY_FAMILY,
  IPCACHE_KEY_PREFIXLEN,
  IPCACHE_KEY_SIZE,
  IPCACHE_VALUE_FLAGS,
  IPCACHE_VALUE_SEC_IDENTITY,
  IPCACHE_VALUE_SIZE,
} from "./gen/layout";

const K = allocStatic(64, 8);
const V = allocStatic(64, 8);
const ADDR = allocStatic(16, 8);

function clearMap(map: MapId): void {
  for (let i = 0; i < 1_000_000; i++) {
    if (mapNextKey(map, 0, K) !== 0) return;
    mapDelete(map, K);
  }
}

function v4(s: string): number[] {
  return s.split(".").map(Number);
}
function v6(s: string): number[] {
  // Minimal IPv6 parser for test literals (supports one "::").
  const [head, tail] = s.includes("::") ? s.split("::") : [s, undefined];
  const h = head ? head.split(":").filter((x) => x !== "") : [];
  const t = tail ? tail.split(":").filter((x) => x !== "") : [];
  const groups = [...h, ...Array(8 - h.length - t.length).fill("0"), ...t].map((g) => parseInt(g, 16));
  return groups.flatMap((g) => [g >> 8, g & 0xff]);
}
/** Writes an address into ADDR (16 bytes, IPv4 in the first 4), `fill` for the unused IPv4 bytes. */
function addr(bytes: number[], fill = 0): number {
  memFill(ADDR, fill, 16);
  bytes.forEach((b, i) => write8(ADDR + i, b));
  return ADDR;
}

function putIpcache(bytes: number[], cidrBits: number, family: number, identity: number): void {
  memFill(K, 0, IPCACHE_KEY_SIZE);
  write32(K + IPCACHE_KEY_PREFIXLEN, IPCACHE_STATIC_PREFIX + cidrBits);
  write8(K + IPCACHE_KEY_FAMILY, family);
  // Mask the address to the prefix, as the agent does.
  bytes.forEach((b, i) => {
    const keep = Math.max(0, Math.min(8, cidrBits - i * 8));
    write8(K + IPCACHE_KEY_ADDR + i, b & ((0xff << (8 - keep)) & 0xff));
  });
  memFill(V, 0, IPCACHE_VALUE_SIZE);
  write32(V + IPCACHE_VALUE_SEC_IDENTITY, identity);
  write8(V + IPCACHE_VALUE_FLAGS, 0x2);
  expect(mapUpdate(MapId.Ipcache, K, V, BPF_ANY)).toBe(0);
}

function putEndpoint(bytes: number[], family: number, epId: number, identity: number): void {
  memFill(K, 0, ENDPOINT_KEY_SIZE);
  bytes.forEach((b, i) => write8(K + ENDPOINT_KEY_ADDR + i, b));
  write8(K + ENDPOINT_KEY_FAMILY, family);
  memFill(V, 0, ENDPOINT_INFO_SIZE);
  write16(V + ENDPOINT_INFO_EP_ID, epId);
  write32(V + ENDPOINT_INFO_SEC_IDENTITY, identity);
  expect(mapUpdate(MapId.Endpoints, K, V, BPF_ANY)).toBe(0);
}

function id4(s: string, fill = 0): number {
  arenaReset();
  return ipcacheIdentity(addr(v4(s), fill), FAMILY_IPV4, ID_WORLD);
}
function id6(s: string): number {
  arenaReset();
  return ipcacheIdentity(addr(v6(s)), FAMILY_IPV6, 10);
}

beforeAll(() => {
  arenaReset();
  expect(mapCreate(MapId.Ipcache, 4096)).toBe(0);
  expect(mapCreate(MapId.Endpoints, 256)).toBe(0);
});
beforeEach(() => {
  clearMap(MapId.Ipcache);
  clearMap(MapId.Endpoints);
});

describe("ipcache", () => {
  it("returns the most specific covering CIDR's identity (IPv4)", () => {
    putIpcache(v4("10.0.0.0"), 8, FAMILY_IPV4, 100);
    putIpcache(v4("10.1.0.0"), 16, FAMILY_IPV4, 200);
    putIpcache(v4("10.1.2.3"), 32, FAMILY_IPV4, 300);
    expect(id4("10.1.2.3")).toBe(300);
    expect(id4("10.1.2.4")).toBe(200);
    expect(id4("10.1.255.255")).toBe(200);
    expect(id4("10.200.0.1")).toBe(100);
    expect(id4("11.0.0.1")).toBe(ID_WORLD);
    expect(id4("9.255.255.255")).toBe(ID_WORLD);
  });

  it("ignores the 12 unused bytes of an IPv4 address buffer", () => {
    putIpcache(v4("10.1.2.3"), 32, FAMILY_IPV4, 300);
    expect(id4("10.1.2.3", 0xaa)).toBe(300);
  });

  it("0.0.0.0/0 covers every IPv4 address but no IPv6 address", () => {
    putIpcache(v4("0.0.0.0"), 0, FAMILY_IPV4, 9);
    expect(id4("192.0.2.1")).toBe(9);
    expect(id6("2001:db8::1")).toBe(10);
  });

  it("keeps the families apart", () => {
    // Same leading bytes, different family: an IPv4 entry never answers an IPv6 lookup.
    putIpcache([10, 0, 0, 1], 32, FAMILY_IPV4, 300);
    arenaReset();
    expect(ipcacheLookup(addr([10, 0, 0, 1]), FAMILY_IPV6)).toBe(0);
    arenaReset();
    expect(ipcacheLookup(addr([10, 0, 0, 1]), FAMILY_IPV4)).not.toBe(0);
  });

  it("looks up IPv6 with prefix length 32 + 128", () => {
    putIpcache(v6("2001:db8::"), 32, FAMILY_IPV6, 400);
    putIpcache(v6("2001:db8:1::"), 48, FAMILY_IPV6, 500);
    putIpcache(v6("2001:db8:1::42"), 128, FAMILY_IPV6, 600);
    expect(id6("2001:db8:1::42")).toBe(600);
    expect(id6("2001:db8:1::43")).toBe(500);
    expect(id6("2001:db8:2::1")).toBe(400);
    expect(id6("2001:db9::1")).toBe(10);
  });

  it("returns the value pointer, and 0 for an unknown family", () => {
    putIpcache(v4("10.1.2.3"), 32, FAMILY_IPV4, 300);
    arenaReset();
    const p = ipcacheLookup(addr(v4("10.1.2.3")), FAMILY_IPV4);
    expect(p).not.toBe(0);
    expect(read32(p + IPCACHE_VALUE_SEC_IDENTITY)).toBe(300);
    arenaReset();
    expect(ipcacheLookup(addr(v4("10.1.2.3")), 3)).toBe(0);
    arenaReset();
    expect(ipcacheIdentity(addr(v4("10.1.2.3")), 0, 77)).toBe(77);
  });

  it("equals a brute-force longest-prefix match (property)", () => {
    const prefix = fc.record({ a: fc.integer({ min: 0, max: 0xffffffff }), len: fc.integer({ min: 0, max: 32 }) });
    fc.assert(
      fc.property(
        fc.array(fc.record({ p: prefix, id: fc.integer({ min: 1, max: 1 << 24 }) }), { maxLength: 20 }),
        fc.array(fc.integer({ min: 0, max: 0xffffffff }), { minLength: 1, maxLength: 20 }),
        (entries, probes) => {
          clearMap(MapId.Ipcache);
          const model = new Map<string, { net: number; len: number; id: number }>();
          const mask = (len: number) => (len === 0 ? 0 : (0xffffffff << (32 - len)) >>> 0);
          for (const { p, id } of entries) {
            const net = (p.a & mask(p.len)) >>> 0;
            putIpcache([net >>> 24, (net >>> 16) & 0xff, (net >>> 8) & 0xff, net & 0xff], p.len, FAMILY_IPV4, id);
            model.set(`${net}/${p.len}`, { net, len: p.len, id });
          }
          // Probe the entries' own networks too, so hits are common.
          const all = [...probes, ...entries.map((e) => e.p.a >>> 0)];
          for (const a of all) {
            let best: { len: number; id: number } | undefined;
            for (const e of model.values()) {
              if (((a & mask(e.len)) >>> 0) === e.net && (!best || e.len > best.len)) best = e;
            }
            const s = `${a >>> 24}.${(a >>> 16) & 0xff}.${(a >>> 8) & 0xff}.${a & 0xff}`;
            expect(id4(s)).toBe(best ? best.id : ID_WORLD);
          }
        },
      ),
      { numRuns: 60 },
    );
  });
});

describe("endpointLookup", () => {
  it("finds local endpoints by exact address and family", () => {
    putEndpoint(v4("10.244.0.5"), FAMILY_IPV4, 42, 1234);
    putEndpoint(v6("fd00::5"), FAMILY_IPV6, 43, 1235);
    arenaReset();
    const p = endpointLookup(addr(v4("10.244.0.5"), 0x55), FAMILY_IPV4);
    expect(p).not.toBe(0);
    expect(read16(p + ENDPOINT_INFO_EP_ID)).toBe(42);
    expect(read32(p + ENDPOINT_INFO_SEC_IDENTITY)).toBe(1234);
    arenaReset();
    const q = endpointLookup(addr(v6("fd00::5")), FAMILY_IPV6);
    expect(q).not.toBe(0);
    expect(read16(q + ENDPOINT_INFO_EP_ID)).toBe(43);
    arenaReset();
    expect(endpointLookup(addr(v4("10.244.0.6")), FAMILY_IPV4)).toBe(0);
    arenaReset();
    expect(endpointLookup(addr(v4("10.244.0.5")), FAMILY_IPV6)).toBe(0);
    arenaReset();
    expect(endpointLookup(addr(v4("10.244.0.5")), 0)).toBe(0);
  });
});
