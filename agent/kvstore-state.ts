/*
 * Shared state in etcd (`--identity-allocation-mode kvstore`): each agent publishes its local endpoints and
 * its node, and watches every other agent's, the way Cilium's agents share them through the kvstore
 * (pkg/kvstore/store SharedStore; pkg/ipcache/kvstore.go for endpoints; pkg/node/store for nodes). The
 * agent turns what it learns into pods and nodes of its desired state (shared-state.ts), so remote pods
 * reach the ipcache and remote nodes the native routes through the same computation as manifests.
 *
 * Keys and values (Cilium's layout and JSON field names):
 *   cilium/state/ip/v1/default/<ip>           identity.IPIdentityPair — IP, HostIP (the tunnel endpoint),
 *                                             ID, Key, Metadata, K8sNamespace, K8sPodName; the address space
 *                                             is "default" (pkg/ipcache/kvstore.go AddressSpace); a
 *                                             dual-stack endpoint has one key per address (IPv4 and IPv6)
 *   cilium/state/nodes/v1/<cluster>/<node>    types.Node — Name, Cluster, IPAddresses (its InternalIP of
 *                                             each family), IPv4AllocCIDR, IPv6AllocCIDR (dual stack),
 *                                             ClusterID (key: pkg/node/types Node.GetKeyName, cluster/name;
 *                                             fields: cilium/cilium pkg/node/types/node.go)
 *   cilium/state/services/v1/<cluster>/<ns>/<name>
 *                                             ClusterService (cilium/cilium pkg/clustermesh/store/store.go):
 *                                             cluster, namespace, name, frontends and backends (IP → port
 *                                             name → {Protocol, Port}), labels, selector, includeExternal,
 *                                             shared, clusterID — the global services (service.cilium.io/
 *                                             global) this cluster shares, which Cluster Mesh peers merge
 * An IP entry also carries a `ciliate` object: the node's name and the pod's labels, namespace labels and
 * service account. Cilium's receivers get a pod's labels from its identity; ciliate's policy compiler
 * selects pods by their labels, so the receiver needs them to place the pod in its cluster model.
 *
 * Rules, numbered as they are cited below:
 *   S1 every key this agent writes is under its own lease (--kvstore-lease-ttl): a dead agent's entries
 *      expire with it; a graceful close revokes the lease and they go at once.
 *   S2 publishing is declarative: the agent says which endpoints it has now; the store writes what
 *      differs from what it last wrote and deletes what is gone. A write that fails (etcd away) is
 *      retried every second until etcd answers, so an endpoint added during an outage appears after it.
 *   S3 when the lease is lost (etcd away longer than the TTL), a new one is granted and every key of this
 *      agent is written again (Cilium's SharedStore syncLocalKeys after a session loss).
 *   S4 every agent lists each prefix, then watches it from the list's revision; when the watch reconnects
 *      after a disconnection it lists again and replaces its cache (a resync). While etcd is away the
 *      cache is kept as it was: the node keeps forwarding on the last state it knew.
 *   S5 entries of this node are not part of the remote view (its endpoints come from its CNI, its node
 *      from its flags); a value that does not parse is ignored with one log line.
 *   S6 services: every agent of a cluster publishes the cluster's shared global services (the same value
 *      on every node once their views agree), each under its own lease; the last write holds the key.
 *      When the key goes (the writer's lease expired, its agent died), every agent that still wants it
 *      writes it again, so a service outlives any one agent.
 */
import type { Etcd3, Lease, Watcher } from "etcd3";
import { parseIp } from "../host/ip.ts";
import { parseCidr } from "../policy/index.ts";
import { ChangeNotifier } from "./identity-allocator.ts";

/** pkg/ipcache/kvstore.go IPIdentitiesPath and the default address space. */
export const IP_PREFIX = "cilium/state/ip/v1/default";
/** pkg/node/store NodeStorePrefix. */
export const NODES_PREFIX = "cilium/state/nodes/v1";
/** pkg/clustermesh/store ServiceStorePrefix. */
export const SERVICES_PREFIX = "cilium/state/services/v1";

const isRecord = (v: unknown): v is Record<string, unknown> => typeof v === "object" && v !== null && !Array.isArray(v);
const stringMap = (v: unknown): Record<string, string> | undefined =>
  isRecord(v) && Object.values(v).every((x) => typeof x === "string") ? (v as Record<string, string>) : undefined;

