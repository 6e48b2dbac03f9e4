/*
 * End-to-end: L7 policy on a node made of network namespaces (the real `ciliate agent`, pods joined by
 * `ciliate cni`, a real HTTP server and client from tests/agent/pod-tool.cjs). Three pods: client, server
 * (HTTP on 8080 and 8081) and other.
 *   - ingress: a CiliumNetworkPolicy lets client reach server:8080 only with GET /public;
 *   - egress: client may reach server:8081 only with GET /public (a rule on client's egress).
 * Never fail open: when no proxy takes the redirected traffic, nothing reaches the server — connections
 * time out, and the datapath counts and reports the drops as PROXY_LOOKUP_FAILED (178).
 * Kernel suite: runs as root (fails in CI when it cannot); everything is removed in afterAll.
 */
import { execFileSync, spawn, type ChildProcess } from "node:child_process";
import { mkdirSync, mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { kernelSuite, removePinRoot } from "../../datapath/index.ts";
import { BIN, TOOL, cni, scrapeMetrics, sh, startAgent, stopProcess, tool, writeFileAtomic } from "./e2e-helpers.ts";

const suite = kernelSuite("agent-e2e-l7", ["root", "libbpf", "bpffs", "iproute2"]);
const TAG = `${process.pid % 10000}${Math.floor(Math.random() * 1000)}`;
const NS = (n: string) => `cil7-${TAG}-${n}`;
const NODE = NS("node");
const PODS = ["client", "server", "other"];
const PIN = `/sys/fs/bpf/ciliate-test-l7-${process.pid}-${Math.floor(Math.random() * 1e6)}`;
const NODE_IP = "192.168.59.1";
const POD_CIDR = "10.244.4.0/24";
const METRICS = "127.0.0.1:19964";

let dir = "";
let manifests = "";
let socket = "";
let agent: ChildProcess | undefined;
let agentLog = "";
const podIp = new Map<string, string>();
const servers: ChildProcess[] = [];

const POD_YAML = (name: string) => `apiVersion: v1
kind: Pod
metadata: {name: ${name}, namespace: default, labels: {app: ${name}}}
spec: {containers: [{name: c, image: x}]}
`;

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

const write = (file: string, text: string) => writeFileAtomic(join(manifests, file), text);
const metrics = () => scrapeMetrics(NODE, METRICS);
const counter = (text: string, reason: string, direction: string) =>
  Number(new RegExp(`^ciliate_drop_count_total\\{reason="${reason}",direction="${direction}"\\} (\\d+)$`, "m").exec(text)?.[1] ?? 0);
const http = (port: number, method: string, path: string, n = 1) => tool(NS("client"), "http", podIp.get("server")!, port, method, path, n);
const observe = (...args: string[]) =>
  execFileSync(process.execPath, [BIN, "observe", "--socket", socket, ...args], { encoding: "utf8", timeout: 30_000 })
    .trim()
    .split("\n")
    .filter(Boolean)
    .map((l) => JSON.parse(l).flow as Record<string, unknown>);

describe.skipIf(suite.skip)("ciliate agent: L7 policy never fails open (network namespaces)", () => {
  beforeAll(async () => {
    dir = mkdtempSync(join(tmpdir(), "ciliate-agent-l7-"));
    manifests = join(dir, "manifests");
    mkdirSync(manifests);
    socket = join(dir, "state", "agent.sock");
    write("pods.yaml", PODS.map(POD_YAML).join("---\n"));
    write("ingress.yaml", INGRESS_L7);
    write("egress.yaml", EGRESS_L7);
    for (const n of ["node", ...PODS]) sh("ip", ["netns", "add", NS(n)]);
    sh("ip", ["-n", NODE, "link", "set", "lo", "up"]);
    agent = await startAgent(
      NODE,
      socket,
      ["-f", manifests, "--node-name", "node-1", "--node-ip", NODE_IP, "--pod-cidr", POD_CIDR, "--bpffs", PIN, "--state-dir", join(dir, "state"),
        "--socket", socket, "--metrics-addr", METRICS, "--resync-interval", "100"],
      (d) => (agentLog += d),
    );
    for (const p of PODS) {
      const r = cni(socket, "ADD", { containerId: `l7-${TAG}-${p}`, netns: `/var/run/netns/${NS(p)}`, pod: p });
      expect(r.code, JSON.stringify(r.out)).toBe(0);
      podIp.set(p, (r.out.ips as { address: string }[])[0]!.address.split("/")[0]!);
    }
    for (const port of [8080, 8081]) servers.push(spawnServer(port));
    await new Promise((r) => setTimeout(r, 700)); // servers listening
  }, 60_000);

  afterAll(async () => {
    if (process.env.CILIATE_E2E_KEEP === "1") {
      console.log(`CILIATE_E2E_KEEP=1: left namespaces ${NS("*")}, pins ${PIN}, state ${dir}\n${agentLog}`);
      return;
    }
    try {
      for (const s of servers) s.kill("SIGKILL");
      await stopProcess(agent);
    } finally {
      for (const n of ["node", ...PODS]) sh("ip", ["netns", "del", NS(n)], true);
      removePinRoot(PIN);
      if (dir) rmSync(dir, { recursive: true, force: true });
      if (process.env.CILIATE_E2E_LOG) console.log(agentLog);
    }
  }, 60_000);

  it("with no proxy listening, ingress-L7 traffic never reaches the server: dropped as PROXY_LOOKUP_FAILED", () => {
    const before = counter(metrics(), "PROXY_LOOKUP_FAILED", "INGRESS");
    for (const [method, path] of [["GET", "/public"], ["GET", "/private"], ["POST", "/public"]] as const) {
      expect(http(8080, method, path), `${method} /${path}\n${agentLog}`).toMatchObject({ ok: false, error: "timeout" });
    }
    expect(counter(metrics(), "PROXY_LOOKUP_FAILED", "INGRESS")).toBeGreaterThan(before);
  }, 30_000);

  it("with no proxy listening, egress-L7 traffic never leaves the client: dropped as PROXY_LOOKUP_FAILED", () => {
    const before = counter(metrics(), "PROXY_LOOKUP_FAILED", "EGRESS");
    expect(http(8081, "GET", "/public"), agentLog).toMatchObject({ ok: false, error: "timeout" });
    expect(counter(metrics(), "PROXY_LOOKUP_FAILED", "EGRESS")).toBeGreaterThan(before);
  }, 30_000);

  it("shows the drops in `ciliate observe` with Hubble's reason", async () => {
    await new Promise((r) => setTimeout(r, 300)); // the observer polls every 100 ms
    const drops = observe("--verdict", "DROPPED", "--from-pod", "client", "--last", "0", "-o", "json");
    const proxyDrops = drops.filter((f) => f.drop_reason_desc === "PROXY_LOOKUP_FAILED");
    expect(proxyDrops.map((f) => f.traffic_direction).sort(), JSON.stringify(drops)).toEqual(expect.arrayContaining(["EGRESS", "INGRESS"]));
    expect(proxyDrops.every((f) => f.drop_reason === 178)).toBe(true);
  }, 30_000);
});

/** pod-tool's HTTP server in the server pod on `port` (2 minutes). */
function spawnServer(port: number): ChildProcess {
  return spawn("ip", ["netns", "exec", NS("server"), process.execPath, TOOL, "http-serve", "server", "120000", String(port)], { stdio: "ignore" });
}
