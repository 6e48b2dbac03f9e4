/*
 * IP addresses as text and as bytes, the one implementation every side shares (policy's CIDRs, the
 * simulator's frames, the node's map keys, the agent's flows): parsing any valid IPv4/IPv6 spelling,
 * RFC 5952 formatting, and the 16-byte form core stores addresses in (IPv4 in the first four bytes).
 */

export function parseIp(s: string): { family: 4 | 6; addr: bigint } | undefined {
  if (/^\d{1,3}(\.\d{1,3}){3}$/.test(s)) {
    const parts = s.split(".").map(Number);
    if (parts.some((p) => p > 255)) return undefined;
    return { family: 4, addr: parts.reduce((a, p) => (a << 8n) | BigInt(p), 0n) };
  }
  if (!s.includes(":") || !/^[0-9a-fA-F:.]+$/.test(s)) return undefined;
  let head = s;
  let tailV4: number[] = [];
  const m = s.match(/^(.*:)(\d{1,3}(\.\d{1,3}){3})$/);
  if (m) {
    const v4 = parseIp(m[2]);
    if (!v4) return undefined;
    head = m[1] + "0:0";
    tailV4 = [Number((v4.addr >> 16n) & 0xffffn), Number(v4.addr & 0xffffn)];
  }
  const dbl = head.split("::");
  if (dbl.length > 2) return undefined;
  const left = dbl[0] ? dbl[0].split(":") : [];
  const right = dbl.length === 2 && dbl[1] ? dbl[1].split(":") : [];
  if ([...left, ...right].some((g) => !/^[0-9a-fA-F]{1,4}$/.test(g))) return undefined;
  const missing = 8 - left.length - right.length;
  if (dbl.length === 1 ? missing !== 0 : missing < 1) return undefined;
  const groups = [...left, ...Array(dbl.length === 2 ? missing : 0).fill("0"), ...right].map((g) => parseInt(g, 16));
  if (tailV4.length) {
    groups[6] = tailV4[0];
    groups[7] = tailV4[1];
  }
  return { family: 6, addr: groups.reduce((a, g) => (a << 16n) | BigInt(g), 0n) };
}

export function formatIp(family: 4 | 6, addr: bigint): string {
  if (family === 4) return [24n, 16n, 8n, 0n].map((s) => String((addr >> s) & 0xffn)).join(".");
  const groups: string[] = [];
  for (let i = 7; i >= 0; i--) groups.push(((addr >> BigInt(i * 16)) & 0xffffn).toString(16));
  // compress the longest run of zeros
  let best = -1;
  let bestLen = 0;
  for (let i = 0; i < 8; ) {
    if (groups[i] !== "0") {
      i++;
      continue;
    }
    let j = i;
    while (j < 8 && groups[j] === "0") j++;
    if (j - i > bestLen && j - i > 1) {
      best = i;
      bestLen = j - i;
    }
    i = j;
  }
  if (best < 0) return groups.join(":");
  return groups.slice(0, best).join(":") + "::" + groups.slice(best + bestLen).join(":");
}

export function isIpv6(addr: string): boolean {
  return addr.includes(":");
}

/** "addr:port", with an IPv6 address in brackets ("[fd00::1]:80"), as Hubble and URLs write it. */
export function hostPort(addr: string, port: number | string): string {
  return isIpv6(addr) ? `[${addr}]:${port}` : `${addr}:${port}`;
}

function bytesOf(addr: bigint, n: number): Uint8Array {
  const out = new Uint8Array(n);
  for (let i = n - 1; i >= 0; i--, addr >>= 8n) out[i] = Number(addr & 0xffn);
  return out;
}

/** IPv4 text → 4 bytes . Throws on anything else. */
export function parseIpv4(addr: string): Uint8Array {
  const a = parseIp(addr);
  if (!a || a.family !== 4) throw new Error(`invalid IPv4 address ${addr}`);
  return bytesOf(a.addr, 4);
}

/** "a.b.c.d/n" (n 1..32) → the network address as a host-order number (host bits cleared) and n. Throws
 * one line on anything else. */
export function parseIpv4Cidr(cidr: string): { addr: number; prefixLen: number } {
  const m = /^([0-9.]+)\/(\d{1,2})$/.exec(cidr);
  const len = m ? Number(m[2]) : -1;
  const a = m ? parseIp(m[1]!) : undefined;
  if (!a || a.family !== 4 || len < 1 || len > 32) throw new Error(`invalid IPv4 CIDR ${JSON.stringify(cidr)} (a.b.c.d/n, n 1..32)`);
  const mask = len === 32 ? 0xffffffff : ~(0xffffffff >>> len) >>> 0;
  return { addr: (Number(a.addr) & mask) >>> 0, prefixLen: len };
}

/** "x:y::/n" (n 1..128) → the network address as 16 bytes (host bits cleared) and n. Throws one line on
 * anything else. */
export function parseIpv6Cidr(cidr: string): { addr: Uint8Array; prefixLen: number } {
  const m = /^([0-9A-Fa-f:.]+)\/(\d{1,3})$/.exec(cidr);
  const len = m ? Number(m[2]) : -1;
  const a = m ? parseIp(m[1]!) : undefined;
  if (!a || a.family !== 6 || len < 1 || len > 128) throw new Error(`invalid IPv6 CIDR ${JSON.stringify(cidr)} (x:y::/n, n 1..128)`);
  const mask = ((1n << 128n) - 1n) ^ ((1n << BigInt(128 - len)) - 1n);
  return { addr: bytesOf(a.addr & mask, 16), prefixLen: len };
}

/** IPv6 text (any valid spelling, IPv4 tail included) → 16 bytes. Throws on anything else. */
export function parseIpv6(addr: string): Uint8Array {
  const a = parseIp(addr);
  if (!a || a.family !== 6) throw new Error(`invalid IPv6 address ${addr}`);
  return bytesOf(a.addr, 16);
}

/** 16-byte address as core stores it: IPv6 as is, IPv4 in the first four bytes. */
export function addrBytes16(addr: string): Uint8Array {
  if (isIpv6(addr)) return parseIpv6(addr);
  const out = new Uint8Array(16);
  out.set(parseIpv4(addr));
  return out;
}

/** Text of an address held in bytes (IPv6 compressed as RFC 5952). */
export function formatAddr(bytes: Uint8Array, family: 4 | 6): string {
  const n = family === 4 ? 4 : 16;
  let v = 0n;
  for (let i = 0; i < n; i++) v = (v << 8n) | BigInt(bytes[i]!);
  return formatIp(family, v);
}
