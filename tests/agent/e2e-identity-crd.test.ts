/*
 * End-to-end of crd identity allocation (`--identity-allocation-mode crd`): two real `ciliate agent`s, each
 * in a node namespace of its own, take their desired state and their CiliumIdentity objects from one API
 * server (tests/agent/fake-apiserver.cjs, with CiliumIdentities writable: create answers 409 when the name
 * is taken, merge patches, deletes) running in a third namespace. Each node gets a client, a server and an
 * "other" pod with the same labels as the other node's, joined through CNI on both nodes at the same moment,
 * so the two agents race to allocate the same label sets.
 *   - Both agents end with one number per label set: the same number in both nodes' ipcache for pods of the
 *     same labels, and that CiliumIdentity references both nodes (status.nodes).
 *   - Each node enforces the policy with those numbers: client → server allowed, other → server denied.
 * Kernel suite: runs as root (fails in CI when it cannot); everything is removed in afterAll.
 */
import { execFileSync, spawn, type ChildProcess } from "node:child_process";
import { mkdirSync, mkdtempSync, renameSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { kernelSuite, openPinnedMap, removePinRoot } from "../../datapath/index.ts";
import { MAP_SPECS } from "../../host/codecs.gen.ts";
import { ipcacheKey } from "../../host/ipcache.ts";
import { ENDPOINTS_PATH, NODES_PATH } from "../../agent/crd-state.ts";
import { cniAsync, eventually, ROOT, sh, startAgent, stopProcess, tool } from "./e2e-helpers.ts";

const suite = kernelSuite("agent-e2e-identity-crd", ["root", "libbpf", "bpffs", "iproute2"]);
const API_SERVER = join(ROOT, "tests/agent/fake-apiserver.cjs");
const TAG = `${process.pid % 10000}${Math.floor(Math.random() * 1000)}`;
const NS = (n: string) => `cic-${TAG}-${n}`;
const API_PORT = 16444;
const IDENTITIES = "/apis/cilium.io/v2/ciliumidentities";
const APPS = ["client", "server", "other"];
/** Node i reaches the API server over a veth pair of its own: API side .4i+1, node side .4i+2. */
const NODES = [1, 2].map((i) => ({ i, name: `node-${i}`, ns: NS(`n${i}`), api: `192.168.63.${4 * i + 1}`, ip: `192.168.63.${4 * i + 2}`, podCIDR: `10.244.${20 + i}.0/24`, pin: `/sys/fs/bpf/ciliate-test-crd-${process.pid}-${i}-${Math.floor(Math.random() * 1e6)}` }));

let dir = "";
let api: ChildProcess | undefined;
const agents: ChildProcess[] = [];
let log = "";
const podIp = new Map<string, string>();
const servers: ChildProcess[] = [];
const podNs = (node: number, app: string) => NS(`n${node}-${app}`);

function writeState(): void {
  const pods = NODES.flatMap((n) => APPS.map((app) => ({ apiVersion: "v1", kind: "Pod", metadata: { name: `${app}-${n.i}`, namespace: "default", labels: { app } }, spec: { nodeName: n.name, containers: [{ name: "c", image: "x" }] }, status: {} })));
  const cnp = { apiVersion: "cilium.io/v2", kind: "CiliumNetworkPolicy", metadata: { name: "web", namespace: "default" }, spec: { endpointSelector: { matchLabels: { app: "server" } }, ingress: [{ fromEndpoints: [{ matchLabels: { app: "client" } }], toPorts: [{ ports: [{ port: "8080", protocol: "TCP" }] }] }] } };
  const s = {
    // crd mode also publishes CiliumEndpoints and CiliumNodes (agent/crd-state.ts).
    writable: [IDENTITIES, ENDPOINTS_PATH, NODES_PATH],
    [ENDPOINTS_PATH]: [],
    [NODES_PATH]: [],
    "/api/v1/namespaces": [{ apiVersion: "v1", kind: "Namespace", metadata: { name: "default" } }],
    "/api/v1/nodes": NODES.map((n) => ({ apiVersion: "v1", kind: "Node", metadata: { name: n.name }, spec: { podCIDR: n.podCIDR }, status: { addresses: [{ type: "InternalIP", address: n.ip }] } })),
    "/api/v1/pods": pods,
    "/api/v1/services": [],
    "/apis/discovery.k8s.io/v1/endpointslices": [],
    "/apis/networking.k8s.io/v1/networkpolicies": [],
    "/apis/cilium.io/v2/ciliumnetworkpolicies": [cnp],
    "/apis/cilium.io/v2/ciliumclusterwidenetworkpolicies": [],
    [IDENTITIES]: [],
  };
  const f = join(dir, "apiserver.json");
  writeFileSync(`${f}.tmp`, JSON.stringify(s));
  renameSync(`${f}.tmp`, f);
}

interface CiliumIdentity {
  metadata: { name: string };
  "security-labels": Record<string, string>;
  status?: { nodes?: Record<string, string> };
}

/** The CiliumIdentity objects, read from the API server's namespace. */
function identities(): CiliumIdentity[] {
  const out = sh("ip", ["netns", "exec", NS("api"), process.execPath, "-e", `fetch("http://127.0.0.1:${API_PORT}${IDENTITIES}").then(r=>r.text()).then(t=>process.stdout.write(t))`]);
  return (JSON.parse(out) as { items: CiliumIdentity[] }).items;
}

/** The identity node `n`'s ipcache gives an address. */
function ipcacheIdentity(n: (typeof NODES)[number], ip: string): number | undefined {
  const m = openPinnedMap(join(n.pin, MAP_SPECS.Ipcache.bpfName), MAP_SPECS.Ipcache);
  try {
    return m.lookup(ipcacheKey(ip))?.secIdentity;
  } finally {
    m.raw.close();
  }
}

const tcp = (node: number, from: string) => (tool(podNs(node, from), "tcp", podIp.get(`server-${node}`)!, 8080) as { ok: boolean }).ok;

describe.skipIf(suite.skip)("crd identity allocation: two agents racing through one API server (network namespaces)", () => {
  beforeAll(async () => {
    dir = mkdtempSync(join(tmpdir(), "ciliate-crd-"));
    writeState();
    sh("ip", ["netns", "add", NS("api")]);
    sh("ip", ["-n", NS("api"), "link", "set", "lo", "up"]);
    for (const n of NODES) {
      sh("ip", ["netns", "add", n.ns]);
      sh("ip", ["-n", n.ns, "link", "set", "lo", "up"]);
      for (const app of APPS) sh("ip", ["netns", "add", podNs(n.i, app)]);
      sh("ip", ["link", "add", `api${n.i}`, "netns", NS("api"), "type", "veth", "peer", "name", "eth0", "netns", n.ns]);
      sh("ip", ["-n", NS("api"), "addr", "add", `${n.api}/30`, "dev", `api${n.i}`]);
      sh("ip", ["-n", NS("api"), "link", "set", `api${n.i}`, "up"]);
      sh("ip", ["-n", n.ns, "addr", "add", `${n.ip}/30`, "dev", "eth0"]);
      sh("ip", ["-n", n.ns, "link", "set", "eth0", "up"]);
    }
    api = spawn("ip", ["netns", "exec", NS("api"), process.execPath, API_SERVER, join(dir, "apiserver.json"), String(API_PORT)], { stdio: "ignore" });
    // Both agents start together.
    const started = await Promise.all(
      NODES.map((n) => {
        const kubeconfig = join(dir, `kubeconfig-${n.i}`);
        writeFileSync(kubeconfig, `apiVersion: v1\nkind: Config\nclusters: [{name: c, cluster: {server: "http://${n.api}:${API_PORT}", insecure-skip-tls-verify: true}}]\nusers: [{name: u, user: {token: test}}]\ncontexts: [{name: x, context: {cluster: c, user: u}}]\ncurrent-context: x\n`);
        mkdirSync(join(dir, `state-${n.i}`));
        return startAgent(
          n.ns,
          join(dir, `state-${n.i}`, "agent.sock"),
          ["--kubeconfig", kubeconfig, "--node-name", n.name, "--node-ip", n.ip, "--pod-cidr", n.podCIDR, "--bpffs", n.pin, "--state-dir", join(dir, `state-${n.i}`), "--socket", join(dir, `state-${n.i}`, "agent.sock"), "--identity-allocation-mode", "crd"],
          (d) => (log += `[${n.name}] ${d}`),
        );
      }),
    );
    agents.push(...started);
    // Every pod on both nodes at once: the two agents allocate the same label sets concurrently.
    const adds = await Promise.all(
      NODES.flatMap((n) => APPS.map(async (app) => ({ key: `${app}-${n.i}`, r: await cniAsync(join(dir, `state-${n.i}`, "agent.sock"), "ADD", { containerId: `crd-${TAG}-${n.i}-${app}`, netns: `/var/run/netns/${podNs(n.i, app)}`, pod: `${app}-${n.i}` }) }))),
    );
    for (const { key, r } of adds) {
      expect(r.code, `${key}: ${JSON.stringify(r.out)}\n${log}`).toBe(0);
      podIp.set(key, (r.out.ips as { address: string }[])[0]!.address.split("/")[0]!);
    }
    for (const n of NODES) servers.push(spawn("ip", ["netns", "exec", podNs(n.i, "server"), process.execPath, join(ROOT, "tests/agent/pod-tool.cjs"), "serve", "server", "120000"], { stdio: "ignore" }));
    await new Promise((r) => setTimeout(r, 700));
  }, 120_000);

  afterAll(async () => {
    try {
      for (const s of servers) s.kill("SIGKILL");
      for (const a of agents) await stopProcess(a);
      api?.kill("SIGKILL");
    } finally {
      for (const n of NODES) {
        for (const app of APPS) sh("ip", ["netns", "del", podNs(n.i, app)], true);
        sh("ip", ["netns", "del", n.ns], true);
        removePinRoot(n.pin);
      }
      sh("ip", ["netns", "del", NS("api")], true);
      if (dir) rmSync(dir, { recursive: true, force: true });
      if (process.env.CILIATE_E2E_LOG) console.log(log);
    }
  }, 60_000);

  it("both agents end with one number per label set, referenced by both nodes", async () => {
    // The number each node's ipcache gives its own pod of each app, once allocated (init until then).
    const sameOnBoth = () =>
      APPS.every((app) => {
        const a = ipcacheIdentity(NODES[0]!, podIp.get(`${app}-1`)!);
        const b = ipcacheIdentity(NODES[1]!, podIp.get(`${app}-2`)!);
        return a !== undefined && a > 255 && a === b;
      });
    await eventually(sameOnBoth, 30_000, () => `${JSON.stringify(identities())}\n${log}`);
    const objs = identities();
    for (const app of APPS) {
      const id = ipcacheIdentity(NODES[0]!, podIp.get(`${app}-1`)!)!;
      const obj = objs.find((o) => Number(o.metadata.name) === id);
      expect(obj, JSON.stringify(objs)).toBeDefined();
      expect(obj!["security-labels"]["k8s:app"]).toBe(app);
      // Both nodes reference the number they use (the loser of a race references the winner's).
      await eventually(() => {
        const o = identities().find((x) => Number(x.metadata.name) === id);
        return Object.keys(o?.status?.nodes ?? {}).sort().join(",") === "node-1,node-2";
      }, 20_000, () => JSON.stringify(identities()));
    }
    // Three label sets, three numbers: no two apps share one.
    expect(new Set(APPS.map((app) => ipcacheIdentity(NODES[0]!, podIp.get(`${app}-1`)!))).size).toBe(3);
  }, 60_000);

  it("each node enforces the policy with those numbers: client → server allowed, other → server denied", async () => {
    for (const n of [1, 2]) {
      await eventually(() => tcp(n, "client"), 15_000, () => log);
      expect(tcp(n, "other")).toBe(false);
    }
  }, 60_000);
});
