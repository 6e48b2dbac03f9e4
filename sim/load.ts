/*
 * The simulator's input in one step: manifest objects → cluster model (node/cluster.ts) → compiled policy
 * (policy/ through sim/policy.ts). Throws SimError / ManifestError on bad input.
 */
import { buildCluster, type BuildOptions, type SimCluster } from "../node/cluster.ts";
import type { CompiledPolicy, Diagnostics, ManifestObject } from "../policy/index.ts";
import { compileClusterPolicy } from "./policy.ts";

export interface Loaded {
  objects: ManifestObject[];
  cluster: SimCluster;
  policy: CompiledPolicy;
}

/** With a Diagnostics (the CLI's), refused policies and warnings are reported there and the rest applies. */
export function loadFrom(objects: ManifestObject[], opts: BuildOptions, diag?: Diagnostics): Loaded {
  const cluster = buildCluster(objects, opts);
  const policy = compileClusterPolicy(cluster, diag);
  return { objects, cluster, policy };
}
