/*
 * Identity allocation in etcd (`--identity-allocation-mode kvstore --kvstore etcd`), following Cilium's
 * kvstore allocator (pkg/allocator/allocator.go over pkg/kvstore/allocator/allocator.go):
 *
 *   <prefix>/id/<number>          master key: the label-set key; no lease, outlives every node
 *   <prefix>/value/<key>/<node>   slave key: the number; under this node's lease (its reference)
 *   <prefix>/locks/<key>          held while one node allocates or garbage-collects that key
 *
 * Rules, numbered as they are cited below:
 *   K1 allocation of a key runs under its lock, so two nodes racing for one label set serialise and the
 *      second finds the first's number (one number per label set);
 *   K2 an existing number is found through any node's slave key (whose master key must still name the key);
 *      a missing master key is created again with the same number;
 *   K3 a new number is the preferred one (this node's previous number, after a restart) when free, else the
 *      lowest free one in the cluster's range; the master key is created only if absent (a transaction), so
 *      a number is never given to two keys;
 *   K4 slave keys live under one lease per agent, kept alive while it runs: a node that dies (SIGKILL, power)
 *      loses the lease after its TTL and with it every reference; a graceful close revokes it at once;
 *   K5 when the lease is lost while the agent runs (etcd away longer than the TTL), a new lease is granted
 *      and every reference this node holds is written again (rules K1–K2), as Cilium's syncLocalKeys does;
 *   K6 garbage collection deletes a master key with no slave key that was also unreferenced in the previous
 *      pass, under its lock and only if the master key did not change meanwhile (Cilium's RunGC);
 *   K7 every agent lists and then watches `<prefix>/id/` from the list's revision: the cache of number ↔ key
 *      that identities of other nodes' pods are looked up in. Where two numbers name one key (only after
 *      manual edits), the lowest wins.
 */
import { Etcd3, type Lease, type Watcher, type IOptions } from "etcd3";
import { ExponentialBackoff } from "cockatiel";
import { ChangeNotifier, pickFreeId, type IdentityAllocator } from "./identity-allocator.ts";

/** Cilium's identities path in the kvstore (pkg/identity/cache IdentitiesPath). */
export const IDENTITIES_PREFIX = "cilium/state/identities/v1";

export interface KvstoreAllocatorOptions {
  /** etcd endpoints, e.g. http://127.0.0.1:2379. */
  endpoints: string[];
  /** This node's name (the suffix of its slave keys). */
  nodeName: string;
  clusterId?: number;
  /** TTL of this agent's lease in seconds (Cilium's --kvstore-lease-ttl; default 900). */
  leaseTtl?: number;
  prefix?: string;
  /** TLS material (etcd.config's trusted-ca-file, key-file, cert-file). */
  credentials?: IOptions["credentials"];
  log?: (msg: string) => void;
}

interface CacheEntry {
  key: string;
  modRevision: string;
}

export class KvstoreAllocator implements IdentityAllocator {
  readonly mode = "kvstore" as const;
  readonly client: Etcd3;
  private readonly prefix: string;
  private lease?: Lease;
  private leaseId?: string;
  private leaseGeneration = 0;
  private watcher?: Watcher;
  /** number → key (K7). */
  private readonly byId = new Map<number, CacheEntry>();
  /** key → numbers naming it. */
  private readonly byKey = new Map<string, Set<number>>();
  /** key → number this node references (its slave keys). */
  private readonly localKeys = new Map<string, number>();
  /** Numbers this node is creating master keys for right now. */
  private readonly trying = new Set<number>();
  /** Master keys unreferenced in the previous gc pass, with the revision seen then (K6). */
  private staleLastRound = new Map<number, string>();
  private readonly changes = new ChangeNotifier();
  private resyncing?: Promise<void>;
  private closed = false;

  constructor(private readonly opts: KvstoreAllocatorOptions) {
    this.prefix = opts.prefix ?? IDENTITIES_PREFIX;
    this.client = new Etcd3({
      hosts: opts.endpoints,
      dialTimeout: 3000,
      ...(opts.credentials ? { credentials: opts.credentials } : {}),
      // Calls fail within seconds while etcd is away (the caller retries); watches come back quickly.
      defaultCallOptions: (ctx) => (ctx.isStream ? {} : { deadline: Date.now() + 5000 }),
      faultHandling: { watchBackoff: new ExponentialBackoff({ initialDelay: 100, maxDelay: 2000 }).next() },
    });
  }

  private masterKey(id: number): string {
    return `${this.prefix}/id/${id}`;
  }

  private slavePrefix(key: string): string {
    return `${this.prefix}/value/${key}/`;
  }

