/*
 * The desired contents of one node's maps. The simulator's NodeAgent (sim/node-agent.ts) already computes
 * exactly what a Cilium agent writes into a node's maps; the agent runs it against a recording Datapath and
 * keeps the entries as bytes, keyed by the hex of the encoded key, so they can be diffed against the
 * kernel's maps (reconcile.ts). Three things differ from the simulator and are applied here:
 *   1. Local endpoints are the pods that have a real interface (a CNI ADD); their endpoint ids and
 *      interface indexes are the agent's (stable across changes), not positions in a sorted list.
 *   2. Identities are the agent's stable numbers (identities.ts), substituted in the ipcache, endpoint and
 *      policy entries.
 *   3. The cluster is built from the manifests plus this node (name, IP, pod CIDR from the flags) and the
 *      IPs the agent's IPAM gave to its pods; a Pod without an address and without a local endpoint is
 *      pending and left out, and workload kinds are not expanded (on a node only real pods exist).
 * Mirrors pkg/endpointmanager and pkg/ipcache upstream: the agent's maps are a function of the cluster.
 */
import { MAP_SPECS, type MapSpec } from "../host/codecs.gen.ts";
import * as C from "../host/constants.gen.ts";
import type { Datapath, MapHandle } from "../host/datapath.ts";
import type { CompiledPolicy } from "../policy/compile.ts";
import type { ManifestObject } from "../policy/types.ts";
import { buildCluster, type BuildOptions, type SimCluster } from "../sim/cluster.ts";
import { NodeAgent } from "../sim/node-agent.ts";
import { compilePolicy } from "../policy/compile.ts";
import type { FqdnState } from "../policy/fqdn-cache.ts";
import { PolicyBudgetError } from "../policy/errors.ts";
import { translateNetworkPolicy } from "../policy/k8s-netpol.ts";
import { translateCiliumPolicy } from "../policy/rules.ts";
import type { InternalRule, PolicyKind } from "../policy/types.ts";
import type { Ctx } from "../policy/validate.ts";
import { addrBytes16 } from "../sim/packets.ts";
import { buildLbModel } from "../sim/services.ts";
import { LOCAL_IDENTITY_SCOPE, type StableIdentities, type StableNumbers } from "./identities.ts";
import { backendKey } from "../sim/services.ts";

/** The agent's persistent numbering: identities, backend ids, reverse-NAT indexes (rule 2). */
export interface Numbering {
  identities: StableIdentities;
  backends: StableNumbers;
  revNat: StableNumbers;
  /** Trace every packet into the events ring buffer, not only drops and policy verdicts. */
  eventsAll?: boolean;
  /** Also trace about 1 in N forwarded packets (ConfigValue.traceSampleRate; 0 or undefined = none). */
  traceSample?: number;
}

/** The maps the agent owns; every other map (conntrack, SNAT, affinity, metrics, trace, events) is the datapath's. */
export const MANAGED_MAPS = ["Config", "Backends", "RevNat", "Maglev", "Services", "Policy", "Ipcache", "Endpoints"] as const;
export type ManagedMap = (typeof MANAGED_MAPS)[number];

export interface Entry {
  key: Uint8Array;
  value: Uint8Array;
}

export type MapContents = Map<string, Entry>;

export interface LocalEndpoint {
  epId: number;
  /** ns/name of the pod. */
  pod: string;
  ip: string;
  ifindex: number;
  /** MAC of the pod's interface and of the host side, "aa:bb:…" (optional). */
  mac?: string;
  hostMac?: string;
}

export interface NodeInfo {
  name: string;
  ip: string;
  podCIDR: string;
}

export interface DesiredState {
  cluster: SimCluster;
  policy: CompiledPolicy;
  /** Local endpoints (ns/name) whose policy is over the budget and kept at its last good entries. */
  overflow: PolicyBudgetError[];
  /** Stable identity of each pod (ns/name). */
  podIdentity: Map<string, number>;
  maps: Record<ManagedMap, MapContents>;
}

export const WORKLOAD_KINDS = new Set(["Deployment", "ReplicaSet", "StatefulSet", "DaemonSet"]);

export function hex(b: Uint8Array): string {
  return Buffer.from(b.buffer, b.byteOffset, b.byteLength).toString("hex");
}

function macBytes(mac: string | undefined): Uint8Array {
  const out = new Uint8Array(8);
  if (mac) mac.split(":").forEach((h, i) => (out[i] = parseInt(h, 16)));
  return out;
}

