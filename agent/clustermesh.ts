/*
 * Cluster Mesh: this agent also watches other clusters' etcds, read-only, as Cilium's agents do
 * (cilium/cilium pkg/clustermesh: clustermesh.go, remote_cluster.go; the configuration directory of
 * pkg/clustermesh/common/config.go).
 *
 * Configuration (`--clustermesh-config DIR`): one file per remote cluster, named after the cluster, holding
 * that cluster's etcd client configuration (the same format as --kvstore-opt etcd.config: `endpoints`,
 * optional TLS files). A file is a cluster's only if it contains "endpoints:" (Cilium's isEtcdConfigFile);
 * other files (a ConfigMap's ..data links, editor backups) are skipped. The directory is read at start.
 *
 * Rules, numbered as they are cited below:
 *   M1 from each remote cluster the agent watches, with the kvstore layout of kvstore-state.ts: its nodes
 *      (cilium/state/nodes/v1/<cluster>/), its endpoints (cilium/state/ip/v1/default/), its identities
 *      (cilium/state/identities/v1/id/) and its shared services (cilium/state/services/v1/<cluster>/).
 *      It never writes there.
 *   M2 a remote cluster must have its own cluster id (bits 16–23 of its identities): a cluster whose nodes
 *      carry this cluster's id, or a name equal to this cluster's, is refused with one log line and
 *      contributes nothing (Cilium refuses a remote cluster with a conflicting id).
 *   M3 an unreachable remote cluster does not stop the agent: it is retried every few seconds; once
 *      connected, its watches reconnect and list again after an outage (kvstore-state.ts S4), and its last
 *      state is kept meanwhile.
 *   M4 a remote cluster's identities are looked up by label-set key after this cluster's own; a remote
 *      pod's label set carries its cluster's name, so only its own cluster has it.
 */
import { readdirSync, readFileSync, statSync } from "node:fs";
import { join } from "node:path";
import { Etcd3 } from "etcd3";
import { ExponentialBackoff } from "cockatiel";
import { clusterNameProblem } from "../node/cluster.ts";
import { ChangeNotifier, type IdentityAllocator } from "./identity-allocator.ts";
import { IDENTITIES_PREFIX } from "./identity-kvstore.ts";
import { etcdConfigFile, type IdentityConfig } from "./identity-options.ts";
import { IP_PREFIX, NODES_PREFIX, SERVICES_PREFIX, parseEndpoint, parseNode, parseService, WatchedPrefix, type ClusterService, type SharedEndpoint, type SharedNode } from "./kvstore-state.ts";
import type { MeshClusterState } from "./shared-state.ts";

export interface RemoteClusterConfig {
  name: string;
  path: string;
  etcd: NonNullable<IdentityConfig["etcd"]>;
}

/**
 * Reads `--clustermesh-config DIR`. Throws an Error with a one-line message for an unreadable directory, a
 * file name that is not a cluster name, a cluster named as this one, or a bad etcd configuration.
 */
export function readClusterMeshConfig(dir: string, ownCluster: string): RemoteClusterConfig[] {
  let names: string[];
  try {
    names = readdirSync(dir).sort();
  } catch (e) {
    throw new Error(`--clustermesh-config: cannot read ${dir}: ${(e as NodeJS.ErrnoException).code ?? (e as Error).message}`);
  }
  const out: RemoteClusterConfig[] = [];
  for (const name of names) {
    const path = join(dir, name);
    let text: string;
    try {
      if (!statSync(path).isFile()) continue;
      text = readFileSync(path, "utf8");
    } catch {
      continue;
    }
    if (!text.includes("endpoints:")) continue;
    const problem = clusterNameProblem(name);
    if (problem) throw new Error(`--clustermesh-config: ${path}: the file name is the remote cluster's name: ${problem}`);
    if (name === ownCluster) throw new Error(`--clustermesh-config: ${path}: names this cluster (--cluster-name ${ownCluster}); list only the other clusters`);
    out.push({ name, path, etcd: etcdConfigFile(path, "--clustermesh-config") });
  }
  return out;
}

