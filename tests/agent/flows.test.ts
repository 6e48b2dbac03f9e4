/* agent/flows.ts: ring-buffer records as Hubble flows, the observe filters, the flow ring. */
import { describe, expect, it } from "vitest";
import * as C from "../../host/constants.gen.ts";
import { flowOf } from "../../host/trace-flow.ts";
import { a16, flowNames, traceRecord } from "../helpers/flow-fixtures.ts";
import { FlowStore, l7FlowOf, matches, namesFrom } from "../../agent/flows.ts";
import type { DesiredState } from "../../agent/desired.ts";
import type { TraceRecord } from "../../host/codecs.gen.ts";
import type { L7FlowEvent } from "../../agent/proxy/types.ts";
import { compactLine, jsonLine } from "../../host/flows.ts";

const names = flowNames;
const record = traceRecord;

describe("flowOf", () => {
  it("turns a policy drop at to-endpoint into a DROPPED ingress flow with Hubble's names", () => {
    const f = flowOf(record({ verdict: C.CTX_ACT_DROP, dropReason: 133, hook: C.HOOK_TO_ENDPOINT, traceFlags: C.TRACE_F_INGRESS_CHECKED, obsPoint: C.TRACE_TO_ENDPOINT }), names);
    expect(f).toMatchObject({ verdict: "DROPPED", drop_reason: 133, drop_reason_desc: "POLICY_DENIED", traffic_direction: "INGRESS", source: { pod_name: "client", labels: ["k8s:app=client"] }, destination: { pod_name: "server" }, l4: { TCP: { source_port: 40000, destination_port: 8080 } } });
    expect(JSON.parse(jsonLine(f)).flow).toHaveProperty("drop_reason_desc", "POLICY_DENIED");
  });

  it("turns an allowed new flow into a policy verdict event with its match type", () => {
    const f = flowOf(record({ verdict: C.CTX_ACT_OK, hook: C.HOOK_TO_ENDPOINT, ctState: C.CT_NEW, traceFlags: C.TRACE_F_INGRESS_CHECKED, ingressMatchType: 2, obsPoint: C.TRACE_TO_ENDPOINT }), names);
    expect(f.event_type.type).toBe(5);
    expect(compactLine(f)).toMatch(/default\/client:40000 \(ID:300\) -> default\/server:8080 \(ID:301\) policy-verdict:L3-L4 INGRESS ALLOWED/);
  });

  it("names the service a translated flow was sent to (destination_service), from the desired state's frontends", () => {
    const desired = { cluster: { pods: [], services: [{ namespace: "default", name: "web", clusterIP: "10.96.0.10", externalIPs: ["192.0.2.10"], loadBalancerIPs: [], ports: [{ port: 80 }] }] }, podIdentity: new Map() } as unknown as DesiredState;
    const withServices = { ...names, serviceByFrontend: namesFrom(desired, "node-1").serviceByFrontend };
    const viaVip = (over: Partial<TraceRecord>) => flowOf(record({ hook: C.HOOK_FROM_ENDPOINT, obsPoint: C.TRACE_FROM_ENDPOINT, origDaddr: a16("10.96.0.10"), origDport: 80, ...over }), withServices);
    expect(viaVip({}).destination_service).toEqual({ name: "web", namespace: "default" });
    expect(JSON.parse(jsonLine(viaVip({}))).flow.destination_service).toEqual({ name: "web", namespace: "default" });
    expect(viaVip({ origDaddr: a16("192.0.2.10") }).destination_service).toEqual({ name: "web", namespace: "default" });
    // Another port of the VIP, an untranslated flow, and a reply name no service.
    expect(viaVip({ origDport: 81 }).destination_service).toBeUndefined();
    expect(viaVip({ origDaddr: a16("10.244.1.3"), origDport: 8080 }).destination_service).toBeUndefined();
    expect(viaVip({ traceFlags: C.TRACE_F_REPLY }).destination_service).toBeUndefined();
  });

  it("names the rules behind the deciding entry's cookie (ingress_allowed_by, egress_denied_by), from the desired state", () => {
    const rule1 = { kind: "CiliumNetworkPolicy", namespace: "default", name: "rule1", ruleIndex: 0, element: "ingress[0]", peer: "" };
    const deny = { kind: "CiliumNetworkPolicy", namespace: "default", name: "lockdown", ruleIndex: 1, element: "egressDeny[0]", peer: "" };
    const desired = { cluster: { pods: [], services: [] }, podIdentity: new Map(), provenanceByCookie: new Map([[7, [rule1]], [9, [deny]]]) } as unknown as DesiredState;
    const withRules = { ...names, policyByCookie: namesFrom(desired, "node-1").policyByCookie };
    const allowed = flowOf(record({ verdict: C.CTX_ACT_OK, hook: C.HOOK_TO_ENDPOINT, ctState: C.CT_NEW, traceFlags: C.TRACE_F_INGRESS_CHECKED, ingressMatchType: 2, ingressCookie: 7, obsPoint: C.TRACE_TO_ENDPOINT }), withRules);
    expect(allowed.ingress_allowed_by).toEqual([{ kind: "CiliumNetworkPolicy", namespace: "default", name: "rule1", rule_index: 0, element: "ingress[0]" }]);
    expect(JSON.parse(jsonLine(allowed)).flow.ingress_allowed_by).toEqual([{ kind: "CiliumNetworkPolicy", namespace: "default", name: "rule1", labels: ["k8s:io.cilium.k8s.policy.derived-from=CiliumNetworkPolicy", "k8s:io.cilium.k8s.policy.name=rule1", "k8s:io.cilium.k8s.policy.namespace=default"] }]);
    const denied = flowOf(record({ verdict: C.CTX_ACT_DROP, dropReason: 181, hook: C.HOOK_FROM_ENDPOINT, traceFlags: C.TRACE_F_EGRESS_CHECKED, egressCookie: 9, obsPoint: C.TRACE_FROM_ENDPOINT }), withRules);
    expect(denied.egress_denied_by?.map((r) => r.name)).toEqual(["lockdown"]);
    // No cookie (default deny), an unknown cookie, and a trace of an established flow name no rule.
    expect(flowOf(record({ verdict: C.CTX_ACT_DROP, dropReason: 133, hook: C.HOOK_TO_ENDPOINT, traceFlags: C.TRACE_F_INGRESS_CHECKED, obsPoint: C.TRACE_TO_ENDPOINT }), withRules).ingress_denied_by).toBeUndefined();
    expect(flowOf(record({ verdict: C.CTX_ACT_OK, hook: C.HOOK_TO_ENDPOINT, ctState: C.CT_NEW, traceFlags: C.TRACE_F_INGRESS_CHECKED, ingressCookie: 8, obsPoint: C.TRACE_TO_ENDPOINT }), withRules).ingress_allowed_by).toBeUndefined();
    expect(flowOf(record({ verdict: C.CTX_ACT_OK, hook: C.HOOK_TO_ENDPOINT, ctState: C.CT_ESTABLISHED, ingressCookie: 7, obsPoint: C.TRACE_TO_ENDPOINT }), withRules).ingress_allowed_by).toBeUndefined();
  });

  it("names reserved identities of unknown addresses", () => {
    const f = flowOf(record({ saddr: a16("203.0.113.9"), srcIdentity: 2, hook: C.HOOK_FROM_NETWORK, obsPoint: C.TRACE_FROM_NETWORK }), names);
    expect(f.source).toMatchObject({ identity: 2, labels: ["reserved:world"], ip: "203.0.113.9" });
  });
});

