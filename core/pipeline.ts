/*
 * The entry points of the datapath, mirroring Cilium's hooks (bpf/bpf_lxc.c handle_ipv4_from_lxc and
 * ipv4_policy, bpf/bpf_host.c / bpf/lib/nodeport.h nodeport_lb4 and nodeport_lb6):
 *   fromEndpoint — traffic leaving a pod (tc ingress of its host-side veth)
 *   toEndpoint   — traffic arriving at a pod (tc egress of its host-side veth / local delivery)
 *   fromOverlay  — traffic from pods on other nodes, arriving through the tunnel device (bpf_overlay.c)
 *   fromNetwork  — traffic from outside the node to NodePort / LoadBalancer / external IPs, and the
 *                  replies of flows that this node SNATed (NodePort towards a remote backend, masquerade)
 *   toNetwork    — traffic leaving the node through its device (tc egress, bpf_host.c cil_to_netdev):
 *                  masquerading of pod traffic leaving the cluster (core/nat.ts M1–M6)
 *   fromHost     — traffic the node's stack routes to pods on other nodes through the tunnel device (tc
 *                  egress of that device; bpf_host.c cil_from_host): the host's own, its L7 proxy's
 *                  upstream connections, NodePort flows forwarded to a remote backend (core/overlay.ts O5, O6)
 * fromNetwork and toNetwork also enforce host policies for the node's own traffic (the host firewall,
 * core/host-firewall.ts H1–H8).
 * Each returns a CTX_ACT_* verdict, counts the packet in the per-CPU Metrics array (reason 0 =
 * forwarded), and writes a TraceRecord into the one-entry Trace map when someone will read it: a host that
 * armed the record before the run (the simulator's engines, BPF_PROG_TEST_RUN in the kernel engine) or
 * flow events (CONFIG_F_EVENTS / _ALL), and a redirect (the kernel programs read its record to find the
 * proxy socket). A node without events pays for no trace work on packets it does not redirect.
 * The configuration is read once per packet and passed down.
 *
 * Conntrack directions (core/conntrack.ts): an entry is created by the hook that saw the flow first —
 * TUPLE_F_OUT by fromEndpoint, TUPLE_F_IN by toEndpoint — so one node can hold both ends of a local flow,
 * and a reply is found as the reverse of the opposite-direction entry.
 * Reverse NAT (numbered once, repeated where implemented):
 *   R1. A service flow's rev-NAT index is stored in the entry created where the DNAT happened: the client's
 *       egress entry (ClusterIP, fromEndpoint) or the NodePort entry (fromNetwork).
 *   R2. Whichever hook finds a reply through an entry with a rev-NAT index rewrites the reply's source back
 *       to the service frontend: the client's toEndpoint for ClusterIP, the backend's fromEndpoint for a
 *       NodePort flow to a local backend, fromNetwork for one SNATed to a remote backend.
 *   R3. The hook that translates (fromEndpoint, fromNetwork) re-creates an entry whose rev-NAT index is not
 *       the one of this packet's translation (staleServiceEntry) — in fromEndpoint only when that entry is
 *       closing or the packet cannot move to another port (R4).
 *   R4. fromEndpoint moves a pod's new connection whose translated tuple another live connection holds to
 *       another source port, and toEndpoint gives its replies the original port back (core/nat.ts T1–T7,
 *       sportCollision).
 */
import { MapId, PACKET_INFO_SIZE, PACKET_INFO_FAMILY, PACKET_INFO_NEXTHDR, PACKET_INFO_SADDR, PACKET_INFO_DADDR,
  PACKET_INFO_DPORT, PACKET_INFO_ICMP_TYPE, PACKET_INFO_ICMP_CODE, PACKET_INFO_LEN,
  TRACE_RECORD_SIZE, TRACE_RECORD_VERDICT, TRACE_RECORD_DROP_REASON, TRACE_RECORD_SRC_IDENTITY,
  TRACE_RECORD_DST_IDENTITY, TRACE_RECORD_EGRESS_COOKIE, TRACE_RECORD_INGRESS_COOKIE, TRACE_RECORD_BACKEND_ID,
  TRACE_RECORD_EP_ID, TRACE_RECORD_REV_NAT_INDEX, TRACE_RECORD_CT_STATE, TRACE_RECORD_EGRESS_MATCH_TYPE,
  TRACE_RECORD_INGRESS_MATCH_TYPE, TRACE_RECORD_TRACE_FLAGS, TRACE_RECORD_PROXY_PORT_BE, TRACE_RECORD_OBS_POINT,
  TRACE_RECORD_FAMILY, TRACE_RECORD_ORIG_DADDR, TRACE_RECORD_ORIG_DPORT_BE, TRACE_RECORD_NEW_DADDR,
  TRACE_RECORD_NEW_DPORT_BE, METRICS_KEY_SIZE, METRICS_KEY_REASON, METRICS_KEY_DIR,
  METRICS_VALUE_PACKETS, METRICS_VALUE_BYTES, ENDPOINT_INFO_EP_ID, TRACE_RECORD_HOOK, TRACE_RECORD_SADDR,
  TRACE_RECORD_SPORT_BE, TRACE_RECORD_NEXTHDR, TRACE_RECORD_TCP_FLAGS, TRACE_RECORD_ICMP_TYPE, TRACE_RECORD_LEN,
  PACKET_INFO_SPORT, PACKET_INFO_TCP_FLAGS, CONFIG_VALUE_FLAGS, CONFIG_VALUE_TRACE_SAMPLE_RATE,
  CONFIG_VALUE_HASH_SEED, ENDPOINT_INFO_SEC_IDENTITY,
  CONFIG_VALUE_WORLD_IPV4_IDENTITY, CONFIG_VALUE_WORLD_IPV6_IDENTITY, CT_TUPLE_SIZE, CT_TUPLE_FLAGS,
  CT_STATE_SIZE, CT_STATE_REV_NAT_INDEX, CT_STATE_FLAGS, CT_STATE_ORIG_SPORT, PACKET_INFO_INNER_SADDR, POLICY_RESULT_SIZE, POLICY_RESULT_MATCH_TYPE, POLICY_RESULT_COOKIE,
  SERVICE_KEY_SIZE, SERVICE_VALUE_REV_NAT_INDEX, SERVICE_VALUE_FLAGS, LB_SELECTION_BACKEND_ID,
  LB_SELECTION_BACKEND, CT_STATE_PROXY_PORT, CONFIG_VALUE_HOST_IDENTITY, CONFIG_VALUE_HOST_EP_ID, IPCACHE_VALUE_SEC_IDENTITY } from "./gen/layout";
import { CTX_ACT_DROP, CTX_ACT_OK, CTX_ACT_REDIRECT, CTX_ACT_TUNNEL, TRACE_TO_OVERLAY, TRACE_TO_HOST, CT_NEW, CT_ESTABLISHED, CT_REPLY, CT_RELATED, CT_NONE,
  TUPLE_F_IN, TUPLE_F_OUT, TRACE_VERDICT_ARMED, FAMILY_IPV4, METRIC_DIR_EGRESS, METRIC_DIR_INGRESS, METRIC_DIR_SERVICE,
  TRACE_FROM_ENDPOINT, TRACE_TO_ENDPOINT, TRACE_FROM_NETWORK, TRACE_TO_PROXY, TRACE_TO_NETWORK,
  TRACE_F_EGRESS_CHECKED, TRACE_F_INGRESS_CHECKED, TRACE_F_L7_REDIRECT, TRACE_F_DNAT, TRACE_F_REV_NAT,
  TRACE_F_SNAT, TRACE_F_REPLY, TRACE_F_AUDITED, POLICY_EGRESS, POLICY_INGRESS,
  SVC_F_ROUTABLE, CONFIG_F_EVENTS, CONFIG_F_EVENTS_ALL, HOOK_FROM_ENDPOINT, HOOK_TO_ENDPOINT,
  HOOK_FROM_NETWORK, HOOK_TO_NETWORK, HOOK_FROM_HOST, TRACE_FROM_HOST, MARK_MAGIC_FROM_INGRESS_PROXY, MARK_MAGIC_FROM_EGRESS_PROXY,
  CT_F_RX_CLOSING, CT_F_TX_CLOSING, IPPROTO_TCP, IPPROTO_UDP, TCP_SYN, TCP_ACK } from "./constants";
import { DROP_CT_CREATE_FAILED, DROP_CT_UNKNOWN_PROTO, DROP_INVALID, DROP_INVALID_SIP, DROP_IS_CLUSTER_IP, DROP_NO_CONFIG,
  DROP_NO_SERVICE, DROP_UNKNOWN_L3, DROP_UNROUTABLE, DROP_PROXY_LOOKUP_FAILED, DROP_NO_TUNNEL_ENDPOINT } from "./drop-reasons";
