/*
 * agent/observer-grpc.ts: the Hubble Observer gRPC API over the agent's flow ring, read with a client that
 * @grpc/proto-loader generates from the same upstream observer.proto (host/proto). Flows go in through the
 * ring's public push, as the agent's datapath reader and L7 proxies put them; every flow that comes out is
 * checked against flow.proto.
 */
import { mkdtempSync, rmSync, statSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import * as grpc from "@grpc/grpc-js";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { FlowStore } from "../../agent/flows.ts";
import { LOADER_OPTIONS, loadObserverPackage, serveObserver, type ObserverServer } from "../../agent/observer-grpc.ts";
import * as C from "../../host/constants.gen.ts";
import type { FlowEvent } from "../../host/flows.ts";
import { protoProblems } from "../../host/hubble-proto.ts";
import { flowOf } from "../../host/trace-flow.ts";
import { flowNames, traceRecord } from "../helpers/flow-fixtures.ts";
import { getFlows as getFlowsOf, unary as unaryOf, type ObserverTestClient } from "../helpers/observer-client.ts";

type Client = ObserverTestClient;
type Response = { flow: Record<string, unknown> & { verdict: string; time: string }; node_name: string; time: string };

const at = (f: FlowEvent, second: number): FlowEvent => ({ ...f, time: new Date(Date.UTC(2026, 0, 1, 0, 0, second)).toISOString() });
const drop = (s: number) => at(flowOf(traceRecord({ verdict: C.CTX_ACT_DROP, dropReason: 133, hook: C.HOOK_TO_ENDPOINT, traceFlags: C.TRACE_F_INGRESS_CHECKED, obsPoint: C.TRACE_TO_ENDPOINT, sport: 41000 + s }), flowNames), s);
const allow = (s: number) => at(flowOf(traceRecord({ verdict: C.CTX_ACT_OK, hook: C.HOOK_TO_ENDPOINT, ctState: C.CT_NEW, traceFlags: C.TRACE_F_INGRESS_CHECKED, ingressMatchType: 2, obsPoint: C.TRACE_TO_ENDPOINT, sport: 41000 + s }), flowNames), s);

let dir: string;
let store: FlowStore;
let server: ObserverServer;
let client: Client;
let tcpClient: Client;

const getFlows = (c: Client, req: Record<string, unknown>) => getFlowsOf<Response>(c, req);
const unary = <T>(c: Client, method: string) => unaryOf<T>(c, method);
const port = (f: Response) => ((f.flow.l4 as { TCP: { source_port: number } }).TCP.source_port);

beforeAll(async () => {
  dir = mkdtempSync(join(tmpdir(), `ciliate-observer-${process.pid}-`));
  store = new FlowStore(100);
  for (let s = 1; s <= 6; s++) store.push(s % 2 ? drop(s) : allow(s));
  server = await serveObserver({ store, nodeName: "node-1", version: "ciliate-test", startedAt: new Date(Date.now() - 2000) }, join(dir, "run", "hubble.sock"), "127.0.0.1:0");
  // The client reads proto3 JSON (json: true): Timestamps as RFC 3339 text, as `hubble observe -o json` prints.
  // (oneofs: false, so no virtual "which member" fields are added to what is checked against flow.proto.)
  const pkg = loadObserverPackage({ ...LOADER_OPTIONS, oneofs: false, json: true });
  client = new pkg.observer.Observer(server.addresses[0]!, grpc.credentials.createInsecure()) as unknown as Client;
  tcpClient = new pkg.observer.Observer(server.addresses[1]!, grpc.credentials.createInsecure()) as unknown as Client;
});
afterAll(async () => {
  client?.close();
  tcpClient?.close();
  await server?.close();
  rmSync(dir, { recursive: true, force: true });
});

describe("Observer.GetFlows", () => {
  it("answers the last N flows, each a flow.proto Flow", async () => {
    const r = await getFlows(client, { number: 2 });
    expect(r.map(port)).toEqual([41005, 41006]);
    for (const x of r) {
      expect(protoProblems(x.flow)).toEqual([]);
      expect(x.node_name).toBe("node-1");
      expect(x.time).toBe(x.flow.time);
    }
    expect(r[0]!.flow).toMatchObject({ verdict: "DROPPED", drop_reason_desc: "POLICY_DENIED", traffic_direction: "INGRESS", source: { pod_name: "client" } });
  });
  it("answers the first N with first, and everything with neither", async () => {
    expect((await getFlows(client, { number: 2, first: true })).map(port)).toEqual([41001, 41002]);
    expect((await getFlows(client, {})).map(port)).toEqual([41001, 41002, 41003, 41004, 41005, 41006]);
  });
  it("applies whitelist and blacklist FlowFilters", async () => {
    expect((await getFlows(client, { whitelist: [{ verdict: ["DROPPED"] }] })).map(port)).toEqual([41001, 41003, 41005]);
    expect((await getFlows(client, { whitelist: [{ verdict: ["DROPPED"] }], blacklist: [{ source_port: ["41003"] }] })).map(port)).toEqual([41001, 41005]);
    expect((await getFlows(client, { whitelist: [{ event_type: [{ type: 5 }] }] })).map(port)).toEqual([41002, 41004, 41006]);
  });
  it("bounds by since and until", async () => {
    const r = await getFlows(client, { since: { seconds: Date.UTC(2026, 0, 1, 0, 0, 3) / 1000 }, until: { seconds: Date.UTC(2026, 0, 1, 0, 0, 4) / 1000 } });
    expect(r.map(port)).toEqual([41003, 41004]);
  });
  it("refuses a filter field it does not implement, rather than returning more than asked", async () => {
    await expect(getFlows(client, { whitelist: [{ http_status_code: ["404"] }] })).rejects.toMatchObject({ code: grpc.status.INVALID_ARGUMENT, details: expect.stringMatching(/http_status_code/) });
    await expect(getFlows(client, { number: 1, first: true, follow: true })).rejects.toMatchObject({ code: grpc.status.INVALID_ARGUMENT });
  });
  it("follows: the last N, then every new matching flow until cancelled", async () => {
    const seen: number[] = [];
    const call = client.GetFlows({ number: 1, follow: true, whitelist: [{ verdict: ["DROPPED"] }] }) as grpc.ClientReadableStream<Response>;
    const done = new Promise<void>((resolve) => call.on("error", () => resolve()));
    await new Promise<void>((resolve) =>
      call.on("data", (r: Response) => {
        seen.push(port(r));
        if (seen.length === 1) {
          store.push(allow(8));
          store.push(drop(9));
        }
        if (seen.length === 2) resolve();
      }),
    );
    call.cancel();
    await done;
    expect(seen).toEqual([41005, 41009]);
  });
  it("serves the same on TCP (--hubble-listen-address)", async () => {
    expect((await getFlows(tcpClient, { number: 1 })).length).toBe(1);
  });
});

describe("Observer.ServerStatus and GetNodes", () => {
  it("reports the ring's fill, capacity, flows seen and uptime", async () => {
    const s = await unary<Record<string, unknown>>(client, "ServerStatus");
    expect(s).toMatchObject({ num_flows: String(store.size), max_flows: "100", seen_flows: String(store.seen), version: "ciliate-test", num_connected_nodes: 1 });
    expect(Number(s.uptime_ns)).toBeGreaterThan(1e9);
    expect(protoProblems(s, "observer.ServerStatusResponse")).toEqual([]);
  });
  it("lists this node as connected", async () => {
    const n = await unary<{ nodes: Record<string, unknown>[] }>(client, "GetNodes");
    expect(n.nodes).toHaveLength(1);
    expect(n.nodes[0]).toMatchObject({ name: "node-1", state: "NODE_CONNECTED", max_flows: "100" });
  });
  it("answers UNIMPLEMENTED for agent and debug events", async () => {
    await expect(new Promise((resolve, reject) => (client.GetAgentEvents({}) as grpc.ClientReadableStream<unknown>).on("error", reject).on("end", resolve))).rejects.toMatchObject({ code: grpc.status.UNIMPLEMENTED });
  });
});

describe("the unix socket", () => {
  it("is root-only (mode 0600), like the agent API", () => {
    expect(statSync(join(dir, "run", "hubble.sock")).mode & 0o777).toBe(0o600);
    expect(statSync(join(dir, "run")).mode & 0o777).toBe(0o700);
  });
});
