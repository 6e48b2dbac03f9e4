/*
 * crd mode's garbage collection of CiliumNode and CiliumEndpoint objects left by agents that are gone: the
 * part of Cilium's operator that ciliate runs inside its agents (ciliate has no separate operator), on one
 * agent at a time, elected through a coordination.k8s.io/v1 Lease as the operator's replicas are (Cilium's
 * operator uses client-go's leaderelection with a Lease lock; the election here follows client-go's
 * tools/leaderelection/leaderelection.go: tryAcquireOrRenew).
 *
 * What the leader collects, every interval (rules numbered as cited below):
 *   G1 a CiliumNode whose Kubernetes Node does not exist, and that has no ownerReferences (an owner lets the
 *      API's garbage collector do it), is marked on the first pass that sees it so and deleted on the next
 *      pass (one interval later) if its Node is still missing; a Node that reappears unmarks it (cilium/cilium
 *      operator/watchers/cilium_node_gc.go performCiliumNodeGC, mark and sweep, `--nodes-gc-interval`).
 *   G2 a CiliumEndpoint whose owner Pod (ownerReferences kind Pod) is gone, or not running any more (phase
 *      Succeeded or Failed), is deleted (cilium/cilium operator/endpointgc/gc.go checkIfCEPShouldBeDeleted).
 *      Its Pod is checked only when the Pods collection could be listed.
 *   G3 a CiliumEndpoint without a Pod owner (its agent did not know the pod's uid: desired state from
 *      manifests) is owned by its node: it goes, marked and swept as in G1, when no CiliumNode has the
 *      address its status.networking.node names (Cilium's CEP GC keeps a CEP whose CiliumNode owner exists,
 *      same file). So after G1 removes a dead node, its endpoints follow one interval later.
 *   G4 nothing is deleted on an unknown: a pass whose list of Nodes, CiliumNodes or CiliumEndpoints failed
 *      deletes nothing (one log line); every delete carries the resourceVersion it judged as a precondition,
 *      so an object written again meanwhile (a restarted agent, crd-state.ts R2) is not deleted.
 * Other agents drop a node, its routes and its endpoints as soon as its CiliumNode is deleted (crd-state.ts
 * R4: an endpoint whose node has no CiliumNode is not part of the remote view).
 *
 * The election (client-go's, on a Lease in kube-system):
 *   L1 an agent may take the lease when it does not exist (create), when it holds it, or when the holder has
 *      not renewed it for leaseDurationSeconds as observed on this agent's clock (no clock comparison across
 *      nodes: the time counted is since this agent last saw the record change).
 *   L2 every write is a merge patch carrying the resourceVersion it read: two agents racing for an expired
 *      lease cannot both win (the API answers the loser 409 Conflict).
 *   L3 the leader renews every retry period; when it could not renew for renewDeadline it stops acting as
 *      leader before its lease can expire for the others. A graceful stop hands the lease back (holder
 *      emptied), so another agent takes over at once; a killed leader's lease expires.
 */
import { randomUUID } from "node:crypto";
import type { KubeConfig, KubernetesObject } from "@kubernetes/client-node";
import { ENDPOINTS_PATH, NODES_PATH, type CiliumEndpoint, type CiliumNode } from "./crd-state.ts";
import { K8sHttpError, k8sRequest } from "./k8s-objects.ts";

export const LEASE_NAMESPACE = "kube-system";
export const LEASE_NAME = "ciliate-operator-resource-lock";
export const LEASE_PATH = "/apis/coordination.k8s.io/v1/leases";
/** What the election does with Leases: what deploy/'s ClusterRole must grant. */
export const LEASE_VERBS = ["get", "create", "patch"] as const;
const leasePath = (name?: string) => `/apis/coordination.k8s.io/v1/namespaces/${LEASE_NAMESPACE}/leases${name ? `/${name}` : ""}`;
const K8S_NODES_PATH = "/api/v1/nodes";
const PODS_PATH = "/api/v1/pods";

interface Lease extends KubernetesObject {
  spec?: { holderIdentity?: string; leaseDurationSeconds?: number; acquireTime?: string; renewTime?: string; leaseTransitions?: number };
}

interface Pod extends KubernetesObject {
  status?: { phase?: string };
}

