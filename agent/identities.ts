/*
 * Stable security identities for the agent. policy/ numbers identities deterministically from the sorted
 * label sets of one snapshot of the cluster, so adding a pod with a new label set can renumber the others.
 * A running node cannot follow such a renumbering without a window where the ipcache and the policy map
 * disagree, so the agent keeps its own allocation: a label set keeps the number it got first, for as long as
 * the agent's state lives (persisted with the rest of the agent state, so a restart keeps the numbers too).
 * This mirrors Cilium's identity allocator (pkg/identity/cache, pkg/allocator): numbers are allocated once
 * per label set and never derived from the order of the cluster's objects.
 *
 * Reserved identities (< 256) are fixed and pass through unchanged; node-local CIDR identities are allocated
 * from (1 << 24) | 1 and remote nodes' identities (enable-node-selector-labels) from (2 << 24) | 1, as
 * upstream. This is the `--identity-allocation-mode local` numbering; identity-allocator.ts gives numbers
 * every node agrees on by construction. Cluster identities must mean the same on every node (with an
 * overlay the receiving node enforces policy on the number the sender's node put in the tunnel key, and
 * flows from different nodes must name identities alike; docs/multi-node.md), so in local mode every agent
 * derives a new label set's number from the label set itself: a hash of its labels into the cluster's range
 * (256..65535 with cluster id 0, id<<16.. otherwise, as Cilium's allocator ranges), so nodes that read the
 * same manifests agree whatever order they saw the label sets in. Two label sets that hash to the same
 * number are a collision: the one that came second on this node probes to the next free number and the
 * collision is reported (the nodes may then disagree about that one label set; docs/multi-node.md,
 * limits). A number already held (state from an earlier run) is kept.
 */
import { createHash } from "node:crypto";
import { clusterIdentityRange, LOCAL_IDENTITY_SCOPE, MIN_CLUSTER_IDENTITY, REMOTE_NODE_IDENTITY_SCOPE } from "../host/identity-scopes.ts";
import { labelString, type CompiledPolicy } from "../policy/index.ts";

export { LOCAL_IDENTITY_SCOPE, MIN_CLUSTER_IDENTITY };

export interface IdentityState {
  /** label-set key → number. */
  byLabels: Record<string, number>;
}

/** The cluster-scoped numbers of cluster 0, where local mode hashes by default. */
const CLUSTER_0 = clusterIdentityRange(0);
/** The highest cluster identity of cluster 0 (Cilium's MaximumAllocationIdentity without a cluster id). */
export const MAX_CLUSTER_IDENTITY = CLUSTER_0.max;

/**
 * The number a cluster label set gets on every node when nothing else holds it: the first 4 bytes of the
 * SHA-256 of its key, folded into `range` (cluster 0's by default).
 */
export function labelHashIdentity(key: string, range: { min: number; max: number } = CLUSTER_0): number {
  const h = createHash("sha256").update(key).digest().readUInt32BE(0);
  return range.min + (h % (range.max - range.min + 1));
}

/** Two label sets whose hashes met: `key` got `id` instead of its hash's number, held by `holder`. */
export interface IdentityCollision {
  key: string;
  holder: string;
  id: number;
}

/** The scope an identity of one compiled policy belongs to, which is also its key's prefix. */
function scopeOf(id: number): "remote-node" | "local" | "cluster" {
  return id >= REMOTE_NODE_IDENTITY_SCOPE ? "remote-node" : id >= LOCAL_IDENTITY_SCOPE ? "local" : "cluster";
}

export class StableIdentities {
  private readonly byLabels = new Map<string, number>();
  private readonly byNumber = new Map<number, string>();
  private readonly range: { min: number; max: number };
  private nextLocal = 1;
  /** Remote nodes' identities keep their own scope, 2<<24; policy/ numbers them the same on every node. */
  private nextRemoteNode = 1;
  /** Collisions met so far (each new label set at most once). */
  readonly collisions: IdentityCollision[] = [];

  constructor(state?: IdentityState, clusterId = 0) {
    this.range = clusterIdentityRange(clusterId);
    for (const [k, id] of Object.entries(state?.byLabels ?? {})) {
      // A number from another cluster id's range (the flag changed) is allocated again in this one.
      if (id < LOCAL_IDENTITY_SCOPE && (id < this.range.min || id > this.range.max)) continue;
      this.remember(k, id);
    }
  }