  async start(): Promise<void> {
    // K7: list, then watch from the next revision so nothing between the two is missed.
    const res = await this.client.getAll().prefix(`${this.prefix}/id/`).exec();
    for (const kv of res.kvs) this.cachePut(kv.key.toString(), kv.value.toString(), kv.mod_revision);
    this.watcher = await this.client
      .watch()
      .prefix(`${this.prefix}/id/`)
      .startRevision(String(BigInt(res.header.revision) + 1n))
      .create();
    this.watcher.on("put", (kv) => (this.cachePut(kv.key.toString(), kv.value.toString(), kv.mod_revision), this.notify()));
    this.watcher.on("delete", (kv) => (this.cacheDelete(kv.key.toString()), this.notify()));
    this.watcher.on("error", (e) => this.opts.log?.(`identity watch: ${e.message}`));
    await this.newLease();
  }

  private idOfMasterKey(k: string): number | undefined {
    const n = Number(k.slice(`${this.prefix}/id/`.length));
    return Number.isInteger(n) && n > 0 ? n : undefined;
  }

  private cachePut(k: string, key: string, modRevision: string): void {
    const id = this.idOfMasterKey(k);
    if (id === undefined) return;
    this.cacheDelete(k);
    this.byId.set(id, { key, modRevision });
    let s = this.byKey.get(key);
    if (!s) this.byKey.set(key, (s = new Set()));
    s.add(id);
  }

  private cacheDelete(k: string): void {
    const id = this.idOfMasterKey(k);
    if (id === undefined) return;
    const e = this.byId.get(id);
    if (!e) return;
    this.byId.delete(id);
    const s = this.byKey.get(e.key);
    s?.delete(id);
    if (s && s.size === 0) this.byKey.delete(e.key);
  }

  private notify(): void {
    this.changes.notify();
  }

  onChange(cb: () => void): void {
    this.changes.add(cb);
  }

  lookup(key: string): number | undefined {
    const s = this.byKey.get(key);
    return s && s.size ? Math.min(...s) : undefined;
  }

  entries(): Map<number, string> {
    return new Map([...this.byId].map(([id, e]) => [id, e.key]));
  }

  /** Node names that hold a reference on `key` (their slave keys). */
  async holders(key: string): Promise<string[]> {
    return Object.keys(await this.client.getAll().prefix(this.slavePrefix(key)).strings()).map((k) => k.slice(this.slavePrefix(key).length));
  }

  /** K4: one lease for this agent; K5 when it is lost. */
  private async newLease(): Promise<void> {
    const gen = ++this.leaseGeneration;
    const lease = this.client.lease(this.opts.leaseTtl ?? 900);
    this.leaseId = await lease.grant();
    this.lease = lease;
    lease.on("lost", (e) => {
      if (this.closed || gen !== this.leaseGeneration) return;
      this.opts.log?.(`kvstore lease lost (${e.message}); re-creating this node's identity references`);
      void this.resync();
    });
  }

  /** K5: a new lease and every local reference written again; retried until etcd answers. */
  private resync(): Promise<void> {
    this.resyncing ??= (async () => {
      for (let attempt = 0; !this.closed; attempt++) {
        try {
          await this.newLease();
          for (const [key, id] of [...this.localKeys]) await this.locked(key, () => this.acquire(key, id));
          this.notify();
          return;
        } catch (e) {
          this.opts.log?.(`kvstore resync failed (${(e as Error).message}); retrying`);
          await sleep(Math.min(2000, 200 * 2 ** attempt));
        }
      }
    })().finally(() => (this.resyncing = undefined));
    return this.resyncing;
  }

  /**
   * Runs `fn` holding `<prefix>/locks/<key>` (K1), waiting while another node holds it. The lock key lives
   * under this agent's lease (as Cilium's locks live in its kvstore session), so a node that dies holding
   * it frees it when the lease expires, and taking it costs one transaction.
   */
  private async locked<T>(key: string, fn: () => Promise<T>): Promise<T> {
    const lockKey = `${this.prefix}/locks/${key}`;
    for (let wait = 2; ; wait = Math.min(wait * 2, 200)) {
      if (this.closed) throw new Error("allocator closed");
      const r = await this.client.if(lockKey, "Create", "==", 0).then(this.client.put(lockKey).value(this.opts.nodeName).lease(this.leaseId!)).commit();
      if (r.succeeded) break;
      await sleep(wait + Math.random() * wait);
    }
    try {
      return await fn();
    } finally {
      await this.client.delete().key(lockKey).catch(() => undefined);
    }
  }

