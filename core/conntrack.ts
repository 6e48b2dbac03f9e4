/*
 * Connection tracking: is this packet part of a connection we have seen, and in which direction?
 * Mirrors Cilium's bpf/lib/conntrack.h (ct_lookup4/6, __ct_lookup, ct_update_timeout, ct_create4/6),
 * with ciliate's single CtTuple layout for both families and all protocols.
 *
 * Tuples. A CtTuple is stored in the direction of the packet that created the entry (saddr = the
 * initiator). Its flags carry the hook that created it: TUPLE_F_OUT for fromEndpoint (egress from a pod),
 * TUPLE_F_IN for toEndpoint (ingress to a pod), so one node can hold both ends of a local flow, and
 * TUPLE_F_SERVICE for service-scoped entries. ctBuildTuple writes TUPLE_F_OUT; the caller sets the flag
 * of its hook (write8(tuple + CT_TUPLE_FLAGS, TUPLE_F_IN)) before ctLookup / ctCreate. As Cilium's
 * ipv4_ct_tuple_reverse does, reversing a tuple swaps addresses and ports *and* flips TUPLE_F_IN, so a
 * reply seen by the opposite hook finds the entry its request created.
 *
 * Lookup order (numbered once; repeated where implemented):
 *   1. An ICMP error (PKT_F_ICMP_ERROR) is looked up by the packet embedded in it, which travelled the
 *      opposite way: first the embedded tuple as sent with TUPLE_F_IN flipped, then the embedded tuple
 *      reversed with the hook's flag. A live hit is CT_RELATED, anything else CT_NEW. RELATED hits copy
 *      the state but do not refresh the entry (an error must not keep a dead flow alive).
 *   2. The reversed tuple (TUPLE_F_IN flipped): a live hit is CT_REPLY. Skipped for TUPLE_F_SERVICE
 *      tuples, which Cilium looks up in one scope only, and by ctLookupOwn for a packet the caller has just
 *      load-balanced (revNat != 0): Cilium looks those up in the forward direction only (bpf/bpf_lxc.c
 *      TAIL_CT_LOOKUP4 sets SCOPE_FORWARD when per-packet LB restored a rev-NAT index), so a service
 *      packet never counts as a reply, and a new one costs no reverse probe.
 *   3. The tuple as is: a live hit is CT_ESTABLISHED.
 *   4. Otherwise CT_NEW. An entry whose lifetime < now is dead and counts as absent.
 *   5. A TCP SYN without ACK that hits an entry closing on either side (Cilium ct_entry_closing: a FIN
 *      or RST was seen in one direction) is CT_NEW: the caller re-creates the entry (newer Cilium;
 *      1.12–1.15 answered CT_REOPENED instead). A client that resets its connection and later reuses the
 *      source port thus starts from a fresh entry, not from the old flow's reverse NAT and proxy port.
 *      (Cilium re-opens on any SYN without FIN/RST; ciliate only on a bare SYN.)
 *   6. ctLookupOwn only: an ESTABLISHED hit (3) whose entry carries another reverse-NAT index than the
 *      caller's connection (another service, or none for a direct connection) belongs to another
 *      connection on the same tuple — two connections of one pod that use one source port towards two
 *      destinations that translate to the same backend. It is CT_OTHER: the entry is not updated (the
 *      other connection's flags, counters and lifetime stay its own) and its state is copied out.
 *
 * Entry update on a REPLY / ESTABLISHED hit and on creation (ct_update_timeout and ACTION_CLOSE in
 * __ct_lookup):
 *   U1. TCP flags are OR-ed into txFlagsSeen (original direction) or rxFlagsSeen (reply direction).
 *   U2. While the entry is alive (not both sides closing): lifetime = now + timeout, where for TCP any
 *       packet without SYN sets CT_F_SEEN_NON_SYN and the timeout is ctTcpLifetime once that is set,
 *       ctSynTimeout before; non-TCP uses ctAnyLifetime. TUPLE_F_SERVICE entries use ctServiceTcpLifetime
 *       / ctServiceAnyLifetime instead of the two regular lifetimes.
 *   U3. TCP FIN or RST sets tx closing (original direction) or rx closing (reply direction); an RST
 *       before both SYNs were seen (and not on a service entry) closes both sides. When both sides are
 *       closing, lifetime = now + ctCloseTimeout.
 *   U4. packets += 1, bytes += the frame length (add64).
 *
 * Timeouts come from the ConfigValue (MapId.Config); entries live in MapId.Conntrack (an LRU hash).
 * Expired entries are removed by the host-only sweep ctGc (core/runtime/conntrack-gc.ts) or by
 * LRU eviction.
 */
