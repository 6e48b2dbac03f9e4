/*
 * Cluster Mesh in the simulator: a scenario with several clusters, each declared by a Config document
 * with its `clusterName` and `clusterId` (1-255), its objects marked `ciliate.dev/cluster: NAME` (an
 * object without the mark belongs to the first cluster declared). Traffic and Expectations are the
 * scenario's, and name pods as `cluster/namespace/name` (`namespace/name` is the first cluster's).
 *
 * Each cluster is built as its agents see it, with the model the agent uses (node/cluster.ts): first on
 * its own (its nodes, pod and service addresses from its Config), then with every other cluster's pods,
 * nodes, namespaces and services as that cluster publishes them (CLUSTER_ANNOTATION: peers keyed
 * `cluster/namespace/name` with io.cilium.k8s.policy.cluster, global services merged with the affinity
 * annotations and failover, node/cluster.ts G1–G2 — the code the agent's Cluster Mesh runs). Identities
 * are numbered as each cluster's allocator would (ClusterModel.clusterIds: cluster id in bits 16–23,
 * host/identity-scopes.ts pickFreeId), so every cluster's view gives a label set the same number.
 *
 * The simulation is one Simulation per cluster with engines for its own nodes only; another cluster's
 * node in its model is linked to that cluster's engine (sim/state.ts linkNode), so a packet crossing
 * clusters meets the sender's cluster's maps on the way out and the receiver's on the way in, as on real
 * nodes. A flow is played by the simulation of its source's cluster (a source outside: the destination's).
 *
 * Rules, each refused with one line naming the file and field:
 *   K1 every Config of a multi-cluster scenario names its cluster (clusterName) and gives its id
 *      (clusterId, an integer 1-255); two clusters never share an id;
 *   K2 an object's ciliate.dev/cluster names a declared cluster; so does the cluster part of a reference;
 *   K3 the clusters' pod CIDRs do not overlap (their pods are routed to each other);
 *   K4 a flow's service is a service of the source's cluster (a global service is reached through the
 *      source cluster's own frontend).
 */
import { buildCluster, CLUSTER_ANNOTATION, clusterAnnotationOf, type BuildOptions, type EndpointRefSpec, type ExpectationSpec, type FlowSpec, type SimCluster } from "../node/cluster.ts";
import { SimError } from "../node/errors.ts";
import { parseCidr, CILIATE_API, type CompiledPolicy, type Diagnostics, type ManifestObject } from "../policy/index.ts";
import { compileClusterPolicy } from "./policy.ts";
import { Simulation } from "./simulator.ts";
import type { FlowResult, SimulationOptions } from "./simulator.ts";
import type { SimPod } from "../node/cluster.ts";
import { reachProber, type Verdict } from "./analysis/reach.ts";
import type { Probe } from "./analysis/probes.ts";

export interface MeshClusterInput {
  name: string;
  id: number;
  /** The cluster's own objects (its Configs included), without the scenario's Traffic and Expectations. */
  objects: ManifestObject[];
}

export interface MeshCluster extends MeshClusterInput {
  /** The cluster as its agents see it: its own state and the other clusters' published state. */
  cluster: SimCluster;
  policy: CompiledPolicy;
}

export interface Mesh {
  clusters: MeshCluster[];
  /** Traffic and Expectations of the whole scenario (references name pods cluster/namespace/name). */
  traffic: FlowSpec[];
  expectations: ExpectationSpec[];
}

function at(o: ManifestObject, field: string): string {
  return `${o.source ? `${o.source.file}: document ${o.source.doc}: ` : ""}${o.kind} ${o.metadata.name ?? ""} ${field}`;
}

const isConfig = (o: ManifestObject) => o.kind === "Config" && o.apiVersion === CILIATE_API;
const scenarioWide = (o: ManifestObject) => o.kind === "Traffic" || o.kind === "Expectation";

/**
 * The clusters of a scenario (K1, K2), or undefined when it is not a multi-cluster one (fewer than two
 * Config documents with a clusterId: the single-cluster model applies, unchanged).
 */
