/*
 * Compiling the cluster's policies with policy/: each CiliumNetworkPolicy, CiliumClusterwideNetworkPolicy
 * and NetworkPolicy is validated and translated to policy/'s internal rules, then compiled against the
 * cluster model into per-endpoint policy-map entries with provenance. The first problem found is thrown
 * (a ManifestError naming file, document, line and field); the CLI turns it into exit 2.
 */
import { buildRules, compilePolicy, type CompiledPolicy, type FqdnState } from "../policy/index.ts";
import type { SimCluster } from "../node/cluster.ts";

/** `fqdn`: the FQDN cache's state that toFQDNs selectors select from (nothing learned when absent). */
export function compileClusterPolicy(c: SimCluster, fqdn?: FqdnState): CompiledPolicy {
  const rules = buildRules(c.policies, c.config.clusterName);
  if (rules.problems.length) throw rules.problems[0];
  const compiled = compilePolicy(c.model, rules.rules, fqdn ? { fqdn } : {});
  if (compiled.errors.length) throw compiled.errors[0];
  return compiled;
}
