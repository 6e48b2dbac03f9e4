// IPv4/IPv6 prefixes as bigints: parsing, normalisation and containment, for CIDR rules, CIDR identities
// and the IP → identity resolution of the explanation API.

import { formatIp, parseIp } from "../host/ip.ts";

export { formatIp, parseIp };

export interface Cidr {
  family: 4 | 6;
  addr: bigint;
  bits: number;
  text: string;
}

function width(f: 4 | 6): number {
  return f === 4 ? 32 : 128;
}

function mask(f: 4 | 6, bits: number): bigint {
  const w = width(f);
  return bits === 0 ? 0n : ((1n << BigInt(bits)) - 1n) << BigInt(w - bits);
}

/** Parses "a.b.c.d/n" or "x::/n" (a bare address is a host prefix). Host bits are masked off. */
export function parseCidr(s: string): Cidr | undefined {
  if (typeof s !== "string") return undefined;
  const [ip, len, ...rest] = s.split("/");
  if (rest.length) return undefined;
  const a = parseIp(ip);
  if (!a) return undefined;
  const w = width(a.family);
  const bits = len === undefined ? w : /^\d{1,3}$/.test(len) ? Number(len) : NaN;
  if (!(bits >= 0 && bits <= w)) return undefined;
  const addr = a.addr & mask(a.family, bits);
  return { family: a.family, addr, bits, text: `${formatIp(a.family, addr)}/${bits}` };
}

/** True when `inner` lies inside `outer` (same family, at least as long, same leading bits). */
export function cidrContains(outer: Cidr, inner: Cidr): boolean {
  return outer.family === inner.family && inner.bits >= outer.bits && (inner.addr & mask(outer.family, outer.bits)) === outer.addr;
}

export function ipInCidr(c: Cidr, family: 4 | 6, addr: bigint): boolean {
  return c.family === family && (addr & mask(family, c.bits)) === c.addr;
}

export function compareCidr(a: Cidr, b: Cidr): number {
  if (a.family !== b.family) return a.family - b.family;
  if (a.addr !== b.addr) return a.addr < b.addr ? -1 : 1;
  return a.bits - b.bits;
}
