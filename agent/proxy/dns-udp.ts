/*
 * DNS over UDP through the node's DNS proxy: the transparent listeners of every DNS proxy port, each
 * datagram judged by proxyDnsQuery (dns.ts) with the identities the agent's ipcache gives its source and
 * original destination, allowed queries forwarded from the node to the original destination, and the
 * answer (or the proxy's REFUSED) sent back to the client from the resolver's address.
 */
import { createSocket } from "node:dgram";
import { DNS_UPSTREAM_TIMEOUT_MS, proxyDnsQuery, type DnsProxyContext } from "./dns.ts";
import { sendUdpFrom, TransparentUdpListeners, type UdpPeer } from "./udp-transparent.ts";

export interface DnsUdpProxyOptions {
  ctx: DnsProxyContext;
  /** Security identity of an address, from the agent's ipcache. */
  identityOf(ip: string): number;
  /**
   * skb->mark (SO_MARK) of the answers sent to clients: the mark by which the datapath recognises packets
   * from the egress proxy, so a reply of a redirected flow that the proxy itself sends is delivered, not
   * redirected back to the proxy. 0 = none.
   */
  replyMark?: number;
  log?: (level: "info" | "warn" | "error", msg: string) => void;
}

/** Sends `q` to `to` from an ephemeral node socket; resolves with the first datagram that comes back. */
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

export class DnsUdpProxy {
  private readonly listeners: TransparentUdpListeners;
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
      const reply = await proxyDnsQuery(msg, origin, this.o.ctx, (q) => udpExchange(orig, q));
      if (reply) sendUdpFrom(orig, from, reply, this.o.replyMark ?? 0);
    } catch (e) {
      this.o.log?.("error", `dns proxy: query from ${from.ip}:${from.port} to ${orig.ip}:${orig.port}: ${(e as Error).message}`);
    } finally {
      this.inFlight--;
    }
  }
}
