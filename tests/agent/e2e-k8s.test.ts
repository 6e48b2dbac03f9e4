/*
 * End-to-end in Kubernetes mode (issue #6 items 3 and 8): the real `ciliate agent --kubeconfig` in a node
 * namespace takes its desired state from an API server (tests/agent/fake-apiserver.cjs, serving lists and
 * watch streams from a JSON file) running in a namespace of its own; pods join by `ciliate cni` ADD. A
 * policy change arrives as a watch event and takes effect; the API server going away changes nothing in the
 * datapath; when it comes back the agent relists and catches up. Then the API server flaps: five outages,
 * each with a change made while the agent cannot see it, a connection held throughout; the agent ends on
 * the last state and counts the informer failures (ciliate_k8s_informer_errors_total).
 * Kernel suite: runs as root (fails in CI when it cannot); everything is removed in afterAll.
 */
import { spawn, execFileSync, type ChildProcess } from "node:child_process";
import { mkdtempSync, renameSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { fileURLToPath } from "node:url";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { kernelSuite, removePinRoot } from "../../datapath/index.ts";
import { callApi } from "../../agent/api.ts";
import { scrapeMetrics, toolAsync } from "./e2e-helpers.ts";

const suite = kernelSuite("agent-e2e-k8s", ["root", "libbpf", "bpffs", "iproute2"]);
const ROOT = fileURLToPath(new URL("../..", import.meta.url));
const BIN = join(ROOT, "bin/ciliate.js");
const TOOL = join(ROOT, "tests/agent/pod-tool.cjs");
const API_SERVER = join(ROOT, "tests/agent/fake-apiserver.cjs");
const TAG = `${process.pid % 10000}${Math.floor(Math.random() * 1000)}`;
const NS = (n: string) => `cik-${TAG}-${n}`;
const NODE = NS("node");
const PODS = ["client", "server", "other"];
const PIN = `/sys/fs/bpf/ciliate-test-${process.pid}-${Math.floor(Math.random() * 1e6)}`;
const NODE_IP = "192.168.57.1";
const API_IP = "192.168.57.2";
const API_PORT = 16443;
const METRICS = "127.0.0.1:19972";

let dir = "";
let socket = "";
let stateFile = "";
let agent: ChildProcess | undefined;
let api: ChildProcess | undefined;
let agentLog = "";
const podIp = new Map<string, string>();
const servers: ChildProcess[] = [];

function sh(cmd: string, args: string[], allowFail = false): string {
  try {
    return execFileSync(cmd, args, { encoding: "utf8", stdio: ["ignore", "pipe", "pipe"], timeout: 20_000 });
  } catch (e) {
    if (allowFail) return "";
    throw new Error(`${cmd} ${args.join(" ")}: ${(e as { stderr?: string }).stderr ?? (e as Error).message}`);
  }
}

function tcp(from: string, to: string): boolean {
  const out = sh("ip", ["netns", "exec", NS(from), process.execPath, TOOL, "tcp", podIp.get(to)!, "8080"]);
  return (JSON.parse(out.trim()) as { ok: boolean }).ok;
}

const pod = (name: string) => ({ apiVersion: "v1", kind: "Pod", metadata: { name, namespace: "default", labels: { app: name } }, spec: { nodeName: "node-1", containers: [{ name: "c", image: "x" }] }, status: {} });
const cnp = (fromApps: string[]) => ({
  apiVersion: "cilium.io/v2",
  kind: "CiliumNetworkPolicy",
  metadata: { name: "web", namespace: "default" },
  spec: { endpointSelector: { matchLabels: { app: "server" } }, ingress: [{ fromEndpoints: fromApps.map((a) => ({ matchLabels: { app: a } })), toPorts: [{ ports: [{ port: "8080", protocol: "TCP" }] }] }] },
});

function writeState(fromApps: string[]): void {
  const s = {
    "/api/v1/namespaces": [{ apiVersion: "v1", kind: "Namespace", metadata: { name: "default" } }],
    "/api/v1/pods": PODS.map(pod),
    "/api/v1/services": [],
    "/apis/discovery.k8s.io/v1/endpointslices": [],
    "/apis/networking.k8s.io/v1/networkpolicies": [],
    "/apis/cilium.io/v2/ciliumnetworkpolicies": [cnp(fromApps)],
    "/apis/cilium.io/v2/ciliumclusterwidenetworkpolicies": [],
  };
  writeFileSync(`${stateFile}.tmp`, JSON.stringify(s));
  renameSync(`${stateFile}.tmp`, stateFile);
}

function startApi(): void {
  api = spawn("ip", ["netns", "exec", NS("api"), process.execPath, API_SERVER, stateFile, String(API_PORT)], { stdio: "ignore" });
}

async function stopApi(): Promise<void> {
  const a = api;
  if (!a || a.exitCode !== null) return;
  await new Promise<void>((resolve) => {
    a.once("exit", () => resolve());
    a.kill("SIGKILL");
  });
}

async function eventually(fn: () => boolean, ms = 15_000): Promise<void> {
  const end = Date.now() + ms;
  while (Date.now() < end) {
    if (fn()) return;
    await new Promise((r) => setTimeout(r, 250));
  }
  expect(fn(), agentLog).toBe(true);
}

describe.skipIf(suite.skip)("ciliate agent in Kubernetes mode (network namespaces, fake API server)", () => {
  beforeAll(async () => {
    dir = mkdtempSync(join(tmpdir(), "ciliate-agent-k8s-"));
    socket = join(dir, "state", "agent.sock");
    stateFile = join(dir, "apiserver.json");
    writeState(["client"]);
    for (const n of ["node", "api", ...PODS]) sh("ip", ["netns", "add", NS(n)]);
    sh("ip", ["-n", NODE, "link", "set", "lo", "up"]);
    sh("ip", ["link", "add", "api0", "netns", NODE, "type", "veth", "peer", "name", "eth0", "netns", NS("api")]);
    sh("ip", ["-n", NODE, "addr", "add", `${NODE_IP}/24`, "dev", "api0"]);
    sh("ip", ["-n", NODE, "link", "set", "api0", "up"]);
    sh("ip", ["-n", NS("api"), "addr", "add", `${API_IP}/24`, "dev", "eth0"]);
    sh("ip", ["-n", NS("api"), "link", "set", "eth0", "up"]);
    sh("ip", ["-n", NS("api"), "link", "set", "lo", "up"]);
    const kubeconfig = join(dir, "kubeconfig");
    writeFileSync(kubeconfig, `apiVersion: v1\nkind: Config\nclusters: [{name: c, cluster: {server: "http://${API_IP}:${API_PORT}", insecure-skip-tls-verify: true}}]\nusers: [{name: u, user: {token: test}}]\ncontexts: [{name: x, context: {cluster: c, user: u}}]\ncurrent-context: x\n`);
    startApi();
    agent = spawn(
      "nsenter",
      [`--net=/var/run/netns/${NODE}`, process.execPath, BIN, "agent", "--kubeconfig", kubeconfig, "--node-name", "node-1", "--node-ip", NODE_IP, "--pod-cidr", "10.244.2.0/24", "--bpffs", PIN, "--state-dir", join(dir, "state"), "--socket", socket, "--metrics-addr", METRICS],
      { stdio: ["ignore", "pipe", "pipe"] },
    );
    agent.stdout!.on("data", (d) => (agentLog += d));
    agent.stderr!.on("data", (d) => (agentLog += d));
    const deadline = Date.now() + 45_000;
    for (;;) {
      if (agent.exitCode !== null) throw new Error(`agent exited ${agent.exitCode}: ${agentLog}`);
      if (Date.now() > deadline) throw new Error(`agent did not come up: ${agentLog}`);
      try {
        if ((await callApi(socket, "GET", "/v1/healthz", undefined, 1000)).status === 200) break;
      } catch {
        // not up yet
      }
      await new Promise((r) => setTimeout(r, 250));
    }
    const conf = JSON.stringify({ cniVersion: "1.0.0", name: "ciliate", type: "ciliate-cni", socket });
    for (const p of PODS) {
      const env = { ...process.env, CNI_COMMAND: "ADD", CNI_CONTAINERID: `k8s-${TAG}-${p}`, CNI_NETNS: `/var/run/netns/${NS(p)}`, CNI_IFNAME: "eth0", CNI_ARGS: `K8S_POD_NAMESPACE=default;K8S_POD_NAME=${p}` };
      const out = JSON.parse(execFileSync(process.execPath, [BIN, "cni"], { input: conf, env, encoding: "utf8", timeout: 60_000 })) as { ips: { address: string }[] };
      podIp.set(p, out.ips[0]!.address.split("/")[0]!);
    }
    servers.push(spawn("ip", ["netns", "exec", NS("server"), process.execPath, TOOL, "serve", "server", "120000"], { stdio: "ignore" }));
    await new Promise((r) => setTimeout(r, 700));
  }, 120_000);

  afterAll(async () => {
    for (const s of servers) s.kill("SIGKILL");
    await stopApi();
    if (agent && agent.exitCode === null) {
      const a = agent;
      await new Promise<void>((resolve) => {
        const t = setTimeout(() => a.kill("SIGKILL"), 10_000);
        a.once("exit", () => (clearTimeout(t), resolve()));
        a.kill("SIGTERM");
      });
    }
    for (const n of ["node", "api", ...PODS]) sh("ip", ["netns", "del", NS(n)], true);
    removePinRoot(PIN);
    if (dir) rmSync(dir, { recursive: true, force: true });
  }, 60_000);

  it("programs the policy it lists: client → server allowed, other → server denied", () => {
    expect(tcp("client", "server")).toBe(true);
    expect(tcp("other", "server")).toBe(false);
  }, 30_000);

  it("applies a policy change that arrives as a watch event", async () => {
    writeState(["client", "other"]);
    await eventually(() => tcp("other", "server"));
  }, 30_000);

  it("keeps the datapath as it is while the API server is gone, and catches up when it is back", async () => {
    await stopApi();
    await new Promise((r) => setTimeout(r, 2500)); // watches fail, informers retry, nothing changes
    expect(tcp("client", "server")).toBe(true);
    expect(tcp("other", "server")).toBe(true);
    expect((await callApi(socket, "GET", "/v1/healthz")).status).toBe(200);
    writeState(["client"]); // changed while the agent could not see it
    startApi();
    await eventually(() => !tcp("other", "server"));
    expect(tcp("client", "server")).toBe(true);
  }, 60_000);

  it("survives the API server flapping: ends on the last state, a held connection intact, failures counted", async () => {
    const errorsOf = () =>
      scrapeMetrics(NODE, METRICS)
        .split("\n")
        .filter((l) => l.startsWith("ciliate_k8s_informer_errors_total{"))
        .reduce((n, l) => n + Number(l.split(" ").pop()), 0);
    const before = errorsOf();
    const held = toolAsync(NS("client"), "hold", podIp.get("server")!, 8080, 40_000);
    let apps = ["client"];
    for (let i = 0; i < 5; i++) {
      await stopApi();
      apps = i % 2 === 0 ? ["client", "other"] : ["client"];
      writeState(apps);
      await new Promise((r) => setTimeout(r, 1200 + 300 * i));
      startApi();
      await new Promise((r) => setTimeout(r, 1500));
    }
    // Five outages alternate allowing "other"; the last one (i = 4) allowed it.
    expect(apps).toEqual(["client", "other"]);
    await eventually(() => tcp("other", "server"));
    expect(tcp("client", "server")).toBe(true);
    const r = (await held) as { sent: number; recv: number; error: string | null };
    expect(r.error, JSON.stringify(r)).toBeNull();
    expect(r.recv, JSON.stringify(r)).toBe(r.sent);
    expect(errorsOf(), agentLog).toBeGreaterThan(before);
    expect((await callApi(socket, "GET", "/v1/healthz")).status).toBe(200);
  }, 120_000);
});
