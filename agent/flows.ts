/*
 * Flow events on a node: the datapath writes a TraceRecord into the ciliate_events_v1 ring buffer for every
 * drop and every policy verdict of a new flow (CONFIG_F_EVENTS; every packet with CONFIG_F_EVENTS_ALL); the
 * agent polls it, decodes each record into a Hubble-shaped flow (sim/flows.ts FlowEvent, so `ciliate
 * observe` prints exactly what `ciliate simulate` prints), names the pods from the desired state, and keeps
 * the last N in a ring for `--last`, with subscribers for `--follow` (Hubble's observer: pkg/hubble/observer
 * keeps a ring buffer of flows the same way).
 */
import * as C from "../host/constants.gen.ts";
import type { TraceRecord } from "../host/codecs.gen.ts";
import { dropReasonHubble, dropReasonText } from "../host/drop-reasons.gen.ts";
import { EVENT_DROP, EVENT_L7, EVENT_POLICY_VERDICT, EVENT_TRACE, identityText, MATCH_TYPE_NAMES, tcpFlagNames, type FlowEndpoint, type FlowEvent, type Verdict } from "../sim/flows.ts";
import type { DesiredState } from "./desired.ts";
import type { L7FlowEvent } from "./proxy/types.ts";

const OBS: Record<number, string> = {
  [C.TRACE_TO_ENDPOINT]: "to-endpoint",
  [C.TRACE_TO_PROXY]: "to-proxy",
  [C.TRACE_FROM_ENDPOINT]: "from-endpoint",
  [C.TRACE_FROM_NETWORK]: "from-network",
  [C.TRACE_TO_NETWORK]: "to-network",
};

function addr(bytes: Uint8Array, family: number): string {
  if (family === C.FAMILY_IPV4) return `${bytes[0]}.${bytes[1]}.${bytes[2]}.${bytes[3]}`;
  const parts: string[] = [];
  for (let i = 0; i < 16; i += 2) parts.push(((bytes[i]! << 8) | bytes[i + 1]!).toString(16));
  return parts.join(":").replace(/(^|:)0(:0)+(:|$)/, "::");
}

/** Names for addresses and identities, from the agent's last desired state. */
export interface FlowNames {
  podByIp: Map<string, { namespace: string; name: string; labels: Record<string, string> }>;
  identityLabels: Map<number, string[]>;
  nodeName: string;
}

export function namesFrom(d: DesiredState | undefined, nodeName: string): FlowNames {
  const podByIp = new Map<string, { namespace: string; name: string; labels: Record<string, string> }>();
  const identityLabels = new Map<number, string[]>();
  if (d) {
    for (const p of d.cluster.pods) {
      if (p.hostNetwork) continue;
      podByIp.set(p.ip, { namespace: p.namespace, name: p.name, labels: p.labels });
      const id = d.podIdentity.get(p.key);
      if (id !== undefined && !identityLabels.has(id)) identityLabels.set(id, [...Object.entries(p.labels).map(([k, v]) => `k8s:${k}=${v}`), `k8s:io.kubernetes.pod.namespace=${p.namespace}`].sort());
    }
  }
  return { podByIp, identityLabels, nodeName };
}

/** A TraceRecord from the ring buffer as a Hubble flow. */
export function flowOf(t: TraceRecord, names: FlowNames, now = new Date()): FlowEvent {
  const family = t.family === C.FAMILY_IPV6 ? C.FAMILY_IPV6 : C.FAMILY_IPV4;
  const reply = (t.traceFlags & C.TRACE_F_REPLY) !== 0;
  const src = addr(t.saddr, family);
  // After DNAT the packet's destination is the backend; Hubble shows the translated address.
  const dst = addr(t.newDaddr, family);
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
    Summary: dropped ? `${flags ? `${flags} ` : ""}${dropReasonText(t.dropReason)}` : flags ? `TCP Flags: ${flags}` : proto === 17 ? "UDP" : `proto ${proto}`,
    event: dropped ? "drop" : event,
    src_port: t.sport,
    dst_port: t.newDport,
  };
}

export interface FlowFilter {
  fromPod?: string;
  toPod?: string;
  verdict?: string;
  port?: number;
}

