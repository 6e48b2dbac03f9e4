/*
 * The node's L7 proxies as the simulator models them: a redirected flow's HTTP, Kafka or TLS request is
 * judged by policy/'s rules of that proxy port (a denial answered in the protocol's own way), a DNS query
 * by its rules.dns (a denied query answered REFUSED, an allowed answer learned into the FQDN cache before
 * the client sees it), and bytes that are no DNS message dropped by the DNS proxy.
 */
import { DNS_RCODE_NOERROR, evaluateDns, evaluateL7, kafkaApiKeyName, toFqdn } from "../policy/index.ts";
import type { DnsSpec } from "../node/cluster.ts";
import { EVENT_L7, type FlowEvent } from "../host/flows.ts";
import { buildFrame, decodeFrame, TCP_FLAGS } from "./packets.ts";
import type { Ctx } from "./flow-result.ts";
import { FlowEvents } from "./flow-events.ts";

export class L7Proxy extends FlowEvents {
  /** Hubble's view of the flow's L7 request or response (flow.proto Layer7) and its Summary. */
  private l7View(ctx: Ctx, type: "REQUEST" | "RESPONSE", host: string, v: { status?: number; errorCode?: number }): { l7: NonNullable<FlowEvent["l7"]>; summary: string; event: string } {
    if (ctx.http) {
      const url = `http://${ctx.http.host ?? host}${ctx.http.path}`;
      const http = { ...(type === "RESPONSE" ? { code: v.status ?? 0 } : {}), method: ctx.http.method, url, protocol: "HTTP/1.1" };
      const summary = type === "REQUEST" ? `HTTP/1.1 ${ctx.http.method} ${url}` : `HTTP/1.1 ${v.status} 0ms (${ctx.http.method} ${url})`;
      return { l7: { type, http }, summary, event: `http-${type.toLowerCase()}` };
    }
    if (ctx.kafka) {
      const k = ctx.kafka;
      const apiKey = kafkaApiKeyName(k.apiKey);
      const topic = k.topics.join(",");
      const kafka = { error_code: v.errorCode ?? 0, api_version: k.apiVersion, api_key: apiKey, correlation_id: 1, topic };
      // As Cilium's Hubble parser words Kafka summaries (pkg/hubble/parser/seven).
      const summary = type === "REQUEST" ? `Kafka request ${apiKey} correlation id 1 topic '${topic}'` : `Kafka response ${apiKey} correlation id 1 topic '${topic}' return code ${v.errorCode ?? 0}`;
      return { l7: { type, kafka }, summary, event: `kafka-${type.toLowerCase()}` };
    }
    // Hubble has no TLS record: ciliate shows the ClientHello's server name in the same place.
    const sni = ctx.tls?.serverName;
    return { l7: { type, tls: { server_name: sni ?? "" } }, summary: `TLS ClientHello ${sni ? `server name ${sni}` : "without server name"}`, event: "tls-client-hello" };
  }

  /** Judges the flow's L7 request at the proxy; returns false when the proxy refuses it. */
  protected proxyRequest(ctx: Ctx, frame: Uint8Array, ids: { src: number; dst: number }): boolean {
    const red = ctx.redirect!;
    const v = evaluateL7(this.policyAt(red.node), { proxyPort: red.port, remoteIdentity: red.remoteIdentity }, { http: ctx.http, kafka: ctx.kafka, tls: ctx.tls });
    if (!v) return true;
    const d = decodeFrame(frame)!;
    const host = ctx.result.service ? `${ctx.result.service.name}.${ctx.result.service.namespace}.svc.cluster.local` : d.dst;
    ctx.result.l7 = { protocol: v.protocol, verdict: v.allowed ? "allowed" : "denied", status: v.status, errorCode: v.errorCode, direction: red.direction, proxyPort: red.port, reason: v.reason, rule: v.rule };
    const dir: FlowEvent["traffic_direction"] = red.direction === "ingress" ? "INGRESS" : "EGRESS";
    const refs = v.rule ? [{ kind: v.rule.provenance.kind, name: v.rule.provenance.name, namespace: v.rule.provenance.namespace, rule_index: v.rule.provenance.ruleIndex, element: v.rule.provenance.element }] : [];
    const req = this.l7View(ctx, "REQUEST", host, v);
    this.event(ctx, red.node, frame, ids, {
      event: req.event,
      verdict: v.allowed ? "FORWARDED" : "DROPPED",
      type: EVENT_L7,
      direction: dir,
      reply: false,
      extra: { Type: "L7", l7: req.l7, Summary: req.summary, proxy_port: red.port, ...(v.allowed && refs.length ? { [`${red.direction}_allowed_by`]: refs } : {}) },
    });
    if (!v.allowed) {
      // The proxy answers in the protocol's own way (HTTP 403, Kafka error response); TLS gets a reset,
      // and so does a request the proxy could not parse (another protocol than the listener's).
      if ((v.protocol === "http" && ctx.http) || (v.protocol === "kafka" && ctx.kafka)) {
        const back = buildFrame({ src: d.dst, dst: d.src, proto: "TCP", sport: d.dport, dport: d.sport, tcpFlags: TCP_FLAGS.PSH | TCP_FLAGS.ACK });
        const resp = this.l7View(ctx, "RESPONSE", host, v);
        this.event(ctx, red.node, back, { src: ids.dst, dst: ids.src }, {
          event: resp.event,
          verdict: "FORWARDED",
          type: EVENT_L7,
          direction: dir,
          reply: true,
          extra: { Type: "L7", l7: resp.l7, Summary: resp.summary, proxy_port: red.port },
        });
      }
      ctx.result.verdict = "denied";
      ctx.l7Denied = true;
      ctx.stopped = true;
      return false;
    }
    return true;
  }

