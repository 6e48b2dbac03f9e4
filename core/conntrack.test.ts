// Unit tests for core/conntrack.ts (ctBuildTuple, ctLookup, ctCreate, ctGc) through the real Conntrack
// LRU map and Config array (core/maps.ts), under a fake clock. Runs the JavaScript semantics.
import { beforeAll, beforeEach, describe, expect, it } from "vitest";
import { CT_UNKNOWN_PROTO, ctBuildTuple, ctCreate, ctLookup, ctLookupOwn } from "./conntrack";
import { ctGc } from "./runtime/conntrack-gc";
import { allocStatic, arenaReset } from "./alloc";
import { memCopy, memFill, read8, read16, read32, read64Lo, write8, write16, write32 } from "./env";
import { read16be } from "./bytes";
import {
  BPF_ANY,
  CT_ESTABLISHED,
  CT_F_PROXY_REDIRECT,
  CT_F_RX_CLOSING,
  CT_F_SEEN_NON_SYN,
  CT_F_TX_CLOSING,
  CT_NEW,
  CT_RELATED,
  CT_REPLY,
  FAMILY_IPV4,
  FAMILY_IPV6,
  IPPROTO_ICMP,
  IPPROTO_ICMPV6,
  IPPROTO_SCTP,
  IPPROTO_TCP,
  IPPROTO_UDP,
  PKT_F_ICMP_ERROR,
  TCP_ACK,
  TCP_FIN,
  TCP_RST,
  TCP_SYN,
  TUPLE_F_IN,
  TUPLE_F_OUT,
  TUPLE_F_RELATED,
  TUPLE_F_SERVICE,
} from "./constants";
import { mapCount, mapCreate, mapDelete, mapLookup, mapNextKey, mapUpdate } from "./maps";
import {
  MapId,
  CONFIG_VALUE_CT_ANY_LIFETIME,
  CONFIG_VALUE_CT_CLOSE_TIMEOUT,
  CONFIG_VALUE_CT_SERVICE_ANY_LIFETIME,
  CONFIG_VALUE_CT_SERVICE_TCP_LIFETIME,
  CONFIG_VALUE_CT_SYN_TIMEOUT,
  CONFIG_VALUE_CT_TCP_LIFETIME,
  CONFIG_VALUE_SIZE,
  CT_ENTRY_BYTES,
  CT_ENTRY_FLAGS,
  CT_ENTRY_LIFETIME,
  CT_ENTRY_PACKETS,
  CT_ENTRY_RX_FLAGS_SEEN,
  CT_ENTRY_TX_FLAGS_SEEN,
  CT_STATE_BACKEND_ID,
  CT_STATE_FLAGS,
  CT_STATE_PROXY_PORT,
  CT_STATE_REV_NAT_INDEX,
  CT_STATE_SIZE,
  CT_STATE_SRC_SEC_ID,
  CT_TUPLE_DADDR,
  CT_TUPLE_DPORT_BE,
  CT_TUPLE_FAMILY,
  CT_TUPLE_FLAGS,
  CT_TUPLE_NEXTHDR,
  CT_TUPLE_SADDR,
  CT_TUPLE_SIZE,
  CT_TUPLE_SPORT_BE,
  PACKET_INFO_DADDR,
  PACKET_INFO_DPORT,
  PACKET_INFO_FAMILY,
  PACKET_INFO_FLAGS,
  PACKET_INFO_ICMP_CODE,
  PACKET_INFO_ICMP_TYPE,
  PACKET_INFO_INNER_DADDR,
  PACKET_INFO_INNER_DPORT,
  PACKET_INFO_INNER_NEXTHDR,
  PACKET_INFO_INNER_SADDR,
  PACKET_INFO_INNER_SPORT,
  PACKET_INFO_LEN,
  PACKET_INFO_NEXTHDR,
  PACKET_INFO_SADDR,
  PACKET_INFO_SIZE,
  PACKET_INFO_SPORT,
  PACKET_INFO_TCP_FLAGS,
} from "./gen/layout";

const SYN_T = 60, TCP_T = 8000, CLOSE_T = 10, ANY_T = 60, SVC_TCP_T = 7000, SVC_ANY_T = 50;

const INFO = allocStatic(PACKET_INFO_SIZE, 8);
const TUPLE = allocStatic(CT_TUPLE_SIZE, 8);
const STATE = allocStatic(CT_STATE_SIZE, 8);
const K = allocStatic(64, 8);
const CFG = allocStatic(CONFIG_VALUE_SIZE, 8);

type Addr = number[];
const A: Addr = [10, 0, 0, 1]; // local pod A
const B: Addr = [10, 0, 0, 2]; // local pod B
const X: Addr = [8, 8, 8, 8]; // outside
const R: Addr = [192, 0, 2, 1]; // a router
const A6: Addr = [0xfd, 0, ...Array(13).fill(0), 1];
const B6: Addr = [0xfd, 0, ...Array(13).fill(0), 2];