import { add64Local, memCopy, memFill, read8, read16, read32, write8, write16, write32 } from "./env";
import { write16be } from "./bytes";
import { stackAlloc } from "./alloc";
import { mapLookup, mapRingbufOutput } from "./maps";
import { Pkt } from "./pkt";
import { parsePacket } from "./packet";
import { fragHandle } from "./frag";
import { configGet } from "./config";
import { endpointLookup, ipcacheIdentity, ipcacheLookup } from "./ipcache";
import { policyAudit, policyCanAccess, policyIcmpFragNeededAllowed, policyPort } from "./policy";
import { ctBuildTuple, ctCreate, ctLookup, ctLookupOwn, ctSetOrigSport, CT_OTHER, CT_UNKNOWN_PROTO } from "./conntrack";
import { lbLookupService, lbRevNatIcmpError, lbServiceBackend, lbDnat, lbRevNat } from "./lb";
import { natRewriteIcmpErrorInner, natRewritePort, natSportAllocate, natSportLookup, snatEgress, snatNeedsMasquerade,
  snatRevIngress } from "./nat";
import { jhash3Words } from "./hash";
import { overlayDecapIdentity, overlayEncap, overlayKeyPresent } from "./overlay";
import { hostFwEnabled, hostFwExempt, hostFwForwarded } from "./host-firewall";

/* ------------------------------------------------------------------------------------------------ */
/* Trace, metrics and the shared prologue. */

/**
 * The Trace record to fill for this packet, or 0 when nobody will read it. A host that reads the record
 * after the run arms it first (verdict = TRACE_VERDICT_ARMED); flow events (CONFIG_F_EVENTS / _ALL) need
 * it to decide and emit at the end. `cfg` is the ConfigValue or 0.
 */
function traceBegin(cfg: usize): usize {
  const key = stackAlloc(4);
  const tr = mapLookup(MapId.Trace, key);
  if (tr == 0) return 0;
  const armed = read32(tr + TRACE_RECORD_VERDICT) == TRACE_VERDICT_ARMED;
  if (!armed && (cfg == 0 || (read32(cfg + CONFIG_VALUE_FLAGS) & (CONFIG_F_EVENTS | CONFIG_F_EVENTS_ALL)) == 0)) return 0;
  memFill(tr, 0, TRACE_RECORD_SIZE);
  write8(tr + TRACE_RECORD_CT_STATE, CT_NONE);
  return tr;
}

/** Counts the packet. The Metrics map is a per-CPU array whose index is the MetricsKey {reason, dir} read
 * as a little-endian u32 (reason | dir << 8), so counting is an array slot add: no hash lookup, no insert,
 * no cross-CPU contention (Cilium's cilium_metrics is a per-CPU hash for the same reason). */
function count(reason: u32, dir: u32, bytes: u32): void {
  const key = stackAlloc(METRICS_KEY_SIZE);
  write8(key + METRICS_KEY_REASON, reason);
  write8(key + METRICS_KEY_DIR, dir);
  const v = mapLookup(MapId.Metrics, key);
  if (v == 0) return;
  add64Local(v + METRICS_VALUE_PACKETS, 1);
  add64Local(v + METRICS_VALUE_BYTES, bytes);
}

/**
 * Ends an invocation: records the verdict, the reason and a packet summary, counts the packet, and emits
 * the record as a flow event when asked to (CONFIG_F_EVENTS: drops and new flows' policy verdicts, as
 * Hubble's drop and policy-verdict events, plus about 1 in ConfigValue.traceSampleRate forwarded packets
 * as sampled trace events; CONFIG_F_EVENTS_ALL: every packet). Returns the verdict.
 */
function finish(tr: usize, cfg: usize, info: usize, verdict: u32, reason: u32, dir: u32, obsPoint: u32): u32 {
  // toNetwork counts as egress (Cilium's cil_to_netdev: METRIC_EGRESS) and is the only egress hook that
  // ends at TRACE_TO_NETWORK. fromNetwork counts a host-firewall drop as ingress (hostFwDrop) and is the
  // only ingress hook that ends at TRACE_FROM_NETWORK.
  const toNet = dir == METRIC_DIR_EGRESS && obsPoint == TRACE_TO_NETWORK;
  const toEp = dir == METRIC_DIR_INGRESS && obsPoint != TRACE_FROM_NETWORK;
  const hook = toNet ? HOOK_TO_NETWORK : dir == METRIC_DIR_EGRESS ? HOOK_FROM_ENDPOINT : toEp ? HOOK_TO_ENDPOINT : HOOK_FROM_NETWORK;
  return finishAt(tr, cfg, info, verdict, reason, dir, obsPoint, hook);
}

/** finish with the trace record's hook given (fromHost, which counts as egress like fromEndpoint). */
function finishAt(tr: usize, cfg: usize, info: usize, verdict: u32, reason: u32, dir: u32, obsPoint: u32, hook: u32): u32 {
  count(reason, dir, read32(info + PACKET_INFO_LEN));
  if (tr == 0) return verdict;
  write32(tr + TRACE_RECORD_VERDICT, verdict);
  write32(tr + TRACE_RECORD_DROP_REASON, reason);
  write8(tr + TRACE_RECORD_OBS_POINT, obsPoint);
  write8(tr + TRACE_RECORD_HOOK, hook);
  memCopy(tr + TRACE_RECORD_SADDR, info + PACKET_INFO_SADDR, 16);
  write16be(tr + TRACE_RECORD_SPORT_BE, read16(info + PACKET_INFO_SPORT));
  write8(tr + TRACE_RECORD_NEXTHDR, read8(info + PACKET_INFO_NEXTHDR));
  write8(tr + TRACE_RECORD_TCP_FLAGS, read8(info + PACKET_INFO_TCP_FLAGS));
  write8(tr + TRACE_RECORD_ICMP_TYPE, read8(info + PACKET_INFO_ICMP_TYPE));
  write32(tr + TRACE_RECORD_LEN, read32(info + PACKET_INFO_LEN));
  if (cfg != 0) {
    const flags = read32(cfg + CONFIG_VALUE_FLAGS);
    const checked = (read8(tr + TRACE_RECORD_TRACE_FLAGS) & (TRACE_F_EGRESS_CHECKED | TRACE_F_INGRESS_CHECKED)) != 0;
    const newFlow = read8(tr + TRACE_RECORD_CT_STATE) == CT_NEW;
    const rate = read16(cfg + CONFIG_VALUE_TRACE_SAMPLE_RATE);
    // Sampling by a hash of the packet, not a counter: the same packets are sampled on every engine.
    const sampled = rate != 0 && verdict != CTX_ACT_DROP &&
      jhash3Words(read32(info + PACKET_INFO_SADDR), u32((read16(info + PACKET_INFO_SPORT) << 16) | read16(info + PACKET_INFO_DPORT)),
        u32(read32(info + PACKET_INFO_LEN) | (read8(info + PACKET_INFO_TCP_FLAGS) << 24)), read32(cfg + CONFIG_VALUE_HASH_SEED)) % rate == 0;
    if ((flags & CONFIG_F_EVENTS_ALL) != 0 || ((flags & CONFIG_F_EVENTS) != 0 && (verdict == CTX_ACT_DROP || (checked && newFlow) || sampled))) {
      // A full ring buffer loses the event, never the packet.
      mapRingbufOutput(MapId.Events, tr, TRACE_RECORD_SIZE);
    }
  }
  return verdict;
}

function drop(tr: usize, cfg: usize, info: usize, reason: u32, dir: u32): u32 {
  const obs = dir == METRIC_DIR_INGRESS ? TRACE_TO_ENDPOINT : dir == METRIC_DIR_EGRESS ? TRACE_FROM_ENDPOINT : TRACE_FROM_NETWORK;
  return finish(tr, cfg, info, CTX_ACT_DROP, reason, dir, obs);
}

/** A packet fromNetwork's host firewall refused (core/host-firewall.ts H9): counted under METRIC_DIR_INGRESS,
 * as Cilium counts the host firewall's ingress drops (bpf_host.c cil_from_netdev and cil_to_host report
 * them with METRIC_INGRESS), while the record stays fromNetwork's (HOOK_FROM_NETWORK, TRACE_FROM_NETWORK). */
function hostFwDrop(tr: usize, cfg: usize, info: usize, reason: u32): u32 {
  return finish(tr, cfg, info, CTX_ACT_DROP, reason, METRIC_DIR_INGRESS, TRACE_FROM_NETWORK);
}

/** Common start of every entry point: needs the configuration, parses the packet into `info`, and
 * records the family and the destination as it arrived. Returns 0, or the reason to drop. */
