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
  /**
   * Translations by policy name: the last few versions of each object translated under that name (whatif's
   * edits are each relative to one before state, so a policy alternates between its before and edited
   * versions), each found again by comparing contents, which builds no text. Only translations without
   * problems or warnings are kept, since those messages name the file and line the object came from.
   */
  private translated = new Map<string, { o: ManifestObject; set: RuleSet }[]>();
  /** The cluster name and translation options the kept translations were made with. */
  private optionsText = "";

  compile(c: SimCluster, diag?: Diagnostics): CompiledPolicy {
    const opts = ruleOptions(c, diag);
    const optionsText = JSON.stringify([c.config.clusterName, opts]);
    if (optionsText !== this.optionsText) {
      this.translated.clear();
      this.optionsText = optionsText;
    }
    const set: RuleSet = { rules: [], problems: [], warnings: [], applied: [], refused: [] };
    for (const o of c.policies) {
      let versions = this.translated.get(o.metadata.name);
      let one = versions?.find((v) => samePolicy(v.o, o))?.set;
      if (!one) {
        one = buildRules([o], c.config.clusterName, opts);
        if (!one.problems.length && !one.warnings.length) {
          if (!versions) this.translated.set(o.metadata.name, (versions = []));
          versions.unshift({ o, set: one });
          if (versions.length > KEPT_VERSIONS) versions.pop();
        }
      }
      set.rules.push(...one.rules);
      set.problems.push(...one.problems);
      set.warnings.push(...one.warnings);
      set.applied.push(...one.applied);
      set.refused.push(...one.refused);
    }
    // Names of policies left out keep their translations too (the next version may bring them back),
    // until they outnumber the live ones.
    if (this.translated.size > 2 * c.policies.length + 64) this.translated.clear();
    settleRules(set, diag);
    return settleCompiled(this.compiler.compile(c.model, set.rules).policy, diag);
  }
}

/** Versions of one policy whose translations are kept. */
const KEPT_VERSIONS = 4;

/** True when two policy objects translate alike (same kind, apiVersion, metadata and contents). */
function samePolicy(a: ManifestObject, b: ManifestObject): boolean {
  return a === b || (a.kind === b.kind && a.apiVersion === b.apiVersion && jsonEqual(a.metadata, b.metadata) && jsonEqual(a.raw, b.raw));
}

/** Structural equality of two JSON-like values (manifest contents), without building text. */
export function jsonEqual(a: unknown, b: unknown): boolean {
  if (a === b) return true;
  if (typeof a !== "object" || typeof b !== "object" || a === null || b === null) return false;
  if (Array.isArray(a) !== Array.isArray(b)) return false;
  // Keys walked with for-in rather than listed with Object.keys: whatif compares every object of each
  // edit (thousands of small records), and the key arrays were most of what it allocated.
  let na = 0;
  for (const k in a) {
    if (!Object.hasOwn(a, k)) continue;
    na++;
    if (!Object.hasOwn(b, k) || !jsonEqual((a as Record<string, unknown>)[k], (b as Record<string, unknown>)[k])) return false;
  }
  let nb = 0;
  for (const k in b) if (Object.hasOwn(b, k)) nb++;
  return na === nb;
}