export interface LeaderElectorOptions {
  kubeConfig: KubeConfig;
  /** This agent's identity in the lease (node name and a random suffix). */
  identity: string;
  leaseDurationMs: number;
  /** Defaults: two thirds and a seventh of the lease duration (client-go's 10 s and 2 s for 15 s). */
  renewDeadlineMs?: number;
  retryPeriodMs?: number;
  log?: (msg: string) => void;
  onChange?: (leader: boolean) => void;
  name?: string;
}

/** L1–L3: one agent at a time leads. */
export class LeaderElector {
  private leading = false;
  private lastRenew = 0;
  private observed?: { record: string; at: number };
  private timer?: NodeJS.Timeout;
  private stopped = false;
  private lastError?: string;
  private readonly log: (msg: string) => void;
  private readonly name: string;

  constructor(private readonly opts: LeaderElectorOptions) {
    this.log = opts.log ?? (() => undefined);
    this.name = opts.name ?? LEASE_NAME;
  }

  start(): void {
    const loop = async () => {
      if (this.stopped) return;
      await this.tryAcquireOrRenew().then(
        () => (this.lastError = undefined),
        (e: Error) => {
          // Logged once until it changes or clears (an API server away fails every retry period).
          const m = `leader election: ${e.message.split("\n")[0]}`;
          if (m !== this.lastError) this.log(m);
          this.lastError = m;
        },
      );
      // L3: a leader that could not renew for renewDeadline steps down.
      if (this.leading && Date.now() - this.lastRenew > (this.opts.renewDeadlineMs ?? (this.opts.leaseDurationMs * 2) / 3)) this.set(false);
      if (!this.stopped) this.timer = setTimeout(() => void loop(), this.opts.retryPeriodMs ?? this.opts.leaseDurationMs / 7.5);
    };
    void loop();
  }

  isLeader(): boolean {
    return this.leading;
  }

  private set(leading: boolean): void {
    if (leading === this.leading) return;
    this.leading = leading;
    this.log(`leader election: ${this.opts.identity} ${leading ? "leads" : "no longer leads"} (lease ${LEASE_NAMESPACE}/${this.name})`);
    this.opts.onChange?.(leading);
  }

  private async tryAcquireOrRenew(): Promise<void> {
    const now = new Date();
    const spec = { holderIdentity: this.opts.identity, leaseDurationSeconds: Math.ceil(this.opts.leaseDurationMs / 1000), renewTime: now.toISOString() };
    let cur: Lease;
    try {
      cur = (await k8sRequest(this.opts.kubeConfig, "GET", leasePath(this.name))) as Lease;
    } catch (e) {
      if (!(e instanceof K8sHttpError && e.status === 404)) throw e;
      await k8sRequest(this.opts.kubeConfig, "POST", leasePath(), {
        apiVersion: "coordination.k8s.io/v1",
        kind: "Lease",
        metadata: { name: this.name, namespace: LEASE_NAMESPACE },
        spec: { ...spec, acquireTime: now.toISOString(), leaseTransitions: 0 },
      });
      this.renewed();
      return;
    }
    const record = JSON.stringify(cur.spec ?? {});
    if (this.observed?.record !== record) this.observed = { record, at: Date.now() };
    const holder = cur.spec?.holderIdentity;
    const mine = holder === this.opts.identity;
    const durationMs = (cur.spec?.leaseDurationSeconds ?? 0) * 1000;
    // L1: someone else's lease, renewed within its duration as seen here.
    if (!mine && holder && this.observed.at + durationMs > Date.now()) {
      this.set(false);
      return;
    }
    const patch = {
      metadata: { resourceVersion: cur.metadata?.resourceVersion },
      spec: mine ? spec : { ...spec, acquireTime: now.toISOString(), leaseTransitions: (cur.spec?.leaseTransitions ?? 0) + 1 },
    };
    try {
      await k8sRequest(this.opts.kubeConfig, "PATCH", leasePath(this.name), patch, "application/merge-patch+json");
    } catch (e) {
      // L2: another agent wrote first.
      if (e instanceof K8sHttpError && e.status === 409) return this.set(false);
      throw e;
    }
    this.renewed();
  }

  private renewed(): void {
    this.lastRenew = Date.now();
    this.set(true);
  }

  /** Stops, as a killed agent does: a leader leaves its lease to expire. */
  stop(): void {
    this.stopped = true;
    clearTimeout(this.timer);
    this.set(false);
  }

