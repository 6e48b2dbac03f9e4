/* agent/metrics.ts + upstream-metrics.ts: Cilium's and Hubble's metric names, labels and values beside ours, from a fake agent (no root). */
import { describe, expect, it } from "vitest";
import type { Agent } from "../../agent/agent.ts";
import { AgentMetrics } from "../../agent/metrics.ts";
import { TraceRecordCodec, type TraceRecord } from "../../host/codecs.gen.ts";
import * as C from "../../host/constants.gen.ts";
import { flowOf, type FlowNames } from "../../host/trace-flow.ts";
import type { FlowEvent } from "../../host/flows.ts";
import { flowsProcessedLabels, hubbleProtocol, policyVerdictLabels } from "../../agent/upstream-metrics.ts";

const a16 = (ip: string) => {
  const b = new Uint8Array(16);
  ip.split(".").forEach((x, i) => (b[i] = Number(x)));
  return b;
};
const names: FlowNames = { podByIp: new Map(), identityLabels: new Map(), nodeName: "node-1" };
const flow = (over: Partial<TraceRecord>): FlowEvent =>
  flowOf({ ...TraceRecordCodec.zero(), family: C.FAMILY_IPV4, nexthdr: 6, saddr: a16("10.244.1.2"), newDaddr: a16("10.244.1.3"), origDaddr: a16("10.244.1.3"), sport: 40000, newDport: 8080, origDport: 8080, srcIdentity: 300, dstIdentity: 301, tcpFlags: 0x02, ...over }, names);

/** The Metrics map rows: (reason, dir) → packets/bytes; map fill levels by bpf name. */
function fakeAgent(rows: [number, number, number, number][], walks: { n: number }) {
  const enforced = (ingress: boolean, egress: boolean) => ({ enforced: { ingress, egress } });
  return {
    obj: {
      typedMap: () => ({
        *entries() {
          walks.n++;
          for (const [reason, dir, packets, bytes] of rows) yield [{ reason, dir }, { packets: BigInt(packets), bytes: BigInt(bytes) }];
        },
      }),
      map: (name: string) => {
        if (name !== "ciliate_ct_v1" && !name.includes("ipcache")) throw new Error("no such map");
        return { count: () => 25, info: { maxEntries: 100 } };
      },
    },
    endpointList: () => [{ pod: "default/a" }, { pod: "default/b" }, { pod: "default/c" }],
    desired: {
      cluster: { policies: [{}, {}] },
      policy: { endpoints: new Map([["default/a", enforced(true, true)], ["default/b", enforced(true, false)], ["default/c", enforced(false, false)]]), cidrIdentities: [{}] },
      podIdentity: new Map([["default/a", 300], ["default/b", 300], ["default/c", 301]]),
    },
  } as unknown as Agent;
}

const value = (text: string, series: string) => {
  const line = text.split("\n").find((l) => l.startsWith(`${series} `));
  return line === undefined ? undefined : Number(line.slice(series.length + 1));
};