function enter(pkt: Pkt, tr: usize, cfg: usize, info: usize): u32 {
  if (cfg == 0) return DROP_NO_CONFIG;
  let perr = parsePacket(pkt, info);
  if (tr != 0) write8(tr + TRACE_RECORD_FAMILY, read8(info + PACKET_INFO_FAMILY));
  // IPv4 fragments take the ports of their datagram's first fragment (core/frag.ts F1–F3).
  if (perr == 0) perr = fragHandle(pkt, info);
  if (perr == 0) recordDest(tr, info, true);
  return perr;
}

function setFlag(tr: usize, flag: u32): void {
  if (tr != 0) write8(tr + TRACE_RECORD_TRACE_FLAGS, read8(tr + TRACE_RECORD_TRACE_FLAGS) | flag);
}

function worldIdentity(cfg: usize, family: u32): u32 {
  return family == FAMILY_IPV4 ? read32(cfg + CONFIG_VALUE_WORLD_IPV4_IDENTITY) : read32(cfg + CONFIG_VALUE_WORLD_IPV6_IDENTITY);
}

function recordDest(tr: usize, info: usize, orig: bool): void {
  if (tr == 0) return;
  if (orig) {
    memCopy(tr + TRACE_RECORD_ORIG_DADDR, info + PACKET_INFO_DADDR, 16);
    write16be(tr + TRACE_RECORD_ORIG_DPORT_BE, read16(info + PACKET_INFO_DPORT));
  }
  memCopy(tr + TRACE_RECORD_NEW_DADDR, info + PACKET_INFO_DADDR, 16);
  write16be(tr + TRACE_RECORD_NEW_DPORT_BE, read16(info + PACKET_INFO_DPORT));
}

/**
 * Runs one policy check and records it in the trace. Returns policyCanAccess's verdict (0 allow, > 0 proxy
 * port, < 0 a negative drop reason) after the ICMP frag-needed exception and audit mode.
 */
function policyCheck(tr: usize, cfg: usize, info: usize, epId: u32, remoteId: u32, egress: u32): i32 {
  const res = stackAlloc(POLICY_RESULT_SIZE);
  const proto = read8(info + PACKET_INFO_NEXTHDR);
  const icmpType = read8(info + PACKET_INFO_ICMP_TYPE);
  let v = policyCanAccess(epId, remoteId, egress, proto, policyPort(cfg, proto, read16(info + PACKET_INFO_DPORT), icmpType), res);
  if (v < 0 && policyIcmpFragNeededAllowed(cfg, proto, icmpType, read8(info + PACKET_INFO_ICMP_CODE))) v = 0;
  if (v < 0) {
    v = policyAudit(v, cfg, res);
    if (v >= 0) setFlag(tr, TRACE_F_AUDITED);
  }
  if (tr != 0) {
    if (egress == POLICY_EGRESS) {
      write8(tr + TRACE_RECORD_EGRESS_MATCH_TYPE, read8(res + POLICY_RESULT_MATCH_TYPE));
      write32(tr + TRACE_RECORD_EGRESS_COOKIE, read32(res + POLICY_RESULT_COOKIE));
      setFlag(tr, TRACE_F_EGRESS_CHECKED);
    } else {
      write8(tr + TRACE_RECORD_INGRESS_MATCH_TYPE, read8(res + POLICY_RESULT_MATCH_TYPE));
      write32(tr + TRACE_RECORD_INGRESS_COOKIE, read32(res + POLICY_RESULT_COOKIE));
      setFlag(tr, TRACE_F_INGRESS_CHECKED);
    }
    if (v > 0) {
      write16be(tr + TRACE_RECORD_PROXY_PORT_BE, <u32>v);
      setFlag(tr, TRACE_F_L7_REDIRECT);
    }
  }
  return v;
}

/** Conntrack lookup for the packet in `info` as seen by a hook of direction `dirFlag` (TUPLE_F_OUT/IN). */
function ctFor(info: usize, tuple: usize, st: usize, dirFlag: u32, now: u32): u32 {
  ctBuildTuple(info, tuple);
  write8(tuple + CT_TUPLE_FLAGS, dirFlag);
  return ctLookup(tuple, info, now, st);
}

/** ctFor with rule 6 of core/conntrack.ts: CT_OTHER when the tuple's live entry carries another rev-NAT
 * index than `revNat` (another connection's; left untouched). */
function ctForOwn(info: usize, tuple: usize, st: usize, now: u32, revNat: u32): u32 {
  ctBuildTuple(info, tuple);
  write8(tuple + CT_TUPLE_FLAGS, TUPLE_F_OUT);
  return ctLookupOwn(tuple, info, now, st, revNat);
}

/** A packet that opens a connection (core/nat.ts T3): a bare TCP SYN, or any UDP packet. */
function opensConnection(info: usize): bool {
  if (read8(info + PACKET_INFO_NEXTHDR) != IPPROTO_TCP) return true;
  return (read8(info + PACKET_INFO_TCP_FLAGS) & (TCP_SYN | TCP_ACK)) == TCP_SYN;
}

/**
 * R4 (core/nat.ts T1–T6) for fromEndpoint's lookup `ct` of the translated tuple, when it is CT_OTHER (the
 * live entry of another connection, state in `st`) or CT_NEW: moves the packet to the port of its
 * connection's mapping (T2) or, for a packet that opens a connection, to a new free port (T3–T4), and looks
 * the moved tuple up again. `origDaddr`/`origDport` are the destination the pod sent to. Outcomes:
 *   a CT state (>= 0) for the packet as it now is — CT_NEW also where R3 re-creates the entry (an entry
 *     closing on either side, a TCP packet that neither has a mapping nor opens a connection, or a moved
 *     tuple that is itself another connection's); the packet's source port may have changed;
 *   a negative drop reason — DROP_NAT_NO_MAPPING (no free port), DROP_WRITE_ERROR, DROP_CSUM_L4.
 */
function sportCollision(pkt: Pkt, cfg: usize, info: usize, tuple: usize, st: usize, origDaddr: usize, origDport: u32,
  ct: u32, now: u32, revNat: u32): i32 {
  const nexthdr = read8(info + PACKET_INFO_NEXTHDR);
  if (nexthdr != IPPROTO_TCP && nexthdr != IPPROTO_UDP) return ct == CT_OTHER ? <i32>CT_NEW : <i32>ct;
  const opens = opensConnection(info);
  // T2: a bare SYN without any entry is a plain new connection: nothing to look up.
  if (ct == CT_NEW && opens && nexthdr == IPPROTO_TCP) return <i32>CT_NEW;
  let port = natSportLookup(info, origDaddr, origDport);
  if (port == 0) {
    if (ct != CT_OTHER) return <i32>ct;
    // T1 / R3: a finished flow's entry, or a running TCP connection with nowhere to go, is re-created.
    if ((read16(st + CT_STATE_FLAGS) & (CT_F_RX_CLOSING | CT_F_TX_CLOSING)) != 0 || !opens) return <i32>CT_NEW;
    // T3.
    const a = natSportAllocate(cfg, info, origDaddr, origDport, now);
    if (a < 0) return a;
    port = <u32>a;
  }
  // T4.
  const r = natRewritePort(pkt, info, false, port);
  if (r < 0) return r;
  const moved = ctForOwn(info, tuple, st, now, revNat);
  return moved == CT_OTHER ? <i32>CT_NEW : <i32>moved;
}

/**
 * R3. An ESTABLISHED hit whose entry carries another service's reverse NAT than the one this packet was
 * translated for (0 = none) is a stale entry of an earlier flow on the same tuple — a client that reuses
 * a source port towards another service with the same backend, or towards the backend directly. It is
 * treated as new and re-created by the caller, as Cilium does (bpf/bpf_lxc.c handle_ipv4_from_lxc: "Did
 * we end up at a stale non-service entry? Recreate if so."; bpf/lib/nodeport.h matches NodePort entries
 * by rev_nat_index). Otherwise replies would be reverse-NATed to the old service's address.
 */
function staleServiceEntry(ct: u32, st: usize, revNat: u32): u32 {
  if (ct == CT_ESTABLISHED && read16(st + CT_STATE_REV_NAT_INDEX) != revNat) return CT_NEW;
  return ct;
}

/** R2: the reply's source back to the service frontend, or (`related`) an ICMP error's embedded packet
 * back to it (core/lb.ts lbRevNatIcmpError), recorded in the trace. Returns 0 or a drop reason. */
function replyRevNat(pkt: Pkt, tr: usize, info: usize, st: usize, related: bool): u32 {
  const revNat = read16(st + CT_STATE_REV_NAT_INDEX);
  if (revNat == 0) return 0;
  const rerr = related ? lbRevNatIcmpError(pkt, info, revNat) : lbRevNat(pkt, info, revNat);
  if (rerr < 0) return <u32>(-rerr);
  if (rerr == 0) {
    if (tr != 0) write16(tr + TRACE_RECORD_REV_NAT_INDEX, revNat);
    setFlag(tr, TRACE_F_REV_NAT);
  }
  return 0;
}

