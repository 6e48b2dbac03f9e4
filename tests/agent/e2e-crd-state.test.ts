/*
 * End to end: two nodes (tests/agent/multinode-harness.ts), each with its own `ciliate agent` in crd mode
 * and native routing, sharing one Kubernetes API server (tests/agent/fake-apiserver.cjs, CiliumIdentity,
 * CiliumEndpoint and CiliumNode writable) that runs in the underlay namespace (192.168.57.3). The desired
 * state comes from manifests (-f; crd mode takes only the cilium.io objects from the API): the shared ones
 * hold no Node objects and only the server; the client is in node-1's private manifests. So node-2 learns
 * the client (address, identity, node) only from its CiliumEndpoint, and each node the other's address and
 * pod CIDR only from its CiliumNode (agent/crd-state.ts):
 *   1. a client created on node-1 is admitted by the identity-based ingress policy of the server on
 *      node-2, within a measured time; a pod of another label set is denied; each node routes the other's
 *      pod CIDR; the CiliumEndpoints and CiliumNodes are in the API as Cilium writes them;
 *   2. the API server stopped: a connection held across the outage and new connections between existing
 *      pods keep working on the last state; a client added meanwhile is admitted once the server is back;
 *   3. a pod deleted on node-1 (CNI DEL, manifest gone) takes its CiliumEndpoint with it and leaves
 *      node-2's ipcache; node-1's agent stopped deletes its CiliumNode and CiliumEndpoints;
 *   4. node-1's agent restarted, then killed with SIGKILL: while its Node exists the elected collector
 *      (agent/crd-gc.ts) keeps its objects, and a restart finds them; killed again and its Node deleted
 *      from the API, node-2 drops its route and pods and its objects are collected (time printed).
 * Kernel suite: root, libbpf, bpffs, iproute2 (fails in CI without them).
 */
