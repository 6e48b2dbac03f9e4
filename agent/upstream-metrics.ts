/*
 * Cilium's and Hubble's metric names beside ours, so dashboards built for a Cilium node read a ciliate node
 * unchanged (docs/observability.md has the mapping table). Names, label names and label values follow:
 *   cilium/cilium pkg/metrics/metrics.go               cilium_* names and their label names
 *   cilium/cilium pkg/maps/metricsmap/metricsmap.go    reason = pkg/monitor/api drop text ("Policy denied"),
 *                                                      direction = INGRESS / EGRESS / SERVICE
 *   cilium/cilium pkg/hubble/metrics/flow/handler.go   hubble_flows_processed_total{protocol,type,subtype,verdict}
 *   cilium/cilium pkg/hubble/metrics/drop/handler.go   hubble_drop_total{reason,protocol}, reason = DropReason name
 *   cilium/cilium pkg/hubble/metrics/policy/handler.go hubble_policy_verdicts_total{direction,match,action}, lowercase
 *   cilium/cilium pkg/hubble/api/v1/types.go           FlowProtocol: the L7 name, else the L4 name
 * The datapath counters are not read here: metrics.ts walks the kernel's Metrics map once per scrape and
 * hands every row to datapathRow, which feeds ours and these.
 */
import { Counter, Gauge, Histogram, type Registry } from "prom-client";
import { EVENT_DROP, EVENT_L7, EVENT_POLICY_VERDICT, EVENT_TRACE, MATCH_TYPE_NAMES, OBS_POINT_NAMES, type FlowEvent } from "../host/flows.ts";
import { dropReasonText } from "../host/drop-reasons.gen.ts";

/** What the upstream gauges need from the agent; the Agent satisfies it, tests pass a plain object. */
export interface UpstreamSource {
  endpointList(): { pod: string }[];
  readonly desired: { cluster: { policies: unknown[] }; policy: { endpoints: Map<string, { enforced: { ingress: boolean; egress: boolean } }>; cidrIdentities: unknown[] }; podIdentity: Map<string, number> } | undefined;
}

/** TO_ENDPOINT → to-endpoint: Hubble's subtype is pkg/monitor/api TraceObservationPoints' short name. */
const TRACE_POINT_NAMES: Record<string, string> = Object.fromEntries(Object.entries(OBS_POINT_NAMES).map(([short, proto]) => [proto, short]));

/**
 * The L7 kind of an access-log event in Hubble's spelling, checked in Hubble's order (DNS, HTTP, Kafka);
 * undefined for a kind Hubble has no record for (ciliate's TLS server-name events).
 */
function l7Kind(f: FlowEvent): "DNS" | "HTTP" | "Kafka" | undefined {
  return f.l7?.dns ? "DNS" : f.l7?.http ? "HTTP" : f.l7?.kafka ? "Kafka" : undefined;
}

/** Hubble's FlowProtocol: the L7 protocol of an access-log event, else the L4 protocol. */
export function hubbleProtocol(f: FlowEvent): string {
  if (f.event_type.type === EVENT_L7) return l7Kind(f) ?? "Unknown L7";
  for (const p of ["TCP", "UDP", "ICMPv4", "ICMPv6", "SCTP"]) if (p in f.l4) return p;
  return "Unknown L4";
}

/** Labels of hubble_flows_processed_total for one flow (the flow handler's type and subtype names). */
export function flowsProcessedLabels(f: FlowEvent): { protocol: string; type: string; subtype: string; verdict: string } {
  const t = f.event_type.type;
  let type = "Unknown";
  let subtype = String(t);
  if (t === EVENT_L7) {
    type = "L7";
    subtype = l7Kind(f) ?? "";
  } else if (t === EVENT_DROP) {
    type = "Drop";
    subtype = "";
  } else if (t === EVENT_TRACE) {
    type = "Trace";
    subtype = TRACE_POINT_NAMES[f.trace_observation_point ?? ""] ?? "";
  } else if (t === EVENT_POLICY_VERDICT) {
    type = "PolicyVerdict";
    subtype = "";
  }
  return { protocol: hubbleProtocol(f), type, subtype, verdict: f.verdict };
}

/**
 * Labels of hubble_policy_verdicts_total, or undefined for flows Hubble does not count there: only
 * policy-verdict events (and L7 access logs, match "l7/<proto>"), never from the host identity (1).
 */
export function policyVerdictLabels(f: FlowEvent): { direction: string; match: string; action: string } | undefined {
  const direction = f.traffic_direction.toLowerCase();
  const action = f.verdict.toLowerCase();
  if (f.event_type.type === EVENT_L7) return { direction, match: `l7/${l7Kind(f)?.toLowerCase() ?? ""}`, action };
  if (f.event_type.type !== EVENT_POLICY_VERDICT || f.source.identity === 1) return undefined;
  return { direction, match: (MATCH_TYPE_NAMES[f.policy_match_type ?? 0] ?? "unknown").toLowerCase(), action };
}

export class UpstreamMetrics {
  private readonly ciliumDropCount: Counter;
  private readonly ciliumDropBytes: Counter;
  private readonly ciliumFwdCount: Counter;
  private readonly ciliumFwdBytes: Counter;
  private readonly ciliumRegen: Histogram;
  private readonly ciliumMapPressure: Gauge;
  private readonly hubbleFlows: Counter;
  private readonly hubbleDrops: Counter;
  private readonly hubbleVerdicts: Counter;