interface Pkt {
  family?: number;
  proto: number;
  src: Addr;
  dst: Addr;
  sport?: number;
  dport?: number;
  tcp?: number;
  len?: number;
  icmpType?: number;
  inner?: { proto: number; src: Addr; dst: Addr; sport?: number; dport?: number };
}

function writeAddr(p: number, a: Addr): void {
  memFill(p, 0, 16);
  a.forEach((b, i) => write8(p + i, b));
}

function info(p: Pkt): number {
  memFill(INFO, 0, PACKET_INFO_SIZE);
  write8(INFO + PACKET_INFO_FAMILY, p.family ?? FAMILY_IPV4);
  write8(INFO + PACKET_INFO_NEXTHDR, p.proto);
  write16(INFO + PACKET_INFO_SPORT, p.sport ?? 0);
  write16(INFO + PACKET_INFO_DPORT, p.dport ?? 0);
  write8(INFO + PACKET_INFO_TCP_FLAGS, p.tcp ?? 0);
  write8(INFO + PACKET_INFO_ICMP_TYPE, p.icmpType ?? 0);
  write32(INFO + PACKET_INFO_LEN, p.len ?? 100);
  writeAddr(INFO + PACKET_INFO_SADDR, p.src);
  writeAddr(INFO + PACKET_INFO_DADDR, p.dst);
  if (p.inner) {
    write8(INFO + PACKET_INFO_FLAGS, PKT_F_ICMP_ERROR);
    write8(INFO + PACKET_INFO_INNER_NEXTHDR, p.inner.proto);
    write16(INFO + PACKET_INFO_INNER_SPORT, p.inner.sport ?? 0);
    write16(INFO + PACKET_INFO_INNER_DPORT, p.inner.dport ?? 0);
    writeAddr(INFO + PACKET_INFO_INNER_SADDR, p.inner.src);
    writeAddr(INFO + PACKET_INFO_INNER_DADDR, p.inner.dst);
  }
  return INFO;
}

/** Builds the tuple for `p` with the hook's direction flag, as the pipeline does. */
function tuple(p: Pkt, dir: number): number {
  arenaReset();
  ctBuildTuple(info(p), TUPLE);
  write8(TUPLE + CT_TUPLE_FLAGS, dir | (read8(TUPLE + CT_TUPLE_FLAGS) & TUPLE_F_SERVICE));
  return TUPLE;
}

interface Seen {
  ct: number;
  srcSecId: number;
  revNat: number;
  backendId: number;
  proxyPort: number;
  flags: number;
}

/** One packet through a hook: lookup, and create on CT_NEW (like fromEndpoint / toEndpoint). */
function hook(p: Pkt, dir: number, now: number, create = { srcSecId: 0, revNat: 0, backendId: 0, proxyPort: 0 }): Seen {
  const t = tuple(p, dir);
  memFill(STATE, 0xee, CT_STATE_SIZE);
  const ct = ctLookup(t, INFO, now, STATE);
  const seen = {
    ct,
    srcSecId: read32(STATE + CT_STATE_SRC_SEC_ID),
    revNat: read16(STATE + CT_STATE_REV_NAT_INDEX),
    backendId: read32(STATE + CT_STATE_BACKEND_ID),
    proxyPort: read16(STATE + CT_STATE_PROXY_PORT),
    flags: read16(STATE + CT_STATE_FLAGS),
  };
  if (ct === CT_NEW) {
    expect(ctCreate(t, INFO, now, create.srcSecId, create.revNat, create.backendId, create.proxyPort)).toBe(0);
  }
  return seen;
}

/** Lookup only (no creation). */
function look(p: Pkt, dir: number, now: number): number {
  const t = tuple(p, dir);
  return ctLookup(t, INFO, now, STATE);
}

/** The stored entry of the flow `p` as created by hook `dir` (p in the original direction). */
function entry(p: Pkt, dir: number): number {
  tuple(p, dir);
  write8(TUPLE + CT_TUPLE_FLAGS, dir);
  const e = mapLookup(MapId.Conntrack, TUPLE);
  expect(e).not.toBe(0);
  return e;
}

function clearMap(map: MapId): void {
  for (let i = 0; i < 1_000_000; i++) {
    if (mapNextKey(map, 0, K) !== 0) return;
    mapDelete(map, K);
  }
}

beforeAll(() => {
  arenaReset();
  expect(mapCreate(MapId.Config, 1)).toBe(0);
  expect(mapCreate(MapId.Conntrack, 1024)).toBe(0);
  memFill(CFG, 0, CONFIG_VALUE_SIZE);
  write32(CFG + CONFIG_VALUE_CT_SYN_TIMEOUT, SYN_T);
  write32(CFG + CONFIG_VALUE_CT_TCP_LIFETIME, TCP_T);
  write32(CFG + CONFIG_VALUE_CT_CLOSE_TIMEOUT, CLOSE_T);
  write32(CFG + CONFIG_VALUE_CT_ANY_LIFETIME, ANY_T);
  write32(CFG + CONFIG_VALUE_CT_SERVICE_TCP_LIFETIME, SVC_TCP_T);
  write32(CFG + CONFIG_VALUE_CT_SERVICE_ANY_LIFETIME, SVC_ANY_T);
  memFill(K, 0, 4);
  expect(mapUpdate(MapId.Config, K, CFG, BPF_ANY)).toBe(0);
});
beforeEach(() => clearMap(MapId.Conntrack));