export function meshClustersOf(objects: ManifestObject[], opts: BuildOptions = {}): MeshClusterInput[] | undefined {
  const configs = objects.filter(isConfig);
  const spec = (o: ManifestObject) => (o.raw.spec ?? o.raw) as Record<string, unknown>;
  const declared = configs.filter((o) => spec(o).clusterId !== undefined);
  const names = new Set(declared.map((o) => String(spec(o).clusterName)));
  if (names.size < 2) return undefined;
  if (opts.clusterName !== undefined) throw new SimError("BAD_OPTION", `--cluster-name ${opts.clusterName}: the scenario declares several clusters (${[...names].join(", ")}); each takes its name from its Config`);
  const clusters: MeshClusterInput[] = [];
  const byId = new Map<number, { name: string; o: ManifestObject }>();
  for (const o of configs) {
    const s = spec(o);
    if (s.clusterName === undefined) throw new SimError("INVALID_MANIFEST", `${at(o, "spec.clusterName")}: a multi-cluster scenario needs the cluster's name in every Config (clusters: ${[...names].join(", ")})`);
    const name = String(s.clusterName);
    const id = s.clusterId;
    if (id === undefined) throw new SimError("INVALID_MANIFEST", `${at(o, "spec.clusterId")}: cluster ${name} needs its clusterId (1-255) in a multi-cluster scenario`);
    if (typeof id !== "number" || !Number.isInteger(id) || id < 1 || id > 255) throw new SimError("INVALID_MANIFEST", `${at(o, "spec.clusterId")}: invalid clusterId ${JSON.stringify(id)} (an integer 1-255, Cilium's cluster-id)`);
    const existing = clusters.find((c) => c.name === name);
    if (existing && existing.id !== id) throw new SimError("INVALID_MANIFEST", `${at(o, "spec.clusterId")}: cluster ${name} is declared with clusterId ${existing.id} and ${id}`);
    const other = byId.get(id);
    if (other && other.name !== name) throw new SimError("INVALID_MANIFEST", `${at(o, "spec.clusterId")}: clusterId ${id} of cluster ${name} is already cluster ${other.name}'s (${at(other.o, "spec.clusterId")}); each cluster of a mesh needs its own id`);
    byId.set(id, { name, o });
    if (!existing) clusters.push({ name, id, objects: [] });
  }
  const first = clusters[0]!;
  for (const o of objects) {
    if (scenarioWide(o)) continue;
    const mark = clusterAnnotationOf(o);
    const c = isConfig(o) ? clusters.find((x) => x.name === String(spec(o).clusterName))! : mark === undefined ? first : clusters.find((x) => x.name === mark);
    if (!c) throw new SimError("INVALID_MANIFEST", `${at(o, `metadata.annotations.${CLUSTER_ANNOTATION}`)}: unknown cluster ${JSON.stringify(mark)} (the scenario's clusters: ${clusters.map((x) => x.name).join(", ")}; declare one with a Config {clusterName, clusterId})`);
    c.objects.push(o);
  }
  return clusters;
}

/** Another cluster's state as it publishes it (its pods with their addresses and nodes, its nodes, namespaces, services). */
function published(c: SimCluster, objects: ManifestObject[], name: string): ManifestObject[] {
  const annotations = { [CLUSTER_ANNOTATION]: name };
  const out: ManifestObject[] = [];
  for (const n of c.nodes) out.push({ apiVersion: "v1", kind: "Node", metadata: { name: n.name, labels: n.labels, annotations }, raw: { spec: { podCIDR: n.podCIDR }, status: { addresses: [{ type: "InternalIP", address: n.ip }] } } } as unknown as ManifestObject);
  for (const p of c.pods) {
    if (p.hostNetwork) continue;
    const ports = p.containerPorts.map((cp) => ({ ...(cp.name ? { name: cp.name } : {}), containerPort: cp.port, protocol: cp.protocol }));
    out.push({
      apiVersion: "v1",
      kind: "Pod",
      metadata: { name: p.name, namespace: p.namespace, labels: p.labels, annotations },
      raw: { spec: { nodeName: p.node, containers: [{ name: "c", ports }] }, status: { podIP: p.ip, conditions: [{ type: "Ready", status: p.ready ? "True" : "False" }] } },
    } as unknown as ManifestObject);
  }
  for (const o of objects) {
    if (o.kind !== "Namespace" && o.kind !== "Service") continue;
    out.push({ ...o, metadata: { ...o.metadata, annotations: { ...((o.metadata.annotations as Record<string, string>) ?? {}), ...annotations } } });
  }
  return out;
}

