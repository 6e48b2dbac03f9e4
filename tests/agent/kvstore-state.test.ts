/*
 * Shared state through a real etcd, without a kernel: two nodes, each with its own etcd client, identity
 * allocator and KvstoreState (agent/kvstore-state.ts), computing their maps with agent/desired.ts from
 * their own manifests plus what the other published (agent/shared-state.ts), as `ciliate agent` does in
 * kvstore mode. A pod that only node-1 knows reaches node-2's ipcache with its identity and node-1 as
 * tunnel endpoint and is admitted by node-2's policy; node-1's pod CIDR is routed from the kvstore's node;
 * etcd going away keeps the last state and what changed meanwhile arrives when it returns; a killed
 * agent's entries expire with its lease and a closed agent's go at once.
 */
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { Etcd3 } from "etcd3";
import { computeDesired, type DesiredState, type LocalEndpoint, type Numbering } from "../../agent/desired.ts";
import { StableNumbers } from "../../agent/identities.ts";
import { ClusterIdentities } from "../../agent/identity-allocator.ts";
import { KvstoreAllocator } from "../../agent/identity-kvstore.ts";
import { IP_PREFIX, KvstoreState, NODES_PREFIX, parseEndpoint, parseNode, type SharedNode } from "../../agent/kvstore-state.ts";
import { localSharedEndpoints, withSharedState } from "../../agent/shared-state.ts";
import { remoteNodeRoutes } from "../../agent/routing.ts";
import * as C from "../../host/constants.gen.ts";
import { parseManifestText } from "../../sim/manifests.ts";
import { EtcdServer, hasEtcd } from "../helpers/etcd.ts";
import { allows, ipcache, reconcileUntil } from "../helpers/desired-maps.ts";
import { skipUnless } from "../helpers/tools.ts";

const pod = (name: string, app: string, nodeName: string) => `apiVersion: v1\nkind: Pod\nmetadata: {name: ${name}, namespace: shop, labels: {app: ${app}}}\nspec: {nodeName: ${nodeName}, containers: [{name: c, image: x}]}\n---\n`;
const ns = `apiVersion: v1\nkind: Namespace\nmetadata: {name: shop, labels: {team: blue}}\n---\n`;
// node-2 admits app=client and app=late from anywhere in the cluster, by identity.
const policy = `apiVersion: cilium.io/v2
kind: CiliumNetworkPolicy
metadata: {name: p, namespace: shop}
spec:
  endpointSelector: {matchLabels: {app: server}}
  ingress: [{fromEndpoints: [{matchLabels: {app: client}}, {matchLabels: {app: late}}]}]
`;

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));



/** One node as the agent runs it: its manifests, endpoints, allocator, numbering and shared state. */
class TestNode {
  readonly client: Etcd3;
  readonly alloc: KvstoreAllocator;
  readonly numbering: Numbering;
  readonly kv: KvstoreState;
  eps: LocalEndpoint[] = [];
  yaml = "";
  last?: DesiredState;

  constructor(
    endpoint: string,
    readonly info: SharedNode,
    leaseTtl: number,
  ) {
    this.alloc = new KvstoreAllocator({ endpoints: [endpoint], nodeName: info.name, leaseTtl, clusterId: info.clusterId });
    this.client = this.alloc.client;
    this.numbering = { identities: new ClusterIdentities(this.alloc, { onReady: () => undefined, retryMs: 200 }), backends: new StableNumbers(1, 0xffffffff), revNat: new StableNumbers(1, 0xffff) };
    this.kv = new KvstoreState({ client: this.client, node: info, leaseTtl, retryMs: 200 });
  }

  async start(): Promise<void> {
    await this.alloc.start();
    await this.kv.start();
  }

  objects() {
    return withSharedState(parseManifestText(this.yaml, `${this.info.name}.yaml`), { endpoints: this.kv.remoteEndpoints(), nodes: this.kv.remoteNodes() });
  }

  /** A reconcile: the maps from the manifests plus the shared state, then the local endpoints published. */
  reconcile(): DesiredState {
    this.last = computeDesired(this.objects(), this.info, this.eps, this.numbering, { clusterName: this.info.cluster });
    this.kv.publish(localSharedEndpoints(this.last, this.eps, this.info));
    return this.last;
  }

  async close(): Promise<void> {
    await this.kv.close();
    await this.alloc.close();
  }
}


const skipEtcd = skipUnless(hasEtcd(), "etcd (Debian etcd-server)");

