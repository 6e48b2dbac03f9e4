/*
 * Flow events as Hubble shows them (api/v1/flow/flow.proto field names; hubble/pkg/printer for the compact
 * line): one event per observation point a packet passes (from-endpoint, to-overlay, from-overlay,
 * to-endpoint, to-proxy, to-stack, from-network), a policy-verdict event for each policy decision on a new
 * connection, a drop event, and http-request / http-response and dns-request / dns-response events from
 * the L7 proxies.
 */

export type Verdict = "FORWARDED" | "DROPPED" | "ERROR" | "REDIRECTED" | "TRANSLATED" | "AUDIT";

export interface FlowEndpoint {
  ID?: number;
  identity: number;
  namespace?: string;
  labels: string[];
  pod_name?: string;
  /** Hubble's Endpoint.cluster_name (Cluster Mesh): the endpoint's cluster in a multi-cluster scenario. */
  cluster_name?: string;
  /** Not a Hubble field: the address text used when there is no pod name. */
  ip?: string;
  /** Not a Hubble field: the service (ns/name) whose frontend this address is, for the compact line. */
  service?: string;
}

export interface PolicyRef {
  kind: string;
  name: string;
  namespace: string;
  rule_index: number;
  element: string;
}

export interface FlowEvent {
  time: string;
  verdict: Verdict;
  drop_reason?: number;
  drop_reason_desc?: string;
  IP: { source: string; destination: string; ipVersion: "IPv4" | "IPv6" };
  l4: Record<string, unknown>;
  source: FlowEndpoint;
  destination: FlowEndpoint;
  Type: "L3_L4" | "L7";
  node_name: string;
  event_type: { type: number; sub_type?: number };
  traffic_direction: "INGRESS" | "EGRESS" | "TRAFFIC_DIRECTION_UNKNOWN";
  trace_observation_point?: string;
  policy_match_type?: number;
  is_reply: boolean;
  /** Hubble's Layer7 record: one of http, kafka, dns; `tls` (the ClientHello's server name) is ciliate's own. */
  l7?: {
    type: "REQUEST" | "RESPONSE";
    http?: { code?: number; method: string; url: string; protocol: string };
    kafka?: { error_code: number; api_version: number; api_key: string; correlation_id: number; topic: string };
    tls?: { server_name: string };
    /** flow.proto DNS: query, ips, ttl, rcode, qtypes, rrtypes. */
    dns?: { query: string; ips?: string[]; ttl?: number; rcode?: number; qtypes?: string[]; rrtypes?: string[] };
  };
  destination_service?: { name: string; namespace: string };
  /** flow.proto Tunnel: the outer header of an encapsulated hop; `vni` (not a Hubble field) is the VNI,
   * which carries the source's security identity (unknown in a flow read from an Observer API). */
  tunnel?: { protocol: "VXLAN" | "GENEVE"; IP: { source: string; destination: string; ipVersion: "IPv4" | "IPv6" }; l4: { UDP: { source_port: number; destination_port: number } }; vni?: number };
  proxy_port?: number;
  ingress_allowed_by?: PolicyRef[];
  egress_allowed_by?: PolicyRef[];
  ingress_denied_by?: PolicyRef[];
  egress_denied_by?: PolicyRef[];
  Summary: string;
  /** Not a Hubble field: which Traffic flow produced the event. */
  flow_name?: string;
  /** Not a Hubble field: the compact-line TYPE column (to-endpoint, policy-verdict:L3-L4 INGRESS, …). */
  event: string;
  src_port: number;
  dst_port: number;
}

/** Monitor message types (pkg/monitor/api/types.go). */
export const EVENT_DROP = 1;
export const EVENT_TRACE = 4;
export const EVENT_POLICY_VERDICT = 5;
export const EVENT_L7 = 129;

export const OBS_POINT_NAMES: Record<string, string> = {
  "to-endpoint": "TO_ENDPOINT",
  "to-proxy": "TO_PROXY",
  "to-host": "TO_HOST",
  "to-stack": "TO_STACK",
  "to-overlay": "TO_OVERLAY",
  "from-endpoint": "FROM_ENDPOINT",
  "from-overlay": "FROM_OVERLAY",
  "from-network": "FROM_NETWORK",
  "to-network": "TO_NETWORK",
};

