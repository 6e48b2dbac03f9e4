/*
 * The agent's maps in a cluster-wide identity mode, without a kernel: agent/desired.ts over
 * ClusterIdentities. While a label set has no number yet its pods are reserved:init in the ipcache and in
 * their endpoint, no allow names it and a deny naming it is kept against init; once allocated, the maps
 * carry the allocator's numbers. Two nodes allocating through one real etcd agree on every pod's identity.
 */
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { computeDesired, type LocalEndpoint, type Numbering } from "../../agent/desired.ts";
import { StableNumbers } from "../../agent/identities.ts";
import { ClusterIdentities, type IdentityAllocator } from "../../agent/identity-allocator.ts";
import { KvstoreAllocator } from "../../agent/identity-kvstore.ts";
import { MAP_SPECS } from "../../host/codecs.gen.ts";
import * as C from "../../host/constants.gen.ts";
import { ipcacheKey } from "../../host/ipcache.ts";
import { hex } from "../../agent/desired.ts";
import { parseManifestText } from "../../sim/manifests.ts";
import { EtcdServer, hasEtcd } from "../helpers/etcd.ts";
import { skipUnless } from "../helpers/tools.ts";

const pod = (name: string, app: string, nodeName?: string, ip?: string) =>
  `apiVersion: v1\nkind: Pod\nmetadata: {name: ${name}, namespace: default, labels: {app: ${app}}}\nspec: {${nodeName ? `nodeName: ${nodeName}, ` : ""}containers: [{name: c, image: x}]}\n${ip ? `status: {podIP: ${ip}}\n` : ""}---\n`;
const policy = `apiVersion: cilium.io/v2
kind: CiliumNetworkPolicy
metadata: {name: p, namespace: default}
spec:
  endpointSelector: {matchLabels: {app: server}}
  ingress: [{fromEndpoints: [{matchLabels: {app: client}}]}, {fromEntities: [all], toPorts: [{ports: [{port: "9000", protocol: TCP}]}]}]
  ingressDeny: [{fromEndpoints: [{matchLabels: {app: bad}}]}]
---
apiVersion: cilium.io/v2
kind: CiliumNetworkPolicy
metadata: {name: out, namespace: default}
spec:
  endpointSelector: {matchLabels: {app: client}}
  egress: [{toCIDR: [192.0.2.0/24]}]
`;

/** An allocator whose allocations complete when the test says so. */
class ManualAllocator implements IdentityAllocator {
  readonly mode = "kvstore" as const;
  readonly cache = new Map<string, number>();
  readonly waiting: { key: string; resolve: (n: number) => void }[] = [];
  private next = 1000;
  async start(): Promise<void> {}
  allocate(key: string): Promise<number> {
    return new Promise((resolve) => this.waiting.push({ key, resolve }));
  }
  complete(): void {
    for (const w of this.waiting.splice(0)) {
      const n = this.cache.get(w.key) ?? this.next++;
      this.cache.set(w.key, n);
      w.resolve(n);
    }
  }
  async release(): Promise<void> {}
  lookup(key: string): number | undefined {
    return this.cache.get(key);
  }
  entries(): Map<number, string> {
    return new Map([...this.cache].map(([k, v]) => [v, k]));
  }
  onChange(): void {}
  async gc(): Promise<number[]> {
    return [];
  }
  async close(): Promise<void> {}
}

function numbering(ids: ClusterIdentities): Numbering {
  return { identities: ids, backends: new StableNumbers(1, 0xffffffff), revNat: new StableNumbers(1, 0xffff) };
}

function ipcacheIdentity(d: ReturnType<typeof computeDesired>, ip: string): number | undefined {
  const e = d.maps.Ipcache.get(hex(MAP_SPECS.Ipcache.key.encode(ipcacheKey(ip))));
  return e && MAP_SPECS.Ipcache.value.decode(e.value).secIdentity;
}

function policyEntries(d: ReturnType<typeof computeDesired>) {
  return [...d.maps.Policy.values()].map((e) => ({ key: MAP_SPECS.Policy.key.decode(e.key), value: MAP_SPECS.Policy.value.decode(e.value) }));
}

