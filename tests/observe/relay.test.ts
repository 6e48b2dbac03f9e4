/*
 * agent/relay.ts and `ciliate observe --server`: two nodes' Observer servers (agent/observer-grpc.ts, fed
 * through their flow rings' public push, as the agent's datapath reader feeds them), the relay in front of
 * them — one peer on a unix socket, one on TCP — and a client @grpc/proto-loader generates from the same
 * upstream observer.proto. Flows must come out of both nodes in time order, listed and followed; a node
 * that goes down is reported and comes back; `ciliate observe --server` prints the relay's flows.
 */
import { execFile, spawn } from "node:child_process";
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { promisify } from "node:util";
import * as grpc from "@grpc/grpc-js";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { FlowStore } from "../../agent/flows.ts";
import { LOADER_OPTIONS, loadObserverPackage, serveObserver, type ObserverServer } from "../../agent/observer-grpc.ts";
import { RELAY_DEFAULTS, serveRelay, type Relay } from "../../agent/relay.ts";
import * as C from "../../host/constants.gen.ts";
import { compactLine, hubbleFlow, type FlowEvent } from "../../host/flows.ts";
import { protoProblems } from "../../host/hubble-proto.ts";
import { flowOf } from "../../host/trace-flow.ts";
import { ciliate, ROOT } from "../cli/run.ts";
import { flowNames, traceRecord } from "../helpers/flow-fixtures.ts";
import { getFlows as getFlowsOf, unary as unaryOf, type ObserverTestClient } from "../helpers/observer-client.ts";

type Client = ObserverTestClient;
type Response = { flow?: Record<string, unknown> & { time: string }; node_status?: { state_change: string; node_names: string[] }; node_name: string; time: string };

const T0 = Date.UTC(2026, 0, 1);
const on = (node: string, f: FlowEvent, ms: number): FlowEvent => ({ ...f, node_name: node, time: new Date(ms).toISOString() });
/** A flow of `node` at `ms`, told apart by its source port: drops at odd seconds, policy verdicts at even. */
const flowAt = (node: string, s: number, ms = T0 + s * 1000): FlowEvent =>
  on(
    node,
    s % 2
      ? flowOf(traceRecord({ verdict: C.CTX_ACT_DROP, dropReason: 133, hook: C.HOOK_TO_ENDPOINT, traceFlags: C.TRACE_F_INGRESS_CHECKED, obsPoint: C.TRACE_TO_ENDPOINT, sport: 41000 + s }), flowNames)
      : flowOf(traceRecord({ verdict: C.CTX_ACT_OK, hook: C.HOOK_TO_ENDPOINT, ctState: C.CT_NEW, traceFlags: C.TRACE_F_INGRESS_CHECKED, ingressMatchType: 2, obsPoint: C.TRACE_TO_ENDPOINT, sport: 41000 + s }), flowNames),
    ms,
  );
const port = (r: Response) => (r.flow!.l4 as { TCP: { source_port: number } }).TCP.source_port - 41000;
const flows = (rs: Response[]) => rs.filter((r) => r.flow);

let dir: string;
const stores = { a: new FlowStore(100), b: new FlowStore(100) };
const pushed = new Map<number, FlowEvent>();
let nodeA: ObserverServer;
let nodeB: ObserverServer;
let tcpB: string;
let relay: { relay: Relay; server: ObserverServer };
let client: Client;
const pkg = loadObserverPackage({ ...LOADER_OPTIONS, oneofs: false, json: true });

