/*
 * End-to-end: L7 policy on a node made of network namespaces (the real `ciliate agent`, pods joined by
 * `ciliate cni`, a real HTTP server and client from tests/agent/pod-tool.cjs). Three pods: client, server
 * (HTTP on 8080 and 8081) and other.
 *   - ingress: a CiliumNetworkPolicy lets client reach server:8080 only with GET /public;
 *   - egress: client may reach server:8081 only with GET /public (a rule on client's egress).
 * With the agent's proxy: allowed requests reach the server, which sees the client's own address; denied
 * ones get 403 from the proxy; the L7 flows show in `ciliate observe` and the proxy metrics.
 * Never fail open: with the listening sockets destroyed under a live agent (`ss -K`: only the kernel's
 * socket lookup can tell), with the proxy killed (SIGKILL: its ProxyListeners entries stay, its sockets
 * are gone) or stopped (entries removed), nothing reaches the server — connections time out, and the datapath
 * counts and reports the drops as PROXY_LOOKUP_FAILED (178).
 * Kernel suite: runs as root (fails in CI when it cannot); everything is removed in afterAll.
 */
import { spawn, type ChildProcess } from "node:child_process";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { kernelSuite } from "../../datapath/index.ts";
import { E2eNode, TOOL, expectCheckAgrees, podYaml, eventually, sh, stopProcess, tool } from "./e2e-helpers.ts";

const suite = kernelSuite("agent-e2e-l7", ["root", "libbpf", "bpffs", "iproute2"]);
const PODS = ["client", "server", "other"];
const h = new E2eNode({ prefix: "cil7", nodeIp: "192.168.59.1", podCidr: "10.244.4.0/24", metricsAddr: "127.0.0.1:19964", pods: PODS.map((name) => ({ name })) });
const NS = (n: string) => h.ns(n);
const NODE = h.nodeNs;

const INGRESS_L7 = `apiVersion: cilium.io/v2
kind: CiliumNetworkPolicy
metadata: {name: server-public, namespace: default}
spec:
  endpointSelector: {matchLabels: {app: server}}
  ingress:
  - fromEndpoints: [{matchLabels: {app: client}}]
    toPorts:
    - ports: [{port: "8080", protocol: TCP}]
      rules:
        http: [{method: GET, path: /public}]
  - fromEndpoints: [{matchLabels: {app: client}}]
    toPorts: [{ports: [{port: "8081", protocol: TCP}]}]
`;

const EGRESS_L7 = `apiVersion: cilium.io/v2
kind: CiliumNetworkPolicy
metadata: {name: client-egress, namespace: default}
spec:
  endpointSelector: {matchLabels: {app: client}}
  egress:
  - toEndpoints: [{matchLabels: {app: server}}]
    toPorts:
    - ports: [{port: "8081", protocol: TCP}]
      rules:
        http: [{method: GET, path: /public}]
  - toEndpoints: [{matchLabels: {app: server}}]
    toPorts: [{ports: [{port: "8080", protocol: TCP}]}]
`;

const PODS_YAML = PODS.map((p) => podYaml(p)).join("---\n");

/** The node's HTTP cases as Expectations, by name (what `ciliate check` must agree with). */
const httpCase = (name: string, port: number, method: string, path: string, verdict: string) => `apiVersion: ciliate.dev/v1alpha1
kind: Expectation
metadata: {name: ${name}, namespace: default}
spec:
  from: {pod: default/client}
  to: {pod: default/server}
  port: ${port}
  protocol: TCP
  http: {method: ${method}, path: ${path}}
  verdict: ${verdict}
`;
const CASES: [name: string, port: number, method: string, path: string][] = [
  ["ingress-get-public", 8080, "GET", "/public"],
  ["ingress-get-private", 8080, "GET", "/private"],
  ["ingress-post-public", 8080, "POST", "/public"],
  ["egress-get-public", 8081, "GET", "/public"],
  ["egress-get-private", 8081, "GET", "/private"],
];
/** What the node did with each case: a 200 from the server is allowed, the proxy's 403 denied. */
const node = new Map<string, "allowed" | "denied">();
const record = (name: string, r: Record<string, unknown>) => {
  const status = (r.results as { status: number }[] | undefined)?.[0]?.status;
  if (status === 200 || status === 403) node.set(name, status === 200 ? "allowed" : "denied");
};

const metrics = () => h.metrics();
const counter = (text: string, reason: string, direction: string) =>
  Number(new RegExp(`^ciliate_drop_count_total\\{reason="${reason}",direction="${direction}"\\} (\\d+)$`, "m").exec(text)?.[1] ?? 0);
