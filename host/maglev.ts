/*
 * Host side of Maglev: Cilium's per-backend hash string, the cluster seed, and the packing of
 * core/maglev.ts maglevBuild's input buffer (format documented there). Pure TypeScript, no I/O.
 */

/** Layout of one maglevBuild input record (mirrors MAGLEV_REC_* in core/maglev.ts). */
export const MAGLEV_REC_SIZE = 160;
export const MAGLEV_REC_ID = 0;
export const MAGLEV_REC_WEIGHT = 4;
export const MAGLEV_REC_HASH_LEN = 8;
export const MAGLEV_REC_HASH = 64;
export const MAGLEV_HASH_MAX = 96;

/** Cilium's default bpf-lb-maglev-hash-seed and table size (pkg/maglev). */
export const MAGLEV_DEFAULT_SEED = "JLfvgnHc2kaSUFaI";
export const MAGLEV_DEFAULT_TABLE_SIZE = 16381;
/** Table sizes Cilium accepts for bpf-lb-maglev-table-size. */
export const MAGLEV_TABLE_SIZES = [251, 509, 1021, 2039, 4093, 8191, 16381, 32749, 65521, 131071];

export interface MaglevSeeds {
  /** Seed of murmur3 for the table build (bytes 0–3, big-endian). */
  murmur: number;
  /** HASH_INIT4_SEED: ConfigValue.hashSeed (bytes 4–7). */
  jhash0: number;
  /** HASH_INIT6_SEED (bytes 8–11). */
  jhash1: number;
}

function base64Decode(s: string): Uint8Array {
  const alphabet = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
  const body = s.replace(/=+$/, "");
  const out: number[] = [];
  let acc = 0;
  let bits = 0;
  for (const ch of body) {
    acc = (acc << 6) | alphabet.indexOf(ch);
    bits += 6;
    if (bits >= 8) {
      bits -= 8;
      out.push((acc >> bits) & 0xff);
    }
  }
  return Uint8Array.from(out);
}

/** Hash strings are ASCII (addresses, digits, protocol names); anything else is refused. */
function asciiBytes(s: string): Uint8Array {
  const out = new Uint8Array(s.length);
  for (let i = 0; i < s.length; i++) {
    const c = s.charCodeAt(i);
    if (c > 0x7e) throw new Error(`Maglev hash string is not ASCII: ${s}`);
    out[i] = c;
  }
  return out;
}

/** Decodes a base64 Maglev seed of 12 bytes as Cilium does (pkg/maglev UserConfig.ToConfig). Throws on a
 * seed that is not 12 bytes of base64. */
export function maglevSeeds(seed: string): MaglevSeeds {
  if (!/^[A-Za-z0-9+/]*={0,2}$/.test(seed) || seed.length % 4 !== 0) {
    throw new Error(`Maglev hash seed ${JSON.stringify(seed)} is not base64`);
  }
  const d = base64Decode(seed);
  if (d.length !== 12) throw new Error(`decoded Maglev hash seed is ${d.length} bytes (not 12 bytes)`);
  const be = (i: number) => ((d[i] << 24) | (d[i + 1] << 16) | (d[i + 2] << 8) | d[i + 3]) >>> 0;
  return { murmur: be(0), jhash0: be(4), jhash1: be(8) };
}

function parseIpv6(s: string): number[] | null {
  let text = s;
  let tail: number[] = [];
  const v4 = /(\d+)\.(\d+)\.(\d+)\.(\d+)$/.exec(text);
  if (v4) {
    const b = v4.slice(1).map(Number);
    if (b.some((x) => x > 255)) return null;
    tail = [(b[0] << 8) | b[1], (b[2] << 8) | b[3]];
    text = text.slice(0, v4.index) + "0:0";
  }
  const halves = text.split("::");
  if (halves.length > 2) return null;
  const groups = (h: string) => (h === "" ? [] : h.split(":"));
  const head = groups(halves[0]);
  const rest = halves.length === 2 ? groups(halves[1]) : [];
  const missing = 8 - head.length - rest.length;
  if (halves.length === 1 ? missing !== 0 : missing < 1) return null;
  const all = [...head, ...Array(halves.length === 2 ? missing : 0).fill("0"), ...rest];
  if (!all.every((g) => /^[0-9a-fA-F]{1,4}$/.test(g))) return null;
  const words = all.map((g) => parseInt(g, 16));
  if (tail.length) words.splice(6, 2, ...tail);
  return words;
}

