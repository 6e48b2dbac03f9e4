/*
 * Desired state from the Kubernetes API: list and watch Namespaces, Pods, Services, EndpointSlices,
 * NetworkPolicies, CiliumNetworkPolicies and CiliumClusterwideNetworkPolicies with @kubernetes/client-node
 * informers (ListWatch), as Cilium's agent does with client-go (pkg/k8s/watchers, pkg/k8s/resource):
 *   - the initial list fills each cache; the watch starts at the list's resourceVersion;
 *   - watches ask for bookmarks (allowWatchBookmarks), which only move the resourceVersion on;
 *   - a watch the server closes or drops is re-opened from the last resourceVersion;
 *   - 410 Gone (an expired resourceVersion, answered to the watch request or as an ERROR event in the stream)
 *     clears the resourceVersion, so the informer relists;
 *   - any other error (the API server unreachable, 5xx) stops that informer; it is restarted after
 *     `restartDelayMs` and relists — meanwhile the caches, and so the node's maps, stay as they were;
 *   - every `resyncMs` the whole cache is handed to the agent again (a resync), which reconciles the maps.
 * onChange is called (coalesced) after any add, update or delete once every informer has listed.
 */
import { KubeConfig, ListWatch, Watch, type KubernetesListObject, type KubernetesObject } from "@kubernetes/client-node";
import fetch from "node-fetch";
import type { ManifestObject } from "../policy/index.ts";

export interface ResourceKind {
  kind: string;
  apiVersion: string;
  /** Collection path across all namespaces. */
  path: string;
}

export const WATCHED_KINDS: ResourceKind[] = [
  { kind: "Namespace", apiVersion: "v1", path: "/api/v1/namespaces" },
  { kind: "Pod", apiVersion: "v1", path: "/api/v1/pods" },
  { kind: "Service", apiVersion: "v1", path: "/api/v1/services" },
  { kind: "EndpointSlice", apiVersion: "discovery.k8s.io/v1", path: "/apis/discovery.k8s.io/v1/endpointslices" },
  { kind: "NetworkPolicy", apiVersion: "networking.k8s.io/v1", path: "/apis/networking.k8s.io/v1/networkpolicies" },
  { kind: "CiliumNetworkPolicy", apiVersion: "cilium.io/v2", path: "/apis/cilium.io/v2/ciliumnetworkpolicies" },
  { kind: "CiliumClusterwideNetworkPolicy", apiVersion: "cilium.io/v2", path: "/apis/cilium.io/v2/ciliumclusterwidenetworkpolicies" },
];

export interface KubernetesSourceOptions {
  resyncMs?: number;
  restartDelayMs?: number;
  /** Coalescing window for onChange. */
  debounceMs?: number;
  log?: (level: "info" | "warn" | "error", msg: string) => void;
  /** Called with the kind on every list/watch failure (the agent counts them in a metric). */
  onError?: (kind: string) => void;
}

class K8sHttpError extends Error {
  constructor(
    readonly statusCode: number,
    message: string,
  ) {
    super(message);
  }
}

/** A watch that asks for bookmarks. */
class BookmarkWatch extends Watch {
  override watch(path: string, queryParams: Record<string, unknown>, callback: (phase: string, apiObj: unknown, watchObj?: unknown) => void, done: (err: unknown) => void): Promise<AbortController> {
    return super.watch(path, { ...queryParams, allowWatchBookmarks: true }, callback, done);
  }
}

export class KubernetesSource {
  private readonly informers = new Map<string, ListWatch<KubernetesObject>>();
  private readonly listed = new Set<string>();
  private readonly restartTimers = new Set<NodeJS.Timeout>();
  private resyncTimer?: NodeJS.Timeout;
  private debounce?: NodeJS.Timeout;
  private stopped = false;
  /** Errors seen (for metrics and tests). */
  errors = 0;
  relists = 0;
  private readonly log: NonNullable<KubernetesSourceOptions["log"]>;

  constructor(
    private readonly kc: KubeConfig,
    private readonly opts: KubernetesSourceOptions = {},
  ) {
    this.log = opts.log ?? ((level, msg) => process.stderr.write(`${new Date().toISOString()} ${level} ${msg}\n`));
  }

