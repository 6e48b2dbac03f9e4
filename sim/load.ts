/*
 * The simulator's input in one step: manifest objects → cluster model (node/cluster.ts) → compiled policy
 * (policy/ through sim/policy.ts); a scenario with several clusters → one model per cluster (sim/mesh.ts).
 * Throws SimError / ManifestError on bad input.
 */
import { buildCluster, CLUSTER_ANNOTATION, clusterAnnotationOf, type BuildOptions, type SimCluster } from "../node/cluster.ts";
import { SimError } from "../node/errors.ts";
import type { CompiledPolicy, Diagnostics, ManifestObject } from "../policy/index.ts";
import { loadMesh, meshClustersOf, type Mesh } from "./mesh.ts";
import { compileClusterPolicy } from "./policy.ts";

export interface Loaded {
  objects: ManifestObject[];
  /** With a multi-cluster scenario: the first cluster's model, carrying the scenario's Traffic and Expectations. */
  cluster: SimCluster;
  policy: CompiledPolicy;
  /** A multi-cluster scenario (sim/mesh.ts): every cluster's model. */
  mesh?: Mesh;
}

/** With a Diagnostics (the CLI's), refused policies and warnings are reported there and the rest applies. */
export function loadFrom(objects: ManifestObject[], opts: BuildOptions, diag?: Diagnostics): Loaded {
  const clusters = meshClustersOf(objects, opts);
  if (clusters) {
    const mesh = loadMesh(objects, clusters, opts, diag);
    const first = mesh.clusters[0]!;
    return { objects, cluster: { ...first.cluster, traffic: mesh.traffic, expectations: mesh.expectations }, policy: first.policy, mesh };
  }
  // One cluster: an object of another cluster names a cluster the scenario does not declare (K2).
  const config = objects.find((o) => o.kind === "Config");
  const own = opts.clusterName ?? (config?.raw?.spec?.clusterName as string | undefined) ?? "default";
  const other = objects.find((o) => (clusterAnnotationOf(o) ?? own) !== own);
  if (other)
    throw new SimError(
      "UNKNOWN_CLUSTER",
      `${other.source ? `${other.source.file}: document ${other.source.doc}: ` : ""}${other.kind} ${other.metadata.name} metadata.annotations.${CLUSTER_ANNOTATION}: ${clusterAnnotationOf(other)} is not a cluster of the scenario (${own}); declare each cluster with a Config {clusterName, clusterId} (docs/scenarios.md)`,
    );
  const cluster = buildCluster(objects, opts);
  const policy = compileClusterPolicy(cluster, diag);
  return { objects, cluster, policy };
}
