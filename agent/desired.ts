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
import { buildCluster, clusterAnnotationOf, type BuildOptions, type SimCluster } from "../node/cluster.ts";
import { desiredMaps, endpointPolicyEntries, frontendKey, hostPolicyEntries, localPods, MANAGED_MAPS, type DesiredMaps, type DesiredOptions as NodeDesiredOptions, type ManagedMap, type Numbering as NodeNumbering } from "../node/desired.ts";
import { backendKey, buildLbModel, type LbModel } from "../node/services.ts";
import {
  buildRules,
  PolicyBudgetError,
  PolicyCompiler,
  POLICY_KINDS,
  type CompiledPolicy,
  type EndpointPolicy,
  type PolicyError,
  type ManifestObject,
  type ProxyListener,
  type FqdnState,
  type RuleSet,
  type Provenance,
} from "../policy/index.ts";
import { StableNumbers } from "./identities.ts";
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
  /** The pod's IPv6 address (dual stack). */
  ip6?: string;
  ifindex: number;
  /** MAC of the pod's interface and of the host side, "aa:bb:…" (optional). */
  mac?: string;
  hostMac?: string;
}

export interface NodeInfo {
  name: string;
  ip: string;
  podCIDR: string;
  /** The node's IPv6 pod CIDR (dual stack). */
  podCIDRv6?: string;
  /** The node's IPv6 address (Cilium's ipv6-node): its IPv6 InternalIP, the next hop of other nodes' IPv6 routes. */
  ip6?: string;
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
  /** The rules behind each Policy map entry cookie as written (the node's stable cookies), for flows. */
  provenanceByCookie: Map<number, Provenance[]>;
  /** What the next computeDesired reuses (pass this state as `previous`). */
  memo?: DesiredMemo;
}

export const WORKLOAD_KINDS = new Set(["Deployment", "ReplicaSet", "StatefulSet", "DaemonSet"]);

export function hex(b: Uint8Array): string {
  return Buffer.from(b.buffer, b.byteOffset, b.byteLength).toString("hex");
}

/** A local endpoint's addresses as a Pod's status: podIP, and podIPs when it is dual-stack (the agent's
 * IPAM is the truth for its own pods, whatever the manifest says). */
function podStatus(ep: LocalEndpoint): { podIP: string; podIPs?: { ip: string }[] } {
  return { podIP: ep.ip, podIPs: ep.ip6 ? [{ ip: ep.ip }, { ip: ep.ip6 }] : [{ ip: ep.ip }] };
}

/** The node's InternalIPs: its IPv4 address and, dual-stack, its IPv6 one (--ipv6-node: the IPv6
 * NodePort frontends and masquerade address, node/services.ts and node/desired.ts). */
function nodeAddresses(node: NodeInfo): { type: string; address: string }[] {
  return [{ type: "InternalIP", address: node.ip }, ...(node.ip6 ? [{ type: "InternalIP", address: node.ip6 }] : [])];
}

/** The manifests as the node sees them (rule 3). */
export function nodeObjects(objects: ManifestObject[], node: NodeInfo, endpoints: LocalEndpoint[]): ManifestObject[] {
  const byPod = new Map(endpoints.map((e) => [e.pod, e]));
  const declaredNodes = new Set(objects.filter((o) => o.kind === "Node" && clusterAnnotationOf(o) === undefined).map((o) => o.metadata.name));
  declaredNodes.add(node.name);
  const out: ManifestObject[] = [];
  const seen = new Set<string>();
  let haveNode = false;
  for (const o of objects) {
    if (WORKLOAD_KINDS.has(o.kind)) continue;
    // Another cluster's state (Cluster Mesh, node/cluster.ts CLUSTER_ANNOTATION): as published there.
    if (clusterAnnotationOf(o) !== undefined) {
      out.push(o);
      continue;
    }
    if (o.kind === "Node" && o.metadata.name === node.name) {
      haveNode = true;
      const raw = structuredClone(o.raw ?? {});
      raw.spec = { ...(raw.spec ?? {}), podCIDR: node.podCIDR, ...(node.podCIDRv6 ? { podCIDRs: [node.podCIDR, node.podCIDRv6] } : {}) };
      raw.status = { ...(raw.status ?? {}), addresses: nodeAddresses(node) };
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
        raw.status = { ...(raw.status ?? {}), ...podStatus(ep) };
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
      raw: { apiVersion: "v1", kind: "Node", metadata: { name: node.name }, spec: { podCIDR: node.podCIDR, ...(node.podCIDRv6 ? { podCIDRs: [node.podCIDR, node.podCIDRv6] } : {}) }, status: { addresses: nodeAddresses(node) } },
    });
  }
  // Endpoints whose pod is not in the manifests: a pod with no labels (Cilium gives it an identity from
  // its namespace alone).
  for (const ep of endpoints) {
    if (seen.has(ep.pod)) continue;
    const [namespace, name] = ep.pod.split("/") as [string, string];
    const metadata = { name, namespace, labels: {} };
    out.push({ apiVersion: "v1", kind: "Pod", metadata, raw: { apiVersion: "v1", kind: "Pod", metadata, spec: { nodeName: node.name }, status: podStatus(ep) } });
  }
  return out;
}