function overlaps(a: string, b: string): boolean {
  const x = parseCidr(a)!;
  const y = parseCidr(b)!;
  const bits = Math.min(x.bits, y.bits);
  const mask = (v: bigint) => v >> BigInt((x.family === 4 ? 32 : 128) - bits);
  return x.family === y.family && mask(x.addr) === mask(y.addr);
}

/** Builds every cluster of a multi-cluster scenario as its agents see it (module comment). */
export function loadMesh(objects: ManifestObject[], inputs: MeshClusterInput[], opts: BuildOptions, diag?: Diagnostics): Mesh {
  const clusterIds = Object.fromEntries(inputs.map((c) => [c.name, c.id]));
  const build = { ...opts, clusterName: undefined, clusterIds };
  const alone = inputs.map((c) => buildCluster(c.objects, build));
  // K3: pods are routed between clusters by their nodes' pod CIDRs.
  alone.forEach((a, i) =>
    alone.slice(0, i).forEach((b, j) => {
      for (const n of a.nodes)
        for (const m of b.nodes)
          if (overlaps(n.podCIDR, m.podCIDR)) throw new SimError("INVALID_MANIFEST", `cluster ${inputs[i]!.name}'s node ${n.name} (pod CIDR ${n.podCIDR}) overlaps cluster ${inputs[j]!.name}'s node ${m.name} (${m.podCIDR}): give each cluster its own podCIDR in its Config`);
    }),
  );
  const clusters = inputs.map((c, i): MeshCluster => {
    const others = inputs.flatMap((d, j) => (j === i ? [] : published(alone[j]!, d.objects, d.name)));
    const cluster = buildCluster([...c.objects, ...others], build);
    return { ...c, cluster, policy: compileClusterPolicy(cluster, diag) };
  });
  const wide = buildCluster(objects.filter(scenarioWide), build);
  return { clusters, traffic: wide.traffic, expectations: wide.expectations };
}

/** The simulation of a multi-cluster scenario: one Simulation per cluster, their nodes linked (module comment). */
export class MeshSimulation {
  private constructor(
    readonly mesh: Mesh,
    readonly sims: Map<string, Simulation>,
  ) {}

  static async create(mesh: Mesh, opts: SimulationOptions = {}): Promise<MeshSimulation> {
    const sims = new Map<string, Simulation>();
    for (const c of mesh.clusters) sims.set(c.name, await Simulation.create(c.cluster, c.policy, { ...opts, meshCluster: c.name }));
    for (const [name, sim] of sims)
      for (const n of sim.cluster.nodes) {
        if (sim.ownsNode(n)) continue;
        const [cluster, node] = [n.name.slice(0, n.name.indexOf("/")), n.name.slice(n.name.indexOf("/") + 1)];
        const owner = sims.get(cluster)!;
        if (cluster === name) continue;
        sim.linkNode(n.name, owner.nodes.get(node)!, cluster, () => owner.policy);
      }
    return new MeshSimulation(mesh, sims);
  }

  private get first(): string {
    return this.mesh.clusters[0]!.name;
  }

  /** The cluster a reference names (K2) and the reference as that cluster's model spells it. */
  private clusterOfRef(ref: EndpointRefSpec, what: string): string | undefined {
    const key = "pod" in ref ? ref.pod : "service" in ref ? ref.service : undefined;
    if (key === undefined) return undefined;
    const parts = key.split("/");
    if (parts.length < 3) return this.first;
    if (!this.sims.has(parts[0]!)) throw new SimError("BAD_REFERENCE", `${what}: unknown cluster ${JSON.stringify(parts[0])} in ${JSON.stringify(key)} (the scenario's clusters: ${[...this.sims.keys()].join(", ")})`);
    return parts[0];
  }

