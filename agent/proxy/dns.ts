/*
 * The node's DNS proxy (cilium/cilium pkg/fqdn/dnsproxy): every DNS query the datapath redirected from a
 * pod is judged by policy/'s rules.dns (evaluateDns, the implementation the simulator and `trace` use) for
 * the resolver it was sent to. A denied query is answered by the proxy itself with REFUSED (Cilium's
 * default --tofqdns-dns-reject-response-code) and never reaches the resolver. An allowed query is
 * forwarded to the original destination; the A/AAAA addresses of its answer are learned (FQDN cache →
 * CIDR identities and toFQDNs entries) and only once the node's maps allow them is the answer passed to
 * the client, as Cilium holds the response until the ipcache and policy updates are written. The proxy
 * never forwards a query it cannot parse.
 *
 * Wire format: dns-packet. Transports: UDP through a transparent socket (udp-transparent.ts) and TCP
 * (RFC 1035 §4.2.2 two-byte length prefix) as a ProxyHandler over a RedirectedConnection.
 */
import dnsPacket from "dns-packet";
import type { Socket } from "node:net";
import { DNS_RCODE_REFUSED, evaluateDns, toFqdn } from "../../policy/index.ts";
import { flowEvent, nowNs, ruleReason } from "./common.ts";
import type { L7FlowEvent, ProxyHandler, ProxyHandlerContext, ProxyPeer, RedirectedConnection } from "./types.ts";

/** RFC 1035 response codes the proxy itself answers with. */
export const RCODE_SERVFAIL = 2;
/** How long the proxy waits for the resolver (Cilium's DNS proxy uses a few seconds as well). */
export const DNS_UPSTREAM_TIMEOUT_MS = 5000;

export interface DnsProxyContext extends ProxyHandlerContext {
  /**
   * Records the addresses of an allowed answer for `name` with its TTL; resolves once the node's ipcache
   * and policy maps allow them, so the client never sees an address it may not reach yet.
   */
  learn(name: string, ips: string[], ttl: number): Promise<void> | void;
}

/** Where a query came from and was headed, as the datapath redirected it. */
export interface DnsQueryOrigin {
  source: ProxyPeer;
  destination: ProxyPeer;
  proxyPort: number;
  /** UDP for a datagram; TCP (the default) for a query on a redirected connection. */
  l4?: "TCP" | "UDP";
}

type Packet = ReturnType<typeof dnsPacket.decode>;

const RCODE_NAMES: Record<number, string> = { 0: "NOERROR", 1: "FORMERR", 2: "SERVFAIL", 3: "NXDOMAIN", 4: "NOTIMP", 5: "REFUSED" };

/** A response to `q` carrying only its question and `rcode` (the proxy's own answer). */
export function dnsErrorResponse(q: Packet, rcode: number): Buffer {
  const rd = (q.flags ?? 0) & dnsPacket.RECURSION_DESIRED;
  return dnsPacket.encode({
    id: q.id,
    type: "response",
    // dns-packet keeps the rcode in the low 4 bits of flags.
    flags: rd | dnsPacket.RECURSION_AVAILABLE | (rcode & 0xf),
    questions: q.questions ?? [],
    answers: [],
  });
}

function rcodeOf(p: Packet): number {
  return (p.flags ?? 0) & 0xf;
}

/** The A/AAAA addresses of an answer and the smallest TTL among them. */
export function answerAddresses(p: Packet): { ips: string[]; ttl: number; rrtypes: string[] } {
  const ips: string[] = [];
  const rrtypes = new Set<string>();
  let ttl = Number.MAX_SAFE_INTEGER;
  for (const a of p.answers ?? []) {
    rrtypes.add(a.type);
    if ((a.type === "A" || a.type === "AAAA") && typeof a.data === "string") {
      ips.push(a.data);
      ttl = Math.min(ttl, a.ttl ?? 0);
    }
  }
  return { ips: [...new Set(ips)], ttl: ips.length ? ttl : 0, rrtypes: [...rrtypes] };
}

function baseEvent(o: DnsQueryOrigin, type: L7FlowEvent["type"], verdict: L7FlowEvent["verdict"], reason: string): L7FlowEvent {
  const e = flowEvent({ source: o.source, destination: o.destination, direction: "egress", proxyPort: o.proxyPort } as RedirectedConnection, "dns", type, verdict, reason);
  return o.l4 === "UDP" ? { ...e, l4: "UDP" } : e;
}

/**
 * One query through the proxy: returns the bytes to send back to the client, or undefined when nothing is
 * sent (a message that is not a DNS query: dropped, as Cilium's proxy drops what it cannot parse).
 * `forward` sends the query to the original destination and returns its answer.
 */
