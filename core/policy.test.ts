// Unit and property tests for core/policy.ts (policyCanAccess and its helpers) through the real Policy
// LPM map (core/maps.ts). Runs the JavaScript semantics (env.portable).
import { beforeAll, beforeEach, describe, expect, it } from "vitest";
import fc from "fast-check";
import { policyAudit, policyCanAccess, policyIcmpFragNeededAllowed, policyPort } from "./policy";
import { allocStatic, arenaReset } from "./alloc";
import { memFill, read8, read16, read32, write8, write16, write32 } from "./env";
import { write16be } from "./bytes";
import {
  BPF_ANY,
  CONFIG_F_ALLOW_ICMP_FRAG_NEEDED,
  CONFIG_F_ENABLE_ICMP_RULE,
  CONFIG_F_POLICY_AUDIT,
  IPPROTO_ICMP,
  IPPROTO_ICMPV6,
  IPPROTO_TCP,
  IPPROTO_UDP,
  POLICY_EGRESS,
  POLICY_F_DENY,
  POLICY_INGRESS,
  POLICY_MATCH_ALL,
  POLICY_MATCH_L3_L4,
  POLICY_MATCH_L3_ONLY,
  POLICY_MATCH_L3_PROTO,
  POLICY_MATCH_L4_ONLY,
  POLICY_MATCH_NONE,
  POLICY_MATCH_PROTO_ONLY,
  POLICY_STATIC_PREFIX,
} from "./constants";
import { DROP_POLICY, DROP_POLICY_AUTH_REQUIRED, DROP_POLICY_DENY } from "./drop-reasons";
import { mapCreate, mapDelete, mapNextKey, mapUpdate } from "./maps";
import {
  MapId,
  CONFIG_VALUE_FLAGS,
  CONFIG_VALUE_SIZE,
  POLICY_ENTRY_AUTH_TYPE,
  POLICY_ENTRY_COOKIE,
  POLICY_ENTRY_FLAGS,
  POLICY_ENTRY_LPM_PREFIX_LENGTH,
  POLICY_ENTRY_PROXY_PORT_BE,
  POLICY_ENTRY_PROXY_PORT_PRIORITY,
  POLICY_ENTRY_SIZE,
  POLICY_KEY_DPORT_BE,
  POLICY_KEY_EGRESS,
  POLICY_KEY_EP_ID,
  POLICY_KEY_PREFIXLEN,
  POLICY_KEY_PROTOCOL,
  POLICY_KEY_SEC_LABEL,
  POLICY_KEY_SIZE,
  POLICY_RESULT_AUDITED,
  POLICY_RESULT_AUTH_TYPE,
  POLICY_RESULT_COOKIE,
  POLICY_RESULT_LOOKUP,
  POLICY_RESULT_MATCH_TYPE,
  POLICY_RESULT_PROXY_PORT,
  POLICY_RESULT_SIZE,
} from "./gen/layout";

const K = allocStatic(64, 8);
const V = allocStatic(64, 8);
const RES = allocStatic(POLICY_RESULT_SIZE, 8);
const CFG = allocStatic(CONFIG_VALUE_SIZE, 8);

/** One policy-map entry as the agent would write it. `plen` is the entry's lpmPrefixLength: 0 any
 * protocol, 8 protocol only, 8 + n the first n bits of the port. */
interface Entry {
  epId: number;
  sec: number;
  egress: number;
  proto: number;
  port: number;
  plen: number;
  deny?: boolean;
  proxyPort?: number;
  prio?: number;
  auth?: number; // the raw authType byte (0x80 = explicit)
  cookie?: number;
}

function portMask(plen: number): number {
  if (plen <= 8) return 0;
  return (0xffff << (16 - (plen - 8))) & 0xffff;
}