/** A value's JSON object, or why it is not one. */
function jsonObject(value: string): Record<string, unknown> | string {
  let v: unknown;
  try {
    v = JSON.parse(value);
  } catch {
    return "not JSON";
  }
  return isRecord(v) ? v : "not an object";
}

/** loadbalancer.L4Addr as Go marshals it (no JSON tags). */
export interface L4Addr {
  Protocol: "TCP" | "UDP" | "SCTP";
  Port: number;
}

/** A port name → L4 address map (pkg/clustermesh/store PortConfiguration; "" for an unnamed port). */
export type PortConfiguration = Record<string, L4Addr>;

/** pkg/clustermesh/store ClusterService, with its JSON field names. */
export interface ClusterService {
  cluster: string;
  namespace: string;
  name: string;
  /** Frontend IP → its ports. */
  frontends: Record<string, PortConfiguration>;
  /** Backend IP → its ports. */
  backends: Record<string, PortConfiguration>;
  labels: Record<string, string>;
  selector: Record<string, string>;
  includeExternal: boolean;
  shared: boolean;
  clusterID: number;
}

/** The key of a service (ClusterService.GetKeyName: cluster/namespace/name). */
export function serviceKey(s: Pick<ClusterService, "cluster" | "namespace" | "name">): string {
  return `${SERVICES_PREFIX}/${s.cluster}/${s.namespace}/${s.name}`;
}

/** A ClusterService as JSON with sorted map keys, so that every agent writes the same bytes for one view. */
export function serviceValue(s: ClusterService): string {
  const sorted = (v: unknown): unknown =>
    v && typeof v === "object" && !Array.isArray(v) ? Object.fromEntries(Object.keys(v).sort().map((k) => [k, sorted((v as Record<string, unknown>)[k])])) : v;
  const { cluster, namespace, name, frontends, backends, labels, selector, includeExternal, shared, clusterID } = s;
  return JSON.stringify({ cluster, namespace, name, frontends: sorted(frontends), backends: sorted(backends), labels: sorted(labels), selector: sorted(selector), includeExternal, shared, clusterID });
}

const portConfigs = (v: unknown): Record<string, PortConfiguration> | undefined => {
  if (!isRecord(v)) return undefined;
  const out: Record<string, PortConfiguration> = {};
  for (const [ip, pc] of Object.entries(v)) {
    if (!parseIp(ip) || !isRecord(pc)) return undefined;
    out[ip] = {};
    for (const [n, a] of Object.entries(pc)) {
      if (!isRecord(a) || (a.Protocol !== "TCP" && a.Protocol !== "UDP" && a.Protocol !== "SCTP") || typeof a.Port !== "number" || !Number.isInteger(a.Port) || a.Port < 1 || a.Port > 65535) return undefined;
      out[ip]![n] = { Protocol: a.Protocol, Port: a.Port };
    }
  }
  return out;
};

/** A service entry back into a ClusterService (validated as ClusterService.validate and the key), or a reason it is not one. */
export function parseService(key: string, value: string): ClusterService | string {
  const v = jsonObject(value);
  if (typeof v === "string") return v;
  const { cluster, namespace, name } = v;
  if (typeof cluster !== "string" || !cluster || typeof namespace !== "string" || !namespace || typeof name !== "string" || !name) return "cluster/namespace/name unset";
  if (key !== serviceKey({ cluster, namespace, name })) return "cluster/namespace/name are not the key's";
  const frontends = portConfigs(v.frontends ?? {});
  const backends = portConfigs(v.backends ?? {});
  if (!frontends || !backends) return "frontends/backends are not IP → {name: {Protocol, Port}}";
  const labels = stringMap(v.labels ?? {});
  const selector = stringMap(v.selector ?? {});
  if (!labels || !selector) return "labels/selector are not string maps";
  if (typeof v.clusterID !== "number" || !Number.isInteger(v.clusterID) || v.clusterID < 0 || v.clusterID > 255) return `clusterID ${JSON.stringify(v.clusterID)} is not 0..255`;
  return { cluster, namespace, name, frontends, backends, labels, selector, includeExternal: v.includeExternal === true, shared: v.shared === true, clusterID: v.clusterID };
}

