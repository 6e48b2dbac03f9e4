// CiliumNetworkPolicy / CiliumClusterwideNetworkPolicy → internal rules, with validation and Cilium's
// namespace defaulting (pkg/k8s/apis/cilium.io/utils/utils.go): a CNP subject is pinned to the policy's
// namespace; peer selectors get the same namespace unless they name the namespace label or use reserved:
// keys; in a CCNP a peer without a namespace key gets `io.kubernetes.pod.namespace Exists`. Rule field
// semantics follow pkg/policy/api/{rule,ingress,egress,l4,cidr,entity,service,icmp}.go.

import type { SourceRef } from "./errors.ts";
import { LABEL_CLUSTER, LABEL_NAMESPACE, LABEL_NAMESPACE_LABELS } from "./labels.ts";

const NAMESPACE_LABELS_PREFIX = `${LABEL_NAMESPACE_LABELS}.`;
import { parseSelector, selectorHasKey, selectorText, selectorUsesSource } from "./selector.ts";
import type { InternalRule, Peer, PeerRule, PolicyKind, Selector } from "./types.ts";
import { asList, bad, warn, checkCidr, checkCidrSet, checkDnsSelector, checkEntity, checkIcmps, checkToPorts, type Ctx } from "./validate.ts";

function nsRequirement(ns: string): Selector["requirements"][number] {
  return { source: "k8s", key: LABEL_NAMESPACE, op: "In", values: [ns] };
}

function selectsInit(sel: Selector): boolean {
  return sel.requirements.some((r) => r.source === "reserved" && r.key === "init");
}

/**
 * Namespace defaulting of a peer selector (cilium/cilium pkg/k8s/apis/cilium.io/utils/utils.go). A peer
 * that names the namespace label, a namespace-labels key (`io.cilium.k8s.namespace.labels.*`: it selects
 * by namespace, cilium/cilium PR #30650) or a reserved: label is left as written.
 */
export function defaultPeerNamespace(sel: Selector, policyNs: string, subjectIsInit: boolean): Selector {
  if (subjectIsInit) return sel;
  if (selectorHasKey(sel, LABEL_NAMESPACE, ["k8s", "any"]) || selectorUsesSource(sel, "reserved")) return sel;
  if (sel.requirements.some((q) => (q.source === "k8s" || q.source === "any") && q.key.startsWith(NAMESPACE_LABELS_PREFIX))) return sel;
  if (policyNs === "") return { requirements: [...sel.requirements, { source: "k8s", key: LABEL_NAMESPACE, op: "Exists", values: [] }] };
  return { requirements: [...sel.requirements, nsRequirement(policyNs)] };
}

/**
 * A fromNodes/toNodes selector as Cilium reads it (cilium/cilium pkg/k8s/apis/cilium.io/utils/utils.go,
 * parseToCiliumIngressCommonRule): the keys as written (unprefixed = any source, so `kubernetes.io/hostname`
 * matches the node's `node:` label), plus `reserved:remote-node Exists` — only remote nodes, never the
 * local host, whose identity stays host (1) — and the policy's cluster unless the selector names one.
 */
export function nodePeerSelector(sel: Selector, clusterName: string): Selector {
  const reqs = [...sel.requirements, { source: "reserved", key: "remote-node", op: "Exists" as const, values: [] }];
  if (!selectorHasKey(sel, LABEL_CLUSTER, ["k8s", "any"])) reqs.push({ source: "k8s", key: LABEL_CLUSTER, op: "In", values: [clusterName] });
  return { requirements: reqs };
}

/** What the agent's options change in how rules are read. */
export interface RuleOptions {
  /** The cluster a node selector is pinned to (Cilium's cluster-name). */
  clusterName?: string;
  /** enable-node-selector-labels: fromNodes/toNodes accepted (otherwise refused, as Cilium does). */
  nodeSelectorLabels?: boolean;
  /** enable-host-firewall: nodeSelector rules (host policies) are enforced for the nodes they select;
   * without it they are accepted and do nothing, with a warning (as in Cilium). */
  hostFirewall?: boolean;
}

