// IPv4/IPv6 prefixes as bigints: parsing, normalisation and containment, for CIDR rules, CIDR identities
// and the IP → identity resolution of the explanation API.

export interface Cidr {
  family: 4 | 6;
  addr: bigint;
  bits: number;
  text: string;
}

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

function width(f: 4 | 6): number {
  return f === 4 ? 32 : 128;
}

function mask(f: 4 | 6, bits: number): bigint {
  const w = width(f);
  return bits === 0 ? 0n : ((1n << BigInt(bits)) - 1n) << BigInt(w - bits);
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