describe("filters and the flow ring", () => {
  const drop = flowOf(record({ verdict: C.CTX_ACT_DROP, dropReason: 133, hook: C.HOOK_TO_ENDPOINT }), names);
  const ok = flowOf(record({ hook: C.HOOK_FROM_ENDPOINT, sport: 41000, newDport: 53, nexthdr: 17, tcpFlags: 0 }), names);

  it("matches --from-pod/--to-pod (name or ns/name), --verdict, --port", () => {
    expect(matches(drop, { fromPod: "client", toPod: "default/server", verdict: "dropped", port: 8080 })).toBe(true);
    expect(matches(drop, { fromPod: "server" })).toBe(false);
    expect(matches(ok, { verdict: "DROPPED" })).toBe(false);
    expect(matches(ok, { port: 41000 })).toBe(true);
    expect(matches(ok, { port: 8080 })).toBe(false);
  });

  it("keeps the last N flows and feeds followers", () => {
    const store = new FlowStore(3);
    const seen: string[] = [];
    const stop = store.subscribe((f) => seen.push(f.verdict));
    for (let i = 0; i < 5; i++) store.push(i % 2 ? drop : ok);
    stop();
    store.push(drop);
    expect(seen).toHaveLength(5);
    expect(store.last(0)).toHaveLength(3);
    expect(store.last(10, { verdict: "DROPPED" })).toHaveLength(2);
  });
});

describe("l7FlowOf", () => {
  const peers = { source: { ip: "10.244.1.2", port: 40000, identity: 300 }, destination: { ip: "10.244.1.3", port: 9092, identity: 301 }, direction: "ingress" as const, proxyPort: 10000 };
  const event = (over: Partial<L7FlowEvent>): L7FlowEvent => ({ type: "REQUEST", protocol: "kafka", verdict: "DROPPED", reason: "r", ...peers, ...over });

  it("writes a proxy's Kafka and TLS events as Hubble's Layer7 records (snake_case, Kafka's topic as a string)", () => {
    const k = l7FlowOf(event({ kafka: { errorCode: 29, apiVersion: 1, apiKey: "metadata", correlationId: 7, topic: "secret" } }), names);
    expect(k.l7).toEqual({ type: "REQUEST", kafka: { error_code: 29, api_version: 1, api_key: "metadata", correlation_id: 7, topic: "secret" } });
    expect(k.l4).toEqual({ TCP: { source_port: 40000, destination_port: 9092 } });
    expect(k.source).toMatchObject({ pod_name: "client", identity: 300 });
    const t = l7FlowOf(event({ protocol: "tls", verdict: "FORWARDED", tls: { serverName: "a.example" } }), names);
    expect(t.l7).toEqual({ type: "REQUEST", tls: { server_name: "a.example" } });
  });

  it("names the transport of a DNS datagram UDP, and a response's source is the resolver", () => {
    const d = l7FlowOf(event({ protocol: "dns", type: "RESPONSE", verdict: "FORWARDED", direction: "egress", l4: "UDP", dns: { query: "a.example.", ips: ["192.0.2.1"], ttl: 60, rcode: 0 } }), names);
    expect(d.l4).toEqual({ UDP: { source_port: 9092, destination_port: 40000 } });
    expect(d).toMatchObject({ is_reply: true, traffic_direction: "EGRESS", IP: { source: "10.244.1.3", destination: "10.244.1.2" } });
    expect(d.l7?.dns).toEqual({ query: "a.example.", ips: ["192.0.2.1"], ttl: 60, rcode: 0 });
  });
});