/** R4 (core/nat.ts T6): a reply of a connection fromEndpoint moved to another source port gets the pod's
 * port back as its destination; an ICMPv4 error about it (`related`) as its embedded source port. Returns 0
 * or a drop reason (DROP_WRITE_ERROR, DROP_CSUM_L3, DROP_CSUM_L4). */
function replyOrigSport(pkt: Pkt, info: usize, st: usize, related: bool): u32 {
  const port = read16(st + CT_STATE_ORIG_SPORT);
  if (port == 0) return 0;
  let r: i32 = 0;
  if (!related) r = natRewritePort(pkt, info, true, port);
  else if (read8(info + PACKET_INFO_FAMILY) == FAMILY_IPV4) {
    const addr = stackAlloc(16);
    memCopy(addr, info + PACKET_INFO_INNER_SADDR, 16);
    r = natRewriteIcmpErrorInner(pkt, info, false, addr, port);
  }
  return r < 0 ? <u32>(-r) : 0;
}

/**
 * Whether the node's L7 proxy listens on `proxyPort` (the host keeps one ProxyListeners entry per open
 * listener). A redirect to a port nobody listens on would be a packet nobody inspects: the callers drop it
 * with DROP_PROXY_LOOKUP_FAILED instead (never fail open). The kernel programs additionally check for the
 * listening socket itself before handing the packet over (bpf/include/ciliate_prog.h).
 */
function proxyListening(proxyPort: u32): bool {
  const key = stackAlloc(4);
  write32(key, proxyPort);
  return mapLookup(MapId.ProxyListeners, key) != 0;
}

/**
 * The Trace record of a redirect, whatever the event settings: the kernel programs hand a redirected
 * packet to the proxy's socket using the record's addresses, ports, proxy port and reply flag
 * (bpf/include/ciliate_proxy.h). `tr` is the packet's record when one is being filled; otherwise the
 * record is started here, with the packet's current destination as both the original and the new one
 * (nothing else reads an unarmed record). So only redirected packets pay for a record when nobody asked
 * for one. Returns the record, or 0 when the Trace map has no entry.
 */
function redirectRecord(tr: usize, info: usize): usize {
  if (tr != 0) return tr;
  const key = stackAlloc(4);
  const rec = mapLookup(MapId.Trace, key);
  if (rec == 0) return 0;
  memFill(rec, 0, TRACE_RECORD_SIZE);
  write8(rec + TRACE_RECORD_CT_STATE, CT_NONE);
  write8(rec + TRACE_RECORD_FAMILY, read8(info + PACKET_INFO_FAMILY));
  recordDest(rec, info, true);
  return rec;
}

/** Ends the invocation with a redirect to the proxy on `proxyPort` (recorded in the trace). */
function redirected(trIn: usize, cfg: usize, info: usize, proxyPort: u32, dir: u32): u32 {
  const tr = redirectRecord(trIn, info);
  if (tr != 0) write16be(tr + TRACE_RECORD_PROXY_PORT_BE, proxyPort);
  return finish(tr, cfg, info, CTX_ACT_REDIRECT, 0, dir, TRACE_TO_PROXY);
}

/** A reply that belongs to the proxy's connection: to the proxy, or dropped when it is not listening. */
function replyToProxy(trIn: usize, cfg: usize, info: usize, proxyPort: u32, dir: u32): u32 {
  if (trIn != 0) write16be(trIn + TRACE_RECORD_PROXY_PORT_BE, proxyPort);
  if (!proxyListening(proxyPort)) return drop(trIn, cfg, info, DROP_PROXY_LOOKUP_FAILED, dir);
  const tr = redirectRecord(trIn, info);
  // A late record did not see the caller mark the packet as a reply; the socket choice depends on it.
  setFlag(tr, TRACE_F_REPLY);
  return redirected(tr, cfg, info, proxyPort, dir);
}

/* ------------------------------------------------------------------------------------------------ */

/**
 * H5–H8 for a packet of the node itself (core/host-firewall.ts): conntrack in the hook's direction
 * (TUPLE_F_IN for POLICY_INGRESS, TUPLE_F_OUT for POLICY_EGRESS), replies and related packets pass,
 * everything else is looked up in the host endpoint's policy with `remoteId`. Records the host endpoint,
 * the identities and the conntrack state in the trace. Returns 0 (pass) or the reason to drop.
 */
function hostFirewall(tr: usize, cfg: usize, info: usize, remoteId: u32, egress: u32, now: u32): u32 {
  const epId = read16(cfg + CONFIG_VALUE_HOST_EP_ID);
  const hostId = read32(cfg + CONFIG_VALUE_HOST_IDENTITY);
  if (tr != 0) {
    write16(tr + TRACE_RECORD_EP_ID, epId);
    write32(tr + (egress == POLICY_EGRESS ? TRACE_RECORD_SRC_IDENTITY : TRACE_RECORD_DST_IDENTITY), hostId);
  }
  const tuple = stackAlloc(CT_TUPLE_SIZE);
  const st = stackAlloc(CT_STATE_SIZE);
  const ct = ctFor(info, tuple, st, egress == POLICY_EGRESS ? TUPLE_F_OUT : TUPLE_F_IN, now);
  if (ct != CT_UNKNOWN_PROTO && tr != 0) write8(tr + TRACE_RECORD_CT_STATE, ct);
  if (ct == CT_REPLY || ct == CT_RELATED) {
    setFlag(tr, TRACE_F_REPLY);
    return 0;
  }
  const v = policyCheck(tr, cfg, info, epId, remoteId, egress);
  if (v < 0) return <u32>(-v);
  if (v > 0) return DROP_PROXY_LOOKUP_FAILED;
  if (ct == CT_NEW && ctCreate(tuple, info, now, egress == POLICY_EGRESS ? hostId : remoteId, 0, 0, 0) != 0) return DROP_CT_CREATE_FAILED;
  return 0;
}

/** The end of an allowed packet leaving a pod: through the overlay when it is for a pod on another node
 * (core/overlay.ts O1–O3), else forwarded as it is. */
function forward(pkt: Pkt, tr: usize, cfg: usize, info: usize, srcId: u32, dir: u32): u32 {
  const e = overlayEncap(pkt, cfg, tr, info + PACKET_INFO_DADDR, read8(info + PACKET_INFO_FAMILY), srcId);
  if (e < 0) return drop(tr, cfg, info, <u32>(-e), dir);
  if (e > 0) return finish(tr, cfg, info, CTX_ACT_TUNNEL, 0, dir, TRACE_TO_OVERLAY);
  return finish(tr, cfg, info, CTX_ACT_OK, 0, dir, TRACE_FROM_ENDPOINT);
}

/**
 * Traffic leaving a pod. Outcomes (the verdict; the TraceRecord says why):
 *   1. CTX_ACT_DROP, DROP_NO_CONFIG — the Config map has no entry.
 *   2. CTX_ACT_DROP, a parse drop reason — see parsePacket.
 *   3. CTX_ACT_DROP, DROP_INVALID_SIP — the source address is not a local endpoint.
 *   4. CTX_ACT_DROP, DROP_NO_SERVICE — the destination is a service that cannot serve this packet.
 *   5. CTX_ACT_DROP, DROP_CT_UNKNOWN_PROTO — conntrack cannot track the protocol.
 *   6. CTX_ACT_OK — a reply or related packet: policy skipped (bpf_lxc.c), source reverse-NATed when the
 *      flow came in through a NodePort to this pod (R2); an ICMP error related to a load-balanced flow
 *      gets its embedded packet reverse-NATed (replyRevNat).
 *   6a. CTX_ACT_REDIRECT (TRACE_F_REPLY, proxy port in the trace) — a reply of a flow the ingress proxy
 *      serves: it goes back to the proxy's upstream connection, untranslated (Cilium: replies to an
 *      ingress-proxied flow return to the proxy); CTX_ACT_DROP, DROP_PROXY_LOOKUP_FAILED when that proxy
 *      is not listening.
 *   7. CTX_ACT_DROP, DROP_POLICY / DROP_POLICY_DENY / DROP_POLICY_AUTH_REQUIRED — egress policy (new and
 *      established flows).
 *   8. CTX_ACT_DROP, DROP_PROXY_LOOKUP_FAILED — policy redirects to an L7 proxy port that no proxy listens
 *      on (ProxyListeners): dropped, never forwarded un-inspected.
 *   9. CTX_ACT_DROP, DROP_CT_CREATE_FAILED — a new flow could not be tracked.
 *  10. CTX_ACT_REDIRECT — allowed, to the L7 proxy (proxy port in the trace).
 *  11. CTX_ACT_OK — allowed; the packet may have been DNATed to a service backend, and (R4, core/nat.ts
 *      T1–T5) moved to another source port when its translated tuple is another live connection's.
 *  11a. CTX_ACT_DROP, DROP_NAT_NO_MAPPING — R4 found no free source port (T3).
 *  12. CTX_ACT_TUNNEL — as 6 or 11, for a pod on another node: encapsulated with the tunnel key
 *      {its node, the sender's identity} (core/overlay.ts O1–O3); or a drop with DROP_INVALID_IDENTITY /
 *      DROP_NO_TUNNEL_ENDPOINT / DROP_WRITE_ERROR when it cannot be.
 *  Rewrite failures drop with DROP_WRITE_ERROR / DROP_CSUM_L3 / DROP_CSUM_L4.
 */
