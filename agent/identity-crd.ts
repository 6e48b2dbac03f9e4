/*
 * Identity allocation in the Kubernetes API (`--identity-allocation-mode crd`): one cluster-scoped
 * CiliumIdentity (cilium.io/v2) per number, named by the number, its label set in `security-labels`, as
 * Cilium's CRD backend writes them (pkg/k8s/identitybackend/identity.go).
 *
 * Rules, numbered as they are cited below:
 *   C1 every agent lists and watches CiliumIdentities (an informer); a label set's number is looked up in
 *      that cache. Where two objects carry one label set (two agents raced with different numbers before
 *      either saw the other's), the lowest number wins on every node, and the other is unreferenced and
 *      collected (rule C5) — the race resolves to one number;
 *   C2 a new number is the preferred one when free, else the lowest free one in the cluster's range, and
 *      is claimed by creating the object under that name: the API server refuses a second create (409), so
 *      a number is never given to two label sets. On 409 the existing object is read: the same label set
 *      means the other agent won the same race and its number is used; otherwise the next number is tried;
 *   C3 a node's reference is its entry in `status.nodes` (node name → time), as CiliumIdentity's
 *      IdentityStatus carried references per node; written with a JSON merge patch so nodes never overwrite
 *      each other, removed on release;
 *   C4 the agent refreshes the times of its references every heartbeat interval, so a node that dies stops
 *      refreshing and its references go stale after the heartbeat timeout (the lease of kvstore mode);
 *   C5 garbage collection deletes an identity with no fresh reference that was also unreferenced in the
 *      previous pass, with its resourceVersion as precondition: a reference added meanwhile makes the
 *      delete fail (409) and the identity stays.
 */
import type { KubeConfig, KubernetesObject } from "@kubernetes/client-node";
import { ChangeNotifier, pickFreeId, type IdentityAllocator } from "./identity-allocator.ts";
import { K8sHttpError as HttpError, k8sRequest, watchCollection, type CollectionInformer } from "./k8s-objects.ts";

export const IDENTITY_PATH = "/apis/cilium.io/v2/ciliumidentities";
/** What this backend does with CiliumIdentities: what deploy/'s ClusterRole must grant for crd mode. */
export const IDENTITY_VERBS = ["get", "list", "watch", "create", "patch", "delete"] as const;

export interface CiliumIdentity extends KubernetesObject {
  "security-labels"?: Record<string, string>;
  status?: { nodes?: Record<string, string> };
}

export interface CrdAllocatorOptions {
  kubeConfig: KubeConfig;
  nodeName: string;
  clusterId?: number;
  /** How often this node refreshes its references (C4). Default 60 s. */
  heartbeatMs?: number;
  /** A reference older than this is stale (C4). Default 3 heartbeats. */
  heartbeatTimeoutMs?: number;
  /** How long start() waits for the first list. Default 30 s. */
  startTimeoutMs?: number;
  log?: (msg: string) => void;
}

/** The label-set key ("source:key=value;" sorted) of an object's security labels, and back. */
export function keyOfSecurityLabels(l: Record<string, string>): string {
  return Object.entries(l)
    .map(([k, v]) => `${k}=${v};`)
    .sort()
    .join("");
}

export function securityLabelsOfKey(key: string): Record<string, string> {
  const out: Record<string, string> = {};
  for (const part of key.split(";")) {
    if (!part) continue;
    const eq = part.indexOf("=");
    out[eq < 0 ? part : part.slice(0, eq)] = eq < 0 ? "" : part.slice(eq + 1);
  }
  return out;
}