import { spawn, type ChildProcess } from "node:child_process";
import { renameSync, rmSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { ENDPOINTS_PATH, NODES_PATH, type CiliumEndpoint } from "../../agent/crd-state.ts";
import { IDENTITY_PATH } from "../../agent/identity-crd.ts";
import { LEASE_PATH } from "../../agent/crd-gc.ts";
import { kernelSuite } from "../../datapath/index.ts";
import { cni, eventually, ROOT, sh, stopProcess, tool, toolAsync } from "./e2e-helpers.ts";
import { MultiNodeCluster, SERVER_TCP_POLICY } from "./multinode-harness.ts";

const suite = kernelSuite("agent-e2e-crd-state", ["root", "libbpf", "bpffs", "iproute2"]);
const API_HOST = "192.168.57.3";
const API_PORT = 16445;
let api: ChildProcess | undefined;
let stateFile = "";

function startApi(c: MultiNodeCluster): void {
  api = spawn("ip", ["netns", "exec", c.underlay, process.execPath, join(ROOT, "tests/agent/fake-apiserver.cjs"), stateFile, String(API_PORT)], { stdio: "ignore" });
}

async function stopApi(): Promise<void> {
  const a = api;
  if (!a || a.exitCode !== null || a.signalCode !== null) return;
  const exited = new Promise((r) => a.once("exit", r));
  a.kill("SIGKILL");
  await exited;
}

/** A collection, read in the underlay namespace. */
function apiList<T>(c: MultiNodeCluster, path: string): T[] {
  const out = sh("ip", ["netns", "exec", c.underlay, process.execPath, "-e", `fetch("http://127.0.0.1:${API_PORT}${path}").then(r=>r.text()).then(t=>process.stdout.write(t))`]);
  return (JSON.parse(out) as { items: T[] }).items;
}

/** The test API server's state: its written collections (kept by the server once written) and the Kubernetes Nodes. */
function writeApiState(nodes: string[]): void {
  const written = [IDENTITY_PATH, ENDPOINTS_PATH, NODES_PATH, LEASE_PATH];
  writeFileSync(`${stateFile}.tmp`, JSON.stringify({ writable: written, ...Object.fromEntries(written.map((p) => [p, []])), "/api/v1/nodes": nodes.map((name) => ({ apiVersion: "v1", kind: "Node", metadata: { name } })) }));
  renameSync(`${stateFile}.tmp`, stateFile);
}

const c = new MultiNodeCluster({
  nodes: 2,
  routingMode: "native",
  prefix: "ccs",
  beforeAgents: async (cl) => {
    sh("ip", ["-n", cl.underlay, "addr", "add", `${API_HOST}/24`, "dev", "br0"]);
    stateFile = join(cl.dir, "apiserver.json");
    writeApiState(["node-1", "node-2"]);
    startApi(cl);
    const kubeconfig = join(cl.dir, "kubeconfig");
    writeFileSync(kubeconfig, `apiVersion: v1\nkind: Config\nclusters: [{name: c, cluster: {server: "http://${API_HOST}:${API_PORT}", insecure-skip-tls-verify: true}}]\nusers: [{name: u, user: {token: test}}]\ncontexts: [{name: x, context: {cluster: c, user: u}}]\ncurrent-context: x\n`);
    await eventually(() => {
      try {
        apiList(cl, NODES_PATH);
        return true;
      } catch {
        return false;
      }
    }, 10_000, () => "the test API server did not start");
    cl.opts.agentArgs!.push("--kubeconfig", kubeconfig);
    // No Node objects: the nodes know each other only from their CiliumNodes.
    cl.writeNodes([]);
  },
  // Short garbage-collection interval and lease (defaults 5m and 15s) so the kill test below is quick.
  agentArgs: ["--identity-allocation-mode", "crd", "--nodes-gc-interval", "2s", "--leader-election-lease-duration", "4s"],
});
const ip = (pod: string) => c.pod(pod).ip;
const ns = (pod: string) => c.pod(pod).ns;


describe.skipIf(suite.skip)("two nodes sharing endpoints and nodes as CiliumEndpoints and CiliumNodes (crd mode, native routing)", () => {
  beforeAll(async () => {
    await c.setup();
    c.writeManifest("policy.yaml", SERVER_TCP_POLICY);
    c.addPod(2, "server", { app: "server" });
    c.serve("server", 180_000);
  }, 240_000);

  afterAll(async () => {
    if (process.env.CILIATE_E2E_LOG) console.log(c.logs());
    await c.cleanup();
    await stopApi();
  }, 60_000);

  it("a client created on node-1 only is admitted by node-2's policy through its CiliumEndpoint within a bounded time; another label set is denied", async () => {
    const t0 = performance.now();
    c.addPod(1, "client", { app: "client" }, "default", { only: true });
    const added = performance.now();
    await eventually(() => {
      const e = c.ipcache(2, ip("client"));
      const own = c.endpointIdentity(1, ip("client"));
      return e !== undefined && own !== undefined && own > 255 && e.identity === own && e.tunnelEndpoint === c.node(1).ip;
    }, 20_000, () => `${JSON.stringify(c.ipcache(2, ip("client")))}\n${c.logs()}`);
    const inIpcache = performance.now();
    await eventually(() => tool(ns("client"), "tcp", ip("server"), 8080).ok === true, 20_000, () => c.logs());
    const reachable = performance.now();
    console.log(
      `[e2e-crd-state] client on node-1 → server on node-2: CNI ADD ${(added - t0).toFixed(0)} ms; in node-2's ipcache ${(inIpcache - added).toFixed(0)} ms after; first admitted connection ${(reachable - added).toFixed(0)} ms after`,
    );
    // Routes from the CiliumNodes: each node routes the other's pod CIDR via its address.
    for (const [i, j] of [[1, 2], [2, 1]] as const) await eventually(() => JSON.stringify(c.routes(i)) === JSON.stringify({ [c.node(j).podCIDR]: c.node(j).ip }), 10_000, () => JSON.stringify(c.routes(i)));
    // As Cilium writes them.
    const cep = apiList<CiliumEndpoint>(c, ENDPOINTS_PATH).find((o) => o.metadata?.name === "client");
    expect(cep?.metadata?.namespace).toBe("default");
    expect(cep?.status).toMatchObject({ identity: { id: c.endpointIdentity(1, ip("client")) }, networking: { addressing: [{ ipv4: ip("client") }], node: c.node(1).ip } });
    expect(cep?.status?.identity?.labels).toContain("k8s:app=client");
    expect(apiList<{ metadata: { name: string }; spec: unknown }>(c, NODES_PATH).find((o) => o.metadata.name === "node-1")?.spec).toEqual({ addresses: [{ type: "InternalIP", ip: c.node(1).ip }], ipam: { podCIDRs: [c.node(1).podCIDR] } });
    c.addPod(1, "stranger", { app: "stranger" }, "default", { only: true });
    await eventually(() => (c.ipcache(2, ip("stranger"))?.identity ?? 0) > 255, 20_000, () => c.logs());
    expect(tool(ns("stranger"), "tcp", ip("server"), 8080).ok).toBe(false);
    expect(tool(ns("client"), "tcp", ip("server"), 8080).ok).toBe(true);
  }, 90_000);

  it("the API server stopped: held and new connections keep working on the last state; a client added meanwhile is admitted once it is back", async () => {
    const held = toolAsync(ns("client"), "hold", ip("server"), 8080, 9000);
    await new Promise((r) => setTimeout(r, 500));
    await stopApi();
    await new Promise((r) => setTimeout(r, 1500));
    expect(tool(ns("client"), "tcp", ip("server"), 8080)).toEqual({ ok: true, reply: "server" });
    expect(c.ipcache(2, ip("client"))?.tunnelEndpoint).toBe(c.node(1).ip);
    expect(c.routes(2)).toEqual({ [c.node(1).podCIDR]: c.node(1).ip });
    // Its label set is node-1's already (app=client), but node-2 cannot learn its address.
    c.addPod(1, "client2", { app: "client" }, "default", { only: true });
    await new Promise((r) => setTimeout(r, 3000));
    expect(c.ipcache(2, ip("client2"))).toEqual({ identity: 2, tunnelEndpoint: "" }); // world: only 0.0.0.0/0 covers it
    expect(tool(ns("client2"), "tcp", ip("server"), 8080).ok).toBe(false);
    const h = await held;
    expect(h.error, JSON.stringify(h)).toBeNull();
    expect(h.recv).toBe(h.sent);
    expect(h.sent as number).toBeGreaterThan(30);
    startApi(c);
    const back = performance.now();
    await eventually(() => tool(ns("client2"), "tcp", ip("server"), 8080).ok === true, 30_000, () => c.logs());
    console.log(`[e2e-crd-state] API server back: client2 (added during the outage) admitted on node-2 after ${(performance.now() - back).toFixed(0)} ms`);
    expect(tool(ns("client"), "tcp", ip("server"), 8080).ok).toBe(true);
    expect(tool(ns("stranger"), "tcp", ip("server"), 8080).ok).toBe(false);
  }, 90_000);

  it("a pod deleted takes its CiliumEndpoint and its ipcache entry on the other node; a stopped agent deletes its objects", async () => {
    const strangerIp = ip("stranger");
    const del = cni(c.node(1).socket, "DEL", { containerId: `ctr-${c.tag}-stranger`, netns: `/var/run/netns/${ns("stranger")}`, pod: "stranger", namespace: "default" });
    expect(del.code, JSON.stringify(del.out)).toBe(0);
    rmSync(join(c.privateManifests(c.node(1)), "pod-default-stranger.yaml"));
    await eventually(() => !apiList<CiliumEndpoint>(c, ENDPOINTS_PATH).some((o) => o.metadata?.name === "stranger"), 20_000, () => c.logs());
    await eventually(() => c.ipcache(2, strangerIp)?.identity === 2, 20_000, () => JSON.stringify(c.ipcache(2, strangerIp)));
    await stopProcess(c.node(1).agent);
    // The objects go one after the other while the agent stops.
    const left = () => `${apiList<{ metadata: { name: string } }>(c, NODES_PATH).map((o) => o.metadata.name).join()} ${apiList<CiliumEndpoint>(c, ENDPOINTS_PATH).map((o) => o.metadata?.name).join()}`;
    await eventually(() => left() === "node-2 server", 20_000, () => `${left()}\n${c.logs()}`);
    await eventually(() => !(c.node(1).podCIDR in c.routes(2)), 20_000, () => JSON.stringify(c.routes(2)));
  }, 90_000);

  it("an agent killed with SIGKILL: its objects stay while its Node exists and through its restart; its Node deleted, the other node drops its route and pods within the documented bound", async () => {
    const names = (path: string) => apiList<{ metadata: { name: string } }>(c, path).map((o) => o.metadata.name).sort().join();
    const lease = () => apiList<{ spec: { holderIdentity: string; renewTime: string } }>(c, LEASE_PATH)[0]?.spec;
    // node-1's agent back (its endpoints restored from its state): its objects and node-2's route return.
    await c.startAgent(1);
    await eventually(() => names(NODES_PATH) === "node-1,node-2" && names(ENDPOINTS_PATH) === "client,client2,server", 30_000, () => `${names(NODES_PATH)} ${names(ENDPOINTS_PATH)}\n${c.logs()}`);
    await eventually(() => c.routes(2)[c.node(1).podCIDR] === c.node(1).ip && c.ipcache(2, ip("client"))?.tunnelEndpoint === c.node(1).ip, 30_000, () => JSON.stringify(c.routes(2)));
    const killAgent1 = async () => {
      const a = c.node(1).agent!;
      const exited = new Promise((r) => a.once("exit", r));
      a.kill("SIGKILL");
      await exited;
    };
    await killAgent1();
    // node-2's agent leads (at once, or once the dead agent's 4 s lease expired) and runs passes for three
    // intervals (2 s each): node-1's Node exists, so nothing of node-1 is collected.
    await eventually(() => lease()?.holderIdentity.startsWith("node-2_") === true, 30_000, () => JSON.stringify(lease()));
    const since = Date.parse(lease()!.renewTime);
    await eventually(() => Date.parse(lease()!.renewTime) - since >= 6000, 30_000, () => JSON.stringify(lease()));
    expect(names(NODES_PATH)).toBe("node-1,node-2");
    expect(names(ENDPOINTS_PATH)).toBe("client,client2,server");
    expect(c.routes(2)[c.node(1).podCIDR]).toBe(c.node(1).ip);
    expect(c.node(2).log).not.toMatch(/crd gc: deleted/);
    // Restarted: it keeps them (and its pods stay reachable from node-2's side).
    await c.startAgent(1);
    await eventually(() => tool(ns("client"), "tcp", ip("server"), 8080).ok === true, 30_000, () => c.logs());
    expect(names(NODES_PATH)).toBe("node-1,node-2");
    // Killed again, and its Node deleted: node-2 drops node-1's route and pods.
    await killAgent1();
    writeApiState(["node-2"]);
    const gone = performance.now();
    await eventually(() => !(c.node(1).podCIDR in c.routes(2)) && c.ipcache(2, ip("client"))?.identity === 2, 60_000, () => `${JSON.stringify(c.routes(2))} ${JSON.stringify(c.ipcache(2, ip("client")))}\n${c.node(2).log}`);
    const dropped = performance.now() - gone;
    await eventually(() => names(NODES_PATH) === "node-2" && names(ENDPOINTS_PATH) === "server", 60_000, () => `${names(NODES_PATH)} ${names(ENDPOINTS_PATH)}\n${c.node(2).log}`);
    const collected = performance.now() - gone;
    console.log(`[e2e-crd-state] node-1's agent SIGKILLed and its Node deleted: node-2 dropped its route and pods ${dropped.toFixed(0)} ms after, its CiliumNode and CiliumEndpoints gone ${collected.toFixed(0)} ms after (interval 2 s, lease 4 s)`);
    // The documented bound: 2 × interval (the next pass marks, the one after sweeps), plus slack for the loaded machine.
    expect(dropped).toBeLessThan(2 * 2000 + 15_000);
    expect(collected).toBeLessThan(3 * 2000 + 20_000);
    expect(c.node(2).log).toMatch(/crd gc: deleted CiliumNode node-1 \(its Node is gone\)/);
  }, 240_000);
});
