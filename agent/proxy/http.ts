/*
 * The HTTP/1.1 proxy handler: each redirected connection is served by Node's own HTTP server parser
 * (an http.Server that is handed the socket, never listening itself), so keep-alive, pipelining, chunked
 * bodies and malformed input are handled by llhttp, not by us. Every request is judged by policy/'s
 * evaluateHttp at this listener for the remote identity, with the policy read per request:
 *   - allowed: forwarded on this client's own upstream connection (an http.Agent whose one socket is
 *     conn.connectUpstream(), so the destination sees the client's address), the response streamed back;
 *   - denied: answered `403 Access denied` as Envoy does (text/plain, body "Access denied\r\n"), the body
 *     of the request discarded, and the connection stays open for the next request.
 * An upstream that cannot be reached gets Envoy's 503 "upstream connect error". Hop-by-hop headers are
 * not forwarded (RFC 9110 §7.6.1); Node re-frames bodies (Content-Length or chunked) on each side — a
 * chunked request body is forwarded chunked whatever the method (Node's client chunks only POST-like
 * methods by itself; a GET body written unframed would be read upstream as further requests, never judged). The
 * headerMatches mismatch actions of the allowing rule (ADD, DELETE, REPLACE) edit the forwarded request.
 */
import { Agent, ClientRequest, createServer, IncomingMessage, request as httpRequest, ServerResponse, type Server } from "node:http";
import type { Socket } from "node:net";
import { evaluateHttp, httpHeaderEdits, type HttpHeaderEdit } from "../../policy/index.ts";
import { flowEvent, l7ContextOf, nowNs, ruleReason } from "./common.ts";
import type { ProxyHandler, ProxyHandlerContext, RedirectedConnection } from "./types.ts";

const HOP_BY_HOP = new Set(["connection", "keep-alive", "proxy-connection", "transfer-encoding", "te", "trailer", "upgrade", "proxy-authenticate", "proxy-authorization"]);
export const ACCESS_DENIED_BODY = "Access denied\r\n";
const UPSTREAM_ERROR_BODY = "upstream connect error or disconnect/reset before headers";

/** Raw header pairs minus hop-by-hop ones (and those the Connection header names). */
function forwardHeaders(raw: string[]): string[] {
  const named = new Set<string>();
  for (let i = 0; i < raw.length; i += 2) if (raw[i].toLowerCase() === "connection") for (const t of raw[i + 1].split(",")) named.add(t.trim().toLowerCase());
  const out: string[] = [];
  for (let i = 0; i < raw.length; i += 2) {
    const k = raw[i].toLowerCase();
    if (!HOP_BY_HOP.has(k) && !named.has(k)) out.push(raw[i], raw[i + 1]);
  }
  return out;
}

/** Applies the rule's header edits (headerMatches mismatch actions) to raw header pairs. */
function applyEdits(raw: string[], edits: HttpHeaderEdit[]): string[] {
  let out = raw;
  for (const e of edits) {
    const name = e.name.toLowerCase();
    if (e.action !== "ADD") out = out.filter((_, i) => (i % 2 === 0 ? out[i] : out[i - 1]).toLowerCase() !== name);
    if (e.action !== "DELETE") out = [...out, e.name, e.value];
  }
  return out;
}

/** Header map for the rules: names lower-cased, repeated headers joined with "," (RFC 9110 §5.3). */
function headerMap(req: IncomingMessage): Record<string, string> {
  const out: Record<string, string> = {};
  for (let i = 0; i < req.rawHeaders.length; i += 2) {
    const k = req.rawHeaders[i].toLowerCase();
    out[k] = out[k] === undefined ? req.rawHeaders[i + 1] : `${out[k]},${req.rawHeaders[i + 1]}`;
  }
  return out;
}

interface ConnState {
  conn: RedirectedConnection;
  ctx: ProxyHandlerContext;
  agent: Agent;
}

export class HttpProxyHandler implements ProxyHandler {
  readonly protocol = "http" as const;
  private readonly server: Server;
  private readonly state = new WeakMap<Socket, ConnState>();