/** number → label-set key of a master identity key (identity-kvstore.ts K7), or a reason. */
function parseIdentity(key: string, value: string): { id: number; key: string } | string {
  const id = Number(key.slice(`${IDENTITIES_PREFIX}/id/`.length));
  if (!Number.isInteger(id) || id <= 0) return "not an identity number";
  if (!value) return "empty label set";
  return { id, key: value };
}

/** One remote cluster's state, watched read-only (M1). */
export class RemoteCluster {
  readonly client: Etcd3;
  private readonly ips: WatchedPrefix<SharedEndpoint>;
  private readonly nodes: WatchedPrefix<SharedNode>;
  private readonly services: WatchedPrefix<ClusterService>;
  private readonly identities: WatchedPrefix<{ id: number; key: string }>;
  private connected = false;
  private closed = false;
  private retry?: NodeJS.Timeout;
  private refusedWhy?: string;

  constructor(
    readonly cfg: RemoteClusterConfig,
    private readonly own: { name: string; id: number },
    private readonly changed: () => void,
    private readonly log: (msg: string) => void,
    private readonly retryMs = 2000,
  ) {
    this.client = new Etcd3({
      hosts: cfg.etcd.endpoints,
      dialTimeout: 3000,
      ...(cfg.etcd.credentials ? { credentials: cfg.etcd.credentials } : {}),
      defaultCallOptions: (ctx) => (ctx.isStream ? {} : { deadline: Date.now() + 5000 }),
      faultHandling: { watchBackoff: new ExponentialBackoff({ initialDelay: 100, maxDelay: 2000 }).next() },
    });
    const log1 = (m: string) => this.log(`clustermesh ${cfg.name}: ${m}`);
    this.nodes = new WatchedPrefix(this.client, `${NODES_PREFIX}/${cfg.name}`, parseNode, () => this.checkClusterId(), log1);
    this.ips = new WatchedPrefix(this.client, IP_PREFIX, parseEndpoint, changed, log1);
    this.services = new WatchedPrefix(this.client, `${SERVICES_PREFIX}/${cfg.name}`, parseService, changed, log1);
    this.identities = new WatchedPrefix(this.client, `${IDENTITIES_PREFIX}/id`, parseIdentity, changed, log1);
  }

  /** M2: a remote cluster with this cluster's id is refused (logged once per change of mind). */
  private checkClusterId(): void {
    const clash = [...this.nodes.entries.values()].find((n) => n.clusterId === this.own.id);
    const why = clash ? `its node ${clash.name} has cluster id ${clash.clusterId}, this cluster's own (--cluster-id); every cluster of a mesh needs its own id` : undefined;
    if (why !== this.refusedWhy) {
      if (why) this.log(`clustermesh ${this.cfg.name}: refused: ${why}`);
      else if (this.refusedWhy) this.log(`clustermesh ${this.cfg.name}: cluster id conflict resolved`);
      this.refusedWhy = why;
    }
    this.changed();
  }

  /** Connects and starts every watch; retried until it succeeds (M3). Resolves at once. */
  start(): void {
    const attempt = () => {
      if (this.closed) return;
      Promise.all([this.nodes.start(), this.ips.start(), this.services.start(), this.identities.start()]).then(
        () => {
          this.connected = true;
          this.log(`clustermesh ${this.cfg.name}: connected to ${this.cfg.etcd.endpoints.join(", ")}`);
          this.changed();
        },
        (e: Error) => {
          if (this.closed) return;
          this.log(`clustermesh ${this.cfg.name}: cannot reach ${this.cfg.etcd.endpoints.join(", ")} (${e.message.split("\n")[0]}); retrying`);
          void Promise.all([this.nodes.stop(), this.ips.stop(), this.services.stop(), this.identities.stop()]);
          this.retry = setTimeout(attempt, this.retryMs);
        },
      );
    };
    attempt();
  }

