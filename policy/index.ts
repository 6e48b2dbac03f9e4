// Public API of the policy engine: manifests → validated rules → identities → per-endpoint policy-map
// entries with provenance; L7 evaluation (HTTP, Kafka, TLS SNI) for the simulator and the node's proxies;
// explanations. The simulator and the CLI use only this module.

import type { ManifestError } from "./errors.ts";
import { translateNetworkPolicy } from "./k8s-netpol.ts";
import { objectLabel } from "./manifest-loader.ts";
import { translateCiliumPolicy } from "./rules.ts";
import type { InternalRule, ManifestObject, PolicyKind } from "./types.ts";
import type { Ctx } from "./validate.ts";

export * from "./types.ts";
export * from "./errors.ts";
export { loadManifests, parseManifests, clusterFromManifests, parseCiliateObjects, expandWorkload, objectLabel, KNOWN_KINDS, CILIATE_KINDS, CILIATE_API } from "./manifest-loader.ts";
export { Diagnostics } from "./diagnostics.ts";
export type { DiagnosticsSummary } from "./diagnostics.ts";
export { registerSchema, validateAgainstSchema, schemaApiVersions } from "./schema.ts";
export type { SchemaProblem } from "./schema.ts";
export type { LoadResult, TrafficSpec, TrafficFlow, ExpectationSpec, ConfigSpec, EndpointReference } from "./manifest-loader.ts";
export { compilePolicy, PolicyCompiler, DEFAULT_POLICY_MAP_MAX, DEFAULT_PROXY_PORT_BASE, INIT_ENDPOINT } from "./compile.ts";
export type { CompiledPolicy, CompileOptions, CompileResult } from "./compile.ts";
export { policyLookup, encodeEntries, lpmPrefixLength } from "./lookup.ts";
export type { LookupResult } from "./lookup.ts";
export { evaluateHttp, httpRuleMatches, httpHeaderEdits } from "./l7/http.ts";
export type { HttpRequest, HttpVerdict, HttpHeaderEdit, ProxyContext } from "./l7/http.ts";
export { evaluateKafka, kafkaRuleMatches, kafkaRuleApiKeys, kafkaApiKeyName, kafkaApiKeyOf, KAFKA_ROLE_REQUEST, checkKafkaRule, KAFKA_API_KEYS, KAFKA_ROLE_KEYS, KAFKA_TOPIC_AUTHORIZATION_FAILED } from "./l7/kafka.ts";
export type { KafkaRequest, KafkaVerdict } from "./l7/kafka.ts";
export { evaluateTls, serverNameMatches } from "./l7/tls.ts";
export type { TlsHello, TlsVerdict } from "./l7/tls.ts";
export { evaluateL7 } from "./l7/evaluate.ts";
export type { L7Request, L7Verdict } from "./l7/evaluate.ts";
export type { L7Context } from "./l7/listener.ts";
export { evaluateDns, dnsSelectorMatches, dnsSelectorProblems, dnsSelectorText, patternRegExp, toFqdn, DNS_RCODE_REFUSED, DNS_RCODE_NOERROR, MAX_FQDN_LENGTH } from "./l7/dns.ts";
export type { DnsVerdict } from "./l7/dns.ts";
export { FqdnCache, DEFAULT_FQDN_MIN_TTL } from "./fqdn-cache.ts";
export type { FqdnState, FqdnLearnResult } from "./fqdn-cache.ts";
export { explainFlow, describe } from "./explain.ts";
export type { Flow, Explanation, DirectionDecision, EndpointRef } from "./explain.ts";
export { portRangeToPrefixes, portInPrefix, icmpType } from "./ports.ts";
export { identityOfIp, nodeIdentityOn, LOCAL_IDENTITY_SCOPE, MIN_CLUSTER_IDENTITY, REMOTE_NODE_IDENTITY_SCOPE } from "./identity.ts";
export { labelString, identityLabels, LABEL_CLUSTER, LABEL_NAMESPACE, LABEL_NAMESPACE_LABELS, LABEL_SERVICE_ACCOUNT } from "./labels.ts";
export { REFUSED_NOT_ENFORCEABLE, WARNED, type NotEnforced } from "./not-enforced.ts";
export { parseCidr, type Cidr } from "./cidr.ts";

export const POLICY_KINDS: PolicyKind[] = ["NetworkPolicy", "CiliumNetworkPolicy", "CiliumClusterwideNetworkPolicy"];

export interface RuleSet {
  rules: InternalRule[];
  /** Every problem of every refused policy. */
  problems: ManifestError[];
  /** Accepted but not (fully) enforced parts (host-firewall rules). */
  warnings: ManifestError[];
  /** "Kind ns/name" of the policies applied and refused. */
  applied: string[];
  refused: string[];
}

/**
 * Validates and translates every policy object. A policy with any problem is refused as a whole (not
 * applied); the valid ones still are; `problems` lists every problem found. With `strict`, a policy with
 * a warning (a part that would not be enforced) is refused too, its warnings reported as problems.
 * `nodeSelectorLabels` is Cilium's enable-node-selector-labels: without it fromNodes/toNodes are refused;
 * `extendedIPProtocols` its enable-extended-ip-protocols: without it VRRP and IGMP ports are refused.
 */
export function buildRules(objects: ManifestObject[], clusterName = "default", opts: { strict?: boolean; nodeSelectorLabels?: boolean; extendedIPProtocols?: boolean } = {}): RuleSet {
  const out: RuleSet = { rules: [], problems: [], warnings: [], applied: [], refused: [] };
  for (const o of objects) {
    if (!POLICY_KINDS.includes(o.kind as PolicyKind)) continue;
    const id = objectLabel(o.kind, o.metadata);
    const ctx: Ctx = { src: o.source, problems: [], warnings: [], object: id, extendedIPProtocols: opts.extendedIPProtocols };
    const kind = o.kind as PolicyKind;
    const rules = kind === "NetworkPolicy" ? [translateNetworkPolicy(o, clusterName, ctx)].filter((r): r is InternalRule => !!r) : translateCiliumPolicy(kind, o, ctx, { clusterName, nodeSelectorLabels: opts.nodeSelectorLabels });
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