import {
  MapId,
  CONFIG_VALUE_FLAGS,
  CONFIG_VALUE_CT_ANY_LIFETIME,
  CONFIG_VALUE_CT_CLOSE_TIMEOUT,
  CONFIG_VALUE_CT_SERVICE_ANY_LIFETIME,
  CONFIG_VALUE_CT_SERVICE_TCP_LIFETIME,
  CONFIG_VALUE_CT_SYN_TIMEOUT,
  CONFIG_VALUE_CT_TCP_LIFETIME,
  CT_ENTRY_BACKEND_ID,
  CT_ENTRY_BYTES,
  CT_ENTRY_FLAGS,
  CT_ENTRY_LIFETIME,
  CT_ENTRY_PACKETS,
  CT_ENTRY_PROXY_PORT_BE,
  CT_ENTRY_ORIG_SPORT_BE,
  CT_ENTRY_REV_NAT_INDEX,
  CT_ENTRY_RX_FLAGS_SEEN,
  CT_ENTRY_SIZE,
  CT_ENTRY_SRC_SEC_ID,
  CT_ENTRY_TX_FLAGS_SEEN,
  CT_STATE_BACKEND_ID,
  CT_STATE_FLAGS,
  CT_STATE_PROXY_PORT,
  CT_STATE_ORIG_SPORT,
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
  PACKET_INFO_INNER_DADDR,
  PACKET_INFO_INNER_DPORT,
  PACKET_INFO_INNER_NEXTHDR,
  PACKET_INFO_INNER_SADDR,
  PACKET_INFO_INNER_SPORT,
  PACKET_INFO_LEN,
  PACKET_INFO_NEXTHDR,
  PACKET_INFO_SADDR,
  PACKET_INFO_SPORT,
  PACKET_INFO_TCP_FLAGS,
} from "./gen/layout";
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
  CONFIG_F_EXTENDED_IP_PROTOCOLS,
  IPPROTO_ICMP,
  IPPROTO_ICMPV6,
  IPPROTO_IGMP,
  IPPROTO_SCTP,
  IPPROTO_TCP,
  IPPROTO_UDP,
  IPPROTO_VRRP,
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
import { DROP_CT_CREATE_FAILED } from "./drop-reasons";
import { add64, memCopy, memFill, read8, read16, read32, write8, write16, write32 } from "./env";
import { read16be, write16be } from "./bytes";
import { mapLookup, mapUpdate } from "./maps";
import { stackAlloc } from "./alloc";
import { configGet } from "./config";

/**
 * ctLookup's answer for a packet whose L4 protocol conntrack does not handle (not TCP, UDP, SCTP, ICMP or
 * ICMPv6, nor VRRP or IGMP with CONFIG_F_EXTENDED_IP_PROTOCOLS). Not a CT state: the caller drops with DROP_CT_UNKNOWN_PROTO (137), as Cilium's ct_lookup
 * returns that drop reason:  `if (ctLookup(...) == CT_UNKNOWN_PROTO) drop(DROP_CT_UNKNOWN_PROTO)`.
 */
export const CT_UNKNOWN_PROTO: u32 = 254;

/** ctLookupOwn's answer for a tuple whose live entry belongs to another connection (rule 6). Not a CT
 * state: fromEndpoint either moves the new connection to another source port (core/nat.ts T1–T6) or, for
 * an entry that is closing, re-creates it (core/pipeline.ts R3). */
export const CT_OTHER: u32 = 253;

const CT_F_BOTH_CLOSING: u32 = 0x03; // CT_F_RX_CLOSING | CT_F_TX_CLOSING

/** VRRP and IGMP have no ports: tracked by addresses alone (ports 0) when the configuration enables
 * them, as Cilium does with enable-extended-ip-protocols; otherwise they stay unknown (137). */
function isTrackedProto(proto: u32): bool {
  if (proto == IPPROTO_TCP || proto == IPPROTO_UDP || proto == IPPROTO_SCTP || proto == IPPROTO_ICMP ||
    proto == IPPROTO_ICMPV6) return true;
  if (proto != IPPROTO_VRRP && proto != IPPROTO_IGMP) return false;
  const cfg = configGet();
  return cfg != 0 && (read32(cfg + CONFIG_VALUE_FLAGS) & CONFIG_F_EXTENDED_IP_PROTOCOLS) != 0;
}