  protected l7Response(ctx: Ctx, frame: Uint8Array, ids: { src: number; dst: number }): void {
    const red = ctx.redirect!;
    if (!ctx.result.l7 || ctx.result.l7.protocol === "tls" || ctx.result.l7.protocol === "dns") return;
    const d = decodeFrame(frame)!;
    const host = ctx.result.service ? `${ctx.result.service.name}.${ctx.result.service.namespace}.svc.cluster.local` : d.src;
    const resp = this.l7View(ctx, "RESPONSE", host, { status: 200, errorCode: 0 });
    this.event(ctx, red.node, frame, ids, {
      event: resp.event,
      verdict: "FORWARDED",
      type: EVENT_L7,
      direction: red.direction === "ingress" ? "INGRESS" : "EGRESS",
      reply: true,
      extra: { Type: "L7", l7: resp.l7, Summary: resp.summary, proxy_port: red.port },
    });
  }

  /**
   * The DNS proxy's decision on a query (cilium/cilium pkg/fqdn/dnsproxy: an allowed query is forwarded to
   * the original destination, a denied one is answered REFUSED by the proxy itself and never reaches the
   * resolver). Returns false when the query was refused.
   */
  protected proxyDnsQuery(ctx: Ctx, frame: Uint8Array, ids: { src: number; dst: number }): boolean {
    const red = ctx.redirect!;
    const dns = ctx.dns!;
    const v = evaluateDns(this.policyAt(red.node), { proxyPort: red.port, remoteIdentity: red.remoteIdentity }, dns.query);
    const q = toFqdn(dns.query);
    const qtypes = dnsQtypes(dns);
    const rule = v.rule && { provenance: v.rule.provenance, index: v.rule.index, dns: v.rule.rule };
    ctx.result.l7 = { verdict: v.allowed ? "allowed" : "denied", rcode: v.rcode, protocol: "dns", direction: red.direction, proxyPort: red.port, reason: v.reason, rule };
    const refs = v.rule ? [{ kind: v.rule.provenance.kind, name: v.rule.provenance.name, namespace: v.rule.provenance.namespace, rule_index: v.rule.provenance.ruleIndex, element: v.rule.provenance.element }] : [];
    this.event(ctx, red.node, frame, ids, {
      event: "dns-request proxy",
      verdict: v.allowed ? "FORWARDED" : "DROPPED",
      type: EVENT_L7,
      direction: "EGRESS",
      reply: false,
      extra: {
        Type: "L7",
        l7: { type: "REQUEST", dns: { query: q, qtypes, ...(v.allowed ? {} : { rcode: v.rcode }) } },
        Summary: `DNS Query ${q} ${qtypes.join(",")}`,
        proxy_port: red.port,
        ...(v.allowed && refs.length ? { egress_allowed_by: refs } : {}),
      },
    });
    if (!v.allowed) {
      ctx.result.verdict = "denied";
      ctx.l7Denied = true;
      ctx.stopped = true;
      return false;
    }
    return true;
  }

  /**
   * Bytes that are not a DNS message, sent to a DNS proxy port: the node's DNS proxy cannot parse them and
   * drops them (agent/proxy/dns-udp.ts; over TCP it never sees a whole message and answers nothing), so the
   * flow is denied here too — a flow to a DNS port needs `dns: {query}` to be judged as a query.
   */
  protected proxyDropsNonDns(ctx: Ctx): void {
    const red = ctx.redirect!;
    ctx.result.l7 = { verdict: "denied", protocol: "dns", direction: red.direction, proxyPort: red.port, reason: "not a DNS query: the DNS proxy drops it (give the flow dns: {query: …})" };
    ctx.result.verdict = "denied";
    ctx.l7Denied = true;
    ctx.stopped = true;
  }

  /** The resolver's answer passes the DNS proxy: its addresses are learned (policy rewritten) before the client sees it. */
  protected dnsResponse(ctx: Ctx, frame: Uint8Array, ids: { src: number; dst: number }): void {
    const red = ctx.redirect!;
    const dns = ctx.dns!;
    const q = toFqdn(dns.query);
    const learned = this.fqdn.learn(q, dns.answers, dns.ttl, this.fqdnNow());
    if (learned.changed) this.refreshFqdnPolicy();
    if (ctx.result.l7) ctx.result.l7.learned = [...dns.answers];
    const rrtypes = [...new Set(dns.answers.map((a) => (a.includes(":") ? "AAAA" : "A")))];
    this.event(ctx, red.node, frame, ids, {
      event: "dns-response proxy",
      verdict: "FORWARDED",
      type: EVENT_L7,
      direction: "EGRESS",
      reply: true,
      extra: {
        Type: "L7",
        l7: { type: "RESPONSE", dns: { query: q, ips: [...dns.answers], ttl: dns.ttl, rcode: DNS_RCODE_NOERROR, qtypes: dnsQtypes(dns), rrtypes } },
        Summary: `DNS Answer "${dns.answers.join(",")}" TTL: ${dns.ttl} (Proxy ${q} ${dnsQtypes(dns).join(",")})`,
        proxy_port: red.port,
      },
    });
  }
}

/** The query types a DNS flow stands for: AAAA when every expected answer is IPv6, else A. */
function dnsQtypes(d: DnsSpec): string[] {
  return d.answers.length && d.answers.every((a) => a.includes(":")) ? ["AAAA"] : ["A"];
}