const http = (port: number, method: string, path: string, n = 1) => tool(NS("client"), "http", h.podIp.get("server")!, port, method, path, n);
const observe = (...args: string[]) => h.observe(...args);

describe.skipIf(suite.skip)("ciliate agent: L7 policy through the node's proxy, never failing open (network namespaces)", () => {
  beforeAll(async () => {
    h.setUp({ "pods.yaml": PODS_YAML, "ingress.yaml": INGRESS_L7, "egress.yaml": EGRESS_L7 });
    await h.startAgent();
    h.addPods();
    for (const port of [8080, 8081]) h.children.push(spawnServer(port));
    await new Promise((r) => setTimeout(r, 700)); // servers listening
  }, 60_000);

  afterAll(() => h.tearDown(), 60_000);

  it("ingress L7: GET /public reaches the server, which sees the client's own address; GET /private and POST /public get 403 from the proxy", () => {
    const ok = http(8080, "GET", "/public");
    expect(ok, h.log).toMatchObject({ ok: true, results: [{ status: 200 }] });
    record("ingress-get-public", ok);
    const body = JSON.parse((ok.results as { body: string }[])[0]!.body);
    expect(body).toEqual({ server: "server", method: "GET", url: "/public", peer: h.podIp.get("client") });
    for (const [method, path] of [["GET", "/private"], ["POST", "/public"]] as const) {
      const r = http(8080, method, path);
      expect(r, `${method} ${path}\n${h.log}`).toMatchObject({ ok: true, results: [{ status: 403 }] });
      record(`ingress-${method.toLowerCase()}${path.replace("/", "-")}`, r);
      expect((r.results as { body: string }[])[0]!.body).toMatch(/Access denied/);
    }
    // Keep-alive: every request on one connection is judged, and a 403 leaves the connection usable.
    const seq = http(8080, "GET", "/private", 3);
    expect(seq, h.log).toMatchObject({ ok: true, results: [{ status: 403 }, { status: 403 }, { status: 403 }] });
    expect(http(8080, "GET", "/public", 3), h.log).toMatchObject({ ok: true, results: [{ status: 200 }, { status: 200 }, { status: 200 }] });
  }, 60_000);

  it("egress L7: the client's own rule on server:8081 is enforced by the proxy, the server still sees the client", () => {
    const ok = http(8081, "GET", "/public");
    expect(ok, h.log).toMatchObject({ ok: true, results: [{ status: 200 }] });
    record("egress-get-public", ok);
    expect(JSON.parse((ok.results as { body: string }[])[0]!.body).peer).toBe(h.podIp.get("client"));
    const denied = http(8081, "GET", "/private");
    expect(denied, h.log).toMatchObject({ ok: true, results: [{ status: 403 }] });
    record("egress-get-private", denied);
  }, 60_000);

  it("`ciliate check` on the same manifests gives every HTTP case the node's verdict", () => {
    const expectations = CASES.map(([name, port, method, path]) => httpCase(name, port, method, path, node.get(name) ?? "allowed")).join("---\n");
    expectCheckAgrees(h.dir, { "cluster.yaml": PODS_YAML, "ingress.yaml": INGRESS_L7, "egress.yaml": EGRESS_L7 }, expectations, node);
  }, 60_000);

  it("shows the L7 flows in `ciliate observe` and counts them in the proxy metrics", async () => {
    await new Promise((r) => setTimeout(r, 300));
    const l7 = observe("--from-pod", "client", "--last", "0").filter((f) => f.Type === "L7");
    const requests = l7.filter((f) => (f.l7 as { type: string }).type === "REQUEST");
    // The handler reports the full URL, as Hubble does (http://host:port/path); the path is what differs here.
    const seen = requests.map((f) => `${f.traffic_direction} ${f.verdict} ${(f.l7 as { http: { method: string; url: string } }).http.method} ${new URL((f.l7 as { http: { url: string } }).http.url, "http://relative.invalid").pathname}`);
    expect(seen, JSON.stringify(l7)).toEqual(expect.arrayContaining(["INGRESS FORWARDED GET /public", "INGRESS DROPPED GET /private", "INGRESS DROPPED POST /public", "EGRESS FORWARDED GET /public", "EGRESS DROPPED GET /private"]));
    // The proxy's identities are the datapath's: the client's L7 requests carry the identity its L3/L4 flows do.
    const l34 = observe("--from-pod", "client", "--last", "0").find((f) => f.Type === "L3_L4" && (f.source as { pod_name?: string }).pod_name === "client");
    expect(l34, "an L3/L4 flow from client").toBeDefined();
    for (const f of requests) expect((f.source as { identity: number }).identity).toBe((l34!.source as { identity: number }).identity);
    const m = metrics();
    expect(Number(/^ciliate_proxy_requests_total\{protocol="http",verdict="DROPPED"\} (\d+)$/m.exec(m)?.[1] ?? 0)).toBeGreaterThanOrEqual(4);
    expect(Number(/^ciliate_proxy_listeners (\d+)$/m.exec(m)?.[1] ?? 0)).toBe(2);
  }, 30_000);

  it("with the listening sockets destroyed under a live agent (ss -K), the programs drop (178) and report it in observe", async () => {
    const before = counter(metrics(), "PROXY_LOOKUP_FAILED", "INGRESS");
    // The ProxyListeners entries stay (the agent does not know); only the kernel's socket lookup can tell.
    sh("ip", ["netns", "exec", NODE, "ss", "-K", "-t", "state", "listening", "( sport >= :10000 and sport <= :10999 )"]);
    expect(http(8080, "GET", "/public")).toMatchObject({ ok: false, error: "timeout" });
    expect(http(8081, "GET", "/public")).toMatchObject({ ok: false, error: "timeout" });
    expect(counter(metrics(), "PROXY_LOOKUP_FAILED", "INGRESS")).toBeGreaterThan(before);
    expect(Number(/^ciliate_proxy_redirect_drops_total\{reason="PROXY_LOOKUP_FAILED",direction="EGRESS"\} (\d+)$/m.exec(metrics())?.[1] ?? 0)).toBeGreaterThan(0);
    await new Promise((r) => setTimeout(r, 300));
    const drops = observe("--verdict", "DROPPED", "--from-pod", "client", "--last", "0").filter((f) => f.drop_reason === 178);
    expect(drops.map((f) => f.traffic_direction), h.log).toEqual(expect.arrayContaining(["INGRESS", "EGRESS"]));
  }, 60_000);

  it("with the proxy killed, nothing passes: connections fail, the datapath drops them as PROXY_LOOKUP_FAILED; back with the agent", async () => {
    const before = counter(metrics(), "PROXY_LOOKUP_FAILED", "INGRESS") + counter(metrics(), "PROXY_LOOKUP_FAILED", "EGRESS");
    // SIGKILL: the agent cannot clear ProxyListeners; the programs find no socket and drop.
    await h.killAgent();
    for (const [port, path] of [[8080, "/public"], [8080, "/private"], [8081, "/public"]] as const) {
      expect(http(port, "GET", path), `${port} ${path}`).toMatchObject({ ok: false, error: "timeout" });
    }
    await h.startAgent();
    const after = counter(metrics(), "PROXY_LOOKUP_FAILED", "INGRESS") + counter(metrics(), "PROXY_LOOKUP_FAILED", "EGRESS");
    expect(after).toBeGreaterThan(before);
    expect(counter(metrics(), "PROXY_LOOKUP_FAILED", "INGRESS")).toBeGreaterThan(0);
    expect(counter(metrics(), "PROXY_LOOKUP_FAILED", "EGRESS")).toBeGreaterThan(0);
    // The restarted agent's proxy serves again.
    await eventually(() => (http(8080, "GET", "/public").ok as boolean) === true, 15_000, () => h.log);
  }, 90_000);

  it("with the agent stopped cleanly, its listeners and ProxyListeners entries go: redirected traffic is dropped in core (178)", async () => {
    const total = () => counter(metrics(), "PROXY_LOOKUP_FAILED", "INGRESS") + counter(metrics(), "PROXY_LOOKUP_FAILED", "EGRESS");
    const before = total();
    await stopProcess(h.agent);
    expect(http(8080, "GET", "/public")).toMatchObject({ ok: false, error: "timeout" });
    expect(http(8081, "GET", "/public")).toMatchObject({ ok: false, error: "timeout" });
    await h.startAgent();
    expect(total()).toBeGreaterThan(before);
    await eventually(() => (http(8081, "GET", "/public").ok as boolean) === true, 15_000, () => h.log);
  }, 90_000);
});

/** pod-tool's HTTP server in the server pod on `port` (2 minutes). */
function spawnServer(port: number): ChildProcess {
  return spawn("ip", ["netns", "exec", NS("server"), process.execPath, TOOL, "http-serve", "server", "120000", String(port)], { stdio: "ignore" });
}