  /** Writes this node's slave key for (key, id), and the master key when it is missing (K2). */
  private async acquire(key: string, id: number): Promise<void> {
    const master = this.masterKey(id);
    const cur = await this.client.get(master).string();
    if (cur === null) await this.client.if(master, "Create", "==", 0).then(this.client.put(master).value(key)).commit();
    else if (cur !== key) throw new Error(`identity ${id} now names ${cur}, not ${key}`);
    await this.lease!.put(`${this.slavePrefix(key)}${this.opts.nodeName}`).value(String(id));
  }

  async allocate(key: string, preferred?: number): Promise<number> {
    const have = this.localKeys.get(key);
    if (have !== undefined) return have;
    if (this.resyncing) await this.resyncing;
    const id = await this.locked(key, async () => {
      // K2: someone's slave key names the number.
      const slaves = await this.client.getAll().prefix(this.slavePrefix(key)).strings();
      for (const v of new Set(Object.values(slaves))) {
        const n = Number(v);
        if (!Number.isInteger(n)) continue;
        const master = await this.client.get(this.masterKey(n)).string();
        if (master === null || master === key) {
          await this.acquire(key, n);
          return n;
        }
      }
      // A master key without references (released, not yet collected) is reused as is.
      const cached = this.lookup(key);
      if (cached !== undefined && (await this.client.get(this.masterKey(cached)).string()) === key) {
        await this.acquire(key, cached);
        return cached;
      }
      // K3: a new number.
      const tried = new Set<number>();
      for (;;) {
        // Numbers this node is trying for other keys are skipped too, so concurrent allocations on one node
        // do not all race for the same lowest number.
        const n = pickFreeId((i) => this.byId.has(i) || this.trying.has(i), this.opts.clusterId ?? 0, preferred, tried);
        if (n === undefined) throw new Error(`no free identity left in cluster ${this.opts.clusterId ?? 0}'s range`);
        tried.add(n);
        this.trying.add(n);
        // The master key and this node's reference in one transaction.
        const r = await this.client
          .if(this.masterKey(n), "Create", "==", 0)
          .then(this.client.put(this.masterKey(n)).value(key), this.client.put(`${this.slavePrefix(key)}${this.opts.nodeName}`).value(String(n)).lease(this.leaseId!))
          .commit()
          .finally(() => this.trying.delete(n));
        if (!r.succeeded) continue; // taken by another key meanwhile (our cache lagged)
        this.cachePut(this.masterKey(n), key, r.header.revision); // before the watch event arrives
        return n;
      }
    });
    this.localKeys.set(key, id);
    return id;
  }

  async release(key: string): Promise<void> {
    if (!this.localKeys.delete(key)) return;
    await this.client.delete().key(`${this.slavePrefix(key)}${this.opts.nodeName}`);
  }

  async gc(): Promise<number[]> {
    const masters = await this.client.getAll().prefix(`${this.prefix}/id/`).exec();
    const slaves = await this.client.getAll().prefix(`${this.prefix}/value/`).keys();
    const referenced = new Set<string>();
    for (const s of slaves) {
      const rest = s.slice(`${this.prefix}/value/`.length);
      referenced.add(rest.slice(0, rest.lastIndexOf("/")));
    }
    const stale = new Map<number, string>();
    const deleted: number[] = [];
    for (const kv of masters.kvs) {
      const id = this.idOfMasterKey(kv.key.toString());
      const key = kv.value.toString();
      if (id === undefined || referenced.has(key)) continue;
      if (this.staleLastRound.get(id) !== kv.mod_revision) {
        stale.set(id, kv.mod_revision);
        continue;
      }
      const gone = await this.locked(key, async () => {
        if (Object.keys(await this.client.getAll().prefix(this.slavePrefix(key)).strings()).length) return false;
        const r = await this.client.if(this.masterKey(id), "Mod", "==", kv.mod_revision).then(this.client.delete().key(this.masterKey(id))).commit();
        return r.succeeded;
      });
      if (gone) deleted.push(id);
      else stale.delete(id);
    }
    this.staleLastRound = stale;
    return deleted;
  }

  /** Kills the lease without revoking it, as a crashed agent leaves it (tests). */
  abandon(): void {
    this.closed = true;
    this.watcher?.removeAllListeners();
    this.client.close();
  }

  async close(): Promise<void> {
    if (this.closed) return;
    this.closed = true;
    this.changes.stop();
    await this.watcher?.cancel().catch(() => undefined);
    // K4: a graceful stop releases this node's references at once.
    await this.lease?.revoke().catch(() => undefined);
    this.client.close();
  }
}

function sleep(ms: number): Promise<void> {
  return new Promise((r) => setTimeout(r, ms));
}
