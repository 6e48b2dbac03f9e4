// Test-only helpers for core/lb.test.ts and core/nat.test.ts (not part of the datapath): frame builders,
// an independent from-scratch Internet checksum verifier, packet placement in core memory and map setup.
import { allocStatic, arenaReset } from "./alloc";
import { read8, write8, write16, write32 } from "./env";
import { mapCreate, mapDelete, mapNextKey, mapUpdate } from "./maps";
import { parsePacket } from "./packet";
import * as L from "./gen/layout";

export type B = number[];

export function v4(s: string): B {
  return s.split(".").map(Number);
}
export function v6(s: string): B {
  const [h, t] = s.split("::");
  const g = (x: string | undefined) => (x ? x.split(":").map((y) => parseInt(y, 16)) : []);
  const head = g(h);
  const tail = g(t);
  const words = [...head, ...Array(8 - head.length - tail.length).fill(0), ...tail];
  return words.flatMap((w) => [w >> 8, w & 255]);
}
export const pad16 = (a: B): B => [...a, ...Array(16 - a.length).fill(0)];

/** Ones'-complement sum of 16-bit big-endian words (odd byte padded), folded. */
export function onesSum(bytes: B, init = 0): number {
  let s = init;
  for (let i = 0; i < bytes.length; i += 2) s += (bytes[i] << 8) | (bytes[i + 1] ?? 0);
  while (s > 0xffff) s = (s & 0xffff) + (s >>> 16);
  return s;
}
const be16 = (x: number): B => [(x >> 8) & 255, x & 255];
const be32 = (x: number): B => [...be16(x >>> 16), ...be16(x & 0xffff)];

export interface Flow {
  family: 4 | 6;
  proto: 6 | 17;
  src: B;
  dst: B;
  sport: number;
  dport: number;
  tcpFlags?: number;
  payload?: B;
  /** UDP only: send a zero ("no") checksum. */
  noUdpCsum?: boolean;
}

/** A complete Ethernet frame with correct IPv4 header and L4 checksums. */
export function frame(f: Flow): B {
  const payload = f.payload ?? [1, 2, 3, 4, 5];
  let l4: B;
  if (f.proto === 6) {
    l4 = [...be16(f.sport), ...be16(f.dport), ...be32(1000), ...be32(0), 0x50, f.tcpFlags ?? 0x02, ...be16(8192), 0, 0, 0, 0, ...payload];
  } else {
    l4 = [...be16(f.sport), ...be16(f.dport), ...be16(8 + payload.length), 0, 0, ...payload];
  }
  const csumAt = f.proto === 6 ? 16 : 6;
  const pseudo = [...f.src, ...f.dst, ...(f.family === 4 ? [0, f.proto, ...be16(l4.length)] : [...be32(l4.length), 0, 0, 0, f.proto])];
  let c = (~onesSum(l4, onesSum(pseudo))) & 0xffff;
  if (f.proto === 17 && c === 0) c = 0xffff;
  if (!(f.proto === 17 && f.noUdpCsum)) { l4[csumAt] = c >> 8; l4[csumAt + 1] = c & 255; }
  let l3: B;
  if (f.family === 4) {
    l3 = [0x45, 0, ...be16(20 + l4.length), 0x12, 0x34, 0x40, 0, 64, f.proto, 0, 0, ...f.src, ...f.dst];
    const hc = (~onesSum(l3)) & 0xffff;
    l3[10] = hc >> 8; l3[11] = hc & 255;
  } else {
    l3 = [0x60, 0, 0, 0, ...be16(l4.length), f.proto, 64, ...f.src, ...f.dst];
  }
  const eth = [2, 0, 0, 0, 0, 1, 2, 0, 0, 0, 0, 2, ...(f.family === 4 ? [0x08, 0x00] : [0x86, 0xdd])];
  return [...eth, ...l3, ...l4];
}

export interface Decoded {
  src: B;
  dst: B;
  sport: number;
  dport: number;
  /** IPv4 header checksum verifies (always true for IPv6). */
  l3ok: boolean;
  /** L4 checksum verifies from scratch (UDP zero checksum counts as "none": true). */
  l4ok: boolean;
  l4csum: number;
}

/** Decodes a frame built by `frame` (possibly rewritten) and verifies every checksum from scratch. */
export function decode(b: B): Decoded {
  const v4f = b[12] === 0x08;
  const l3 = 14;
  const hl = v4f ? 20 : 40;
  const src = v4f ? b.slice(l3 + 12, l3 + 16) : b.slice(l3 + 8, l3 + 24);
  const dst = v4f ? b.slice(l3 + 16, l3 + 20) : b.slice(l3 + 24, l3 + 40);
  const proto = v4f ? b[l3 + 9] : b[l3 + 6];
  const l4 = b.slice(l3 + hl);
  const pseudo = [...src, ...dst, ...(v4f ? [0, proto, ...be16(l4.length)] : [...be32(l4.length), 0, 0, 0, proto])];
  const csumAt = proto === 6 ? 16 : 6;
  const l4csum = (l4[csumAt] << 8) | l4[csumAt + 1];
  const l4ok = proto === 17 && l4csum === 0 && v4f ? true : onesSum(l4, onesSum(pseudo)) === 0xffff;
  const l3ok = v4f ? onesSum(b.slice(l3, l3 + 20)) === 0xffff : true;
  return { src, dst, sport: (l4[0] << 8) | l4[1], dport: (l4[2] << 8) | l4[3], l3ok, l4ok, l4csum };
}

