/*
 * ciliate's flows against Hubble's own flow.proto and observer.proto (host/proto), with protobufjs: every
 * line `simulate -o json` prints and every flow in `trace -o json` is an observer.GetFlowsResponse whose
 * `flow` is a flow.Flow, exactly (host/hubble-proto.ts protoProblems: a protobuf round trip that reports
 * unknown fields, unknown enum names and mistyped values); so are the flows the agent makes from datapath
 * records and from its L7 proxies.
 */
import { describe, expect, it } from "vitest";
import { protoProblems } from "../../host/hubble-proto.ts";
import { jsonLine, type FlowEvent } from "../../host/flows.ts";
import * as C from "../../host/constants.gen.ts";
import { flowOf } from "../../host/trace-flow.ts";
import { a16, flowNames, traceRecord } from "../helpers/flow-fixtures.ts";
import { l7FlowOf } from "../../agent/flows.ts";
import { ciliate } from "../cli/run.ts";

/** Problems of one output line: the line without ciliate's own key is a GetFlowsResponse. */
function lineProblems(line: string): string[] {
  const { ciliate: _extras, ...response } = JSON.parse(line) as Record<string, unknown>;
  return protoProblems(response, "observer.GetFlowsResponse");
}

describe("the validator itself", () => {
  const good = { time: "2026-01-01T00:00:00.123Z", verdict: "FORWARDED", IP: { source: "10.0.0.1", destination: "10.0.0.2", ipVersion: "IPv4" }, is_reply: false };
  it("accepts a canonical Flow", () => expect(protoProblems(good)).toEqual([]));
  it("refuses a field flow.proto does not have", () => expect(protoProblems({ ...good, source: { ip: "10.0.0.1" } }).join()).toMatch(/source\.ip/));
  it("refuses an enum value by a name the enum does not have", () => expect(protoProblems({ ...good, verdict: "ALLOWED" }).join()).toMatch(/verdict/));
  it("refuses a string where a number belongs", () => expect(protoProblems({ ...good, l4: { TCP: { destination_port: "80" } } }).join()).toMatch(/destination_port/));
  it("refuses a message where a string belongs (Kafka's topic)", () => expect(protoProblems({ ...good, l7: { type: "REQUEST", kafka: { topic: { topic: "t" } } } }).length).toBeGreaterThan(0));
});

describe.each(["starwars", "kafka", "fqdn", "lb", "multi-node"])("simulate -f scenarios/%s -o json", (scenario) => {
  const r = ciliate("simulate", "-f", `scenarios/${scenario}`, "-o", "json");
  const lines = r.stdout.trim().split("\n");
  it("every line is a Hubble GetFlowsResponse", () => {
    expect(r.code, r.stderr).toBe(0);
    expect(lines.length).toBeGreaterThan(3);
    const bad = lines.map((l) => ({ l, p: lineProblems(l) })).filter((x) => x.p.length);
    expect(bad.slice(0, 3)).toEqual([]);
  });
});

describe("trace -o json", () => {
  const cases: [string, string[]][] = [
    ["starwars L7 deny", ["-f", "scenarios/starwars", "--from", "default/tiefighter", "--to", "svc:default/deathstar", "--port", "80", "--http-method", "PUT", "--http-path", "/v1/exhaust-port"]],
    ["starwars L3 deny", ["-f", "scenarios/starwars", "--from", "default/xwing", "--to", "svc:default/deathstar", "--port", "80"]],
    ["kafka", ["-f", "scenarios/kafka", "--from", "kafka/empire-hq", "--to", "svc:kafka/kafka", "--port", "9092", "--kafka-role", "produce", "--kafka-topic", "deathstar-plans"]],
    ["fqdn", ["-f", "scenarios/fqdn", "--from", "default/mediabot", "--to", "svc:kube-system/kube-dns", "--dns-query", "api.github.com"]],
  ];
  it.each(cases)("%s: every flow validates", (_name, args) => {
    const r = ciliate("trace", ...args, "-o", "json");
    expect(r.code, r.stderr).toBe(0);
    const doc = JSON.parse(r.stdout) as { flows: Record<string, unknown>[] };
    expect(doc.flows.length).toBeGreaterThan(0);
    for (const f of doc.flows) expect(lineProblems(JSON.stringify(f))).toEqual([]);
  });
});

describe("the agent's flows", () => {
  const names = flowNames;
  const record = traceRecord;
  const flows: [string, FlowEvent][] = [
    ["policy drop", flowOf(record({ verdict: C.CTX_ACT_DROP, dropReason: 133, hook: C.HOOK_TO_ENDPOINT, traceFlags: C.TRACE_F_INGRESS_CHECKED, obsPoint: C.TRACE_TO_ENDPOINT }), names)],
    ["policy verdict", flowOf(record({ verdict: C.CTX_ACT_OK, hook: C.HOOK_TO_ENDPOINT, ctState: C.CT_NEW, traceFlags: C.TRACE_F_INGRESS_CHECKED, ingressMatchType: 2, obsPoint: C.TRACE_TO_ENDPOINT }), names)],
    ["from the world", flowOf(record({ saddr: a16("203.0.113.9"), srcIdentity: 2, hook: C.HOOK_FROM_NETWORK, obsPoint: C.TRACE_FROM_NETWORK }), names)],
    ["UDP", flowOf(record({ nexthdr: 17, tcpFlags: 0, obsPoint: C.TRACE_TO_ENDPOINT }), names)],
  ];
  const peer = (ip: string, identity: number, port: number) => ({ ip, identity, port });
  const base = { protocol: "http" as const, source: peer("10.244.1.2", 300, 40000), destination: peer("10.244.1.3", 301, 80), direction: "ingress" as const, proxyPort: 15001, reason: "rule" };
  flows.push(["http request", l7FlowOf({ ...base, type: "REQUEST", verdict: "DROPPED", http: { method: "PUT", url: "http://server/x", protocol: "HTTP/1.1" } }, names)]);
  flows.push(["http response", l7FlowOf({ ...base, type: "RESPONSE", verdict: "FORWARDED", latencyNs: 1200, http: { method: "GET", url: "http://server/", protocol: "HTTP/1.1", code: 200 } }, names)]);
  flows.push(["kafka", l7FlowOf({ ...base, protocol: "kafka", type: "REQUEST", verdict: "FORWARDED", kafka: { errorCode: 0, apiVersion: 11, apiKey: "fetch", correlationId: 7, topic: "t" } }, names)]);
  flows.push(["dns", l7FlowOf({ ...base, protocol: "dns", type: "RESPONSE", verdict: "FORWARDED", dns: { query: "example.com.", ips: ["1.2.3.4"], ttl: 30, rcode: 0, qtypes: ["A"], rrtypes: ["A"] } }, names)]);
  flows.push(["tls", l7FlowOf({ ...base, protocol: "tls", type: "REQUEST", verdict: "FORWARDED", tls: { serverName: "api.example" } }, names)]);
  it.each(flows)("%s validates", (_name, f) => expect(lineProblems(jsonLine(f))).toEqual([]));
});
