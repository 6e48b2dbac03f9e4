/*
 * Cluster Mesh: this agent also watches other clusters' etcds, read-only, as Cilium's agents do
 * (cilium/cilium pkg/clustermesh: clustermesh.go, remote_cluster.go; the configuration directory of
 * pkg/clustermesh/common/config.go).
 *
 * Configuration (`--clustermesh-config DIR`): one file per remote cluster, named after the cluster, holding
 * that cluster's etcd client configuration (the same format as --kvstore-opt etcd.config: `endpoints`,
 * optional TLS files). A file is a cluster's only if it contains "endpoints:" (Cilium's isEtcdConfigFile);
 * other files (a ConfigMap's ..data links, editor backups) and hidden entries (an atomic writer's
 * temporary file) are skipped. The directory is read at start
 * (a bad file then stops the agent with one line) and watched afterwards (M5).
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
 *   M5 the directory is watched (cilium/cilium pkg/clustermesh/common/config.go configDirectoryWatcher): a
 *      file added connects its cluster, a file whose content changed reconnects it, a file removed (or no
 *      longer a configuration) disconnects it and withdraws its nodes, endpoints, identities and services.
 *      The directory is watched, not the files, and rescanned on every event and every few seconds, so a
 *      file written atomically by rename and a Kubernetes Secret/ConfigMap volume updated by swapping its
 *      ..data symlink are both seen (the content is compared, by hash, through the links). A bad file is
 *      refused with one log line naming it and what was expected; its cluster keeps its last good
 *      configuration (or stays absent), and the other clusters are untouched. A reconnecting cluster's
 *      last state is kept until the new connection has listed: a rotated certificate drops nothing.
 */
import { createHash } from "node:crypto";
import { readdirSync, readFileSync, statSync, watch, type FSWatcher } from "node:fs";
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
  /** sha256 of the file's content, read through its links (M5: a change reconnects). */
  hash?: string;
}

/** The entries of `--clustermesh-config DIR`, sorted; an Error with one line when it cannot be read. */
function configNames(dir: string): string[] {
  try {
    return readdirSync(dir).sort();
  } catch (e) {
    throw new Error(`--clustermesh-config: cannot read ${dir}: ${(e as NodeJS.ErrnoException).code ?? (e as Error).message}`);
  }
}

/**
 * One entry of the directory: undefined when it is not a cluster's configuration (no "endpoints:", not a
 * file, unreadable), the configuration, or an Error with one line naming the file and what was expected.
 */
function readClusterConfigFile(dir: string, name: string, ownCluster: string): RemoteClusterConfig | Error | undefined {
  // Hidden entries are never a cluster (no cluster name starts with "."): an atomic writer's temporary
  // file, a Secret volume's ..data link and ..<timestamp> directory.
  if (name.startsWith(".")) return undefined;
  const path = join(dir, name);
  let text: string;
  try {
    if (!statSync(path).isFile()) return undefined;
    text = readFileSync(path, "utf8");
  } catch {
    return undefined;
  }
  if (!text.includes("endpoints:")) return undefined;
  const problem = clusterNameProblem(name);
  if (problem) return new Error(`--clustermesh-config: ${path}: the file name is the remote cluster's name: ${problem}`);
  if (name === ownCluster) return new Error(`--clustermesh-config: ${path}: names this cluster (--cluster-name ${ownCluster}); list only the other clusters`);
  try {
    return { name, path, etcd: etcdConfigFile(path, "--clustermesh-config"), hash: createHash("sha256").update(text).digest("hex") };
  } catch (e) {
    return e as Error;
  }
}

/**
 * Reads `--clustermesh-config DIR`. Throws an Error with a one-line message for an unreadable directory, a
 * file name that is not a cluster name, a cluster named as this one, or a bad etcd configuration.
 */
export function readClusterMeshConfig(dir: string, ownCluster: string): RemoteClusterConfig[] {
  const out: RemoteClusterConfig[] = [];
  for (const name of configNames(dir)) {
    const c = readClusterConfigFile(dir, name, ownCluster);
    if (c instanceof Error) throw c;
    if (c) out.push(c);
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
  /** M5: the connection this one replaces, serving its last state until this one has listed. */
  previous?: RemoteCluster;

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
          const p = this.previous;
          this.previous = undefined;
          void p?.close();
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
    if (!this.connected && this.previous) return this.previous.state();
    if (this.refusedWhy) return { name: this.cfg.name, endpoints: [], nodes: [], services: [] };
    return { name: this.cfg.name, endpoints: [...this.ips.entries.values()], nodes: [...this.nodes.entries.values()], services: [...this.services.entries.values()] };
  }

  /** The lowest number of `key` in this cluster's identities (M4), unless refused. */
  lookup(key: string): number | undefined {
    if (!this.connected && this.previous) return this.previous.lookup(key);
    if (this.refusedWhy) return undefined;
    let best: number | undefined;
    for (const e of this.identities.entries.values()) if (e.key === key && (best === undefined || e.id < best)) best = e.id;
    return best;
  }

  identityEntries(): Map<number, string> {
    if (!this.connected && this.previous) return this.previous.identityEntries();
    return this.refusedWhy ? new Map() : new Map([...this.identities.entries.values()].map((e) => [e.id, e.key]));
  }

  async close(): Promise<void> {
    this.closed = true;
    clearTimeout(this.retry);
    await this.previous?.close();
    await Promise.all([this.nodes.stop(), this.ips.stop(), this.services.stop(), this.identities.stop()]);
    this.client.close();
  }
}