const serveB = () => serveObserver({ store: stores.b, nodeName: "node-2", version: "ciliate-test", startedAt: new Date(Date.now() - 5000) }, join(dir, "b", "hubble.sock"), tcpB);
function push(node: "a" | "b", s: number, ms?: number): void {
  const f = flowAt(node === "a" ? "node-1" : "node-2", s, ms);
  pushed.set(s, f);
  stores[node].push(f);
}
const getFlows = (req: Record<string, unknown>) => getFlowsOf<Response>(client, req);
const unary = <T>(method: string) => unaryOf<T>(client, method);
type Nodes = { nodes: { name: string; state: string; address: string; num_flows?: string }[] };
async function until<T>(what: string, get: () => Promise<T>, ok: (v: T) => boolean, ms = 10_000): Promise<T> {
  const end = Date.now() + ms;
  for (;;) {
    const v = await get();
    if (ok(v)) return v;
    if (Date.now() > end) throw new Error(`timed out waiting for ${what}: ${JSON.stringify(v)}`);
    await new Promise((r) => setTimeout(r, 100));
  }
}
const sinceNow = () => {
  const ms = Date.now();
  return { seconds: String(Math.floor(ms / 1000)), nanos: (ms % 1000) * 1e6 };
};
/**
 * Follows through the relay; `when(pred)` resolves once what came satisfies pred. Without a number the
 * request starts at `since` = now: a flow pushed before a node has subscribed still comes.
 */
function follow(req: Record<string, unknown>) {
  const got: Response[] = [];
  const waiters: { pred: (rs: Response[]) => boolean; resolve: () => void }[] = [];
  const call = client.GetFlows({ ...(req.number ? {} : { since: sinceNow() }), ...req, follow: true }) as grpc.ClientReadableStream<Response>;
  const ended = new Promise<void>((resolve) => call.on("error", () => resolve()));
  call.on("data", (r: Response) => {
    got.push(r);
    for (const w of [...waiters]) if (w.pred(got)) (waiters.splice(waiters.indexOf(w), 1), w.resolve());
  });
  const when = (pred: (rs: Response[]) => boolean) => new Promise<void>((resolve) => (pred(got) ? resolve() : waiters.push({ pred, resolve })));
  return {
    got,
    when,
    flowsSeen: () => flows(got).map(port),
    stop: async () => {
      call.cancel();
      await ended;
    },
  };
}

beforeAll(async () => {
  dir = mkdtempSync(join(tmpdir(), `ciliate-relay-${process.pid}-`));
  // Interleaved in time: node-1 holds seconds 1, 4, 5, 8 and node-2 2, 3, 6, 7.
  for (const s of [1, 4, 5, 8]) push("a", s);
  for (const s of [2, 3, 6, 7]) push("b", s);
  nodeA = await serveObserver({ store: stores.a, nodeName: "node-1", version: "ciliate-test", startedAt: new Date(Date.now() - 9000) }, join(dir, "a", "hubble.sock"));
  tcpB = "127.0.0.1:0";
  nodeB = await serveB();
  tcpB = nodeB.addresses[1]!;
  const opts = { ...RELAY_DEFAULTS, sortBufferDrainTimeoutMs: 300, peerUpdateIntervalMs: 200, retryTimeoutMs: 200, dialTimeoutMs: 2000, version: "ciliate-relay-test" };
  relay = await serveRelay([nodeA.addresses[0]!, tcpB], opts, join(dir, "relay", "relay.sock"), "127.0.0.1:0");
  client = new pkg.observer.Observer(relay.server.addresses[0]!, grpc.credentials.createInsecure()) as unknown as Client;
  await until("both peers named and connected", () => unary<Nodes>("GetNodes"), (n) => n.nodes.map((x) => `${x.name} ${x.state}`).join() === "node-1 NODE_CONNECTED,node-2 NODE_CONNECTED");
});
afterAll(async () => {
  client?.close();
  relay?.relay.close();
  await Promise.all([relay?.server.close(), nodeA?.close(), nodeB?.close()]);
  rmSync(dir, { recursive: true, force: true });
});