// ---- packet placement and parsing in core memory ----
const REGION = 2048;
const region = allocStatic(REGION, 16);
const desc = allocStatic(8, 8);
export const info = allocStatic(L.PACKET_INFO_SIZE, 8);
let curLen = 0;

/** Places the frame, resets the arena, parses it into `info`; returns [pkt, parse rc]. */
export function load(bytes: B): [number, number] {
  for (let i = 0; i < bytes.length; i++) write8(region + i, bytes[i]);
  write32(desc, region);
  write32(desc + 4, bytes.length);
  curLen = bytes.length;
  arenaReset();
  return [desc, parsePacket(desc, info)];
}
/** The current packet bytes. */
export function packetBytes(): B {
  const out: B = [];
  for (let i = 0; i < curLen; i++) out.push(read8(region + i));
  return out;
}
export function bytesAt(p: number, n: number): B {
  const out: B = [];
  for (let i = 0; i < n; i++) out.push(read8(p + i));
  return out;
}
export function put(p: number, bytes: B): void {
  bytes.forEach((x, i) => write8(p + i, x));
}

// ---- maps ----
const scratch = allocStatic(256, 8);
const scratch2 = allocStatic(256, 8);
const ALL = [L.MapId.Config, L.MapId.Services, L.MapId.Backends, L.MapId.RevNat, L.MapId.Maglev, L.MapId.Affinity, L.MapId.Conntrack, L.MapId.Snat];
export function createMaps(): void {
  for (const m of ALL) mapCreate(m, m === L.MapId.Config ? 1 : m === L.MapId.Maglev ? 140000 : 4096);
}
export function clearMap(m: L.MapId): void {
  for (let i = 0; i < 200000; i++) {
    if (mapNextKey(m, 0, scratch) !== 0) return;
    mapDelete(m, scratch);
  }
}
export function clearAll(): void {
  for (const m of ALL) if (m !== L.MapId.Config) clearMap(m);
}
/** Writes a struct given as [offset, width, value | bytes] triples into map `m` under `key` bytes. */
export function upsert(m: L.MapId, key: B, keySize: number, fields: [number, 1 | 2 | 4 | 16, number | B][], valSize: number): void {
  for (let i = 0; i < 256; i++) { write8(scratch + i, 0); write8(scratch2 + i, 0); }
  put(scratch, [...key, ...Array(keySize - key.length).fill(0)].slice(0, keySize));
  for (const [off, w, v] of fields) {
    if (Array.isArray(v)) put(scratch2 + off, v);
    else if (w === 1) write8(scratch2 + off, v);
    else if (w === 2) write16(scratch2 + off, v);
    else write32(scratch2 + off, v);
  }
  const rc = mapUpdate(m, scratch, scratch2, 0);
  if (rc !== 0) throw new Error(`map ${m} update failed: ${rc}`);
  void valSize;
}
export const le16 = (x: number): B => [x & 255, (x >> 8) & 255];
export const le32 = (x: number): B => [x & 255, (x >>> 8) & 255, (x >>> 16) & 255, x >>> 24];
export const nbe16 = be16;
export const nbe32 = be32;

export interface ConfigOpts {
  hashSeed?: number;
  maglevM?: number;
  loopbackBe?: number;
  nodeIp?: B;
  nodePortMax?: number;
}
export function setConfig(o: ConfigOpts = {}): void {
  const f: [number, 1 | 2 | 4 | 16, number | B][] = [
    [L.CONFIG_VALUE_CT_SYN_TIMEOUT, 4, 60],
    [L.CONFIG_VALUE_CT_TCP_LIFETIME, 4, 8000],
    [L.CONFIG_VALUE_CT_CLOSE_TIMEOUT, 4, 10],
    [L.CONFIG_VALUE_CT_ANY_LIFETIME, 4, 60],
    [L.CONFIG_VALUE_CT_SERVICE_TCP_LIFETIME, 4, 8000],
    [L.CONFIG_VALUE_CT_SERVICE_ANY_LIFETIME, 4, 60],
    [L.CONFIG_VALUE_HASH_SEED, 4, o.hashSeed ?? 0x7ae34c0f],
    [L.CONFIG_VALUE_MAGLEV_TABLE_SIZE, 4, o.maglevM ?? 251],
    [L.CONFIG_VALUE_SERVICE_LOOPBACK_IPV4_BE, 4, o.loopbackBe ?? 0],
    [L.CONFIG_VALUE_NODE_PORT_MIN, 2, 30000],
    [L.CONFIG_VALUE_NODE_PORT_MAX, 2, o.nodePortMax ?? 32767],
    [L.CONFIG_VALUE_NODE_IPV4_BE, 16, o.nodeIp ?? v4("192.168.1.10")],
  ];
  upsert(L.MapId.Config, le32(0), 4, f, L.CONFIG_VALUE_SIZE);
}
