/*
 * The entry points of the datapath, mirroring Cilium's hooks (bpf/bpf_lxc.c handle_ipv4_from_lxc and
 * ipv4_policy, bpf/bpf_host.c / bpf/lib/nodeport.h nodeport_lb4):
 *   fromEndpoint — traffic leaving a pod (tc ingress of its host-side veth)
 *   toEndpoint   — traffic arriving at a pod (tc egress of its host-side veth / local delivery)
 *   fromNetwork  — traffic from outside the node to NodePort / LoadBalancer / external IPs
 * Each returns a CTX_ACT_* verdict and writes a TraceRecord into the one-entry Trace map, and counts the
 * packet in the Metrics map (reason 0 = forwarded).
 *
 * Conntrack directions: a flow has an entry per hook that saw it first — TUPLE_F_OUT for entries created
 * by fromEndpoint, TUPLE_F_IN for entries created by toEndpoint — so that the same node can hold both ends
 * of a local flow, and a reply is found as the reverse of the opposite-direction entry (core/conntrack.ts).
 */
import { MapId, PACKET_INFO_SIZE, PACKET_INFO_FAMILY, PACKET_INFO_NEXTHDR, PACKET_INFO_SADDR, PACKET_INFO_DADDR,
  PACKET_INFO_DPORT, PACKET_INFO_ICMP_TYPE, PACKET_INFO_ICMP_CODE, PACKET_INFO_LEN, PACKET_INFO_TCP_FLAGS,
  TRACE_RECORD_SIZE, TRACE_RECORD_VERDICT, TRACE_RECORD_DROP_REASON, TRACE_RECORD_SRC_IDENTITY,
  TRACE_RECORD_DST_IDENTITY, TRACE_RECORD_EGRESS_COOKIE, TRACE_RECORD_INGRESS_COOKIE, TRACE_RECORD_BACKEND_ID,
  TRACE_RECORD_EP_ID, TRACE_RECORD_REV_NAT_INDEX, TRACE_RECORD_CT_STATE, TRACE_RECORD_EGRESS_MATCH_TYPE,
  TRACE_RECORD_INGRESS_MATCH_TYPE, TRACE_RECORD_TRACE_FLAGS, TRACE_RECORD_PROXY_PORT_BE, TRACE_RECORD_OBS_POINT,
  TRACE_RECORD_FAMILY, TRACE_RECORD_ORIG_DADDR, TRACE_RECORD_ORIG_DPORT_BE, TRACE_RECORD_NEW_DADDR,
  TRACE_RECORD_NEW_DPORT_BE, METRICS_KEY_SIZE, METRICS_KEY_REASON, METRICS_KEY_DIR, METRICS_VALUE_SIZE,
  METRICS_VALUE_PACKETS, METRICS_VALUE_BYTES, ENDPOINT_INFO_EP_ID, ENDPOINT_INFO_SEC_IDENTITY,
  CONFIG_VALUE_FLAGS, CONFIG_VALUE_WORLD_IPV4_IDENTITY, CONFIG_VALUE_WORLD_IPV6_IDENTITY, CT_TUPLE_SIZE,
  CT_TUPLE_FLAGS, CT_STATE_SIZE, CT_STATE_REV_NAT_INDEX, CT_STATE_BACKEND_ID, POLICY_RESULT_SIZE,
  POLICY_RESULT_MATCH_TYPE, POLICY_RESULT_COOKIE, SERVICE_KEY_SIZE, SERVICE_VALUE_COUNT,
  SERVICE_VALUE_REV_NAT_INDEX, LB_SELECTION_BACKEND_ID, LB_SELECTION_BACKEND } from "./gen/layout";
import { CTX_ACT_DROP, CTX_ACT_OK, CTX_ACT_REDIRECT, CT_NEW, CT_ESTABLISHED, CT_REPLY, CT_RELATED, CT_NONE,
  TUPLE_F_IN, TUPLE_F_OUT, FAMILY_IPV4, IPPROTO_ICMP, IPPROTO_ICMPV6, METRIC_DIR_EGRESS, METRIC_DIR_INGRESS,
  METRIC_DIR_SERVICE, TRACE_FROM_ENDPOINT, TRACE_TO_ENDPOINT, TRACE_FROM_NETWORK, TRACE_TO_PROXY,
  TRACE_F_EGRESS_CHECKED, TRACE_F_INGRESS_CHECKED, TRACE_F_L7_REDIRECT, TRACE_F_DNAT, TRACE_F_REV_NAT,
  TRACE_F_REPLY, TRACE_F_AUDITED, CONFIG_F_POLICY_AUDIT, POLICY_EGRESS, POLICY_INGRESS,
  BPF_NOEXIST } from "./constants";
