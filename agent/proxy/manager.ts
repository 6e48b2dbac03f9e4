/*
 * The node's L7 proxy framework: one transparent listener per proxy port of this node's compiled policy
 * (CompiledPolicy.proxies), each connection handed to the ProxyHandler of the listener's protocol
 * (types.ts is the contract with the handlers).
 *
 * The datapath redirects only to ports the ProxyListeners map names, and the programs check the socket
 * itself before delivering (bpf/include/ciliate_proxy.h), so the map is the manager's promise: a port is
 * written only once its listener is listening, and deleted before the listener closes. A port whose
 * protocol has no handler, or whose listener cannot be opened, is never written: its traffic is dropped
 * with PROXY_LOOKUP_FAILED, never forwarded un-inspected.
 *
 * A redirected connection arrives with the client's address as its peer and the original destination as
 * its local address (IP_TRANSPARENT listener, bpf_sk_assign). Identities come from `identityOf`, the
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
}

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
}

interface OpenListener {
  port: number;
  server: Server;
  direction: "ingress" | "egress";
  protocol: L7Protocol;
  /** Whether its map entry is written (the listener is listening). */
  announced: boolean;
}

function plainIp(a: string | undefined): string {
  return (a ?? "").replace(/^::ffff:/, "");
}

export class ProxyManager {
  private readonly open = new Map<number, OpenListener>();
  private readonly connections = new Set<Socket>();
  /** Ports served by a proxy with its own sockets (the DNS proxy's UDP listener), announced through here. */
  private readonly external = new Map<number, "ingress" | "egress">();

  constructor(private readonly opts: ProxyManagerOptions) {}

  /** Ports with a listening proxy (announced to the datapath). */
  listening(): number[] {
    return [...this.open.values()].filter((l) => l.announced).map((l) => l.port).concat([...this.external.keys()]).sort((a, b) => a - b);
  }

  /**
   * Opens a listener for every wanted port that has none, closes those no longer wanted, and removes map
   * entries nobody listens for (left by an agent that died). Failures are logged; the port stays closed.
   */
  sync(): void {
    const want = this.opts.listeners();
    for (const [port, l] of this.open) {
      const w = want.get(port);
      if (!w || w.direction !== l.direction || w.protocol !== l.protocol) this.closeListener(port);
    }
    for (const [port, l] of want) if (!this.open.has(port)) this.openListener(port, l);
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
    let fd: number;
    try {
      fd = transparentListener(port, mark);
    } catch (e) {
      this.opts.log("error", `proxy port ${port}: ${(e as Error).message}; its traffic is dropped (PROXY_LOOKUP_FAILED)`);
      return;
    }
    const server = createServer((sock) => this.accept(entry, handler, sock, mark));
    const entry: OpenListener = { port, server, direction: l.direction, protocol, announced: false };
    this.open.set(port, entry);
    server.on("error", (e) => {
      this.opts.log("error", `proxy port ${port}: ${e.message}`);
      this.closeListener(port);
    });
    server.listen({ fd }, () => {
      if (this.open.get(port) !== entry) return;
      entry.announced = true;
      this.opts.map.set(port, l.direction);
      this.opts.log("info", `proxy port ${port} listening (${protocol}, ${l.endpoint} ${l.direction})`);
    });
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
    l.server.close();
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