function isIcmpError(info: usize): bool {
  return (read8(info + PACKET_INFO_FLAGS) & PKT_F_ICMP_ERROR) != 0;
}

/**
 * Fills `tuple` (CT_TUPLE_SIZE bytes) from a parsed packet: family, protocol, addresses and ports (ports
 * big-endian, as every BPF key holds them), flags TUPLE_F_OUT. For an ICMP error (PKT_F_ICMP_ERROR) it is
 * the tuple of the embedded original packet as it was sent (inner* fields) with TUPLE_F_RELATED added, so
 * that ctLookup can find the flow the error is about. ICMP echo packets carry the identifier as a port
 * (request sport, reply dport; core/packet.ts), so a reply's reversed tuple is its request's tuple.
 * The caller then sets its hook's direction flag (see the file comment); ctLookup and ctCreate ignore
 * TUPLE_F_RELATED in the tuple and use the packet's PKT_F_ICMP_ERROR instead.
 * Outcome: none (always fills the tuple).
 */
export function ctBuildTuple(info: usize, tuple: usize): void {
  memFill(tuple, 0, CT_TUPLE_SIZE);
  write8(tuple + CT_TUPLE_FAMILY, read8(info + PACKET_INFO_FAMILY));
  if (isIcmpError(info)) {
    memCopy(tuple + CT_TUPLE_SADDR, info + PACKET_INFO_INNER_SADDR, 16);
    memCopy(tuple + CT_TUPLE_DADDR, info + PACKET_INFO_INNER_DADDR, 16);
    write16be(tuple + CT_TUPLE_SPORT_BE, read16(info + PACKET_INFO_INNER_SPORT));
    write16be(tuple + CT_TUPLE_DPORT_BE, read16(info + PACKET_INFO_INNER_DPORT));
    write8(tuple + CT_TUPLE_NEXTHDR, read8(info + PACKET_INFO_INNER_NEXTHDR));
    write8(tuple + CT_TUPLE_FLAGS, TUPLE_F_OUT | TUPLE_F_RELATED);
    return;
  }
  memCopy(tuple + CT_TUPLE_SADDR, info + PACKET_INFO_SADDR, 16);
  memCopy(tuple + CT_TUPLE_DADDR, info + PACKET_INFO_DADDR, 16);
  write16be(tuple + CT_TUPLE_SPORT_BE, read16(info + PACKET_INFO_SPORT));
  write16be(tuple + CT_TUPLE_DPORT_BE, read16(info + PACKET_INFO_DPORT));
  write8(tuple + CT_TUPLE_NEXTHDR, read8(info + PACKET_INFO_NEXTHDR));
  write8(tuple + CT_TUPLE_FLAGS, TUPLE_F_OUT);
}

/** Writes into `key` the tuple `tuple` (reversed: addresses and ports swapped when `reverse`) with the
 * flags byte `flags`. */
function tupleKey(key: usize, tuple: usize, reverse: bool, flags: u32): void {
  memCopy(key, tuple, CT_TUPLE_SIZE);
  if (reverse) {
    memCopy(key + CT_TUPLE_SADDR, tuple + CT_TUPLE_DADDR, 16);
    memCopy(key + CT_TUPLE_DADDR, tuple + CT_TUPLE_SADDR, 16);
    write16(key + CT_TUPLE_SPORT_BE, read16(tuple + CT_TUPLE_DPORT_BE));
    write16(key + CT_TUPLE_DPORT_BE, read16(tuple + CT_TUPLE_SPORT_BE));
  }
  write8(key + CT_TUPLE_FLAGS, flags);
}

/** Flags of the tuple's entries with TUPLE_F_IN flipped (Cilium ct_flip_tuple_dir), unless service-scoped. */
function flipDir(flags: u32): u32 {
  if ((flags & TUPLE_F_SERVICE) != 0) return flags;
  return flags ^ TUPLE_F_IN;
}

/** The live entry for `key`, or 0 when absent or dead (rule 4: lifetime < now). */
function liveEntry(key: usize, now: u32): usize {
  const e = mapLookup(MapId.Conntrack, key);
  if (e == 0) return 0;
  if (read32(e + CT_ENTRY_LIFETIME) < now) return 0;
  return e;
}

