/*
 * A minimal HTTP/1.1 handler, only so that the proxy framework (manager.ts) can be tested end to end before
 * the full handler (agent/proxy/http.ts, written against the same contract in types.ts) is on main; when it
 * is, handlers.ts returns it and this file goes. Node's own HTTP parser reads the client's requests; each
 * request is judged with policy/'s evaluateHttp (the simulator's implementation); a denied one gets
 * `403 Access denied` and the connection stays open for the next request (as Envoy does); an allowed one is
 * forwarded over one keep-alive upstream connection from the client's own address.
 */
import { Agent, createServer, request, type IncomingHttpHeaders } from "node:http";
import type { Socket } from "node:net";
import { evaluateHttp } from "../../policy/index.ts";
import type { L7FlowEvent, ProxyHandler, ProxyHandlerContext, RedirectedConnection } from "./types.ts";

function flatHeaders(h: IncomingHttpHeaders): Record<string, string> {
  const out: Record<string, string> = {};
  for (const [k, v] of Object.entries(h)) if (v !== undefined) out[k] = Array.isArray(v) ? v.join(", ") : v;
  return out;
}

export class MinimalHttpHandler implements ProxyHandler {
  readonly protocol = "http" as const;

  handle(conn: RedirectedConnection, ctx: ProxyHandlerContext): void {
    const upstreamAgent = new Agent({ keepAlive: true, maxSockets: 1 });
    // The upstream connection is made by the framework (transparent, the client's address).
    (upstreamAgent as unknown as { createConnection: (o: unknown, cb: (e: Error | null, s?: Socket) => void) => undefined }).createConnection = (_o, cb) => {
      conn.connectUpstream().then((s) => cb(null, s), (e: Error) => cb(e));
      return undefined;
    };
    const remoteIdentity = conn.direction === "ingress" ? conn.source.identity : conn.destination.identity;
    const server = createServer((req, res) => {
      const t0 = process.hrtime.bigint();
      const http = { method: req.method ?? "", url: req.url ?? "", protocol: `HTTP/${req.httpVersion}` };
      const v = evaluateHttp(ctx.policy(), { proxyPort: conn.proxyPort, remoteIdentity }, { method: http.method, path: http.url, host: req.headers.host, headers: flatHeaders(req.headers) });
      const event = (type: L7FlowEvent["type"], verdict: L7FlowEvent["verdict"], code?: number): L7FlowEvent => ({
        type, protocol: "http", verdict, source: conn.source, destination: conn.destination, direction: conn.direction, proxyPort: conn.proxyPort,
        reason: v.reason, http: { ...http, ...(code !== undefined ? { code } : {}) }, ...(type === "RESPONSE" ? { latencyNs: Number(process.hrtime.bigint() - t0) } : {}),
      });
      ctx.emit(event("REQUEST", v.allowed ? "FORWARDED" : "DROPPED"));
      if (!v.allowed) {
        req.resume();
        res.writeHead(403, { "content-type": "text/plain", "content-length": "15" });
        res.end("Access denied\r\n");
        ctx.emit(event("RESPONSE", "DROPPED", 403));
        return;
      }
      const up = request({ method: req.method, path: req.url, headers: req.headers, agent: upstreamAgent }, (ures) => {
        res.writeHead(ures.statusCode ?? 502, ures.headers);
        ures.pipe(res);
        ures.on("end", () => ctx.emit(event("RESPONSE", "FORWARDED", ures.statusCode)));
      });
      up.on("error", () => {
        ctx.upstreamError("http");
        ctx.emit(event("RESPONSE", "ERROR", 503));
        if (!res.headersSent) res.writeHead(503, { "content-type": "text/plain" });
        res.end("upstream connect error\r\n");
      });
      req.pipe(up);
    });
    conn.client.on("close", () => upstreamAgent.destroy());
    server.emit("connection", conn.client);
  }
}