  /** True once every watch of this cluster was listed. */
  ready(): boolean {
    return this.connected;
  }

  /** The refusal reason (M2), if refused. */
  refused(): string | undefined {
    return this.refusedWhy;
  }

  /** The cluster's id as its nodes publish it (undefined before any node is seen). */
  clusterId(): number | undefined {
    return [...this.nodes.entries.values()][0]?.clusterId;
  }

  /** What this cluster publishes (nothing while refused, M2). */
  state(): MeshClusterState {
    if (this.refusedWhy) return { name: this.cfg.name, endpoints: [], nodes: [], services: [] };
    return { name: this.cfg.name, endpoints: [...this.ips.entries.values()], nodes: [...this.nodes.entries.values()], services: [...this.services.entries.values()] };
  }

  /** The lowest number of `key` in this cluster's identities (M4), unless refused. */
  lookup(key: string): number | undefined {
    if (this.refusedWhy) return undefined;
    let best: number | undefined;
    for (const e of this.identities.entries.values()) if (e.key === key && (best === undefined || e.id < best)) best = e.id;
    return best;
  }

  identityEntries(): Map<number, string> {
    return this.refusedWhy ? new Map() : new Map([...this.identities.entries.values()].map((e) => [e.id, e.key]));
  }

  async close(): Promise<void> {
    this.closed = true;
    clearTimeout(this.retry);
    await Promise.all([this.nodes.stop(), this.ips.stop(), this.services.stop(), this.identities.stop()]);
    this.client.close();
  }
}

/** Every remote cluster of `--clustermesh-config`. */
export class ClusterMesh {
  readonly clusters: RemoteCluster[];
  private readonly changes = new ChangeNotifier();

  constructor(configs: RemoteClusterConfig[], own: { name: string; id: number }, log: (msg: string) => void, retryMs?: number) {
    this.clusters = configs.map((c) => new RemoteCluster(c, own, () => this.changes.notify(), log, retryMs));
  }

  start(): void {
    for (const c of this.clusters) c.start();
  }

  state(): MeshClusterState[] {
    return this.clusters.map((c) => c.state());
  }

  lookup(key: string): number | undefined {
    for (const c of this.clusters) {
      const id = c.lookup(key);
      if (id !== undefined) return id;
    }
    return undefined;
  }

  /** Called (coalesced) after any remote cluster's state changed. */
  onChange(cb: () => void): void {
    this.changes.add(cb);
  }

  async close(): Promise<void> {
    this.changes.stop();
    await Promise.all(this.clusters.map((c) => c.close()));
  }
}

/**
 * This cluster's allocator with the mesh's identities behind it (M4): allocation, references and gc are
 * this cluster's; lookups fall back to the remote clusters', so a remote pod's identity is found.
 */
export class MeshIdentityAllocator implements IdentityAllocator {
  readonly mode: "kvstore" | "crd";

  constructor(
    readonly local: IdentityAllocator,
    private readonly mesh: ClusterMesh,
  ) {
    this.mode = local.mode;
  }

  start(): Promise<void> {
    return this.local.start();
  }

  allocate(key: string, preferred?: number): Promise<number> {
    return this.local.allocate(key, preferred);
  }

  release(key: string): Promise<void> {
    return this.local.release(key);
  }

  lookup(key: string): number | undefined {
    return this.local.lookup(key) ?? this.mesh.lookup(key);
  }

  entries(): Map<number, string> {
    const out = new Map(this.local.entries());
    for (const c of this.mesh.clusters) for (const [id, key] of c.identityEntries()) if (!out.has(id)) out.set(id, key);
    return out;
  }

  onChange(cb: () => void): void {
    this.local.onChange(cb);
    this.mesh.onChange(cb);
  }

  gc(): Promise<number[]> {
    return this.local.gc();
  }

  close(): Promise<void> {
    return this.local.close();
  }
}