const OUT = TUPLE_F_OUT;
const IN = TUPLE_F_IN;
const tcp = (src: Addr, dst: Addr, sport: number, dport: number, flags: number): Pkt => ({ proto: IPPROTO_TCP, src, dst, sport, dport, tcp: flags });
const udp = (src: Addr, dst: Addr, sport: number, dport: number): Pkt => ({ proto: IPPROTO_UDP, src, dst, sport, dport });

describe("ctBuildTuple", () => {
  it("fills addresses, big-endian ports, protocol, family and TUPLE_F_OUT", () => {
    arenaReset();
    memFill(TUPLE, 0xcc, CT_TUPLE_SIZE);
    ctBuildTuple(info(tcp(A, X, 40000, 443, TCP_SYN)), TUPLE);
    expect([0, 1, 2, 3].map((i) => read8(TUPLE + CT_TUPLE_SADDR + i))).toEqual(A);
    expect([0, 1, 2, 3].map((i) => read8(TUPLE + CT_TUPLE_DADDR + i))).toEqual(X);
    expect(read8(TUPLE + CT_TUPLE_SADDR + 4)).toBe(0);
    expect(read16be(TUPLE + CT_TUPLE_SPORT_BE)).toBe(40000);
    expect(read16be(TUPLE + CT_TUPLE_DPORT_BE)).toBe(443);
    expect(read8(TUPLE + CT_TUPLE_DPORT_BE)).toBe(443 >> 8); // network order in memory
    expect(read8(TUPLE + CT_TUPLE_NEXTHDR)).toBe(IPPROTO_TCP);
    expect(read8(TUPLE + CT_TUPLE_FAMILY)).toBe(FAMILY_IPV4);
    expect(read8(TUPLE + CT_TUPLE_FLAGS)).toBe(TUPLE_F_OUT);
    expect(read8(TUPLE + CT_TUPLE_FAMILY + 1)).toBe(0); // pad zeroed
  });

  it("builds the embedded packet's tuple for an ICMP error", () => {
    arenaReset();
    ctBuildTuple(info({ proto: IPPROTO_ICMP, src: R, dst: A, icmpType: 3, inner: { proto: IPPROTO_UDP, src: A, dst: X, sport: 5000, dport: 53 } }), TUPLE);
    expect([0, 1, 2, 3].map((i) => read8(TUPLE + CT_TUPLE_SADDR + i))).toEqual(A);
    expect([0, 1, 2, 3].map((i) => read8(TUPLE + CT_TUPLE_DADDR + i))).toEqual(X);
    expect(read16be(TUPLE + CT_TUPLE_SPORT_BE)).toBe(5000);
    expect(read16be(TUPLE + CT_TUPLE_DPORT_BE)).toBe(53);
    expect(read8(TUPLE + CT_TUPLE_NEXTHDR)).toBe(IPPROTO_UDP);
    expect(read8(TUPLE + CT_TUPLE_FLAGS)).toBe(TUPLE_F_OUT | TUPLE_F_RELATED);
  });
});

