// Kubernetes NetworkPolicy → internal rules with Cilium's translation (pkg/k8s/network_policy.go):
// subject = podSelector in the policy namespace; each from/to peer becomes its own element carrying the
// rule's ports; a missing or empty peer list is a wildcard peer (every identity, world included);
// namespaceSelector keys become io.cilium.k8s.namespace.labels.<key> (empty → any namespace), AND'ed
// with a podSelector; ipBlock is a CIDR peer with except; ports default to TCP and to every port;
// policyTypes defaulting adds empty (default-deny) elements. Peer selectors are pinned to the local
// cluster. NetworkPolicies are always default-deny in the directions they touch.

import type { SourceRef } from "./errors.ts";
import { LABEL_CLUSTER, LABEL_NAMESPACE, LABEL_NAMESPACE_LABELS } from "./labels.ts";
import { parseSelector, selectorText } from "./selector.ts";
import type { InternalRule, Peer, PeerRule, PortSpec, Selector } from "./types.ts";
import { cidrContains, parseCidr, type Cidr } from "./cidr.ts";
import { asList, bad, checkProtocol, type Ctx } from "./validate.ts";

/**
 * An ipBlock as the API server validates it (pkg/apis/networking/validation ValidateIPBlock, with
 * netutils.ParseCIDRSloppy): cidr a valid prefix, each except a valid prefix and a strict subset of it
 * (inside, and longer).
 */
function checkIpBlock(ctx: Ctx, b: Record<string, unknown>, path: (string | number)[]): Peer | undefined {
  const cidrOf = (v: unknown, p: (string | number)[]): Cidr | undefined => {
    const c = typeof v === "string" && v.includes("/") ? parseCidr(v) : undefined;
    if (!c) bad(ctx, p, "invalid-cidr", `Invalid value: ${JSON.stringify(v)}: must be a valid CIDR value, (e.g. 10.9.8.0/24 or 2001:db8::/64)`);
    return c;
  };
  if (b.cidr === undefined || b.cidr === "") {
    bad(ctx, [...path, "cidr"], "invalid-cidr", "Required value");
    return undefined;
  }
  const c = cidrOf(b.cidr, [...path, "cidr"]);
  const before = ctx.problems.length;
  const except = asList(ctx, b.except, [...path, "except"]).map((e, i) => {
    const x = cidrOf(e, [...path, "except", i]);
    if (x && c && !(cidrContains(c, x) && x.bits > c.bits)) bad(ctx, [...path, "except", i], "except-outside-cidr", `Invalid value: ${JSON.stringify(e)}: must be a strict subset of \`cidr\``);
    return x?.text;
  });
  return c && ctx.problems.length === before ? { type: "cidr", cidr: c.text, except: except as string[] } : undefined;
}

/** k8s.io/apimachinery pkg/util/validation IsValidPortName, in its words. */
function portNameProblems(v: string): string[] {
  const out: string[] = [];
  if (v.length > 15) out.push("must be no more than 15 characters");
  if (!/^[-a-z0-9]+$/.test(v)) out.push("must contain only alpha-numeric characters (a-z, 0-9), and hyphens (-)");
  else if (!/[a-z]/.test(v)) out.push("must contain at least one letter (a-z)");
  if (v.includes("--")) out.push("must not contain consecutive hyphens (-)");
  if (v.length > 0 && (v.startsWith("-") || v.endsWith("-"))) out.push("must not begin or end with a hyphen (-)");
  return out;
}

const PORT_RANGE = "must be between 1 and 65535, inclusive";

/**
 * One NetworkPolicyPort's port and endPort as the API server validates them (kubernetes/kubernetes
 * pkg/apis/networking/validation ValidateNetworkPolicyPort): an integer port 1-65535, endPort ≥ port and
 * only with an integer port; a string port is a port name (IsValidPortName), so "80" is refused. Absent = 0
 * (every port).
 */
function checkK8sPort(ctx: Ctx, p: Record<string, unknown>, path: (string | number)[]): { port?: number | string; endPort?: number } {
  const v = p.port;
  const ep = p.endPort === null ? undefined : p.endPort;
  const invalid = (field: string, value: unknown, msg: string) => bad(ctx, [...path, field], field === "port" ? "invalid-port" : "invalid-end-port", `Invalid value: ${JSON.stringify(value)}: ${msg}`);
  if (v === undefined || v === null) {
    if (ep !== undefined) invalid("endPort", ep, "may not be specified when `port` is not specified");
    return { port: 0 };
  }
  if (typeof v === "string") {
    const problems = portNameProblems(v);
    for (const m of problems) invalid("port", v, m);
    if (ep !== undefined) invalid("endPort", ep, "may not be specified when `port` is non-numeric");
    return problems.length || ep !== undefined ? {} : { port: v };
  }
  const n = Number(v);
  let ok = true;
  if (!(Number.isInteger(n) && n >= 1 && n <= 65535)) (ok = false), invalid("port", v, PORT_RANGE);
  if (ep === undefined) return ok ? { port: n } : {};
  const e = Number(ep);
  if (e < n) (ok = false), invalid("endPort", n, "must be greater than or equal to `port`");
  if (!(Number.isInteger(e) && e >= 1 && e <= 65535)) (ok = false), invalid("endPort", ep, PORT_RANGE);
  return ok ? { port: n, endPort: e } : {};
}