  constructor(opts: { maxHeaderSize?: number } = {}) {
    this.server = createServer({ maxHeaderSize: opts.maxHeaderSize ?? 16384, keepAlive: true }, (req, res) => this.onRequest(req, res, false));
    // A transparent proxy must not end idle client connections Node's way (5 s); the client and the
    // destination decide when a connection ends. An idle upstream socket is simply reopened on the next request.
    this.server.keepAliveTimeout = 0;
    // Judge before telling the client to send its body.
    this.server.on("checkContinue", (req, res) => this.onRequest(req, res, true));
    this.server.on("clientError", (err: NodeJS.ErrnoException, socket: Socket) => {
      const st = this.state.get(socket);
      if (st) st.ctx.emit({ ...flowEvent(st.conn, "http", "REQUEST", "ERROR", `malformed HTTP request: ${err.code ?? err.message}`), http: { method: "", url: "", protocol: "HTTP/1.1" } });
      if (socket.writable && !(socket as Socket & { _httpMessage?: unknown })._httpMessage) socket.end(`HTTP/1.1 ${err.code === "HPE_HEADER_OVERFLOW" ? "431 Request Header Fields Too Large" : "400 Bad Request"}\r\nconnection: close\r\ncontent-length: 0\r\n\r\n`);
      else socket.destroy();
    });
  }

  handle(conn: RedirectedConnection, ctx: ProxyHandlerContext): void {
    const agent = new Agent({ keepAlive: true, maxSockets: 1 });
    // The one upstream socket of this client connection, connected transparently by the framework.
    (agent as unknown as { createConnection: (o: unknown, cb: (err: Error | null, s?: Socket) => void) => undefined }).createConnection = (_o, cb) => {
      conn.connectUpstream().then(
        (s) => cb(null, s),
        (e: Error) => cb(e),
      );
      return undefined;
    };
    this.state.set(conn.client, { conn, ctx, agent });
    conn.client.on("close", () => agent.destroy());
    conn.client.on("error", () => agent.destroy());
    this.server.emit("connection", conn.client);
  }

  private onRequest(req: IncomingMessage, res: ServerResponse, expectsContinue: boolean): void {
    const st = this.state.get(req.socket);
    if (!st) {
      res.destroy();
      return;
    }
    const { conn, ctx, agent } = st;
    const start = nowNs();
    const url = req.url ?? "/";
    const host = req.headers.host ?? "";
    const http = { method: req.method ?? "", url: `http://${host}${url}`, protocol: `HTTP/${req.httpVersion}` };
    const request = { method: req.method ?? "", path: url, host, headers: headerMap(req) };
    const v = evaluateHttp(ctx.policy(), l7ContextOf(conn), request);
    const reason = ruleReason(v);
    ctx.emit({ ...flowEvent(conn, "http", "REQUEST", v.allowed ? "FORWARDED" : "DROPPED", reason), http });
    const respond = (code: number, verdict: "FORWARDED" | "ERROR", why: string) =>
      ctx.emit({ ...flowEvent(conn, "http", "RESPONSE", verdict, why), latencyNs: Number(nowNs() - start), http: { ...http, code } });
    if (!v.allowed) {
      req.resume(); // discard the body; the connection stays usable
      res.writeHead(403, { "content-type": "text/plain", "content-length": Buffer.byteLength(ACCESS_DENIED_BODY) });
      res.end(ACCESS_DENIED_BODY);
      respond(403, "FORWARDED", reason);
      return;
    }
    if (expectsContinue) res.writeContinue();
    const headers = applyEdits(forwardHeaders(req.rawHeaders), v.rule?.rule ? httpHeaderEdits(v.rule.rule, request) : []);
    // llhttp accepted the request, so a Transfer-Encoding means a chunked body (never with a Content-Length).
    if (req.headers["transfer-encoding"] !== undefined) headers.push("Transfer-Encoding", "chunked");
    const up: ClientRequest = httpRequest({ agent, method: req.method, path: url, headers: headers as unknown as Record<string, string>, setHost: false });
    up.on("response", (ur) => {
      res.writeHead(ur.statusCode ?? 502, ur.statusMessage, forwardHeaders(ur.rawHeaders) as unknown as Record<string, string>);
      ur.pipe(res);
      ur.on("error", () => res.destroy());
      respond(ur.statusCode ?? 0, "FORWARDED", reason);
    });
    up.on("error", (e: Error) => {
      ctx.upstreamError("http");
      if (!res.headersSent) {
        res.writeHead(503, { "content-type": "text/plain", "content-length": Buffer.byteLength(UPSTREAM_ERROR_BODY) });
        res.end(UPSTREAM_ERROR_BODY);
      } else res.destroy();
      respond(503, "ERROR", `upstream: ${e.message}`);
    });
    req.pipe(up);
  }
}