  /** The reference as cluster `here`'s model names it: its own pods ns/name, the others' cluster/ns/name. */
  private localRef(ref: EndpointRefSpec, owner: string | undefined, here: string, what: string): EndpointRefSpec {
    if ("pod" in ref) {
      const parts = ref.pod.split("/");
      const bare = parts.slice(-2).join("/");
      return { pod: owner === here ? bare : `${owner}/${bare}` };
    }
    if ("service" in ref) {
      if (owner !== here) throw new SimError("BAD_REFERENCE", `${what}: service ${ref.service} is cluster ${owner}'s; a pod of cluster ${here} reaches its own cluster's services (a global service through its own frontend)`);
      return { service: ref.service.split("/").slice(-2).join("/") };
    }
    return ref;
  }

  /** The simulation that plays a flow (its source's cluster) and the flow as that cluster's model names it. */
  forFlow(spec: FlowSpec): { sim: Simulation; spec: FlowSpec } {
    const fromWhere = spec.whereEnds?.from ?? spec.where;
    const toWhere = spec.whereEnds?.to ?? spec.where;
    const src = this.clusterOfRef(spec.from, fromWhere);
    const dst = this.clusterOfRef(spec.to, toWhere);
    const here = src ?? dst ?? this.first;
    return { sim: this.sims.get(here)!, spec: { ...spec, from: this.localRef(spec.from, src, here, fromWhere), to: this.localRef(spec.to, dst, here, toWhere) } };
  }

  resolveFlow(spec: FlowSpec): void {
    const f = this.forFlow(spec);
    f.sim.resolveFlow(f.spec);
  }

  /** Plays a flow in its source's cluster; the clock and source ports run on across clusters. */
  runFlow(spec: FlowSpec): FlowResult {
    const f = this.forFlow(spec);
    f.sim.cursor = this.cursor ?? f.sim.cursor;
    const r = f.sim.runFlow(f.spec);
    this.cursor = f.sim.cursor;
    return r;
  }

  private cursor: { port: number; clockMs: number } | undefined;

  /**
   * All-pairs reachability across the mesh: the pods every cluster knows (host-networked pods are not
   * published to other clusters), named cluster/namespace/name, each row computed by its source's
   * cluster (its egress there, the destination's ingress on the destination's own node and maps).
   */
  reach(): { pods: SimPod[]; name: (p: SimPod) => string; rows: (pr: Probe) => Generator<{ from: SimPod; verdicts: Verdict[] }> } {
    const first = this.sims.get(this.first)!;
    const inView = (sim: Simulation, c: string, name: string) => sim.podByKey(name.startsWith(`${c}/`) ? name.slice(c.length + 1) : name);
    const pods = first.cluster.pods
      .filter((p) => [...this.sims].every(([c, sim]) => inView(sim, c, first.podName(p))))
      .sort((a, b) => (first.podName(a) < first.podName(b) ? -1 : 1));
    const names = pods.map((p) => first.podName(p));
    const sims = this.sims;
    return {
      pods,
      name: (p) => first.podName(p),
      rows: function* (pr: Probe) {
        const probers = new Map<string, ReturnType<typeof reachProber>>();
        for (let i = 0; i < pods.length; i++) {
          const c = names[i]!.slice(0, names[i]!.indexOf("/"));
          let prober = probers.get(c);
          if (!prober) {
            const sim = sims.get(c)!;
            // Dedupe classes pods by their own policy entries, which a cluster has for its own pods only.
            probers.set(c, (prober = reachProber(sim, names.map((n) => inView(sim, c, n)!), pr, { dedupe: false })));
          }
          yield { from: pods[i]!, verdicts: prober.row(i) };
        }
      },
    };
  }

  close(): void {
    for (const s of this.sims.values()) s.close();
  }
}