/** The manifests as the node sees them (rule 3). */
export function nodeObjects(objects: ManifestObject[], node: NodeInfo, endpoints: LocalEndpoint[]): ManifestObject[] {
  const byPod = new Map(endpoints.map((e) => [e.pod, e]));
  const declaredNodes = new Set(objects.filter((o) => o.kind === "Node").map((o) => o.metadata.name));
  declaredNodes.add(node.name);
  const out: ManifestObject[] = [];
  const seen = new Set<string>();
  let haveNode = false;
  for (const o of objects) {
    if (WORKLOAD_KINDS.has(o.kind)) continue;
    if (o.kind === "Node" && o.metadata.name === node.name) {
      haveNode = true;
      const raw = structuredClone(o.raw ?? {});
      raw.spec = { ...(raw.spec ?? {}), podCIDR: node.podCIDR };
      raw.status = { ...(raw.status ?? {}), addresses: [{ type: "InternalIP", address: node.ip }] };
      out.push({ ...o, raw });
      continue;
    }
    if (o.kind === "Pod") {
      const key = `${o.metadata.namespace ?? "default"}/${o.metadata.name}`;
      const ep = byPod.get(key);
      if (ep) {
        seen.add(key);
        const raw = structuredClone(o.raw ?? {});
        raw.spec = { ...(raw.spec ?? {}), nodeName: node.name };
        delete raw.spec.hostNetwork;
        raw.status = { ...(raw.status ?? {}), podIP: ep.ip };
        out.push({ ...o, raw });
        continue;
      }
      if (!o.raw?.status?.podIP || o.raw?.spec?.nodeName === node.name) continue; // pending, or ours but not running
      if (o.raw?.spec?.nodeName && !declaredNodes.has(o.raw.spec.nodeName)) {
        // A pod on a node the agent has no Node object for (the Kubernetes source does not list Nodes):
        // keep its address and identity, without placing it on an unknown node.
        const raw = structuredClone(o.raw);
        delete raw.spec.nodeName;
        out.push({ ...o, raw });
        continue;
      }
    }
    out.push(o);
  }
  if (!haveNode) {
    out.push({
      apiVersion: "v1",
      kind: "Node",
      metadata: { name: node.name },
      raw: { apiVersion: "v1", kind: "Node", metadata: { name: node.name }, spec: { podCIDR: node.podCIDR }, status: { addresses: [{ type: "InternalIP", address: node.ip }] } },
    });
  }
  // Endpoints whose pod is not in the manifests: a pod with no labels (Cilium gives it an identity from
  // its namespace alone).
  for (const ep of endpoints) {
    if (seen.has(ep.pod)) continue;
    const [namespace, name] = ep.pod.split("/") as [string, string];
    const metadata = { name, namespace, labels: {} };
    out.push({ apiVersion: "v1", kind: "Pod", metadata, raw: { apiVersion: "v1", kind: "Pod", metadata, spec: { nodeName: node.name }, status: { podIP: ep.ip } } });
  }
  return out;
}

class Recorder<K, V> implements MapHandle<K, V> {
  readonly entries_: MapContents = new Map();
  constructor(readonly spec: MapSpec<K, V>) {}
  lookup(key: Partial<K>): V | undefined {
    const e = this.entries_.get(hex(this.spec.key.encode(key)));
    return e ? this.spec.value.decode(e.value) : undefined;
  }
  update(key: Partial<K>, value: Partial<V>): void {
    const k = this.spec.key.encode(key);
    this.entries_.set(hex(k), { key: k, value: this.spec.value.encode(value) });
  }
  delete(key: Partial<K>): boolean {
    return this.entries_.delete(hex(this.spec.key.encode(key)));
  }
  *entries(): IterableIterator<[K, V]> {
    for (const e of this.entries_.values()) yield [this.spec.key.decode(e.key), this.spec.value.decode(e.value)];
  }
  count(): number {
    return this.entries_.size;
  }
}

class RecordingDatapath implements Datapath {
  readonly engine = "kernel" as const;
  readonly recorders = new Map<string, Recorder<unknown, unknown>>();
  map<K, V>(spec: MapSpec<K, V>): MapHandle<K, V> {
    let r = this.recorders.get(spec.name);
    if (!r) {
      r = new Recorder(spec as MapSpec<unknown, unknown>);
      this.recorders.set(spec.name, r);
    }
    return r as unknown as MapHandle<K, V>;
  }
  run(): never {
    throw new Error("the recording datapath runs no packets");
  }
  close(): void {}
}