function putEntry(e: Entry): void {
  memFill(K, 0, POLICY_KEY_SIZE);
  write32(K + POLICY_KEY_PREFIXLEN, POLICY_STATIC_PREFIX + e.plen);
  write32(K + POLICY_KEY_SEC_LABEL, e.sec);
  write16(K + POLICY_KEY_EP_ID, e.epId);
  write8(K + POLICY_KEY_EGRESS, e.egress);
  write8(K + POLICY_KEY_PROTOCOL, e.plen === 0 ? 0 : e.proto);
  write16be(K + POLICY_KEY_DPORT_BE, e.port & portMask(e.plen));
  memFill(V, 0, POLICY_ENTRY_SIZE);
  write16be(V + POLICY_ENTRY_PROXY_PORT_BE, e.proxyPort ?? 0);
  write8(V + POLICY_ENTRY_FLAGS, e.deny ? POLICY_F_DENY : 0);
  write8(V + POLICY_ENTRY_LPM_PREFIX_LENGTH, e.plen);
  write8(V + POLICY_ENTRY_AUTH_TYPE, e.auth ?? 0);
  write8(V + POLICY_ENTRY_PROXY_PORT_PRIORITY, e.prio ?? 0);
  write32(V + POLICY_ENTRY_COOKIE, e.cookie ?? 0);
  expect(mapUpdate(MapId.Policy, K, V, BPF_ANY)).toBe(0);
}

function clearMap(map: MapId): void {
  for (let i = 0; i < 1_000_000; i++) {
    if (mapNextKey(map, 0, K) !== 0) return;
    mapDelete(map, K);
  }
}

interface Verdict {
  verdict: number;
  match: number;
  cookie: number;
  lookup: number;
  proxyPort: number;
  auth: number;
}

function access(epId: number, remote: number, egress: number, proto: number, dport: number): Verdict {
  arenaReset();
  memFill(RES, 0xee, POLICY_RESULT_SIZE); // must be overwritten completely
  const verdict = policyCanAccess(epId, remote, egress, proto, dport, RES);
  expect(read8(RES + POLICY_RESULT_AUDITED)).toBe(0);
  return {
    verdict,
    match: read8(RES + POLICY_RESULT_MATCH_TYPE),
    cookie: read32(RES + POLICY_RESULT_COOKIE),
    lookup: read8(RES + POLICY_RESULT_LOOKUP),
    proxyPort: read16(RES + POLICY_RESULT_PROXY_PORT),
    auth: read8(RES + POLICY_RESULT_AUTH_TYPE),
  };
}

/**
 * Cilium's PortRangeToMaskedPorts (pkg/policy/types): a port range as the aligned power-of-two blocks
 * that cover it exactly, each as (port, mask). 0..0 and 0..65535 are the full wildcard; end <= start is
 * the single port `start`.
 */
function portRangeToMaskedPorts(start: number, end: number): { port: number; mask: number }[] {
  if (start === 0 && (end === 0 || end === 65535)) return [{ port: 0, mask: 0 }];
  if (end <= start) return [{ port: start, mask: 0xffff }];
  const out: { port: number; mask: number }[] = [];
  let p = start;
  while (p <= end) {
    let size = 1;
    // Grow the block while it stays aligned at p and inside [p, end].
    while (size < 65536 && p % (size * 2) === 0 && p + size * 2 - 1 <= end) size *= 2;
    out.push({ port: p, mask: (0xffff & ~(size - 1)) >>> 0 });
    p += size;
  }
  return out;
}
function popcount16(m: number): number {
  let n = 0;
  for (let i = 0; i < 16; i++) if (m & (1 << i)) n++;
  return n;
}

const EP = 7;
const PEER = 1000;

beforeAll(() => {
  arenaReset();
  expect(mapCreate(MapId.Policy, 8192)).toBe(0);
});
beforeEach(() => clearMap(MapId.Policy));