  private remember(k: string, id: number): void {
    this.byLabels.set(k, id);
    this.byNumber.set(id, k);
    if (id >= REMOTE_NODE_IDENTITY_SCOPE) this.nextRemoteNode = Math.max(this.nextRemoteNode, (id & 0xffffff) + 1);
    else if (id >= LOCAL_IDENTITY_SCOPE) this.nextLocal = Math.max(this.nextLocal, (id & 0xffffff) + 1);
  }

  /** A cluster number for a new label set: its hash's, or the next free one after it on a collision.
   * Throws when every number of the cluster's range is held. */
  private allocateCluster(k: string): number {
    const { min, max } = this.range;
    const want = labelHashIdentity(k, this.range);
    let id = want;
    while (this.byNumber.has(id)) {
      id = id >= max ? min : id + 1;
      if (id === want) throw new Error(`no free cluster identity left in ${min}..${max}`);
    }
    if (id !== want) this.collisions.push({ key: k, holder: this.byNumber.get(want)!, id });
    return id;
  }

  /**
   * The translation from the numbers of one compiled policy to the stable numbers: reserved ids map to
   * themselves, every other id to the number its label set holds (allocated now when new).
   */
  mapping(policy: CompiledPolicy, _localPods?: ReadonlySet<string>): (id: number) => number {
    const table = new Map<number, number>();
    const keyed = policy.identities.all
      .filter((ident) => ident.id >= MIN_CLUSTER_IDENTITY)
      .map((ident) => ({ ident, scope: scopeOf(ident.id), key: `${scopeOf(ident.id)}:${ident.labels.map(labelString).join(",")}` }))
      // New label sets in key order: which of two colliding ones probes does not depend on policy/'s order.
      .sort((a, b) => (a.key < b.key ? -1 : a.key > b.key ? 1 : 0));
    for (const { ident, scope, key } of keyed) {
      let id = this.byLabels.get(key);
      if (id === undefined) {
        id =
          scope === "remote-node" ? (REMOTE_NODE_IDENTITY_SCOPE | this.nextRemoteNode++) >>> 0
          : scope === "local" ? (LOCAL_IDENTITY_SCOPE | this.nextLocal++) >>> 0
          : this.allocateCluster(key);
        this.remember(key, id);
      }
      table.set(ident.id, id);
    }
    return (id: number) => (id < MIN_CLUSTER_IDENTITY ? id : (table.get(id) ?? id));
  }

  /** label-set key → number, for display and persistence. */
  state(): IdentityState {
    return { byLabels: Object.fromEntries(this.byLabels) };
  }
}

/**
 * Stable numbers for other things the datapath remembers by number in its conntrack entries: backend ids
 * (service CT entries pin a flow to a backend id) and reverse-NAT indexes (a reply is reverse-NATed by the
 * index stored in the flow's CT entry). The simulator numbers both by position; a live node must not
 * renumber them, as Cilium's service and backend ID allocators do not (pkg/loadbalancer, pkg/service/id).
 */
export class StableNumbers {
  private readonly byKey = new Map<string, number>();
  private next: number;

  constructor(
    private readonly first: number,
    private readonly max: number,
    state?: Record<string, number>,
  ) {
    this.next = first;
    for (const [k, n] of Object.entries(state ?? {})) {
      this.byKey.set(k, n);
      this.next = Math.max(this.next, n + 1);
    }
  }

  /** The number of `key`, allocated when new (the lowest unused one once the range has wrapped). */
  get(key: string): number {
    let n = this.byKey.get(key);
    if (n !== undefined) return n;
    if (this.next > this.max) {
      const used = new Set(this.byKey.values());
      let i = this.first;
      while (used.has(i) && i <= this.max) i++;
      if (i > this.max) throw new Error(`no free number in ${this.first}..${this.max}`);
      n = i;
    } else n = this.next++;
    this.byKey.set(key, n);
    return n;
  }

  /** Forgets every key not in `live` (their numbers may be reused only after the range wraps). */
  retain(live: Set<string>): void {
    for (const k of [...this.byKey.keys()]) if (!live.has(k)) this.byKey.delete(k);
  }

  state(): Record<string, number> {
    return Object.fromEntries(this.byKey);
  }
}