/** One endpoint as published: its address, security identity and node. */
export interface SharedEndpoint {
  /** Its IPv4 address (an IPv6-only endpoint: its IPv6 address). */
  ip: string;
  /** Dual stack: its IPv6 address (in the kvstore, a key of its own with the same identity). */
  ip6?: string;
  /** The address of the endpoint's node: its tunnel endpoint. */
  hostIp: string;
  /** The numeric security identity (cluster-wide, from the identity allocator). */
  identity: number;
  node: string;
  namespace: string;
  pod: string;
  labels: Record<string, string>;
  /** The namespace's labels (without kubernetes.io/metadata.name, which every namespace has). */
  namespaceLabels: Record<string, string>;
  serviceAccount?: string;
}

export interface SharedNode {
  name: string;
  cluster: string;
  clusterId: number;
  /** InternalIP: what native routes go via and the tunnel endpoint of its pods. */
  ip: string;
  podCIDR: string;
  /** Dual stack: its IPv6 InternalIP, what other nodes' routes to its IPv6 pod CIDR go via. */
  ip6?: string;
  /** Dual stack: its IPv6 pod CIDR (types.Node IPv6AllocCIDR). */
  podCIDRv6?: string;
}

export interface KvstoreStateOptions {
  /** The agent's etcd client (the identity allocator's). */
  client: Etcd3;
  node: SharedNode;
  /** TTL of this store's lease in seconds (--kvstore-lease-ttl). */
  leaseTtl: number;
  log?: (msg: string) => void;
  /** Retry interval of failed writes (S2), ms. */
  retryMs?: number;
}

/**
 * The IPIdentityPair JSON of one address of an endpoint (pkg/identity IPIdentityPair field names): `ip`
 * (default) or, for a dual-stack endpoint, `ip6` — each address is a key of its own, as Cilium publishes
 * every IP of an endpoint (pkg/ipcache/kvstore.go UpsertIPToKVStore), with the same identity and HostIP.
 */
export function endpointValue(e: SharedEndpoint, address: string = e.ip): string {
  return JSON.stringify({
    IP: address,
    Mask: null,
    HostIP: e.hostIp,
    ID: e.identity,
    Key: 0,
    Metadata: "",
    K8sNamespace: e.namespace,
    K8sPodName: e.pod,
    ciliate: { node: e.node, labels: e.labels, namespaceLabels: e.namespaceLabels, ...(e.serviceAccount ? { serviceAccount: e.serviceAccount } : {}) },
  });
}

/** The keys and values of an endpoint: one per address. */
export function endpointEntries(e: SharedEndpoint): [string, string][] {
  return [e.ip, ...(e.ip6 ? [e.ip6] : [])].map((a) => [`${IP_PREFIX}/${a}`, endpointValue(e, a)]);
}

/**
 * Per-address entries (as parseEndpoint gives them) merged into one endpoint per pod: the IPv4 address as
 * `ip`, the IPv6 one as `ip6` (an endpoint with only an IPv6 entry so far keeps it as `ip`). Entries of one
 * pod that disagree on node or identity are not merged (the first by address wins the pod).
 */
export function mergeEndpointAddresses(entries: SharedEndpoint[]): SharedEndpoint[] {
  const byPod = new Map<string, SharedEndpoint>();
  for (const e of [...entries].sort((a, b) => (a.ip < b.ip ? -1 : a.ip > b.ip ? 1 : 0))) {
    const key = `${e.node}/${e.namespace}/${e.pod}`;
    const had = byPod.get(key);
    if (!had) {
      byPod.set(key, { ...e });
      continue;
    }
    if (had.identity !== e.identity) continue;
    const v6 = e.ip.includes(":");
    if (v6 && !had.ip.includes(":") && !had.ip6) had.ip6 = e.ip;
    else if (!v6 && had.ip.includes(":") && !had.ip6) byPod.set(key, { ...had, ip: e.ip, ip6: had.ip });
  }
  return [...byPod.values()];
}

/** A net.IPNet as Go marshals it: {IP, Mask (bytes in base64)}. */
function ipNetJson(cidr: string): { IP: string; Mask: string } {
  const c = parseCidr(cidr);
  const width = c?.family === 6 ? 16 : 4;
  const bits = c?.bits ?? width * 8;
  const mask = Buffer.alloc(width);
  for (let i = 0; i < width; i++) {
    const ones = Math.max(0, Math.min(8, bits - i * 8));
    mask[i] = (0xff00 >> ones) & 0xff;
  }
  return { IP: (c?.text ?? cidr).split("/")[0]!, Mask: mask.toString("base64") };
}

