/*
 * Compiling the cluster's policies with policy/: each CiliumNetworkPolicy, CiliumClusterwideNetworkPolicy
 * and NetworkPolicy is validated and translated to policy/'s internal rules (buildRules), then compiled
 * against the cluster model into per-endpoint policy-map entries with provenance. With a Diagnostics (the
 * CLI's), a refused policy is reported there with every problem and the valid ones still apply; warnings
 * (accepted but not enforced) go there too. Without one, the first problem is thrown (a ManifestError
 * naming file, document, line and field).
 *
 * `IncrementalClusterPolicy` does the same for a caller that compiles many versions of one cluster (whatif's
 * session): it keeps one PolicyCompiler (selector cache, per-identity policies) and each policy's
 * translation, so a version that differs in a few policies translates only those and recomputes only the
 * identities they touch. Its result is exactly compileClusterPolicy's for the same input.
 */
import { buildRules, compilePolicy, PolicyCompiler, type CompiledPolicy, type Diagnostics, type FqdnState, type ManifestObject, type RuleSet } from "../policy/index.ts";
import type { SimCluster } from "../node/cluster.ts";

/** Reports a rule set's outcome to `diag`, or throws its first problem without one. */
function settleRules(set: RuleSet, diag: Diagnostics | undefined): void {
  if (diag) {
    for (const w of set.warnings) diag.warning(w);
    for (const e of set.problems) diag.error(e);
    for (const r of set.refused) diag.refuse(r);
  } else if (set.problems.length) throw set.problems[0];
}

/** Reports the compile's warnings to `diag` and throws its first error. */
function settleCompiled(compiled: CompiledPolicy, diag: Diagnostics | undefined): CompiledPolicy {
  if (diag) for (const w of compiled.warnings) diag.warning(w);
  if (compiled.errors.length) throw compiled.errors[0];
  return compiled;
}

function ruleOptions(c: SimCluster, diag: Diagnostics | undefined) {
  return { strict: diag?.strict ?? false, nodeSelectorLabels: c.config.nodeSelectorLabels, extendedIPProtocols: c.config.enableExtendedIPProtocols, hostFirewall: c.config.enableHostFirewall };
}

/** `fqdn`: the FQDN cache's state that toFQDNs selectors select from (nothing learned when absent). */
export function compileClusterPolicy(c: SimCluster, diag?: Diagnostics, fqdn?: FqdnState): CompiledPolicy {
  const set = buildRules(c.policies, c.config.clusterName, ruleOptions(c, diag));
  settleRules(set, diag);
  return settleCompiled(compilePolicy(c.model, set.rules, fqdn ? { fqdn } : {}), diag);
}

/**
 * compileClusterPolicy for successive versions of one cluster. Keep the cluster model object the same
 * between versions whose non-policy objects are the same: the compiler keeps its identity table while it
 * is (policy/compile.ts). Not safe to share between concurrent callers.
 */
export class IncrementalClusterPolicy {
  private readonly compiler = new PolicyCompiler();
  /** Each policy's translation by its text; only translations without problems or warnings are kept,
   * since those messages name the file and line the object came from. */
  private translated = new Map<string, RuleSet>();

  compile(c: SimCluster, diag?: Diagnostics): CompiledPolicy {
    const opts = ruleOptions(c, diag);
    const set: RuleSet = { rules: [], problems: [], warnings: [], applied: [], refused: [] };
    const next = new Map<string, RuleSet>();
    for (const o of c.policies) {
      const text = policyText(o, c.config.clusterName, opts);
      let one = next.get(text) ?? this.translated.get(text);
      if (!one) one = buildRules([o], c.config.clusterName, opts);
      if (!one.problems.length && !one.warnings.length) next.set(text, one);
      set.rules.push(...one.rules);
      set.problems.push(...one.problems);
      set.warnings.push(...one.warnings);
      set.applied.push(...one.applied);
      set.refused.push(...one.refused);
    }
    // Translations of policies left out are kept too (the next version may bring them back: whatif's
    // edits are each relative to one before state), until they outnumber the live ones.
    if (this.translated.size > 2 * next.size + 64) this.translated = next;
    else for (const [k, v] of next) this.translated.set(k, v);
    settleRules(set, diag);
    return settleCompiled(this.compiler.compile(c.model, set.rules).policy, diag);
  }
}

/** What a policy's translation depends on, as text. */
function policyText(o: ManifestObject, clusterName: string, opts: object): string {
  return JSON.stringify([clusterName, opts, o.kind, o.apiVersion, o.metadata, o.raw]);
}
