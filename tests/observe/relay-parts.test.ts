/*
 * The relay's parts on their own: the sort buffer that merges the nodes' streams (agent/relay-sort.ts),
 * the compact line `observe --server` renders from a Hubble flow (host/hubble-flow-event.ts) compared
 * with the line the agent's own flow API prints for the same flow, and the address checks.
 */
import { describe, expect, it } from "vitest";
import { l7FlowOf } from "../../agent/flows.ts";
import { bindAddress, targetProblem } from "../../agent/grpc-target.ts";
import { SortBuffer, timestampNs } from "../../agent/relay-sort.ts";
import * as C from "../../host/constants.gen.ts";
import { compactLine, hubbleFlow, type FlowEvent } from "../../host/flows.ts";
import { flowEventOfHubble } from "../../host/hubble-flow-event.ts";
import { flowOf } from "../../host/trace-flow.ts";
import { flowNames, traceRecord } from "../helpers/flow-fixtures.ts";

describe("SortBuffer", () => {
  it("lets the oldest flow out only when every node still sending has one held (a k-way merge)", () => {
    const b = new SortBuffer<string>(100);
    const sending = new Set(["a", "b"]);
    b.push("a", 5n, "a5");
    b.push("a", 7n, "a7");
    expect(b.ready(sending)).toEqual([]);
    b.push("b", 6n, "b6");
    // a5 cannot be overtaken; then b has nothing held, so a7 waits for b's next.
    expect(b.ready(sending)).toEqual(["a5", "b6"]);
    sending.delete("b");
    expect(b.ready(sending)).toEqual(["a7"]);
  });
  it("never holds more than its bound: the oldest leaves first", () => {
    const b = new SortBuffer<number>(3);
    const sending = new Set(["a", "quiet"]);
    for (const t of [9, 4, 7, 1, 8]) b.push("a", BigInt(t), t);
    expect(b.ready(sending)).toEqual([1, 4]);
    expect(b.size).toBe(3);
    expect(b.heldFrom("a")).toBe(3);
  });
  it("drains what is older than the sort window, and keeps arrival order on equal times", () => {
    const b = new SortBuffer<string>(100);
    b.push("a", 10n, "first");
    b.push("b", 10n, "second");
    b.push("a", 30n, "late");
    expect(b.olderThan(20n)).toEqual(["first", "second"]);
    expect(b.ready(new Set())).toEqual(["late"]);
  });
  it("reads Timestamps exactly (64-bit seconds as text)", () => {
    expect(timestampNs({ seconds: "1767225600", nanos: 5 })).toBe(1767225600_000_000_005n);
    expect(timestampNs(undefined)).toBe(0n);
  });
});

describe("the compact line of a Hubble flow (observe --server)", () => {
  const viaHubble = (f: FlowEvent) => compactLine(flowEventOfHubble(hubbleFlow(f) as never, "", ""));
  it("is the agent's line for policy verdicts, traces and L7 flows", () => {
    const verdict = flowOf(traceRecord({ verdict: C.CTX_ACT_OK, hook: C.HOOK_TO_ENDPOINT, ctState: C.CT_NEW, traceFlags: C.TRACE_F_INGRESS_CHECKED, ingressMatchType: 2, obsPoint: C.TRACE_TO_ENDPOINT }), flowNames);
    const trace = flowOf(traceRecord({ verdict: C.CTX_ACT_OK, hook: C.HOOK_TO_ENDPOINT, ctState: C.CT_ESTABLISHED, traceFlags: C.TRACE_F_REPLY, obsPoint: C.TRACE_TO_ENDPOINT, tcpFlags: 0x10 }), flowNames);
    const peers = { source: { ip: "10.244.1.2", port: 40000, identity: 300 }, destination: { ip: "10.244.1.3", port: 80, identity: 301 }, direction: "ingress" as const, proxyPort: 10000, reason: "allowed by default/web rule 0" };
    const http = l7FlowOf({ type: "REQUEST", protocol: "http", verdict: "FORWARDED", http: { method: "GET", url: "http://server/index", protocol: "HTTP/1.1" }, ...peers }, flowNames);
    const kafka = l7FlowOf({ type: "RESPONSE", protocol: "kafka", verdict: "DROPPED", kafka: { errorCode: 29, apiVersion: 1, apiKey: "produce", correlationId: 3, topic: "t" }, ...peers }, flowNames);
    for (const f of [verdict, trace, http, kafka]) expect(viaHubble(f)).toBe(compactLine(f));
    expect(viaHubble(verdict)).toMatch(/default\/client:40000 \(ID:300\) -> default\/server:8080 \(ID:301\) policy-verdict:L3-L4 INGRESS ALLOWED/);
  });
  it("names a drop by its reason, as Hubble's printer does", () => {
    const drop = flowOf(traceRecord({ verdict: C.CTX_ACT_DROP, dropReason: 133, hook: C.HOOK_TO_ENDPOINT, traceFlags: C.TRACE_F_INGRESS_CHECKED, obsPoint: C.TRACE_TO_ENDPOINT }), flowNames);
    expect(viaHubble(drop)).toBe(compactLine({ ...drop, event: "Policy denied" }));
  });
  it("shows an address without a pod by the service Hubble carries, and a tunnel without its VNI", () => {
    const f = flowOf(traceRecord({ verdict: C.CTX_ACT_OK, hook: C.HOOK_FROM_ENDPOINT, obsPoint: C.TRACE_TO_ENDPOINT, newDaddr: new Uint8Array([10, 96, 0, 10, ...new Array(12).fill(0)]) }), flowNames);
    const withSvc = { ...f, destination_service: { name: "web", namespace: "default" }, tunnel: { protocol: "VXLAN" as const, IP: { source: "192.168.56.11", destination: "192.168.56.12", ipVersion: "IPv4" as const }, l4: { UDP: { source_port: 0, destination_port: 8472 } }, vni: 300 } };
    expect(viaHubble(withSvc)).toContain("-> default/web:8080 (ID:301)");
    expect(viaHubble(withSvc)).toContain("[VXLAN 192.168.56.11 -> 192.168.56.12] ");
  });
});

describe("addresses", () => {
  it("accepts unix sockets and host:port, and names the flag otherwise", () => {
    for (const ok of ["unix:///var/run/ciliate/hubble.sock", "127.0.0.1:4244", "node-2.example:4244", "[fd00::1]:4245"]) expect(targetProblem(ok, "--peer")).toBeUndefined();
    expect(targetProblem("unix:relative.sock", "--peer")).toMatch(/^--peer "unix:relative.sock": expected unix:\/\/\//);
    expect(targetProblem("127.0.0.1", "--server")).toMatch(/^--server "127.0.0.1": expected host:port/);
    expect(targetProblem("h:70000", "--peer")).toBeDefined();
    expect(bindAddress(":4245", "--listen-address")).toEqual({ address: "0.0.0.0:4245" });
    expect(bindAddress("localhost", "--listen-address")).toHaveProperty("problem");
  });
});