/** A net.IPNet JSON back into a prefix of `family`, or undefined. */
function ipNetOf(v: unknown, family: 4 | 6): string | undefined {
  if (!isRecord(v) || typeof v.IP !== "string" || typeof v.Mask !== "string") return undefined;
  const mask = Buffer.from(v.Mask, "base64");
  if (mask.length !== (family === 6 ? 16 : 4)) return undefined;
  const bits = [...mask].reduce((n, b) => n + (b.toString(2).match(/1/g)?.length ?? 0), 0);
  const c = parseCidr(`${v.IP}/${bits}`);
  return c?.family === family ? c.text : undefined;
}

/**
 * The types.Node JSON of a node (cilium/cilium pkg/node/types/node.go): IPAddresses with its InternalIP of
 * each family, IPv4AllocCIDR and, dual stack, IPv6AllocCIDR (cidr.CIDR marshals as a net.IPNet).
 */
export function nodeValue(n: SharedNode): string {
  return JSON.stringify({
    Name: n.name,
    Cluster: n.cluster,
    IPAddresses: [{ Type: "InternalIP", IP: n.ip }, ...(n.ip6 ? [{ Type: "InternalIP", IP: n.ip6 }] : [])],
    IPv4AllocCIDR: ipNetJson(n.podCIDR),
    ...(n.podCIDRv6 ? { IPv6AllocCIDR: ipNetJson(n.podCIDRv6) } : {}),
    ClusterID: n.clusterId,
    Source: "kvstore",
  });
}

/** An IP entry back into a SharedEndpoint, or a reason it is not one. */
export function parseEndpoint(key: string, value: string): SharedEndpoint | string {
  const v = jsonObject(value);
  if (typeof v === "string") return v;
  const c = isRecord(v.ciliate) ? v.ciliate : {};
  const ip = v.IP;
  if (typeof ip !== "string" || !parseIp(ip) || key !== `${IP_PREFIX}/${ip}`) return `IP ${JSON.stringify(ip)} is not an address or not the key's`;
  if (typeof v.HostIP !== "string" || !parseIp(v.HostIP)) return `HostIP ${JSON.stringify(v.HostIP)} is not an address`;
  if (typeof v.ID !== "number" || !Number.isInteger(v.ID) || v.ID <= 0) return `ID ${JSON.stringify(v.ID)} is not an identity`;
  if (typeof v.K8sNamespace !== "string" || typeof v.K8sPodName !== "string" || !v.K8sNamespace || !v.K8sPodName) return "K8sNamespace/K8sPodName missing";
  const labels = stringMap(c.labels ?? {});
  const namespaceLabels = stringMap(c.namespaceLabels ?? {});
  if (typeof c.node !== "string" || !c.node || !labels || !namespaceLabels) return "ciliate.node/labels/namespaceLabels missing or not strings";
  return {
    ip,
    hostIp: v.HostIP,
    identity: v.ID,
    node: c.node,
    namespace: v.K8sNamespace,
    pod: v.K8sPodName,
    labels,
    namespaceLabels,
    ...(typeof c.serviceAccount === "string" ? { serviceAccount: c.serviceAccount } : {}),
  };
}

/** A node entry back into a SharedNode, or a reason it is not one. */
export function parseNode(key: string, value: string): SharedNode | string {
  const v = jsonObject(value);
  if (typeof v === "string") return v;
  if (typeof v.Name !== "string" || typeof v.Cluster !== "string") return "Name/Cluster missing";
  if (key !== `${NODES_PREFIX}/${v.Cluster}/${v.Name}`) return "Name/Cluster are not the key's";
  const addrs = Array.isArray(v.IPAddresses) ? v.IPAddresses : [];
  const internal = (family: 4 | 6) => addrs.find((a): a is { IP: string } => isRecord(a) && a.Type === "InternalIP" && typeof a.IP === "string" && parseIp(a.IP)?.family === family)?.IP;
  const ip = internal(4) ?? addrs.find((a): a is { IP: string } => isRecord(a) && a.Type === "InternalIP" && typeof a.IP === "string" && parseIp(a.IP) !== undefined)?.IP;
  if (!ip) return "IPAddresses has no InternalIP";
  const podCIDR = ipNetOf(v.IPv4AllocCIDR, 4);
  if (!podCIDR) return "IPv4AllocCIDR missing or not an IPv4 prefix";
  const ip6 = internal(6);
  const podCIDRv6 = ipNetOf(v.IPv6AllocCIDR, 6);
  return { name: v.Name, cluster: v.Cluster, clusterId: typeof v.ClusterID === "number" ? v.ClusterID : 0, ip, podCIDR, ...(ip6 && ip6 !== ip ? { ip6 } : {}), ...(podCIDRv6 ? { podCIDRv6 } : {}) };
}

