/*
 * The node's L7 proxy framework: one transparent listener per proxy port and address family of this node's
 * compiled policy (CompiledPolicy.proxies) — 0.0.0.0:<port>, and on a dual-stack node also [::]:<port> —
 * each connection handed to the ProxyHandler of the listener's protocol (types.ts is the contract with the
 * handlers).
 *
 * The datapath redirects only to ports the ProxyListeners map names, and the programs check the socket
 * itself, in the packet's family, before delivering (bpf/include/ciliate_proxy.h), so the map is the
 * manager's promise: a port is written only once a listener of it is listening, and deleted before its
 * last listener closes. A port whose protocol has no handler, or none of whose listeners can be opened, is
 * never written: its traffic is dropped with PROXY_LOOKUP_FAILED, never forwarded un-inspected. When only
 * one family's listener fails (say [::]:<port> on a host without IPv6), the port is written for the other
 * and the programs' socket lookup drops the failed family's packets with PROXY_LOOKUP_FAILED; the failure
 * is logged and counted (`listenerError`), and the listener is tried again at every sync.
 *
 * A redirected connection arrives with the client's address as its peer and the original destination as
 * its local address (IP(V6)_TRANSPARENT listener, bpf_sk_assign), IPv6 on the IPv6 listener. Identities come from `identityOf`, the
 * agent's ipcache map, the numbers the datapath enforced L3/L4 policy with. connectUpstream binds to the
 * client's own address and port, so the destination sees the client; the proxy's sockets carry
 * MARK_MAGIC_FROM_INGRESS_PROXY or MARK_MAGIC_FROM_EGRESS_PROXY so that the programs neither redirect the
 * ingress proxy's upstream again nor send the proxy's answers back to it.
 * Mirrors Cilium's pkg/proxy (proxy ports, redirects per listener) with our own sockets instead of Envoy.
 */
import { createServer, Socket, type Server } from "node:net";
import * as C from "../../host/constants.gen.ts";
import { transparentConnect, transparentListener } from "../../datapath/transparent-proxy.ts";
import type { CompiledPolicy, ProxyListener } from "../../policy/index.ts";
import type { L7FlowEvent, L7Protocol, ProxyHandler, ProxyHandlerContext, RedirectedConnection } from "./types.ts";

/** The datapath's ProxyListeners map, as the manager needs it. */
export interface ProxyListenerMap {
  set(port: number, direction: "ingress" | "egress"): void;
  delete(port: number): void;
  ports(): number[];
}

export interface ProxyMetricsSink {
  request(protocol: L7Protocol, verdict: L7FlowEvent["verdict"]): void;
  upstreamError(protocol: L7Protocol): void;
  /** A listener of `family` could not be opened (its traffic is dropped, PROXY_LOOKUP_FAILED). */
  listenerError?(family: "IPv4" | "IPv6"): void;
}

/** The address families the proxy listens in: 4 always, 6 on a dual-stack node. */
export type ProxyFamily = 4 | 6;

export interface ProxyManagerOptions {
  map: ProxyListenerMap;
  /** The listeners this node must serve, their rules in the datapath's identity numbering. */
  listeners(): Map<number, ProxyListener>;
  /** The policy the handlers judge with (its `proxies` are `listeners()`). */
  policy(): CompiledPolicy;
  /** The security identity of an address as the agent wrote it into the ipcache map. */
  identityOf(ip: string): number;
  handlers: Partial<Record<L7Protocol, ProxyHandler>>;
  emit(e: L7FlowEvent): void;
  metrics?: ProxyMetricsSink;
  log(level: "info" | "warn" | "error", msg: string): void;
  /** Upstream connect timeout (default 5 s). */
  connectTimeoutMs?: number;
  /**
   * The families to listen in (default [4]). A dual-stack node (`--enable-ipv6`) gives [4, 6], so that its
   * pods' IPv6 connections to an L7 port meet a proxy as their IPv4 ones do.
   */
  families?: ProxyFamily[];
}

interface OpenListener {
  port: number;
  /** The listening servers by family; a family missing here failed to open and is tried again at sync. */
  servers: Map<ProxyFamily, Server>;
  direction: "ingress" | "egress";
  protocol: L7Protocol;
  handler: ProxyHandler;
  mark: number;
  endpoint: string;
  /** Whether its map entry is written (a listener of it is listening). */
  announced: boolean;
}

