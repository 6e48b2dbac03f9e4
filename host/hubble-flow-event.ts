/*
 * A Hubble flow (flow.proto's Flow in proto3 JSON, as an Observer API sends it) read back into ciliate's
 * FlowEvent, so `ciliate observe --server` prints the compact line of host/flows.ts compactLine from what
 * any Observer API — an agent's, the relay's, or Cilium's own — sends. The TYPE column is derived from the
 * flow the way Hubble's printer derives it (cilium/hubble pkg/printer): the L7 record's protocol and type
 * for L7 flows (`http-request`, `dns-response`, `l7-request` for a record Hubble has no type for), the drop
 * reason's text for drops, `policy-verdict:<match> <direction>` for policy verdicts, and the observation
 * point for traces. What flow.proto cannot carry is absent: a tunnel's VNI, a TLS server name (both
 * outside `flow`, under the agent's `ciliate` key), and a service frontend address is shown by the
 * destination_service name Hubble carries.
 */
import { dropReasonText } from "./drop-reasons.gen.ts";
import { EVENT_DROP, EVENT_L7, EVENT_POLICY_VERDICT, EVENT_TRACE, MATCH_TYPE_NAMES, OBS_POINT_NAMES, type FlowEndpoint, type FlowEvent } from "./flows.ts";

/** flow.proto's Flow as proto3 JSON (only the fields the compact line reads). */
export interface HubbleFlowJson {
  time?: string;
  verdict?: string;
  drop_reason?: number;
  drop_reason_desc?: string;
  IP?: { source?: string; destination?: string; ipVersion?: string };
  l4?: Record<string, { source_port?: number; destination_port?: number } | undefined>;
  source?: HubbleEndpointJson;
  destination?: HubbleEndpointJson;
  Type?: string;
  node_name?: string;
  event_type?: { type?: number; sub_type?: number };
  source_service?: { name?: string; namespace?: string };
  destination_service?: { name?: string; namespace?: string };
  traffic_direction?: string;
  trace_observation_point?: string;
  policy_match_type?: number;
  is_reply?: boolean;
  l7?: { type?: string; http?: unknown; kafka?: unknown; dns?: unknown };
  tunnel?: { protocol?: string; IP?: { source?: string; destination?: string } };
  Summary?: string;
}

interface HubbleEndpointJson {
  identity?: number;
  namespace?: string;
  pod_name?: string;
  labels?: string[];
}

const OBS_POINT_TEXT = Object.fromEntries(Object.entries(OBS_POINT_NAMES).map(([text, name]) => [name, text]));

/** The TYPE column Hubble's printer shows for this flow. */
function typeColumn(f: HubbleFlowJson): string {
  const type = f.event_type?.type ?? 0;
  if (type === EVENT_L7 || f.l7) {
    const proto = f.l7?.http ? "http" : f.l7?.kafka ? "kafka" : f.l7?.dns ? "dns" : "l7";
    return `${proto}-${(f.l7?.type ?? "unknown").toLowerCase()}`;
  }
  if (type === EVENT_DROP) return dropReasonText(f.drop_reason ?? 0);
  if (type === EVENT_POLICY_VERDICT) return `policy-verdict:${MATCH_TYPE_NAMES[f.policy_match_type ?? 0] ?? "none"} ${f.traffic_direction ?? "TRAFFIC_DIRECTION_UNKNOWN"}`;
  if (type === EVENT_TRACE) return OBS_POINT_TEXT[f.trace_observation_point ?? ""] ?? "trace";
  return "unknown";
}

function endpoint(e: HubbleEndpointJson | undefined, ip: string, service: { name?: string; namespace?: string } | undefined): FlowEndpoint {
  const base: FlowEndpoint = { identity: e?.identity ?? 0, labels: e?.labels ?? [], ...(e?.namespace ? { namespace: e.namespace } : {}), ...(e?.pod_name ? { pod_name: e.pod_name } : {}), ip };
  // Hubble's printer names an address without a pod by the service it carries.
  return !e?.pod_name && service?.name ? { ...base, service: `${service.namespace ?? ""}/${service.name}` } : base;
}

/**
 * The FlowEvent whose compact line (host/flows.ts compactLine) is the one Hubble prints for `flow`;
 * `fallbackNode` and `fallbackTime` (the GetFlowsResponse's node_name and time) fill what the flow leaves
 * out.
 */
export function flowEventOfHubble(f: HubbleFlowJson, fallbackNode = "", fallbackTime = ""): FlowEvent {
  const ports = f.l4?.TCP ?? f.l4?.UDP ?? f.l4?.SCTP;
  const ip = { source: f.IP?.source ?? "", destination: f.IP?.destination ?? "", ipVersion: f.IP?.ipVersion === "IPv6" ? ("IPv6" as const) : ("IPv4" as const) };
  const t = f.tunnel;
  return {
    time: f.time ?? fallbackTime,
    verdict: (f.verdict ?? "VERDICT_UNKNOWN") as FlowEvent["verdict"],
    IP: ip,
    l4: (f.l4 ?? {}) as Record<string, unknown>,
    source: endpoint(f.source, ip.source, f.source_service),
    destination: endpoint(f.destination, ip.destination, f.destination_service),
    Type: f.Type === "L7" ? "L7" : "L3_L4",
    node_name: f.node_name ?? fallbackNode,
    event_type: { type: f.event_type?.type ?? 0 },
    traffic_direction: (f.traffic_direction ?? "TRAFFIC_DIRECTION_UNKNOWN") as FlowEvent["traffic_direction"],
    is_reply: f.is_reply === true,
    ...(t ? { tunnel: { protocol: t.protocol as "VXLAN" | "GENEVE", IP: { source: t.IP?.source ?? "", destination: t.IP?.destination ?? "", ipVersion: ip.ipVersion }, l4: { UDP: { source_port: 0, destination_port: 0 } } } } : {}),
    Summary: f.Summary ?? "",
    event: typeColumn(f),
    src_port: ports?.source_port ?? 0,
    dst_port: ports?.destination_port ?? 0,
  } as FlowEvent;
}