/** Splits a compile's errors: budget overflows are per endpoint; any other error refuses the whole input. */
function compileOutcome(set: RuleSet, policy: CompiledPolicy): { overflow: PolicyBudgetError[]; warnings: PolicyError[] } {
  const overflow = policy.errors.filter((e): e is PolicyBudgetError => e instanceof PolicyBudgetError);
  const other = policy.errors.find((e) => !(e instanceof PolicyBudgetError));
  if (other) throw other;
  return { overflow, warnings: [...set.warnings, ...policy.warnings] };
}

export interface DesiredOptions extends BuildOptions {
  /** Per-endpoint policy entry budget (Cilium bpf-policy-map-max). */
  policyMapMax?: number;
  /** What the node's DNS proxy learned (FqdnCache.state): toFQDNs selects these addresses. */
  fqdn?: FqdnState;
  /**
   * The previous desired state: an endpoint over budget keeps its entries from there; and when it carries
   * its memo (a DesiredState computed here), work that the change does not touch is reused.
   */
  previous?: { maps: Pick<Record<ManagedMap, MapContents>, "Policy">; memo?: DesiredMemo };
  /** The node's overlay (routing mode tunnel): written into the Config map by node/desired.ts, as the
   * simulator writes it. Absent: no overlay. */
  tunnel?: NodeDesiredOptions["tunnel"];
  /** BPF masquerading (--enable-bpf-masquerade, --ipv4-native-routing-cidr), written into the Config map
   * by node/desired.ts. Absent: none. */
  masquerade?: NodeDesiredOptions["masquerade"];
}

/**
 * What one computeDesired keeps for the next: the cluster built from everything but the policies (with
 * the text it was built from), the policy compiler with its selector cache and per-identity policies, the
 * stable cookies, and each local endpoint's encoded Policy entries. A policy change then costs the
 * compiler's incremental work plus the encoding of the endpoints whose policy changed (Cilium likewise
 * regenerates only the endpoints a policy change selects, pkg/endpoint/policy.go).
 */
export interface DesiredMemo {
  numbering: Numbering;
  /** The manifests other than policies, the node, the endpoints and the build options. */
  inputs: NonPolicyInputs;
  cluster: SimCluster;
  lb: LbModel;
  compiler: PolicyCompiler;
  /** The compiler's generation when this state was computed: if it compiled since (a compute that then
   * threw), its changed endpoints are not relative to this state and every endpoint is encoded again. */
  generation: number;
  cookies: StableNumbers;
  policy: CompiledPolicy;
  /** Encoded Policy entries (hex key → entry) per local endpoint (ns/name). */
  policyOf: Map<string, [string, Entry][]>;
  /** Each policy's translation by its text (only translations without problems or warnings, which name lines). */
  translated: Map<string, RuleSet>;
  /** The identity numbers this state was written with (every compiled identity's number, or "-" pending). */
  identitySig: string;
}