describe("TCP lifetime transitions (fake clock)", () => {
  it("SYN → syn timeout, ACK → established lifetime, FIN both sides → close timeout, expiry → NEW", () => {
    const fwd = (f: number) => tcp(A, X, 40000, 80, f);
    const rev = (f: number) => tcp(X, A, 80, 40000, f);
    // SYN leaves A (fromEndpoint, OUT): new, created with the SYN timeout.
    expect(hook(fwd(TCP_SYN), OUT, 1000).ct).toBe(CT_NEW);
    let e = entry(fwd(0), OUT);
    expect(read32(e + CT_ENTRY_LIFETIME)).toBe(1000 + SYN_T);
    expect(read16(e + CT_ENTRY_FLAGS) & CT_F_SEEN_NON_SYN).toBe(0);
    expect(read8(e + CT_ENTRY_TX_FLAGS_SEEN)).toBe(TCP_SYN);
    // SYN-ACK arrives at A (toEndpoint, IN): reply; still only SYNs seen → SYN timeout.
    expect(hook(rev(TCP_SYN | TCP_ACK), IN, 1001).ct).toBe(CT_REPLY);
    e = entry(fwd(0), OUT);
    expect(read32(e + CT_ENTRY_LIFETIME)).toBe(1001 + SYN_T);
    expect(read8(e + CT_ENTRY_RX_FLAGS_SEEN)).toBe(TCP_SYN | TCP_ACK);
    // ACK: established, seen_non_syn → TCP lifetime.
    expect(hook(fwd(TCP_ACK), OUT, 1002).ct).toBe(CT_ESTABLISHED);
    e = entry(fwd(0), OUT);
    expect(read32(e + CT_ENTRY_LIFETIME)).toBe(1002 + TCP_T);
    expect(read16(e + CT_ENTRY_FLAGS) & CT_F_SEEN_NON_SYN).toBe(CT_F_SEEN_NON_SYN);
    // A SYN retransmission later does not shorten an established flow.
    expect(hook(fwd(TCP_SYN), OUT, 1003).ct).toBe(CT_ESTABLISHED);
    expect(read32(entry(fwd(0), OUT) + CT_ENTRY_LIFETIME)).toBe(1003 + TCP_T);
    // FIN from A: one side closing, lifetime still refreshed.
    expect(hook(fwd(TCP_FIN | TCP_ACK), OUT, 2000).ct).toBe(CT_ESTABLISHED);
    e = entry(fwd(0), OUT);
    expect(read16(e + CT_ENTRY_FLAGS) & (CT_F_TX_CLOSING | CT_F_RX_CLOSING)).toBe(CT_F_TX_CLOSING);
    expect(read32(e + CT_ENTRY_LIFETIME)).toBe(2000 + TCP_T);
    // FIN from X: both closing → close timeout.
    expect(hook(rev(TCP_FIN | TCP_ACK), IN, 2001).ct).toBe(CT_REPLY);
    e = entry(fwd(0), OUT);
    expect(read16(e + CT_ENTRY_FLAGS) & (CT_F_TX_CLOSING | CT_F_RX_CLOSING)).toBe(CT_F_TX_CLOSING | CT_F_RX_CLOSING);
    expect(read32(e + CT_ENTRY_LIFETIME)).toBe(2001 + CLOSE_T);
    // The last ACK does not extend a closed connection.
    expect(hook(fwd(TCP_ACK), OUT, 2005).ct).toBe(CT_ESTABLISHED);
    expect(read32(entry(fwd(0), OUT) + CT_ENTRY_LIFETIME)).toBe(2001 + CLOSE_T);
    // Alive up to and including the lifetime second; dead after it.
    expect(hook(fwd(TCP_ACK), OUT, 2001 + CLOSE_T).ct).toBe(CT_ESTABLISHED);
    expect(look(rev(TCP_ACK), IN, 2001 + CLOSE_T + 1)).toBe(CT_NEW); // dead: no longer a reply
    expect(look(fwd(TCP_ACK), OUT, 2001 + CLOSE_T + 1)).toBe(CT_NEW);
    expect(hook(fwd(TCP_SYN), OUT, 2001 + CLOSE_T + 2).ct).toBe(CT_NEW); // re-created
    expect(read32(entry(fwd(0), OUT) + CT_ENTRY_LIFETIME)).toBe(2001 + CLOSE_T + 2 + SYN_T);
    expect(read64Lo(entry(fwd(0), OUT) + CT_ENTRY_PACKETS)).toBe(1);
  });

  it("the SYN timeout expires a half-open connection", () => {
    expect(hook(tcp(A, X, 40001, 80, TCP_SYN), OUT, 0).ct).toBe(CT_NEW);
    expect(hook(tcp(A, X, 40001, 80, TCP_SYN), OUT, SYN_T).ct).toBe(CT_ESTABLISHED);
    expect(hook(tcp(X, A, 80, 40001, TCP_SYN | TCP_ACK), IN, 2 * SYN_T + 1).ct).toBe(CT_NEW);
  });

  it("a bare SYN on a connection closing on both sides is NEW (re-opened)", () => {
    const fwd = (f: number) => tcp(A, X, 40002, 80, f);
    const rev = (f: number) => tcp(X, A, 80, 40002, f);
    hook(fwd(TCP_SYN), OUT, 10, { srcSecId: 1, revNat: 0, backendId: 0, proxyPort: 0 });
    hook(rev(TCP_SYN | TCP_ACK), IN, 10);
    hook(fwd(TCP_ACK), OUT, 10);
    hook(fwd(TCP_FIN | TCP_ACK), OUT, 11);
    hook(rev(TCP_FIN | TCP_ACK), IN, 11);
    // A SYN+ACK or plain ACK does not re-open.
    expect(hook(fwd(TCP_SYN | TCP_ACK), OUT, 12).ct).toBe(CT_ESTABLISHED);
    // A bare SYN does, and ctCreate replaces the entry with a fresh one.
    const s = hook(fwd(TCP_SYN), OUT, 13, { srcSecId: 2, revNat: 0, backendId: 0, proxyPort: 0 });
    expect(s.ct).toBe(CT_NEW);
    const e = entry(fwd(0), OUT);
    expect(read16(e + CT_ENTRY_FLAGS) & (CT_F_TX_CLOSING | CT_F_RX_CLOSING | CT_F_SEEN_NON_SYN)).toBe(0);
    expect(read32(e + CT_ENTRY_LIFETIME)).toBe(13 + SYN_T);
    expect(read64Lo(e + CT_ENTRY_PACKETS)).toBe(1);
    expect(hook(fwd(TCP_ACK), OUT, 14).srcSecId).toBe(2);
  });

  it("a bare SYN on a connection closing on one side only is NEW too (Cilium ct_entry_closing)", () => {
    const fwd = (f: number) => tcp(A, X, 40006, 80, f);
    const rev = (f: number) => tcp(X, A, 80, 40006, f);
    hook(fwd(TCP_SYN), OUT, 10, { srcSecId: 1, revNat: 7, backendId: 0, proxyPort: 0 });
    hook(rev(TCP_SYN | TCP_ACK), IN, 10);
    hook(fwd(TCP_ACK), OUT, 10);
    // The client resets after the handshake: only its side is closing, the lifetime stays the TCP one.
    hook(fwd(TCP_RST), OUT, 11);
    expect(read16(entry(fwd(0), OUT) + CT_ENTRY_FLAGS) & (CT_F_TX_CLOSING | CT_F_RX_CLOSING)).toBe(CT_F_TX_CLOSING);
    // The same source port again: a new flow, whose entry replaces the old one (old rev-NAT index gone).
    expect(hook(fwd(TCP_SYN), OUT, 12, { srcSecId: 1, revNat: 8, backendId: 0, proxyPort: 0 }).ct).toBe(CT_NEW);
    const e = entry(fwd(0), OUT);
    expect(read16(e + CT_ENTRY_FLAGS) & (CT_F_TX_CLOSING | CT_F_RX_CLOSING)).toBe(0);
    expect(hook(rev(TCP_SYN | TCP_ACK), IN, 12).revNat).toBe(8);
    // A half-closed flow (FIN from one side) re-opens on a bare SYN as well, not on other packets.
    hook(fwd(TCP_ACK), OUT, 13);
    hook(rev(TCP_FIN | TCP_ACK), IN, 14);
    expect(hook(fwd(TCP_ACK), OUT, 15).ct).toBe(CT_ESTABLISHED);
    expect(hook(fwd(TCP_SYN | TCP_ACK), OUT, 15).ct).toBe(CT_ESTABLISHED);
    expect(hook(fwd(TCP_SYN), OUT, 16).ct).toBe(CT_NEW);
  });

  it("RST during the handshake closes both sides; after it, only the sender's side", () => {
    hook(tcp(A, X, 40003, 80, TCP_SYN), OUT, 100);
    expect(hook(tcp(X, A, 80, 40003, TCP_RST | TCP_ACK), IN, 101).ct).toBe(CT_REPLY);
    let e = entry(tcp(A, X, 40003, 80, 0), OUT);
    expect(read16(e + CT_ENTRY_FLAGS) & (CT_F_TX_CLOSING | CT_F_RX_CLOSING)).toBe(CT_F_TX_CLOSING | CT_F_RX_CLOSING);
    expect(read32(e + CT_ENTRY_LIFETIME)).toBe(101 + CLOSE_T);

    hook(tcp(A, X, 40004, 80, TCP_SYN), OUT, 200);
    hook(tcp(X, A, 80, 40004, TCP_SYN | TCP_ACK), IN, 200);
    hook(tcp(A, X, 40004, 80, TCP_ACK), OUT, 200);
    expect(hook(tcp(A, X, 40004, 80, TCP_RST), OUT, 300).ct).toBe(CT_ESTABLISHED);
    e = entry(tcp(A, X, 40004, 80, 0), OUT);
    expect(read16(e + CT_ENTRY_FLAGS) & (CT_F_TX_CLOSING | CT_F_RX_CLOSING)).toBe(CT_F_TX_CLOSING);
    expect(read32(e + CT_ENTRY_LIFETIME)).toBe(300 + TCP_T);
    expect(hook(tcp(X, A, 80, 40004, TCP_RST), IN, 301).ct).toBe(CT_REPLY);
    expect(read32(entry(tcp(A, X, 40004, 80, 0), OUT) + CT_ENTRY_LIFETIME)).toBe(301 + CLOSE_T);
  });

  it("a TCP flow picked up mid-stream starts with the established lifetime", () => {
    expect(hook(tcp(A, X, 40005, 80, TCP_ACK), OUT, 5).ct).toBe(CT_NEW);
    const e = entry(tcp(A, X, 40005, 80, 0), OUT);
    expect(read32(e + CT_ENTRY_LIFETIME)).toBe(5 + TCP_T);
    expect(read16(e + CT_ENTRY_FLAGS) & CT_F_SEEN_NON_SYN).toBe(CT_F_SEEN_NON_SYN);
  });
});

