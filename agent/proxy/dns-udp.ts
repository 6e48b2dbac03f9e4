/*
 * DNS over UDP through the node's DNS proxy: the transparent listeners of every DNS proxy port, each
 * datagram judged by proxyDnsQuery (dns.ts) with the identities the agent's ipcache gives its source and
 * original destination, allowed queries forwarded to the original destination from the client's own
 * address and port (a transparent upstream socket per client and resolver, shared by the queries in flight
 * between them and matched to answers by DNS id), and the answer (or the proxy's REFUSED) sent back to the
 * client from the resolver's address. The resolver, and the datapath enforcing its ingress policy, see the
 * pod that asked, as with Cilium's transparent DNS proxy — never the node, whose identity (reserved:host) a
 * pod's ingress policy allows by default.
 */
import { createSocket } from "node:dgram";
import { DNS_UPSTREAM_TIMEOUT_MS, proxyDnsQuery, type DnsProxyContext } from "./dns.ts";
import { sendUdpFrom, TransparentUdpListeners, type UdpPeer } from "./udp-transparent.ts";

export interface DnsUdpProxyOptions {
  ctx: DnsProxyContext;
  /** Security identity of an address, from the agent's ipcache. */
  identityOf(ip: string): number;
  /**
   * skb->mark (SO_MARK) of what the proxy sends — answers to clients and queries to resolvers: the mark by
   * which the datapath recognises packets from the egress proxy, so a reply of a redirected flow that the
   * proxy itself sends is delivered, not redirected back to the proxy, and a query it forwards is not taken
   * for the pod's own. 0 = none.
   */
  replyMark?: number;
  log?: (level: "info" | "warn" | "error", msg: string) => void;
}

/** Sends `q` to `to` from an ephemeral node socket; resolves with the first datagram that comes back (the benchmark's direct path). */
export function udpExchange(to: UdpPeer, q: Buffer, timeoutMs = DNS_UPSTREAM_TIMEOUT_MS): Promise<Buffer> {
  return new Promise((resolve, reject) => {
    const s = createSocket(to.ip.includes(":") ? "udp6" : "udp4");
    const timer = setTimeout(() => finish(new Error(`no answer within ${timeoutMs} ms`)), timeoutMs);
    const finish = (e?: Error, m?: Buffer) => {
      clearTimeout(timer);
      s.close();
      if (e) reject(e);
      else resolve(m!);
    };
    s.once("message", (m, rinfo) => (rinfo.address === to.ip && rinfo.port === to.port ? finish(undefined, m) : undefined));
    s.once("error", (e) => finish(e));
    s.send(q, to.port, to.ip, (e) => (e ? finish(e) : undefined));
  });
}

/** A client's queries in flight to one resolver, over one upstream socket bound to the client's address. */
interface Upstream {
  socket: { send(msg: Buffer): void; close(): void };
  /** DNS id → the exchanges waiting for an answer with it, oldest first. */
  waiting: Map<number, ((answer: Buffer) => void)[]>;
  inFlight: number;
}

export class DnsUdpProxy {
  private readonly listeners: TransparentUdpListeners;
  /** "client ip port resolver ip port" → its upstream socket. */
  private readonly upstreams = new Map<string, Upstream>();
  /** Queries in flight (for tests and orderly shutdown). */
  inFlight = 0;

  constructor(private readonly o: DnsUdpProxyOptions) {
    const log = o.log ?? (() => undefined);
    this.listeners = new TransparentUdpListeners(
      (msg, from, orig, proxyPort) => void this.serve(msg, from, orig, proxyPort),
      (e) => log("warn", `dns proxy: ${e.message}`),
    );
  }

  /** Listens on exactly these proxy ports (the DNS listeners over UDP of the current policy). */
  sync(ports: Iterable<number>): void {
    const keep = new Set(ports);
    this.listeners.retain(keep);
    for (const p of keep) this.listeners.listen(p);
  }

  ports(): number[] {
    return this.listeners.ports();
  }

  close(): void {
    this.listeners.close();
    this.upstreams.clear();
  }

  /**
   * Sends the query `q` from the client's address `from` to the resolver `to` and resolves with the answer
   * carrying its id; rejects when none comes within the upstream timeout.
   */
  private exchangeFrom(from: UdpPeer, to: UdpPeer, q: Buffer, timeoutMs = DNS_UPSTREAM_TIMEOUT_MS): Promise<Buffer> {
    const key = `${from.ip} ${from.port} ${to.ip} ${to.port}`;
    let up = this.upstreams.get(key);
    if (!up) {
      const waiting: Upstream["waiting"] = new Map();
      const socket = this.listeners.openUpstream(from, to, this.o.replyMark ?? 0, (answer) => {
        if (answer.length < 12) return; // not a DNS message: ignored, as a resolver's stray datagram
        const queue = waiting.get(answer.readUInt16BE(0));
        queue?.shift()?.(answer);
      });
      up = { socket, waiting, inFlight: 0 };
      this.upstreams.set(key, up);
    }
    const u = up;
    const id = q.readUInt16BE(0);
    return new Promise<Buffer>((resolve, reject) => {
      const done = (e?: Error, answer?: Buffer) => {
        clearTimeout(timer);
        const queue = u.waiting.get(id);
        if (queue) {
          const i = queue.indexOf(onAnswer);
          if (i >= 0) queue.splice(i, 1);
          if (!queue.length) u.waiting.delete(id);
        }
        if (--u.inFlight === 0) {
          u.socket.close();
          this.upstreams.delete(key);
        }
        if (e) reject(e);
        else resolve(answer!);
      };
      const onAnswer = (answer: Buffer) => done(undefined, answer);
      const timer = setTimeout(() => done(new Error(`no answer within ${timeoutMs} ms`)), timeoutMs);
      u.inFlight++;
      u.waiting.set(id, [...(u.waiting.get(id) ?? []), onAnswer]);
      try {
        u.socket.send(q);
      } catch (e) {
        done(e as Error);
      }
    });
  }

  private async serve(msg: Buffer, from: UdpPeer, orig: UdpPeer, proxyPort: number): Promise<void> {
    this.inFlight++;
    try {
      const origin = {
        source: { ...from, identity: this.o.identityOf(from.ip) },
        destination: { ...orig, identity: this.o.identityOf(orig.ip) },
        proxyPort,
        l4: "UDP" as const,
      };
      const reply = await proxyDnsQuery(msg, origin, this.o.ctx, (q) => this.exchangeFrom(from, orig, q));
      if (reply) sendUdpFrom(orig, from, reply, this.o.replyMark ?? 0);
    } catch (e) {
      this.o.log?.("error", `dns proxy: query from ${from.ip}:${from.port} to ${orig.ip}:${orig.port}: ${(e as Error).message}`);
    } finally {
      this.inFlight--;
    }
  }
}