describe.skipIf(skipEtcd)("shared endpoints and nodes in etcd (kvstore mode)", () => {
  let etcd: EtcdServer;
  let n1: TestNode;
  let n2: TestNode;
  beforeAll(async () => {
    etcd = await EtcdServer.start();
    n1 = new TestNode(etcd.endpoint, { name: "node-1", cluster: "default", clusterId: 3, ip: "192.168.56.11", podCIDR: "10.244.1.0/24" }, 30);
    n2 = new TestNode(etcd.endpoint, { name: "node-2", cluster: "default", clusterId: 3, ip: "192.168.56.12", podCIDR: "10.244.2.0/24" }, 30);
    await n1.start();
    await n2.start();
  }, 30000);
  afterAll(async () => {
    await n1?.close();
    await n2?.close();
    await etcd?.destroy();
  });

  it("a pod only its node knows is in the other node's ipcache with its identity and tunnel endpoint, admitted by policy there; its node is routed", async () => {
    // Each node's manifests know only its own pods; node-2's do not even declare node-1.
    n1.yaml = ns + pod("client", "client", "node-1");
    n1.eps = [{ epId: 1, pod: "shop/client", ip: "10.244.1.5", ifindex: 5 }];
    n2.yaml = ns + pod("server", "server", "node-2") + policy;
    n2.eps = [{ epId: 1, pod: "shop/server", ip: "10.244.2.7", ifindex: 7 }];
    const before = n2.reconcile();
    expect(ipcache(before, "10.244.1.5")).toBeUndefined();
    let client = 0;
    const ms = await reconcileUntil([n1, n2], () => {
      client = n1.last!.podIdentity.get("shop/client")!;
      const e = ipcache(n2.last!, "10.244.1.5");
      // node-2's own pod is published too (its allocation and put race node-1's; both must be in etcd).
      const server = n1.kv.remoteEndpoints().some((x) => x.ip === "10.244.2.7");
      return client !== C.ID_INIT && e?.secIdentity === client && allows(n2.last!, 1, client) && server;
    });
    console.log(`[kvstore-state] a new pod on node-1 admitted by node-2's policy after ${ms.toFixed(0)} ms (allocation, publish, watch, reconcile)`);
    expect(client >>> 16).toBe(3); // cluster id 3: the allocator's number, agreed by both nodes
    const e = ipcache(n2.last!, "10.244.1.5")!;
    expect(Buffer.from(e.tunnelEndpoint.subarray(0, 4))).toEqual(Buffer.from([192, 168, 56, 11]));
    expect(e.flags & C.IPCACHE_F_HAS_TUNNEL_EP).toBeTruthy();
    // node-1 is known to node-2 only through the kvstore, and native routing routes its pod CIDR.
    expect(remoteNodeRoutes(n2.objects(), n2.info).routes).toEqual([{ cidr: "10.244.1.0/24", via: "192.168.56.11", node: "node-1" }]);
    // Cilium's keys and field names.
    const ips = etcd.getPrefix(`${IP_PREFIX}/`);
    expect(Object.keys(ips).sort()).toEqual([`${IP_PREFIX}/10.244.1.5`, `${IP_PREFIX}/10.244.2.7`]);
    expect(JSON.parse(ips[`${IP_PREFIX}/10.244.1.5`]!)).toMatchObject({ IP: "10.244.1.5", HostIP: "192.168.56.11", ID: client, K8sNamespace: "shop", K8sPodName: "client", ciliate: { node: "node-1", labels: { app: "client" }, namespaceLabels: { team: "blue" } } });
    const nodes = etcd.getPrefix(`${NODES_PREFIX}/`);
    expect(JSON.parse(nodes[`${NODES_PREFIX}/default/node-1`]!)).toMatchObject({ Name: "node-1", Cluster: "default", IPAddresses: [{ Type: "InternalIP", IP: "192.168.56.11" }], IPv4AllocCIDR: { IP: "10.244.1.0", Mask: "////AA==" }, ClusterID: 3 });
    // A node's own entries are not part of its remote view.
    expect(n1.kv.remoteEndpoints().map((x) => x.ip)).toEqual(["10.244.2.7"]);
    expect(n1.kv.remoteNodes().map((x) => x.name)).toEqual(["node-2"]);
  }, 30000);

  it("keeps the last state while etcd is away; a pod added meanwhile arrives when etcd returns", async () => {
    await etcd.stop();
    await sleep(1500);
    // node-2 still forwards on what it knew: the client keeps its identity, tunnel endpoint and allow.
    const during = n2.reconcile();
    const client = n1.last!.podIdentity.get("shop/client")!;
    expect(ipcache(during, "10.244.1.5")?.secIdentity).toBe(client);
    expect(allows(during, 1, client)).toBe(true);
    expect(remoteNodeRoutes(n2.objects(), n2.info).routes.map((r) => r.cidr)).toEqual(["10.244.1.0/24"]);
    // A pod with a new label set joins node-1 meanwhile: it cannot be allocated or published yet.
    n1.yaml += pod("late", "late", "node-1");
    n1.eps = [...n1.eps, { epId: 2, pod: "shop/late", ip: "10.244.1.6", ifindex: 6 }];
    for (let i = 0; i < 10; i++) {
      n1.reconcile();
      n2.reconcile();
      await sleep(100);
    }
    expect(n1.last!.podIdentity.get("shop/late")).toBe(C.ID_INIT);
    expect(ipcache(n2.last!, "10.244.1.6")).toBeUndefined();
    await etcd.resume();
    const t0 = performance.now();
    let late = 0;
    await reconcileUntil([n1, n2], () => {
      late = n1.last!.podIdentity.get("shop/late")!;
      return late !== C.ID_INIT && ipcache(n2.last!, "10.244.1.6")?.secIdentity === late && allows(n2.last!, 1, late);
    }, 20000);
    console.log(`[kvstore-state] after etcd returned, the pod added meanwhile was admitted on node-2 in ${(performance.now() - t0).toFixed(0)} ms`);
    expect(ipcache(n2.last!, "10.244.1.5")?.secIdentity).toBe(client); // the earlier one is untouched
    expect(n1.kv.synced()).toBe(true);
  }, 40000);

  it("a pod removed on its node leaves the other node's ipcache", async () => {
    n1.eps = n1.eps.filter((e) => e.pod !== "shop/late");
    await reconcileUntil([n1, n2], () => ipcache(n2.last!, "10.244.1.6") === undefined);
    expect(Object.keys(etcd.getPrefix(`${IP_PREFIX}/`))).not.toContain(`${IP_PREFIX}/10.244.1.6`);
  }, 20000);

  it("a killed agent's entries expire with its lease; a closed agent's go at once", async () => {
    const killed = new TestNode(etcd.endpoint, { name: "node-3", cluster: "default", clusterId: 3, ip: "192.168.56.13", podCIDR: "10.244.3.0/24" }, 3);
    await killed.start();
    const closed = new TestNode(etcd.endpoint, { name: "node-4", cluster: "default", clusterId: 3, ip: "192.168.56.14", podCIDR: "10.244.4.0/24" }, 30);
    await closed.start();
    const names = () => n2.kv.remoteNodes().map((n) => n.name).sort();
    await reconcileUntil([n2], () => names().join() === "node-1,node-3,node-4");
    await closed.close();
    const closedMs = await reconcileUntil([n2], () => !names().includes("node-4"), 5000);
    expect(closedMs).toBeLessThan(3000);
    killed.kv.abandon();
    killed.alloc.abandon();
    const t0 = performance.now();
    await reconcileUntil([n2], () => !names().includes("node-3"), 15000);
    const expiredMs = performance.now() - t0;
    console.log(`[kvstore-state] a killed agent's node entry expired after ${expiredMs.toFixed(0)} ms (lease TTL 3 s)`);
    expect(expiredMs).toBeGreaterThan(1000); // it outlived the agent: the lease, not a delete, removed it
    expect(names()).toEqual(["node-1"]);
  }, 40000);
});