import { DROP_CT_CREATE_FAILED, DROP_CT_UNKNOWN_PROTO, DROP_INVALID_SIP, DROP_NO_CONFIG, DROP_NO_SERVICE, DROP_UNROUTABLE } from "./drop-reasons";
import { add64, memCopy, memFill, read8, read16, read32, write8, write16, write32 } from "./env";
import { write16be } from "./bytes";
import { stackAlloc } from "./alloc";
import { mapLookup, mapUpdate } from "./maps";
import { Pkt } from "./pkt";
import { parsePacket } from "./packet";
import { configGet } from "./config";
import { endpointLookup, ipcacheIdentity } from "./ipcache";
import { policyAudit, policyCanAccess, policyIcmpFragNeededAllowed, policyPort } from "./policy";
import { ctBuildTuple, ctCreate, ctLookup, CT_UNKNOWN_PROTO } from "./conntrack";
import { lbLookupService, lbServiceBackend, lbDnat, lbRevNat } from "./lb";

/* ------------------------------------------------------------------------------------------------ */
/* Trace and metrics. */

function traceBegin(): usize {
  const key = stackAlloc(4);
  const tr = mapLookup(MapId.Trace, key);
  if (tr != 0) {
    memFill(tr, 0, TRACE_RECORD_SIZE);
    write8(tr + TRACE_RECORD_CT_STATE, CT_NONE);
  }
  return tr;
}

function count(reason: u32, dir: u32, bytes: u32): void {
  const key = stackAlloc(METRICS_KEY_SIZE);
  write8(key + METRICS_KEY_REASON, reason);
  write8(key + METRICS_KEY_DIR, dir);
  let v = mapLookup(MapId.Metrics, key);
  if (v == 0) {
    const zero = stackAlloc(METRICS_VALUE_SIZE);
    mapUpdate(MapId.Metrics, key, zero, BPF_NOEXIST);
    v = mapLookup(MapId.Metrics, key);
    if (v == 0) return;
  }
  add64(v + METRICS_VALUE_PACKETS, 1);
  add64(v + METRICS_VALUE_BYTES, bytes);
}

/** Ends an invocation: records the verdict and reason, counts the packet, returns the verdict. */
function finish(tr: usize, info: usize, verdict: u32, reason: u32, dir: u32, obsPoint: u32): u32 {
  if (tr != 0) {
    write32(tr + TRACE_RECORD_VERDICT, verdict);
    write32(tr + TRACE_RECORD_DROP_REASON, reason);
    write8(tr + TRACE_RECORD_OBS_POINT, obsPoint);
  }
  count(reason, dir, info == 0 ? 0 : read32(info + PACKET_INFO_LEN));
  return verdict;
}

function drop(tr: usize, info: usize, reason: u32, dir: u32): u32 {
  return finish(tr, info, CTX_ACT_DROP, reason, dir, dir == METRIC_DIR_INGRESS ? TRACE_TO_ENDPOINT : TRACE_FROM_ENDPOINT);
}

function setFlag(tr: usize, flag: u32): void {
  if (tr != 0) write8(tr + TRACE_RECORD_TRACE_FLAGS, read8(tr + TRACE_RECORD_TRACE_FLAGS) | flag);
}

function worldIdentity(cfg: usize, family: u32): u32 {
  return family == FAMILY_IPV4 ? read32(cfg + CONFIG_VALUE_WORLD_IPV4_IDENTITY) : read32(cfg + CONFIG_VALUE_WORLD_IPV6_IDENTITY);
}

/**
 * Runs one policy check and records it in the trace. Returns the verdict of policyCanAccess (0 allow,
 * > 0 proxy port, < 0 a negative drop reason) after audit mode and the ICMP frag-needed exception.
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

function recordDest(tr: usize, info: usize, orig: bool): void {
  if (tr == 0) return;
  if (orig) {
    memCopy(tr + TRACE_RECORD_ORIG_DADDR, info + PACKET_INFO_DADDR, 16);
    write16be(tr + TRACE_RECORD_ORIG_DPORT_BE, read16(info + PACKET_INFO_DPORT));
  }
  memCopy(tr + TRACE_RECORD_NEW_DADDR, info + PACKET_INFO_DADDR, 16);
  write16be(tr + TRACE_RECORD_NEW_DPORT_BE, read16(info + PACKET_INFO_DPORT));
}

/* ------------------------------------------------------------------------------------------------ */

