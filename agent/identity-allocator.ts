/*
 * Cluster-wide security identities: the interface both backends implement (kvstore on etcd,
 * identity-kvstore.ts; CiliumIdentity objects in Kubernetes, identity-crd.ts) and the agent's numbering
 * on top of it (ClusterIdentities). Mirrors Cilium's pkg/allocator (Allocator over a Backend) and
 * pkg/identity/cache (the identity allocator that keys label sets).
 *
 * What a node references: each agent holds one reference per label set of its local endpoints (Cilium's
 * localKeys), acquired when the first endpoint with that label set appears and released when the last one
 * goes. Identities of pods on other nodes are only looked up in the watched cache: their node allocates
 * them. An unreferenced identity is removed by garbage collection (gc()).
 *
 * The agent's reconcile is synchronous, allocation is not: ClusterIdentities answers from what it holds and
 * from the cache, starts the allocations that are missing, and calls `onReady` when one completes so the
 * agent reconciles again. Until then the identity is "pending" (undefined), which node/desired.ts writes as
 * reserved:init and never as an allow.
 */
import { clusterIdentityRange, isLocalIdentity, MIN_CLUSTER_IDENTITY, pickFreeId } from "../host/identity-scopes.ts";

// pickFreeId lives in host/ so the simulator numbers identities with the same function (docs/clustermesh.md).
export { pickFreeId };
import type { CompiledPolicy, Label } from "../policy/index.ts";
import { StableIdentities, type IdentityCollision, type IdentityState } from "./identities.ts";

/** A cluster-wide identity allocator (one per agent). */
export interface IdentityAllocator {
  readonly mode: "kvstore" | "crd";
  /** Connects, lists the identities and starts watching them. Resolves once the cache is synced. */
  start(): Promise<void>;
  /**
   * Acquires this node's reference on `key` and resolves to its number: the existing identity of that
   * label set, or a new one (`preferred` first when it is free). Two nodes allocating the same key resolve
   * to one number. Rejects when the backend cannot be reached (the caller retries).
   */
  allocate(key: string, preferred?: number): Promise<number>;
  /** Drops this node's reference on `key` (the identity stays until gc finds it unused). */
  release(key: string): Promise<void>;
  /** The number of `key` in the watched cache (any node's allocation), or undefined. */
  lookup(key: string): number | undefined;
  /** Every identity in the cache: number → key. */
  entries(): Map<number, string>;
  /** Called (coalesced) after the watched cache changed. */
  onChange(cb: () => void): void;
  /**
   * One garbage-collection pass: removes identities no node references that were also unreferenced in the
   * previous pass (Cilium's two-round staleness), and returns their numbers.
   */
  gc(): Promise<number[]>;
  /** Releases this node's references (kvstore: revokes the lease) and stops watching. */
  close(): Promise<void>;
}

/**
 * The kvstore key of a label set, as Cilium writes it (labels.SortedList: `source:key=value;` per label,
 * sorted).
 */
export function labelSetKey(labels: Label[]): string {
  return labels
    .map((l) => `${l.source}:${l.key}=${l.value};`)
    .sort()
    .join("");
}

/** What the agent's reconcile uses to translate a compiled policy's identity numbers. */
export interface IdentityNumbering {
  /**
   * The translation from one compiled policy's numbers to the node's: reserved ids unchanged, every other
   * id to its allocated number, undefined while pending. `localPods` (ns/name) are this node's endpoints.
   */
  mapping(policy: CompiledPolicy, localPods: ReadonlySet<string>): (id: number) => number | undefined;
  state(): IdentityState;
  /** Label sets whose hashed numbers met (local mode, agent/identities.ts); none in cluster-wide modes. */
  readonly collisions?: readonly IdentityCollision[];
}

/**
 * The agent's numbering in a cluster-wide mode: node-local (CIDR) identities from a StableIdentities as in
 * local mode, cluster-scoped ones from the allocator.
 */
export class ClusterIdentities implements IdentityNumbering {
  /** key → number this node holds a reference on. */
  private readonly held = new Map<string, number>();
  private readonly inflight = new Set<string>();
  private readonly releasing = new Set<string>();
  /** Numbers from the persisted state: preferred when a key is allocated again after a restart. */
  private readonly preferred: Map<string, number>;
  private readonly local: StableIdentities;
  private retryTimer?: NodeJS.Timeout;
  private closed = false;

