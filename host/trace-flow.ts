/*
 * A datapath TraceRecord (from the events ring buffer or a test run) as a Hubble-shaped flow (host/flows.ts
 * FlowEvent), so `ciliate observe` on a node prints what `ciliate simulate` prints. The names of pods and
 * identities come from the caller (the agent's desired state); everything else from the record.
 * Hubble's parser does the same with a TraceNotify/DropNotify (pkg/hubble/parser/threefour).
 */
import type { TraceRecord } from "./codecs.gen.ts";
import * as C from "./constants.gen.ts";
import { dropReasonHubble, dropReasonText } from "./drop-reasons.gen.ts";
import { EVENT_DROP, EVENT_POLICY_VERDICT, EVENT_TRACE, identityText, MATCH_TYPE_NAMES, tcpFlagNames, type FlowEndpoint, type FlowEvent, type PolicyRef, type Verdict } from "./flows.ts";
import { formatAddr } from "./ip.ts";

const OBS: Record<number, string> = {
  [C.TRACE_TO_ENDPOINT]: "to-endpoint",
  [C.TRACE_TO_PROXY]: "to-proxy",
  [C.TRACE_FROM_ENDPOINT]: "from-endpoint",
  [C.TRACE_FROM_HOST]: "from-host",
  [C.TRACE_TO_OVERLAY]: "to-overlay",
  [C.TRACE_FROM_NETWORK]: "from-network",
  [C.TRACE_TO_NETWORK]: "to-network",
};

/** Names for addresses and identities, from the agent's last desired state. */
export interface FlowNames {
  podByIp: Map<string, { namespace: string; name: string; labels: Record<string, string> }>;
  identityLabels: Map<number, string[]>;
  nodeName: string;
  /** Services by frontend (`10.96.0.10:80`, `[fd00::10]:80`): a flow the node translated names its service. */
  serviceByFrontend?: Map<string, { namespace: string; name: string }>;
  /** The rules behind each Policy entry cookie: a policy verdict names the rule that decided it. */
  policyByCookie?: Map<number, PolicyRef[]>;
}

/** The key of a frontend in FlowNames.serviceByFrontend. */
export function serviceFrontendKey(ip: string, port: number): string {
  return ip.includes(":") ? `[${ip}]:${port}` : `${ip}:${port}`;
}

/** A TraceRecord from the ring buffer as a Hubble flow. */
export function flowOf(t: TraceRecord, names: FlowNames, now = new Date()): FlowEvent {
  const family = t.family === C.FAMILY_IPV6 ? C.FAMILY_IPV6 : C.FAMILY_IPV4;
  const reply = (t.traceFlags & C.TRACE_F_REPLY) !== 0;
  const v = family === C.FAMILY_IPV4 ? 4 : 6;
  const src = formatAddr(t.saddr, v);
  // After DNAT the packet's destination is the backend; Hubble shows the translated address.
  const dst = formatAddr(t.newDaddr, v);
  const ingress = t.hook === C.HOOK_TO_ENDPOINT || t.hook === C.HOOK_FROM_NETWORK;
  const dropped = t.verdict === C.CTX_ACT_DROP;
  const checked = (t.traceFlags & (ingress ? C.TRACE_F_INGRESS_CHECKED : C.TRACE_F_EGRESS_CHECKED)) !== 0;
  const policyVerdict = checked && t.ctState === C.CT_NEW;
  const labelsOf = (identity: number) => names.identityLabels.get(identity) ?? (identity > 0 && identity < 256 ? [`reserved:${identityText(identity)}`] : []);
  const ep = (ip: string, identity: number): FlowEndpoint => {
    const p = names.podByIp.get(ip);
    return p ? { identity, namespace: p.namespace, pod_name: p.name, labels: labelsOf(identity) } : { identity, labels: labelsOf(identity), ip };
  };
  const l4: Record<string, unknown> = {};
  const proto = t.nexthdr;
  if (proto === 6) l4.TCP = { source_port: t.sport, destination_port: t.newDport, flags: Object.fromEntries(tcpFlagNames(t.tcpFlags).map((f) => [f, true])) };
  else if (proto === 17) l4.UDP = { source_port: t.sport, destination_port: t.newDport };
  else if (proto === 132) l4.SCTP = { source_port: t.sport, destination_port: t.newDport };
  else if (proto === 1) l4.ICMPv4 = { type: t.icmpType };
  else if (proto === 58) l4.ICMPv6 = { type: t.icmpType };
  const verdict: Verdict = dropped ? "DROPPED" : t.verdict === C.CTX_ACT_REDIRECT ? "REDIRECTED" : (t.traceFlags & C.TRACE_F_AUDITED) !== 0 ? "AUDIT" : "FORWARDED";
  const type = dropped ? EVENT_DROP : policyVerdict ? EVENT_POLICY_VERDICT : EVENT_TRACE;
  const matchType = ingress ? t.ingressMatchType : t.egressMatchType;
  const direction = ingress ? "INGRESS" : "EGRESS";
  const event = dropped ? "policy-verdict:none" : policyVerdict ? `policy-verdict:${MATCH_TYPE_NAMES[matchType] ?? "none"} ${direction}` : (OBS[t.obsPoint] ?? "trace");
  const flags = "TCP" in l4 ? tcpFlagNames(t.tcpFlags).join(", ") : "";
  // The destination before translation (the VIP), when it is a service frontend: Hubble's destination_service.
  const service = reply ? undefined : names.serviceByFrontend?.get(serviceFrontendKey(formatAddr(t.origDaddr, v), t.origDport));
  // The rules behind the deciding entry's cookie (Hubble's *_allowed_by / *_denied_by of a policy verdict).
  const refs = policyVerdict || (dropped && checked) ? (names.policyByCookie?.get(ingress ? t.ingressCookie : t.egressCookie) ?? []) : [];
  const refsKey = `${ingress ? "ingress" : "egress"}_${dropped ? "denied" : "allowed"}_by` as const;
  return {
    time: now.toISOString(),
    verdict,
    ...(dropped ? { drop_reason: t.dropReason, drop_reason_desc: dropReasonHubble(t.dropReason) } : {}),
    IP: { source: src, destination: dst, ipVersion: family === C.FAMILY_IPV4 ? "IPv4" : "IPv6" },
    l4,
    source: ep(src, t.srcIdentity),
    destination: ep(dst, t.dstIdentity),
    Type: "L3_L4",
    node_name: names.nodeName,
    event_type: { type },
    traffic_direction: direction,
    trace_observation_point: (OBS[t.obsPoint] ?? "unknown").toUpperCase().replace(/-/g, "_"),
    ...(policyVerdict ? { policy_match_type: matchType } : {}),
    is_reply: reply,
    ...(service ? { destination_service: { name: service.name, namespace: service.namespace } } : {}),
    ...(refs.length ? { [refsKey]: refs } : {}),
    Summary: dropped ? `${flags ? `${flags} ` : ""}${dropReasonText(t.dropReason)}` : flags ? `TCP Flags: ${flags}` : proto === 17 ? "UDP" : `proto ${proto}`,
    event: dropped ? "drop" : event,
    src_port: t.sport,
    dst_port: t.newDport,
  };
}