function podRef(e: FlowEndpoint): string | undefined {
  return e.pod_name ? `${e.namespace}/${e.pod_name}` : undefined;
}

/** Hubble's filter semantics: --from-pod ns/name (or name in default), --verdict FORWARDED|DROPPED|…, --port either side. */
export function matches(f: FlowEvent, q: FlowFilter): boolean {
  const norm = (p: string) => (p.includes("/") ? p : `default/${p}`);
  if (q.fromPod && podRef(f.source) !== norm(q.fromPod)) return false;
  if (q.toPod && podRef(f.destination) !== norm(q.toPod)) return false;
  if (q.verdict && f.verdict !== q.verdict.toUpperCase()) return false;
  if (q.port !== undefined && f.src_port !== q.port && f.dst_port !== q.port) return false;
  return true;
}

export class FlowStore {
  private readonly ring: FlowEvent[] = [];
  private readonly subscribers = new Set<(f: FlowEvent) => void>();
  /** Flows seen since start, by type (for the metrics). */
  seen = 0;

  constructor(private readonly capacity = 4096) {}

  push(f: FlowEvent): void {
    this.seen++;
    this.ring.push(f);
    if (this.ring.length > this.capacity) this.ring.splice(0, this.ring.length - this.capacity);
    for (const s of this.subscribers) s(f);
  }

  last(n: number, q: FlowFilter = {}): FlowEvent[] {
    const out = this.ring.filter((f) => matches(f, q));
    return n > 0 ? out.slice(-n) : out;
  }

  subscribe(fn: (f: FlowEvent) => void): () => void {
    this.subscribers.add(fn);
    return () => this.subscribers.delete(fn);
  }
}

/**
 * An L7 flow from the node's proxy (agent/proxy) as Hubble shows it, in the shape the simulator prints for
 * its modelled proxy (sim/simulator.ts proxyRequest): Type L7, event http-request / http-response, the
 * proxy port, and the request's verdict. Names come from the agent's desired state, as for L3/L4 flows.
 */
export function l7FlowOf(e: L7FlowEvent, names: FlowNames, now = new Date()): FlowEvent {
  const reply = e.type === "RESPONSE";
  const [from, to] = reply ? [e.destination, e.source] : [e.source, e.destination];
  const ep = (p: { ip: string; identity: number }): FlowEndpoint => {
    const pod = names.podByIp.get(p.ip);
    const labels = names.identityLabels.get(p.identity) ?? (p.identity > 0 && p.identity < 256 ? [`reserved:${identityText(p.identity)}`] : []);
    return pod ? { identity: p.identity, namespace: pod.namespace, pod_name: pod.name, labels } : { identity: p.identity, labels, ip: p.ip };
  };
  const l7: Record<string, unknown> = { type: e.type, ...(e.latencyNs !== undefined ? { latency_ns: e.latencyNs } : {}) };
  for (const k of ["http", "kafka", "dns", "tls"] as const) if (e[k]) l7[k] = e[k];
  const what = e.http ? `${e.http.protocol} ${reply ? `${e.http.code ?? ""} ` : ""}${e.http.method} ${e.http.url}` : e.kafka ? `Kafka ${e.kafka.apiKey} ${e.kafka.topic}` : e.dns ? `DNS ${e.dns.query}` : e.tls ? `TLS ${e.tls.serverName}` : e.protocol;
  return {
    time: now.toISOString(),
    verdict: e.verdict,
    IP: { source: from.ip, destination: to.ip, ipVersion: from.ip.includes(":") ? "IPv6" : "IPv4" },
    l4: { TCP: { source_port: from.port, destination_port: to.port } },
    source: ep(from),
    destination: ep(to),
    Type: "L7",
    node_name: names.nodeName,
    event_type: { type: EVENT_L7 },
    traffic_direction: e.direction === "ingress" ? "INGRESS" : "EGRESS",
    is_reply: reply,
    l7: l7 as FlowEvent["l7"],
    proxy_port: e.proxyPort,
    Summary: `${what} (${e.reason})`,
    event: `${e.protocol}-${reply ? "response" : "request"}`,
    src_port: from.port,
    dst_port: to.port,
  };
}
