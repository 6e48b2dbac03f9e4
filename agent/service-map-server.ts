/*
 * The service map page `ciliate ui` serves (docs/observability.md#service-map-ciliate-ui): a static page
 * (agent/ui/index.html and service-map.js, plain JavaScript, no build step) and the JSON it polls, drawn
 * from a host/service-map.ts ServiceMap that the command fills — from a simulation or from an Observer
 * API's GetFlows stream. Read-only, on loopback only.
 *
 *   GET /                   the page
 *   GET /service-map.js     its script
 *   GET /api/graph          {source, status, error?, graph: {namespaces, nodes, edges, flows}}
 *   GET /api/edge?id=ID     {edge, connections: [...]} — the connections drawn on an edge, with their rules
 * Anything else is 404; a method other than GET or HEAD is 405.
 */
import { readFileSync } from "node:fs";
import { createServer, type Server } from "node:http";
import type { AddressInfo } from "node:net";
import { repoPath } from "../host/paths.ts";
import type { ServiceMap } from "../host/service-map.ts";

export interface ServiceMapSource {
  map: ServiceMap;
  /** What the map shows: `simulation of scenarios/starwars`, `unix:///var/run/ciliate/hubble.sock`. */
  source: string;
  /** `complete`, `following`, `connecting`, … as the command says. */
  status(): { state: string; error?: string };
}

export interface ServiceMapServer {
  url: string;
  close(): Promise<void>;
}

const ASSETS: Record<string, [file: string, type: string]> = {
  "/": ["agent/ui/index.html", "text/html; charset=utf-8"],
  "/index.html": ["agent/ui/index.html", "text/html; charset=utf-8"],
  "/service-map.js": ["agent/ui/service-map.js", "text/javascript; charset=utf-8"],
};

/** Serves the page on 127.0.0.1:`port` (0: any free port); resolves once listening. */
export function serveServiceMap(src: ServiceMapSource, port: number): Promise<ServiceMapServer> {
  const server: Server = createServer((req, res) => {
    const send = (code: number, type: string, body: string | Buffer) => {
      res.writeHead(code, { "content-type": type, "cache-control": "no-store", "x-content-type-options": "nosniff" });
      res.end(req.method === "HEAD" ? undefined : body);
    };
    if (req.method !== "GET" && req.method !== "HEAD") return send(405, "text/plain", "only GET\n");
    const url = new URL(req.url ?? "/", "http://localhost");
    const asset = ASSETS[url.pathname];
    if (asset) return send(200, asset[1], readFileSync(repoPath(asset[0])));
    const json = (o: unknown) => send(200, "application/json", JSON.stringify(o));
    if (url.pathname === "/api/graph") return json({ source: src.source, ...src.status(), graph: src.map.graph() });
    if (url.pathname === "/api/edge") {
      const id = url.searchParams.get("id") ?? "";
      const edge = src.map.graph().edges.find((e) => e.id === id);
      if (!edge) return send(404, "application/json", JSON.stringify({ error: `no edge ${JSON.stringify(id)}` }));
      return json({ edge, connections: src.map.connections(id) });
    }
    send(404, "text/plain", "not found\n");
  });
  return new Promise((resolve, reject) => {
    server.once("error", reject);
    server.listen(port, "127.0.0.1", () => {
      server.off("error", reject);
      const a = server.address() as AddressInfo;
      resolve({ url: `http://127.0.0.1:${a.port}/`, close: () =>
          new Promise<void>((r) => {
            server.close(() => r());
            // A page left open holds keep-alive connections: they end with the server.
            server.closeAllConnections();
          }),
      });
    });
  });
}