export function fromEndpoint(pkt: Pkt, now: u32): u32 {
  const cfg = configGet();
  const tr = traceBegin(cfg);
  const dir = METRIC_DIR_EGRESS;
  const info = stackAlloc(PACKET_INFO_SIZE);
  const err = enter(pkt, tr, cfg, info);
  if (err != 0) return drop(tr, cfg, info, err, dir);
  const family = read8(info + PACKET_INFO_FAMILY);

  // 3. The sender must be a local endpoint (Cilium: is_valid_lxc_src_ip).
  const ep = endpointLookup(info + PACKET_INFO_SADDR, family);
  if (ep == 0) return drop(tr, cfg, info, DROP_INVALID_SIP, dir);
  const epId = read16(ep + ENDPOINT_INFO_EP_ID);
  const srcId = read32(ep + ENDPOINT_INFO_SEC_IDENTITY);
  if (tr != 0) {
    write16(tr + TRACE_RECORD_EP_ID, epId);
    write32(tr + TRACE_RECORD_SRC_IDENTITY, srcId);
  }

  // 4. Service translation before conntrack, on the original tuple (lb4_lookup_service + lb4_local).
  let revNat: u32 = 0;
  let backendId: u32 = 0;
  const origDaddr = stackAlloc(16);
  memCopy(origDaddr, info + PACKET_INFO_DADDR, 16);
  const origDport = read16(info + PACKET_INFO_DPORT);
  const origSport = read16(info + PACKET_INFO_SPORT);
  const svcKey = stackAlloc(SERVICE_KEY_SIZE);
  const svc = lbLookupService(info, svcKey, true);
  if (svc != 0) {
    revNat = read16(svc + SERVICE_VALUE_REV_NAT_INDEX);
    if (tr != 0) write16(tr + TRACE_RECORD_REV_NAT_INDEX, revNat);
    // lbServiceBackend handles count == 0 itself: flows pinned to a draining backend keep it.
    const sel = lbServiceBackend(svcKey, svc, info, now);
    if (sel == 0) return drop(tr, cfg, info, DROP_NO_SERVICE, dir);
    backendId = read32(sel + LB_SELECTION_BACKEND_ID);
    const nerr = lbDnat(pkt, info, sel + LB_SELECTION_BACKEND);
    if (nerr < 0) return drop(tr, cfg, info, <u32>(-nerr), dir);
    if (tr != 0) write32(tr + TRACE_RECORD_BACKEND_ID, backendId);
    setFlag(tr, TRACE_F_DNAT);
    recordDest(tr, info, false);
  }

  // 5. Conntrack on the translated tuple; R3/R4: a tuple another connection holds.
  const tuple = stackAlloc(CT_TUPLE_SIZE);
  const st = stackAlloc(CT_STATE_SIZE);
  let ct = ctForOwn(info, tuple, st, now, revNat);
  if (ct == CT_UNKNOWN_PROTO) return drop(tr, cfg, info, DROP_CT_UNKNOWN_PROTO, dir);
  if (ct == CT_OTHER || ct == CT_NEW) {
    const moved = sportCollision(pkt, cfg, info, tuple, st, origDaddr, origDport, ct, now, revNat);
    if (moved < 0) return drop(tr, cfg, info, <u32>(-moved), dir);
    ct = <u32>moved;
  }
  if (tr != 0) write8(tr + TRACE_RECORD_CT_STATE, ct);
  const dstId = ipcacheIdentity(info + PACKET_INFO_DADDR, family, worldIdentity(cfg, family));
  if (tr != 0) write32(tr + TRACE_RECORD_DST_IDENTITY, dstId);

  // 6. Replies and related packets skip policy; 6a. a reply to the ingress proxy's upstream connection
  // (the flow's ingress entry carries the proxy port) goes back to the proxy.
  if (ct == CT_REPLY || ct == CT_RELATED) {
    setFlag(tr, TRACE_F_REPLY);
    if (ct == CT_REPLY) {
      // Before any reverse NAT: the proxy's upstream connection talks to the translated address.
      const replyProxy = read16(st + CT_STATE_PROXY_PORT);
      if (replyProxy != 0) return replyToProxy(tr, cfg, info, replyProxy, dir);
      const rerr = replyRevNat(pkt, tr, info, st, false);
      if (rerr != 0) return drop(tr, cfg, info, rerr, dir);
    } else {
      const rerr = replyRevNat(pkt, tr, info, st, true);
      if (rerr != 0) return drop(tr, cfg, info, rerr, dir);
    }
    return forward(pkt, tr, cfg, info, srcId, dir);
  }

  // 7. Policy for new and established flows (policy changes apply to live flows, as in Cilium).
  let proxyPort: u32 = 0;
  const v = policyCheck(tr, cfg, info, epId, dstId, POLICY_EGRESS);
  if (v < 0) return drop(tr, cfg, info, <u32>(-v), dir);
  if (v > 0) {
    proxyPort = <u32>v;
    // 8. Before anything is tracked: a flow nobody can inspect is not started.
    if (!proxyListening(proxyPort)) return drop(tr, cfg, info, DROP_PROXY_LOOKUP_FAILED, dir);
  }

  // 9. Track new flows, remembering the service for the reply's reverse NAT (R1).
  if (ct == CT_NEW) {
    if (ctCreate(tuple, info, now, srcId, revNat, backendId, proxyPort) != 0) return drop(tr, cfg, info, DROP_CT_CREATE_FAILED, dir);
    // R4 (T5): a moved connection's entry remembers the pod's port for the replies.
    if (read16(info + PACKET_INFO_SPORT) != origSport && ctSetOrigSport(tuple, origSport) != 0) {
      return drop(tr, cfg, info, DROP_CT_CREATE_FAILED, dir);
    }
  }
  if (proxyPort != 0) return redirected(tr, cfg, info, proxyPort, dir);
  return forward(pkt, tr, cfg, info, srcId, dir);
}

/**
 * Traffic arriving at a pod. `srcIdentity` is skb->mark: the identity that travelled with the packet (VXLAN
 * VNI or, on the same node, the sender's identity), 0 for "look the source address up in the ipcache", or
 * a MARK_MAGIC_FROM_*_PROXY mark set by the node's L7 proxy on its own sockets (the source is then looked
 * up in the ipcache: the proxy connects with the client's address).
 * Outcomes:
 *   1. CTX_ACT_DROP, DROP_NO_CONFIG / a parse drop reason — as fromEndpoint.
 *   2. CTX_ACT_DROP, DROP_UNROUTABLE — the destination is not a local endpoint.
 *   3. CTX_ACT_DROP, DROP_CT_UNKNOWN_PROTO — conntrack cannot track the protocol.
 *   4. CTX_ACT_OK — a reply or related packet: policy skipped, source reverse-NATed to the service when
 *      the flow was load-balanced at this client (R2); an ICMP error related to such a flow gets its
 *      embedded packet (and its source, when the backend sent it) back to the frontend (replyRevNat).
 *      Also a reply the egress proxy sends to its client. A reply of a connection fromEndpoint moved to
 *      another source port gets the pod's port back (R4, core/nat.ts T6).
 *   4a. CTX_ACT_REDIRECT (TRACE_F_REPLY) — a reply, not sent by the proxy, of a flow this pod's egress proxy
 *      serves: it goes to the proxy's upstream connection, untranslated (the proxy connected to the service
 *      backend itself); DROP_PROXY_LOOKUP_FAILED when not listening.
 *   5. CTX_ACT_DROP, DROP_POLICY / DROP_POLICY_DENY / DROP_POLICY_AUTH_REQUIRED — ingress policy.
 *   6. CTX_ACT_DROP, DROP_PROXY_LOOKUP_FAILED — policy redirects to a proxy port nobody listens on.
 *   7. CTX_ACT_DROP, DROP_CT_CREATE_FAILED.
 *   8. CTX_ACT_REDIRECT — allowed, to the L7 proxy.
 *   9. CTX_ACT_OK — allowed; or sent by the ingress proxy (MARK_MAGIC_FROM_INGRESS_PROXY) on a flow that
 *      policy redirects to a proxy: the proxy has judged it, it is not redirected again (Cilium skips the
 *      redirect for packets from the ingress proxy, bpf_lxc.c ipv4_policy).
 */