/**
 * Traffic leaving a pod. Outcomes (the verdict; the TraceRecord says why):
 *   1. CTX_ACT_DROP, DROP_NO_CONFIG — the Config map has no entry.
 *   2. CTX_ACT_DROP, a parse drop reason — see parsePacket.
 *   3. CTX_ACT_DROP, DROP_INVALID_SIP — the source address is not a local endpoint.
 *   4. CTX_ACT_DROP, DROP_NO_SERVICE — the destination is a service without active backends.
 *   5. CTX_ACT_DROP, DROP_CT_UNKNOWN_PROTO / DROP_CT_INVALID_HDR — conntrack cannot track the packet.
 *   6. CTX_ACT_DROP, DROP_POLICY / DROP_POLICY_DENY / DROP_POLICY_AUTH_REQUIRED — egress policy (new and
 *      established flows; replies and related packets skip policy, as in bpf_lxc.c).
 *   7. CTX_ACT_DROP, DROP_CT_CREATE_FAILED — a new flow could not be tracked.
 *   8. CTX_ACT_REDIRECT — allowed, to the L7 proxy (proxy port in the trace).
 *   9. CTX_ACT_OK — allowed; the packet may have been DNATed to a service backend.
 */
export function fromEndpoint(pkt: Pkt, now: u32): u32 {
  const tr = traceBegin();
  const dir = METRIC_DIR_EGRESS;
  const cfg = configGet();
  if (cfg == 0) return drop(tr, 0, DROP_NO_CONFIG, dir);
  const info = stackAlloc(PACKET_INFO_SIZE);
  const perr = parsePacket(pkt, info);
  if (tr != 0) write8(tr + TRACE_RECORD_FAMILY, read8(info + PACKET_INFO_FAMILY));
  if (perr != 0) return drop(tr, info, perr, dir);
  const family = read8(info + PACKET_INFO_FAMILY);

  // (3) The sender must be a local endpoint (Cilium: is_valid_lxc_src_ip).
  const ep = endpointLookup(info + PACKET_INFO_SADDR, family);
  if (ep == 0) return drop(tr, info, DROP_INVALID_SIP, dir);
  const epId = read16(ep + ENDPOINT_INFO_EP_ID);
  const srcId = read32(ep + ENDPOINT_INFO_SEC_IDENTITY);
  if (tr != 0) {
    write16(tr + TRACE_RECORD_EP_ID, epId);
    write32(tr + TRACE_RECORD_SRC_IDENTITY, srcId);
  }
  recordDest(tr, info, true);

  // (4) Service translation before conntrack, on the original tuple (lb4_lookup_service + lb4_local).
  let revNat: u32 = 0;
  let backendId: u32 = 0;
  const svcKey = stackAlloc(SERVICE_KEY_SIZE);
  const svc = lbLookupService(info, svcKey);
  if (svc != 0) {
    revNat = read16(svc + SERVICE_VALUE_REV_NAT_INDEX);
    if (tr != 0) write16(tr + TRACE_RECORD_REV_NAT_INDEX, revNat);
    // lbServiceBackend handles count == 0 itself: flows pinned to a draining backend keep it.
    const sel = lbServiceBackend(svcKey, svc, info, now);
    if (sel == 0) return drop(tr, info, DROP_NO_SERVICE, dir);
    backendId = read32(sel + LB_SELECTION_BACKEND_ID);
    const nerr = lbDnat(pkt, info, sel + LB_SELECTION_BACKEND);
    if (nerr < 0) return drop(tr, info, <u32>(-nerr), dir);
    if (tr != 0) write32(tr + TRACE_RECORD_BACKEND_ID, backendId);
    setFlag(tr, TRACE_F_DNAT);
    recordDest(tr, info, false);
  }

  // (5) Conntrack on the translated tuple.
  const tuple = stackAlloc(CT_TUPLE_SIZE);
  ctBuildTuple(info, tuple);
  write8(tuple + CT_TUPLE_FLAGS, TUPLE_F_OUT);
  const st = stackAlloc(CT_STATE_SIZE);
  const ct = ctLookup(tuple, info, now, st);
  if (ct == CT_UNKNOWN_PROTO) return drop(tr, info, DROP_CT_UNKNOWN_PROTO, dir);
  if (tr != 0) write8(tr + TRACE_RECORD_CT_STATE, ct);

  const dstId = ipcacheIdentity(info + PACKET_INFO_DADDR, family, worldIdentity(cfg, family));
  if (tr != 0) write32(tr + TRACE_RECORD_DST_IDENTITY, dstId);

  // (6) Policy for new and established flows only.
  let verdict: u32 = CTX_ACT_OK;
  let proxyPort: u32 = 0;
  if (ct == CT_NEW || ct == CT_ESTABLISHED) {
    const v = policyCheck(tr, cfg, info, epId, dstId, POLICY_EGRESS);
    if (v < 0) return drop(tr, info, <u32>(-v), dir);
    if (v > 0) {
      proxyPort = <u32>v;
      verdict = CTX_ACT_REDIRECT;
    }
  } else {
    setFlag(tr, TRACE_F_REPLY);
  }

  // (7) Track new flows, remembering the service for the reply's reverse NAT.
  if (ct == CT_NEW) {
    if (ctCreate(tuple, info, now, srcId, revNat, backendId, proxyPort) != 0) return drop(tr, info, DROP_CT_CREATE_FAILED, dir);
  }
  return finish(tr, info, verdict, 0, dir, verdict == CTX_ACT_REDIRECT ? TRACE_TO_PROXY : TRACE_FROM_ENDPOINT);
}

