/*
 * Test harness for the protocol handlers: a loopback listener that hands each accepted socket to a handler
 * as a RedirectedConnection whose upstream is a plain connection to a test server (no transparent sockets:
 * the framework's part is tested by agent/proxy/manager's own suites). Records every L7 event and upstream
 * error so tests can check what the node would report.
 */
import { connect, createServer, type AddressInfo, type Server, type Socket } from "node:net";
import type { CompiledPolicy } from "../../policy/index.ts";
import type { L7FlowEvent, L7Protocol, ProxyHandler, RedirectedConnection } from "./types.ts";

export interface Harness {
  port: number;
  events: L7FlowEvent[];
  upstreamErrors: L7Protocol[];
  /** Connections the handler opened upstream. */
  upstreamConnects: number;
  setPolicy(p: CompiledPolicy): void;
  close(): Promise<void>;
}

export async function startHarness(
  handler: ProxyHandler,
  policy: CompiledPolicy,
  o: { proxyPort: number; direction?: "ingress" | "egress"; sourceIdentity: number; destinationIdentity: number; upstreamPort: number },
): Promise<Harness> {
  let current = policy;
  const sockets = new Set<Socket>();
  const h: Harness = {
    port: 0,
    events: [],
    upstreamErrors: [],
    upstreamConnects: 0,
    setPolicy: (p) => (current = p),
    close: () =>
      new Promise<void>((resolve) => {
        for (const s of sockets) s.destroy();
        server.close(() => resolve());
      }),
  };
  const server: Server = createServer((client) => {
    sockets.add(client);
    client.on("close", () => sockets.delete(client));
    const conn: RedirectedConnection = {
      client,
      source: { ip: client.remoteAddress ?? "127.0.0.1", port: client.remotePort ?? 0, identity: o.sourceIdentity },
      destination: { ip: "127.0.0.1", port: o.upstreamPort, identity: o.destinationIdentity },
      direction: o.direction ?? "ingress",
      proxyPort: o.proxyPort,
      connectUpstream: () =>
        new Promise<Socket>((resolve, reject) => {
          h.upstreamConnects++;
          const s = connect({ host: "127.0.0.1", port: o.upstreamPort });
          sockets.add(s);
          s.on("close", () => sockets.delete(s));
          s.once("connect", () => resolve(s));
          s.once("error", reject);
        }),
    };
    handler.handle(conn, { policy: () => current, emit: (e) => h.events.push(e), upstreamError: (p) => h.upstreamErrors.push(p) });
  });
  await new Promise<void>((r) => server.listen(0, "127.0.0.1", r));
  h.port = (server.address() as AddressInfo).port;
  return h;
}

/** A port on loopback nothing listens on (bound then released). */
export async function closedPort(): Promise<number> {
  const s = createServer();
  await new Promise<void>((r) => s.listen(0, "127.0.0.1", r));
  const p = (s.address() as AddressInfo).port;
  await new Promise<void>((r) => s.close(() => r()));
  return p;
}