export function toEndpoint(pkt: Pkt, srcIdentity: u32, now: u32): u32 {
  return deliver(pkt, srcIdentity, now, false);
}

/**
 * Traffic arriving through the node's tunnel device (Cilium bpf_overlay.c cil_from_overlay), after the
 * device stripped the outer headers: the source identity is the tunnel id (core/overlay.ts O4), then
 * everything is toEndpoint's, with that identity. Outcomes: toEndpoint's, plus
 *   CTX_ACT_DROP, DROP_NO_TUNNEL_KEY — the packet carries no tunnel metadata;
 *   CTX_ACT_DROP, DROP_INVALID_IDENTITY — the tunnel id is 0 or reserved:host;
 *   for the node's own address (ipcache identity host) instead of a local endpoint: overlayToHost's —
 *   CTX_ACT_OK up the node's stack, or a host-firewall drop (core/host-firewall.ts H10).
 * The trace record holds the tunnel key it arrived with (tunnelFamily != 0).
 */
export function fromOverlay(pkt: Pkt, now: u32): u32 {
  return deliver(pkt, 0, now, true);
}

/** toEndpoint and fromOverlay: `overlay` takes the source identity from the tunnel key. */
function deliver(pkt: Pkt, srcIdentity: u32, now: u32, overlay: bool): u32 {
  const cfg = configGet();
  const tr = traceBegin(cfg);
  const dir = METRIC_DIR_INGRESS;
  const info = stackAlloc(PACKET_INFO_SIZE);
  const err = enter(pkt, tr, cfg, info);
  if (err != 0) return drop(tr, cfg, info, err, dir);
  const family = read8(info + PACKET_INFO_FAMILY);
  let carriedIn = srcIdentity;
  if (overlay) {
    const oid = overlayDecapIdentity(pkt, tr);
    if (oid < 0) return drop(tr, cfg, info, <u32>(-oid), dir);
    carriedIn = <u32>oid;
  }

  const ep = endpointLookup(info + PACKET_INFO_DADDR, family);
  if (ep == 0) {
    // H10: through the tunnel for the node itself (its address, identity host) — up its stack.
    if (overlay && ipcacheIdentity(info + PACKET_INFO_DADDR, family, worldIdentity(cfg, family)) == read32(cfg + CONFIG_VALUE_HOST_IDENTITY)) {
      return overlayToHost(tr, cfg, info, carriedIn, now);
    }
    return drop(tr, cfg, info, DROP_UNROUTABLE, dir);
  }
  const epId = read16(ep + ENDPOINT_INFO_EP_ID);
  // Compared by their top nibble: `>>>` keeps the JS build's integers unsigned.
  const magic = carriedIn >>> 28;
  const fromIngressProxy = magic == MARK_MAGIC_FROM_INGRESS_PROXY >>> 28;
  const fromProxy = fromIngressProxy || magic == MARK_MAGIC_FROM_EGRESS_PROXY >>> 28;
  const carried = magic != 0 ? 0 : carriedIn;
  const srcId = carried != 0 ? carried : ipcacheIdentity(info + PACKET_INFO_SADDR, family, worldIdentity(cfg, family));
  if (tr != 0) {
    write16(tr + TRACE_RECORD_EP_ID, epId);
    write32(tr + TRACE_RECORD_SRC_IDENTITY, srcId);
    write32(tr + TRACE_RECORD_DST_IDENTITY, read32(ep + ENDPOINT_INFO_SEC_IDENTITY));
  }

  const tuple = stackAlloc(CT_TUPLE_SIZE);
  const st = stackAlloc(CT_STATE_SIZE);
  const ct = ctFor(info, tuple, st, TUPLE_F_IN, now);
  if (ct == CT_UNKNOWN_PROTO) return drop(tr, cfg, info, DROP_CT_UNKNOWN_PROTO, dir);
  if (tr != 0) write8(tr + TRACE_RECORD_CT_STATE, ct);

  // 4. Replies and related packets skip policy; undo the service translation of the request (R2).
  // 4a. A reply of a flow this pod's egress proxy serves goes to the proxy, unless the proxy sent it.
  if (ct == CT_REPLY || ct == CT_RELATED) {
    setFlag(tr, TRACE_F_REPLY);
    if (ct == CT_REPLY) {
      // Before any reverse NAT: the proxy's upstream connection talks to the translated address.
      const replyProxy = read16(st + CT_STATE_PROXY_PORT);
      if (replyProxy != 0 && !fromProxy) return replyToProxy(tr, cfg, info, replyProxy, dir);
      const rerr = replyRevNat(pkt, tr, info, st, false);
      if (rerr != 0) return drop(tr, cfg, info, rerr, dir);
    } else {
      const rerr = replyRevNat(pkt, tr, info, st, true);
      if (rerr != 0) return drop(tr, cfg, info, rerr, dir);
    }
    const perr = replyOrigSport(pkt, info, st, ct == CT_RELATED);
    if (perr != 0) return drop(tr, cfg, info, perr, dir);
    return finish(tr, cfg, info, CTX_ACT_OK, 0, dir, TRACE_TO_ENDPOINT);
  }

  // 5. Ingress policy for new and established flows.
  let proxyPort: u32 = 0;
  const v = policyCheck(tr, cfg, info, epId, srcId, POLICY_INGRESS);
  if (v < 0) return drop(tr, cfg, info, <u32>(-v), dir);
  if (v > 0) {
    proxyPort = <u32>v;
    // 6. Nothing is tracked for a flow nobody can inspect. The ingress proxy's own connection is not
    // redirected again (9); its entry keeps the proxy port so that the pod's replies return to the proxy.
    if (!fromIngressProxy && !proxyListening(proxyPort)) return drop(tr, cfg, info, DROP_PROXY_LOOKUP_FAILED, dir);
  }
  if (ct == CT_NEW) {
    if (ctCreate(tuple, info, now, srcId, 0, 0, proxyPort) != 0) return drop(tr, cfg, info, DROP_CT_CREATE_FAILED, dir);
  }
  if (proxyPort != 0 && !fromIngressProxy) return redirected(tr, cfg, info, proxyPort, dir);
  return finish(tr, cfg, info, CTX_ACT_OK, 0, dir, TRACE_TO_ENDPOINT);
}

/**
 * fromOverlay's packet for the node itself (core/host-firewall.ts H10): with the host firewall, the host's
 * ingress policy judges it on the source's identity (its ipcache entry, else the tunnel id `carried`), with
 * conntrack as at fromNetwork (H5–H8); then, or without the host firewall, it goes up the node's stack.
 * Outcomes: CTX_ACT_OK (TRACE_TO_HOST); CTX_ACT_DROP with hostFirewall's reasons, counted as ingress (H9).
 */
function overlayToHost(tr: usize, cfg: usize, info: usize, carried: u32, now: u32): u32 {
  const family = read8(info + PACKET_INFO_FAMILY);
  const entry = ipcacheLookup(info + PACKET_INFO_SADDR, family);
  const srcId = entry != 0 ? read32(entry + IPCACHE_VALUE_SEC_IDENTITY) : carried;
  if (tr != 0) write32(tr + TRACE_RECORD_SRC_IDENTITY, srcId);
  if (hostFwEnabled(cfg) && !hostFwExempt(info)) {
    const herr = hostFirewall(tr, cfg, info, srcId, POLICY_INGRESS, now);
    if (herr != 0) return drop(tr, cfg, info, herr, METRIC_DIR_INGRESS);
  } else if (tr != 0) {
    write32(tr + TRACE_RECORD_DST_IDENTITY, read32(cfg + CONFIG_VALUE_HOST_IDENTITY));
  }
  return finish(tr, cfg, info, CTX_ACT_OK, 0, METRIC_DIR_INGRESS, TRACE_TO_HOST);
}

