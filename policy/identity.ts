// Identity allocation as Cilium does it (pkg/identity/numericidentity.go, pkg/identity/cache): reserved
// identities 1–10 with their reserved: labels, cluster identities from 256 for each distinct
// identity-relevant label set, node-local CIDR identities (1<<24 | n) for every prefix a policy
// names, and — with enable-node-selector-labels — remote-node identities (2<<24 | n) for each distinct
// label set of the cluster's nodes. Deterministic: label sets and prefixes are sorted before numbers are
// handed out, so the same manifests always give the same numbers.
//
// Node identities (docs/policy.md, "Nodes"): a node is the host identity (1) on itself. Elsewhere it is
// the reserved remote-node identity (6), or, with enable-node-selector-labels, the remote-node-scoped
// identity of its label set (cilium/cilium pkg/node/manager nodeIdentityLabels, pkg/identity
// LookupReservedIdentityByLabels returns nothing for remote-node labels then, so the allocator numbers
// them in IdentityScopeRemoteNode). Cilium allocates these per agent; ciliate numbers them once for the
// cluster so every node and the simulator agree. nodeIdentityOn is the one place that says which number a
// node's addresses have on a given node; the ipcache (node/desired.ts) and the simulator both ask it.

import {
  ID_HEALTH,
  ID_HOST,
  ID_INGRESS,
  ID_INIT,
  ID_KUBE_APISERVER,
  ID_REMOTE_NODE,
  ID_UNMANAGED,
  ID_WORLD,
  ID_WORLD_IPV4,
  ID_WORLD_IPV6,
} from "../host/constants.gen.ts";
import { compareCidr, ipInCidr, parseCidr, parseIp, type Cidr } from "./cidr.ts";
import { LOCAL_IDENTITY_SCOPE, MIN_CLUSTER_IDENTITY, pickFreeId, REMOTE_NODE_IDENTITY_SCOPE } from "../host/identity-scopes.ts";
import { identityLabels, LabelFilter, labelString, podKeyOf, remoteNodeLabels } from "./labels.ts";
import type { ClusterModel, Identity, Label } from "./types.ts";

export { LOCAL_IDENTITY_SCOPE, MIN_CLUSTER_IDENTITY, REMOTE_NODE_IDENTITY_SCOPE };

const r = (key: string): Label => ({ source: "reserved", key, value: "" });

export const RESERVED_IDENTITIES: Identity[] = [
  { id: ID_HOST, labels: [r("host")], pods: [] },
  { id: ID_WORLD, labels: [r("world")], pods: [] },
  { id: ID_UNMANAGED, labels: [r("unmanaged")], pods: [] },
  { id: ID_HEALTH, labels: [r("health")], pods: [] },
  { id: ID_INIT, labels: [r("init")], pods: [] },
  { id: ID_REMOTE_NODE, labels: [r("remote-node")], pods: [] },
  { id: ID_KUBE_APISERVER, labels: [r("kube-apiserver"), r("remote-node")], pods: [] },
  { id: ID_INGRESS, labels: [r("ingress")], pods: [] },
  { id: ID_WORLD_IPV4, labels: [r("world-ipv4")], pods: [] },
  { id: ID_WORLD_IPV6, labels: [r("world-ipv6")], pods: [] },
];

export const ENTITY_IDENTITY: Record<string, number> = {
  host: ID_HOST,
  world: ID_WORLD,
  "world-ipv4": ID_WORLD_IPV4,
  "world-ipv6": ID_WORLD_IPV6,
  unmanaged: ID_UNMANAGED,
  health: ID_HEALTH,
  init: ID_INIT,
  "remote-node": ID_REMOTE_NODE,
  "kube-apiserver": ID_KUBE_APISERVER,
  ingress: ID_INGRESS,
};

export interface IdentityTable {
  all: Identity[];
  byId: Map<number, Identity>;
  /** ns/name → identity (host-networked pods → 1). */
  podIdentity: Map<string, number>;
  cidrs: { cidr: Cidr; identity: number }[];
  dualStack: boolean;
  /** Node name → its identity as a remote node (only with enable-node-selector-labels; otherwise empty). */
  nodeIdentity: Map<string, number>;
}