describe("relay GetFlows", () => {
  it("lists both nodes' flows in time order, each a flow.proto Flow, after saying which nodes answer", async () => {
    const r = await getFlows({});
    expect(r[0]).toMatchObject({ node_status: { state_change: "NODE_CONNECTED", node_names: ["node-1", "node-2"] } });
    expect(flows(r).map(port)).toEqual([1, 2, 3, 4, 5, 6, 7, 8]);
    expect(flows(r).map((x) => x.node_name)).toEqual(["node-1", "node-2", "node-2", "node-1", "node-1", "node-2", "node-2", "node-1"]);
    for (const x of r) expect(protoProblems(x, "observer.GetFlowsResponse")).toEqual([]);
    for (const x of flows(r)) expect(x.flow).toEqual(hubbleFlow(pushed.get(port(x))!));
  });
  it("counts number per node, as Hubble Relay, and keeps time order", async () => {
    expect(flows(await getFlows({ number: 2 })).map(port)).toEqual([5, 6, 7, 8]);
    expect(flows(await getFlows({ number: 1, first: true })).map(port)).toEqual([1, 2]);
  });
  it("passes whitelist and blacklist to the nodes", async () => {
    expect(flows(await getFlows({ whitelist: [{ verdict: ["DROPPED"] }] })).map(port)).toEqual([1, 3, 5, 7]);
    expect(flows(await getFlows({ whitelist: [{ verdict: ["DROPPED"] }], blacklist: [{ node_name: ["node-2"] }] })).map(port)).toEqual([1, 5]);
  });
  it("refuses what it cannot answer exactly before asking any node", async () => {
    await expect(getFlows({ whitelist: [{ http_status_code: ["404"] }] })).rejects.toMatchObject({ code: grpc.status.INVALID_ARGUMENT, details: expect.stringMatching(/http_status_code/) });
    await expect(getFlows({ number: 1, since: { seconds: 1 } })).rejects.toMatchObject({ code: grpc.status.INVALID_ARGUMENT });
  });
  it("follows both nodes: new flows in time order, even when the later one reaches the relay first", async () => {
    const f = follow({});
    await f.when((rs) => rs.some((r) => r.node_status));
    const now = Date.now();
    // node-2's flow is 5 ms younger but pushed first: the sort window puts node-1's before it.
    push("b", 12, now + 5);
    push("a", 11, now);
    push("a", 13, now + 10);
    await f.when((rs) => flows(rs).length === 3);
    expect(f.flowsSeen()).toEqual([11, 12, 13]);
    await f.stop();
  });
  it("follows with number: the last of each node, then new ones", async () => {
    const f = follow({ number: 1, whitelist: [{ verdict: ["FORWARDED"] }] });
    await f.when((rs) => flows(rs).length === 2);
    push("b", 14, Date.now());
    await f.when((rs) => flows(rs).length === 3);
    expect(f.flowsSeen()).toEqual([8, 12, 14]);
    await f.stop();
  });
});

describe("relay ServerStatus and GetNodes", () => {
  it("sums the nodes' counters and counts them connected", async () => {
    const s = await unary<Record<string, unknown>>("ServerStatus");
    expect(s).toMatchObject({ num_flows: String(stores.a.size + stores.b.size), max_flows: "200", seen_flows: String(stores.a.seen + stores.b.seen), num_connected_nodes: 2, version: "ciliate-relay-test" });
    expect(s.num_unavailable_nodes ?? 0).toBe(0);
    // The oldest node's uptime (node-1 started 9 s before the test), not a sum.
    expect(Number(s.uptime_ns)).toBeGreaterThan(9e9);
    expect(Number(s.uptime_ns)).toBeLessThan(60e9);
    expect(protoProblems(s, "observer.ServerStatusResponse")).toEqual([]);
  });
  it("lists every node with its state, address and counters", async () => {
    const n = await unary<Nodes>("GetNodes");
    expect(n.nodes).toEqual([
      expect.objectContaining({ name: "node-1", state: "NODE_CONNECTED", address: nodeA.addresses[0], num_flows: String(stores.a.size) }),
      expect.objectContaining({ name: "node-2", state: "NODE_CONNECTED", address: tcpB, num_flows: String(stores.b.size) }),
    ]);
  });
});