export async function proxyDnsQuery(msg: Buffer, o: DnsQueryOrigin, ctx: DnsProxyContext, forward: (q: Buffer) => Promise<Buffer>): Promise<Buffer | undefined> {
  const t0 = nowNs();
  let q: Packet;
  try {
    q = dnsPacket.decode(msg);
  } catch (e) {
    ctx.emit(baseEvent(o, "REQUEST", "ERROR", `not a DNS message: ${(e as Error).message}; dropped`));
    return undefined;
  }
  const question = q.questions?.[0];
  if (q.type !== "query" || !question) {
    ctx.emit(baseEvent(o, "REQUEST", "ERROR", "a DNS message without a question; dropped"));
    return undefined;
  }
  const name = toFqdn(question.name);
  const qtypes = (q.questions ?? []).map((x) => x.type);
  // Every question must be allowed (a message normally carries one).
  const verdicts = (q.questions ?? []).map((x) => evaluateDns(ctx.policy(), { proxyPort: o.proxyPort, remoteIdentity: o.destination.identity }, x.name));
  const denied = verdicts.find((v) => !v.allowed);
  if (denied) {
    ctx.emit({ ...baseEvent(o, "REQUEST", "DROPPED", denied.reason), dns: { query: name, qtypes, rcode: DNS_RCODE_REFUSED } });
    return dnsErrorResponse(q, DNS_RCODE_REFUSED);
  }
  ctx.emit({ ...baseEvent(o, "REQUEST", "FORWARDED", ruleReason(verdicts[0]!)), dns: { query: name, qtypes } });
  let answer: Buffer;
  let r: Packet;
  try {
    answer = await forward(msg);
    r = dnsPacket.decode(answer);
  } catch (e) {
    ctx.upstreamError("dns");
    ctx.emit({ ...baseEvent(o, "RESPONSE", "ERROR", `resolver ${o.destination.ip}:${o.destination.port}: ${(e as Error).message}`), dns: { query: name, qtypes, rcode: RCODE_SERVFAIL } });
    return dnsErrorResponse(q, RCODE_SERVFAIL);
  }
  const { ips, ttl, rrtypes } = answerAddresses(r);
  if (ips.length) {
    await ctx.learn(name, ips, ttl);
    // A CNAME chain: the addresses also belong to the names they were given for.
    for (const a of r.answers ?? [])
      if ((a.type === "A" || a.type === "AAAA") && toFqdn(a.name) !== name) await ctx.learn(a.name, [String(a.data)], a.ttl ?? 0);
  }
  const rcode = rcodeOf(r);
  ctx.emit({
    ...baseEvent(o, "RESPONSE", "FORWARDED", `${RCODE_NAMES[rcode] ?? `rcode ${rcode}`}${ips.length ? `; learned ${ips.join(", ")} for ${ttl}s` : ""}`),
    latencyNs: Number(nowNs() - t0),
    dns: { query: name, ips, ttl, rcode, qtypes, rrtypes },
  });
  return answer;
}

/** Splits a TCP byte stream into RFC 1035 §4.2.2 messages (two-byte big-endian length prefix). */
export class TcpDnsFramer {
  private buf: Buffer = Buffer.alloc(0);

  push(chunk: Buffer): Buffer[] {
    this.buf = this.buf.length ? Buffer.concat([this.buf, chunk]) : chunk;
    const out: Buffer[] = [];
    while (this.buf.length >= 2) {
      const n = this.buf.readUInt16BE(0);
      if (this.buf.length < 2 + n) break;
      out.push(this.buf.subarray(2, 2 + n));
      this.buf = this.buf.subarray(2 + n);
    }
    return out;
  }
}

export function tcpFrame(msg: Buffer): Buffer {
  const len = Buffer.alloc(2);
  len.writeUInt16BE(msg.length);
  return Buffer.concat([len, msg]);
}

/** Sends one framed query on `s` and resolves with the next framed message it returns. */
function tcpExchange(s: Socket, framer: TcpDnsFramer, q: Buffer): Promise<Buffer> {
  return new Promise((resolve, reject) => {
    const timer = setTimeout(() => done(new Error(`no answer within ${DNS_UPSTREAM_TIMEOUT_MS} ms`)), DNS_UPSTREAM_TIMEOUT_MS);
    const onData = (c: Buffer) => {
      const msgs = framer.push(c);
      if (msgs.length) done(undefined, msgs[0]);
    };
    const onClose = () => done(new Error("the resolver closed the connection"));
    const done = (e?: Error, m?: Buffer) => {
      clearTimeout(timer);
      s.off("data", onData);
      s.off("close", onClose);
      s.off("error", onClose);
      if (e) reject(e);
      else resolve(m!);
    };
    s.on("data", onData);
    s.once("close", onClose);
    s.once("error", onClose);
    s.write(tcpFrame(q));
  });
}

/**
 * DNS over TCP through the proxy framework: each framed query on the redirected connection is judged;
 * allowed ones go over one upstream connection (opened on the first allowed query), one at a time.
 */
export function createDnsTcpHandler(learn: DnsProxyContext["learn"]): ProxyHandler {
  return {
    protocol: "dns",
    handle(conn: RedirectedConnection, base: ProxyHandlerContext): void {
      const ctx: DnsProxyContext = { ...base, learn };
      const framer = new TcpDnsFramer();
      const upFramer = new TcpDnsFramer();
      let upstream: Promise<Socket> | undefined;
      let chain = Promise.resolve();
      const origin: DnsQueryOrigin = { source: conn.source, destination: conn.destination, proxyPort: conn.proxyPort };
      const forward = async (q: Buffer) => tcpExchange(await (upstream ??= conn.connectUpstream()), upFramer, q);
      conn.client.on("data", (chunk: Buffer) => {
        for (const m of framer.push(chunk))
          chain = chain.then(async () => {
            const reply = await proxyDnsQuery(m, origin, ctx, forward);
            if (reply && !conn.client.destroyed) conn.client.write(tcpFrame(reply));
            else if (!reply) conn.client.destroy();
          });
      });
      const close = () => {
        void upstream?.then((s) => s.destroy(), () => undefined);
      };
      conn.client.on("close", close);
      conn.client.on("error", () => conn.client.destroy());
    },
  };
}