/** Every remote cluster of `--clustermesh-config`. */
export class ClusterMesh {
  private readonly byName = new Map<string, RemoteCluster>();
  private readonly changes = new ChangeNotifier();
  private watcher?: FSWatcher;
  private rescanTimer?: NodeJS.Timeout;
  private debounce?: NodeJS.Timeout;
  /** M5: the refusal last logged per file name (logged again only when it changes). */
  private readonly refusedFiles = new Map<string, string>();
  private closed = false;

  constructor(
    configs: RemoteClusterConfig[],
    private readonly own: { name: string; id: number },
    private readonly log: (msg: string) => void,
    private readonly retryMs?: number,
  ) {
    for (const c of configs) this.byName.set(c.name, this.remote(c));
  }

  private remote(c: RemoteClusterConfig): RemoteCluster {
    return new RemoteCluster(c, this.own, () => this.changes.notify(), this.log, this.retryMs);
  }

  /** The remote clusters now (M5: the set changes with the directory). */
  get clusters(): RemoteCluster[] {
    return [...this.byName.values()];
  }

  start(): void {
    for (const c of this.clusters) c.start();
  }

  /**
   * M5: watches `dir` and applies what changes in it; `rescanMs` is the safety-net rescan (an event missed
   * by the watcher is caught by it).
   */
  watch(dir: string, rescanMs = 5000): void {
    const schedule = () => {
      clearTimeout(this.debounce);
      this.debounce = setTimeout(() => void this.rescan(dir), 100);
    };
    try {
      this.watcher = watch(dir, schedule);
      this.watcher.on("error", (e) => this.log(`clustermesh: watching ${dir}: ${e.message}; rescanning every ${rescanMs / 1000} s`));
    } catch (e) {
      this.log(`clustermesh: cannot watch ${dir}: ${(e as Error).message}; rescanning every ${rescanMs / 1000} s`);
    }
    this.rescanTimer = setInterval(() => void this.rescan(dir), rescanMs);
  }

  /** M5: one pass over the directory: clusters added, reconnected, removed; bad files refused. */
  async rescan(dir: string): Promise<void> {
    if (this.closed) return;
    let names: string[];
    try {
      names = configNames(dir);
    } catch (e) {
      // A directory gone for a moment (a volume remounted) changes nothing; it is logged once.
      const m = (e as Error).message;
      if (this.refusedFiles.get("") !== m) this.log(`clustermesh: ${m}; keeping the remote clusters as they are`);
      this.refusedFiles.set("", m);
      return;
    }
    this.refusedFiles.delete("");
    const present = new Set<string>();
    const stopping: Promise<void>[] = [];
    let changed = false;
    for (const name of names) {
      const c = readClusterConfigFile(dir, name, this.own.name);
      if (c === undefined) continue;
      present.add(name);
      if (c instanceof Error) {
        if (this.refusedFiles.get(name) !== c.message) this.log(`clustermesh: refused ${c.message.replace(/^--clustermesh-config: /, "")}${this.byName.has(name) ? `; cluster ${name} keeps its previous configuration` : ""}`);
        this.refusedFiles.set(name, c.message);
        continue;
      }
      this.refusedFiles.delete(name);
      const cur = this.byName.get(name);
      if (cur && cur.cfg.hash === c.hash) continue;
      this.log(`clustermesh ${name}: ${cur ? "configuration changed, reconnecting" : "configuration added, connecting"} (${c.path})`);
      const next = this.remote(c);
      // The old connection serves its last state until the new one has listed (then it is closed).
      if (cur) {
        const served = cur.previous ?? (cur.ready() ? cur : undefined);
        cur.previous = undefined;
        if (served !== cur) stopping.push(cur.close());
        next.previous = served;
      }
      this.byName.set(name, next);
      next.start();
      changed = true;
    }
    for (const [name, cur] of this.byName) {
      if (present.has(name)) continue;
      this.byName.delete(name);
      this.refusedFiles.delete(name);
      this.log(`clustermesh ${name}: configuration removed, disconnecting; its nodes, endpoints, identities and services are withdrawn`);
      stopping.push(cur.close());
      changed = true;
    }
    if (changed) this.changes.notify();
    await Promise.all(stopping);
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
    this.closed = true;
    this.watcher?.close();
    clearInterval(this.rescanTimer);
    clearTimeout(this.debounce);
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