describe("a node that goes down", () => {
  it("is reported, the other node's flows still come, and it joins again when it is back", async () => {
    const f = follow({});
    await f.when((rs) => rs.some((r) => r.node_status));
    await nodeB.close();
    const st = await until("node-2 reported down", () => unary<Record<string, unknown>>("ServerStatus"), (s) => s.num_unavailable_nodes === 1);
    expect(st).toMatchObject({ num_connected_nodes: 1, unavailable_nodes: ["node-2"], num_flows: String(stores.a.size) });
    expect((await unary<Nodes>("GetNodes")).nodes.map((x) => `${x.name} ${x.state}`)).toEqual(["node-1 NODE_CONNECTED", "node-2 NODE_UNAVAILABLE"]);
    const listed = await getFlows({});
    expect(listed).toContainEqual(expect.objectContaining({ node_status: { state_change: "NODE_UNAVAILABLE", node_names: ["node-2"] } }));
    expect(flows(listed).every((x) => x.node_name === "node-1")).toBe(true);
    // The follower heard of it too, and still gets node-1's flows.
    // (NODE_ERROR when the stream broke with another status than UNAVAILABLE, as Hubble Relay's.)
    await f.when((rs) => rs.some((r) => ["NODE_UNAVAILABLE", "NODE_ERROR"].includes(r.node_status?.state_change ?? "") && r.node_status!.node_names.includes("node-2")));
    push("a", 15, Date.now());
    await f.when((rs) => flows(rs).some((r) => port(r) === 15));

    nodeB = await serveB();
    await until("node-2 back", () => unary<Nodes>("GetNodes"), (n) => n.nodes[1]!.state === "NODE_CONNECTED");
    await f.when((rs) => rs.filter((r) => r.node_status?.state_change === "NODE_CONNECTED" && r.node_status.node_names.includes("node-2")).length === 2);
    push("b", 16, Date.now());
    await f.when((rs) => flows(rs).some((r) => port(r) === 16));
    expect(f.flowsSeen()).toEqual([15, 16]);
    await f.stop();
  });
});

describe("a node that goes down after sending", () => {
  it("rejoins from just after its last flow: what it saw meanwhile comes, nothing twice", async () => {
    const f = follow({ whitelist: [{ node_name: ["node-2"] }] });
    await f.when((rs) => rs.some((r) => r.node_status));
    push("b", 20, Date.now());
    await f.when((rs) => flows(rs).length === 1);
    await nodeB.close();
    await until("node-2 reported down", () => unary<Record<string, unknown>>("ServerStatus"), (st) => st.num_unavailable_nodes === 1);
    // Seen by node-2 while the relay could not reach it.
    push("b", 22, Date.now());
    nodeB = await serveB();
    await f.when((rs) => flows(rs).length === 2);
    expect(f.flowsSeen()).toEqual([20, 22]);
    await f.stop();
  });
});

describe("ciliate observe --server", () => {
  const run = promisify(execFile);
  const observe = (...args: string[]) => run(process.execPath, ["bin/ciliate.js", "observe", ...args], { cwd: ROOT, env: { ...process.env, CILIATE_DEBUG: "" } });

  it("prints the relay's flows of both nodes as compact lines, in time order", async () => {
    const { stdout } = await observe("--server", relay.server.addresses[1]!, "--last", "0", "--verdict", "FORWARDED");
    const lines = stdout.trim().split("\n");
    const forwarded = [...pushed.values()].filter((f) => f.verdict === "FORWARDED").sort((x, y) => Date.parse(x.time) - Date.parse(y.time));
    expect(lines).toEqual(forwarded.map(compactLine));
    expect(lines.length).toBeGreaterThan(4);
    expect(lines.some((l) => l.includes("[node-1]")) && lines.some((l) => l.includes("[node-2]"))).toBe(true);
  });
  it("prints -o json lines that are GetFlowsResponses of flow.proto flows", async () => {
    const { stdout } = await observe("--server", `unix://${join(dir, "relay", "relay.sock")}`, "--last", "1", "--from-pod", "default/client", "-o", "json");
    const lines = stdout.trim().split("\n").map((l) => JSON.parse(l) as Response);
    expect(lines.map((l) => l.node_name).sort()).toEqual(["node-1", "node-2"]);
    for (const l of lines) {
      expect(protoProblems(l, "observer.GetFlowsResponse")).toEqual([]);
      expect(l.flow).toEqual(hubbleFlow(pushed.get(port(l))!));
    }
  });
  it("reads one agent's Observer API as well", async () => {
    const { stdout } = await observe("--server", nodeA.addresses[0]!, "--last", "1");
    expect(stdout).toBe(`${compactLine({ ...stores.a.all().at(-1)!, event: "Policy denied" })}\n`);
  });
  it("follows until interrupted, then exits 0", async () => {
    const child = spawn(process.execPath, ["bin/ciliate.js", "observe", "--server", relay.server.addresses[1]!, "--last", "1", "--follow"], { cwd: ROOT, env: { ...process.env, CILIATE_DEBUG: "" }, stdio: ["ignore", "pipe", "inherit"] });
    let stdout = "";
    child.stdout.on("data", (d: Buffer) => (stdout += d.toString()));
    const exited = new Promise<number | null>((resolve) => child.on("exit", (code) => resolve(code)));
    try {
      await until("the last flow of each node", async () => stdout, (o) => o.split("\n").length === 3, 30_000);
      push("a", 18, Date.now());
      await until("the new flow", async () => stdout, (o) => o.includes(":41018 "), 10_000);
    } finally {
      child.kill("SIGINT");
    }
    expect(await exited).toBe(0);
    expect(stdout.trim().split("\n").at(-1)).toBe(compactLine(pushed.get(18)!));
  });
  it("prints a drop with its reason in the type column, as Hubble's printer", async () => {
    const { stdout } = await observe("--server", relay.server.addresses[1]!, "--last", "1", "--verdict", "DROPPED", "--port", "41007");
    expect(stdout).toBe(`${compactLine({ ...pushed.get(7)!, event: "Policy denied" })}\n`);
  });
});