  /**
   * A graceful stop: a leader also hands the lease back (holder emptied, duration 1 s, as client-go's
   * release with ReleaseOnCancel), so another agent takes over at its next retry instead of after the
   * lease duration. Best effort: an API server away leaves the lease to expire.
   */
  async release(): Promise<void> {
    const leading = this.leading;
    this.stop();
    if (!leading) return;
    // At most 2 s: a stopping agent does not wait on an API server that does not answer.
    let timer: NodeJS.Timeout | undefined;
    const timeout = new Promise<void>((r) => (timer = setTimeout(() => r(this.log("leader election: releasing the lease took over 2 s; it expires instead")), 2000)));
    await Promise.race([this.handBack(), timeout]);
    clearTimeout(timer);
  }

  private async handBack(): Promise<void> {
    try {
      const cur = (await k8sRequest(this.opts.kubeConfig, "GET", leasePath(this.name))) as Lease;
      if (cur.spec?.holderIdentity !== this.opts.identity) return;
      const patch = { metadata: { resourceVersion: cur.metadata?.resourceVersion }, spec: { holderIdentity: "", leaseDurationSeconds: 1, renewTime: new Date().toISOString() } };
      await k8sRequest(this.opts.kubeConfig, "PATCH", leasePath(this.name), patch, "application/merge-patch+json");
    } catch (e) {
      this.log(`leader election: could not release the lease (${(e as Error).message.split("\n")[0]}); it expires instead`);
    }
  }
}

/** One pass's inputs: the lists (undefined when a list failed, G4). */
export interface GcInputs {
  nodes?: Set<string>;
  ciliumNodes?: CiliumNode[];
  endpoints?: CiliumEndpoint[];
  /** "namespace/name" → { uid, phase } of every pod, undefined when the Pods could not be listed (G2). */
  pods?: Map<string, { uid?: string; phase?: string }>;
}

export interface GcDecision {
  /** [name, resourceVersion] of CiliumNodes to delete. */
  nodes: [string, string | undefined][];
  /** [namespace, name, resourceVersion] of CiliumEndpoints to delete. */
  endpoints: [string, string, string | undefined][];
}

/**
 * G1–G4 for one pass at `now` (ms): what to delete. `marks` (key → first time seen orphaned) is kept by the
 * caller across passes and updated here.
 */
export function gcPass(inp: GcInputs, marks: Map<string, number>, now: number, intervalMs: number): GcDecision {
  const out: GcDecision = { nodes: [], endpoints: [] };
  if (!inp.nodes || !inp.ciliumNodes || !inp.endpoints) return out; // G4
  const seen = new Set<string>();
  const sweep = (key: string): boolean => {
    seen.add(key);
    const at = marks.get(key);
    if (at === undefined) marks.set(key, now);
    // Marked on an earlier pass (passes are one interval apart; half of one absorbs timer jitter, so a
    // mark never waits a second interval because its pass ran a millisecond early).
    return at !== undefined && now - at >= intervalMs / 2;
  };
  const liveNodeIps = new Set<string>();
  for (const cn of inp.ciliumNodes) {
    const name = cn.metadata?.name;
    if (!name) continue;
    const orphan = !inp.nodes.has(name) && !(cn.metadata?.ownerReferences?.length);
    if (orphan && sweep(`node/${name}`)) {
      out.nodes.push([name, cn.metadata?.resourceVersion]);
      continue;
    }
    for (const a of cn.spec?.addresses ?? []) if (a.type === "InternalIP" && a.ip) liveNodeIps.add(a.ip);
  }
  for (const cep of inp.endpoints) {
    const { name, namespace } = cep.metadata ?? {};
    if (!name || !namespace) continue;
    const del = () => out.endpoints.push([namespace, name, cep.metadata?.resourceVersion]);
    const owner = cep.metadata?.ownerReferences?.find((o) => o.kind === "Pod");
    if (owner) {
      // G2
      if (!inp.pods) continue;
      const pod = inp.pods.get(`${namespace}/${owner.name}`);
      if (!pod || (owner.uid && pod.uid && owner.uid !== pod.uid) || pod.phase === "Succeeded" || pod.phase === "Failed") del();
      continue;
    }
    // G3
    const node = cep.status?.networking?.node;
    if (node && !liveNodeIps.has(node) && sweep(`cep/${namespace}/${name}`)) del();
  }
  for (const k of [...marks.keys()]) if (!seen.has(k)) marks.delete(k);
  return out;
}