describe("policyCanAccess precedence (1.17/1.18 __policy_can_access)", () => {
  // Packet: TCP to port 80 from identity PEER, ingress of endpoint EP. Entries: "L3" = identity PEER,
  // "L4" = identity 0 (wildcard). plen: 0 any proto, 8 TCP, 24 TCP/80, 20 TCP/80-95.
  type Spec = { plen: number; deny?: boolean; prio?: number; proxyPort?: number; auth?: number } | null;
  const rows: { name: string; l3: Spec; l4: Spec; verdict: number; match: number; lookup: number; proxy?: number; auth?: number }[] = [
    { name: "neither → DROP_POLICY", l3: null, l4: null, verdict: -DROP_POLICY, match: POLICY_MATCH_NONE, lookup: 0 },
    { name: "L3 allow only (exact port)", l3: { plen: 24 }, l4: null, verdict: 0, match: POLICY_MATCH_L3_L4, lookup: 1 },
    { name: "L3 allow only (proto)", l3: { plen: 8 }, l4: null, verdict: 0, match: POLICY_MATCH_L3_PROTO, lookup: 1 },
    { name: "L3 allow only (any)", l3: { plen: 0 }, l4: null, verdict: 0, match: POLICY_MATCH_L3_ONLY, lookup: 1 },
    { name: "L3 allow only (port prefix)", l3: { plen: 20 }, l4: null, verdict: 0, match: POLICY_MATCH_L3_L4, lookup: 1 },
    { name: "L3 deny only", l3: { plen: 24, deny: true }, l4: null, verdict: -DROP_POLICY_DENY, match: POLICY_MATCH_L3_L4, lookup: 1 },
    { name: "L4 allow only (exact)", l3: null, l4: { plen: 24 }, verdict: 0, match: POLICY_MATCH_L4_ONLY, lookup: 2 },
    { name: "L4 allow only (proto)", l3: null, l4: { plen: 8 }, verdict: 0, match: POLICY_MATCH_PROTO_ONLY, lookup: 2 },
    { name: "L4 allow only (any)", l3: null, l4: { plen: 0 }, verdict: 0, match: POLICY_MATCH_ALL, lookup: 2 },
    { name: "L4 deny only", l3: null, l4: { plen: 0, deny: true }, verdict: -DROP_POLICY_DENY, match: POLICY_MATCH_ALL, lookup: 2 },
    { name: "L3 deny beats more specific L4 allow", l3: { plen: 0, deny: true }, l4: { plen: 24 }, verdict: -DROP_POLICY_DENY, match: POLICY_MATCH_L3_ONLY, lookup: 1 },
    { name: "L3 deny beats L4 deny (rule 2 first)", l3: { plen: 8, deny: true }, l4: { plen: 24, deny: true }, verdict: -DROP_POLICY_DENY, match: POLICY_MATCH_L3_PROTO, lookup: 1 },
    { name: "L4 deny beats more specific L3 allow", l3: { plen: 24 }, l4: { plen: 0, deny: true }, verdict: -DROP_POLICY_DENY, match: POLICY_MATCH_ALL, lookup: 2 },
    { name: "L4 deny beats L3 allow with higher priority", l3: { plen: 24, prio: 9, proxyPort: 15001 }, l4: { plen: 8, deny: true }, verdict: -DROP_POLICY_DENY, match: POLICY_MATCH_PROTO_ONLY, lookup: 2 },
    { name: "both allow, equal prefix → L3", l3: { plen: 24 }, l4: { plen: 24 }, verdict: 0, match: POLICY_MATCH_L3_L4, lookup: 1 },
    { name: "both allow, L4 longer prefix → L4", l3: { plen: 8 }, l4: { plen: 24 }, verdict: 0, match: POLICY_MATCH_L4_ONLY, lookup: 2 },
    { name: "both allow, L4 longer (port prefix vs proto) → L4", l3: { plen: 8 }, l4: { plen: 20 }, verdict: 0, match: POLICY_MATCH_L4_ONLY, lookup: 2 },
    { name: "both allow, L3 longer prefix → L3", l3: { plen: 24 }, l4: { plen: 0 }, verdict: 0, match: POLICY_MATCH_L3_L4, lookup: 1 },
    { name: "both allow, L3 any vs L4 any → L3", l3: { plen: 0 }, l4: { plen: 0 }, verdict: 0, match: POLICY_MATCH_L3_ONLY, lookup: 1 },
    { name: "L4 higher proxy priority beats longer L3", l3: { plen: 24 }, l4: { plen: 0, prio: 1, proxyPort: 15001 }, verdict: 15001, match: POLICY_MATCH_ALL, lookup: 2, proxy: 15001 },
    { name: "L3 higher proxy priority beats longer L4", l3: { plen: 0, prio: 2, proxyPort: 15002 }, l4: { plen: 24, prio: 1, proxyPort: 15001 }, verdict: 15002, match: POLICY_MATCH_L3_ONLY, lookup: 1, proxy: 15002 },
    { name: "equal priority, longer L4 redirect wins", l3: { plen: 8, prio: 1, proxyPort: 15002 }, l4: { plen: 24, prio: 1, proxyPort: 15001 }, verdict: 15001, match: POLICY_MATCH_L4_ONLY, lookup: 2, proxy: 15001 },
    { name: "L3 redirect (prio 1) beats L4 plain allow (prio 0) even if L4 longer", l3: { plen: 8, prio: 1, proxyPort: 15003 }, l4: { plen: 24 }, verdict: 15003, match: POLICY_MATCH_L3_PROTO, lookup: 1, proxy: 15003 },
    { name: "auth on chosen entry → AUTH_REQUIRED", l3: { plen: 24, auth: 0x81 }, l4: null, verdict: -DROP_POLICY_AUTH_REQUIRED, match: POLICY_MATCH_L3_L4, lookup: 1, auth: 1 },
    { name: "auth propagates from L4 to chosen L3 without explicit auth", l3: { plen: 24 }, l4: { plen: 0, auth: 0x82 }, verdict: -DROP_POLICY_AUTH_REQUIRED, match: POLICY_MATCH_L3_L4, lookup: 1, auth: 2 },
    { name: "explicit 'no auth' on chosen L3 blocks propagation", l3: { plen: 24, auth: 0x80 }, l4: { plen: 0, auth: 0x82 }, verdict: 0, match: POLICY_MATCH_L3_L4, lookup: 1, auth: 0 },
    { name: "auth propagates from L3 to chosen L4", l3: { plen: 8, auth: 0x01 }, l4: { plen: 24 }, verdict: -DROP_POLICY_AUTH_REQUIRED, match: POLICY_MATCH_L4_ONLY, lookup: 2, auth: 1 },
  ];
  for (const row of rows) {
    it(row.name, () => {
      if (row.l3) putEntry({ epId: EP, sec: PEER, egress: 0, proto: IPPROTO_TCP, port: 80, cookie: 3333, ...row.l3 });
      if (row.l4) putEntry({ epId: EP, sec: 0, egress: 0, proto: IPPROTO_TCP, port: 80, cookie: 4444, ...row.l4 });
      const r = access(EP, PEER, POLICY_INGRESS, IPPROTO_TCP, 80);
      expect(r.verdict).toBe(row.verdict);
      expect(r.match).toBe(row.match);
      expect(r.lookup).toBe(row.lookup);
      expect(r.cookie).toBe(row.lookup === 1 ? 3333 : row.lookup === 2 ? 4444 : 0);
      expect(r.proxyPort).toBe(row.verdict === -DROP_POLICY_DENY || row.lookup === 0 ? 0 : (row.proxy ?? 0));
      if (row.auth !== undefined) expect(r.auth).toBe(row.auth);
    });
  }

  it("keys on endpoint, direction, protocol and port", () => {
    putEntry({ epId: EP, sec: PEER, egress: 0, proto: IPPROTO_TCP, port: 80, plen: 24, cookie: 1 });
    expect(access(EP, PEER, POLICY_INGRESS, IPPROTO_TCP, 80).verdict).toBe(0);
    expect(access(EP + 1, PEER, POLICY_INGRESS, IPPROTO_TCP, 80).verdict).toBe(-DROP_POLICY);
    expect(access(EP, PEER, POLICY_EGRESS, IPPROTO_TCP, 80).verdict).toBe(-DROP_POLICY);
    expect(access(EP, PEER, POLICY_INGRESS, IPPROTO_UDP, 80).verdict).toBe(-DROP_POLICY);
    expect(access(EP, PEER, POLICY_INGRESS, IPPROTO_TCP, 81).verdict).toBe(-DROP_POLICY);
    expect(access(EP, PEER + 1, POLICY_INGRESS, IPPROTO_TCP, 80).verdict).toBe(-DROP_POLICY);
  });

  it("exhaustive L3 × L4 combinations agree with the rule statement", () => {
    // Every combination of {absent, allow, deny} × plen {0, 8, 20, 24} × priority {0, 1} on each side.
    type S = { kind: "none" } | { kind: "allow" | "deny"; plen: number; prio: number };
    const sides: S[] = [{ kind: "none" }];
    for (const kind of ["allow", "deny"] as const)
      for (const plen of [0, 8, 20, 24]) for (const prio of [0, 1]) sides.push({ kind, plen, prio });
    for (const a of sides)
      for (const b of sides) {
        clearMap(MapId.Policy);
        const mk = (s: S, sec: number, cookie: number) => {
          if (s.kind === "none") return;
          putEntry({ epId: EP, sec, egress: 1, proto: IPPROTO_UDP, port: 53, plen: s.plen, prio: s.prio,
            deny: s.kind === "deny", proxyPort: s.prio ? 15000 + cookie : 0, cookie });
        };
        mk(a, PEER, 1);
        mk(b, 0, 2);
        const r = access(EP, PEER, POLICY_EGRESS, IPPROTO_UDP, 53);
        // Rules 2, 4, 5, 6 written out plainly.
        let chosen: 0 | 1 | 2 = 0;
        if (a.kind === "deny") chosen = 1;
        else if (b.kind !== "none" && (b.kind === "deny" || a.kind === "none" || b.prio > a.prio || (b.prio === a.prio && b.plen > a.plen))) chosen = 2;
        else if (a.kind !== "none") chosen = 1;
        const c = chosen === 1 ? a : chosen === 2 ? b : null;
        const expected = c === null || c.kind === "none" ? -DROP_POLICY : c.kind === "deny" ? -DROP_POLICY_DENY : c.prio ? 15000 + chosen : 0;
        expect({ a, b, verdict: r.verdict, lookup: r.lookup }).toEqual({ a, b, verdict: expected, lookup: chosen });
      }
  });
});