/** NodeAgent with the agent's endpoints (rule 1) and identities (rule 2). */
class AgentNodeProgrammer extends NodeAgent {
  constructor(
    node: SimCluster["nodes"][number],
    dp: Datapath,
    cluster: SimCluster,
    policy: CompiledPolicy,
    private readonly endpoints: LocalEndpoint[],
    private readonly stable: (id: number) => number,
    private readonly numbering: Numbering,
  ) {
    super(node, dp, cluster, policy, buildLbModel(cluster));
    const byPod = new Map(endpoints.map((e) => [e.pod, e]));
    const local = this.localPods.filter((p) => byPod.has(p.key));
    this.localPods.splice(0, this.localPods.length, ...local);
    this.epIds.clear();
    for (const p of local) this.epIds.set(p.key, byPod.get(p.key)!.epId);
  }

  override writeConfig(): void {
    super.writeConfig();
    // Flow events for `ciliate observe`: drops and new flows' policy verdicts (every packet with eventsAll).
    const m = this.dp.map(MAP_SPECS.Config);
    const v = m.lookup(0)!;
    m.update(0, {
      ...v,
      flags: (v.flags | C.CONFIG_F_EVENTS | (this.numbering.eventsAll ? C.CONFIG_F_EVENTS_ALL : 0)) >>> 0,
      traceSampleRate: this.numbering.traceSample ?? 0,
    });
  }

  override identityOf(p: SimCluster["pods"][number]): number {
    return this.stable(super.identityOf(p));
  }

  override writeEndpoints(): void {
    const m = this.dp.map(MAP_SPECS.Endpoints);
    for (const ep of this.endpoints) {
      const pod = this.localPods.find((p) => p.key === ep.pod);
      if (!pod) continue;
      m.update({ addr: addrBytes16(ep.ip), family: C.FAMILY_IPV4 }, { epId: ep.epId, secIdentity: this.identityOf(pod), ifindex: ep.ifindex, mac: macBytes(ep.mac), nodeMac: macBytes(ep.hostMac) });
    }
  }

  override writeIpcache(): void {
    super.writeIpcache();
    // CIDR identities (node-local scope, 1 << 24 and up) come straight from the compiled policy; pod
    // entries already went through identityOf.
    const m = this.dp.map(MAP_SPECS.Ipcache);
    for (const [k, v] of [...m.entries()]) if (v.secIdentity >= LOCAL_IDENTITY_SCOPE) m.update(k, { ...v, secIdentity: this.stable(v.secIdentity) });
  }

  override writeServices(): void {
    super.writeServices();
    // Rule 2 for services: backend ids by address, reverse-NAT indexes by frontend.
    const be = new Map<number, number>();
    for (const [id, b] of this.lb.backendById) be.set(id, this.numbering.backends.get(backendKey(b)));
    const rn = new Map<number, number>();
    for (const f of this.lb.frontends) rn.set(f.revNat, this.numbering.revNat.get(`${f.kind}/${f.ip}/${f.fport}/${f.protocol}`));
    this.numbering.backends.retain(new Set([...this.lb.backendById.values()].map(backendKey)));
    this.numbering.revNat.retain(new Set(this.lb.frontends.map((f) => `${f.kind}/${f.ip}/${f.fport}/${f.protocol}`)));
    const B = (id: number) => be.get(id) ?? id;
    const R = (id: number) => rn.get(id) ?? id;
    const rewrite = <K, V>(spec: MapSpec<K, V>, fn: (k: K, v: V) => [K, V]) => {
      const m = this.dp.map(spec);
      const all = [...m.entries()];
      for (const [k] of all) m.delete(k);
      for (const [k, v] of all) m.update(...fn(k, v));
    };
    rewrite(MAP_SPECS.Backends, (k, v) => [{ ...k, backendId: B(k.backendId) }, v]);
    rewrite(MAP_SPECS.RevNat, (k, v) => [{ ...k, revNatIndex: R(k.revNatIndex) }, v]);
    rewrite(MAP_SPECS.Maglev, (k, v) => [{ ...k, revNatIndex: R(k.revNatIndex) }, { ...v, backendId: B(v.backendId) }]);
    // Slot 0 (the master) keeps the algorithm and affinity timeout in backendId.
    rewrite(MAP_SPECS.Services, (k, v) => [k, { ...v, revNatIndex: R(v.revNatIndex), backendId: k.backendSlot === 0 ? v.backendId : B(v.backendId) }]);
  }