export interface CrdGarbageCollectorOptions {
  kubeConfig: KubeConfig;
  nodeName: string;
  /** G1/G3's interval (Cilium's --nodes-gc-interval), ms. */
  intervalMs: number;
  leaseDurationMs: number;
  log?: (msg: string) => void;
  leaseName?: string;
}

/** The operator-like role of one agent: elected (L1–L3), it runs gcPass every interval. */
export class CrdGarbageCollector {
  readonly elector: LeaderElector;
  private readonly marks = new Map<string, number>();
  private timer?: NodeJS.Timeout;
  private readonly log: (msg: string) => void;
  private failing?: string;
  private running = false;
  /** Completed passes as leader (tests, diagnostics). */
  passes = 0;

  constructor(private readonly opts: CrdGarbageCollectorOptions) {
    this.log = opts.log ?? (() => undefined);
    this.elector = new LeaderElector({
      kubeConfig: opts.kubeConfig,
      identity: `${opts.nodeName}_${randomUUID()}`,
      leaseDurationMs: opts.leaseDurationMs,
      log: this.log,
      name: opts.leaseName,
      onChange: (leader) => {
        clearInterval(this.timer);
        this.marks.clear();
        if (leader) {
          void this.pass();
          this.timer = setInterval(() => void this.pass(), opts.intervalMs);
        }
      },
    });
  }

  start(): void {
    this.elector.start();
  }

  private async list<T>(path: string): Promise<T[] | undefined> {
    try {
      return ((await k8sRequest(this.opts.kubeConfig, "GET", path)) as { items?: T[] }).items ?? [];
    } catch (e) {
      const why = `cannot list ${path}: ${(e as Error).message.split("\n")[0]}`;
      if (this.failing !== why) this.log(`crd gc: ${why}; nothing is collected meanwhile`);
      this.failing = why;
      return undefined;
    }
  }

  /** One pass (leader only). */
  async pass(): Promise<void> {
    if (!this.elector.isLeader() || this.running) return;
    this.running = true;
    try {
      await this.collect();
    } finally {
      this.running = false;
    }
  }

  private async collect(): Promise<void> {
    const nodes = await this.list<KubernetesObject>(K8S_NODES_PATH);
    const ciliumNodes = await this.list<CiliumNode>(NODES_PATH);
    const endpoints = await this.list<CiliumEndpoint>(ENDPOINTS_PATH);
    // G2 only: a missing Pods collection stops nothing else.
    const pods = await k8sRequest(this.opts.kubeConfig, "GET", PODS_PATH).then(
      (l) => new Map(((l as { items?: Pod[] }).items ?? []).map((p) => [`${p.metadata?.namespace}/${p.metadata?.name}`, { uid: p.metadata?.uid, phase: p.status?.phase }])),
      () => undefined,
    );
    if (nodes && ciliumNodes && endpoints) this.failing = undefined;
    if (!this.elector.isLeader()) return;
    const d = gcPass({ nodes: nodes && new Set(nodes.map((n) => n.metadata?.name ?? "")), ciliumNodes, endpoints, pods }, this.marks, Date.now(), this.opts.intervalMs);
    const del = async (what: string, path: string, rv: string | undefined) => {
      try {
        await k8sRequest(this.opts.kubeConfig, "DELETE", path, rv ? { kind: "DeleteOptions", apiVersion: "v1", preconditions: { resourceVersion: rv } } : undefined);
        this.log(`crd gc: deleted ${what}`);
      } catch (e) {
        // 404: gone already; 409: written again since it was judged (G4).
        if (!(e instanceof K8sHttpError && (e.status === 404 || e.status === 409))) this.log(`crd gc: cannot delete ${what}: ${(e as Error).message.split("\n")[0]}`);
      }
    };
    for (const [name, rv] of d.nodes) await del(`CiliumNode ${name} (its Node is gone)`, `${NODES_PATH}/${encodeURIComponent(name)}`, rv);
    for (const [ns, name, rv] of d.endpoints) await del(`CiliumEndpoint ${ns}/${name} (its owner is gone)`, `/apis/cilium.io/v2/namespaces/${encodeURIComponent(ns)}/ciliumendpoints/${encodeURIComponent(name)}`, rv);
    this.passes++;
  }

  /** As a killed agent: the lease is left to expire (tests). */
  stop(): void {
    clearInterval(this.timer);
    this.elector.stop();
  }

  /** A graceful stop: the lease is handed back. */
  async close(): Promise<void> {
    clearInterval(this.timer);
    await this.elector.release();
  }
}
