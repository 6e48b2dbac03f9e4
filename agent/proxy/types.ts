/*
 * The contract between the node's proxy framework (agent/proxy/manager.ts: listeners, transparent sockets,
 * upstream connections, identity lookup) and the protocol handlers (agent/proxy/http.ts, kafka.ts, tls.ts,
 * dns.ts). Handlers judge with policy/'s one L7 implementation, the one the simulator and trace use.
 */
import type { Socket } from "node:net";
import type { CompiledPolicy } from "../../policy/index.ts";

export type L7Protocol = "http" | "kafka" | "dns" | "tls";

export interface ProxyPeer {
  ip: string;
  port: number;
  /** Security identity, from the agent's ipcache (the numbers the datapath uses), never guessed. */
  identity: number;
}

/** One TCP connection the datapath redirected to a ciliate proxy listener. */
export interface RedirectedConnection {
  /** The accepted socket; the client's bytes arrive here. */
  client: Socket;
  source: ProxyPeer;
  /** The original destination (the pod or address the client connected to). */
  destination: ProxyPeer;
  direction: "ingress" | "egress";
  /** The listener's proxy port: the key of its rules in CompiledPolicy.proxies. */
  proxyPort: number;
  /** Connects to the original destination so that it sees the client's own address. */
  connectUpstream(): Promise<Socket>;
}

/** An L7 flow as Hubble shows it (flow.proto Layer7): one request or response. */
export interface L7FlowEvent {
  type: "REQUEST" | "RESPONSE";
  protocol: L7Protocol;
  verdict: "FORWARDED" | "DROPPED" | "ERROR";
  source: ProxyPeer;
  destination: ProxyPeer;
  direction: "ingress" | "egress";
  proxyPort: number;
  /** The transport the L7 messages came over; TCP unless said (the DNS proxy's datagrams are UDP). */
  l4?: "TCP" | "UDP";
  latencyNs?: number;
  http?: { method: string; url: string; protocol: string; code?: number; headers?: { key: string; value: string }[] };
  kafka?: { errorCode: number; apiVersion: number; apiKey: string; correlationId: number; topic: string };
  dns?: { query: string; ips?: string[]; ttl?: number; rcode?: number; qtypes?: string[]; rrtypes?: string[] };
  tls?: { serverName: string };
  /** The rule that decided (policy kind/ns/name and rule index) or why nothing matched. */
  reason: string;
}

export interface ProxyHandlerContext {
  /** The current compiled policy: read it per request, so a policy change applies to the next request. */
  policy(): CompiledPolicy;
  emit(event: L7FlowEvent): void;
  /** Counts an upstream connect/IO error (metric). */
  upstreamError(protocol: L7Protocol): void;
}

export interface ProxyHandler {
  readonly protocol: L7Protocol;
  /** Serves one redirected connection until either side closes. Never forwards a byte the rules did not allow. */
  handle(conn: RedirectedConnection, ctx: ProxyHandlerContext): void;
}