/** Allocates identities for the cluster's pods and the given CIDR prefixes. */
export function allocateIdentities(cluster: ClusterModel, cidrTexts: string[], opts: { labelFilter?: string[]; dualStack?: boolean } = {}): IdentityTable {
  const filter = new LabelFilter(opts.labelFilter ?? []);
  const nsByName = new Map(cluster.namespaces.map((n) => [n.name, n]));
  const sets = new Map<string, { labels: Label[]; pods: string[]; cluster: string }>();
  const podKey = new Map<string, string>();
  for (const pod of cluster.pods) {
    const name = podKeyOf(pod);
    if (pod.hostNetwork) continue;
    const labels = identityLabels(pod, nsByName.get(pod.namespace) ?? { name: pod.namespace, labels: {} }, cluster.clusterName, filter);
    const key = labels.map(labelString).join(",");
    if (!sets.has(key)) sets.set(key, { labels, pods: [], cluster: pod.cluster ?? cluster.clusterName });
    sets.get(key)!.pods.push(name);
    podKey.set(name, key);
  }
  const all: Identity[] = RESERVED_IDENTITIES.map((i) => ({ ...i, pods: [] }));
  const podIdentity = new Map<string, number>();
  let next = MIN_CLUSTER_IDENTITY;
  const idOfKey = new Map<string, number>();
  const taken = new Set<number>();
  for (const key of [...sets.keys()].sort()) {
    const s = sets.get(key)!;
    const id = cluster.clusterIds ? meshIdentity(cluster.clusterIds, s.cluster, taken) : next++;
    idOfKey.set(key, id);
    all.push({ id, labels: s.labels, pods: [...s.pods].sort() });
  }
  for (const pod of cluster.pods) {
    const name = podKeyOf(pod);
    if (pod.hostNetwork) {
      podIdentity.set(name, ID_HOST);
      all[0].pods.push(name);
    } else podIdentity.set(name, idOfKey.get(podKey.get(name)!)!);
  }
  // CIDR identities: /0 prefixes are the world identity, every other prefix gets a local identity.
  const uniq = new Map<string, Cidr>();
  for (const t of cidrTexts) {
    const c = parseCidr(t);
    if (c && c.bits > 0) uniq.set(c.text, c);
  }
  const cidrs = [...uniq.values()].sort(compareCidr).map((cidr, i) => ({ cidr, identity: LOCAL_IDENTITY_SCOPE | (i + 1) }));
  for (const c of cidrs) all.push({ id: c.identity, labels: [{ source: "cidr", key: c.cidr.text, value: "" }, r("world")], cidr: c.cidr.text, pods: [] });
  // Remote-node identities: one per distinct node label set, numbered in sorted label-set order.
  const nodeIdentity = new Map<string, number>();
  if (cluster.nodeSelectorLabels) {
    const nodeSets = new Map<string, { labels: Label[]; nodes: string[] }>();
    for (const n of cluster.nodes ?? []) {
      const labels = remoteNodeLabels(n, cluster.clusterName);
      const key = labels.map(labelString).join(",");
      if (!nodeSets.has(key)) nodeSets.set(key, { labels, nodes: [] });
      nodeSets.get(key)!.nodes.push(n.name);
    }
    [...nodeSets.keys()].sort().forEach((key, i) => {
      const s = nodeSets.get(key)!;
      const id = (REMOTE_NODE_IDENTITY_SCOPE | (i + 1)) >>> 0;
      for (const n of s.nodes) nodeIdentity.set(n, id);
      all.push({ id, labels: s.labels, pods: [], nodes: [...s.nodes].sort() });
    });
  }
  return { all, byId: new Map(all.map((i) => [i.id, i])), podIdentity, cidrs, dualStack: opts.dualStack ?? false, nodeIdentity };
}

/**
 * The identity the ipcache of node `viewer` holds for the addresses of node `node`: the host identity (1)
 * on itself; elsewhere its remote-node identity (enable-node-selector-labels) or the reserved remote-node
 * identity (6).
 */
export function nodeIdentityOn(t: IdentityTable, viewer: string, node: string): number {
  if (viewer === node) return ID_HOST;
  return t.nodeIdentity.get(node) ?? ID_REMOTE_NODE;
}

/** The world identity an address outside every known prefix gets (2 single-stack; 9/10 dual-stack). */
export function worldIdentity(t: IdentityTable, family: 4 | 6): number {
  if (!t.dualStack) return ID_WORLD;
  return family === 4 ? ID_WORLD_IPV4 : ID_WORLD_IPV6;
}

/**
 * IP → identity as the ipcache would answer: pod IPs, then node addresses (as every other node sees them:
 * nodeIdentityOn from a remote node — the node itself sees the host identity), then the longest CIDR
 * identity, then world.
 */
export function identityOfIp(t: IdentityTable, cluster: ClusterModel, ip: string): number | undefined {
  const a = parseIp(ip);
  if (!a) return undefined;
  const same = (x: string) => parseIp(x)?.addr === a.addr && parseIp(x)?.family === a.family;
  for (const p of cluster.pods) if (!p.hostNetwork && p.ips?.some(same)) return t.podIdentity.get(podKeyOf(p));
  for (const n of cluster.nodes ?? []) if (n.ips.some(same)) return t.nodeIdentity.get(n.name) ?? ID_REMOTE_NODE;
  for (const p of cluster.pods) if (p.hostNetwork && p.ips?.some(same)) return t.podIdentity.get(podKeyOf(p));
  let best: { cidr: Cidr; identity: number } | undefined;
  for (const c of t.cidrs) if (ipInCidr(c.cidr, a.family, a.addr) && (!best || c.cidr.bits > best.cidr.bits)) best = c;
  return best ? best.identity : worldIdentity(t, a.family);
}

/**
 * A label set's number in a multi-cluster scenario (ClusterModel.clusterIds): the lowest free one of its
 * cluster's range (cluster id in bits 16–23), with the allocators' own pickFreeId — what a fresh
 * cluster-wide allocator of that cluster hands out when the label sets come in sorted order.
 */
function meshIdentity(clusterIds: Record<string, number>, cluster: string, taken: Set<number>): number {
  const clusterId = clusterIds[cluster];
  if (clusterId === undefined) throw new Error(`identity of cluster ${JSON.stringify(cluster)}: not a cluster of the mesh (${Object.keys(clusterIds).join(", ")})`);
  const id = pickFreeId((i) => taken.has(i), clusterId);
  if (id === undefined) throw new Error(`no free identity left in cluster ${cluster}'s range`);
  taken.add(id);
  return id;
}