/**
 * Traffic arriving at a pod. `srcIdentity` is the identity that travelled with the packet (VXLAN VNI or,
 * on the same node, the sender's identity); 0 means "look the source address up in the ipcache".
 * Outcomes:
 *   1. CTX_ACT_DROP, DROP_NO_CONFIG / a parse drop reason — as fromEndpoint.
 *   2. CTX_ACT_DROP, DROP_UNROUTABLE — the destination is not a local endpoint.
 *   3. CTX_ACT_DROP, DROP_CT_UNKNOWN_PROTO — conntrack cannot track the packet.
 *   4. CTX_ACT_OK — a reply or related packet: policy skipped, source reverse-NATed to the service when
 *      the flow was load-balanced.
 *   5. CTX_ACT_DROP, DROP_POLICY / DROP_POLICY_DENY / DROP_POLICY_AUTH_REQUIRED — ingress policy.
 *   6. CTX_ACT_DROP, DROP_CT_CREATE_FAILED.
 *   7. CTX_ACT_REDIRECT — allowed, to the L7 proxy.
 *   8. CTX_ACT_OK — allowed.
 */
export function toEndpoint(pkt: Pkt, srcIdentity: u32, now: u32): u32 {
  const tr = traceBegin();
  const dir = METRIC_DIR_INGRESS;
  const cfg = configGet();
  if (cfg == 0) return drop(tr, 0, DROP_NO_CONFIG, dir);
  const info = stackAlloc(PACKET_INFO_SIZE);
  const perr = parsePacket(pkt, info);
  if (tr != 0) write8(tr + TRACE_RECORD_FAMILY, read8(info + PACKET_INFO_FAMILY));
  if (perr != 0) return drop(tr, info, perr, dir);
  const family = read8(info + PACKET_INFO_FAMILY);
  recordDest(tr, info, true);

  const ep = endpointLookup(info + PACKET_INFO_DADDR, family);
  if (ep == 0) return drop(tr, info, DROP_UNROUTABLE, dir);
  const epId = read16(ep + ENDPOINT_INFO_EP_ID);
  const srcId = srcIdentity != 0 ? srcIdentity : ipcacheIdentity(info + PACKET_INFO_SADDR, family, worldIdentity(cfg, family));
  if (tr != 0) {
    write16(tr + TRACE_RECORD_EP_ID, epId);
    write32(tr + TRACE_RECORD_SRC_IDENTITY, srcId);
    write32(tr + TRACE_RECORD_DST_IDENTITY, read32(ep + ENDPOINT_INFO_SEC_IDENTITY));
  }

  const tuple = stackAlloc(CT_TUPLE_SIZE);
  ctBuildTuple(info, tuple);
  write8(tuple + CT_TUPLE_FLAGS, TUPLE_F_IN);
  const st = stackAlloc(CT_STATE_SIZE);
  const ct = ctLookup(tuple, info, now, st);
  if (ct == CT_UNKNOWN_PROTO) return drop(tr, info, DROP_CT_UNKNOWN_PROTO, dir);
  if (tr != 0) write8(tr + TRACE_RECORD_CT_STATE, ct);

  // (4) Replies and related packets skip policy; undo the service translation of the original request.
  if (ct == CT_REPLY || ct == CT_RELATED) {
    setFlag(tr, TRACE_F_REPLY);
    const revNat = read16(st + CT_STATE_REV_NAT_INDEX);
    if (revNat != 0 && ct == CT_REPLY) {
      const rerr = lbRevNat(pkt, info, revNat);
      if (rerr < 0) return drop(tr, info, <u32>(-rerr), dir);
      if (tr != 0) write16(tr + TRACE_RECORD_REV_NAT_INDEX, revNat);
      setFlag(tr, TRACE_F_REV_NAT);
    }
    return finish(tr, info, CTX_ACT_OK, 0, dir, TRACE_TO_ENDPOINT);
  }

  // (5) Ingress policy for new and established flows.
  let verdict: u32 = CTX_ACT_OK;
  let proxyPort: u32 = 0;
  const v = policyCheck(tr, cfg, info, epId, srcId, POLICY_INGRESS);
  if (v < 0) return drop(tr, info, <u32>(-v), dir);
  if (v > 0) {
    proxyPort = <u32>v;
    verdict = CTX_ACT_REDIRECT;
  }
  if (ct == CT_NEW) {
    if (ctCreate(tuple, info, now, srcId, 0, 0, proxyPort) != 0) return drop(tr, info, DROP_CT_CREATE_FAILED, dir);
  }
  return finish(tr, info, verdict, 0, dir, verdict == CTX_ACT_REDIRECT ? TRACE_TO_PROXY : TRACE_TO_ENDPOINT);
}