const L3_MEMBERS = {
  ingress: ["fromEndpoints", "fromCIDR", "fromCIDRSet", "fromEntities", "fromNodes", "fromGroups"],
  egress: ["toCIDR", "toCIDRSet", "toEndpoints", "toEntities", "toServices", "toFQDNs", "toGroups", "toNodes"],
};
const upper = (f: string) => f[0]!.toUpperCase() + f.slice(1);
const len = (v: unknown) => (Array.isArray(v) ? v.length : 0);

/**
 * The element-level checks of Cilium's IngressRule/EgressRule sanitize (cilium/cilium
 * pkg/policy/api/rule_validation.go), in its words: one kind of L3 peer per element, no ToServices with
 * ToPorts, no ICMPs with ToPorts, no DNS rules on ingress, no L7 rules in host policies.
 */
function checkElement(ctx: Ctx, e: Record<string, unknown>, p: (string | number)[], direction: "ingress" | "egress", hostPolicy: boolean): void {
  const present = L3_MEMBERS[direction].filter((f) => len(e[f]) > 0);
  if (present.length > 1) bad(ctx, [...p, present[1]!], "combined-l3", `Combining ${upper(present[0]!)} and ${upper(present[1]!)} is not supported yet`, "split the peers into separate rules");
  if (direction === "egress" && len(e.toServices) > 0 && len(e.toPorts) > 0) bad(ctx, [...p, "toPorts"], "services-with-ports", "Combining ToServices and ToPorts is not supported yet");
  if (len(e.icmps) > 0 && len(e.toPorts) > 0) bad(ctx, [...p, "icmps"], "icmps-with-ports", "The ICMPs block may only be present without ToPorts. Define a separate rule to use ToPorts.");
  const l7 = (Array.isArray(e.toPorts) ? e.toPorts : []).map((pr) => ((pr ?? {}) as Record<string, unknown>).rules as Record<string, unknown> | undefined);
  if (direction === "ingress" && l7.some((r) => len(r?.dns) > 0)) bad(ctx, [...p, "toPorts"], "l7-dns-on-ingress", "L7 protocol DNS is not supported on ingress yet");
  if (hostPolicy && l7.some((r) => len(r?.http) + len(r?.kafka) + len(r?.dns) > 0)) bad(ctx, [...p, "toPorts"], "host-policy-l7", "host policies do not support L7 rules yet");
  // Mutual authentication is a precondition Cilium's datapath enforces (drop 189 until authenticated);
  // ciliate has no authentication, so such a rule would allow too much: refused, not ignored.
  const mode = ((e.authentication ?? {}) as Record<string, unknown>).mode;
  if (mode !== undefined && mode !== "disabled") bad(ctx, [...p, "authentication", "mode"], "unsupported-authentication", `authentication mode ${String(mode)} is not supported by ciliate`);
}

const ELEMENTS = [
  ["ingress", "ingress", false],
  ["ingressDeny", "ingress", true],
  ["egress", "egress", false],
  ["egressDeny", "egress", true],
] as const;

/**
 * Translates one rule (`spec` or `specs[i]`) of a CNP/CCNP. Problems go to ctx.problems; the caller
 * discards the whole policy when any problem was found. A nodeSelector rule (a host policy) comes back
 * with `host` set: it selects host endpoints (nodes), never pods (policy/compile.ts).
 */
