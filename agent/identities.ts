/*
 * Stable security identities for the agent. policy/ numbers identities deterministically from the sorted
 * label sets of one snapshot of the cluster, so adding a pod with a new label set can renumber the others.
 * A running node cannot follow such a renumbering without a window where the ipcache and the policy map
 * disagree, so the agent keeps its own allocation: a label set keeps the number it got first, for as long as
 * the agent's state lives (persisted with the rest of the agent state, so a restart keeps the numbers too).
 * This mirrors Cilium's identity allocator (pkg/identity/cache, pkg/allocator): numbers are allocated once
 * per label set and never derived from the order of the cluster's objects.
 *
 * Reserved identities (< 256) are fixed and pass through unchanged; cluster identities are allocated from
 * the cluster's range (256.. with cluster id 0, id<<16.. otherwise), node-local CIDR identities from
 * (1 << 24) | 1, as upstream. This is the `--identity-allocation-mode local` numbering: one node's view;
 * identity-allocator.ts gives numbers every node agrees on.
 */
import { clusterIdentityRange, LOCAL_IDENTITY_SCOPE, MIN_CLUSTER_IDENTITY } from "../host/identity-scopes.ts";
import { labelString, type CompiledPolicy } from "../policy/index.ts";

export { LOCAL_IDENTITY_SCOPE, MIN_CLUSTER_IDENTITY };

export interface IdentityState {
  /** label-set key → number. */
  byLabels: Record<string, number>;
}

export class StableIdentities {
  private readonly byLabels = new Map<string, number>();
  private nextCluster: number;
  private readonly maxCluster: number;
  private nextLocal = 1;

  constructor(state?: IdentityState, clusterId = 0) {
    const range = clusterIdentityRange(clusterId);
    this.nextCluster = range.min;
    this.maxCluster = range.max;
    for (const [k, id] of Object.entries(state?.byLabels ?? {})) {
      // A number from another cluster id's range (the flag changed) is allocated again in this one.
      if (id < LOCAL_IDENTITY_SCOPE && (id < range.min || id > range.max)) continue;
      this.remember(k, id);
    }
  }

  private remember(k: string, id: number): void {
    this.byLabels.set(k, id);
    if (id >= LOCAL_IDENTITY_SCOPE) this.nextLocal = Math.max(this.nextLocal, (id & 0xffffff) + 1);
    else this.nextCluster = Math.max(this.nextCluster, id + 1);
  }

  /**
   * The translation from the numbers of one compiled policy to the stable numbers: reserved ids map to
   * themselves, every other id to the number its label set holds (allocated now when new).
   */
  mapping(policy: CompiledPolicy, _localPods?: ReadonlySet<string>): (id: number) => number {
    const table = new Map<number, number>();
    for (const ident of policy.identities.all) {
      if (ident.id < MIN_CLUSTER_IDENTITY) continue;
      const local = ident.id >= LOCAL_IDENTITY_SCOPE;
      const key = `${local ? "local" : "cluster"}:${ident.labels.map(labelString).join(",")}`;
      let id = this.byLabels.get(key);
      if (id === undefined) {
        if (!local && this.nextCluster > this.maxCluster) throw new Error(`no free cluster identity left (the range ends at ${this.maxCluster})`);
        id = local ? (LOCAL_IDENTITY_SCOPE | this.nextLocal++) >>> 0 : this.nextCluster++;
        this.byLabels.set(key, id);
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