describe("port ranges as masked prefixes", () => {
  it("expands ranges like Cilium's PortRangeToMaskedPorts", () => {
    expect(portRangeToMaskedPorts(16, 31)).toEqual([{ port: 16, mask: 0xfff0 }]);
    expect(portRangeToMaskedPorts(80, 80)).toEqual([{ port: 80, mask: 0xffff }]);
    expect(portRangeToMaskedPorts(80, 0)).toEqual([{ port: 80, mask: 0xffff }]);
    expect(portRangeToMaskedPorts(0, 65535)).toEqual([{ port: 0, mask: 0 }]);
    expect(portRangeToMaskedPorts(1, 3)).toEqual([{ port: 1, mask: 0xffff }, { port: 2, mask: 0xfffe }]);
  });

  it("a 16-31 range (one /12-style entry) matches ports 16..31 only", () => {
    const blocks = portRangeToMaskedPorts(16, 31);
    expect(blocks).toHaveLength(1);
    for (const b of blocks) {
      putEntry({ epId: EP, sec: PEER, egress: 0, proto: IPPROTO_TCP, port: b.port, plen: 8 + popcount16(b.mask), cookie: 9 });
    }
    for (let port = 0; port < 200; port++) {
      const r = access(EP, PEER, POLICY_INGRESS, IPPROTO_TCP, port);
      expect({ port, v: r.verdict }).toEqual({ port, v: port >= 16 && port <= 31 ? 0 : -DROP_POLICY });
    }
    expect(access(EP, PEER, POLICY_INGRESS, IPPROTO_TCP, 0x1010).verdict).toBe(-DROP_POLICY);
  });

  it("an unaligned range (1000-2000) matches exactly its ports", () => {
    const blocks = portRangeToMaskedPorts(1000, 2000);
    expect(blocks.length).toBeGreaterThan(1);
    for (const b of blocks) {
      putEntry({ epId: EP, sec: 0, egress: 1, proto: IPPROTO_UDP, port: b.port, plen: 8 + popcount16(b.mask), cookie: 5 });
    }
    for (let port = 900; port <= 2100; port++) {
      const r = access(EP, PEER, POLICY_EGRESS, IPPROTO_UDP, port);
      const inRange = port >= 1000 && port <= 2000;
      if ((r.verdict === 0) !== inRange) expect({ port, v: r.verdict }).toEqual({ port, v: inRange ? 0 : -DROP_POLICY });
      if (inRange) expect(r.match).toBe(POLICY_MATCH_L4_ONLY);
    }
    for (const port of [0, 1, 999, 2001, 65535]) {
      expect(access(EP, PEER, POLICY_EGRESS, IPPROTO_UDP, port).verdict).toBe(-DROP_POLICY);
    }
  });
});