function peerSelector(
  raw: Record<string, unknown>,
  policyNs: string,
  clusterName: string,
  ctx: Ctx,
  path: (string | number)[],
): Selector {
  const reqs: Selector["requirements"] = [];
  if (raw.podSelector !== undefined) {
    const pod = parseSelector(raw.podSelector, ctx.src, [...path, "podSelector"], ctx.problems);
    // Pod selector keys are Kubernetes labels.
    reqs.push(...pod.requirements.map((r) => ({ ...r, source: r.source === "any" ? "k8s" : r.source })));
  }
  if (raw.namespaceSelector !== undefined) {
    const ns = parseSelector(raw.namespaceSelector, ctx.src, [...path, "namespaceSelector"], ctx.problems);
    if (ns.requirements.length === 0) reqs.push({ source: "k8s", key: LABEL_NAMESPACE, op: "Exists", values: [] });
    else reqs.push(...ns.requirements.map((r) => ({ ...r, source: "k8s", key: `${LABEL_NAMESPACE_LABELS}.${r.key}` })));
  } else {
    reqs.push({ source: "k8s", key: LABEL_NAMESPACE, op: "In", values: [policyNs] });
  }
  reqs.push({ source: "k8s", key: LABEL_CLUSTER, op: "In", values: [clusterName] });
  return { requirements: reqs };
}

function translatePorts(raw: unknown, path: (string | number)[], ctx: Ctx): PortSpec[] | null {
  const list = asList(ctx, raw, path);
  if (list.length === 0) return null;
  const out: PortSpec[] = [];
  list.forEach((p0, i) => {
    const p = (p0 ?? {}) as Record<string, unknown>;
    const { port, endPort } = checkK8sPort(ctx, p, [...path, i]);
    const protocol = checkProtocol(ctx, p.protocol, [...path, i, "protocol"], "TCP", ["TCP", "UDP", "SCTP"]);
    if (port === undefined || protocol === undefined) return;
    out.push({ port, endPort, protocol });
  });
  return out;
}

/** Translates one NetworkPolicy; problems go to ctx.problems. */
export function translateNetworkPolicy(
  obj: { metadata: { name: string; namespace?: string }; raw: Record<string, unknown>; source?: SourceRef },
  clusterName: string,
  ctx: Ctx,
): InternalRule | undefined {
  const ns = obj.metadata.namespace ?? "default";
  const spec = (obj.raw.spec ?? {}) as Record<string, unknown>;
  if (obj.raw.spec === undefined) bad(ctx, ["spec"], "rule-missing", "a NetworkPolicy needs a spec");
  const pod = parseSelector(spec.podSelector ?? {}, ctx.src, ["spec", "podSelector"], ctx.problems);
  const subject: Selector = {
    requirements: [...pod.requirements.map((r) => ({ ...r, source: r.source === "any" ? "k8s" : r.source })), { source: "k8s", key: LABEL_NAMESPACE, op: "In", values: [ns] }],
  };
  const types = asList(ctx, spec.policyTypes, ["spec", "policyTypes"]).map(String);
  // ValidateNetworkPolicySpec, in the API server's words.
  if (types.length > 2) bad(ctx, ["spec", "policyTypes"], "invalid-policy-type", `Invalid value: ${JSON.stringify(types)}: may not specify more than two policyTypes`);
  else
    types.forEach((t, i) => {
      if (t !== "Ingress" && t !== "Egress") bad(ctx, ["spec", "policyTypes", i], "invalid-policy-type", `Unsupported value: ${JSON.stringify(t)}: supported values: "Ingress", "Egress"`);
    });
  const ingressList = asList(ctx, spec.ingress, ["spec", "ingress"]);
  const egressList = asList(ctx, spec.egress, ["spec", "egress"]);
  // policyTypes defaulting: Ingress always; Egress when egress rules exist.
  const hasIngress = types.length ? types.includes("Ingress") : true;
  const hasEgress = types.length ? types.includes("Egress") : egressList.length > 0;
  const rules: PeerRule[] = [];
  const doDir = (direction: "ingress" | "egress", list: unknown[]) => {
    const peerField = direction === "ingress" ? "from" : "to";
    list.forEach((e0, index) => {
      const e = (e0 ?? {}) as Record<string, unknown>;
      const path = ["spec", direction, index];
      const ports = translatePorts(e.ports, [...path, "ports"], ctx);
      const rawPeers = asList(ctx, e[peerField], [...path, peerField]);
      const peers: Peer[] = [];
      if (rawPeers.length === 0) peers.push({ type: "all" });
      rawPeers.forEach((p0, i) => {
        const p = (p0 ?? {}) as Record<string, unknown>;
        const pp = [...path, peerField, i];
        const hasSel = p.podSelector !== undefined || p.namespaceSelector !== undefined;
        if (p.ipBlock !== undefined && hasSel) bad(ctx, pp, "invalid-peer", "Forbidden: may not specify both ipBlock and another peer");
        else if (p.ipBlock !== undefined) {
          const b = (p.ipBlock ?? {}) as Record<string, unknown>;
          const peer = checkIpBlock(ctx, b, [...pp, "ipBlock"]);
          if (peer) peers.push(peer);
        } else if (hasSel) {
          const sel = peerSelector(p, ns, clusterName, ctx, pp);
          peers.push({ type: "selector", selector: sel, text: selectorText(sel) });
        } else bad(ctx, pp, "invalid-peer", "Required value: must specify a peer", "podSelector, namespaceSelector or ipBlock");
      });
      // Cilium makes one element per peer; the ports apply to each. Keeping them in one element with
      // OR'ed peers is equivalent for the map state.
      rules.push({ direction, deny: false, index, peers, requires: [], ports });
    });
  };
  if (hasIngress) doDir("ingress", ingressList);
  if (hasEgress) doDir("egress", egressList);
  return {
    origin: { kind: "NetworkPolicy", namespace: ns, name: obj.metadata.name, ruleIndex: 0 },
    subject,
    subjectText: selectorText(subject),
    rules,
    touches: { ingress: hasIngress, egress: hasEgress },
    defaultDeny: { ingress: true, egress: true },
  };
}