/**
 * Traffic from outside the node (NodePort, LoadBalancer and external IPs; Cilium's nodeport_lb4).
 * Outcomes:
 *   1. CTX_ACT_DROP, DROP_NO_CONFIG / a parse drop reason.
 *   2. CTX_ACT_DROP, DROP_NO_SERVICE — a known frontend without active backends.
 *   3. CTX_ACT_OK — not a service frontend: passed to the stack untouched.
 *   4. CTX_ACT_OK — DNATed to a backend (the trace names it); policy is enforced where the backend's
 *      to-endpoint runs.
 */
export function fromNetwork(pkt: Pkt, now: u32): u32 {
  const tr = traceBegin();
  const dir = METRIC_DIR_SERVICE;
  const cfg = configGet();
  if (cfg == 0) return drop(tr, 0, DROP_NO_CONFIG, dir);
  const info = stackAlloc(PACKET_INFO_SIZE);
  const perr = parsePacket(pkt, info);
  if (tr != 0) write8(tr + TRACE_RECORD_FAMILY, read8(info + PACKET_INFO_FAMILY));
  if (perr != 0) return drop(tr, info, perr, dir);
  const family = read8(info + PACKET_INFO_FAMILY);
  recordDest(tr, info, true);
  if (tr != 0) write32(tr + TRACE_RECORD_SRC_IDENTITY, ipcacheIdentity(info + PACKET_INFO_SADDR, family, worldIdentity(cfg, family)));

  const svcKey = stackAlloc(SERVICE_KEY_SIZE);
  const svc = lbLookupService(info, svcKey);
  if (svc == 0) return finish(tr, info, CTX_ACT_OK, 0, dir, TRACE_FROM_NETWORK);
  const revNat = read16(svc + SERVICE_VALUE_REV_NAT_INDEX);
  if (tr != 0) write16(tr + TRACE_RECORD_REV_NAT_INDEX, revNat);
  const sel = lbServiceBackend(svcKey, svc, info, now);
  if (sel == 0) return drop(tr, info, DROP_NO_SERVICE, dir);
  const nerr = lbDnat(pkt, info, sel + LB_SELECTION_BACKEND);
  if (nerr < 0) return drop(tr, info, <u32>(-nerr), dir);
  if (tr != 0) write32(tr + TRACE_RECORD_BACKEND_ID, read32(sel + LB_SELECTION_BACKEND_ID));
  setFlag(tr, TRACE_F_DNAT);
  recordDest(tr, info, false);
  const dstId = ipcacheIdentity(info + PACKET_INFO_DADDR, family, worldIdentity(cfg, family));
  if (tr != 0) write32(tr + TRACE_RECORD_DST_IDENTITY, dstId);
  return finish(tr, info, CTX_ACT_OK, 0, dir, TRACE_FROM_NETWORK);
}