describe("REPLY / ESTABLISHED detection and state", () => {
  it("keeps both ends of a local flow apart and finds replies from either hook", () => {
    const req = tcp(A, B, 41000, 8080, TCP_SYN);
    // A's egress and B's ingress both see the SYN first: two entries (OUT and IN).
    expect(hook(req, OUT, 1, { srcSecId: 111, revNat: 5, backendId: 9, proxyPort: 0 }).ct).toBe(CT_NEW);
    expect(hook(req, IN, 1, { srcSecId: 111, revNat: 0, backendId: 0, proxyPort: 15001 }).ct).toBe(CT_NEW);
    expect(mapCount(MapId.Conntrack)).toBe(2);
    // B's reply leaves B (OUT hook): it is the reverse of B's IN entry.
    const rep = tcp(B, A, 8080, 41000, TCP_SYN | TCP_ACK);
    const atB = hook(rep, OUT, 2);
    expect(atB.ct).toBe(CT_REPLY);
    expect(atB).toMatchObject({ srcSecId: 111, revNat: 0, backendId: 0, proxyPort: 15001 });
    expect(atB.flags & CT_F_PROXY_REDIRECT).toBe(CT_F_PROXY_REDIRECT);
    // ... and arrives at A (IN hook): the reverse of A's OUT entry, with the service state.
    const atA = hook(rep, IN, 2);
    expect(atA.ct).toBe(CT_REPLY);
    expect(atA).toMatchObject({ srcSecId: 111, revNat: 5, backendId: 9, proxyPort: 0 });
    expect(atA.flags & CT_F_PROXY_REDIRECT).toBe(0);
    // Next request packet: established at both hooks.
    expect(hook(tcp(A, B, 41000, 8080, TCP_ACK), OUT, 3).ct).toBe(CT_ESTABLISHED);
    expect(hook(tcp(A, B, 41000, 8080, TCP_ACK), IN, 3).ct).toBe(CT_ESTABLISHED);
    expect(mapCount(MapId.Conntrack)).toBe(2);
  });

  it("a load-balanced packet (ctLookupOwn with a rev-NAT index) is looked up forward only, never as a REPLY", () => {
    // B opened B:8080 → A:41000 towards A (A's IN entry); A's packet back, translated to B:8080 by a
    // service, finds that entry as its reverse only when it was not load-balanced.
    hook(tcp(B, A, 8080, 41000, TCP_SYN), IN, 1);
    const back = tcp(A, B, 41000, 8080, TCP_SYN | TCP_ACK);
    expect(ctLookupOwn(tuple(back, OUT), INFO, 2, STATE, 0)).toBe(CT_REPLY);
    const before = read64Lo(entry(tcp(B, A, 8080, 41000, TCP_SYN), IN) + CT_ENTRY_PACKETS);
    expect(ctLookupOwn(tuple(back, OUT), INFO, 2, STATE, 7)).toBe(CT_NEW);
    // The reverse entry was not touched by the forward-only lookup.
    expect(read64Lo(entry(tcp(B, A, 8080, 41000, TCP_SYN), IN) + CT_ENTRY_PACKETS)).toBe(before);
    // Its own forward entry is found as usual.
    expect(ctCreate(tuple(back, OUT), INFO, 2, 0, 7, 1, 0)).toBe(0);
    expect(ctLookupOwn(tuple(tcp(A, B, 41000, 8080, TCP_ACK), OUT), INFO, 3, STATE, 7)).toBe(CT_ESTABLISHED);
  });

  it("a reply seen by the same hook that created the entry is not a REPLY", () => {
    hook(udp(A, X, 5000, 53), OUT, 1);
    // The same direction flag on the reversed tuple does not match (Cilium flips TUPLE_F_IN).
    expect(hook(udp(X, A, 53, 5000), OUT, 2).ct).toBe(CT_NEW);
  });

  it("zeroes the state on NEW and counts packets and bytes", () => {
    const s = hook({ ...udp(A, X, 5001, 53), len: 80 }, OUT, 1, { srcSecId: 7, revNat: 0, backendId: 0, proxyPort: 0 });
    expect(s).toEqual({ ct: CT_NEW, srcSecId: 0, revNat: 0, backendId: 0, proxyPort: 0, flags: 0 });
    hook({ ...udp(A, X, 5001, 53), len: 120 }, OUT, 2);
    hook({ ...udp(X, A, 53, 5001), len: 300 }, IN, 3);
    const e = entry(udp(A, X, 5001, 53), OUT);
    expect(read64Lo(e + CT_ENTRY_PACKETS)).toBe(3);
    expect(read64Lo(e + CT_ENTRY_BYTES)).toBe(500);
  });

  it("UDP uses the non-TCP lifetime and expires", () => {
    hook(udp(A, X, 5002, 53), OUT, 100);
    expect(read32(entry(udp(A, X, 5002, 53), OUT) + CT_ENTRY_LIFETIME)).toBe(100 + ANY_T);
    expect(hook(udp(X, A, 53, 5002), IN, 150).ct).toBe(CT_REPLY);
    expect(read32(entry(udp(A, X, 5002, 53), OUT) + CT_ENTRY_LIFETIME)).toBe(150 + ANY_T);
    expect(hook(udp(X, A, 53, 5002), IN, 150 + ANY_T + 1).ct).toBe(CT_NEW);
  });

  it("tracks SCTP like UDP and IPv6 like IPv4", () => {
    hook({ proto: IPPROTO_SCTP, src: A, dst: X, sport: 9, dport: 9 }, OUT, 1);
    expect(read32(entry({ proto: IPPROTO_SCTP, src: A, dst: X, sport: 9, dport: 9 }, OUT) + CT_ENTRY_LIFETIME)).toBe(1 + ANY_T);
    const f6 = (f: number): Pkt => ({ family: FAMILY_IPV6, proto: IPPROTO_TCP, src: A6, dst: B6, sport: 1000, dport: 443, tcp: f });
    const r6 = (f: number): Pkt => ({ family: FAMILY_IPV6, proto: IPPROTO_TCP, src: B6, dst: A6, sport: 443, dport: 1000, tcp: f });
    expect(hook(f6(TCP_SYN), OUT, 1).ct).toBe(CT_NEW);
    expect(hook(r6(TCP_SYN | TCP_ACK), IN, 1).ct).toBe(CT_REPLY);
    // Same bytes, other family: not the same flow.
    expect(hook({ ...r6(TCP_ACK), family: FAMILY_IPV4 }, IN, 1).ct).toBe(CT_NEW);
  });

  it("service tuples are looked up in the forward scope only and use service lifetimes", () => {
    const svc = (p: Pkt) => {
      const t = tuple(p, TUPLE_F_SERVICE);
      return t;
    };
    let t = svc(udp(A, X, 6000, 53));
    expect(ctLookup(t, INFO, 10, STATE)).toBe(CT_NEW);
    expect(ctCreate(t, INFO, 10, 0, 3, 4, 0)).toBe(0);
    write8(TUPLE + CT_TUPLE_FLAGS, TUPLE_F_SERVICE);
    expect(read32(mapLookup(MapId.Conntrack, TUPLE) + CT_ENTRY_LIFETIME)).toBe(10 + SVC_ANY_T);
    t = svc(udp(X, A, 53, 6000));
    expect(ctLookup(t, INFO, 11, STATE)).toBe(CT_NEW); // no reverse lookup for service scope
    t = svc(tcp(A, X, 6001, 80, TCP_SYN));
    expect(ctLookup(t, INFO, 10, STATE)).toBe(CT_NEW);
    expect(ctCreate(t, INFO, 10, 0, 3, 4, 0)).toBe(0);
    t = svc(tcp(A, X, 6001, 80, TCP_ACK));
    expect(ctLookup(t, INFO, 12, STATE)).toBe(CT_ESTABLISHED);
    expect(read16(STATE + CT_STATE_REV_NAT_INDEX)).toBe(3);
    expect(read32(STATE + CT_STATE_BACKEND_ID)).toBe(4);
    write8(TUPLE + CT_TUPLE_FLAGS, TUPLE_F_SERVICE);
    expect(read32(mapLookup(MapId.Conntrack, TUPLE) + CT_ENTRY_LIFETIME)).toBe(12 + SVC_TCP_T);
  });
});