/** The object's labels for selectors (`kubectl get ciliumidentities -l app=x`): valid label keys only, source dropped. */
function k8sLabels(sec: Record<string, string>): Record<string, string> {
  const out: Record<string, string> = {};
  const keyOk = /^([a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*\/)?[A-Za-z0-9]([-A-Za-z0-9_.]{0,61}[A-Za-z0-9])?$/;
  const valOk = /^([A-Za-z0-9]([-A-Za-z0-9_.]{0,61}[A-Za-z0-9])?)?$/;
  for (const [k, v] of Object.entries(sec)) {
    const bare = k.slice(k.indexOf(":") + 1);
    if (keyOk.test(bare) && valOk.test(v)) out[bare] = v;
  }
  return out;
}

export class CrdAllocator implements IdentityAllocator {
  readonly mode = "crd" as const;
  private informer?: CollectionInformer<CiliumIdentity>;
  /** key → number this node references. */
  private readonly localKeys = new Map<string, number>();
  private staleLastRound = new Map<number, string>();
  private readonly changes = new ChangeNotifier();
  private heartbeat?: NodeJS.Timeout;
  private closed = false;

  constructor(private readonly opts: CrdAllocatorOptions) {}

  private request(method: string, path: string, body?: unknown, contentType = "application/json"): Promise<unknown> {
    return k8sRequest(this.opts.kubeConfig, method, path, body, contentType);
  }

  async start(): Promise<void> {
    this.informer = await watchCollection<CiliumIdentity>(this.opts.kubeConfig, IDENTITY_PATH, {
      what: "CiliumIdentity",
      onEvent: () => (this.notify(), this.converge()),
      log: (m) => !this.closed && this.opts.log?.(m),
      startTimeoutMs: this.opts.startTimeoutMs,
    });
    const every = this.opts.heartbeatMs ?? 60_000;
    this.heartbeat = setInterval(() => void this.refresh(), every);
    this.heartbeat.unref();
  }

  private notify(): void {
    this.changes.notify();
  }

  /**
   * C1: where this node references a number that lost a race (a lower one carries the same label set), it
   * moves its reference to the winner, leaving the loser to garbage collection.
   */
  private converge(): void {
    for (const [key, id] of [...this.localKeys]) {
      const winner = this.lookup(key);
      if (winner === undefined || winner >= id) continue;
      this.localKeys.set(key, winner);
      void this.reference(winner, true)
        .then(() => this.reference(id, false))
        .catch((e: Error) => this.opts.log?.(`moving the reference of ${key} from ${id} to ${winner}: ${e.message}`));
    }
  }

  onChange(cb: () => void): void {
    this.changes.add(cb);
  }

  private cached(): readonly CiliumIdentity[] {
    return this.informer?.list() ?? [];
  }

  entries(): Map<number, string> {
    const m = new Map<number, string>();
    for (const o of this.cached()) {
      const id = Number(o.metadata?.name);
      if (Number.isInteger(id) && o["security-labels"]) m.set(id, keyOfSecurityLabels(o["security-labels"]));
    }
    return m;
  }

  /** C1: the lowest number whose object carries `key`. */
  lookup(key: string): number | undefined {
    let best: number | undefined;
    for (const [id, k] of this.entries()) if (k === key && (best === undefined || id < best)) best = id;
    return best;
  }

  /** C3: this node's reference on object `id`, as a merge patch (other nodes' entries untouched). */
  private async reference(id: number, present: boolean): Promise<void> {
    await this.request("PATCH", `${IDENTITY_PATH}/${id}`, { status: { nodes: { [this.opts.nodeName]: present ? new Date().toISOString() : null } } }, "application/merge-patch+json");
  }

  async allocate(key: string, preferred?: number): Promise<number> {
    const have = this.localKeys.get(key);
    if (have !== undefined) return have;
    const known = this.lookup(key);
    if (known !== undefined) {
      try {
        await this.reference(known, true);
        this.localKeys.set(key, known);
        return known;
      } catch (e) {
        if (!(e instanceof HttpError && e.status === 404)) throw e;
        // Collected meanwhile: allocate as new.
      }
    }
    const taken = new Set(this.entries().keys());
    const tried = new Set<number>();
    for (;;) {
      const n = pickFreeId((i) => taken.has(i), this.opts.clusterId ?? 0, preferred, tried);
      if (n === undefined) throw new Error(`no free identity left in cluster ${this.opts.clusterId ?? 0}'s range`);
      tried.add(n);
      const sec = securityLabelsOfKey(key);
      const body: CiliumIdentity = {
        apiVersion: "cilium.io/v2",
        kind: "CiliumIdentity",
        metadata: { name: String(n), labels: k8sLabels(sec) },
        "security-labels": sec,
        status: { nodes: { [this.opts.nodeName]: new Date().toISOString() } },
      };
      try {
        await this.request("POST", IDENTITY_PATH, body);
        this.localKeys.set(key, n);
        return n;
      } catch (e) {
        if (!(e instanceof HttpError && e.status === 409)) throw e;
      }
      // C2: someone created that number first; the same label set means the same race, won by them.
      const other = (await this.request("GET", `${IDENTITY_PATH}/${n}`).catch(() => undefined)) as CiliumIdentity | undefined;
      if (other?.["security-labels"] && keyOfSecurityLabels(other["security-labels"]) === key) {
        await this.reference(n, true);
        this.localKeys.set(key, n);
        return n;
      }
    }
  }

  async release(key: string): Promise<void> {
    const id = this.localKeys.get(key);
    if (id === undefined) return;
    this.localKeys.delete(key);
    await this.reference(id, false).catch((e: unknown) => {
      if (!(e instanceof HttpError && e.status === 404)) throw e;
    });
  }

  /** C4: refresh this node's references; one whose object was collected is created again. */
  async refresh(): Promise<void> {
    for (const [key, id] of [...this.localKeys]) {
      try {
        await this.reference(id, true);
      } catch (e) {
        if (e instanceof HttpError && e.status === 404) {
          this.localKeys.delete(key);
          await this.allocate(key, id).catch((err: Error) => this.opts.log?.(`re-creating identity ${id}: ${err.message}`));
        } else this.opts.log?.(`identity heartbeat for ${id}: ${(e as Error).message}`);
      }
    }
  }

  async gc(now = Date.now()): Promise<number[]> {
    const timeout = this.opts.heartbeatTimeoutMs ?? 3 * (this.opts.heartbeatMs ?? 60_000);
    const list = (await this.request("GET", IDENTITY_PATH)) as { items: CiliumIdentity[] };
    const stale = new Map<number, string>();
    const deleted: number[] = [];
    for (const o of list.items) {
      const id = Number(o.metadata?.name);
      const rv = o.metadata?.resourceVersion ?? "";
      if (!Number.isInteger(id)) continue;
      const fresh = Object.values(o.status?.nodes ?? {}).some((t) => now - Date.parse(t) < timeout);
      if (fresh) continue;
      if (this.staleLastRound.get(id) !== rv) {
        stale.set(id, rv);
        continue;
      }
      try {
        await this.request("DELETE", `${IDENTITY_PATH}/${id}`, { kind: "DeleteOptions", apiVersion: "v1", preconditions: { resourceVersion: rv } });
        deleted.push(id);
      } catch (e) {
        if (!(e instanceof HttpError && (e.status === 409 || e.status === 404))) throw e;
      }
    }
    this.staleLastRound = stale;
    return deleted;
  }

  /** Stops without releasing (as a crashed agent leaves its references; tests). */
  abandon(): void {
    this.closed = true;
    clearInterval(this.heartbeat);
    this.changes.stop();
    this.informer?.stop();
  }

  async close(): Promise<void> {
    if (this.closed) return;
    for (const key of [...this.localKeys.keys()]) await this.release(key).catch(() => undefined);
    this.abandon();
  }
}