export function translateCiliumRule(
  kind: PolicyKind,
  namespace: string,
  name: string,
  ruleIndex: number,
  raw: unknown,
  path: (string | number)[],
  ctx: Ctx,
  opts: RuleOptions = {},
): InternalRule | undefined {
  if (!raw || typeof raw !== "object" || Array.isArray(raw)) {
    bad(ctx, path, "invalid-rule", "a rule must be an object");
    return undefined;
  }
  const r = raw as Record<string, unknown>;
  const hasEp = r.endpointSelector !== undefined && r.endpointSelector !== null;
  const hasNode = r.nodeSelector !== undefined && r.nodeSelector !== null;
  if (hasEp && hasNode) bad(ctx, path, "selector-conflict", "rule cannot have both EndpointSelector and NodeSelector", "a rule selects either endpoints or nodes");
  if (!hasEp && !hasNode) bad(ctx, path, "selector-missing", "rule must have one of EndpointSelector or NodeSelector");
  if (hasNode && kind === "CiliumNetworkPolicy") bad(ctx, [...path, "nodeSelector"], "node-selector-namespaced", "nodeSelector is only allowed in a CiliumClusterwideNetworkPolicy");
  let subject = parseSelector(hasEp ? r.endpointSelector : r.nodeSelector, ctx.src, [...path, hasEp ? "endpointSelector" : "nodeSelector"], ctx.problems, "cilium");
  const subjectIsInit = selectsInit(subject);
  if (kind === "CiliumNetworkPolicy") {
    // Pin the subject to the policy namespace, overriding a conflicting namespace match. Since Cilium 1.15
    // this holds for a reserved:init subject too, which therefore selects nothing: an initializing
    // endpoint has no namespace label (pkg/k8s/apis/cilium.io/utils parseToCiliumRule; the CNP validator
    // pkg/k8s/apis/cilium.io/v2/validator reports it as errInitPolicyCNP).
    subject = { requirements: [...subject.requirements.filter((q) => q.key !== LABEL_NAMESPACE), nsRequirement(namespace)] };
    const initHint = "This label is not supported in CiliumNetworkPolicy any more. If you wish to define a policy for endpoints before they receive a full security identity, change the resource type for the policy to CiliumClusterwideNetworkPolicy.";
    if (subjectIsInit) warn(ctx, [...path, "endpointSelector"], "init-in-namespaced-policy", "CiliumNetworkPolicy incorrectly matches reserved:init label; it selects no endpoint", initHint);
  }
  const rules: PeerRule[] = [];
  const touches = { ingress: false, egress: false };
  for (const [field, direction, deny] of ELEMENTS) {
    const list = asList(ctx, r[field], [...path, field]);
    if (list.length > 0) touches[direction] = true;
    list.forEach((e0, index) => {
      const p = [...path, field, index];
      if (!e0 || typeof e0 !== "object") {
        bad(ctx, p, "invalid-rule", "must be an object");
        return;
      }
      const e = e0 as Record<string, unknown>;
      const from = direction === "ingress" ? "from" : "to";
      checkElement(ctx, e, p, direction, hasNode);
      const peers: Peer[] = [];
      let hasL3 = false;
      const eps = asList(ctx, e[`${from}Endpoints`], [...p, `${from}Endpoints`]);
      if (e[`${from}Endpoints`] !== undefined) hasL3 = true;
      eps.forEach((s, i) => {
        const sel = defaultPeerNamespace(parseSelector(s, ctx.src, [...p, `${from}Endpoints`, i], ctx.problems, "cilium"), namespace, subjectIsInit);
        peers.push({ type: "selector", selector: sel, text: selectorText(sel) });
      });
      const requires = asList(ctx, e[`${from}Requires`], [...p, `${from}Requires`]).map((s, i) =>
        defaultPeerNamespace(parseSelector(s, ctx.src, [...p, `${from}Requires`, i], ctx.problems, "cilium"), namespace, subjectIsInit),
      );
      for (const [i, c] of asList(ctx, e[`${from}CIDR`], [...p, `${from}CIDR`]).entries()) {
        hasL3 = true;
        const x = checkCidr(ctx, c, [...p, `${from}CIDR`, i]);
        if (x) peers.push({ type: "cidr", cidr: x.text, except: [] });
      }
      for (const [i, c0] of asList(ctx, e[`${from}CIDRSet`], [...p, `${from}CIDRSet`]).entries()) {
        hasL3 = true;
        const c = (c0 ?? {}) as Record<string, unknown>;
        const cp = [...p, `${from}CIDRSet`, i];
        if (c.cidr === undefined) {
          if (c.cidrGroupRef !== undefined || c.cidrGroupSelector !== undefined)
            bad(ctx, cp, "unsupported-cidr-group", "cidrGroupRef/cidrGroupSelector are not supported by ciliate");
          else bad(ctx, [...cp, "cidr"], "invalid-cidr", "cidr is required");
          continue;
        }
        const peer = checkCidrSet(ctx, c.cidr, c.except, [...cp, "cidr"], [...cp, "except"]);
        if (peer) peers.push(peer);
      }
      for (const [i, en] of asList(ctx, e[`${from}Entities`], [...p, `${from}Entities`]).entries()) {
        hasL3 = true;
        const peer = checkEntity(ctx, en, [...p, `${from}Entities`, i]);
        if (peer) peers.push(peer);
      }
      if (direction === "egress") {
        for (const [i, s0] of asList(ctx, e.toServices, [...p, "toServices"]).entries()) {
          hasL3 = true;
          const s = (s0 ?? {}) as Record<string, Record<string, unknown>>;
          const sp = [...p, "toServices", i];
          if (s.k8sService) {
            if (typeof s.k8sService.serviceName !== "string") bad(ctx, [...sp, "k8sService", "serviceName"], "invalid-service", "serviceName is required");
            else peers.push({ type: "service", namespace: String(s.k8sService.namespace ?? namespace), name: s.k8sService.serviceName });
          } else if (s.k8sServiceSelector) {
            const sel = parseSelector(s.k8sServiceSelector.selector, ctx.src, [...sp, "k8sServiceSelector", "selector"], ctx.problems, "cilium");
            peers.push({ type: "service", namespace: String(s.k8sServiceSelector.namespace ?? namespace), selector: sel });
          } else warn(ctx, sp, "service-selects-nothing", "this toServices entry names no service (neither k8sService nor k8sServiceSelector); it selects nothing");
        }
        if (e.toFQDNs !== undefined) {
          if (deny) bad(ctx, [...p, "toFQDNs"], "fqdn-on-deny", "toFQDNs is not allowed in egressDeny", "deny the addresses with toCIDR, or allow only the names you want with toFQDNs");
          else {
            // Combined with another L3 peer it is refused by checkElement, in Cilium's words (EgressRule.sanitize).
            hasL3 = true;
            asList(ctx, e.toFQDNs, [...p, "toFQDNs"]).forEach((f0, i) => {
              const sel = checkDnsSelector(ctx, f0, [...p, "toFQDNs", i]);
              if (sel) peers.push({ type: "fqdn", selector: sel });
            });
          }
        }
      }
      if (e[`${from}Groups`] !== undefined) bad(ctx, [...p, `${from}Groups`], "unsupported-field", `${from}Groups (cloud security groups) is not supported by ciliate`);
      if (e[`${from}Nodes`] !== undefined) {
        hasL3 = true;
        // Cilium refuses node selectors unless the agent runs with enable-node-selector-labels (off by
        // default: remote nodes then share the reserved remote-node identity; pkg/policy/api
        // ErrFromToNodesRequiresNodeSelectorOption). Config spec.nodeSelectorLabels is that option.
        if (!opts.nodeSelectorLabels)
          bad(ctx, [...p, `${from}Nodes`], "unsupported-node-selector", 'FromNodes/ToNodes rules can only be applied when the "enable-node-selector-labels" flag is set', "set nodeSelectorLabels: true in the Config (Cilium's enable-node-selector-labels), or select nodes with fromEntities/toEntities host or remote-node");
        asList(ctx, e[`${from}Nodes`], [...p, `${from}Nodes`]).forEach((s, i) => {
          const sel = nodePeerSelector(parseSelector(s, ctx.src, [...p, `${from}Nodes`, i], ctx.problems, "cilium"), opts.clusterName ?? "default");
          peers.push({ type: "selector", selector: sel, text: `nodes ${selectorText(sel)}` });
        });
      }
      const ports = [...checkToPorts(ctx, e.toPorts, [...p, "toPorts"], deny, direction), ...checkIcmps(ctx, e.icmps, [...p, "icmps"])];
      const hasL4 = e.toPorts !== undefined || e.icmps !== undefined;
      // An element with ports but no L3 selector applies to every peer; an empty element allows nothing.
      if (!hasL3 && hasL4) peers.push({ type: "all" });
      // fromRequires/toRequires alone allow nothing: they constrain the peers of every rule that
      // selects the same endpoint in that direction (applied at compile time).
      rules.push({ direction, deny, index, peers, requires, ports: hasL4 ? ports : null });
    });
  }
  if (r.log !== undefined && r.log !== null) warn(ctx, [...path, "log"], "log-not-reported", "log (the policy-verdict log value) is accepted but ciliate does not report it");
  const dd = (r.enableDefaultDeny ?? {}) as Record<string, unknown>;
  const defaultDeny = {
    ingress: dd.ingress === undefined || dd.ingress === null ? true : Boolean(dd.ingress),
    egress: dd.egress === undefined || dd.egress === null ? true : Boolean(dd.egress),
  };
  if (hasNode) {
    // Host policies do nothing unless the agent runs with the host firewall (cilium/cilium
    // Documentation/security/host-firewall.rst: hostFirewall.enabled); with it, they are enforced at the
    // node's network device (core/host-firewall.ts), which traffic between a node and its own pods never
    // crosses (Cilium judges that at cilium_host, bpf/bpf_host.c cil_to_host / cil_from_host).
    if (!opts.hostFirewall)
      warn(ctx, [...path, "nodeSelector"], "host-policy-not-enforced", "nodeSelector rules (host policies) are not enforced: the host firewall is off", "set enableHostFirewall: true in the Config, or run the agent with --enable-host-firewall (Cilium's enable-host-firewall)");
    else {
      // Traffic between the node and its own pods is allowed whatever a host policy says; that is only
      // what the policy means when, in each direction it touches, it allows every pod on every port
      // (entity cluster or all, no ports) and denies nothing.
      const podsOpen = (d: "ingress" | "egress") =>
        !touches[d] || (!rules.some((x) => x.direction === d && x.deny) &&
          rules.some((x) => x.direction === d && x.ports === null && x.peers.some((pe) => pe.type === "all" || (pe.type === "entity" && (pe.entity === "cluster" || pe.entity === "all")))));
      if (!podsOpen("ingress") || !podsOpen("egress"))
        warn(ctx, [...path, "nodeSelector"], "host-policy-local-pods", "host policies are enforced at the node's network device: traffic between a node and its own pods is not subject to them (it is allowed)");
    }
  }
  return {
    host: hasNode,
    origin: { kind, namespace, name, ruleIndex },
    subject,
    subjectText: selectorText(subject),
    rules,
    touches,
    defaultDeny,
  };
}

/** Translates a whole CNP/CCNP object (`spec` and/or `specs`). */
export function translateCiliumPolicy(kind: PolicyKind, obj: { metadata: { name: string; namespace?: string }; raw: Record<string, unknown>; source?: SourceRef }, ctx: Ctx, opts: RuleOptions = {}): InternalRule[] {
  const ns = kind === "CiliumClusterwideNetworkPolicy" ? "" : (obj.metadata.namespace ?? "default");
  const out: InternalRule[] = [];
  const raw = obj.raw;
  if (raw.spec === undefined && raw.specs === undefined) bad(ctx, [], "rule-missing", "a policy needs spec or specs");
  let idx = 0;
  if (raw.spec !== undefined && raw.spec !== null) {
    const r = translateCiliumRule(kind, ns, obj.metadata.name, idx++, raw.spec, ["spec"], ctx, opts);
    if (r) out.push(r);
  }
  asList(ctx, raw.specs, ["specs"]).forEach((s, i) => {
    const r = translateCiliumRule(kind, ns, obj.metadata.name, idx++, s, ["specs", i], ctx, opts);
    if (r) out.push(r);
  });
  return out;
}