const FAMILY_NAME: Record<ProxyFamily, "IPv4" | "IPv6"> = { 4: "IPv4", 6: "IPv6" };

function plainIp(a: string | undefined): string {
  return (a ?? "").replace(/^::ffff:/, "");
}

export class ProxyManager {
  private readonly open = new Map<number, OpenListener>();
  private readonly connections = new Set<Socket>();
  /** Ports served by a proxy with its own sockets (the DNS proxy's UDP listener), announced through here. */
  private readonly external = new Map<number, "ingress" | "egress">();
  /** "port/family" → the failure last logged for it, so that a retry failing the same way is not logged (or counted) again. */
  private readonly failed = new Map<string, string>();

  constructor(private readonly opts: ProxyManagerOptions) {}

  /** Ports with a listening proxy (announced to the datapath). */
  listening(): number[] {
    return [...this.open.values()].filter((l) => l.announced).map((l) => l.port).concat([...this.external.keys()]).sort((a, b) => a - b);
  }

  /**
   * Opens a listener for every wanted port and family that has none, closes those no longer wanted, and
   * removes map entries nobody listens for (left by an agent that died). A listener that cannot be opened
   * is logged and counted once per failure and tried again at the next sync; meanwhile its traffic is
   * dropped (PROXY_LOOKUP_FAILED).
   */
  sync(): void {
    const want = this.opts.listeners();
    for (const [port, l] of this.open) {
      const w = want.get(port);
      if (!w || w.direction !== l.direction || w.protocol !== l.protocol) this.closeListener(port);
    }
    for (const [port, l] of want) {
      const open = this.open.get(port);
      if (!open) this.openListener(port, l);
      else for (const family of this.families()) if (!open.servers.has(family)) this.openFamily(open, family);
    }
    for (const key of this.failed.keys()) if (!want.has(Number(key.split("/")[0]))) this.failed.delete(key);
    for (const port of this.opts.map.ports()) if (!this.open.get(port)?.announced && !this.external.has(port)) this.opts.map.delete(port);
  }

  /**
   * For a proxy that listens on its own sockets (e.g. a UDP DNS proxy bound transparently to 0.0.0.0:port):
   * call once it listens, so the datapath redirects to it; `withdraw` before it closes.
   */
  announce(port: number, direction: "ingress" | "egress"): void {
    this.external.set(port, direction);
    this.opts.map.set(port, direction);
  }

  withdraw(port: number): void {
    this.external.delete(port);
    if (!this.open.get(port)?.announced) this.opts.map.delete(port);
  }

  private families(): ProxyFamily[] {
    return this.opts.families ?? [4];
  }

  private openListener(port: number, l: ProxyListener): void {
    const protocol = l.protocol;
    const handler = this.opts.handlers[protocol];
    if (!handler) {
      this.opts.log("error", `proxy port ${port} (${l.endpoint} ${l.direction}): no ${protocol} proxy on this node; its traffic is dropped (PROXY_LOOKUP_FAILED)`);
      return;
    }
    if (l.l4Protocol === C.IPPROTO_UDP) {
      if (!this.external.has(port)) this.opts.log("error", `proxy port ${port} (${l.endpoint} ${l.direction}): UDP listeners are not served by this framework (a UDP proxy announces its port with announce()); until then its traffic is dropped (PROXY_LOOKUP_FAILED)`);
      return;
    }
    const mark = l.direction === "ingress" ? C.MARK_MAGIC_FROM_INGRESS_PROXY : C.MARK_MAGIC_FROM_EGRESS_PROXY;
    const entry: OpenListener = { port, servers: new Map(), direction: l.direction, protocol, handler, mark, endpoint: l.endpoint, announced: false };
    // Open before any listen callback runs; dropped again when no family could be opened (retried at sync).
    this.open.set(port, entry);
    for (const family of this.families()) this.openFamily(entry, family);
    if (entry.servers.size === 0) this.open.delete(port);
  }

