/*
 * The FQDN cache: which addresses the DNS proxy saw for which names, and until when. The node's DNS proxy
 * and the simulator's modelled proxy both write it (one learn per DNS answer that passed a rules.dns
 * policy); the policy compiler reads its current state (`state(now)`) as an input, so the compiled
 * policy is a pure function of (cluster, rules, cache state) and the simulator and the node agree.
 *
 * As Cilium's pkg/fqdn DNSCache: every (name, address) pair expires on its own at
 * now + max(TTL, minTtl) (`--tofqdns-min-ttl`, 0 = honour the resolver's TTL); a new answer extends an
 * address's expiry and never shortens it; addresses of an earlier answer that the new one lacks stay
 * until their own expiry. Names are kept in FQDN form (lower-case, trailing dot). Time is in seconds, from
 * whatever clock the owner uses (the simulator's virtual clock or the agent's wall clock).
 */
import { parseIp, formatIp } from "./cidr.ts";
import { toFqdn } from "./l7/dns.ts";

/** Cilium's default for --tofqdns-min-ttl (pkg/defaults: 0 = use the TTL of the DNS answer). */
export const DEFAULT_FQDN_MIN_TTL = 0;

/** The cache's content at one moment: names in FQDN form with their live addresses, both sorted. */
export type FqdnState = readonly { name: string; ips: string[] }[];

export interface FqdnLearnResult {
  /** True when an address was added (the compiled policy changes); extending an expiry is not a change. */
  changed: boolean;
  /** The expiry (seconds) given to the answer's addresses. */
  expires: number;
}

export class FqdnCache {
  private readonly names = new Map<string, Map<string, number>>();

  constructor(readonly minTtl = DEFAULT_FQDN_MIN_TTL) {
    if (!Number.isInteger(minTtl) || minTtl < 0) throw new RangeError(`min TTL must be a non-negative integer, got ${minTtl}`);
  }

  /**
   * Records one DNS answer: `ips` (A/AAAA addresses; anything else is ignored) for `name` with the
   * answer's TTL in seconds, seen at `now`. Addresses are stored in canonical text form.
   */
  learn(name: string, ips: readonly string[], ttl: number, now: number): FqdnLearnResult {
    const expires = now + Math.max(Math.max(0, Math.floor(ttl)), this.minTtl);
    const n = toFqdn(name);
    let m = this.names.get(n);
    let changed = false;
    for (const raw of ips) {
      const a = parseIp(raw);
      if (!a) continue;
      const ip = formatIp(a.family, a.addr);
      if (!m) {
        m = new Map();
        this.names.set(n, m);
      }
      const old = m.get(ip);
      if (old === undefined || old <= now) changed = true;
      if (old === undefined || old < expires) m.set(ip, expires);
    }
    return { changed, expires };
  }

  /** Puts back one entry of entries() (e.g. from a saved state); an earlier expiry never shortens a later one. */
  restore(e: { name: string; ip: string; expires: number }): void {
    const a = parseIp(e.ip);
    if (!a || !Number.isFinite(e.expires)) return;
    const n = toFqdn(e.name);
    const m = this.names.get(n) ?? new Map<string, number>();
    this.names.set(n, m);
    const ip = formatIp(a.family, a.addr);
    m.set(ip, Math.max(m.get(ip) ?? 0, e.expires));
  }

  /** Drops every address whose expiry is at or before `now`; true when something was removed. */
  expire(now: number): boolean {
    let changed = false;
    for (const [n, m] of this.names) {
      for (const [ip, exp] of m)
        if (exp <= now) {
          m.delete(ip);
          changed = true;
        }
      if (!m.size) this.names.delete(n);
    }
    return changed;
  }

  /** The live content at `now` (expired addresses left out), deterministic order. */
  state(now: number): FqdnState {
    const out: { name: string; ips: string[] }[] = [];
    for (const n of [...this.names.keys()].sort()) {
      const ips = [...this.names.get(n)!].filter(([, exp]) => exp > now).map(([ip]) => ip).sort();
      if (ips.length) out.push({ name: n, ips });
    }
    return out;
  }

  /** The earliest expiry still pending (seconds), for scheduling the next expire(); undefined when empty. */
  nextExpiry(): number | undefined {
    let min: number | undefined;
    for (const m of this.names.values()) for (const exp of m.values()) if (min === undefined || exp < min) min = exp;
    return min;
  }

  /** Every (name, address, expiry), for `ciliate observe`-style listings and tests. */
  entries(): { name: string; ip: string; expires: number }[] {
    const out: { name: string; ip: string; expires: number }[] = [];
    for (const n of [...this.names.keys()].sort()) for (const [ip, expires] of [...this.names.get(n)!].sort()) out.push({ name: n, ip, expires });
    return out;
  }
}
