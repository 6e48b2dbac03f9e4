/*
 * End-to-end: the real `ciliate agent` and `ciliate cni` on a node made of network namespaces this test
 * creates (issue #6 item 7). A "node" namespace holds the agent (started with nsenter so it shares this
 * process's bpffs), pods are namespaces joined by CNI ADD, and an "ext" namespace plays an external client on
 * a veth to the node's device. Traffic is real TCP and UDP from short node processes (tests/agent/pod-tool.cjs).
 * Covers: CNI ADD/CHECK/DEL/VERSION and a repeated ADD, pod-to-pod allowed and denied by policy, UDP,
 * ClusterIP balanced over two backends with replies reverse-NATed, NodePort from outside, a policy update,
 * a live update with traffic running (no allowed flow lost, no denied flow let through), invalid manifests,
 * metrics, a restart that keeps an established connection and removes a stale endpoint, and a restart
 * with --xdp-acceleration (from-network at XDP on the device) that still serves the NodePort.
 * Kernel suite: runs as root (fails in CI when it cannot); everything is removed in afterAll.
 */
import { skipUnless } from "../helpers/tools.ts";
import { execFileSync, type ChildProcess } from "node:child_process";
import { mkdirSync, mkdtempSync, readFileSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { kernelSuite, removePinRoot } from "../../datapath/index.ts";
import { callApi } from "../../agent/api.ts";
import * as grpc from "@grpc/grpc-js";
import { LOADER_OPTIONS, loadObserverPackage } from "../../agent/observer-grpc.ts";
import { protoProblems } from "../../host/hubble-proto.ts";
import * as h from "./e2e-helpers.ts";
import { BIN, ROOT, eventually, sh, tool, toolAsync, writeFileAtomic as writeFileSync } from "./e2e-helpers.ts";

const suite = kernelSuite("agent-e2e", ["root", "libbpf", "bpffs", "iproute2"]);
const TAG = `${process.pid % 10000}${Math.floor(Math.random() * 1000)}`;
const NS = (n: string) => `cil-${TAG}-${n}`;
const NODE = NS("node");
const PODS = ["client", "server", "server2", "other", "late", "gone"];
const PIN = `/sys/fs/bpf/ciliate-test-${process.pid}-${Math.floor(Math.random() * 1e6)}`;
const NODE_IP = "192.168.56.11";
const EXT_IP = "192.168.56.100";
const CLUSTER_IP = "10.96.0.10";
const NODE_PORT = 30080;
const METRICS = "127.0.0.1:19962";
const PING = join(ROOT, "tests/agent/ping.py");
const hasPython = !skipUnless((() => {
  try {
    execFileSync("python3", ["-c", "pass"]);
    return true;
  } catch {
    return false;
  }
})(), "python3 (the ICMP end-to-end test's raw-socket echo, tests/agent/ping.py)");

let dir = "";
let manifests = "";
let socket = "";
let agent: ChildProcess | undefined;
let agentLog = "";
const podIp = new Map<string, string>();

const servers: ChildProcess[] = [];
function serve(pod: string, ms = 100_000): void {
  servers.push(h.serve(NS(pod), pod, ms));
}

function cni(command: string, pod: string, extra: Record<string, string> = {}): { code: number; out: Record<string, unknown> } {
  return h.cni(socket, command, { containerId: `ctr-${TAG}-${pod}`, netns: `/var/run/netns/${NS(pod)}`, pod }, extra);
}

const POD_YAML = (name: string, app: string) => `apiVersion: v1
kind: Pod
metadata: {name: ${name}, namespace: default, labels: {app: ${app}}}
spec: {containers: [{name: c, image: x, ports: [{containerPort: 8080}, {containerPort: 5353, protocol: UDP}]}]}
`;

const SERVICE_YAML = `apiVersion: v1
kind: Service
metadata: {name: web, namespace: default}
spec:
  type: NodePort
  clusterIP: ${CLUSTER_IP}
  selector: {app: server}
  ports: [{name: http, port: 80, targetPort: 8080, protocol: TCP, nodePort: ${NODE_PORT}}]
`;

/** server pods: TCP 8080 and UDP 5353 from app=client; TCP 8080 from outside (world); `extra` more rules. */
const POLICY_YAML = (extra = "") => `apiVersion: cilium.io/v2
kind: CiliumNetworkPolicy
metadata: {name: web, namespace: default}
spec:
  endpointSelector: {matchLabels: {app: server}}
  ingress:
  - fromEndpoints: [{matchLabels: {app: client}}]
    toPorts: [{ports: [{port: "8080", protocol: TCP}, {port: "5353", protocol: UDP}]}]
  - fromEntities: [world]
    toPorts: [{ports: [{port: "8080", protocol: TCP}]}]
  - fromEndpoints: [{matchLabels: {app: client}}]
    icmps: [{fields: [{type: 8, family: IPv4}]}]
${extra}`;

function writeManifests(policyExtra = ""): void {
  writeFileSync(join(manifests, "pods.yaml"), ["client", "server", "server2", "other", "late"].map((p) => POD_YAML(p, p === "server2" ? "server" : p)).join("---\n"));
  writeFileSync(join(manifests, "service.yaml"), SERVICE_YAML);
  writeFileSync(join(manifests, "policy.yaml"), POLICY_YAML(policyExtra));
}

async function startAgent(extra: string[] = []): Promise<void> {
  agentLog = "";
  agent = await h.startAgent(
    NODE,
    socket,
    ["-f", manifests, "--node-name", "node-1", "--node-ip", NODE_IP, "--pod-cidr", "10.244.1.0/24",
      "--bpffs", PIN, "--state-dir", join(dir, "state"), "--socket", socket, "--metrics-addr", METRICS, "--device", "ext0", "--resync-interval", "100", "--export-file", join(dir, "flows.log"), "--export-allow", '{"verdict":["DROPPED"]}', ...extra],
    (d) => (agentLog += d),
  );
}

const stopAgent = () => h.stopProcess(agent);

const metrics = () => h.scrapeMetrics(NODE, METRICS);

/** The datapath's drop counters, for failure messages. */
const drops = () => metrics().split("\n").filter((l) => l.startsWith("ciliate_drop_count_total")).join("; ");

const reconciles = () => Number(/ciliate_reconcile_total\{outcome="ok"\} (\d+)/.exec(metrics())?.[1] ?? 0);

describe.skipIf(suite.skip)("ciliate agent end to end (network namespaces)", () => {
  beforeAll(async () => {
    dir = mkdtempSync(join(tmpdir(), "ciliate-agent-e2e-"));
    manifests = join(dir, "manifests");
    mkdirSync(manifests);
    socket = join(dir, "state", "agent.sock");
    writeManifests();
    sh("ip", ["netns", "add", NODE]);
    sh("ip", ["-n", NODE, "link", "set", "lo", "up"]);
    for (const p of [...PODS, "ext"]) sh("ip", ["netns", "add", NS(p)]);
    // The external client's link to the node's device.
    sh("ip", ["link", "add", "ext0", "netns", NODE, "type", "veth", "peer", "name", "eth0", "netns", NS("ext")]);
    sh("ip", ["-n", NODE, "addr", "add", `${NODE_IP}/24`, "dev", "ext0"]);
    sh("ip", ["-n", NODE, "link", "set", "ext0", "up"]);
    sh("ip", ["-n", NS("ext"), "addr", "add", `${EXT_IP}/24`, "dev", "eth0"]);
    sh("ip", ["-n", NS("ext"), "link", "set", "eth0", "up"]);
    const mac = (ns: string, dev: string) => (JSON.parse(sh("ip", ["-n", ns, "-j", "link", "show", "dev", dev])) as { address: string }[])[0]!.address;
    sh("ip", ["-n", NS("ext"), "neigh", "replace", NODE_IP, "lladdr", mac(NODE, "ext0"), "dev", "eth0", "nud", "permanent"]);
    sh("ip", ["-n", NODE, "neigh", "replace", EXT_IP, "lladdr", mac(NS("ext"), "eth0"), "dev", "ext0", "nud", "permanent"]);
    await startAgent();
  }, 60_000);

  afterAll(async () => {
    if (process.env.CILIATE_E2E_KEEP === "1") {
      console.log(`CILIATE_E2E_KEEP=1: left namespaces ${NS("*")}, pins ${PIN}, state ${dir}\n${agentLog}`);
      return;
    }
    for (const s of servers) s.kill("SIGKILL");
    await stopAgent();
    for (const p of [...PODS, "ext", "node"]) sh("ip", ["netns", "del", NS(p)], true);
    removePinRoot(PIN);
    if (dir) rmSync(dir, { recursive: true, force: true });
    if (process.env.CILIATE_E2E_LOG) console.log(agentLog);
  }, 60_000);

  it("CNI VERSION, ADD (interfaces, IPs, routes) for every pod, a repeated ADD, and CHECK", () => {
    const v = cni("VERSION", "client");
    expect(v.code).toBe(0);
    expect(v.out.supportedVersions).toContain("1.0.0");
    for (const p of PODS) {
      const r = cni("ADD", p);
      expect(r.code, JSON.stringify(r.out)).toBe(0);
      const ips = r.out.ips as { address: string; gateway: string }[];
      expect(ips[0]!.address).toMatch(/^10\.244\.1\.\d+\/32$/);
      expect(ips[0]!.gateway).toBe("169.254.1.1");
      expect((r.out.interfaces as { name: string; sandbox?: string }[])[1]).toMatchObject({ name: "eth0", sandbox: `/var/run/netns/${NS(p)}` });
      expect(r.out.routes).toEqual([{ dst: "0.0.0.0/0", gw: "169.254.1.1" }]);
      podIp.set(p, ips[0]!.address.split("/")[0]!);
    }
    expect(new Set(podIp.values()).size).toBe(PODS.length); // never handed out twice
    const again = cni("ADD", "client");
    expect(again.code).toBe(0);
    expect((again.out.ips as { address: string }[])[0]!.address).toBe(`${podIp.get("client")}/32`);
    expect(cni("ADD", "client", { CNI_NETNS: `/var/run/netns/${NS("other")}` }).out.code).toBe(4);
    expect(cni("CHECK", "client").code).toBe(0);
    expect(cni("CHECK", "nosuch").out.code).toBe(3);
    expect(cni("ADD", "x", { CNI_NETNS: "" }).out.code).toBe(4);
    for (const p of ["server", "server2"]) serve(p);
  }, 90_000);

  it("allows client → server over TCP and UDP, denies other → server (policy)", async () => {
    await new Promise((r) => setTimeout(r, 500)); // servers listening
    expect(tool(NS("client"), "tcp", podIp.get("server")!, 8080)).toEqual({ ok: true, reply: "server" });
    expect(tool(NS("client"), "udp", podIp.get("server")!, 5353)).toEqual({ ok: true, reply: "server" });
    expect(tool(NS("other"), "tcp", podIp.get("server")!, 8080).ok).toBe(false);
    expect(tool(NS("other"), "udp", podIp.get("server")!, 5353).ok).toBe(false);
    const m = metrics();
    expect(m).toMatch(/ciliate_drop_count_total\{reason="POLICY_DENIED",direction="INGRESS"\} [1-9]/);
    expect(m).toMatch(/ciliate_forward_count_total\{direction="EGRESS"\} [1-9]/);
    expect(m).toMatch(/ciliate_endpoint 6/);
    expect(m).toMatch(/ciliate_bpf_map_pressure\{map_name="ciliate_policy_v1"\} 0\.0*[1-9]/);
    expect(m).toMatch(/ciliate_bpf_map_pressure\{map_name="ciliate_ct_v1"\} 0\.0*[1-9]/);
    expect(m).toMatch(/ciliate_policy_regeneration_seconds_count [1-9]/);
    expect(m).toMatch(/ciliate_reconcile_total\{outcome="ok"\} [1-9]/);
  }, 30_000);

  it.skipIf(!hasPython)("allows ICMP echo client → server and denies it other → server", () => {
    const ping = (ns: string, host: string) => JSON.parse(sh("ip", ["netns", "exec", ns, "python3", PING, host, "2"]).trim()) as { sent: number; received: number };
    expect(ping(NS("client"), podIp.get("server")!)).toEqual({ sent: 2, received: 2 });
    expect(ping(NS("other"), podIp.get("server")!)).toEqual({ sent: 2, received: 0 });
  }, 30_000);

  it("shows the flows in `ciliate observe` (JSON with Hubble's names, compact text, filters) and counts verdicts", async () => {
    await new Promise((r) => setTimeout(r, 300)); // the observer polls every 100 ms
    const observe = (...args: string[]) => execFileSync(process.execPath, [BIN, "observe", "--socket", socket, ...args], { encoding: "utf8", timeout: 30_000 });
    const dropped = observe("--verdict", "DROPPED", "--from-pod", "default/other", "--to-pod", "server", "--last", "0", "-o", "json").trim().split("\n").map((l) => JSON.parse(l).flow);
    expect(dropped.length).toBeGreaterThan(0);
    expect(dropped[0]).toMatchObject({ verdict: "DROPPED", drop_reason_desc: "POLICY_DENIED", traffic_direction: "INGRESS", source: { namespace: "default", pod_name: "other" }, destination: { pod_name: "server" } });
    const allowed = observe("--from-pod", "client", "--port", "8080", "--last", "5");
    expect(allowed).toMatch(/default\/client:\d+ \(ID:\d+\) -> default\/server:8080 \(ID:\d+\) policy-verdict:L3-L4 INGRESS ALLOWED/);
    expect(metrics()).toMatch(/ciliate_policy_verdict_total\{direction="INGRESS",match="none",action="denied"\} [1-9]/);
    // Cilium's and Hubble's names beside ours (docs/observability.md), and the export file keeps only drops
    const m = metrics();
    expect(m).toMatch(/cilium_drop_count_total\{reason="Policy denied",direction="INGRESS"\} [1-9]/);
    expect(m).toMatch(/cilium_forward_count_total\{direction="EGRESS"\} [1-9]/);
    expect(m).toMatch(/cilium_endpoint 6/);
    expect(m).toMatch(/hubble_drop_total\{reason="POLICY_DENIED",protocol="TCP"\} [1-9]/);
    expect(m).toMatch(/hubble_policy_verdicts_total\{direction="ingress",match="l3-l4",action="forwarded"\} [1-9]/);
    const exportedFlows = readFileSync(join(dir, "flows.log"), "utf8").trim().split("\n").map((l) => JSON.parse(l).flow);
    expect(exportedFlows.length).toBeGreaterThan(0);
    expect(exportedFlows.every((fl) => fl.verdict === "DROPPED")).toBe(true);
    expect(exportedFlows.some((fl) => fl.source.pod_name === "other" && fl.drop_reason_desc === "POLICY_DENIED")).toBe(true);
  }, 30_000);

  it("serves the same flows on the Hubble Observer gRPC API (hubble.sock beside the agent socket), valid against flow.proto", async () => {
    const pkg = loadObserverPackage({ ...LOADER_OPTIONS, oneofs: false, json: true });
    const client = new pkg.observer.Observer(`unix://${join(dir, "state", "hubble.sock")}`, grpc.credentials.createInsecure()) as unknown as { GetFlows(r: object): grpc.ClientReadableStream<{ flow: Record<string, unknown> }>; close(): void };
    try {
      const flows = await new Promise<Record<string, unknown>[]>((resolve, reject) => {
        const out: Record<string, unknown>[] = [];
        const call = client.GetFlows({ number: 20, whitelist: [{ verdict: ["DROPPED"], source_pod: ["default/other"] }] });
        call.on("data", (r) => out.push(r.flow));
        call.on("error", reject);
        call.on("end", () => resolve(out));
      });
      expect(flows.length).toBeGreaterThan(0);
      for (const fl of flows) expect(protoProblems(fl)).toEqual([]);
      expect(flows[0]).toMatchObject({ verdict: "DROPPED", drop_reason_desc: "POLICY_DENIED", source: { namespace: "default", pod_name: "other" } });
    } finally {
      client.close();
    }
  }, 30_000);

  it("balances ClusterIP connections over both backends, replies reverse-NATed to the service", async () => {
    const r = tool(NS("client"), "loop", CLUSTER_IP, 80, 3000, 20);
    // A reply that still carried the backend's address would not match the client's socket: every success
    // proves the reverse NAT.
    expect(r.fail, drops()).toBe(0);
    const replies = r.replies as Record<string, number>;
    expect(Object.keys(replies).sort()).toEqual(["server", "server2"]);
    expect(tool(NS("other"), "tcp", CLUSTER_IP, 80).ok).toBe(false);
  }, 30_000);

  it("serves a NodePort to an external client", () => {
    const r = tool(NS("ext"), "tcp", NODE_IP, NODE_PORT);
    expect(r.ok, JSON.stringify(r)).toBe(true);
    expect(["server", "server2"]).toContain(r.reply);
  }, 30_000);

  it("applies a policy update from the manifests directory", async () => {
    expect(tool(NS("other"), "tcp", podIp.get("server")!, 8080).ok).toBe(false);
    writeManifests(`  - fromEndpoints: [{matchLabels: {app: other}}]\n    toPorts: [{ports: [{port: "8080", protocol: TCP}]}]\n`);
    await eventually(() => tool(NS("other"), "tcp", podIp.get("server")!, 8080).ok === true);
    writeManifests();
    await eventually(() => tool(NS("other"), "tcp", podIp.get("server")!, 8080).ok === false);
  }, 60_000);

  it("keeps allowed flows and denied flows while policy, pods and backends change", async () => {
    const before = reconciles();
    serve("late", 30_000); // listening before it becomes a backend
    await new Promise((r) => setTimeout(r, 700));
    const allowed = toolAsync(NS("client"), "loop", podIp.get("server")!, 8080, 4000, 10);
    const viaService = toolAsync(NS("client"), "loop", CLUSTER_IP, 80, 4000, 10);
    const denied = toolAsync(NS("other"), "loop", podIp.get("server2")!, 8080, 4000, 10);
    await new Promise((r) => setTimeout(r, 500));
    // A new label set (new identity), a rule for it, and the late pod joining the service's backends.
    writeFileSync(join(manifests, "late.yaml"), POD_YAML("late2", "newcomer"));
    writeManifests(`  - fromEndpoints: [{matchLabels: {app: newcomer}}]\n    toPorts: [{ports: [{port: "9999", protocol: TCP}]}]\n`);
    await new Promise((r) => setTimeout(r, 1000));
    writeFileSync(join(manifests, "pods.yaml"), ["client", "server", "server2", "other"].map((p) => POD_YAML(p, p === "server2" ? "server" : p)).join("---\n") + "---\n" + POD_YAML("late", "server"));
    const [a, s, d] = await Promise.all([allowed, viaService, denied]);
    expect(reconciles()).toBeGreaterThan(before + 1);
    const why = drops();
    expect(a.fail, `${JSON.stringify(a)} drops: ${why}`).toBe(0);
    expect(a.ok).toBeGreaterThan(20);
    expect(s.fail, `${JSON.stringify(s)} drops: ${why}`).toBe(0);
    expect(d.ok, JSON.stringify(d)).toBe(0);
    rmSync(join(manifests, "late.yaml"));
    writeManifests();
  }, 60_000);

  it("keeps the running state when the manifests become invalid, and reports it", async () => {
    writeFileSync(join(manifests, "broken.yaml"), "apiVersion: cilium.io/v2\nkind: CiliumNetworkPolicy\nmetadata: {name: bad, namespace: default}\nspec: {endpointSelector: {matchLabels: {app: server}}, ingress: [{fromEndpoints: 7}]}\n");
    await eventually(() => /ciliate_invalid_input 1/.test(metrics()));
    expect(tool(NS("client"), "tcp", podIp.get("server")!, 8080).ok).toBe(true);
    expect(tool(NS("other"), "tcp", podIp.get("server")!, 8080).ok).toBe(false);
    rmSync(join(manifests, "broken.yaml"));
    await eventually(() => /ciliate_invalid_input 0/.test(metrics()));
  }, 30_000);

  it("restarts without breaking an established connection and removes stale endpoints", async () => {
    const held = toolAsync(NS("client"), "hold", podIp.get("server")!, 8080, 5000);
    await new Promise((r) => setTimeout(r, 700));
    await stopAgent();
    // While the agent is down: a pod goes away (its namespace, and with it its veth pair).
    sh("ip", ["netns", "del", NS("gone")]);
    await new Promise((r) => setTimeout(r, 500));
    await startAgent();
    const h = await held;
    expect(h.error).toBeNull();
    expect(h.recv).toBe(h.sent);
    expect(h.sent).toBeGreaterThan(30);
    const eps = (await callApi(socket, "GET", "/v1/endpoints")).body as { pod: string }[];
    expect(eps.map((e) => e.pod).sort()).toEqual(PODS.filter((p) => p !== "gone").map((p) => `default/${p}`).sort());
    expect(tool(NS("client"), "tcp", podIp.get("server")!, 8080).ok).toBe(true);
    expect(tool(NS("other"), "tcp", podIp.get("server")!, 8080).ok).toBe(false);
  }, 60_000);

  it("with --xdp-acceleration, from-network runs at XDP on the device and still serves the NodePort", async () => {
    await stopAgent();
    await startAgent(["--xdp-acceleration"]);
    const link = (JSON.parse(sh("ip", ["-n", NODE, "-j", "-d", "link", "show", "dev", "ext0"])) as { xdp?: { mode: number; prog?: { id: number } } }[])[0]!;
    expect(link.xdp?.prog?.id ?? 0, "an XDP program is attached to ext0").toBeGreaterThan(0);
    await eventually(() => tool(NS("ext"), "tcp", NODE_IP, NODE_PORT).ok === true, 10_000, () => agentLog + drops());
    const r = tool(NS("ext"), "tcp", NODE_IP, NODE_PORT);
    expect(["server", "server2"]).toContain(r.reply);
  }, 60_000);

  it("CNI DEL is idempotent and frees the address", () => {
    expect(cni("DEL", "late").code).toBe(0);
    expect(cni("DEL", "late").code).toBe(0);
    expect(cni("DEL", "never-added").code).toBe(0);
    expect(cni("CHECK", "late").out.code).toBe(3);
  }, 30_000);
});