/**
 * Traffic from outside the node (Cilium's nodeport_lb4 / nodeport_lb6): NodePort, LoadBalancer and
 * external-IP frontends of either family, and replies of NodePort flows this node SNATed to a remote
 * backend.
 * Outcomes:
 *   1. CTX_ACT_DROP, DROP_NO_CONFIG / a parse drop reason.
 *   1a. CTX_ACT_OK, untouched — not IPv4/IPv6 (ARP above all): the node's own traffic, for its stack. A node
 *      device that dropped ARP could not reach its neighbours, other nodes included (Cilium's bpf_host
 *      do_netdev passes ARP and, without the host firewall, any other ethertype).
 *   2. CTX_ACT_OK, reverse-translated — a reply to a SNATed NodePort flow: destination back to the client,
 *      source back to the frontend (R2); TRACE_F_SNAT and TRACE_F_REV_NAT are set.
 *   2a. CTX_ACT_OK, reverse-SNATed (TRACE_F_SNAT, TRACE_F_REPLY) — a reply to a masqueraded flow
 *      (toNetwork), or an ICMP error about one (core/nat.ts E1–E3: outer destination and embedded source
 *      back to the pod's): destination back to the pod's address and port, for its toEndpoint (obsPoint
 *      TRACE_TO_ENDPOINT), which takes an error as related to the pod's flow; nothing else is done here.
 *   3. CTX_ACT_OK, untouched — not a service frontend: for the node's stack.
 *   3a. With the host firewall (core/host-firewall.ts H1–H8), a packet for the node itself: CTX_ACT_OK as a
 *      reply / related packet or when host policy allows it (conntrack entry TUPLE_F_IN for a new flow);
 *      CTX_ACT_DROP with DROP_POLICY / DROP_POLICY_DENY / DROP_POLICY_AUTH_REQUIRED (host policy),
 *      DROP_PROXY_LOOKUP_FAILED (a redirect: no host proxy) or DROP_CT_CREATE_FAILED, counted under
 *      METRIC_DIR_INGRESS (H9; every other outcome here under METRIC_DIR_SERVICE). The trace's epId is
 *      the host endpoint, its destination identity the host's.
 *   4. CTX_ACT_DROP, DROP_IS_CLUSTER_IP — a ClusterIP (not routable) reached from outside.
 *   5. CTX_ACT_DROP, DROP_NO_SERVICE — no backend can serve the packet.
 *   6. CTX_ACT_DROP, DROP_CT_UNKNOWN_PROTO / DROP_CT_CREATE_FAILED — conntrack.
 *   7. CTX_ACT_OK — DNATed to a local backend (its to-endpoint enforces ingress policy).
 *   8. CTX_ACT_OK — DNATed to a remote backend and SNATed to this node's address of the packet's family
 *      (TRACE_F_SNAT); or a drop with DROP_NAT_NO_MAPPING / DROP_NAT_UNSUPP_PROTO when SNAT is impossible,
 *      DROP_NO_CONFIG when the node has no address of that family (an IPv6 NodePort flow to a remote
 *      backend on a node without ConfigValue.nodeIpv6).
 *  Rewrite failures drop with DROP_WRITE_ERROR / DROP_CSUM_L3 / DROP_CSUM_L4.
 */
export function fromNetwork(pkt: Pkt, now: u32): u32 {
  const cfg = configGet();
  const tr = traceBegin(cfg);
  const dir = METRIC_DIR_SERVICE;
  const info = stackAlloc(PACKET_INFO_SIZE);
  const err = enter(pkt, tr, cfg, info);
  if (err == DROP_UNKNOWN_L3) return finish(tr, cfg, info, CTX_ACT_OK, 0, dir, TRACE_FROM_NETWORK);
  if (err != 0) return drop(tr, cfg, info, err, dir);
  const family = read8(info + PACKET_INFO_FAMILY);
  const srcId = ipcacheIdentity(info + PACKET_INFO_SADDR, family, worldIdentity(cfg, family));
  if (tr != 0) write32(tr + TRACE_RECORD_SRC_IDENTITY, srcId);
  const tuple = stackAlloc(CT_TUPLE_SIZE);
  const st = stackAlloc(CT_STATE_SIZE);

  // 2. A reply to a flow this node SNATed: restore the client, then the frontend.
  const snerr = snatRevIngress(pkt, info);
  if (snerr < 0) return drop(tr, cfg, info, <u32>(-snerr), dir);
  if (snerr == 0) {
    setFlag(tr, TRACE_F_SNAT);
    setFlag(tr, TRACE_F_REPLY);
    // 2a. A reply of a masqueraded flow: back to the pod, whose toEndpoint tracks it and undoes any
    // service translation (its flow's conntrack entry is the pod's, not this hook's).
    if (endpointLookup(info + PACKET_INFO_DADDR, family) != 0) {
      recordDest(tr, info, false);
      return finish(tr, cfg, info, CTX_ACT_OK, 0, dir, TRACE_TO_ENDPOINT);
    }
    const ct = ctFor(info, tuple, st, TUPLE_F_IN, now);
    if (tr != 0) write8(tr + TRACE_RECORD_CT_STATE, ct);
    const rerr = ct == CT_REPLY || ct == CT_RELATED ? replyRevNat(pkt, tr, info, st, ct == CT_RELATED) : 0;
    if (rerr != 0) return drop(tr, cfg, info, rerr, dir);
    recordDest(tr, info, false);
    return finish(tr, cfg, info, CTX_ACT_OK, 0, dir, TRACE_TO_NETWORK);
  }

  // 3./4. Service frontends only; a ClusterIP is not reachable from outside. 3a. Traffic for the node itself
  // meets the host firewall (H2).
  const svcKey = stackAlloc(SERVICE_KEY_SIZE);
  const svc = lbLookupService(info, svcKey, false);
  if (svc == 0) {
    if (hostFwEnabled(cfg) && !hostFwExempt(info) &&
      ipcacheIdentity(info + PACKET_INFO_DADDR, family, worldIdentity(cfg, family)) == read32(cfg + CONFIG_VALUE_HOST_IDENTITY)) {
      const herr = hostFirewall(tr, cfg, info, srcId, POLICY_INGRESS, now);
      if (herr != 0) return hostFwDrop(tr, cfg, info, herr);
    }
    return finish(tr, cfg, info, CTX_ACT_OK, 0, dir, TRACE_FROM_NETWORK);
  }
  if ((read8(svc + SERVICE_VALUE_FLAGS) & SVC_F_ROUTABLE) == 0) return drop(tr, cfg, info, DROP_IS_CLUSTER_IP, dir);
  const revNat = read16(svc + SERVICE_VALUE_REV_NAT_INDEX);
  if (tr != 0) write16(tr + TRACE_RECORD_REV_NAT_INDEX, revNat);

  // 5. Backend and DNAT.
  const sel = lbServiceBackend(svcKey, svc, info, now);
  if (sel == 0) return drop(tr, cfg, info, DROP_NO_SERVICE, dir);
  const backendId = read32(sel + LB_SELECTION_BACKEND_ID);
  const nerr = lbDnat(pkt, info, sel + LB_SELECTION_BACKEND);
  if (nerr < 0) return drop(tr, cfg, info, <u32>(-nerr), dir);
  if (tr != 0) write32(tr + TRACE_RECORD_BACKEND_ID, backendId);
  setFlag(tr, TRACE_F_DNAT);
  recordDest(tr, info, false);
  const dstId = ipcacheIdentity(info + PACKET_INFO_DADDR, family, worldIdentity(cfg, family));
  if (tr != 0) write32(tr + TRACE_RECORD_DST_IDENTITY, dstId);

  // 6. R1: the NodePort entry carries the rev-NAT index. A local backend's reply leaves through its
  // fromEndpoint, which finds this entry as the reverse of an ingress-direction one; a remote backend's
  // reply comes back here after SNAT, and finds it as the reverse of an egress-direction one.
  const local = endpointLookup(info + PACKET_INFO_DADDR, family) != 0;
  const ct = staleServiceEntry(ctFor(info, tuple, st, local ? TUPLE_F_IN : TUPLE_F_OUT, now), st, revNat);
  if (ct == CT_UNKNOWN_PROTO) return drop(tr, cfg, info, DROP_CT_UNKNOWN_PROTO, dir);
  if (tr != 0) write8(tr + TRACE_RECORD_CT_STATE, ct);
  if (ct == CT_NEW) {
    if (ctCreate(tuple, info, now, srcId, revNat, backendId, 0) != 0) {
      return drop(tr, cfg, info, DROP_CT_CREATE_FAILED, dir);
    }
  }
  if (local) return finish(tr, cfg, info, CTX_ACT_OK, 0, dir, TRACE_TO_ENDPOINT);

  // 8. Remote backend: SNAT to this node so the reply comes back here (Cilium's default SNAT mode).
  const serr = snatEgress(pkt, info, now);
  if (serr < 0) return drop(tr, cfg, info, <u32>(-serr), dir);
  setFlag(tr, TRACE_F_SNAT);
  return finish(tr, cfg, info, CTX_ACT_OK, 0, dir, TRACE_TO_NETWORK);
}