export const MATCH_TYPE_NAMES: Record<number, string> = { 0: "none", 1: "L3-Only", 2: "L3-L4", 3: "L4-Only", 4: "all", 5: "L3-Proto", 6: "Proto-Only" };

const RESERVED_NAMES: Record<number, string> = {
  1: "host",
  2: "world",
  3: "unmanaged",
  4: "health",
  5: "init",
  6: "remote-node",
  7: "kube-apiserver",
  8: "ingress",
  9: "world-ipv4",
  10: "world-ipv6",
};

export function identityText(id: number): string {
  return RESERVED_NAMES[id] ?? `ID:${id}`;
}

export function tcpFlagNames(flags: number): string[] {
  const out: string[] = [];
  if (flags & 0x02) out.push("SYN");
  if (flags & 0x10) out.push("ACK");
  if (flags & 0x08) out.push("PSH");
  if (flags & 0x01) out.push("FIN");
  if (flags & 0x04) out.push("RST");
  return out;
}

function endpointText(e: FlowEndpoint, ip: string, port: number, withPort: boolean): string {
  const host = e.pod_name ? `${e.cluster_name ? `${e.cluster_name}/` : ""}${e.namespace}/${e.pod_name}` : e.service ? e.service : ip.includes(":") ? `[${ip}]` : ip;
  return withPort ? `${host}:${port}` : host;
}

/** The compact line `hubble observe` prints. */
export function compactLine(e: FlowEvent): string {
  const hasPorts = "TCP" in e.l4 || "UDP" in e.l4 || "SCTP" in e.l4;
  const src = `${endpointText(e.source, e.IP.source, e.src_port, hasPorts)} (${identityText(e.source.identity)})`;
  const dst = `${endpointText(e.destination, e.IP.destination, e.dst_port, hasPorts)} (${identityText(e.destination.identity)})`;
  const arrow = e.is_reply ? `${dst} <- ${src}` : `${src} -> ${dst}`;
  let verdict: string = e.verdict;
  if (e.event_type.type === EVENT_POLICY_VERDICT) verdict = e.verdict === "DROPPED" ? "DENIED" : e.verdict === "AUDIT" ? "AUDITED" : "ALLOWED";
  const d = new Date(e.time);
  const month = d.toLocaleString("en-US", { month: "short", timeZone: "UTC" });
  const ts = `${month} ${String(d.getUTCDate()).padStart(2, " ")} ${d.toISOString().slice(11, 23)}`;
  const t = e.tunnel;
  const tunnel = t ? ` [${t.protocol} ${t.IP.source} -> ${t.IP.destination}${t.vni !== undefined ? ` VNI ${t.vni}` : ""}]` : "";
  return `${ts} [${e.node_name}]: ${arrow} ${e.event}${tunnel} ${verdict} (${e.Summary})`;
}

/** Cilium's policy labels (pkg/k8s/apis/cilium.io/const.go) naming the object a policy reference comes from. */
function hubblePolicy(p: PolicyRef): Record<string, unknown> {
  const labels = [`k8s:io.cilium.k8s.policy.derived-from=${p.kind}`, ...(p.name ? [`k8s:io.cilium.k8s.policy.name=${p.name}`] : []), ...(p.namespace ? [`k8s:io.cilium.k8s.policy.namespace=${p.namespace}`] : [])];
  return { ...(p.name ? { name: p.name } : {}), ...(p.namespace ? { namespace: p.namespace } : {}), labels, kind: p.kind };
}

/** Hubble's Layer7 record; a TLS ClientHello has no Hubble record, so it is left out (the Summary names the server). */
function hubbleL7(l7: NonNullable<FlowEvent["l7"]>): Record<string, unknown> {
  const out: Record<string, unknown> = { type: l7.type };
  const latency = (l7 as { latency_ns?: number }).latency_ns;
  // proto3 JSON writes a uint64 as a decimal string.
  if (latency) out.latency_ns = String(latency);
  if (l7.http) out.http = l7.http;
  if (l7.dns) out.dns = l7.dns;
  if (l7.kafka) out.kafka = l7.kafka;
  return out;
}

/** Names of flow.proto enum values numbered 0: proto3 JSON leaves them out like any other default. */
const ZERO_ENUMS = new Set(["TRAFFIC_DIRECTION_UNKNOWN", "UNKNOWN_POINT", "VERDICT_UNKNOWN", "DROP_REASON_UNKNOWN", "UNKNOWN_TYPE", "IP_NOT_USED", "UNKNOWN_L7_TYPE"]);