/** Copies what callers need from entry `e` into the CtState `state` (when not 0). */
function copyState(e: usize, state: usize): void {
  if (state == 0) return;
  write32(state + CT_STATE_BACKEND_ID, read32(e + CT_ENTRY_BACKEND_ID));
  write32(state + CT_STATE_SRC_SEC_ID, read32(e + CT_ENTRY_SRC_SEC_ID));
  write16(state + CT_STATE_REV_NAT_INDEX, read16(e + CT_ENTRY_REV_NAT_INDEX));
  write16(state + CT_STATE_FLAGS, read16(e + CT_ENTRY_FLAGS));
  write16(state + CT_STATE_PROXY_PORT, read16be(e + CT_ENTRY_PROXY_PORT_BE));
  write16(state + CT_STATE_ORIG_SPORT, read16be(e + CT_ENTRY_ORIG_SPORT_BE));
}

/** Rule 5: a bare SYN on an entry closing on either side re-opens the connection. */
function isReopen(e: usize, tcp: bool, tcpFlags: u32): bool {
  if (!tcp) return false;
  if ((tcpFlags & (TCP_SYN | TCP_ACK)) != TCP_SYN) return false;
  return (read16(e + CT_ENTRY_FLAGS) & CT_F_BOTH_CLOSING) != 0;
}

/** Applies one packet to entry `e` (rules U1–U4). `reply`: the packet travels opposite to the tuple. */
function ctApply(e: usize, cfg: usize, info: usize, tcp: bool, service: bool, reply: bool, now: u32): void {
  const tcpFlags: u32 = tcp ? read8(info + PACKET_INFO_TCP_FLAGS) : 0;
  let flags = read16(e + CT_ENTRY_FLAGS);
  // U1. Flags seen per direction.
  if (reply) write8(e + CT_ENTRY_RX_FLAGS_SEEN, read8(e + CT_ENTRY_RX_FLAGS_SEEN) | tcpFlags);
  else write8(e + CT_ENTRY_TX_FLAGS_SEEN, read8(e + CT_ENTRY_TX_FLAGS_SEEN) | tcpFlags);
  // U2. Refresh the lifetime while the entry is alive.
  if ((flags & CT_F_BOTH_CLOSING) != CT_F_BOTH_CLOSING) {
    if (tcp && (tcpFlags & TCP_SYN) == 0) flags = flags | CT_F_SEEN_NON_SYN;
    let timeout: u32 = 0;
    if (cfg != 0) {
      if (tcp) {
        if ((flags & CT_F_SEEN_NON_SYN) != 0) {
          timeout = read32(cfg + (service ? CONFIG_VALUE_CT_SERVICE_TCP_LIFETIME : CONFIG_VALUE_CT_TCP_LIFETIME));
        } else {
          timeout = read32(cfg + CONFIG_VALUE_CT_SYN_TIMEOUT);
        }
      } else {
        timeout = read32(cfg + (service ? CONFIG_VALUE_CT_SERVICE_ANY_LIFETIME : CONFIG_VALUE_CT_ANY_LIFETIME));
      }
      write32(e + CT_ENTRY_LIFETIME, u32(now + timeout));
    }
  }
  // U3. FIN / RST close a side (both for an RST before the handshake completed).
  if (tcp && (tcpFlags & (TCP_FIN | TCP_RST)) != 0) {
    const bothSyns = (read8(e + CT_ENTRY_TX_FLAGS_SEEN) & TCP_SYN) != 0 && (read8(e + CT_ENTRY_RX_FLAGS_SEEN) & TCP_SYN) != 0;
    if ((tcpFlags & TCP_RST) != 0 && !bothSyns && !service) flags = flags | CT_F_BOTH_CLOSING;
    else flags = flags | (reply ? CT_F_RX_CLOSING : CT_F_TX_CLOSING);
    if ((flags & CT_F_BOTH_CLOSING) == CT_F_BOTH_CLOSING && cfg != 0) {
      write32(e + CT_ENTRY_LIFETIME, u32(now + read32(cfg + CONFIG_VALUE_CT_CLOSE_TIMEOUT)));
    }
  }
  write16(e + CT_ENTRY_FLAGS, flags);
  // U4. Accounting.
  add64(e + CT_ENTRY_PACKETS, 1);
  add64(e + CT_ENTRY_BYTES, read32(info + PACKET_INFO_LEN));
}