/**
 * buildRules over the policies, reusing the translation of a policy whose text is the same as at the
 * previous compute (the rules carry no source positions; a policy with problems or warnings, whose messages
 * do, is translated again). The result is buildRules' over all the policies: its parts concatenated in
 * object order.
 */
function translatePolicies(policies: ManifestObject[], config: SimCluster["config"], previous: Map<string, RuleSet> | undefined): { set: RuleSet; translated: Map<string, RuleSet> } {
  const { clusterName } = config;
  const options = { nodeSelectorLabels: config.nodeSelectorLabels, extendedIPProtocols: config.enableExtendedIPProtocols, hostFirewall: config.enableHostFirewall };
  const set: RuleSet = { rules: [], problems: [], warnings: [], applied: [], refused: [] };
  const translated = new Map<string, RuleSet>();
  for (const o of policies) {
    const text = JSON.stringify([clusterName, options, o.kind, o.apiVersion, o.metadata, o.raw]);
    let one = previous?.get(text) ?? translated.get(text);
    if (!one) {
      one = buildRules([o], clusterName, options);
      if (!one.problems.length && !one.warnings.length) translated.set(text, one);
    } else translated.set(text, one);
    set.rules.push(...one.rules);
    set.problems.push(...one.problems);
    set.warnings.push(...one.warnings);
    set.applied.push(...one.applied);
    set.refused.push(...one.refused);
  }
  return { set, translated };
}

/** Structural equality of two JSON-like values (manifest objects), without building text. */
function jsonEqual(a: unknown, b: unknown): boolean {
  if (a === b) return true;
  if (typeof a !== "object" || typeof b !== "object" || a === null || b === null) return false;
  if (Array.isArray(a)) {
    if (!Array.isArray(b) || a.length !== b.length) return false;
    for (let i = 0; i < a.length; i++) if (!jsonEqual(a[i], b[i])) return false;
    return true;
  }
  if (Array.isArray(b)) return false;
  const ka = Object.keys(a);
  if (ka.length !== Object.keys(b).length) return false;
  for (const k of ka) if (!jsonEqual((a as Record<string, unknown>)[k], (b as Record<string, unknown>)[k])) return false;
  return true;
}

/** The inputs other than policies: the cluster is rebuilt only when they differ from the memo's. */
interface NonPolicyInputs {
  head: string;
  objects: ManifestObject[];
}

function nonPolicyInputs(objects: ManifestObject[], node: NodeInfo, endpoints: LocalEndpoint[], numbering: Numbering, opts: DesiredOptions): NonPolicyInputs {
  const head = JSON.stringify([node, endpoints, opts.clusterName, opts.policyEnforcement, opts.pinned, opts.policyMapMax, numbering.eventsAll, numbering.traceSample, opts.tunnel, opts.masquerade]);
  return { head, objects: objects.filter((o) => !POLICY_KIND_SET.has(o.kind)) };
}

function sameInputs(a: NonPolicyInputs, b: NonPolicyInputs): boolean {
  if (a.head !== b.head || a.objects.length !== b.objects.length) return false;
  for (let i = 0; i < a.objects.length; i++) {
    const x = a.objects[i]!;
    const y = b.objects[i]!;
    if (x !== y && !(x.kind === y.kind && x.apiVersion === y.apiVersion && jsonEqual(x.metadata, y.metadata) && jsonEqual(x.raw, y.raw))) return false;
  }
  return true;
}

const POLICY_KIND_SET = new Set<string>(POLICY_KINDS);

/** Sorted provenance text of a cookie: what a stable cookie is allocated for. */
function cookieKey(policy: CompiledPolicy, c: number): string {
  return JSON.stringify(policy.provenance.get(c) ?? []);
}

function encodePolicyList(list: DesiredMaps["Policy"]): [string, Entry][] {
  const spec = MAP_SPECS.Policy as MapSpec;
  return list.map((e) => {
    const key = spec.key.encode(e.key);
    return [hex(key), { key, value: spec.value.encode(e.value) }];
  });
}

function encodePolicy(epId: number, compiled: EndpointPolicy, numbering: Pick<NodeNumbering, "identity" | "cookie">): [string, Entry][] {
  return encodePolicyList(endpointPolicyEntries(epId, compiled, numbering));
}