/**
 * Traffic leaving the node through its device (Cilium bpf_host.c cil_to_netdev → handle_nat_fwd →
 * snat_v4_needs_masquerade / snat_v4_nat, snat_v6_needs_masquerade / snat_v6_nat): masquerading of pod traffic leaving the cluster. It judges
 * nothing else — policy was the pod's fromEndpoint's — and never drops a packet it does not translate:
 * the device also carries the node's own traffic.
 * Outcomes:
 *   1. CTX_ACT_OK, untouched — no configuration, a packet the parser does not take but that is well
 *      formed (ARP and other ethertypes, fragments, IPv6 extension-header chains it does not follow, …),
 *      or one that is not masqueraded (core/nat.ts M1–M6).
 *   1a. CTX_ACT_DROP, DROP_INVALID — a malformed L2/L3 header (truncated, wrong version or lengths), as
 *      Cilium's cil_to_netdev drops what it cannot revalidate; the kernel never sends such a frame.
 *   2. CTX_ACT_OK, SNATed (TRACE_F_SNAT) — source = the node's address of the packet's family (IPv4 or
 *      IPv6) and an allocated port or ICMP / ICMPv6 echo identifier (P1–P4); the mapping is kept in MapId.Snat (both directions) for fromNetwork's
 *      reverse SNAT (outcome 2a there).
 *   3. CTX_ACT_DROP, DROP_NAT_NO_MAPPING — no free port among SNAT_COLLISION_RETRIES candidates (or the
 *      Snat map is full); DROP_WRITE_ERROR / DROP_CSUM_L3 / DROP_CSUM_L4 — rewriting failed.
 *   4. With the host firewall (core/host-firewall.ts H1–H8), the node's own packet (never masqueraded):
 *      CTX_ACT_OK as a reply / related packet or when host egress policy allows it (conntrack entry
 *      TUPLE_F_OUT for a new flow); CTX_ACT_DROP with DROP_POLICY / DROP_POLICY_DENY /
 *      DROP_POLICY_AUTH_REQUIRED, DROP_PROXY_LOOKUP_FAILED or DROP_CT_CREATE_FAILED.
 * Counted as egress (METRIC_DIR_EGRESS); the trace record's hook is HOOK_TO_NETWORK.
 */
export function toNetwork(pkt: Pkt, now: u32): u32 {
  const cfg = configGet();
  const tr = traceBegin(cfg);
  const dir = METRIC_DIR_EGRESS;
  const info = stackAlloc(PACKET_INFO_SIZE);
  const err = enter(pkt, tr, cfg, info);
  if (err == DROP_INVALID) return finish(tr, cfg, info, CTX_ACT_DROP, err, dir, TRACE_TO_NETWORK);
  if (err != 0) return finish(tr, cfg, info, CTX_ACT_OK, 0, dir, TRACE_TO_NETWORK);
  const family = read8(info + PACKET_INFO_FAMILY);
  if (tr != 0) {
    write32(tr + TRACE_RECORD_SRC_IDENTITY, ipcacheIdentity(info + PACKET_INFO_SADDR, family, worldIdentity(cfg, family)));
    write32(tr + TRACE_RECORD_DST_IDENTITY, ipcacheIdentity(info + PACKET_INFO_DADDR, family, worldIdentity(cfg, family)));
  }
  // 1b. The host firewall for the node's own traffic (H3), before masquerading as in cil_to_netdev.
  if (hostFwEnabled(cfg) && !hostFwExempt(info) &&
    ipcacheIdentity(info + PACKET_INFO_SADDR, family, worldIdentity(cfg, family)) == read32(cfg + CONFIG_VALUE_HOST_IDENTITY) &&
    !hostFwForwarded(cfg, info)) {
    const dstId = ipcacheIdentity(info + PACKET_INFO_DADDR, family, worldIdentity(cfg, family));
    const herr = hostFirewall(tr, cfg, info, dstId, POLICY_EGRESS, now);
    if (herr != 0) return finish(tr, cfg, info, CTX_ACT_DROP, herr, dir, TRACE_TO_NETWORK);
    return finish(tr, cfg, info, CTX_ACT_OK, 0, dir, TRACE_TO_NETWORK);
  }
  if (!snatNeedsMasquerade(cfg, info, now)) return finish(tr, cfg, info, CTX_ACT_OK, 0, dir, TRACE_TO_NETWORK);
  const serr = snatEgress(pkt, info, now);
  if (serr < 0) return finish(tr, cfg, info, CTX_ACT_DROP, <u32>(-serr), dir, TRACE_TO_NETWORK);
  setFlag(tr, TRACE_F_SNAT);
  return finish(tr, cfg, info, CTX_ACT_OK, 0, dir, TRACE_TO_NETWORK);
}

/**
 * Traffic the node's stack routes into the tunnel device: in tunnel mode the agent routes every other
 * node's pod CIDR through it, so the node's own connections, its L7 proxy's connections (bound to the
 * client's address, marked MARK_MAGIC_FROM_*_PROXY) and NodePort flows fromNetwork DNATed and SNATed to a
 * remote backend arrive here after the stack — Cilium's cil_from_host (bpf/bpf_host.c), which encapsulates
 * them towards the destination's node. The source identity is the ipcache's for the source address: the
 * client's for the proxy's connections, reserved:host for the node's own addresses (sent as remote-node,
 * core/overlay.ts O5), world for anything else the node forwards.
 * Outcomes:
 *   1. CTX_ACT_OK, untouched, not counted — the packet already carries a tunnel key: fromEndpoint
 *      encapsulated it and redirected it to the device (O6).
 *   2. CTX_ACT_DROP, DROP_NO_CONFIG / a parse drop reason (a non-IP frame is DROP_UNKNOWN_L3).
 *   3. With the host firewall (core/host-firewall.ts H1–H8), the node's own packet: CTX_ACT_DROP with
 *      DROP_POLICY / DROP_POLICY_DENY / DROP_POLICY_AUTH_REQUIRED / DROP_PROXY_LOOKUP_FAILED /
 *      DROP_CT_CREATE_FAILED when host egress policy refuses it (the encapsulated packet no longer meets
 *      toNetwork's check as the node's own).
 *   4. CTX_ACT_DROP, DROP_NO_TUNNEL_ENDPOINT — the destination's ipcache entry names no tunnel endpoint (an
 *      unknown pod, a local address, no overlay configured): never sent unencapsulated (O6).
 *   5. CTX_ACT_DROP, DROP_INVALID_IDENTITY / DROP_NO_TUNNEL_ENDPOINT / DROP_WRITE_ERROR — overlayEncap
 *      (O2, O3).
 *   6. CTX_ACT_TUNNEL — the tunnel key {destination's node, source identity} is set (obsPoint
 *      TRACE_TO_OVERLAY); the program lets the device encapsulate it.
 * Counted as egress (METRIC_DIR_EGRESS); the trace record's hook is HOOK_FROM_HOST.
 */
export function fromHost(pkt: Pkt, now: u32): u32 {
  const cfg = configGet();
  const tr = traceBegin(cfg);
  // 1. Only a host that armed the record reads it (no event: the packet was fromEndpoint's).
  if (overlayKeyPresent(pkt)) {
    if (tr != 0) {
      write32(tr + TRACE_RECORD_VERDICT, CTX_ACT_OK);
      write8(tr + TRACE_RECORD_OBS_POINT, TRACE_TO_OVERLAY);
      write8(tr + TRACE_RECORD_HOOK, HOOK_FROM_HOST);
    }
    return CTX_ACT_OK;
  }
  const dir = METRIC_DIR_EGRESS;
  const info = stackAlloc(PACKET_INFO_SIZE);
  const err = enter(pkt, tr, cfg, info);
  if (err != 0) return finishAt(tr, cfg, info, CTX_ACT_DROP, err, dir, TRACE_FROM_HOST, HOOK_FROM_HOST);
  const family = read8(info + PACKET_INFO_FAMILY);
  const srcId = ipcacheIdentity(info + PACKET_INFO_SADDR, family, worldIdentity(cfg, family));
  const dstId = ipcacheIdentity(info + PACKET_INFO_DADDR, family, worldIdentity(cfg, family));
  if (tr != 0) {
    write32(tr + TRACE_RECORD_SRC_IDENTITY, srcId);
    write32(tr + TRACE_RECORD_DST_IDENTITY, dstId);
  }
  // 3. As toNetwork would have judged it on the node's device (H3).
  if (hostFwEnabled(cfg) && !hostFwExempt(info) && srcId == read32(cfg + CONFIG_VALUE_HOST_IDENTITY) &&
    !hostFwForwarded(cfg, info)) {
    const herr = hostFirewall(tr, cfg, info, dstId, POLICY_EGRESS, now);
    if (herr != 0) return finishAt(tr, cfg, info, CTX_ACT_DROP, herr, dir, TRACE_FROM_HOST, HOOK_FROM_HOST);
  }
  // 4.–6.
  const e = overlayEncap(pkt, cfg, tr, info + PACKET_INFO_DADDR, family, srcId);
  if (e < 0) return finishAt(tr, cfg, info, CTX_ACT_DROP, <u32>(-e), dir, TRACE_FROM_HOST, HOOK_FROM_HOST);
  if (e == 0) return finishAt(tr, cfg, info, CTX_ACT_DROP, DROP_NO_TUNNEL_ENDPOINT, dir, TRACE_FROM_HOST, HOOK_FROM_HOST);
  return finishAt(tr, cfg, info, CTX_ACT_TUNNEL, 0, dir, TRACE_TO_OVERLAY, HOOK_FROM_HOST);
}
