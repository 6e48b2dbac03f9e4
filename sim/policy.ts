/*
 * Compiling the cluster's policies with policy/: each CiliumNetworkPolicy, CiliumClusterwideNetworkPolicy
 * and NetworkPolicy is validated and translated to policy/'s internal rules, then compiled against the
 * cluster model into per-endpoint policy-map entries with provenance. The first problem found is thrown
 * (a ManifestError naming file, document, line and field); the CLI turns it into exit 2.
 *
 * ADAPTER: policy/ had no single entry point (index.ts) at the time of writing; this calls its translators
 * and compilePolicy directly.
 */
import { compilePolicy, type CompiledPolicy } from "../policy/compile.ts";
import type { FqdnState } from "../policy/fqdn-cache.ts";
import { translateNetworkPolicy } from "../policy/k8s-netpol.ts";
import { translateCiliumPolicy } from "../policy/rules.ts";
import type { Ctx } from "../policy/validate.ts";
import type { InternalRule, PolicyKind } from "../policy/types.ts";
import type { SimCluster } from "./cluster.ts";

/** `fqdn`: the FQDN cache's state that toFQDNs selectors select from (nothing learned when absent). */
export function compileClusterPolicy(c: SimCluster, fqdn?: FqdnState): CompiledPolicy {
  const rules: InternalRule[] = [];
  for (const o of c.policies) {
    const ctx: Ctx = { src: o.source, problems: [] };
    if (o.kind === "NetworkPolicy") {
      const r = translateNetworkPolicy(o, c.config.clusterName, ctx);
      if (r) rules.push(r);
    } else rules.push(...translateCiliumPolicy(o.kind as PolicyKind, o, ctx));
    if (ctx.problems.length) throw ctx.problems[0];
  }
  const compiled = compilePolicy(c.model, rules, fqdn ? { fqdn } : {});
  if (compiled.errors.length) throw compiled.errors[0];
  return compiled;
}
