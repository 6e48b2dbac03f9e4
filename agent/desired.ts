/*
 * The desired contents of one node's maps as the agent keeps them: node/desired.ts computes the entries
 * (the same function the simulator writes into its engines), and the agent encodes them as bytes keyed by
 * the hex of the encoded key, so they can be diffed against the kernel's maps (reconcile.ts). Three inputs
 * are the agent's own:
 *   1. Local endpoints are the pods that have a real interface (a CNI ADD); their endpoint ids and
 *      interface indexes are the agent's (stable across changes), not positions in a sorted list.
 *   2. Identities, backend ids and reverse-NAT indexes are the agent's stable numbers (identities.ts).
 *   3. The cluster is built from the manifests plus this node (name, IP, pod CIDR from the flags) and the
 *      IPs the agent's IPAM gave to its pods; a Pod without an address and without a local endpoint is
 *      pending and left out, and workload kinds are not expanded (on a node only real pods exist).
 * Mirrors pkg/endpointmanager and pkg/ipcache upstream: the agent's maps are a function of the cluster.
 */
import { MAP_SPECS, type MapSpec } from "../host/codecs.gen.ts";
import * as C from "../host/constants.gen.ts";
import { wasmMaglevBuilder } from "../host/wasm-core.ts";
import { buildCluster, type BuildOptions, type SimCluster } from "../node/cluster.ts";
import { desiredMaps, frontendKey, MANAGED_MAPS, type ManagedMap } from "../node/desired.ts";
import { backendKey, buildLbModel } from "../node/services.ts";
import { buildRules, compilePolicy, PolicyBudgetError, type CompiledPolicy, type PolicyError, type ManifestObject, type ProxyListener, type FqdnState } from "../policy/index.ts";
import type { StableNumbers } from "./identities.ts";
import type { IdentityNumbering } from "./identity-allocator.ts";

export { MANAGED_MAPS, type ManagedMap };

/** The agent's persistent numbering: identities, backend ids, reverse-NAT indexes (rule 2). */
export interface Numbering {
  identities: IdentityNumbering;
  backends: StableNumbers;
  revNat: StableNumbers;
  /** Trace every packet into the events ring buffer, not only drops and policy verdicts. */
  eventsAll?: boolean;
  /** Also trace about 1 in N forwarded packets (ConfigValue.traceSampleRate; 0 or undefined = none). */
  traceSample?: number;
}

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
  /** Accepted but not (fully) enforced parts of the policies (docs/policy.md, "Warned"). */
  warnings: PolicyError[];
  /** Stable identity of each pod (ns/name). */
  podIdentity: Map<string, number>;
  /**
   * The L7 proxy listeners of this node's endpoints, their peer identities in the agent's stable numbering
   * (the numbers in the ipcache map, which the proxy reads a connection's identities from).
   */
  proxies: Map<number, ProxyListener>;
  maps: Record<ManagedMap, MapContents>;
}

export const WORKLOAD_KINDS = new Set(["Deployment", "ReplicaSet", "StatefulSet", "DaemonSet"]);

export function hex(b: Uint8Array): string {
  return Buffer.from(b.buffer, b.byteOffset, b.byteLength).toString("hex");
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

/**
 * The cluster's policies compiled with policy/ (as the simulator compiles them), except that an endpoint
 * over the policy-map budget is not an error for the whole node: it is returned in `overflow` and keeps its
 * last good entries (issue #6 item 8; Cilium likewise leaves an endpoint whose regeneration fails on its old
 * policy). Throws the first problem of a refused policy.
 */
function compileForNode(c: SimCluster, policyMapMax?: number, fqdn?: FqdnState): { policy: CompiledPolicy; overflow: PolicyBudgetError[]; warnings: PolicyError[] } {
  const set = buildRules(c.policies, c.config.clusterName);
  if (set.problems.length) throw set.problems[0];
  const policy = compilePolicy(c.model, set.rules, { ...(policyMapMax ? { policyMapMax } : {}), ...(fqdn ? { fqdn } : {}) });
  const overflow = policy.errors.filter((e): e is PolicyBudgetError => e instanceof PolicyBudgetError);
  const other = policy.errors.find((e) => !(e instanceof PolicyBudgetError));
  if (other) throw other;
  return { policy, overflow, warnings: [...set.warnings, ...policy.warnings] };
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
 * Computes the desired map contents for this node. Throws what buildCluster / policy compilation throw
 * (SimError, ManifestError) on bad input; the caller keeps the running state then.
 */
export function computeDesired(objects: ManifestObject[], node: NodeInfo, endpoints: LocalEndpoint[], numbering: Numbering, opts: DesiredOptions = {}): DesiredState {
  const cluster = buildCluster(nodeObjects(objects, node, endpoints), opts);
  const { policy, overflow, warnings } = compileForNode(cluster, opts.policyMapMax, opts.fqdn);
  const stable = numbering.identities.mapping(policy, new Set(endpoints.map((e) => e.pod)));
  const lb = buildLbModel(cluster);
  // Rule 2 for services: backend ids by address, reverse-NAT indexes by frontend; allocated in model order
  // so a fresh agent numbers them as the simulator does, then anything no longer used is released.
  for (const b of lb.backendById.values()) numbering.backends.get(backendKey(b));
  for (const f of lb.frontends) numbering.revNat.get(frontendKey(f));
  numbering.backends.retain(new Set([...lb.backendById.values()].map(backendKey)));
  numbering.revNat.retain(new Set(lb.frontends.map(frontendKey)));
  const byPod = new Map(endpoints.map((e) => [e.pod, e]));
  const entries = desiredMaps(
    cluster,
    policy,
    lb,
    node.name,
    {
      endpoint: (p) => byPod.get(p.key),
      identity: stable,
      backend: (b) => numbering.backends.get(backendKey(b)),
      revNat: (f) => numbering.revNat.get(frontendKey(f)),
    },
    wasmMaglevBuilder,
    { events: true, eventsAll: numbering.eventsAll, traceSampleRate: numbering.traceSample },
  );
  const maps = {} as Record<ManagedMap, MapContents>;
  for (const name of MANAGED_MAPS) {
    const spec = MAP_SPECS[name] as MapSpec;
    const contents: MapContents = new Map();
    for (const e of entries[name]) {
      const key = spec.key.encode(e.key);
      contents.set(hex(key), { key, value: spec.value.encode(e.value) });
    }
    maps[name] = contents;
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
  for (const p of cluster.pods) podIdentity.set(p.key, stable(policy.identities.podIdentity.get(p.key) ?? C.ID_WORLD) ?? C.ID_INIT);
  const proxies = new Map<number, ProxyListener>();
  for (const [port, l] of policy.proxies) {
    if (!local.has(l.endpoint)) continue;
    // A pending peer identity matches no connection (its pods are init in the ipcache): left out.
    proxies.set(port, { ...l, rules: l.rules.map((r) => ({ ...r, identities: r.identities.flatMap((id) => (id === 0 ? [0] : (stable(id) ?? []))) })) });
  }
  return { cluster, policy, podIdentity, maps, overflow: over, warnings, proxies };
}
