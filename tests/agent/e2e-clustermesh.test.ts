/*
 * End to end: Cluster Mesh with two clusters × two nodes (tests/agent/multinode-harness.ts; nodes 1–2 are
 * cluster east, id 1; nodes 3–4 cluster west, id 2), each node a real `ciliate agent` in kvstore mode and
 * tunnel routing, each cluster with its own etcd in the underlay (192.168.57.2 and .3), each agent given
 * the other cluster's etcd with --clustermesh-config (agent/clustermesh.ts). No manifest lists another
 * node's pod or any Node: a node learns its own cluster's pods and nodes from its etcd and the other
 * cluster's from the other etcd.
 *   1. east's client (node-1) reaches west's web (node-4) through the overlay with its identity (cluster
 *      id 1 in bits 16–23): west's policy admits app=client from io.cilium.k8s.policy.cluster=east; west's
 *      own client (node-3, the same app label) is denied;
 *   2. the global service web (service.cilium.io/global) balances east's client over both clusters'
 *      backends; when east's backend leaves the service, every new connection goes to west's (failover),
 *      and comes back to both when it returns;
 *   3. the --clustermesh-config directory watched: a bad file refused in one line on each east node while
 *      west stays, west's file removed withdraws west's pods and backends, written back reconnects it.
 * Kernel suite: root, libbpf, bpffs, iproute2 (fails in CI without them); etcd required in CI.
 */