/**
 * Looks the packet `info` up in conntrack with `tuple` (from ctBuildTuple, direction flag set by the
 * caller) at time `now` (seconds), updating the entry it finds, and copies the entry's state into
 * `state` (a CtState, CT_STATE_SIZE bytes, or 0); `state` is zeroed first.
 * Outcomes:
 *   - CT_UNKNOWN_PROTO: the packet's protocol is not TCP/UDP/SCTP/ICMP/ICMPv6 (nor VRRP/IGMP with
 *     CONFIG_F_EXTENDED_IP_PROTOCOLS); nothing looked up, the caller drops with DROP_CT_UNKNOWN_PROTO (137);
 *   - CT_RELATED: an ICMP error about a live tracked flow (rule 1);
 *   - CT_REPLY: the reversed tuple has a live entry (rule 2); the entry is updated as the reply direction;
 *   - CT_ESTABLISHED: the tuple has a live entry (rule 3); updated as the original direction;
 *   - CT_NEW: no live entry (rule 4), an ICMP error about an unknown flow (rule 1), or a SYN re-opening
 *     a closed connection (rule 5); nothing is modified.
 * Without a ConfigValue the lookup still works but lifetimes are not refreshed.
 */
export function ctLookup(tuple: usize, info: usize, now: u32, state: usize): u32 {
  return ctLookupRev(tuple, info, now, state, 0, false);
}

/**
 * ctLookup for a connection whose reverse-NAT index is `revNat` (0 = not load-balanced): the same
 * outcomes, except that a load-balanced packet (revNat != 0) is never CT_REPLY (rule 2), plus
 *   - CT_OTHER: the tuple's live entry (rule 3) carries another reverse-NAT index — another connection's
 *     (rule 6); it is not updated, and `state` holds its contents.
 */
export function ctLookupOwn(tuple: usize, info: usize, now: u32, state: usize, revNat: u32): u32 {
  return ctLookupRev(tuple, info, now, state, revNat, true);
}

/** ctLookup (own = false) and ctLookupOwn (own = true: rule 6 with `revNat`). */
function ctLookupRev(tuple: usize, info: usize, now: u32, state: usize, revNat: u32, own: bool): u32 {
  if (state != 0) memFill(state, 0, CT_STATE_SIZE);
  if (!isTrackedProto(read8(info + PACKET_INFO_NEXTHDR))) return CT_UNKNOWN_PROTO;
  const key = stackAlloc(CT_TUPLE_SIZE);
  if (key == 0) return CT_NEW;
  const flags = read8(tuple + CT_TUPLE_FLAGS) & ~TUPLE_F_RELATED;
  const service = (flags & TUPLE_F_SERVICE) != 0;

  // 1. ICMP errors: the embedded flow, either way round.
  if (isIcmpError(info)) {
    tupleKey(key, tuple, false, flipDir(flags));
    let e = liveEntry(key, now);
    if (e == 0) {
      tupleKey(key, tuple, true, flags);
      e = liveEntry(key, now);
    }
    if (e == 0) return CT_NEW;
    copyState(e, state);
    return CT_RELATED;
  }

  const cfg = configGet();
  const tcp = read8(tuple + CT_TUPLE_NEXTHDR) == IPPROTO_TCP;
  const tcpFlags: u32 = tcp ? read8(info + PACKET_INFO_TCP_FLAGS) : 0;

  // 2. The reverse direction: a reply to a tracked flow (not after load balancing).
  if (!service && !(own && revNat != 0)) {
    tupleKey(key, tuple, true, flipDir(flags));
    const r = liveEntry(key, now);
    if (r != 0) {
      if (isReopen(r, tcp, tcpFlags)) return CT_NEW; // 5.
      ctApply(r, cfg, info, tcp, service, true, now);
      copyState(r, state);
      return CT_REPLY;
    }
  }

  // 3. The original direction: an established flow.
  tupleKey(key, tuple, false, flags);
  const f = liveEntry(key, now);
  if (f != 0) {
    if (isReopen(f, tcp, tcpFlags)) return CT_NEW; // 5.
    if (own && <u32>read16(f + CT_ENTRY_REV_NAT_INDEX) != revNat) { // 6.
      copyState(f, state);
      return CT_OTHER;
    }
    ctApply(f, cfg, info, tcp, service, false, now);
    copyState(f, state);
    return CT_ESTABLISHED;
  }

  // 4. Not tracked (or dead).
  return CT_NEW;
}

/**
 * Whether the packet `info` answers a connection opened towards a local endpoint: its reversed tuple has a
 * live TUPLE_F_IN entry (the kind toEndpoint creates), looked at without updating it (Cilium ct_is_reply4,
 * used by bpf/lib/nat.h snat_v4_needs_masquerade). ICMP errors are never replies here.
 * Outcomes: true / false.
 */