describe("agent maps with cluster-wide identities", () => {
  it("writes pending identities as init, leaves out allows naming them, keeps denies against init, then uses the allocated numbers", async () => {
    const alloc = new ManualAllocator();
    let ready = 0;
    const ids = new ClusterIdentities(alloc, { onReady: () => ready++ });
    const node = { name: "node-1", ip: "192.168.56.11", podCIDR: "10.244.1.0/24" };
    const eps: LocalEndpoint[] = [
      { epId: 1, pod: "default/client", ip: "10.244.1.2", ifindex: 2 },
      { epId: 2, pod: "default/server", ip: "10.244.1.3", ifindex: 3 },
    ];
    const objects = parseManifestText(pod("client", "client") + pod("server", "server") + pod("bad", "bad", "node-9", "10.244.9.9") + policy, "t.yaml");
    const n = numbering(ids);
    const before = computeDesired(objects, node, eps, n);
    expect(ids.pending()).toBe(true);
    expect(before.podIdentity.get("default/client")).toBe(C.ID_INIT);
    expect(ipcacheIdentity(before, "10.244.1.2")).toBe(C.ID_INIT);
    expect(ipcacheIdentity(before, "10.244.9.9")).toBe(C.ID_INIT); // remote, nobody allocated it
    const p0 = policyEntries(before).filter((e) => e.key.epId === 2 && e.key.egress === C.POLICY_INGRESS);
    // Only the wildcard (port 9000 from all), the host and the deny against init: no allow for a pending identity.
    expect(p0.filter((e) => !(e.value.flags & C.POLICY_F_DENY)).map((e) => e.key.secLabel).sort()).toEqual([0, C.ID_HOST]);
    expect(p0.some((e) => e.value.flags & C.POLICY_F_DENY && e.key.secLabel === C.ID_INIT)).toBe(true);
    // CIDR identities are node-local: numbered at once by the node (bit 24), never pending, never allocated.
    const cidrKey = hex(MAP_SPECS.Ipcache.key.encode(ipcacheKey("192.0.2.0/24")));
    expect(MAP_SPECS.Ipcache.value.decode(before.maps.Ipcache.get(cidrKey)!.value).secIdentity).toBeGreaterThan(1 << 24);
    // Only the local endpoints' label sets are allocated by this node.
    expect(alloc.waiting.map((w) => w.key).sort()).toEqual(["k8s:app=client;", "k8s:app=server;"].map((k) => expect.stringContaining(k)));
    alloc.complete();
    await new Promise((r) => setTimeout(r, 0));
    expect(ready).toBe(2);
    const after = computeDesired(objects, node, eps, n);
    const client = after.podIdentity.get("default/client")!;
    expect(client).toBeGreaterThanOrEqual(1000);
    expect(ipcacheIdentity(after, "10.244.1.2")).toBe(client);
    expect(policyEntries(after).some((e) => e.key.epId === 2 && e.key.secLabel === client && !(e.value.flags & C.POLICY_F_DENY))).toBe(true);
    // The remote pod gets its number when its node allocates it (the cache), not before.
    expect(ipcacheIdentity(after, "10.244.9.9")).toBe(C.ID_INIT);
    alloc.cache.set([...alloc.cache.keys()][0]!.replace("app=client", "app=bad"), 4242);
    const later = computeDesired(objects, node, eps, n);
    expect(ipcacheIdentity(later, "10.244.9.9")).toBe(4242);
    expect(policyEntries(later).some((e) => e.key.epId === 2 && e.key.secLabel === 4242 && e.value.flags & C.POLICY_F_DENY)).toBe(true);
    // The persisted state remembers the allocated numbers for a restart.
    expect(Object.values(ids.state().byLabels)).toContain(client);
  });
});

const skipEtcd = skipUnless(hasEtcd(), "etcd (Debian etcd-server)");

describe.skipIf(skipEtcd)("two nodes allocating through etcd", () => {
  let etcd: EtcdServer;
  beforeAll(async () => void (etcd = await EtcdServer.start()), 30000);
  afterAll(async () => void (await etcd?.destroy()));

  it("agree on the identity of every pod in their ipcache and endpoints", async () => {
    const nodeYaml = (name: string, ip: string, cidr: string) => `apiVersion: v1\nkind: Node\nmetadata: {name: ${name}}\nspec: {podCIDR: ${cidr}}\nstatus: {addresses: [{type: InternalIP, address: ${ip}}]}\n---\n`;
    const yaml = nodeYaml("node-1", "192.168.56.11", "10.244.1.0/24") + nodeYaml("node-2", "192.168.56.12", "10.244.2.0/24") + pod("client", "client", "node-1", "10.244.1.2") + pod("server", "server", "node-2", "10.244.2.2") + policy;
    const nodes = [
      { info: { name: "node-1", ip: "192.168.56.11", podCIDR: "10.244.1.0/24" }, eps: [{ epId: 1, pod: "default/client", ip: "10.244.1.2", ifindex: 2 }] },
      { info: { name: "node-2", ip: "192.168.56.12", podCIDR: "10.244.2.0/24" }, eps: [{ epId: 1, pod: "default/server", ip: "10.244.2.2", ifindex: 2 }] },
    ];
    const allocators = nodes.map((n) => new KvstoreAllocator({ endpoints: [etcd.endpoint], nodeName: n.info.name, leaseTtl: 5, clusterId: 2 }));
    await Promise.all(allocators.map((a) => a.start()));
    try {
      let readies = 0;
      const nums = allocators.map((a) => numbering(new ClusterIdentities(a, { onReady: () => readies++ })));
      const compute = () => nodes.map((n, i) => computeDesired(parseManifestText(yaml, "t.yaml"), n.info, n.eps, nums[i]!));
      compute();
      const deadline = Date.now() + 10000;
      let d = compute();
      // Each node allocates its own pod; the other's arrives through the watch.
      const settled = () => [0, 1].every((i) => ["10.244.1.2", "10.244.2.2"].every((ip) => (ipcacheIdentity(d[i]!, ip) ?? C.ID_INIT) !== C.ID_INIT));
      expect(settled()).toBe(false); // nothing allocated yet: init everywhere
      while (Date.now() < deadline && (!settled() || readies < 2)) {
        await new Promise((r) => setTimeout(r, 50));
        d = compute();
      }
      expect(readies).toBe(2);
      for (const ip of ["10.244.1.2", "10.244.2.2"]) {
        const id = ipcacheIdentity(d[0]!, ip)!;
        expect(id).not.toBe(C.ID_INIT);
        expect(id >>> 16).toBe(2); // cluster id 2
        expect(ipcacheIdentity(d[1]!, ip)).toBe(id);
      }
      expect(d[0]!.podIdentity.get("default/client")).toBe(d[1]!.podIdentity.get("default/client"));
      // node-2's server admits node-1's client by that number.
      const client = d[0]!.podIdentity.get("default/client")!;
      expect(policyEntries(d[1]!).some((e) => e.key.secLabel === client && !(e.value.flags & C.POLICY_F_DENY))).toBe(true);
    } finally {
      await Promise.all(allocators.map((a) => a.close()));
    }
  }, 40000);
});