/** One watched prefix: list, then watch from the list's revision; list again after a reconnect (S4). */
export class WatchedPrefix<T> {
  readonly entries = new Map<string, T>();
  private watcher?: Watcher;
  private disconnected = false;
  private readonly bad = new Set<string>();

  constructor(
    private readonly client: Etcd3,
    private readonly prefix: string,
    private readonly parse: (key: string, value: string) => T | string,
    private readonly changed: () => void,
    private readonly log: (msg: string) => void,
    private readonly deleted?: (key: string) => void,
  ) {}

  private put(key: string, value: string): void {
    const v = this.parse(key, value);
    if (typeof v === "string") {
      if (!this.bad.has(key)) this.log(`kvstore: ignoring ${key}: ${v}`);
      this.bad.add(key);
      this.entries.delete(key);
      return;
    }
    this.bad.delete(key);
    this.entries.set(key, v);
  }

  /** Lists the prefix and replaces the cache; returns the revision listed at. */
  private async list(): Promise<string> {
    const res = await this.client.getAll().prefix(`${this.prefix}/`).exec();
    this.entries.clear();
    for (const kv of res.kvs) this.put(kv.key.toString(), kv.value.toString());
    this.changed();
    return res.header.revision;
  }

  async start(): Promise<void> {
    const rev = await this.list();
    this.watcher = await this.client.watch().prefix(`${this.prefix}/`).startRevision(String(BigInt(rev) + 1n)).create();
    this.watcher.on("put", (kv) => (this.put(kv.key.toString(), kv.value.toString()), this.changed()));
    this.watcher.on("delete", (kv) => {
      this.entries.delete(kv.key.toString());
      this.deleted?.(kv.key.toString());
      this.changed();
    });
    this.watcher.on("disconnected", () => (this.disconnected = true));
    this.watcher.on("connected", () => {
      if (!this.disconnected) return;
      this.disconnected = false;
      // Resync: whatever happened while the watch was away (a compaction, a lease that expired) is seen.
      this.list().catch((e: Error) => this.log(`kvstore: resync of ${this.prefix} failed (${e.message}); the watch continues`));
    });
    this.watcher.on("error", (e) => this.log(`kvstore watch ${this.prefix}: ${e.message}`));
  }

  async stop(): Promise<void> {
    await this.watcher?.cancel().catch(() => undefined);
  }

  abandon(): void {
    this.watcher?.removeAllListeners();
  }
}

/** This agent's endpoints and node in etcd, and every other agent's. */
export class KvstoreState {
  private lease?: Lease;
  private leaseId?: string;
  private leaseGeneration = 0;
  /** key → value this agent wants in etcd (S2). */
  private want = new Map<string, string>();
  /** key → value this agent wrote under the current lease. */
  private written = new Map<string, string>();
  private flushing?: Promise<void>;
  private again = false;
  private retryTimer?: NodeJS.Timeout;
  private closed = false;
  private readonly changes = new ChangeNotifier();
  private readonly ips: WatchedPrefix<SharedEndpoint>;
  private readonly nodes: WatchedPrefix<SharedNode>;
  private readonly services: WatchedPrefix<ClusterService>;
  private readonly log: (msg: string) => void;

  constructor(private readonly opts: KvstoreStateOptions) {
    this.log = opts.log ?? (() => undefined);
    const changed = () => this.changes.notify();
    this.ips = new WatchedPrefix(opts.client, IP_PREFIX, parseEndpoint, changed, this.log);
    this.nodes = new WatchedPrefix(opts.client, `${NODES_PREFIX}/${opts.node.cluster}`, parseNode, changed, this.log);
    // S6: a service key this agent wants that goes is written again.
    this.services = new WatchedPrefix(opts.client, `${SERVICES_PREFIX}/${opts.node.cluster}`, parseService, () => undefined, this.log, (key) => {
      if (!this.want.has(key) || this.closed) return;
      this.written.delete(key);
      this.scheduleFlush(0);
    });
    this.want.set(this.nodeKey(), nodeValue(opts.node));
  }

  private nodeKey(): string {
    return `${NODES_PREFIX}/${this.opts.node.cluster}/${this.opts.node.name}`;
  }