export function ctIsReplyToIngress(info: usize, now: u32): bool {
  if (isIcmpError(info)) return false;
  const tuple = stackAlloc(CT_TUPLE_SIZE);
  const key = stackAlloc(CT_TUPLE_SIZE);
  if (tuple == 0 || key == 0) return false;
  ctBuildTuple(info, tuple);
  tupleKey(key, tuple, true, TUPLE_F_IN);
  return liveEntry(key, now) != 0;
}

/**
 * Creates (or replaces, BPF_ANY) the entry for `tuple` from the packet `info` that opened the flow, at
 * time `now`, recording the source identity, the service's reverse-NAT index, the chosen backend and
 * the L7 proxy port (host order, 0 none; non-zero also sets CT_F_PROXY_REDIRECT). The initial lifetime
 * and flags follow rules U1–U4 for a packet in the original direction: a TCP SYN gets ctSynTimeout, a
 * TCP packet without SYN (a flow picked up mid-stream) ctTcpLifetime, non-TCP ctAnyLifetime. (Cilium's
 * ct_create always treats a TCP creator as a SYN; ciliate applies the same rule as lookups.)
 * ICMP errors never create state: they are only ever RELATED to an existing flow.
 * Outcomes:
 *   - 0: created or replaced, or nothing to do for an ICMP error;
 *   - -DROP_CT_CREATE_FAILED (-155): no ConfigValue, scratch memory exhausted, or the map update failed.
 */
export function ctCreate(tuple: usize, info: usize, now: u32, srcSecId: u32, revNatIndex: u32, backendId: u32,
  proxyPort: u32): i32 {
  if (isIcmpError(info)) return 0;
  const cfg = configGet();
  if (cfg == 0) return -(<i32>DROP_CT_CREATE_FAILED);
  const entry = stackAlloc(CT_ENTRY_SIZE);
  const key = stackAlloc(CT_TUPLE_SIZE);
  if (entry == 0 || key == 0) return -(<i32>DROP_CT_CREATE_FAILED);
  const flags = read8(tuple + CT_TUPLE_FLAGS) & ~TUPLE_F_RELATED;
  tupleKey(key, tuple, false, flags);
  write32(entry + CT_ENTRY_SRC_SEC_ID, srcSecId);
  write32(entry + CT_ENTRY_BACKEND_ID, backendId);
  write16(entry + CT_ENTRY_REV_NAT_INDEX, revNatIndex & 0xffff);
  write16be(entry + CT_ENTRY_PROXY_PORT_BE, proxyPort);
  if (proxyPort != 0) write16(entry + CT_ENTRY_FLAGS, CT_F_PROXY_REDIRECT);
  const tcp = read8(tuple + CT_TUPLE_NEXTHDR) == IPPROTO_TCP;
  ctApply(entry, cfg, info, tcp, (flags & TUPLE_F_SERVICE) != 0, false, now);
  if (mapUpdate(MapId.Conntrack, key, entry, BPF_ANY) != 0) return -(<i32>DROP_CT_CREATE_FAILED);
  return 0;
}

/**
 * Whether the tuple `key` (a complete CtTuple key, direction flag included) has a live entry, looked at
 * without updating it (rule 4's liveness). Used to find a free source port (core/nat.ts T3).
 * Outcomes: true / false.
 */
export function ctTupleLive(key: usize, now: u32): bool {
  return liveEntry(key, now) != 0;
}

/**
 * Records in the entry of `tuple` (as created by ctCreate) that its connection's source port was
 * rewritten from `origSport` (host order; core/nat.ts T5), so that replies get it back.
 * Outcomes: 0 — recorded; -DROP_CT_CREATE_FAILED — the entry does not exist.
 */
export function ctSetOrigSport(tuple: usize, origSport: u32): i32 {
  const key = stackAlloc(CT_TUPLE_SIZE);
  if (key == 0) return -(<i32>DROP_CT_CREATE_FAILED);
  tupleKey(key, tuple, false, read8(tuple + CT_TUPLE_FLAGS) & ~TUPLE_F_RELATED);
  const e = mapLookup(MapId.Conntrack, key);
  if (e == 0) return -(<i32>DROP_CT_CREATE_FAILED);
  write16be(e + CT_ENTRY_ORIG_SPORT_BE, origSport);
  return 0;
}