describe("policyCanAccess equals a brute-force model (property)", () => {
  /** The model: every inserted entry (last write per key wins), matched by hand, Cilium's rules applied. */
  function model(entries: Entry[], epId: number, remote: number, egress: number, proto: number, port: number) {
    const stored = new Map<string, Entry>();
    for (const e of entries) {
      const p = e.plen === 0 ? 0 : e.proto;
      stored.set(`${e.epId}/${e.sec}/${e.egress}/${e.plen}/${p}/${e.port & portMask(e.plen)}`, e);
    }
    const best = (sec: number): Entry | undefined => {
      let b: Entry | undefined;
      for (const e of stored.values()) {
        if (e.epId !== epId || e.sec !== sec || e.egress !== egress) continue;
        const matches = e.plen === 0 || (e.proto === proto && (port & portMask(e.plen)) === (e.port & portMask(e.plen)));
        if (matches && (!b || e.plen > b.plen)) b = e;
      }
      return b;
    };
    const l3 = best(remote);
    let chosen: Entry | undefined;
    let other: Entry | undefined;
    let lookup = 0;
    if (l3 && l3.deny) {
      chosen = l3; lookup = 1;
    } else {
      const l4 = best(0);
      if (l4 && (l4.deny || !l3 || (l4.prio ?? 0) > (l3.prio ?? 0) || ((l4.prio ?? 0) === (l3.prio ?? 0) && l4.plen > l3.plen))) {
        chosen = l4; other = l3; lookup = 2;
      } else if (l3) {
        chosen = l3; other = l4; lookup = 1;
      }
    }
    if (!chosen) return { verdict: -DROP_POLICY, lookup: 0, cookie: 0, match: POLICY_MATCH_NONE };
    const match = lookup === 1
      ? chosen.plen > 8 ? POLICY_MATCH_L3_L4 : chosen.plen > 0 ? POLICY_MATCH_L3_PROTO : POLICY_MATCH_L3_ONLY
      : chosen.plen === 0 ? POLICY_MATCH_ALL : chosen.plen <= 8 ? POLICY_MATCH_PROTO_ONLY : POLICY_MATCH_L4_ONLY;
    const base = { lookup, cookie: chosen.cookie ?? 0, match };
    if (chosen.deny) return { verdict: -DROP_POLICY_DENY, ...base };
    let auth = (chosen.auth ?? 0) & 0x7f;
    if (other && ((chosen.auth ?? 0) & 0x80) === 0 && ((other.auth ?? 0) & 0x7f) > auth) auth = (other.auth ?? 0) & 0x7f;
    if (auth) return { verdict: -DROP_POLICY_AUTH_REQUIRED, ...base };
    return { verdict: chosen.proxyPort ?? 0, ...base };
  }

  const entry = fc.record({
    epId: fc.constantFrom(1, 2),
    sec: fc.constantFrom(0, 0, 100, 101),
    egress: fc.constantFrom(0, 1),
    proto: fc.constantFrom(IPPROTO_TCP, IPPROTO_UDP),
    port: fc.oneof(fc.integer({ min: 0, max: 63 }), fc.integer({ min: 0, max: 65535 })),
    // The protocol is never partially wildcarded (bpf/lib/policy.h): 0, 8, or 8 + port prefix bits.
    plen: fc.oneof(fc.constantFrom(0, 8, 24), fc.integer({ min: 8, max: 24 })),
    deny: fc.boolean(),
    proxyPort: fc.constantFrom(0, 0, 15001, 15002),
    prio: fc.constantFrom(0, 0, 1, 2),
    auth: fc.constantFrom(0, 0, 0, 0, 1, 0x80, 0x81, 2),
    cookie: fc.integer({ min: 0, max: 0xffffffff }),
  });
  const query = fc.record({
    epId: fc.constantFrom(1, 2),
    remote: fc.constantFrom(100, 101, 102),
    egress: fc.constantFrom(0, 1),
    proto: fc.constantFrom(IPPROTO_TCP, IPPROTO_UDP),
    port: fc.oneof(fc.integer({ min: 0, max: 63 }), fc.integer({ min: 0, max: 65535 })),
  });

  it("for random entry sets and packets", () => {
    fc.assert(
      fc.property(fc.array(entry, { maxLength: 24 }), fc.array(query, { minLength: 1, maxLength: 16 }), (entries, queries) => {
        clearMap(MapId.Policy);
        for (const e of entries) putEntry(e);
        for (const q of queries) {
          const r = access(q.epId, q.remote, q.egress, q.proto, q.port);
          const m = model(entries, q.epId, q.remote, q.egress, q.proto, q.port);
          expect({ q, verdict: r.verdict, lookup: r.lookup, cookie: r.cookie, match: r.match }).toEqual({ q, ...m });
        }
      }),
      { numRuns: 300 },
    );
  });
});

