/*
 * Host-scope IPAM from the node's pod CIDR (Cilium's ipam mode "kubernetes": pkg/ipam/hostscope.go):
 * addresses are handed out per container id, never twice while allocated, and the allocation is persisted
 * (atomically: write then rename) before the address is returned, so a restarted agent hands out the same
 * answers. The network address, the first address (kept for the node, as Cilium's router IP) and the
 * broadcast address are never handed out. Release is idempotent. After a release the cursor moves on, so
 * a freed address is reused only once the rest of the range has been used.
 */
import { existsSync, mkdirSync, readFileSync, renameSync, writeFileSync } from "node:fs";
import { dirname } from "node:path";

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

function ipToInt(ip: string): number {
  const p = ip.split(".").map(Number);
  if (p.length !== 4 || p.some((x) => !Number.isInteger(x) || x < 0 || x > 255)) throw new IpamError("IPAM_BAD_CIDR", `invalid IPv4 address ${ip}`);
  return ((p[0]! << 24) | (p[1]! << 16) | (p[2]! << 8) | p[3]!) >>> 0;
}

function intToIp(n: number): string {
  return [n >>> 24, (n >>> 16) & 255, (n >>> 8) & 255, n & 255].join(".");
}

export function parseCidr4(cidr: string): { base: number; bits: number } {
  const [addr, len] = cidr.split("/");
  const bits = Number(len);
  if (!addr || !Number.isInteger(bits) || bits < 8 || bits > 30) throw new IpamError("IPAM_BAD_CIDR", `invalid pod CIDR ${cidr} (IPv4, /8 to /30)`);
  const mask = bits === 0 ? 0 : (0xffffffff << (32 - bits)) >>> 0;
  return { base: (ipToInt(addr) & mask) >>> 0, bits };
}

export class Ipam {
  private state: IpamFile;
  private readonly base: number;
  private readonly size: number;

  constructor(
    readonly cidr: string,
    readonly file: string,
  ) {
    const c = parseCidr4(cidr);
    this.base = c.base;
    this.size = 2 ** (32 - c.bits);
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
      const n = ipToInt(ip);
      return n > this.base + 1 && n < this.base + this.size - 1;
    } catch {
      return false;
    }
  }

  /** The address of `owner`, allocating one if it has none. Throws IPAM_EXHAUSTED when the range is full. */
  allocate(owner: string): string {
    const have = this.ipOf(owner);
    if (have) return have;
    const usable = this.size - 3;
    for (let i = 0; i < usable; i++) {
      const off = 2 + ((this.state.cursor - 2 + i) % usable);
      const ip = intToIp(this.base + off);
      if (this.state.allocations[ip] === undefined) {
        this.state.allocations[ip] = owner;
        this.state.cursor = 2 + ((off - 2 + 1) % usable);
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
