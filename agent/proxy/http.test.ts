// The HTTP proxy handler on loopback: real Node HTTP clients and servers, the rules of a compiled policy.
import { Agent, createServer, request, type IncomingMessage, type Server } from "node:http";
import { connect, type AddressInfo } from "node:net";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { compileYaml, podsYaml } from "../../policy/test-helpers.ts";
import { HttpProxyHandler } from "./http.ts";
import { closedPort, startHarness, type Harness } from "./test-harness.ts";

const yaml =
  podsYaml([
    { ns: "x", name: "server", labels: { app: "server" } },
    { ns: "x", name: "client", labels: { app: "client" } },
  ]) +
  `\n---\napiVersion: cilium.io/v2\nkind: CiliumNetworkPolicy\nmetadata: {name: web, namespace: x}
spec:
  endpointSelector: {matchLabels: {app: server}}
  ingress:
  - fromEndpoints: [{matchLabels: {app: client}}]
    toPorts: [{ports: [{port: '8080', protocol: TCP}], rules: {http: [{method: GET, path: /public.*}, {method: POST, path: /upload, headers: ['X-Token: s3cret']}, {method: PUT, path: /edit, headerMatches: [{name: X-Team, value: blue, mismatch: REPLACE}, {name: X-Trace, value: on, mismatch: ADD}]}]}}]
`;

const { compiled } = compileYaml(yaml);
const listener = [...compiled.proxies.values()][0];
const ids = { source: compiled.identities.podIdentity.get("x/client")!, dest: compiled.identities.podIdentity.get("x/server")! };

let upstream: Server;
let seen: { method: string; url: string; body: string; headers: IncomingMessage["headers"]; remotePort: number }[] = [];
let h: Harness;

beforeAll(async () => {
  upstream = createServer((req, res) => {
    let body = "";
    req.on("data", (d) => (body += d));
    req.on("end", () => {
      seen.push({ method: req.method!, url: req.url!, body, headers: req.headers, remotePort: req.socket.remotePort! });
      res.setHeader("x-upstream", "yes");
      if (req.url === "/public/chunked") {
        res.write("part1-");
        res.end("part2");
      } else res.end(`ok ${req.method} ${req.url} ${body.length}`);
    });
  });
  await new Promise<void>((r) => upstream.listen(0, "127.0.0.1", r));
  h = await startHarness(new HttpProxyHandler(), compiled, { proxyPort: listener.proxyPort, sourceIdentity: ids.source, destinationIdentity: ids.dest, upstreamPort: (upstream.address() as AddressInfo).port });
});
afterAll(async () => {
  await h.close();
  await new Promise<void>((r) => upstream.close(() => r()));
});

function send(agent: Agent, method: string, path: string, body?: string | string[], headers: Record<string, string> = {}): Promise<{ status: number; body: string; headers: IncomingMessage["headers"]; localPort: number }> {
  return new Promise((resolve, reject) => {
    const req = request({ host: "127.0.0.1", port: h.port, method, path, agent, headers }, (res) => {
      let b = "";
      res.on("data", (d) => (b += d));
      res.on("end", () => resolve({ status: res.statusCode!, body: b, headers: res.headers, localPort: req.socket!.localPort! }));
    });
    req.on("error", reject);
    for (const part of Array.isArray(body) ? body : body !== undefined ? [body] : []) req.write(part);
    req.end();
  });
}

