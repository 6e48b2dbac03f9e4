/*
 * The simulator's input in one step: manifest objects → cluster model (node/cluster.ts) → compiled policy
 * (policy/ through sim/policy.ts). Throws SimError / ManifestError on bad input.
 */
import { buildCluster, CLUSTER_ANNOTATION, clusterAnnotationOf, type BuildOptions, type SimCluster } from "../node/cluster.ts";
import { SimError } from "../node/errors.ts";
import type { CompiledPolicy, Diagnostics, ManifestObject } from "../policy/index.ts";
import { compileClusterPolicy } from "./policy.ts";

export interface Loaded {
  objects: ManifestObject[];
  cluster: SimCluster;
  policy: CompiledPolicy;
}

/** With a Diagnostics (the CLI's), refused policies and warnings are reported there and the rest applies. */
export function loadFrom(objects: ManifestObject[], opts: BuildOptions, diag?: Diagnostics): Loaded {
  // Other clusters' objects are what an agent learns through Cluster Mesh; the simulator does not model
  // several clusters yet (docs/clustermesh.md), and refuses them rather than answer for one cluster.
  const config = objects.find((o) => o.kind === "Config");
  const own = opts.clusterName ?? (config?.raw?.spec?.clusterName as string | undefined) ?? "default";
  const other = objects.find((o) => (clusterAnnotationOf(o) ?? own) !== own);
  if (other)
    throw new SimError(
      "UNSUPPORTED_CLUSTER",
      `${other.source ? `${other.source.file}: document ${other.source.doc}: ` : ""}${other.kind} ${other.metadata.name}: ${CLUSTER_ANNOTATION} ${clusterAnnotationOf(other)} is another cluster; the simulator models one cluster (${own}) — Cluster Mesh runs on the agent (docs/clustermesh.md)`,
    );
  const cluster = buildCluster(objects, opts);
  const policy = compileClusterPolicy(cluster, diag);
  return { objects, cluster, policy };
}