import { mkdtempSync, renameSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { basename, dirname, join } from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { kernelSuite } from "../../datapath/index.ts";
import { EtcdServer, hasEtcd } from "../helpers/etcd.ts";
import { skipUnless } from "../helpers/tools.ts";
import { eventually, sh, tool, writeFileAtomic } from "./e2e-helpers.ts";
import { MultiNodeCluster } from "./multinode-harness.ts";

const suite = kernelSuite("agent-e2e-clustermesh", ["root", "libbpf", "bpffs", "iproute2"]);
const noEtcd = suite.skip ? true : skipUnless(hasEtcd(), "etcd (Debian etcd-server)");
const HOSTS = { east: "192.168.57.2", west: "192.168.57.3" } as const;
const etcds: Partial<Record<"east" | "west", EtcdServer>> = {};
const meshDirs = { east: mkdtempSync(join(tmpdir(), "ciliate-mesh-east-")), west: mkdtempSync(join(tmpdir(), "ciliate-mesh-west-")) };
const clusterOf = (i: number) => (i <= 2 ? "east" : "west");

const c = new MultiNodeCluster({
  nodes: 4,
  routingMode: "tunnel",
  prefix: "ccm",
  beforeAgents: async (cl) => {
    for (const [name, host] of Object.entries(HOSTS) as ["east" | "west", string][]) {
      sh("ip", ["-n", cl.underlay, "addr", "add", `${host}/24`, "dev", "br0"]);
      etcds[name] = await EtcdServer.start(cl.underlay, host);
    }
    // Each cluster's --clustermesh-config names the other cluster's etcd (a file named after the cluster).
    writeFileSync(join(meshDirs.east, "west"), `endpoints:\n- ${etcds.west!.endpoint}\n`);
    writeFileSync(join(meshDirs.west, "east"), `endpoints:\n- ${etcds.east!.endpoint}\n`);
    cl.writeNodes([]);
    for (let i = 1; i <= 4; i++) writeFileAtomic(join(cl.privateManifests(cl.node(i)), "cluster.yaml"), clusterManifests(clusterOf(i)));
  },
  agentArgs: ["--identity-allocation-mode", "kvstore", "--kvstore", "etcd", "--kvstore-lease-ttl", "10s"],
  nodeArgs: (i) => {
    const cl = clusterOf(i);
    return ["--cluster-name", cl, "--cluster-id", cl === "east" ? "1" : "2", "--kvstore-opt", `etcd.endpoints=${etcds[cl]!.endpoint}`, "--clustermesh-config", meshDirs[cl]];
  },
});
/** Written atomically through a hidden temporary file of the same directory (skipped by the agent). */
function writeHidden(path: string, text: string): void {
  const tmp = join(dirname(path), `.${basename(path)}.tmp`);
  writeFileSync(tmp, text);
  renameSync(tmp, path);
}
const ip = (pod: string) => c.pod(pod).ip;
const ns = (pod: string) => c.pod(pod).ns;

// Every cluster has the global service web; west's web admits app=client from cluster east only.
function clusterManifests(cluster: "east" | "west"): string {
  const svc = `apiVersion: v1
kind: Service
metadata: {name: web, namespace: default, annotations: {service.cilium.io/global: "true"}}
spec: {clusterIP: 10.96.0.50, selector: {app: web}, ports: [{port: 80, targetPort: 8080}]}
`;
  const policy = `---
apiVersion: cilium.io/v2
kind: CiliumNetworkPolicy
metadata: {name: web-from-east, namespace: default}
spec:
  endpointSelector: {matchLabels: {app: web}}
  ingress:
  - fromEndpoints: [{matchLabels: {app: client, io.cilium.k8s.policy.cluster: east}}]
    toPorts: [{ports: [{port: "8080", protocol: TCP}]}]
`;
  return cluster === "west" ? svc + policy : svc;
}

/** The servers new connections from `pod` to web's ClusterIP reach, over `n` connections. */
function servedBy(pod: string, n: number): Record<string, number> {
  const out: Record<string, number> = {};
  for (let k = 0; k < n; k++) {
    const r = tool(ns(pod), "tcp", "10.96.0.50", 80);
    const who = r.ok ? String(r.reply) : "failed";
    out[who] = (out[who] ?? 0) + 1;
  }
  return out;
}

describe.skipIf(noEtcd)("Cluster Mesh: two clusters × two nodes, each cluster with its own etcd (tunnel routing)", () => {
  beforeAll(async () => {
    await c.setup();
    c.addPod(1, "eclient", { app: "client" }, "default", { only: true });
    c.addPod(2, "eweb", { app: "web" }, "default", { only: true });
    c.addPod(3, "wclient", { app: "client" }, "default", { only: true });
    c.addPod(4, "wweb", { app: "web" }, "default", { only: true });
    c.serve("eweb", 300_000);
    c.serve("wweb", 300_000);
  }, 300_000);

  afterAll(async () => {
    if (process.env.CILIATE_E2E_LOG) console.log(c.logs());
    await c.cleanup();
    for (const e of Object.values(etcds)) await e?.destroy();
    for (const d of Object.values(meshDirs)) rmSync(d, { recursive: true, force: true });
  }, 60_000);

  it("east's client reaches west's web through the overlay with its cluster's identity; west's own client is denied by the cluster label", async () => {
    const t0 = performance.now();
    await eventually(() => {
      const own = c.endpointIdentity(1, ip("eclient"));
      const e = c.ipcache(4, ip("eclient"));
      return own !== undefined && own >>> 16 === 1 && e?.identity === own && e.tunnelEndpoint === c.node(1).ip;
    }, 60_000, () => `${JSON.stringify(c.ipcache(4, ip("eclient")))}\n${c.logs()}`);
    const known = performance.now();
    await eventually(() => tool(ns("eclient"), "tcp", ip("wweb"), 8080).ok === true, 60_000, () => c.logs());
    console.log(`[e2e-clustermesh] east's client in west node-4's ipcache after ${(known - t0).toFixed(0)} ms; first admitted connection ${(performance.now() - known).toFixed(0)} ms later`);
    expect(tool(ns("eclient"), "tcp", ip("wweb"), 8080)).toEqual({ ok: true, reply: "wweb" });
    // west's client: same app label, cluster west — in node-4's ipcache with west's id, and denied.
    await eventually(() => (c.ipcache(4, ip("wclient"))?.identity ?? 0) >>> 16 === 2, 60_000, () => c.logs());
    expect(tool(ns("wclient"), "tcp", ip("wweb"), 8080).ok).toBe(false);
    // The other direction of the mesh: west's pods are in east's ipcache with west's identities.
    await eventually(() => c.ipcache(1, ip("wweb"))?.identity === c.endpointIdentity(4, ip("wweb")) && c.ipcache(1, ip("wweb"))?.tunnelEndpoint === c.node(4).ip, 60_000, () => c.logs());
  }, 180_000);

  it("the global service balances over both clusters' backends and fails over to west when east's backend goes", async () => {
    // Both backends in east node-1's service: new connections reach both clusters' servers.
    let seen: Record<string, number> = {};
    await eventually(() => {
      seen = servedBy("eclient", 12);
      return (seen.eweb ?? 0) > 0 && (seen.wweb ?? 0) > 0 && !seen.failed;
    }, 60_000, () => `${JSON.stringify(seen)}\n${c.logs()}`);
    console.log(`[e2e-clustermesh] 12 connections to the global service from east: ${JSON.stringify(seen)}`);
    // east's web leaves the service (its manifest goes: its endpoint has no app=web label any more).
    const file = join(c.privateManifests(c.node(2)), "pod-default-eweb.yaml");
    const { readFileSync } = await import("node:fs");
    const saved = readFileSync(file, "utf8");
    rmSync(file);
    const t0 = performance.now();
    await eventually(() => {
      seen = servedBy("eclient", 8);
      return seen.wweb === 8;
    }, 60_000, () => `${JSON.stringify(seen)}\n${c.logs()}`);
    console.log(`[e2e-clustermesh] east's backend gone: every new connection served by west after ${(performance.now() - t0).toFixed(0)} ms`);
    writeFileAtomic(file, saved);
    await eventually(() => {
      seen = servedBy("eclient", 12);
      return (seen.eweb ?? 0) > 0 && (seen.wweb ?? 0) > 0;
    }, 60_000, () => `${JSON.stringify(seen)}\n${c.logs()}`);
  }, 240_000);

  it("--clustermesh-config is watched: a bad file is refused in one line, west's file removed withdraws west, written back (by rename) reconnects it", async () => {
    // A bad file: refused in one line on each east node; west stays connected.
    const bad = join(meshDirs.east, "north");
    writeHidden(bad, "endpoints: 12\n");
    const refusal = `clustermesh: refused ${bad}: field "endpoints": expected a list of URLs`;
    for (const i of [1, 2]) await eventually(() => c.node(i).log.includes(refusal), 30_000, () => c.node(i).log);
    expect(tool(ns("eclient"), "tcp", ip("wweb"), 8080)).toEqual({ ok: true, reply: "wweb" });
    // west's file removed: west's pods leave east's ipcache and the global service serves east only.
    const westFile = join(meshDirs.east, "west");
    const { readFileSync } = await import("node:fs");
    const saved = readFileSync(westFile, "utf8");
    rmSync(westFile);
    const t0 = performance.now();
    await eventually(() => c.ipcache(1, ip("wweb"))?.identity === 2, 60_000, () => `${JSON.stringify(c.ipcache(1, ip("wweb")))}\n${c.node(1).log}`);
    const withdrawn = performance.now() - t0;
    let seen: Record<string, number> = {};
    await eventually(() => {
      seen = servedBy("eclient", 8);
      return seen.eweb === 8;
    }, 60_000, () => `${JSON.stringify(seen)}\n${c.logs()}`);
    // Written back atomically (rename): west reconnected, its web reachable again with its identity.
    const t1 = performance.now();
    writeHidden(westFile, saved);
    await eventually(() => tool(ns("eclient"), "tcp", ip("wweb"), 8080).ok === true, 60_000, () => c.logs());
    console.log(`[e2e-clustermesh] west's file removed from east's --clustermesh-config: west's web gone from node-1's ipcache after ${withdrawn.toFixed(0)} ms; written back: reachable again after ${(performance.now() - t1).toFixed(0)} ms`);
    expect(c.node(1).log.split(refusal).length - 1).toBe(1);
    rmSync(bad);
  }, 240_000);
});
