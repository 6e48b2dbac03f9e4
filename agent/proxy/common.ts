/*
 * Small pieces every protocol handler shares: whose identity the rules are asked about (the peer on the
 * other side of the endpoint the listener guards), the skeleton of an L7 flow event, and a monotonic clock
 * for latencies.
 */
import type { L7Context } from "../../policy/index.ts";
import type { L7FlowEvent, L7Protocol, RedirectedConnection } from "./types.ts";

/** The listener and the remote identity: the source for ingress, the destination for egress. */
export function l7ContextOf(conn: RedirectedConnection): L7Context {
  return { proxyPort: conn.proxyPort, remoteIdentity: conn.direction === "ingress" ? conn.source.identity : conn.destination.identity };
}

/** An event about `conn` with the given type, verdict and reason; protocol fields are added by the caller. */
export function flowEvent(conn: RedirectedConnection, protocol: L7Protocol, type: L7FlowEvent["type"], verdict: L7FlowEvent["verdict"], reason: string): L7FlowEvent {
  return { type, protocol, verdict, source: conn.source, destination: conn.destination, direction: conn.direction, proxyPort: conn.proxyPort, reason };
}

export function nowNs(): bigint {
  return process.hrtime.bigint();
}

/** Text naming the rule behind a verdict, for L7FlowEvent.reason. */
export function ruleReason(v: { reason: string; rule?: { provenance: { kind: string; namespace: string; name: string; ruleIndex: number; element: string }; index: number } }): string {
  if (!v.rule) return v.reason;
  const p = v.rule.provenance;
  return `${p.kind} ${p.namespace ? p.namespace + "/" : ""}${p.name} rule ${p.ruleIndex} ${p.element}${v.rule.index >= 0 ? ` [${v.rule.index}]` : ""}: ${v.reason}`;
}