  override writePolicy(): void {
    super.writePolicy();
    const m = this.dp.map(MAP_SPECS.Policy);
    const all = [...m.entries()];
    for (const [k] of all) m.delete(k);
    for (const [k, v] of all) m.update({ ...k, secLabel: this.stable(k.secLabel) }, v);
  }
}

/**
 * The cluster's policies compiled with policy/ (as sim/policy.ts does), except that an endpoint over the
 * policy-map budget is not an error for the whole node: it is returned in `overflow` and keeps its last good
 * entries (issue #6 item 8; Cilium likewise leaves an endpoint whose regeneration fails on its old policy).
 */
function compileForNode(c: SimCluster, policyMapMax?: number, fqdn?: FqdnState): { policy: CompiledPolicy; overflow: PolicyBudgetError[] } {
  const rules: InternalRule[] = [];
  for (const o of c.policies) {
    const ctx: Ctx = { src: o.source, problems: [] };
    if (o.kind === "NetworkPolicy") {
      const r = translateNetworkPolicy(o, c.config.clusterName, ctx);
      if (r) rules.push(r);
    } else rules.push(...translateCiliumPolicy(o.kind as PolicyKind, o, ctx));
    if (ctx.problems.length) throw ctx.problems[0];
  }
  const policy = compilePolicy(c.model, rules, { ...(policyMapMax ? { policyMapMax } : {}), ...(fqdn ? { fqdn } : {}) });
  const overflow = policy.errors.filter((e): e is PolicyBudgetError => e instanceof PolicyBudgetError);
  const other = policy.errors.find((e) => !(e instanceof PolicyBudgetError));
  if (other) throw other;
  return { policy, overflow };
}

export interface DesiredOptions extends BuildOptions {
  /** Per-endpoint policy entry budget (Cilium bpf-policy-map-max). */
  policyMapMax?: number;
  /** What the node's DNS proxy learned (FqdnCache.state): toFQDNs selects these addresses. */
  fqdn?: FqdnState;
  /** The previous desired state: an endpoint over budget keeps its entries from there. */
  previous?: { maps: Pick<Record<ManagedMap, MapContents>, "Policy"> };
}

/**
 * Computes the desired map contents for this node. Throws what buildCluster / compileClusterPolicy throw
 * (SimError, ManifestError) on bad input; the caller keeps the running state then.
 */
export function computeDesired(objects: ManifestObject[], node: NodeInfo, endpoints: LocalEndpoint[], numbering: Numbering, opts: DesiredOptions = {}): DesiredState {
  const cluster = buildCluster(nodeObjects(objects, node, endpoints), opts);
  const { policy, overflow } = compileForNode(cluster, opts.policyMapMax, opts.fqdn);
  const stable = numbering.identities.mapping(policy);
  const simNode = cluster.nodes.find((n) => n.name === node.name)!;
  const dp = new RecordingDatapath();
  const prog = new AgentNodeProgrammer(simNode, dp, cluster, policy, endpoints, stable, numbering);
  prog.install();
  const maps = {} as Record<ManagedMap, MapContents>;
  for (const name of MANAGED_MAPS) {
    const spec = MAP_SPECS[name] as MapSpec;
    maps[name] = (dp.recorders.get(spec.name)?.entries_ as MapContents | undefined) ?? new Map();
  }
  // Over-budget local endpoints: their entries from the previous state, or none (nothing allowed yet).
  const local = new Map(endpoints.map((e) => [e.pod, e.epId]));
  const over = overflow.filter((e) => local.has(e.endpoint));
  for (const e of over) {
    const epId = local.get(e.endpoint)!;
    const ofEp = (c: MapContents) => [...c].filter(([, v]) => MAP_SPECS.Policy.key.decode(v.key).epId === epId);
    for (const [k] of ofEp(maps.Policy)) maps.Policy.delete(k);
    if (opts.previous) for (const [k, v] of ofEp(opts.previous.maps.Policy)) maps.Policy.set(k, v);
  }
  const podIdentity = new Map<string, number>();
  for (const p of cluster.pods) podIdentity.set(p.key, prog.identityOf(p));
  return { cluster, policy, podIdentity, maps, overflow: over };
}
