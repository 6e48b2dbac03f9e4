/*
 * The scopes of security identity numbers, shared by policy's allocation, the agent's stable numbering and
 * flow display: reserved identities below 256 (host, world, …), cluster identities from 256, node-local
 * (CIDR) identities with bit 24 set, per-node identities of remote nodes (enable-node-selector-labels) with
 * bit 25 set — as Cilium numbers them (pkg/identity/numericidentity.go: IdentityScopeLocal,
 * IdentityScopeRemoteNode).
 */
import { ID_KUBE_APISERVER, ID_REMOTE_NODE } from "./constants.gen.ts";

export const MIN_CLUSTER_IDENTITY = 256;
export const LOCAL_IDENTITY_SCOPE = 1 << 24;
/** Scope of remote nodes' identities derived from their labels (Cilium's IdentityScopeRemoteNode, 2<<24). */
export const REMOTE_NODE_IDENTITY_SCOPE = 2 << 24;
/** The scope byte of an identity (0 = global or reserved). */
export const IDENTITY_SCOPE_MASK = 0xff000000;

/** True for an identity allocated on the node (CIDR and remote-node identities), not cluster-wide. */
export function isLocalIdentity(id: number): boolean {
  return id >= LOCAL_IDENTITY_SCOPE;
}

/** True for a remote node's identity: reserved remote-node (6), kube-apiserver (7) or the remote-node scope (bpf/lib/identity.h identity_is_remote_node). */
export function isRemoteNodeIdentity(id: number): boolean {
  return id === ID_REMOTE_NODE || id === ID_KUBE_APISERVER || ((id & IDENTITY_SCOPE_MASK) >>> 0) === REMOTE_NODE_IDENTITY_SCOPE;
}