/** proto3's JSON form leaves out fields holding their default (0, "", false, empty list, enum value 0), at every depth. */
function withoutDefaults(o: Record<string, unknown>, keep: readonly string[] = []): Record<string, unknown> {
  const out: Record<string, unknown> = {};
  for (const [k, v] of Object.entries(o)) {
    if (keep.includes(k)) out[k] = v;
    else if (v === undefined || v === 0 || v === "" || v === false || (Array.isArray(v) && !v.length) || (typeof v === "string" && ZERO_ENUMS.has(v))) continue;
    else if (Array.isArray(v)) out[k] = v.map((x) => (x && typeof x === "object" ? withoutDefaults(x as Record<string, unknown>) : x));
    else if (v && typeof v === "object") out[k] = withoutDefaults(v as Record<string, unknown>);
    else out[k] = v;
  }
  return out;
}

/**
 * The flow as Hubble's flow.proto `Flow` message in proto3 JSON (field names as in the .proto, enum values
 * by name), the object validated against host/proto/flow/flow.proto. ciliate's own helper fields (the
 * compact-line columns, the Traffic document's name, an endpoint's address text and service) are left out;
 * policy references keep Hubble's Policy fields (name, namespace, kind, labels) — ciliate's rule index and
 * element are shown by `ciliate trace`, not in the flow.
 */
export function hubbleFlow(e: FlowEvent): Record<string, unknown> {
  const { event: _e, src_port: _s, dst_port: _d, flow_name: _n, l7, source, destination, ingress_allowed_by, egress_allowed_by, ingress_denied_by, egress_denied_by, event_type, tunnel, ...rest } = e;
  const endpoint = ({ ip: _ip, service: _svc, ...ep }: FlowEndpoint) => ep;
  const policies = (refs: PolicyRef[] | undefined) => refs?.map(hubblePolicy);
  return withoutDefaults(
    {
      ...rest,
      source: endpoint(source),
      destination: endpoint(destination),
      event_type,
      // flow.proto Tunnel has no VNI: the carried identity is shown under ciliate's own key.
      ...(tunnel ? { tunnel: { protocol: tunnel.protocol, IP: tunnel.IP, l4: tunnel.l4 } } : {}),
      ...(l7 ? { l7: hubbleL7(l7) } : {}),
      ingress_allowed_by: policies(ingress_allowed_by),
      egress_allowed_by: policies(egress_allowed_by),
      ingress_denied_by: policies(ingress_denied_by),
      egress_denied_by: policies(egress_denied_by),
    },
    // is_reply is a BoolValue: Hubble sets it, false included, so "not a reply" differs from "unknown".
    ["is_reply"],
  );
}

/**
 * What ciliate knows of a flow beyond Hubble's Flow message, kept apart from it under the line's `ciliate`
 * key: the Traffic document that produced it, a TLS ClientHello's server name (Hubble has no TLS record),
 * the VNI of an encapsulated hop (the sender's identity; flow.proto's Tunnel has no field for it), and the
 * policy references with ciliate's rule index and element (which rule of the object, which
 * ingress/egress entry). Undefined when there is nothing to add.
 */
export function ciliateExtras(e: FlowEvent): Record<string, unknown> | undefined {
  const out: Record<string, unknown> = {};
  if (e.flow_name) out.flow_name = e.flow_name;
  if (e.l7?.tls) out.tls = e.l7.tls;
  if (e.tunnel?.vni !== undefined) out.tunnel_vni = e.tunnel.vni;
  for (const k of ["ingress_allowed_by", "egress_allowed_by", "ingress_denied_by", "egress_denied_by"] as const) if (e[k]?.length) out[k] = e[k];
  return Object.keys(out).length ? out : undefined;
}

/**
 * One JSON line as `hubble observe -o json` prints a GetFlowsResponse — {flow, node_name, time}, valid
 * against observer.proto — plus ciliate's own `ciliate` key when there is something to add.
 */
export function jsonLine(e: FlowEvent): string {
  const extras = ciliateExtras(e);
  return JSON.stringify({ flow: hubbleFlow(e), node_name: e.node_name, time: e.time, ...(extras ? { ciliate: extras } : {}) });
}