describe("shared-state values", () => {
  it("refuse malformed entries with a reason", () => {
    expect(parseEndpoint(`${IP_PREFIX}/10.0.0.1`, "{")).toBe("not JSON");
    expect(parseEndpoint(`${IP_PREFIX}/10.0.0.2`, JSON.stringify({ IP: "10.0.0.1" }))).toMatch(/not the key's/);
    expect(parseEndpoint(`${IP_PREFIX}/10.0.0.1`, JSON.stringify({ IP: "10.0.0.1", HostIP: "x" }))).toMatch(/HostIP/);
    expect(parseNode(`${NODES_PREFIX}/default/a`, JSON.stringify({ Name: "a", Cluster: "default", IPAddresses: [] }))).toMatch(/InternalIP/);
    expect(parseNode(`${NODES_PREFIX}/default/b`, JSON.stringify({ Name: "a", Cluster: "default" }))).toMatch(/key's/);
  });

  it("manifests win over the kvstore; it fills in a listed pod's missing address", () => {
    const objs = parseManifestText(
      `apiVersion: v1\nkind: Pod\nmetadata: {name: a, namespace: shop, labels: {app: a}}\nspec: {containers: [{name: c, image: x}]}\n---\n` +
        `apiVersion: v1\nkind: Pod\nmetadata: {name: b, namespace: shop}\nspec: {nodeName: node-9, containers: [{name: c, image: x}]}\nstatus: {podIP: 10.244.9.9}\n`,
      "m.yaml",
    );
    const ep = (pod: string, ip: string) => ({ ip, hostIp: "192.168.56.11", identity: 300, node: "node-1", namespace: "shop", pod, labels: { app: "x" }, namespaceLabels: {} });
    const out = withSharedState(objs, { endpoints: [ep("a", "10.244.1.2"), ep("b", "10.244.1.3"), ep("c", "10.244.9.9")], nodes: [] });
    const a = out.find((o) => o.metadata.name === "a")!;
    expect(a.raw.status.podIP).toBe("10.244.1.2");
    expect(a.raw.spec.nodeName).toBe("node-1");
    expect(a.metadata.labels).toEqual({ app: "a" }); // the manifest's labels
    expect(out.find((o) => o.metadata.name === "b")!.raw.status.podIP).toBe("10.244.9.9"); // the manifest's address
    expect(out.some((o) => o.metadata.name === "c")).toBe(false); // its address is a listed pod's
  });
});
