/*
 * Host-scope IPAM from the node's pod CIDR (Cilium's ipam mode "kubernetes": pkg/ipam/hostscope.go):
 * addresses are handed out per container id, never twice while allocated, and the allocation is persisted
 * (atomically: write then rename) before the address is returned, so a restarted agent hands out the same
 * answers. The network address, the first address (kept for the node, as Cilium's router IP) and the
 * broadcast address are never handed out. The same for an IPv6 pod CIDR (dual stack, Cilium's enable-ipv6
 * with ipv6-range): its own instance and file, addresses in canonical text. Release is idempotent. After a
 * release the cursor moves on, so a freed address is reused only once the rest of the range has been used.
 */
import { existsSync, mkdirSync, readFileSync, renameSync, writeFileSync } from "node:fs";
import { dirname } from "node:path";
import { formatIp, parseIp } from "../host/ip.ts";

export class IpamError extends Error {
  constructor(
    readonly code: "IPAM_EXHAUSTED" | "IPAM_BAD_CIDR" | "IPAM_BAD_STATE",
    message: string,
  ) {
    super(message);
    this.name = "IpamError";
  }
}

interface IpamFile {
  cidr: string;
  cursor: number;
  /** ip → owner (container id). */
  allocations: Record<string, string>;
}

/** An address of `family` as a number; IPAM_BAD_CIDR when it is not one. */
function ipToInt(ip: string, family: 4 | 6): bigint {
  const a = parseIp(ip);
  if (!a || a.family !== family) throw new IpamError("IPAM_BAD_CIDR", `invalid IPv${family} address ${ip}`);
  return a.addr;
}

/**
 * A pod CIDR: IPv4 /8 to /30, or IPv6 /64 to /126 (Cilium's ipv6-range per node is a /64 or longer; IPv6
 * has no broadcast address, the last one is still kept back so both families follow one rule).
 */
export function parsePodCidr(cidr: string): { base: bigint; bits: number; family: 4 | 6 } {
  const [addr, len, ...rest] = cidr.split("/");
  const a = addr ? parseIp(addr) : undefined;
  const bits = len !== undefined && /^\d{1,3}$/.test(len) ? Number(len) : NaN;
  const [min, max] = a?.family === 6 ? [64, 126] : [8, 30];
  if (!a || rest.length || !(bits >= min && bits <= max)) throw new IpamError("IPAM_BAD_CIDR", `invalid pod CIDR ${cidr} (IPv4 /8 to /30, or IPv6 /64 to /126)`);
  const width = a.family === 6 ? 128 : 32;
  const mask = ((1n << BigInt(width)) - 1n) ^ ((1n << BigInt(width - bits)) - 1n);
  return { base: a.addr & mask, bits, family: a.family };
}

export class Ipam {
  private state: IpamFile;
  private readonly base: bigint;
  private readonly size: bigint;
  readonly family: 4 | 6;

  constructor(
    readonly cidr: string,
    readonly file: string,
  ) {
    const c = parsePodCidr(cidr);
    this.base = c.base;
    this.family = c.family;
    this.size = 1n << BigInt((c.family === 6 ? 128 : 32) - c.bits);
    this.state = { cidr, cursor: 2, allocations: {} };
    if (existsSync(file)) {
      let s: IpamFile;
      try {
        s = JSON.parse(readFileSync(file, "utf8")) as IpamFile;
      } catch (e) {
        throw new IpamError("IPAM_BAD_STATE", `cannot read ${file}: ${(e as Error).message}`);
      }
      // Keep allocations that are still inside the (possibly changed) CIDR.
      for (const [ip, owner] of Object.entries(s.allocations ?? {})) if (this.contains(ip)) this.state.allocations[ip] = owner;
      if (s.cidr === cidr && Number.isInteger(s.cursor)) this.state.cursor = s.cursor;
    }
  }

  contains(ip: string): boolean {
    try {
      const n = ipToInt(ip, this.family);
      return n > this.base + 1n && n < this.base + this.size - 1n;
    } catch {
      return false;
    }
  }

  /** The address of `owner`, allocating one if it has none. Throws IPAM_EXHAUSTED when the range is full. */
  allocate(owner: string): string {
    const have = this.ipOf(owner);
    if (have) return have;
    // Offsets 2 … size-2 (BigInt: an IPv6 range is larger than a double counts exactly); the loop ends at
    // the first free address, or after every held one has been passed over.
    const usable = this.size - 3n;
    const held = BigInt(Object.keys(this.state.allocations).length);
    for (let i = 0n; i < usable && i <= held; i++) {
      const off = 2n + ((BigInt(this.state.cursor) - 2n + i) % usable);
      const ip = formatIp(this.family, this.base + off);
      if (this.state.allocations[ip] === undefined) {
        this.state.allocations[ip] = owner;
        // The cursor stays a JSON number: exact below 2^53, which is as far as any node allocates.
        this.state.cursor = Number(2n + ((off - 2n + 1n) % usable));
        this.save();
        return ip;
      }
    }
    throw new IpamError("IPAM_EXHAUSTED", `pod CIDR ${this.cidr} has no free address`);
  }

  /** Releases every address of `owner`; returns the released ones (empty when it had none). */
  release(owner: string): string[] {
    const out: string[] = [];
    for (const [ip, o] of Object.entries(this.state.allocations)) {
      if (o === owner) {
        delete this.state.allocations[ip];
        out.push(ip);
      }
    }
    if (out.length) this.save();
    return out;
  }

  ipOf(owner: string): string | undefined {
    return Object.entries(this.state.allocations).find(([, o]) => o === owner)?.[0];
  }

  allocations(): Record<string, string> {
    return { ...this.state.allocations };
  }

  private save(): void {
    mkdirSync(dirname(this.file), { recursive: true, mode: 0o700 });
    const tmp = `${this.file}.tmp`;
    writeFileSync(tmp, JSON.stringify(this.state, null, 2), { mode: 0o600 });
    renameSync(tmp, this.file);
  }
}
