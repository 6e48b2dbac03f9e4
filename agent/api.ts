/*
 * The agent's local API: HTTP over a unix socket that only root can use (the socket is mode 0600, in a
 * 0700 directory when the agent creates it), as Cilium's agent API (/var/run/cilium/cilium.sock) that its CNI plugin talks to.
 *   POST /v1/cni/add    {containerId, netns, ifname, pod, cniVersion} → the CNI result
 *   POST /v1/cni/del    {containerId}                                   → {}
 *   POST /v1/cni/check  {containerId}                                   → {} or an error
 *   GET  /v1/endpoints                                                  → the endpoint records
 *   GET  /v1/healthz                                                    → {ok: true}
 * Errors answer {code, msg, details} with the CNI error code, HTTP status 400/500.
 */
import { chmodSync, existsSync, mkdirSync, unlinkSync } from "node:fs";
import { createServer, request, type IncomingMessage, type Server, type ServerResponse } from "node:http";
import { dirname } from "node:path";
import type { Agent } from "./agent.ts";
import { AgentError } from "./defaults.ts";

export type Route = (body: Record<string, unknown>, url: URL) => unknown;
/** A route that writes its own (streamed) response. */
export type StreamRoute = (url: URL, res: ServerResponse) => void;

function send(res: ServerResponse, status: number, body: unknown): void {
  const text = JSON.stringify(body);
  res.writeHead(status, { "content-type": "application/json", "content-length": Buffer.byteLength(text) });
  res.end(text);
}

/** Request bodies are small JSON objects (a CNI request is a few hundred bytes); anything larger is refused
 * before it is buffered, so a caller cannot make the agent hold unbounded memory. */
export const MAX_BODY_BYTES = 1 << 20;

async function readBody(req: IncomingMessage): Promise<Record<string, unknown>> {
  const chunks: Buffer[] = [];
  let size = 0;
  for await (const c of req) {
    size += (c as Buffer).length;
    if (size > MAX_BODY_BYTES) throw new AgentError("BODY_TOO_LARGE", `request body over ${MAX_BODY_BYTES} bytes`, 7);
    chunks.push(c as Buffer);
  }
  if (!chunks.length) return {};
  let v: unknown;
  try {
    v = JSON.parse(Buffer.concat(chunks).toString("utf8"));
  } catch (e) {
    throw new AgentError("BAD_JSON", `cannot decode the request body: ${(e as Error).message}`, 6);
  }
  // A route reads fields of an object; null, a list or a string would otherwise fail as a TypeError (500).
  if (!v || typeof v !== "object" || Array.isArray(v)) throw new AgentError("BAD_REQUEST", "the request body must be a JSON object", 7);
  return v as Record<string, unknown>;
}

/** Routes of the agent; extra routes (flows, …) can be added by the caller. */
export function agentRoutes(agent: Agent): Map<string, Route> {
  const r = new Map<string, Route>();
  r.set("GET /v1/healthz", () => ({ ok: true, endpoints: agent.endpointList().length }));
  r.set("GET /v1/endpoints", () => agent.endpointList());
  r.set("POST /v1/cni/add", (b) => {
    const ep = agent.addEndpoint({ containerId: String(b.containerId ?? ""), netns: String(b.netns ?? ""), ifname: String(b.ifname ?? "eth0"), pod: String(b.pod ?? "") });
    return agent.cniResult(ep, typeof b.cniVersion === "string" ? b.cniVersion : undefined);
  });
  r.set("POST /v1/cni/del", (b) => {
    agent.deleteEndpoint({ containerId: String(b.containerId ?? "") });
    return {};
  });
  r.set("POST /v1/cni/check", (b) => {
    const problems = agent.checkEndpoint({ containerId: String(b.containerId ?? "") });
    if (problems.length) throw new AgentError("CHECK_FAILED", problems.join("; "), 999);
    return {};
  });
  return r;
}

export function serveApi(socketPath: string, routes: Map<string, Route>, streams: Map<string, StreamRoute> = new Map()): Promise<Server> {
  // A directory we create is root-only; an existing one (e.g. /var/run) is left alone — the socket's own
  // mode 0600 is what keeps other users out (connect(2) needs write permission on it).
  if (!existsSync(dirname(socketPath))) mkdirSync(dirname(socketPath), { recursive: true, mode: 0o700 });
  if (existsSync(socketPath)) unlinkSync(socketPath);
  const server = createServer(async (req, res) => {
    // A path such as "//" is a URL with an empty host to the WHATWG parser, which throws: outside a try
    // that was an unhandled rejection, which ends the agent.
    let url: URL;
    try {
      url = new URL(req.url ?? "/", "http://agent");
    } catch {
      return send(res, 400, { code: 7, msg: `invalid request path ${JSON.stringify(req.url)}` });
    }
    const stream = streams.get(`${req.method} ${url.pathname}`);
    if (stream) return stream(url, res);
    const route = routes.get(`${req.method} ${url.pathname}`);
    if (!route) return send(res, 404, { code: 999, msg: `no route ${req.method} ${url.pathname}` });
    try {
      const body = req.method === "POST" ? await readBody(req) : {};
      const out = await route(body, url);
      send(res, 200, out ?? {});
    } catch (e) {
      const err = e as Error & { cniCode?: number; code?: string };
      const cniCode = err instanceof AgentError ? err.cniCode : err instanceof SyntaxError ? 6 : 999;
      const status = err instanceof AgentError && err.code === "BODY_TOO_LARGE" ? 413 : cniCode === 999 ? 500 : 400;
      // A refused body may still be arriving: answer, then stop reading it.
      if (status === 413) res.setHeader("connection", "close");
      send(res, status, { code: cniCode, msg: err.message, details: err.code ?? "" });
      if (status === 413) req.destroy();
    }
  });
  return new Promise((resolve, reject) => {
    // The socket is created 0600 (umask 0177 while it is bound), not chmod-ed afterwards: there is no
    // moment at which another user could connect.
    const umask = process.umask(0o177);
    const restore = () => process.umask(umask);
    server.once("error", (e) => {
      restore();
      reject(e);
    });
    server.listen(socketPath, () => {
      restore();
      chmodSync(socketPath, 0o600);
      resolve(server);
    });
  });
}

/** A call to the agent API. Resolves with {status, body}; rejects when the socket cannot be reached. */
export function callApi(socketPath: string, method: string, path: string, body?: unknown, timeoutMs = 60_000): Promise<{ status: number; body: unknown }> {
  return new Promise((resolve, reject) => {
    const data = body === undefined ? undefined : JSON.stringify(body);
    const req = request({ socketPath, method, path, headers: data ? { "content-type": "application/json", "content-length": Buffer.byteLength(data) } : {}, timeout: timeoutMs }, (res) => {
      const chunks: Buffer[] = [];
      res.on("data", (c: Buffer) => chunks.push(c));
      res.on("end", () => {
        const text = Buffer.concat(chunks).toString("utf8");
        try {
          resolve({ status: res.statusCode ?? 0, body: text ? JSON.parse(text) : {} });
        } catch {
          resolve({ status: res.statusCode ?? 0, body: { msg: text } });
        }
      });
    });
    req.on("timeout", () => req.destroy(new Error(`agent API timed out after ${timeoutMs} ms`)));
    req.on("error", reject);
    if (data) req.write(data);
    req.end();
  });
}
