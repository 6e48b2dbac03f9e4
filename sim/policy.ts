/*
 * Compiling the cluster's policies with policy/: each CiliumNetworkPolicy, CiliumClusterwideNetworkPolicy
 * and NetworkPolicy is validated and translated to policy/'s internal rules (buildRules), then compiled
 * against the cluster model into per-endpoint policy-map entries with provenance. With a Diagnostics (the
 * CLI's), a refused policy is reported there with every problem and the valid ones still apply; warnings
 * (accepted but not enforced) go there too. Without one, the first problem is thrown (a ManifestError
 * naming file, document, line and field).
 */
import { buildRules, compilePolicy, type CompiledPolicy, type Diagnostics, type FqdnState } from "../policy/index.ts";
import type { SimCluster } from "../node/cluster.ts";

/** `fqdn`: the FQDN cache's state that toFQDNs selectors select from (nothing learned when absent). */
export function compileClusterPolicy(c: SimCluster, diag?: Diagnostics, fqdn?: FqdnState): CompiledPolicy {
  const set = buildRules(c.policies, c.config.clusterName, { strict: diag?.strict ?? false, nodeSelectorLabels: c.config.nodeSelectorLabels, extendedIPProtocols: c.config.enableExtendedIPProtocols });
  if (diag) {
    for (const w of set.warnings) diag.warning(w);
    for (const e of set.problems) diag.error(e);
    for (const r of set.refused) diag.refuse(r);
  } else if (set.problems.length) throw set.problems[0];
  const compiled = compilePolicy(c.model, set.rules, fqdn ? { fqdn } : {});
  if (diag) for (const w of compiled.warnings) diag.warning(w);
  if (compiled.errors.length) throw compiled.errors[0];
  return compiled;
}