describe("ICMP, frag-needed and audit helpers", () => {
  function cfg(flags: number): number {
    memFill(CFG, 0, CONFIG_VALUE_SIZE);
    write32(CFG + CONFIG_VALUE_FLAGS, flags);
    return CFG;
  }

  it("policyPort passes the ICMP type only with CONFIG_F_ENABLE_ICMP_RULE", () => {
    expect(policyPort(cfg(CONFIG_F_ENABLE_ICMP_RULE), IPPROTO_ICMP, 0, 8)).toBe(8);
    expect(policyPort(cfg(CONFIG_F_ENABLE_ICMP_RULE), IPPROTO_ICMPV6, 0, 128)).toBe(128);
    expect(policyPort(cfg(0), IPPROTO_ICMP, 1234, 8)).toBe(0);
    expect(policyPort(0, IPPROTO_ICMP, 1234, 8)).toBe(0);
    expect(policyPort(cfg(CONFIG_F_ENABLE_ICMP_RULE), IPPROTO_TCP, 443, 8)).toBe(443);
  });

  it("an ICMP rule keyed on the type matches that type only", () => {
    // CNP icmps: [{type: 8}] → protocol ICMP, port 8, exact.
    putEntry({ epId: EP, sec: PEER, egress: 0, proto: IPPROTO_ICMP, port: 8, plen: 24, cookie: 77 });
    const c = cfg(CONFIG_F_ENABLE_ICMP_RULE);
    expect(access(EP, PEER, POLICY_INGRESS, IPPROTO_ICMP, policyPort(c, IPPROTO_ICMP, 0, 8)).verdict).toBe(0);
    expect(access(EP, PEER, POLICY_INGRESS, IPPROTO_ICMP, policyPort(c, IPPROTO_ICMP, 0, 0)).verdict).toBe(-DROP_POLICY);
    expect(access(EP, PEER, POLICY_INGRESS, IPPROTO_ICMPV6, policyPort(c, IPPROTO_ICMPV6, 0, 8)).verdict).toBe(-DROP_POLICY);
  });

  it("frag-needed (ICMPv4 3/4) is allowed only with the flag", () => {
    const on = cfg(CONFIG_F_ALLOW_ICMP_FRAG_NEEDED);
    expect(policyIcmpFragNeededAllowed(on, IPPROTO_ICMP, 3, 4)).toBe(true);
    expect(policyIcmpFragNeededAllowed(on, IPPROTO_ICMP, 3, 3)).toBe(false);
    expect(policyIcmpFragNeededAllowed(on, IPPROTO_ICMP, 11, 4)).toBe(false);
    expect(policyIcmpFragNeededAllowed(on, IPPROTO_ICMPV6, 3, 4)).toBe(false);
    expect(policyIcmpFragNeededAllowed(on, IPPROTO_UDP, 3, 4)).toBe(false);
    expect(policyIcmpFragNeededAllowed(cfg(CONFIG_F_ENABLE_ICMP_RULE), IPPROTO_ICMP, 3, 4)).toBe(false);
    expect(policyIcmpFragNeededAllowed(0, IPPROTO_ICMP, 3, 4)).toBe(false);
  });

  it("audit mode turns drops into allows and reports them", () => {
    const on = cfg(CONFIG_F_POLICY_AUDIT);
    for (const v of [-DROP_POLICY, -DROP_POLICY_DENY, -DROP_POLICY_AUTH_REQUIRED]) {
      write8(RES + POLICY_RESULT_AUDITED, 0);
      expect(policyAudit(v, on, RES)).toBe(0);
      expect(read8(RES + POLICY_RESULT_AUDITED)).toBe(1);
    }
    for (const v of [0, 15001]) {
      write8(RES + POLICY_RESULT_AUDITED, 0);
      expect(policyAudit(v, on, RES)).toBe(v);
      expect(read8(RES + POLICY_RESULT_AUDITED)).toBe(0);
    }
    write8(RES + POLICY_RESULT_AUDITED, 0);
    expect(policyAudit(-DROP_POLICY, cfg(0), RES)).toBe(-DROP_POLICY);
    expect(read8(RES + POLICY_RESULT_AUDITED)).toBe(0);
    expect(policyAudit(-DROP_POLICY, 0, RES)).toBe(-DROP_POLICY);
    expect(policyAudit(-DROP_POLICY, cfg(CONFIG_F_POLICY_AUDIT), 0)).toBe(0);
  });
});