  /** Grants the lease, writes this node, lists and watches both prefixes. Rejects when etcd is unreachable. */
  async start(): Promise<void> {
    await this.newLease();
    await this.flush();
    await this.nodes.start();
    await this.ips.start();
    await this.services.start();
  }

  /** S1, and S3 when the lease is lost. */
  private async newLease(): Promise<void> {
    const gen = ++this.leaseGeneration;
    const lease = this.opts.client.lease(this.opts.leaseTtl);
    this.leaseId = await lease.grant();
    this.lease = lease;
    this.written.clear();
    lease.on("lost", (e) => {
      if (this.closed || gen !== this.leaseGeneration) return;
      this.log(`kvstore state lease lost (${e.message}); writing this node's endpoints and node again`);
      this.lease = undefined;
      this.scheduleFlush(0);
    });
  }

  /**
   * Sets the endpoints this node has now and the shared global services of its cluster (S2, S6); returns
   * at once, the writes follow.
   */
  publish(endpoints: SharedEndpoint[], services: ClusterService[] = []): void {
    const want = new Map([[this.nodeKey(), nodeValue(this.opts.node)]]);
    for (const e of endpoints) for (const [k, v] of endpointEntries(e)) want.set(k, v);
    for (const s of services) want.set(serviceKey(s), serviceValue(s));
    this.want = want;
    this.scheduleFlush(0);
  }

  private scheduleFlush(ms: number): void {
    if (this.closed) return;
    if (ms === 0) {
      void this.flush().catch(() => undefined);
      return;
    }
    this.retryTimer ??= setTimeout(() => {
      this.retryTimer = undefined;
      void this.flush().catch(() => undefined);
    }, ms);
  }

  /** Writes the difference between `want` and `written`; one flush at a time, the next one coalesced. */
  private flush(): Promise<void> {
    if (this.flushing) {
      this.again = true;
      return this.flushing;
    }
    this.flushing = (async () => {
      do {
        this.again = false;
        try {
          if (!this.lease) await this.newLease();
          const want = this.want;
          for (const [k, v] of want) {
            if (this.written.get(k) === v) continue;
            await this.opts.client.put(k).value(v).lease(this.leaseId!);
            this.written.set(k, v);
          }
          for (const k of [...this.written.keys()]) {
            if (want.has(k)) continue;
            await this.opts.client.delete().key(k);
            this.written.delete(k);
          }
        } catch (e) {
          // The lease expired before its loss was noticed (S3): a new one on the next try.
          if (/lease not found/i.test((e as Error).message)) this.lease = undefined;
          this.log(`kvstore state write failed (${(e as Error).message}); retrying`);
          this.scheduleFlush(this.opts.retryMs ?? 1000);
          throw e;
        }
      } while (this.again && !this.closed);
    })().finally(() => (this.flushing = undefined));
    return this.flushing;
  }

  /** True when everything published is in etcd (tests and diagnostics). */
  synced(): boolean {
    return !this.flushing && [...this.want].every(([k, v]) => this.written.get(k) === v);
  }

  /** Endpoints of other nodes (S5), a dual-stack endpoint's two addresses merged into one. */
  remoteEndpoints(): SharedEndpoint[] {
    return mergeEndpointAddresses([...this.ips.entries.values()].filter((e) => e.node !== this.opts.node.name));
  }

  /** The services of this cluster in etcd (S6; diagnostics and tests). */
  clusterServices(): ClusterService[] {
    return [...this.services.entries.values()];
  }

  /** Other nodes of this cluster (S5). */
  remoteNodes(): SharedNode[] {
    return [...this.nodes.entries.values()].filter((n) => n.name !== this.opts.node.name);
  }

  /** Called (coalesced) after the remote view changed. */
  onChange(cb: () => void): void {
    this.changes.add(cb);
  }

  /** Stops watching and revokes the lease: this node's entries go at once (S1). */
  async close(): Promise<void> {
    if (this.closed) return;
    this.closed = true;
    clearTimeout(this.retryTimer);
    this.changes.stop();
    await Promise.all([this.ips.stop(), this.nodes.stop(), this.services.stop()]);
    await this.lease?.revoke().catch(() => undefined);
  }

  /** Stops without revoking, as a killed agent leaves its lease (tests): the entries expire with the TTL. */
  abandon(): void {
    this.closed = true;
    clearTimeout(this.retryTimer);
    this.changes.stop();
    this.ips.abandon();
    this.nodes.abandon();
    this.services.abandon();
    this.lease?.removeAllListeners();
    this.lease?.release();
  }
}
