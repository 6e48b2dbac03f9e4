// Explanation API: for a flow (source and destination as pod, IP, entity or identity; protocol, port or
// ICMP type; optional L7 request: HTTP, Kafka or a TLS server name) the egress decision at the source endpoint and the ingress decision at
// the destination endpoint, each with the deciding map entry, the rules behind it and a sentence:
// "no policy selects this endpoint in this direction: allowed", "selected, but nothing allows this:
// default deny", "denied by a deny rule", "allowed by …", "redirected to the proxy: … 403".

import { ENTITY_IDENTITY, identityOfIp } from "./identity.ts";
import { evaluateL7, type L7Request, type L7Verdict } from "./l7/evaluate.ts";
import type { HttpRequest } from "./l7/http.ts";
import type { KafkaRequest } from "./l7/kafka.ts";
import type { TlsHello } from "./l7/tls.ts";
import { policyLookup, type LookupResult } from "./lookup.ts";
import { PROTO_NUMBERS } from "./ports.ts";
import { podKeyOf } from "./labels.ts";
import type { CompiledPolicy } from "./compile.ts";
import type { Direction, Provenance } from "./types.ts";

export type EndpointRef = { pod: string } | { ip: string } | { entity: string } | { identity: number };

export interface Flow {
  from: EndpointRef;
  to: EndpointRef;
  protocol: "TCP" | "UDP" | "SCTP" | "ICMP" | "ICMPv6";
  /** Destination port, or the ICMP type. */
  port: number;
  http?: HttpRequest;
  kafka?: KafkaRequest;
  tls?: TlsHello;
}

export interface DirectionDecision {
  direction: Direction;
  /** The endpoint whose policy applies, or undefined when that side is not a managed endpoint. */
  endpoint?: string;
  remoteIdentity: number;
  verdict: "allowed" | "denied";
  dropReason: number;
  lookup?: LookupResult;
  rules: Provenance[];
  l7?: L7Verdict & { proxyPort: number };
  reason: string;
}

export interface Explanation {
  verdict: "allowed" | "denied";
  srcIdentity: number;
  dstIdentity: number;
  egress: DirectionDecision;
  ingress: DirectionDecision;
}

export class ExplainError extends Error {
  readonly code = "unknown-endpoint";
  constructor(message: string, readonly hint = "name a pod as ns/name, an IP, or an entity") {
    super(message);
  }
}

function resolve(c: CompiledPolicy, ref: EndpointRef): { identity: number; endpoint?: string } {
  if ("pod" in ref) {
    const id = c.identities.podIdentity.get(ref.pod);
    if (id === undefined) throw new ExplainError(`unknown pod ${ref.pod}`);
    return { identity: id, endpoint: c.endpoints.has(ref.pod) ? ref.pod : undefined };
  }
  if ("ip" in ref) {
    for (const p of c.cluster.pods)
      if (p.ips?.includes(ref.ip)) return resolve(c, { pod: podKeyOf(p) });
    const id = identityOfIp(c.identities, c.cluster, ref.ip);
    if (id === undefined) throw new ExplainError(`invalid IP ${ref.ip}`);
    return { identity: id };
  }
  if ("entity" in ref) {
    const id = ENTITY_IDENTITY[ref.entity];
    if (id === undefined) throw new ExplainError(`unknown entity ${ref.entity}`);
    return { identity: id };
  }
  return { identity: ref.identity };
}

function decide(c: CompiledPolicy, direction: Direction, endpoint: string | undefined, remote: number, proto: number, port: number, req?: L7Request): DirectionDecision {
  if (!endpoint) return { direction, remoteIdentity: remote, verdict: "allowed", dropReason: 0, rules: [], reason: "not a managed endpoint: no policy enforced here" };
  const ep = c.endpoints.get(endpoint)!;
  const r = policyLookup(ep.entries, direction, remote, proto, port);
  const rules = r.entry ? (c.provenance.get(r.entry.cookie) ?? r.entry.provenance) : [];
  const base = { direction, endpoint, remoteIdentity: remote, lookup: r, rules, verdict: r.verdict, dropReason: r.dropReason };
  if (r.verdict === "denied") {
    if (!r.entry) return { ...base, reason: `selected by a policy in ${direction}, but nothing allows this: default deny` };
    return { ...base, reason: `denied by ${describe(rules)}` };
  }
  if (!ep.enforced[direction]) return { ...base, reason: `no policy selects this endpoint in ${direction}: allowed` };
  let reason = `allowed by ${describe(rules)}`;
  const v = r.proxyPort && req ? evaluateL7(c, { proxyPort: r.proxyPort, remoteIdentity: remote }, req) : undefined;
  if (v) {
    const l7 = { ...v, proxyPort: r.proxyPort };
    const name = v.protocol === "tls" ? "TLS" : v.protocol === "http" ? "HTTP" : "Kafka";
    if (!v.allowed) return { ...base, verdict: "denied", dropReason: 0, l7, reason: `redirected to the ${name} proxy on port ${r.proxyPort}: ${v.reason}` };
    reason += `; ${name} proxy on port ${r.proxyPort}: ${v.reason}`;
    return { ...base, l7, reason };
  }
  if (r.proxyPort) reason += `; redirected to the L7 proxy on port ${r.proxyPort}`;
  return { ...base, reason };
}

export function describe(rules: Provenance[]): string {
  return rules
    .map((p) => (p.kind === "derived" ? p.element : `${p.kind} ${p.namespace ? p.namespace + "/" : ""}${p.name} rule ${p.ruleIndex} ${p.element} (peer ${p.peer})`))
    .join("; ");
}

/** Explains a flow: egress at the source, then ingress at the destination. */
export function explainFlow(c: CompiledPolicy, flow: Flow): Explanation {
  const src = resolve(c, flow.from);
  const dst = resolve(c, flow.to);
  const proto = PROTO_NUMBERS[flow.protocol];
  const req: L7Request = { http: flow.http, kafka: flow.kafka, tls: flow.tls };
  const egress = decide(c, "egress", src.endpoint, dst.identity, proto, flow.port, req);
  const ingress = decide(c, "ingress", dst.endpoint, src.identity, proto, flow.port, egress.verdict === "allowed" ? req : undefined);
  return { verdict: egress.verdict === "allowed" && ingress.verdict === "allowed" ? "allowed" : "denied", srcIdentity: src.identity, dstIdentity: dst.identity, egress, ingress };
}