/** The host endpoint's entries (node/desired.ts hostPolicyEntries), encoded. */
function encodeHostPolicy(cluster: SimCluster, policy: CompiledPolicy, nodeName: string, numbering: Pick<NodeNumbering, "identity" | "cookie">): [string, Entry][] {
  return encodePolicyList(hostPolicyEntries(cluster, policy, nodeName, numbering));
}

/**
 * Computes the desired map contents for this node. Throws what buildCluster / policy compilation throw
 * (SimError, ManifestError) on bad input; the caller keeps the running state then. With `opts.previous`
 * from this function and only policies changed (the other manifests, the node, the endpoints and the
 * options the same), the cluster is not rebuilt, the policy is compiled incrementally, the maps other than
 * Policy are the previous state's (the same objects), and only the changed endpoints' entries are encoded.
 */
export function computeDesired(objects: ManifestObject[], node: NodeInfo, endpoints: LocalEndpoint[], numbering: Numbering, opts: DesiredOptions = {}): DesiredState {
  const inputs = nonPolicyInputs(objects, node, endpoints, numbering, opts);
  const memo = opts.previous?.memo;
  const reuse = memo && memo.numbering === numbering && sameInputs(memo.inputs, inputs) ? memo : undefined;
  const cluster = reuse ? { ...reuse.cluster, policies: objects.filter((o) => POLICY_KIND_SET.has(o.kind)) } : buildCluster(nodeObjects(objects, node, endpoints), opts);
  const compiler = reuse?.compiler ?? new PolicyCompiler(opts.policyMapMax ? { policyMapMax: opts.policyMapMax } : {});
  const { set, translated } = translatePolicies(cluster.policies, cluster.config, opts.previous?.memo?.translated);
  if (set.problems.length) throw set.problems[0];
  const trusted = reuse !== undefined && compiler.generation === reuse.generation;
  const { policy, changedEndpoints } = compiler.compile(cluster.model, set.rules, opts.fqdn);
  const { overflow, warnings } = compileOutcome(set, policy);
  const stable = numbering.identities.mapping(policy, new Set(endpoints.map((e) => e.pod)));
  // A cluster-wide allocator may give a pending identity its number between two computes without any
  // manifest changing: then the ipcache and every cached encoding are stale, and nothing is reused.
  const identitySig = policy.identities.all.map((i) => stable(i.id) ?? "-").join(",");
  // Cookies: stable by provenance, allocated in the compiled numbering's order so that a fresh agent numbers
  // them as the simulator does; those no longer in use are released.
  const cookies = opts.previous?.memo?.numbering === numbering ? opts.previous.memo.cookies : new StableNumbers(1, 0xffffffff);
  const cookieOf = new Map<number, number>();
  for (const c of policy.provenance.keys()) cookieOf.set(c, cookies.get(cookieKey(policy, c)));
  cookies.retain(new Set([...policy.provenance.keys()].map((c) => cookieKey(policy, c))));
  const cookie = (c: number) => cookieOf.get(c) ?? c;
  const byPod = new Map(endpoints.map((e) => [e.pod, e]));
  const local = new Map(endpoints.map((e) => [e.pod, e.epId]));
  let maps: Record<ManagedMap, MapContents>;
  let lb: LbModel;
  const policyOf = new Map<string, [string, Entry][]>();
  if (reuse && policy.identities === reuse.policy.identities && identitySig === reuse.identitySig) {
    // Only policies changed and the identities are the same: every map but Policy is as before.
    lb = reuse.lb;
    maps = { ...(opts.previous as { maps: Record<ManagedMap, MapContents> }).maps };
    const contents: MapContents = new Map();
    for (const p of localPods(cluster, node.name)) {
      const ep = byPod.get(p.key);
      const compiled = policy.endpoints.get(p.key);
      if (!ep || !compiled) continue;
      const have = reuse.policyOf.get(p.key);
      const entries = have && trusted && !changedEndpoints.has(p.key) ? have : encodePolicy(ep.epId, compiled, { identity: stable, cookie });
      policyOf.set(p.key, entries);
      for (const [k, e] of entries) contents.set(k, e);
    }
    for (const [k, e] of encodeHostPolicy(cluster, policy, node.name, { identity: stable, cookie })) contents.set(k, e);
    maps.Policy = contents;
  } else {
    lb = buildLbModel(cluster);
    // Rule 2 for services: backend ids by address, reverse-NAT indexes by frontend; allocated in model order
    // so a fresh agent numbers them as the simulator does, then anything no longer used is released.
    for (const b of lb.backendById.values()) numbering.backends.get(backendKey(b));
    for (const f of lb.frontends) numbering.revNat.get(frontendKey(f));
    numbering.backends.retain(new Set([...lb.backendById.values()].map(backendKey)));
    numbering.revNat.retain(new Set(lb.frontends.map(frontendKey)));
    const nodeNumbering: NodeNumbering = {
      endpoint: (p) => byPod.get(p.key),
      identity: stable,
      backend: (b) => numbering.backends.get(backendKey(b)),
      revNat: (f) => numbering.revNat.get(frontendKey(f)),
      cookie,
    };
    const entries = desiredMaps(cluster, policy, lb, node.name, nodeNumbering, wasmMaglevBuilder, { events: true, eventsAll: numbering.eventsAll, traceSampleRate: numbering.traceSample, tunnel: opts.tunnel, masquerade: opts.masquerade });
    maps = {} as Record<ManagedMap, MapContents>;
    for (const name of MANAGED_MAPS) {
      const spec = MAP_SPECS[name] as MapSpec;
      const contents: MapContents = new Map();
      if (name === "Policy") {
        for (const p of localPods(cluster, node.name)) {
          const ep = byPod.get(p.key);
          const compiled = policy.endpoints.get(p.key);
          if (!ep || !compiled) continue;
          const list = encodePolicy(ep.epId, compiled, nodeNumbering);
          policyOf.set(p.key, list);
          for (const [k, e] of list) contents.set(k, e);
        }
        for (const [k, e] of encodeHostPolicy(cluster, policy, node.name, nodeNumbering)) contents.set(k, e);
      } else
        for (const e of entries[name]) {
          const key = spec.key.encode(e.key);
          contents.set(hex(key), { key, value: spec.value.encode(e.value) });
        }
      maps[name] = contents;
    }
  }
  // Over-budget local endpoints: their entries from the previous state, or none (nothing allowed yet).
  const over = overflow.filter((e) => local.has(e.endpoint));
  for (const e of over) {
    const epId = local.get(e.endpoint)!;
    const ofEp = (c: MapContents) => [...c].filter(([, v]) => MAP_SPECS.Policy.key.decode(v.key).epId === epId);
    for (const [k] of ofEp(maps.Policy)) maps.Policy.delete(k);
    if (opts.previous) for (const [k, v] of ofEp(opts.previous.maps.Policy)) maps.Policy.set(k, v);
    policyOf.delete(e.endpoint); // never reused: recomputed (and checked against the budget) next time
  }
  const podIdentity = new Map<string, number>();
  for (const p of cluster.pods) podIdentity.set(p.key, stable(policy.identities.podIdentity.get(p.key) ?? C.ID_WORLD) ?? C.ID_INIT);
  const proxies = new Map<number, ProxyListener>();
  for (const [port, l] of policy.proxies) {
    if (!local.has(l.endpoint)) continue;
    // A pending peer identity matches no connection (its pods are init in the ipcache): left out.
    proxies.set(port, { ...l, rules: l.rules.map((r) => ({ ...r, identities: r.identities.flatMap((id) => (id === 0 ? [0] : (stable(id) ?? []))) })) });
  }
  const nextMemo: DesiredMemo = { numbering, inputs, cluster, lb, compiler, generation: compiler.generation, cookies, policy, policyOf, translated, identitySig };
  const provenanceByCookie = new Map<number, Provenance[]>();
  for (const [c, stableCookie] of cookieOf) provenanceByCookie.set(stableCookie, policy.provenance.get(c) ?? []);
  return { cluster, policy, podIdentity, maps, overflow: over, warnings, proxies, provenanceByCookie, memo: nextMemo };
}