describe("Cilium's metric names from one walk of the Metrics map", () => {
  it("serves cilium_drop/forward counters with Cilium's reason text and direction, ours unchanged", async () => {
    const walks = { n: 0 };
    const m = new AgentMetrics(fakeAgent([[0, C.METRIC_DIR_INGRESS, 10, 1000], [0, C.METRIC_DIR_EGRESS, 4, 400], [133, C.METRIC_DIR_INGRESS, 3, 180]], walks));
    const t = await m.text();
    expect(walks.n).toBe(1);
    expect(value(t, 'cilium_drop_count_total{reason="Policy denied",direction="INGRESS"}')).toBe(3);
    expect(value(t, 'cilium_drop_bytes_total{reason="Policy denied",direction="INGRESS"}')).toBe(180);
    expect(value(t, 'cilium_forward_count_total{direction="INGRESS"}')).toBe(10);
    expect(value(t, 'cilium_forward_bytes_total{direction="EGRESS"}')).toBe(400);
    expect(value(t, 'ciliate_drop_count_total{reason="POLICY_DENIED",direction="INGRESS"}')).toBe(3);
    // a second scrape reports the kernel's totals again, not their sum
    const t2 = await m.text();
    expect(walks.n).toBe(2);
    expect(value(t2, 'cilium_forward_count_total{direction="INGRESS"}')).toBe(10);
  });

  it("counts failed policy operations the reconcile closed (fence, quarantine, fail_open)", async () => {
    const m = new AgentMetrics(fakeAgent([], { n: 0 }));
    const applied = { added: 0, updated: 0, deleted: 0, failed: [{}, {}], fenced: 2, quarantined: [7], released: [], failOpen: [] };
    m.observeReconcile({ ok: false, reason: "test", durationMs: 3, applied } as never);
    m.observeReconcile({ ok: false, reason: "retry", durationMs: 3, applied: { ...applied, fenced: 1, quarantined: [], failOpen: [{}] } } as never);
    const t = await m.text();
    expect(value(t, 'ciliate_policy_fail_closed_total{action="fence"}')).toBe(3);
    expect(value(t, 'ciliate_policy_fail_closed_total{action="quarantine"}')).toBe(1);
    expect(value(t, 'ciliate_policy_fail_closed_total{action="fail_open"}')).toBe(1);
    expect(value(t, 'ciliate_reconcile_total{outcome="map_errors"}')).toBe(2);
  });

  it("serves the policy, endpoint, identity and map-pressure gauges and the regeneration histogram", async () => {
    const m = new AgentMetrics(fakeAgent([], { n: 0 }));
    m.observeReconcile({ ok: true, reason: "test", durationMs: 3 } as never);
    const t = await m.text();
    expect(value(t, "cilium_policy")).toBe(2);
    expect(value(t, 'cilium_policy_endpoint_enforcement_status{enforcement="both"}')).toBe(1);
    expect(value(t, 'cilium_policy_endpoint_enforcement_status{enforcement="ingress"}')).toBe(1);
    expect(value(t, 'cilium_policy_endpoint_enforcement_status{enforcement="egress"}')).toBe(0);
    expect(value(t, 'cilium_policy_endpoint_enforcement_status{enforcement="none"}')).toBe(1);
    expect(value(t, "cilium_endpoint")).toBe(3);
    expect(value(t, 'cilium_endpoint_state{endpoint_state="ready"}')).toBe(3);
    expect(value(t, 'cilium_identity{type="cluster_local"}')).toBe(2);
    expect(value(t, 'cilium_identity{type="node_local"}')).toBe(1);
    expect(value(t, 'cilium_bpf_map_pressure{map_name="ciliate_ct_v1"}')).toBe(0.25);
    expect(value(t, 'ciliate_bpf_map_pressure{map_name="ciliate_ct_v1"}')).toBe(0.25);
    expect(value(t, 'cilium_policy_regeneration_time_stats_seconds_count{scope="total",status="success"}')).toBe(1);
    expect(value(t, 'cilium_policy_regeneration_time_stats_seconds_bucket{le="0.005",scope="total",status="success"}')).toBe(1);
    expect(value(t, 'cilium_policy_regeneration_time_stats_seconds_bucket{le="0.001",scope="total",status="success"}')).toBe(0);
  });
});

describe("Hubble's flow metrics", () => {
  it("counts flows, drops and policy verdicts with Hubble's label values", async () => {
    const m = new AgentMetrics(fakeAgent([], { n: 0 }));
    const drop = flow({ verdict: C.CTX_ACT_DROP, dropReason: 133, hook: C.HOOK_TO_ENDPOINT, traceFlags: C.TRACE_F_INGRESS_CHECKED, obsPoint: C.TRACE_TO_ENDPOINT });
    const verdict = flow({ verdict: C.CTX_ACT_OK, hook: C.HOOK_TO_ENDPOINT, ctState: C.CT_NEW, traceFlags: C.TRACE_F_INGRESS_CHECKED, ingressMatchType: 2, obsPoint: C.TRACE_TO_ENDPOINT });
    const fromHost = flow({ verdict: C.CTX_ACT_OK, hook: C.HOOK_TO_ENDPOINT, ctState: C.CT_NEW, traceFlags: C.TRACE_F_INGRESS_CHECKED, ingressMatchType: 2, obsPoint: C.TRACE_TO_ENDPOINT, srcIdentity: 1 });
    expect(verdict.event_type.type).toBe(5);
    for (const f of [drop, drop, verdict, fromHost]) m.upstream.observeFlow(f);
    const t = await m.text();
    expect(value(t, 'hubble_flows_processed_total{protocol="TCP",type="Drop",subtype="",verdict="DROPPED"}')).toBe(2);
    expect(value(t, 'hubble_flows_processed_total{protocol="TCP",type="PolicyVerdict",subtype="",verdict="FORWARDED"}')).toBe(2);
    expect(value(t, 'hubble_drop_total{reason="POLICY_DENIED",protocol="TCP"}')).toBe(2);
    expect(value(t, 'hubble_policy_verdicts_total{direction="ingress",match="l3-l4",action="forwarded"}')).toBe(1);
    expect(t).not.toMatch(/hubble_policy_verdicts_total\{[^}]*action="dropped"/);
  });
});