  constructor(registry: Registry, source: UpstreamSource) {
    const registers = [registry];
    this.ciliumDropCount = new Counter({ name: "cilium_drop_count_total", help: "Total dropped packets, tagged by drop reason and ingress/egress direction", labelNames: ["reason", "direction"], registers });
    this.ciliumDropBytes = new Counter({ name: "cilium_drop_bytes_total", help: "Total dropped bytes, tagged by drop reason and ingress/egress direction", labelNames: ["reason", "direction"], registers });
    this.ciliumFwdCount = new Counter({ name: "cilium_forward_count_total", help: "Total forwarded packets, tagged by ingress/egress direction", labelNames: ["direction"], registers });
    this.ciliumFwdBytes = new Counter({ name: "cilium_forward_bytes_total", help: "Total forwarded bytes, tagged by ingress/egress direction", labelNames: ["direction"], registers });
    this.ciliumMapPressure = new Gauge({ name: "cilium_bpf_map_pressure", help: "Fill percentage of map, tagged by map name", labelNames: ["map_name"], registers });
    // Cilium's scope/status labels: one reconcile is the whole regeneration here, so scope is always "total".
    this.ciliumRegen = new Histogram({ name: "cilium_policy_regeneration_time_stats_seconds", help: "Policy regeneration time stats labeled by the scope", labelNames: ["scope", "status"], buckets: [0.001, 0.005, 0.01, 0.05, 0.1, 0.5, 1, 5], registers });
    new Gauge({
      name: "cilium_policy",
      help: "Number of policies currently loaded",
      registers,
      collect() {
        this.set(source.desired?.cluster.policies.length ?? 0);
      },
    });
    new Gauge({
      name: "cilium_policy_endpoint_enforcement_status",
      help: "Number of endpoints labeled by their policy enforcement status",
      labelNames: ["enforcement"],
      registers,
      collect() {
        this.reset();
        const counts: Record<string, number> = { none: 0, ingress: 0, egress: 0, both: 0 };
        for (const e of source.endpointList()) {
          const enf = source.desired?.policy.endpoints.get(e.pod)?.enforced;
          counts[enf?.ingress && enf.egress ? "both" : enf?.ingress ? "ingress" : enf?.egress ? "egress" : "none"]!++;
        }
        for (const [enforcement, n] of Object.entries(counts)) this.set({ enforcement }, n);
      },
    });
    new Gauge({
      name: "cilium_endpoint",
      help: "Number of endpoints managed by this agent",
      registers,
      collect() {
        this.set(source.endpointList().length);
      },
    });
    // An endpoint is in the agent's list only once its interface and maps are in place, which is
    // Cilium's "ready"; the agent has no other endpoint states to report.
    new Gauge({
      name: "cilium_endpoint_state",
      help: "Count of all endpoints, tagged by different endpoint states",
      labelNames: ["endpoint_state"],
      registers,
      collect() {
        this.set({ endpoint_state: "ready" }, source.endpointList().length);
      },
    });
    // type values are Cilium's identity scopes: pod identities are cluster-wide, CIDR identities node-local.
    new Gauge({
      name: "cilium_identity",
      help: "Number of identities currently allocated",
      labelNames: ["type"],
      registers,
      collect() {
        const d = source.desired;
        this.set({ type: "cluster_local" }, d ? new Set(d.podIdentity.values()).size : 0);
        this.set({ type: "node_local" }, d ? d.policy.cidrIdentities.length : 0);
      },
    });
    this.hubbleFlows = new Counter({ name: "hubble_flows_processed_total", help: "Total number of flows processed", labelNames: ["protocol", "type", "subtype", "verdict"], registers });
    this.hubbleDrops = new Counter({ name: "hubble_drop_total", help: "Number of drops", labelNames: ["reason", "protocol"], registers });
    this.hubbleVerdicts = new Counter({ name: "hubble_policy_verdicts_total", help: "Total number of Cilium network policy verdicts", labelNames: ["direction", "match", "action"], registers });
  }

  /** Starts a scrape's datapath rows afresh (the kernel counters are totals, not increments). */
  resetDatapath(): void {
    this.ciliumDropCount.reset();
    this.ciliumDropBytes.reset();
    this.ciliumFwdCount.reset();
    this.ciliumFwdBytes.reset();
  }

  /** One row of the Metrics map: reason 0 is forwarded, any other reason a drop. */
  datapathRow(reason: number, direction: string, packets: number, bytes: number): void {
    if (reason === 0) {
      this.ciliumFwdCount.inc({ direction }, packets);
      this.ciliumFwdBytes.inc({ direction }, bytes);
    } else {
      this.ciliumDropCount.inc({ reason: dropReasonText(reason), direction }, packets);
      this.ciliumDropBytes.inc({ reason: dropReasonText(reason), direction }, bytes);
    }
  }

  /** Cilium reports pressure as a fraction too (0..1), despite the help text's "percentage". */
  mapPressure(mapName: string, fill: number): void {
    this.ciliumMapPressure.set({ map_name: mapName }, fill);
  }

  observeRegeneration(seconds: number, ok: boolean): void {
    this.ciliumRegen.observe({ scope: "total", status: ok ? "success" : "failure" }, seconds);
  }

  /** Counts one flow from the observer in the hubble_* metrics. */
  observeFlow(f: FlowEvent): void {
    this.hubbleFlows.inc(flowsProcessedLabels(f));
    if (f.verdict === "DROPPED") this.hubbleDrops.inc({ reason: f.drop_reason_desc ?? "DROP_REASON_UNKNOWN", protocol: hubbleProtocol(f) });
    const v = policyVerdictLabels(f);
    if (v) this.hubbleVerdicts.inc(v);
  }
}