describe("ciliate relay", () => {
  it("serves the nodes' flows on its socket until SIGTERM, then exits 0", async () => {
    const sock = join(dir, "cli-relay", "relay.sock");
    const child = spawn(process.execPath, ["bin/ciliate.js", "relay", "--peer", nodeA.addresses[0]!, "--peer", tcpB, "--socket", sock, "--sort-buffer-drain-timeout", "200ms"], { cwd: ROOT, env: { ...process.env, CILIATE_DEBUG: "" }, stdio: ["ignore", "ignore", "pipe"] });
    let stderr = "";
    child.stderr.on("data", (d: Buffer) => (stderr += d.toString()));
    const exited = new Promise<number | null>((resolve) => child.on("exit", (code) => resolve(code)));
    try {
      await until("the relay's socket", async () => stderr, (e) => e.includes("info ciliate relay on"), 30_000);
      expect(stderr).toContain(`unix://${sock}`);
      const { stdout } = await promisify(execFile)(process.execPath, ["bin/ciliate.js", "observe", "--server", `unix://${sock}`, "--last", "2", "-o", "json"], { cwd: ROOT });
      const got = stdout.trim().split("\n").map((l) => JSON.parse(l) as Response);
      expect(got.map((r) => r.node_name).sort()).toEqual(["node-1", "node-1", "node-2", "node-2"]);
      expect(got.map((r) => Date.parse(r.time))).toEqual(got.map((r) => Date.parse(r.time)).sort((x, y) => x - y));
    } finally {
      child.kill("SIGTERM");
    }
    expect(await exited).toBe(0);
  });
});

describe("bad flags", () => {
  it("are one-line errors, exit 2", () => {
    const cases: [string[], RegExp][] = [
      [["relay"], /needs at least one --peer/],
      [["relay", "--peer", "node-2"], /--peer "node-2": expected host:port/],
      [["relay", "--peer", "unix:///x.sock", "--listen-address", "nowhere"], /--listen-address "nowhere"/],
      [["relay", "--peer", "unix:///x.sock", "--sort-buffer-drain-timeout", "soon"], /invalid --sort-buffer-drain-timeout "soon"/],
      [["observe", "--server", "unix:relative"], /--server "unix:relative": expected unix:\/\/\//],
      [["observe", "--server", `unix://${join(tmpdir(), `ciliate-none-${process.pid}.sock`)}`], /^ciliate: cannot reach the Hubble Observer API at unix:\/\/\S+: connect ENOENT \S+\.sock \(is `ciliate agent` or `ciliate relay` serving there\? The agent's socket is root only\)$/m],
    ];
    for (const [args, msg] of cases) {
      const r = ciliate(...args);
      expect(r.code, args.join(" ")).toBe(2);
      expect(r.stderr).toMatch(msg);
      expect(r.stderr.trim().split("\n")).toHaveLength(1);
    }
  });
});