describe("Hubble's label values for traces and L7 flows", () => {
  it("names a trace by its observation point and the L4 protocol", () => {
    const trace = flow({ nexthdr: 17, tcpFlags: 0, newDport: 53, origDport: 53, hook: C.HOOK_FROM_ENDPOINT, obsPoint: C.TRACE_FROM_ENDPOINT });
    expect(trace.event_type.type).toBe(4);
    expect(flowsProcessedLabels(trace)).toEqual({ protocol: "UDP", type: "Trace", subtype: "from-endpoint", verdict: "FORWARDED" });
    expect(policyVerdictLabels(trace)).toBeUndefined();
  });

  it("names an L7 access log by its protocol, and its verdict match as l7/<proto>", () => {
    const base = flow({ verdict: C.CTX_ACT_OK, hook: C.HOOK_TO_ENDPOINT, obsPoint: C.TRACE_TO_ENDPOINT, traceFlags: C.TRACE_F_INGRESS_CHECKED });
    const http: FlowEvent = { ...base, Type: "L7", event_type: { type: 129 }, verdict: "DROPPED", l7: { type: "REQUEST", http: { method: "GET", url: "/admin", protocol: "HTTP/1.1" } } };
    const kafka: FlowEvent = { ...base, Type: "L7", event_type: { type: 129 }, l7: { type: "REQUEST", kafka: { error_code: 0, api_version: 1, api_key: "produce", correlation_id: 1, topic: "t" } } };
    const dns: FlowEvent = { ...base, Type: "L7", event_type: { type: 129 }, traffic_direction: "EGRESS", l7: { type: "REQUEST", dns: { query: "a.example.", rcode: 5 } }, verdict: "DROPPED" };
    const tls: FlowEvent = { ...base, Type: "L7", event_type: { type: 129 }, l7: { type: "REQUEST", tls: { server_name: "a.example" } } };
    expect(hubbleProtocol(http)).toBe("HTTP");
    expect(hubbleProtocol(kafka)).toBe("Kafka");
    expect(hubbleProtocol(dns)).toBe("DNS");
    // Hubble has no TLS record: its flow handler names such an access log "Unknown L7" with no subtype.
    expect(hubbleProtocol(tls)).toBe("Unknown L7");
    expect(flowsProcessedLabels(http)).toEqual({ protocol: "HTTP", type: "L7", subtype: "HTTP", verdict: "DROPPED" });
    expect(flowsProcessedLabels(kafka)).toEqual({ protocol: "Kafka", type: "L7", subtype: "Kafka", verdict: "FORWARDED" });
    expect(flowsProcessedLabels(dns)).toEqual({ protocol: "DNS", type: "L7", subtype: "DNS", verdict: "DROPPED" });
    expect(flowsProcessedLabels(tls)).toEqual({ protocol: "Unknown L7", type: "L7", subtype: "", verdict: "FORWARDED" });
    expect(policyVerdictLabels(dns)).toEqual({ direction: "egress", match: "l7/dns", action: "dropped" });
    expect(policyVerdictLabels(http)).toEqual({ direction: "ingress", match: "l7/http", action: "dropped" });
    expect(policyVerdictLabels(kafka)).toEqual({ direction: "ingress", match: "l7/kafka", action: "forwarded" });
  });
});