  private async list(r: ResourceKind): Promise<KubernetesListObject<KubernetesObject>> {
    const cluster = this.kc.getCurrentCluster();
    if (!cluster) throw new Error("no current cluster in the kubeconfig");
    const init = await this.kc.applyToFetchOptions({});
    const res = await fetch(`${cluster.server}${r.path}`, { ...(init as object), method: "GET" } as never);
    if (res.status !== 200) throw new K8sHttpError(res.status, `list ${r.path}: HTTP ${res.status}`);
    const body = (await res.json()) as KubernetesListObject<KubernetesObject>;
    this.relists++;
    for (const item of body.items ?? []) {
      item.kind ??= r.kind;
      item.apiVersion ??= r.apiVersion;
    }
    return body;
  }

  /** Starts every informer; resolves once each has listed (or rejects after timeoutMs). */
  async start(onChange: () => void, timeoutMs = 30_000): Promise<void> {
    this.stopped = false;
    const changed = () => {
      if (this.listed.size < WATCHED_KINDS.length) return;
      if (this.debounce) clearTimeout(this.debounce);
      this.debounce = setTimeout(() => onChange(), this.opts.debounceMs ?? 50);
    };
    const watch = new BookmarkWatch(this.kc);
    const ready = new Promise<void>((resolve, reject) => {
      const t = setTimeout(() => reject(new Error(`the Kubernetes API did not answer the initial lists within ${timeoutMs} ms`)), timeoutMs);
      for (const r of WATCHED_KINDS) {
        const inf = new ListWatch<KubernetesObject>(r.path, watch, async () => {
          const l = await this.list(r);
          if (!this.listed.has(r.kind)) {
            this.listed.add(r.kind);
            if (this.listed.size === WATCHED_KINDS.length) {
              clearTimeout(t);
              resolve();
            }
          }
          return l;
        }, false);
        for (const verb of ["add", "update", "delete"] as const) inf.on(verb, changed);
        inf.on("error", (err: unknown) => {
          this.errors++;
          this.opts.onError?.(r.kind);
          if (this.stopped) return;
          this.log("warn", `kubernetes ${r.kind} informer: ${(err as Error)?.message ?? String(err)}; restarting in ${this.opts.restartDelayMs ?? 1000} ms (state kept)`);
          const timer = setTimeout(() => {
            this.restartTimers.delete(timer);
            // Relist rather than resume: after an outage the events in between may be gone (client-go's
            // reflector relists in the same case). ListWatch keeps its resourceVersion private; clearing it
            // is the documented way a 410 makes it relist. The cache stays filled until the list answers.
            (inf as unknown as { resourceVersion: string }).resourceVersion = "";
            if (!this.stopped) void inf.start();
          }, this.opts.restartDelayMs ?? 1000);
          this.restartTimers.add(timer);
        });
        this.informers.set(r.kind, inf);
        void inf.start();
      }
    });
    await ready;
    if (this.opts.resyncMs) this.resyncTimer = setInterval(() => onChange(), this.opts.resyncMs);
  }

  /** Everything the caches hold, as manifest objects. */
  objects(): ManifestObject[] {
    const out: ManifestObject[] = [];
    for (const r of WATCHED_KINDS) {
      for (const o of this.informers.get(r.kind)?.list() ?? []) {
        const raw = JSON.parse(JSON.stringify({ ...o, kind: o.kind ?? r.kind, apiVersion: o.apiVersion ?? r.apiVersion })) as Record<string, unknown> & { metadata: ManifestObject["metadata"] };
        const meta = raw.metadata;
        out.push({ apiVersion: raw.apiVersion as string, kind: raw.kind as string, metadata: { ...meta, name: meta.name, namespace: meta.namespace, labels: meta.labels }, raw, source: { file: `k8s:${r.path}` } as never });
      }
    }
    return out;
  }

  stop(): void {
    this.stopped = true;
    if (this.resyncTimer) clearInterval(this.resyncTimer);
    if (this.debounce) clearTimeout(this.debounce);
    for (const t of this.restartTimers) clearTimeout(t);
    for (const inf of this.informers.values()) void inf.stop();
  }
}

/** A KubeConfig from a file, or in-cluster (service account) when path is "in-cluster". */
export function kubeConfig(path: string): KubeConfig {
  const kc = new KubeConfig();
  if (path === "in-cluster") kc.loadFromCluster();
  else kc.loadFromFile(path);
  return kc;
}