/** Go netip.Addr.String() of an IPv6 address (RFC 5952; 4-in-6 as ::ffff:a.b.c.d). */
function formatIpv6(w: number[]): string {
  if (w.slice(0, 5).every((x) => x === 0) && w[5] === 0xffff) {
    return `::ffff:${w[6] >> 8}.${w[6] & 255}.${w[7] >> 8}.${w[7] & 255}`;
  }
  let bestStart = -1;
  let bestLen = 0;
  for (let i = 0; i < 8; ) {
    if (w[i] !== 0) { i++; continue; }
    let j = i;
    while (j < 8 && w[j] === 0) j++;
    if (j - i > bestLen && j - i >= 2) { bestStart = i; bestLen = j - i; }
    i = j;
  }
  const hex = (a: number[]) => a.map((x) => x.toString(16)).join(":");
  if (bestStart < 0) return hex(w);
  return `${hex(w.slice(0, bestStart))}::${hex(w.slice(bestStart + bestLen))}`;
}

export interface MaglevBackendAddr {
  /** IPv4 dotted quad or IPv6 text (any valid spelling; it is canonicalised as Go's netip prints it). */
  addr: string;
  port: number;
  /** "TCP", "UDP", "SCTP", … as Cilium's L4Type. */
  protocol: string;
  /** Internal-scope frontend (Cilium appends "/i"). */
  internal?: boolean;
  /** Cluster id of the backend (Cilium's AddrCluster prints "@<id>" when non-zero). */
  clusterId?: number;
}

/**
 * Cilium's Maglev hash string for a backend (pkg/maglev BackendInfo.setHashString):
 * "[<ip>:<port>/<PROTO>[/i],State:active]", the IPv6 address in brackets. This string decides the table
 * on every node, so it must match Cilium's byte for byte. Throws on an unparsable address.
 */
export function maglevHashString(b: MaglevBackendAddr): string {
  let ip: string;
  if (/^\d+\.\d+\.\d+\.\d+$/.test(b.addr)) {
    const parts = b.addr.split(".").map(Number);
    if (parts.some((x) => x > 255)) throw new Error(`bad IPv4 address ${b.addr}`);
    ip = parts.join(".");
  } else {
    const w = parseIpv6(b.addr);
    if (!w) throw new Error(`bad IP address ${b.addr}`);
    ip = formatIpv6(w);
  }
  const cluster = b.clusterId ? `@${b.clusterId}` : "";
  const host = ip.includes(":") ? `[${ip}${cluster}]` : `${ip}${cluster}`;
  return `[${host}:${b.port}/${b.protocol.toUpperCase()}${b.internal ? "/i" : ""},State:active]`;
}

export interface MaglevBackend {
  /** Node-local backend id written into the table (1..0xfffffffe in ciliate). */
  id: number;
  /** Weight 1..65535 (Cilium's default 1). */
  weight?: number;
  hashString: string;
}

/** Go's string order (bytewise on UTF-8). Hash strings are ASCII, so UTF-16 order is the same. */
function goCompare(a: string, b: string): number {
  return a < b ? -1 : a > b ? 1 : 0;
}

/**
 * Sorts the backends by hash string (as Cilium does) and packs maglevBuild's input records. The host
 * copies `bytes` into the instance's memory and calls maglevBuild(ptr, sorted.length, M, seed, out).
 * Throws on a hash string longer than MAGLEV_HASH_MAX (or not ASCII) or a weight outside 1..65535.
 */
export function packMaglevInput(backends: MaglevBackend[]): { sorted: MaglevBackend[]; bytes: Uint8Array } {
  const sorted = [...backends].sort((x, y) => goCompare(x.hashString, y.hashString));
  const mem = new Uint8Array(sorted.length * MAGLEV_REC_SIZE);
  const view = new DataView(mem.buffer);
  sorted.forEach((b, i) => {
    const r = i * MAGLEV_REC_SIZE;
    const bytes = asciiBytes(b.hashString);
    const weight = b.weight ?? 1;
    if (bytes.length === 0 || bytes.length > MAGLEV_HASH_MAX) throw new Error(`Maglev hash string too long: ${b.hashString}`);
    if (!Number.isInteger(weight) || weight < 1 || weight > 0xffff) throw new Error(`Maglev weight out of range: ${weight}`);
    view.setUint32(r + MAGLEV_REC_ID, b.id >>> 0, true);
    view.setUint32(r + MAGLEV_REC_WEIGHT, weight, true);
    view.setUint32(r + MAGLEV_REC_HASH_LEN, bytes.length, true);
    mem.set(bytes, r + MAGLEV_REC_HASH);
  });
  return { sorted, bytes: mem };
}