  /** Opens `l`'s listener of `family`; the port is announced once the first of its listeners listens. */
  private openFamily(l: OpenListener, family: ProxyFamily): void {
    const name = FAMILY_NAME[family];
    const key = `${l.port}/${family}`;
    let fd: number;
    try {
      fd = transparentListener(l.port, l.mark, family);
    } catch (e) {
      const msg = (e as Error).message;
      if (this.failed.get(key) !== msg) {
        this.failed.set(key, msg);
        this.opts.log("error", `proxy port ${l.port} (${l.endpoint} ${l.direction}, ${name}): ${msg}; its ${name} traffic is dropped (PROXY_LOOKUP_FAILED) until the listener opens (tried again at every sync)`);
        this.opts.metrics?.listenerError?.(name);
      }
      return;
    }
    if (this.failed.delete(key)) this.opts.log("info", `proxy port ${l.port} (${name}): the listener opened after failing`);
    const server = createServer((sock) => this.accept(l, l.handler, sock, l.mark));
    l.servers.set(family, server);
    server.on("error", (e) => {
      this.opts.log("error", `proxy port ${l.port} (${name}): ${e.message}`);
      this.closeFamily(l, family);
    });
    server.listen({ fd }, () => {
      if (this.open.get(l.port) !== l || l.servers.get(family) !== server) return;
      this.opts.log("info", `proxy port ${l.port} listening (${l.protocol}, ${name}, ${l.endpoint} ${l.direction})`);
      if (l.announced) return;
      l.announced = true;
      this.opts.map.set(l.port, l.direction);
    });
  }

  /** Closes one family's listener; the last one closing closes the port (its map entry goes first). */
  private closeFamily(l: OpenListener, family: ProxyFamily): void {
    const server = l.servers.get(family);
    if (!server) return;
    if (l.servers.size === 1) {
      this.closeListener(l.port);
      return;
    }
    l.servers.delete(family);
    server.close();
  }

  private closeListener(port: number): void {
    const l = this.open.get(port);
    if (!l) return;
    // The map entry goes first: from here on the datapath drops new redirects instead of using the socket.
    // A port number is one entry for both transports: when a proxy with its own sockets (the UDP DNS proxy)
    // announced the same number — proxy ports are renumbered as the policy changes — its entry stays, and
    // TCP to the port finds no socket in the programs' lookup (dropped, 178).
    const external = this.external.get(port);
    if (external) this.opts.map.set(port, external);
    else this.opts.map.delete(port);
    l.announced = false;
    this.open.delete(port);
    for (const server of l.servers.values()) server.close();
    l.servers.clear();
  }

  private accept(l: OpenListener, handler: ProxyHandler, client: Socket, mark: number): void {
    const dst = { ip: plainIp(client.localAddress), port: client.localPort ?? 0 };
    const src = { ip: plainIp(client.remoteAddress), port: client.remotePort ?? 0 };
    if (dst.port === l.port) {
      // Someone connected to the proxy port itself: not a redirected flow, nothing to proxy.
      client.destroy();
      return;
    }
    this.connections.add(client);
    client.on("close", () => this.connections.delete(client));
    client.on("error", () => client.destroy());
    const timeout = this.opts.connectTimeoutMs ?? 5000;
    const conn: RedirectedConnection = {
      client,
      source: { ...src, identity: this.opts.identityOf(src.ip) },
      destination: { ...dst, identity: this.opts.identityOf(dst.ip) },
      direction: l.direction,
      proxyPort: l.port,
      connectUpstream: async () => {
        const fd = await transparentConnect(src, dst, mark, timeout);
        const up = new Socket({ fd, readable: true, writable: true });
        this.connections.add(up);
        up.on("close", () => this.connections.delete(up));
        return up;
      },
    };
    const ctx: ProxyHandlerContext = {
      policy: () => this.opts.policy(),
      emit: (e) => {
        if (e.type === "REQUEST") this.opts.metrics?.request(e.protocol, e.verdict);
        this.opts.emit(e);
      },
      upstreamError: (p) => this.opts.metrics?.upstreamError(p),
    };
    try {
      handler.handle(conn, ctx);
    } catch (e) {
      this.opts.log("error", `proxy port ${l.port}: ${l.protocol} handler failed: ${(e as Error).message}`);
      client.destroy();
    }
  }

  /** Closes every listener and connection and clears the map: the datapath drops redirects from now on. */
  close(): void {
    for (const port of [...this.open.keys()]) this.closeListener(port);
    this.external.clear();
    for (const port of this.opts.map.ports()) this.opts.map.delete(port);
    for (const s of this.connections) s.destroy();
    this.connections.clear();
  }
}