describe("ICMP", () => {
  const echoReq = (src: Addr, dst: Addr, id: number): Pkt => ({ proto: IPPROTO_ICMP, src, dst, icmpType: 8, sport: id, dport: 0 });
  const echoRep = (src: Addr, dst: Addr, id: number): Pkt => ({ proto: IPPROTO_ICMP, src, dst, icmpType: 0, sport: 0, dport: id });

  it("echo reply is the REPLY of its request; identifiers separate flows", () => {
    expect(hook(echoReq(A, X, 77), OUT, 1).ct).toBe(CT_NEW);
    expect(hook(echoRep(X, A, 77), IN, 2).ct).toBe(CT_REPLY);
    expect(hook(echoReq(A, X, 77), OUT, 3).ct).toBe(CT_ESTABLISHED);
    expect(hook(echoRep(X, A, 78), IN, 4).ct).toBe(CT_NEW);
    expect(read32(entry(echoReq(A, X, 77), OUT) + CT_ENTRY_LIFETIME)).toBe(3 + ANY_T);
  });

  it("ICMPv6 echo works the same way", () => {
    const req: Pkt = { family: FAMILY_IPV6, proto: IPPROTO_ICMPV6, src: A6, dst: B6, icmpType: 128, sport: 5, dport: 0 };
    const rep: Pkt = { family: FAMILY_IPV6, proto: IPPROTO_ICMPV6, src: B6, dst: A6, icmpType: 129, sport: 0, dport: 5 };
    expect(hook(req, OUT, 1).ct).toBe(CT_NEW);
    expect(hook(rep, IN, 1).ct).toBe(CT_REPLY);
  });

  it("an ICMP error about a tracked UDP flow is RELATED; others are NEW and create nothing", () => {
    hook(udp(A, X, 5000, 53), OUT, 100, { srcSecId: 42, revNat: 6, backendId: 0, proxyPort: 0 });
    const before = read32(entry(udp(A, X, 5000, 53), OUT) + CT_ENTRY_LIFETIME);
    // Port unreachable from the router back to A, about A's datagram, seen at A's ingress.
    const err = (sport: number): Pkt => ({ proto: IPPROTO_ICMP, src: R, dst: A, icmpType: 3, inner: { proto: IPPROTO_UDP, src: A, dst: X, sport, dport: 53 } });
    const s = hook(err(5000), IN, 110);
    expect(s.ct).toBe(CT_RELATED);
    expect(s).toMatchObject({ srcSecId: 42, revNat: 6 });
    // RELATED does not refresh the flow.
    expect(read32(entry(udp(A, X, 5000, 53), OUT) + CT_ENTRY_LIFETIME)).toBe(before);
    expect(read64Lo(entry(udp(A, X, 5000, 53), OUT) + CT_ENTRY_PACKETS)).toBe(1);
    // About an unknown flow: NEW, and ctCreate stores nothing.
    const n = mapCount(MapId.Conntrack);
    expect(hook(err(5999), IN, 110).ct).toBe(CT_NEW);
    expect(mapCount(MapId.Conntrack)).toBe(n);
    // Once the flow is dead, its errors are no longer related.
    expect(hook(err(5000), IN, before + 1).ct).toBe(CT_NEW);
  });

  it("an ICMP error about a reply packet is RELATED to the flow (embedded tuple reversed)", () => {
    // X opened a flow to B (B's ingress entry, IN); B's reply B→X triggers an error back to B.
    hook(udp(X, B, 7000, 9000), IN, 1);
    const err: Pkt = { proto: IPPROTO_ICMP, src: R, dst: B, icmpType: 11, inner: { proto: IPPROTO_UDP, src: B, dst: X, sport: 9000, dport: 7000 } };
    expect(hook(err, IN, 2).ct).toBe(CT_RELATED);
  });

  it("an ICMP error sent by a local pod about a flow it received is RELATED at its egress", () => {
    hook(udp(A, B, 5555, 9999), IN, 1); // B's ingress created {A→B, IN}
    const err: Pkt = { proto: IPPROTO_ICMP, src: B, dst: A, icmpType: 3, inner: { proto: IPPROTO_UDP, src: A, dst: B, sport: 5555, dport: 9999 } };
    expect(hook(err, OUT, 2).ct).toBe(CT_RELATED);
  });

  it("ICMPv6 errors about TCP flows are RELATED", () => {
    const syn: Pkt = { family: FAMILY_IPV6, proto: IPPROTO_TCP, src: A6, dst: B6, sport: 1000, dport: 443, tcp: TCP_SYN };
    hook(syn, OUT, 1);
    const err: Pkt = { family: FAMILY_IPV6, proto: IPPROTO_ICMPV6, src: B6, dst: A6, icmpType: 1, inner: { proto: IPPROTO_TCP, src: A6, dst: B6, sport: 1000, dport: 443 } };
    expect(hook(err, IN, 2).ct).toBe(CT_RELATED);
  });
});

