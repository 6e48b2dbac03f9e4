/*
 * Cluster Mesh through two real etcds, without a kernel: cluster east (id 1) and cluster west (id 2), one
 * node each, every node with its own etcd client, identity allocator, KvstoreState and ClusterMesh watching
 * the other cluster's etcd (agent/clustermesh.ts), computing its maps with agent/desired.ts as `ciliate
 * agent --clustermesh-config` does. Checked: a remote pod reaches the ipcache with its cluster's identity
 * (cluster id in bits 16–23) and its node as tunnel endpoint; a policy admits it by
 * io.cilium.k8s.policy.cluster and denies the same labels from the other cluster; a global service is
 * published with Cilium's ClusterService fields and balances over both clusters' backends, and fails over
 * to the other cluster when its own backends go; a remote cluster with this cluster's id is refused.
 */
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { existsSync, mkdirSync, mkdtempSync, renameSync, rmSync, symlinkSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { computeDesired, type DesiredState, type LocalEndpoint, type Numbering } from "../../agent/desired.ts";
import { StableNumbers } from "../../agent/identities.ts";
import { ClusterIdentities } from "../../agent/identity-allocator.ts";
import { KvstoreAllocator } from "../../agent/identity-kvstore.ts";
import { KvstoreState, SERVICES_PREFIX, parseService, type SharedNode } from "../../agent/kvstore-state.ts";
import { ClusterMesh, MeshIdentityAllocator, readClusterMeshConfig } from "../../agent/clustermesh.ts";
import { localClusterServices, localSharedEndpoints, withClusterMesh, withSharedState } from "../../agent/shared-state.ts";
import { MAP_SPECS } from "../../host/codecs.gen.ts";
import * as C from "../../host/constants.gen.ts";
import { parseManifestText } from "../../sim/manifests.ts";
import { EtcdServer, hasEtcd } from "../helpers/etcd.ts";
import { allows, ipcache, reconcileUntil } from "../helpers/desired-maps.ts";
import { skipUnless } from "../helpers/tools.ts";

const pod = (name: string, app: string, nodeName: string) => `apiVersion: v1\nkind: Pod\nmetadata: {name: ${name}, namespace: shop, labels: {app: ${app}}}\nspec: {nodeName: ${nodeName}, containers: [{name: c, image: x, ports: [{name: http, containerPort: 8080}]}]}\n---\n`;
const ns = `apiVersion: v1\nkind: Namespace\nmetadata: {name: shop, labels: {team: blue}}\n---\n`;
const svc = `apiVersion: v1\nkind: Service\nmetadata: {name: web, namespace: shop, annotations: {service.cilium.io/global: "true"}}\nspec: {clusterIP: 10.96.0.50, selector: {app: web}, ports: [{name: http, port: 80, targetPort: http}]}\n---\n`;
// west's web admits app=client from cluster east only.
const policy = `apiVersion: cilium.io/v2
kind: CiliumNetworkPolicy
metadata: {name: from-east, namespace: shop}
spec:
  endpointSelector: {matchLabels: {app: web}}
  ingress: [{fromEndpoints: [{matchLabels: {app: client, io.cilium.k8s.policy.cluster: east}}]}]
`;




const backendsOf = (d: DesiredState, key: string) => d.cluster.services.find((s) => s.key === key)!.ports[0]!.backends.map((b) => `${b.ip}:${b.port}`).sort();

/** One node of one cluster as the agent runs it in kvstore mode with --clustermesh-config. */
class MeshNode {
  readonly alloc: KvstoreAllocator;
  readonly numbering: Numbering;
  readonly kv: KvstoreState;
  readonly mesh: ClusterMesh;
  eps: LocalEndpoint[] = [];
  yaml = "";
  last?: DesiredState;
  logs: string[] = [];

  constructor(endpoint: string, meshDir: string, readonly info: SharedNode) {
    this.alloc = new KvstoreAllocator({ endpoints: [endpoint], nodeName: info.name, leaseTtl: 30, clusterId: info.clusterId });
    this.mesh = new ClusterMesh(readClusterMeshConfig(meshDir, info.cluster), { name: info.cluster, id: info.clusterId }, (m) => this.logs.push(m), 300);
    this.numbering = { identities: new ClusterIdentities(new MeshIdentityAllocator(this.alloc, this.mesh), { onReady: () => undefined, retryMs: 200 }), backends: new StableNumbers(1, 0xffffffff), revNat: new StableNumbers(1, 0xffff) };
    this.kv = new KvstoreState({ client: this.alloc.client, node: info, leaseTtl: 30, retryMs: 200 });
  }

  async start(): Promise<void> {
    await this.alloc.start();
    await this.kv.start();
    this.mesh.start();
  }

  reconcile(): DesiredState {
    const objects = withClusterMesh(withSharedState(parseManifestText(this.yaml, `${this.info.name}.yaml`), { endpoints: this.kv.remoteEndpoints(), nodes: this.kv.remoteNodes() }), this.mesh.state());
    this.last = computeDesired(objects, this.info, this.eps, this.numbering, { clusterName: this.info.cluster });
    this.kv.publish(localSharedEndpoints(this.last, this.eps, this.info), localClusterServices(this.last, { name: this.info.cluster, id: this.info.clusterId }));
    return this.last;
  }

  async close(): Promise<void> {
    await this.mesh.close();
    await this.kv.close();
    await this.alloc.close();
  }
}


const meshDir = (peers: Record<string, string>) => {
  const d = mkdtempSync(join(tmpdir(), "ciliate-mesh-"));
  for (const [name, ep] of Object.entries(peers)) writeFileSync(join(d, name), `endpoints:\n- ${ep}\n`);
  writeFileSync(join(d, "README"), "not an etcd configuration: skipped\n");
  return d;
};

const skipEtcd = skipUnless(hasEtcd(), "etcd (Debian etcd-server)");

describe.skipIf(skipEtcd)("Cluster Mesh through two etcds", () => {
  let eastEtcd: EtcdServer;
  let westEtcd: EtcdServer;
  let east: MeshNode;
  let west: MeshNode;
  beforeAll(async () => {
    eastEtcd = await EtcdServer.start();
    westEtcd = await EtcdServer.start();
    east = new MeshNode(eastEtcd.endpoint, meshDir({ west: westEtcd.endpoint }), { name: "node-1", cluster: "east", clusterId: 1, ip: "192.168.56.11", podCIDR: "10.1.1.0/24" });
    west = new MeshNode(westEtcd.endpoint, meshDir({ east: eastEtcd.endpoint }), { name: "node-1", cluster: "west", clusterId: 2, ip: "192.168.57.11", podCIDR: "10.2.1.0/24" });
    await east.start();
    await west.start();
    east.yaml = ns + pod("client", "client", "node-1") + pod("web", "web", "node-1") + svc;
    east.eps = [
      { epId: 1, pod: "shop/client", ip: "10.1.1.5", ifindex: 5 },
      { epId: 2, pod: "shop/web", ip: "10.1.1.6", ifindex: 6 },
    ];
    west.yaml = ns + pod("client", "client", "node-1") + pod("web", "web", "node-1") + svc + policy;
    west.eps = [
      { epId: 1, pod: "shop/client", ip: "10.2.1.5", ifindex: 5 },
      { epId: 2, pod: "shop/web", ip: "10.2.1.6", ifindex: 6 },
    ];
  }, 40000);
  afterAll(async () => {
    await east?.close();
    await west?.close();
    await eastEtcd?.destroy();
    await westEtcd?.destroy();
  });

  it("a pod of the other cluster is in the ipcache with its cluster's identity and tunnel endpoint; the cluster label admits east's client, not west's", async () => {
    let eastClient = 0;
    let westClient = 0;
    const ms = await reconcileUntil([east, west], () => {
      eastClient = east.last!.podIdentity.get("shop/client")!;
      westClient = west.last!.podIdentity.get("shop/client")!;
      return eastClient !== C.ID_INIT && westClient !== C.ID_INIT && ipcache(west.last!, "10.1.1.5")?.secIdentity === eastClient && allows(west.last!, 2, eastClient) && west.last!.cluster.pods.length === 4 && ipcache(east.last!, "10.2.1.5") !== undefined;
    });
    console.log(`[clustermesh] east's client admitted by west's policy after ${ms.toFixed(0)} ms (allocation, publish, remote watch, reconcile)`);
    expect(eastClient >>> 16).toBe(1);
    expect(westClient >>> 16).toBe(2);
    const e = ipcache(west.last!, "10.1.1.5")!;
    expect(Buffer.from(e.tunnelEndpoint.subarray(0, 4))).toEqual(Buffer.from([192, 168, 56, 11]));
    expect(e.flags & C.IPCACHE_F_HAS_TUNNEL_EP).toBeTruthy();
    // Same labels, other cluster: west's own client is not admitted, nor is east's web.
    expect(allows(west.last!, 2, westClient)).toBe(false);
    expect(allows(west.last!, 2, east.last!.podIdentity.get("shop/web")!)).toBe(false);
    // east sees west's pods with west's identities the same way.
    expect(ipcache(east.last!, "10.2.1.5")?.secIdentity).toBe(westClient);
    // Both clusters' pods of one name stay apart in the model.
    expect(west.last!.cluster.pods.map((p) => p.key).sort()).toEqual(["east/shop/client", "east/shop/web", "shop/client", "shop/web"]);
  }, 40000);

  it("a global service is published as a ClusterService and balances over both clusters' backends", async () => {
    await reconcileUntil([east, west], () => backendsOf(east.last!, "shop/web").length === 2 && backendsOf(west.last!, "shop/web").length === 2);
    expect(backendsOf(east.last!, "shop/web")).toEqual(["10.1.1.6:8080", "10.2.1.6:8080"]);
    expect(backendsOf(west.last!, "shop/web")).toEqual(["10.1.1.6:8080", "10.2.1.6:8080"]);
    const raw = eastEtcd.getPrefix(`${SERVICES_PREFIX}/`);
    expect(Object.keys(raw)).toEqual([`${SERVICES_PREFIX}/east/shop/web`]);
    expect(JSON.parse(raw[`${SERVICES_PREFIX}/east/shop/web`]!)).toEqual({
      cluster: "east",
      namespace: "shop",
      name: "web",
      frontends: { "10.96.0.50": { http: { Protocol: "TCP", Port: 80 } } },
      backends: { "10.1.1.6": { http: { Protocol: "TCP", Port: 8080 } } },
      labels: {},
      selector: { app: "web" },
      includeExternal: true,
      shared: true,
      clusterID: 1,
    });
    // The service's backends are in east's LB maps (Backends map holds both addresses).
    const addrs = [...east.last!.maps.Backends.values()].map((e) => Buffer.from(MAP_SPECS.Backends.value.decode(e.value).addr.subarray(0, 4)).join("."));
    expect(addrs.sort()).toEqual(["10.1.1.6", "10.2.1.6"]);
  }, 40000);

  it("fails over to the other cluster when a cluster's backends go, and back when they return", async () => {
    const webEp = east.eps.find((e) => e.pod === "shop/web")!;
    east.eps = east.eps.filter((e) => e !== webEp);
    east.yaml = east.yaml.replace(pod("web", "web", "node-1"), "");
    const ms = await reconcileUntil([east, west], () => backendsOf(east.last!, "shop/web").join() === "10.2.1.6:8080" && backendsOf(west.last!, "shop/web").join() === "10.2.1.6:8080");
    console.log(`[clustermesh] east's backend gone: both clusters balance to west only after ${ms.toFixed(0)} ms`);
    expect(parseService(`${SERVICES_PREFIX}/east/shop/web`, eastEtcd.getPrefix(`${SERVICES_PREFIX}/`)[`${SERVICES_PREFIX}/east/shop/web`]!)).toMatchObject({ backends: {} });
    east.eps = [...east.eps, webEp];
    east.yaml += pod("web", "web", "node-1");
    await reconcileUntil([east, west], () => backendsOf(west.last!, "shop/web").length === 2);
  }, 40000);

  it("the configuration directory is watched: a file added by rename or by a Secret's ..data swap connects, a bad one is refused in one line, a change reconnects, a removal withdraws", async () => {
    const northEtcd = await EtcdServer.start();
    const dir = meshDir({});
    const north = new MeshNode(northEtcd.endpoint, dir, { name: "node-1", cluster: "north", clusterId: 3, ip: "192.168.59.11", podCIDR: "10.3.1.0/24" });
    // The global service is declared in every cluster; north has no backend of its own.
    north.yaml = ns + svc;
    const config = (ep: string, extra = "") => `endpoints:\n- ${ep}\n${extra}`;
    // A Kubernetes Secret volume: <name> -> ..data/<name>, ..data -> ..<timestamp>/, swapped by a rename of ..data_tmp.
    let version = 0;
    const secretSwap = (files: Record<string, string>) => {
      const d = `..v${++version}`;
      mkdirSync(join(dir, d));
      for (const [f, text] of Object.entries(files)) writeFileSync(join(dir, d, f), text);
      symlinkSync(d, join(dir, "..data_tmp"));
      renameSync(join(dir, "..data_tmp"), join(dir, "..data"));
      for (const f of Object.keys(files)) if (!existsSync(join(dir, f))) symlinkSync(join("..data", f), join(dir, f));
      if (version > 1) rmSync(join(dir, `..v${version - 1}`), { recursive: true });
    };
    const westIds = () => north.mesh.clusters.filter((c) => c.cfg.name === "west").flatMap((c) => [...c.identityEntries().keys()]);
    const westClient = west.last!.podIdentity.get("shop/client")!;
    try {
      await north.start();
      // Safety-net rescan out of the way (60 s): what follows is seen through the directory watch.
      north.mesh.watch(dir, 60_000);
      expect(north.mesh.clusters).toEqual([]);
      // Added, written atomically by rename.
      writeFileSync(join(dir, ".west.tmp"), config(westEtcd.endpoint));
      renameSync(join(dir, ".west.tmp"), join(dir, "west"));
      const added = await reconcileUntil([north, west], () => ipcache(north.last!, "10.2.1.5")?.secIdentity === westClient, 20_000);
      console.log(`[clustermesh] west's configuration file added by rename: its pod in north's ipcache after ${added.toFixed(0)} ms`);
      expect(north.logs.some((l) => l.includes(`clustermesh west: configuration added, connecting (${join(dir, "west")})`))).toBe(true);
      // Added through a Secret volume's symlinks.
      secretSwap({ east: config(eastEtcd.endpoint) });
      await reconcileUntil([north, east], () => ipcache(north.last!, "10.1.1.5")?.secIdentity === east.last!.podIdentity.get("shop/client"), 20_000);
      expect(north.mesh.clusters.map((c) => c.cfg.name).sort()).toEqual(["east", "west"]);
      // A bad update of east (endpoints not a list): refused in one line naming the file; east keeps its previous configuration, west untouched.
      const before = north.logs.length;
      secretSwap({ east: "endpoints: 12\n" });
      await reconcileUntil([north], () => north.logs.slice(before).some((l) => l.includes("refused")), 20_000);
      const refusal = north.logs.slice(before).filter((l) => l.includes("refused"));
      expect(refusal).toEqual([`clustermesh: refused ${join(dir, "east")}: field "endpoints": expected a list of URLs, e.g. [http://127.0.0.1:2379]; cluster east keeps its previous configuration`]);
      expect(north.logs.slice(before).some((l) => /disconnecting|reconnecting/.test(l))).toBe(false);
      expect(ipcache(north.reconcile(), "10.1.1.5")).toBeDefined();
      expect(ipcache(north.last!, "10.2.1.5")?.secIdentity).toBe(westClient);
      // Fixed and changed (a comment): reconnected, east's last state served meanwhile (never out of the ipcache).
      secretSwap({ east: config(eastEtcd.endpoint, "# rotated\n") });
      let lost = false;
      await reconcileUntil([north], () => {
        lost ||= ipcache(north.last!, "10.1.1.5") === undefined;
        return north.logs.some((l) => l.includes("clustermesh east: configuration changed, reconnecting")) && north.mesh.clusters.find((c) => c.cfg.name === "east")!.ready();
      }, 20_000);
      expect(lost).toBe(false);
      expect(ipcache(north.reconcile(), "10.1.1.5")).toBeDefined();
      // Removed: west's nodes, endpoints, identities and services leave north's view.
      expect(westIds()).toContain(westClient);
      expect(backendsOf(north.reconcile(), "shop/web")).toEqual(["10.1.1.6:8080", "10.2.1.6:8080"]);
      rmSync(join(dir, "west"));
      const removed = await reconcileUntil([north], () => ipcache(north.last!, "10.2.1.5") === undefined, 20_000);
      console.log(`[clustermesh] west's configuration file removed: its pod gone from north's ipcache after ${removed.toFixed(0)} ms`);
      expect(north.mesh.clusters.map((c) => c.cfg.name)).toEqual(["east"]);
      expect(westIds()).toEqual([]);
      expect(north.mesh.lookup(west.alloc.entries().get(westClient)!)).toBeUndefined();
      expect(north.last!.cluster.nodes.map((n) => n.name)).not.toContain("west/node-1");
      expect(north.last!.cluster.pods.map((p) => p.key).sort()).toEqual(["east/shop/client", "east/shop/web"]);
      expect(backendsOf(north.last!, "shop/web")).toEqual(["10.1.1.6:8080"]);
    } finally {
      await north.close();
      await northEtcd.destroy();
    }
  }, 120000);

  it("a remote cluster with this cluster's id is refused, with one clear log line", async () => {
    const clash = new MeshNode(eastEtcd.endpoint, meshDir({ west: westEtcd.endpoint }), { name: "node-9", cluster: "north", clusterId: 2, ip: "192.168.58.11", podCIDR: "10.3.1.0/24" });
    await clash.start();
    try {
      await reconcileUntil([clash], () => clash.logs.some((l) => /clustermesh west: refused: its node node-1 has cluster id 2, this cluster's own/.test(l)));
      expect(clash.mesh.state()[0]!.endpoints).toEqual([]);
      expect(ipcache(clash.reconcile(), "10.2.1.5")).toBeUndefined();
    } finally {
      await clash.close();
    }
  }, 40000);
});

describe("Cluster Mesh configuration", () => {
  it("takes files with endpoints, named after their cluster; refuses a bad name or this cluster's own", () => {
    const d = meshDir({ west: "http://127.0.0.1:1" });
    expect(readClusterMeshConfig(d, "east").map((c) => [c.name, c.etcd.endpoints])).toEqual([["west", ["http://127.0.0.1:1"]]]);
    expect(() => readClusterMeshConfig(d, "west")).toThrow(/names this cluster \(--cluster-name west\)/);
    writeFileSync(join(d, "West_2"), "endpoints: [http://127.0.0.1:2]\n");
    expect(() => readClusterMeshConfig(d, "east")).toThrow(/West_2: the file name is the remote cluster's name: invalid cluster name/);
    expect(() => readClusterMeshConfig(join(d, "missing"), "east")).toThrow(/--clustermesh-config: cannot read .*missing: ENOENT/);
  });

  it("refuses malformed services with a reason", () => {
    const k = `${SERVICES_PREFIX}/east/shop/web`;
    expect(parseService(k, "{")).toBe("not JSON");
    expect(parseService(k, JSON.stringify({ cluster: "east", namespace: "shop", name: "api", clusterID: 1 }))).toMatch(/not the key's/);
    expect(parseService(k, JSON.stringify({ cluster: "east", namespace: "shop", name: "web", clusterID: 1, backends: { "10.0.0.1": { http: { Protocol: "TCP", Port: 0 } } } }))).toMatch(/frontends\/backends/);
    expect(parseService(k, JSON.stringify({ cluster: "east", namespace: "shop", name: "web", clusterID: 300 }))).toMatch(/clusterID 300/);
  });
});
