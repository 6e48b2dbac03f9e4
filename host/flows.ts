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
    kafka?: { error_code: number; api_version: number; api_key: string; correlation_id: number; topic: { topic: string } };
    tls?: { server_name: string };
    /** flow.proto DNS: query, ips, ttl, rcode, qtypes, rrtypes. */
    dns?: { query: string; ips?: string[]; ttl?: number; rcode?: number; qtypes?: string[]; rrtypes?: string[] };
  };
  destination_service?: { name: string; namespace: string };
  /** flow.proto Tunnel: the outer header of an encapsulated hop; `vni` (not a Hubble field) is the VNI,
   * which carries the source's security identity. */
  tunnel?: { protocol: "VXLAN" | "GENEVE"; IP: { source: string; destination: string; ipVersion: "IPv4" | "IPv6" }; l4: { UDP: { source_port: number; destination_port: number } }; vni: number };
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
  const host = e.pod_name ? `${e.namespace}/${e.pod_name}` : e.service ? e.service : ip.includes(":") ? `[${ip}]` : ip;
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
  const tunnel = t ? ` [${t.protocol} ${t.IP.source} -> ${t.IP.destination} VNI ${t.vni}]` : "";
  return `${ts} [${e.node_name}]: ${arrow} ${e.event}${tunnel} ${verdict} (${e.Summary})`;
}

/** One JSON line with Hubble's field names (the non-Hubble helper fields removed). */
export function jsonLine(e: FlowEvent): string {
  const { event: _event, src_port: _s, dst_port: _d, ...rest } = e;
  const clean = ({ ip: _ip, service: _svc, ...ep }: FlowEndpoint) => ep;
  return JSON.stringify({ flow: { ...rest, source: clean(e.source), destination: clean(e.destination) } });
}
