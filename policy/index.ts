// Public API of the policy engine: manifests → validated rules → identities → per-endpoint policy-map
// entries with provenance; HTTP evaluation; explanations. The simulator and the CLI use only this module.

import type { ManifestError } from "./errors.ts";
import { translateNetworkPolicy } from "./k8s-netpol.ts";
import { objectLabel } from "./manifest-loader.ts";
import { translateCiliumPolicy } from "./rules.ts";
import type { InternalRule, ManifestObject, PolicyKind } from "./types.ts";
import type { Ctx } from "./validate.ts";

export * from "./types.ts";
export * from "./errors.ts";
export { loadManifests, parseManifests, clusterFromManifests, parseCiliateObjects, expandWorkload, objectLabel } from "./manifest-loader.ts";
export { Diagnostics } from "./diagnostics.ts";
export type { DiagnosticsSummary } from "./diagnostics.ts";
export { registerSchema, validateAgainstSchema, schemaApiVersions } from "./schema.ts";
export type { SchemaProblem } from "./schema.ts";
export type { LoadResult, TrafficSpec, TrafficFlow, ExpectationSpec, ConfigSpec, EndpointReference } from "./manifest-loader.ts";
export { compilePolicy, DEFAULT_POLICY_MAP_MAX, DEFAULT_PROXY_PORT_BASE } from "./compile.ts";
export type { CompiledPolicy, CompileOptions } from "./compile.ts";
export { policyLookup, encodeEntries, lpmPrefixLength } from "./lookup.ts";
export type { LookupResult } from "./lookup.ts";
export { evaluateHttp, httpRuleMatches } from "./l7-http.ts";
export type { HttpRequest, HttpVerdict, ProxyContext } from "./l7-http.ts";
export { explainFlow, describe } from "./explain.ts";
export type { Flow, Explanation, DirectionDecision, EndpointRef } from "./explain.ts";
export { portRangeToPrefixes, icmpType } from "./ports.ts";
export { identityOfIp, LOCAL_IDENTITY_SCOPE, MIN_CLUSTER_IDENTITY } from "./identity.ts";

export const POLICY_KINDS: PolicyKind[] = ["NetworkPolicy", "CiliumNetworkPolicy", "CiliumClusterwideNetworkPolicy"];

export interface RuleSet {
  rules: InternalRule[];
  /** Every problem of every refused policy. */
  problems: ManifestError[];
  /** Accepted but not (fully) enforced parts (host-firewall rules, Kafka/DNS rules). */
  warnings: ManifestError[];
  /** "Kind ns/name" of the policies applied and refused. */
  applied: string[];
  refused: string[];
}

/**
 * Validates and translates every policy object. A policy with any problem is refused as a whole (not
 * applied); the valid ones still are; `problems` lists every problem found. With `strict`, a policy with
 * a warning (a part that would not be enforced) is refused too, its warnings reported as problems.
 */
export function buildRules(objects: ManifestObject[], clusterName = "default", opts: { strict?: boolean } = {}): RuleSet {
  const out: RuleSet = { rules: [], problems: [], warnings: [], applied: [], refused: [] };
  for (const o of objects) {
    if (!POLICY_KINDS.includes(o.kind as PolicyKind)) continue;
    const id = objectLabel(o.kind, o.metadata);
    const ctx: Ctx = { src: o.source, problems: [], warnings: [], object: id };
    const kind = o.kind as PolicyKind;
    const rules = kind === "NetworkPolicy" ? [translateNetworkPolicy(o, clusterName, ctx)].filter((r): r is InternalRule => !!r) : translateCiliumPolicy(kind, o, ctx);
    if (opts.strict) ctx.problems.push(...(ctx.warnings ?? []));
    else out.warnings.push(...(ctx.warnings ?? []));
    if (ctx.problems.length) {
      out.problems.push(...ctx.problems);
      out.refused.push(id);
    } else {
      out.rules.push(...rules);
      out.applied.push(id);
    }
  }
  return out;
}