describe("unknown protocols, creation failures and GC", () => {
  it("returns CT_UNKNOWN_PROTO for protocols conntrack does not handle", () => {
    for (const proto of [47 /* GRE */, 50 /* ESP */, 0, 255]) {
      tuple({ proto, src: A, dst: X }, OUT);
      memFill(STATE, 0xee, CT_STATE_SIZE);
      expect(ctLookup(TUPLE, INFO, 1, STATE)).toBe(CT_UNKNOWN_PROTO);
      expect(read32(STATE + CT_STATE_SRC_SEC_ID)).toBe(0);
    }
    expect(CT_UNKNOWN_PROTO).not.toBe(CT_NEW);
    expect([CT_NEW, CT_ESTABLISHED, CT_REPLY, CT_RELATED]).not.toContain(CT_UNKNOWN_PROTO);
  });

  it("ctCreate succeeds on a full CT map (an LRU hash evicts instead of failing)", () => {
    for (let i = 0; i < 1100; i++) {
      const t = tuple(udp(A, X, 10000 + i, 53), OUT);
      expect(ctCreate(t, INFO, 1, 0, 0, 0, 0)).toBe(0);
    }
    expect(mapCount(MapId.Conntrack)).toBe(1024);
    // The most recent flow is there, the oldest was evicted.
    expect(look(udp(A, X, 10000 + 1099, 53), OUT, 2)).toBe(CT_ESTABLISHED);
    expect(look(udp(A, X, 10000, 53), OUT, 2)).toBe(CT_NEW);
  });

  it("ctGc deletes exactly the expired entries", () => {
    for (let i = 0; i < 50; i++) hook(udp(A, X, 20000 + i, 53), OUT, i); // lifetime i + 60
    for (let i = 0; i < 10; i++) hook(tcp(A, X, 30000 + i, 80, TCP_SYN), OUT, 0); // lifetime 60
    hook(tcp(A, X, 31000, 80, TCP_ACK), OUT, 0); // lifetime 8000
    expect(mapCount(MapId.Conntrack)).toBe(61);
    arenaReset();
    expect(ctGc(60)).toBe(0); // lifetime < now only
    arenaReset();
    expect(ctGc(61)).toBe(11); // udp i = 0 and the 10 SYN entries (lifetime 60)
    arenaReset();
    expect(ctGc(100)).toBe(39); // udp i = 1..39 (lifetime 61..99)
    expect(mapCount(MapId.Conntrack)).toBe(11);
    arenaReset();
    expect(ctGc(1_000_000)).toBe(11);
    expect(mapCount(MapId.Conntrack)).toBe(0);
    arenaReset();
    expect(ctGc(1_000_000)).toBe(0);
  });
});