describe("HTTP proxy handler", () => {
  it("judges each request of one keep-alive connection; a 403 leaves the connection usable", async () => {
    seen = [];
    const agent = new Agent({ keepAlive: true, maxSockets: 1 });
    const a = await send(agent, "GET", "/public/a");
    const b = await send(agent, "GET", "/private");
    const c = await send(agent, "POST", "/public/a");
    const d = await send(agent, "GET", "/public/b");
    agent.destroy();
    expect([a.status, b.status, c.status, d.status]).toEqual([200, 403, 403, 200]);
    expect(b.body).toBe("Access denied\r\n");
    expect(b.headers["content-type"]).toBe("text/plain");
    expect(new Set([a.localPort, b.localPort, c.localPort, d.localPort]).size).toBe(1);
    expect(seen.map((s) => `${s.method} ${s.url}`)).toEqual(["GET /public/a", "GET /public/b"]);
    expect(a.headers["x-upstream"]).toBe("yes");
    // One upstream connection served both allowed requests.
    expect(new Set(seen.map((s) => s.remotePort)).size).toBe(1);
  });

  it("headers decide; chunked request and response bodies pass intact", async () => {
    seen = [];
    const agent = new Agent({ keepAlive: true, maxSockets: 1 });
    const ok = await send(agent, "POST", "/upload", ["chunk-1,", "chunk-2"], { "X-Token": "s3cret" });
    const no = await send(agent, "POST", "/upload", "x", { "X-Token": "wrong" });
    const chunked = await send(agent, "GET", "/public/chunked");
    agent.destroy();
    expect(ok).toMatchObject({ status: 200, body: "ok POST /upload 15" });
    expect(seen[0].headers["transfer-encoding"]).toBe("chunked");
    expect(no.status).toBe(403);
    expect(chunked.body).toBe("part1-part2");
  });

  it("emits REQUEST and RESPONSE events with method, url, code, latency and the deciding rule", async () => {
    h.events.length = 0;
    const agent = new Agent({ keepAlive: false });
    await send(agent, "GET", "/public/ev");
    await send(agent, "DELETE", "/public/ev");
    const evs = h.events.map((e) => `${e.type} ${e.verdict} ${e.http!.method} ${e.http!.url} ${e.http!.code ?? ""}`.trim());
    expect(evs).toEqual([
      `REQUEST FORWARDED GET http://127.0.0.1:${h.port}/public/ev`,
      `RESPONSE FORWARDED GET http://127.0.0.1:${h.port}/public/ev 200`,
      `REQUEST DROPPED DELETE http://127.0.0.1:${h.port}/public/ev`,
      `RESPONSE FORWARDED DELETE http://127.0.0.1:${h.port}/public/ev 403`,
    ]);
    expect(h.events[0].reason).toMatch(/CiliumNetworkPolicy x\/web rule 0 ingress\[0\] \[0\]/);
    expect(h.events[1].latencyNs).toBeGreaterThan(0);
    expect(h.events.every((e) => e.protocol === "http" && e.source.identity === ids.source && e.proxyPort === listener.proxyPort)).toBe(true);
  });

  it("a chunked body on an allowed GET stays a body upstream: a request hidden in it never reaches the server unjudged", async () => {
    seen = [];
    const smuggled = "DELETE /admin HTTP/1.1\r\nHost: x\r\nContent-Length: 0\r\n\r\n";
    const chunk = (t: string) => `${Buffer.byteLength(t).toString(16)}\r\n${t}\r\n`;
    const reply = await new Promise<string>((resolve) => {
      const s = connect(h.port, "127.0.0.1", () =>
        s.write(`GET /public/x HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n${chunk(smuggled)}0\r\n\r\nGET /public/y HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n`),
      );
      let b = "";
      s.on("data", (d) => (b += d));
      s.on("close", () => resolve(b));
    });
    expect(seen.map((x) => `${x.method} ${x.url}`)).toEqual(["GET /public/x", "GET /public/y"]);
    expect(seen[0]!.body).toBe(smuggled);
    expect(seen[0]!.headers["transfer-encoding"]).toBe("chunked");
    expect(reply.match(/HTTP\/1.1 \d{3}/g)).toEqual(["HTTP/1.1 200", "HTTP/1.1 200"]);
  });

  it("malformed requests get 400 and close; no byte reaches the server", async () => {
    seen = [];
    const reply = await new Promise<string>((resolve) => {
      const s = connect(h.port, "127.0.0.1", () => s.write("GET /public HTTP/1.1\r\nHost: x\r\nBad Header\r\n\r\n"));
      let b = "";
      s.on("data", (d) => (b += d));
      s.on("close", () => resolve(b));
    });
    expect(reply).toMatch(/^HTTP\/1.1 400/);
    const big = await new Promise<string>((resolve) => {
      const s = connect(h.port, "127.0.0.1", () => s.write(`GET /public HTTP/1.1\r\nHost: x\r\nX-Big: ${"a".repeat(64 * 1024)}\r\n\r\n`));
      let b = "";
      s.on("data", (d) => (b += d));
      s.on("error", () => resolve(b));
      s.on("close", () => resolve(b));
    });
    expect(big).toMatch(/^HTTP\/1.1 431/);
    expect(seen).toEqual([]);
    expect(h.events.some((e) => e.verdict === "ERROR")).toBe(true);
  });

  it("headerMatches mismatch actions edit the forwarded request", async () => {
    seen = [];
    const agent = new Agent({ keepAlive: false });
    const r = await send(agent, "PUT", "/edit", "x", { "X-Team": "red" });
    expect(r.status).toBe(200);
    expect(seen[0].headers).toMatchObject({ "x-team": "blue", "x-trace": "on" });
  });

  it("an idle keep-alive client connection is not closed by the proxy (Node's 5 s default is off)", async () => {
    const agent = new Agent({ keepAlive: true, maxSockets: 1 });
    const a = await send(agent, "GET", "/public/a");
    await new Promise((r) => setTimeout(r, 7000));
    const b = await send(agent, "GET", "/public/b");
    agent.destroy();
    expect(b.localPort).toBe(a.localPort);
  }, 20_000);

  it("Upgrade requests are judged and forwarded without Upgrade; CONNECT closes; nothing bypasses the rules", async () => {
    seen = [];
    const raw = (text: string) =>
      new Promise<string>((resolve) => {
        const s = connect(h.port, "127.0.0.1", () => s.write(text));
        let b = "";
        s.on("data", (d) => {
          b += d;
          if (b.includes("\r\n\r\n") && !text.startsWith("CONNECT")) s.end();
        });
        s.on("error", () => resolve(b));
        s.on("close", () => resolve(b));
      });
    const denied = await raw("GET /private HTTP/1.1\r\nHost: x\r\nConnection: Upgrade\r\nUpgrade: websocket\r\n\r\n");
    expect(denied).toMatch(/^HTTP\/1.1 403/);
    const allowed = await raw("GET /public/ws HTTP/1.1\r\nHost: x\r\nConnection: Upgrade\r\nUpgrade: websocket\r\n\r\n");
    expect(allowed).toMatch(/^HTTP\/1.1 200/);
    expect(await raw("CONNECT 127.0.0.1:22 HTTP/1.1\r\nHost: 127.0.0.1:22\r\n\r\n")).toBe("");
    expect(seen.map((x) => [x.url, x.headers.upgrade])).toEqual([["/public/ws", undefined]]);
  });

  it("the policy is read per request: a change applies to the next request", async () => {
    const open = compileYaml(yaml.replace("method: GET, path: /public.*", "method: GET, path: /.*")).compiled;
    const agent = new Agent({ keepAlive: true, maxSockets: 1 });
    expect((await send(agent, "GET", "/private")).status).toBe(403);
    h.setPolicy(open);
    expect((await send(agent, "GET", "/private")).status).toBe(200);
    h.setPolicy(compiled);
    agent.destroy();
  });

  it("an unreachable upstream gets 503 and counts an upstream error", async () => {
    const h2 = await startHarness(new HttpProxyHandler(), compiled, { proxyPort: listener.proxyPort, sourceIdentity: ids.source, destinationIdentity: ids.dest, upstreamPort: await closedPort() });
    const r = await new Promise<number>((resolve, reject) => {
      request({ host: "127.0.0.1", port: h2.port, path: "/public/x" }, (res) => (res.resume(), resolve(res.statusCode!))).on("error", reject).end();
    });
    await h2.close();
    expect(r).toBe(503);
    expect(h2.upstreamErrors).toEqual(["http"]);
  });

  it("a peer the listener has no rule for is denied", async () => {
    const h3 = await startHarness(new HttpProxyHandler(), compiled, { proxyPort: listener.proxyPort, sourceIdentity: 2, destinationIdentity: ids.dest, upstreamPort: (upstream.address() as AddressInfo).port });
    const r = await new Promise<number>((resolve, reject) => {
      request({ host: "127.0.0.1", port: h3.port, path: "/public/x" }, (res) => (res.resume(), resolve(res.statusCode!))).on("error", reject).end();
    });
    await h3.close();
    expect(r).toBe(403);
  });
});
