/*
 * The scopes of security identity numbers, shared by policy's allocation, the agent's stable numbering and
 * flow display: reserved identities below 256 (host, world, …), cluster identities from 256, node-local
 * (CIDR) identities with bit 24 set, per-node identities of remote nodes (enable-node-selector-labels) with
 * bit 25 set — as Cilium numbers them (pkg/identity/numericidentity.go: IdentityScopeLocal,
 * IdentityScopeRemoteNode).
 *
 * Cluster Mesh splits the cluster-scoped space by cluster id: bits 16–23 of a cluster-scoped identity are
 * the id of the cluster that allocated it, so two clusters never hand out the same number. Cluster 0 (no
 * mesh) allocates 256..65535; cluster N > 0 allocates N<<16 .. (N+1)<<16 - 1 (no reserved numbers to skip
 * there). Node-local and remote-node identities carry no cluster id and are the same in every cluster.
 */
import { ID_KUBE_APISERVER, ID_REMOTE_NODE } from "./constants.gen.ts";

export const MIN_CLUSTER_IDENTITY = 256;
export const LOCAL_IDENTITY_SCOPE = 1 << 24;
/** Scope of remote nodes' identities derived from their labels (Cilium's IdentityScopeRemoteNode, 2<<24). */
export const REMOTE_NODE_IDENTITY_SCOPE = 2 << 24;
/** The scope byte of an identity (0 = global or reserved). */
export const IDENTITY_SCOPE_MASK = 0xff000000;
/** Bits a cluster-scoped identity shifts its cluster id by (Cilium's default 8-bit cluster id). */
export const CLUSTER_ID_SHIFT = 16;
/** The largest cluster id (Cilium's ClusterIDMax with the default 255 clusters). */
export const CLUSTER_ID_MAX = 255;

/** True for an identity allocated on the node (CIDR and remote-node identities), not cluster-wide. */
export function isLocalIdentity(id: number): boolean {
  return id >= LOCAL_IDENTITY_SCOPE;
}

/** True for a remote node's identity: reserved remote-node (6), kube-apiserver (7) or the remote-node scope (bpf/lib/identity.h identity_is_remote_node). */
export function isRemoteNodeIdentity(id: number): boolean {
  return id === ID_REMOTE_NODE || id === ID_KUBE_APISERVER || ((id & IDENTITY_SCOPE_MASK) >>> 0) === REMOTE_NODE_IDENTITY_SCOPE;
}

/**
 * The cluster-scoped numbers cluster `clusterId` may allocate, inclusive (Cilium's
 * GetMinimalAllocationIdentity / GetMaximumAllocationIdentity). Outcomes: cluster 0 → 256..65535;
 * 1..255 → id<<16 .. (id<<16)|0xffff. Throws a RangeError for an id outside 0..255.
 */
export function clusterIdentityRange(clusterId: number): { min: number; max: number } {
  if (!Number.isInteger(clusterId) || clusterId < 0 || clusterId > CLUSTER_ID_MAX) throw new RangeError(`cluster id ${clusterId} is outside 0..${CLUSTER_ID_MAX}`);
  const base = clusterId << CLUSTER_ID_SHIFT;
  return { min: clusterId === 0 ? MIN_CLUSTER_IDENTITY : base, max: base + (1 << CLUSTER_ID_SHIFT) - 1 };
}

/** The cluster id a cluster-scoped identity was allocated in (0 for reserved and node-local ones). */
export function clusterIdOf(id: number): number {
  return isLocalIdentity(id) ? 0 : (id >>> CLUSTER_ID_SHIFT) & CLUSTER_ID_MAX;
}

/**
 * The free number to try for a new identity: `preferred` when free and in range, else the lowest free.
 * The cluster-wide allocators' rule (agent/identity-kvstore.ts K3, agent/identity-crd.ts C2); the
 * simulator numbers a multi-cluster scenario's identities with it too (policy/identity.ts).
 */
export function pickFreeId(used: (id: number) => boolean, clusterId: number, preferred?: number, skip: ReadonlySet<number> = new Set()): number | undefined {
  const { min, max } = clusterIdentityRange(clusterId);
  if (preferred !== undefined && preferred >= min && preferred <= max && !used(preferred) && !skip.has(preferred)) return preferred;
  for (let id = min; id <= max; id++) if (!used(id) && !skip.has(id)) return id;
  return undefined;
}
