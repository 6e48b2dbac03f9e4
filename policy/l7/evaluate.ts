// One entry for every L7 protocol: the listener on the proxy port decides which protocol's rules judge the
// request (a listener carries one kind). Used by explainFlow (and so `ciliate trace`) and by the simulator;
// the node's proxy handlers call the protocol evaluators directly with what they parsed from the wire.

import type { CompiledPolicy } from "../compile.ts";
import type { HttpRule, KafkaRule, L7Protocol, Provenance } from "../types.ts";
import { evaluateHttp, type HttpRequest } from "./http.ts";
import { evaluateKafka, type KafkaRequest } from "./kafka.ts";
import type { L7Context } from "./listener.ts";
import { evaluateTls, type TlsHello } from "./tls.ts";

/** What a flow says about its L7 content; a flow may describe none. */
export interface L7Request {
  http?: HttpRequest;
  kafka?: KafkaRequest;
  tls?: TlsHello;
}

export interface L7Verdict {
  protocol: L7Protocol;
  allowed: boolean;
  /** HTTP: 200 (passed on) or 403 from the proxy. */
  status?: number;
  /** Kafka: 0, or the error code of the proxy's response (29). */
  errorCode?: number;
  /** The rule that allowed the request: its peer rule and index in that peer's list (-1 = peer without L7 rules). */
  rule?: { provenance: Provenance; index: number; http?: HttpRule; kafka?: KafkaRule; serverName?: string };
  reason: string;
}

/**
 * Judges the request at the listener on ctx.proxyPort. Returns undefined when the listener's protocol is
 * one this module does not judge (DNS) or the flow describes no L7 content at all; a flow describing
 * another protocol than the listener's is denied (the proxy could not parse it).
 */
export function evaluateL7(compiled: CompiledPolicy, ctx: L7Context, req: L7Request): L7Verdict | undefined {
  const l = compiled.proxies.get(ctx.proxyPort);
  const protocol = l?.protocol;
  if (protocol === "http" && req.http) {
    const v = evaluateHttp(compiled, ctx, req.http);
    return { protocol, allowed: v.allowed, status: v.status, reason: v.reason, rule: v.rule && { provenance: v.rule.provenance, index: v.rule.index, http: v.rule.rule } };
  }
  if (protocol === "kafka" && req.kafka) {
    const v = evaluateKafka(compiled, ctx, req.kafka);
    return { protocol, allowed: v.allowed, errorCode: v.errorCode, reason: v.reason, rule: v.rule && { provenance: v.rule.provenance, index: v.rule.index, kafka: v.rule.rule } };
  }
  if (protocol === "tls" && req.tls) {
    const v = evaluateTls(compiled, ctx, req.tls);
    return { protocol, allowed: v.allowed, reason: v.reason, rule: v.rule && { provenance: v.rule.provenance, index: v.rule.index, serverName: v.rule.serverName } };
  }
  if (!l || protocol === "dns") return undefined;
  const given = (["http", "kafka", "tls"] as const).find((k) => req[k] !== undefined);
  if (!given) return undefined;
  return { protocol: l.protocol, allowed: false, status: l.protocol === "http" ? 400 : undefined, reason: `the ${l.protocol} proxy on port ${ctx.proxyPort} cannot parse a ${given === "tls" ? "TLS" : given} request: refused` };
}