  constructor(
    readonly allocator: IdentityAllocator,
    private readonly opts: { state?: IdentityState; onReady: () => void; log?: (msg: string) => void; retryMs?: number },
  ) {
    const st = opts.state?.byLabels ?? {};
    this.preferred = new Map(Object.entries(st).filter(([k]) => k.startsWith("cluster:")).map(([k, v]) => [k.slice(8), v]));
    this.local = new StableIdentities({ byLabels: Object.fromEntries(Object.entries(st).filter(([k]) => k.startsWith("local:"))) });
  }

  mapping(policy: CompiledPolicy, localPods: ReadonlySet<string>): (id: number) => number | undefined {
    // Only the node-local (CIDR) identities are numbered here; cluster-scoped ones come from the allocator.
    const localMap = this.local.mapping({ ...policy, identities: { ...policy.identities, all: policy.identities.all.filter((i) => isLocalIdentity(i.id)) } });
    const table = new Map<number, number | undefined>();
    const wanted = new Set<string>();
    for (const ident of policy.identities.all) {
      if (ident.id < MIN_CLUSTER_IDENTITY) continue;
      if (isLocalIdentity(ident.id)) {
        table.set(ident.id, localMap(ident.id));
        continue;
      }
      const key = labelSetKey(ident.labels);
      if (ident.pods.some((p) => localPods.has(p))) wanted.add(key);
      // The cache's number first: after a race resolved to the lowest number (identity-crd.ts C1) every
      // node uses that one, including this node for its own endpoints.
      table.set(ident.id, this.allocator.lookup(key) ?? this.held.get(key));
    }
    this.sync(wanted);
    return (id) => (id < MIN_CLUSTER_IDENTITY ? id : table.has(id) ? table.get(id) : undefined);
  }

  /** Acquires references for newly wanted keys and releases those no local endpoint uses any more. */
  private sync(wanted: Set<string>): void {
    if (this.closed) return;
    for (const key of wanted) {
      if (this.held.has(key) || this.inflight.has(key)) continue;
      this.inflight.add(key);
      this.allocator.allocate(key, this.preferred.get(key)).then(
        (id) => {
          this.inflight.delete(key);
          this.held.set(key, id);
          this.preferred.set(key, id);
          this.opts.onReady();
        },
        (e: Error) => {
          this.inflight.delete(key);
          this.opts.log?.(`identity allocation for ${key} failed (${e.message}); retrying`);
          this.scheduleRetry();
        },
      );
    }
    for (const [key] of this.held) {
      if (wanted.has(key) || this.releasing.has(key)) continue;
      this.held.delete(key);
      this.releasing.add(key);
      this.allocator.release(key).then(
        () => this.releasing.delete(key),
        (e: Error) => {
          this.releasing.delete(key);
          this.opts.log?.(`identity release for ${key} failed (${e.message}); the lease or gc will release it`);
        },
      );
    }
  }

  private scheduleRetry(): void {
    if (this.retryTimer || this.closed) return;
    this.retryTimer = setTimeout(() => {
      this.retryTimer = undefined;
      this.opts.onReady();
    }, this.opts.retryMs ?? 1000);
    this.retryTimer.unref?.();
  }

  /** True while some wanted identity is still being allocated. */
  pending(): boolean {
    return this.inflight.size > 0;
  }

  state(): IdentityState {
    const byLabels: Record<string, number> = {};
    for (const [k, v] of Object.entries(this.local.state().byLabels)) if (k.startsWith("local:")) byLabels[k] = v;
    for (const [k, v] of this.preferred) byLabels[`cluster:${k}`] = v;
    return { byLabels };
  }

  async close(): Promise<void> {
    this.closed = true;
    clearTimeout(this.retryTimer);
    await this.allocator.close();
  }
}

/** Coalesces bursts of cache changes (a list, many watch events) into one call of each listener. */
export class ChangeNotifier {
  private readonly listeners: (() => void)[] = [];
  private timer?: NodeJS.Timeout;

  add(cb: () => void): void {
    this.listeners.push(cb);
  }

  notify(): void {
    if (this.timer) return;
    this.timer = setTimeout(() => {
      this.timer = undefined;
      for (const l of this.listeners) l();
    }, 10);
  }

  stop(): void {
    clearTimeout(this.timer);
  }
}


