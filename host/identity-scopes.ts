/*
 * The scopes of security identity numbers, shared by policy's allocation, the agent's stable numbering and
 * flow display: reserved identities below 256 (host, world, …), cluster identities from 256, node-local
 * (CIDR) identities with bit 24 set — as Cilium numbers them (pkg/identity/numericidentity.go).
 */

export const MIN_CLUSTER_IDENTITY = 256;
export const LOCAL_IDENTITY_SCOPE = 1 << 24;

/** True for an identity allocated on the node (CIDR identities), not cluster-wide. */
export function isLocalIdentity(id: number): boolean {
  return id >= LOCAL_IDENTITY_SCOPE;
}
