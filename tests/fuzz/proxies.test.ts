/*
 * Proxy input fuzzing: what a pod (or a resolver) can send to the node's L7 proxies. The wire readers written
 * here (Kafka, TLS ClientHello) are fuzzed in agent/proxy/parsers.property.test.ts; this suite drives the
 * DNS and HTTP proxies, whose parsers are libraries (dns-packet, Node's llhttp), through the proxy code
 * around them, with random bytes and mutations of valid messages:
 *   - DNS (proxyDnsQuery, the UDP and TCP proxies' message step): always settles (never throws, never
 *     hangs); the resolver sees only queries whose every question the policy allows; whatever goes back to
 *     the client is a DNS response with the query's id. A resolver answering garbage gives SERVFAIL.
 *   - DNS over TCP (createDnsTcpHandler): a random byte stream never leaves a rejected promise behind (an
 *     unhandled rejection would end the agent) and the handler keeps serving other connections.
 *   - HTTP (HttpProxyHandler): the server sees only requests the policy allows, and the proxy still
 *     serves a valid request afterwards.
 * FUZZ_RUNS scales the case count (default 300).
 */
import dnsPacket from "dns-packet";
import { createServer as createHttpServer, type Server as HttpServer } from "node:http";
import { connect, createServer, type AddressInfo, type Server } from "node:net";
import fc from "fast-check";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { evaluateDns } from "../../policy/index.ts";
import { compileYaml, podsYaml } from "../../policy/test-helpers.ts";
import { createDnsTcpHandler, proxyDnsQuery, tcpFrame, TcpDnsFramer, type DnsProxyContext, type DnsQueryOrigin } from "../../agent/proxy/dns.ts";
import { HttpProxyHandler } from "../../agent/proxy/http.ts";
import { startHarness, type Harness } from "../../agent/proxy/test-harness.ts";

const RUNS = Number(process.env.FUZZ_RUNS ?? 300);

const { compiled } = compileYaml(
  podsYaml([
    { ns: "x", name: "client", labels: { app: "client" } },
    { ns: "x", name: "server", labels: { app: "server" } },
    { ns: "kube-system", name: "dns", labels: { "k8s-app": "kube-dns" } },
  ]) +
    `\n---\napiVersion: cilium.io/v2\nkind: CiliumNetworkPolicy\nmetadata: {name: dns, namespace: x}
spec:
  endpointSelector: {matchLabels: {app: client}}
  egress:
  - toEndpoints: [{matchLabels: {"k8s:io.kubernetes.pod.namespace": kube-system, k8s-app: kube-dns}}]
    toPorts: [{ports: [{port: '53', protocol: TCP}], rules: {dns: [{matchPattern: '*.example.com'}, {matchName: exact.test}]}}]
---
apiVersion: cilium.io/v2
kind: CiliumNetworkPolicy
metadata: {name: web, namespace: x}
spec:
  endpointSelector: {matchLabels: {app: server}}
  ingress:
  - fromEndpoints: [{matchLabels: {app: client}}]
    toPorts: [{ports: [{port: '8080', protocol: TCP}], rules: {http: [{method: GET, path: /public.*}]}}]
`,
);
const dnsListener = [...compiled.proxies.values()].find((l) => l.protocol === "dns")!;
const httpListener = [...compiled.proxies.values()].find((l) => l.protocol === "http")!;
const ids = {
  client: compiled.identities.podIdentity.get("x/client")!,
  server: compiled.identities.podIdentity.get("x/server")!,
  dns: compiled.identities.podIdentity.get("kube-system/dns")!,
};
const allowedName = (name: string) => evaluateDns(compiled, { proxyPort: dnsListener.proxyPort, remoteIdentity: ids.dns }, name).allowed;

const ctx: DnsProxyContext = { policy: () => compiled, emit: () => undefined, upstreamError: () => undefined, learn: () => undefined };
const origin: DnsQueryOrigin = {
  source: { ip: "10.0.0.1", port: 40000, identity: ids.client },
  destination: { ip: "10.0.0.53", port: 53, identity: ids.dns },
  proxyPort: dnsListener.proxyPort,
  l4: "UDP",
};

const dnsName = fc.oneof(
  fc.constantFrom("a.example.com", "exact.test", "EXACT.test.", "x.y.example.com", "example.com", "evil.test", ""),
  fc.stringMatching(/^[a-z0-9*.\\-]{0,40}$/),
);
const qtype = fc.constantFrom("A", "AAAA", "CNAME", "TXT", "PTR", "MX", "SRV", "OPT") satisfies fc.Arbitrary<dnsPacket.RecordType>;
/** A valid query of one to three questions. */
const validQuery = fc
  .record({ id: fc.integer({ min: 0, max: 0xffff }), questions: fc.array(fc.record({ name: dnsName, type: qtype }), { minLength: 1, maxLength: 3 }) })
  .map((q) => Buffer.from(dnsPacket.encode({ type: "query", id: q.id, flags: dnsPacket.RECURSION_DESIRED, questions: q.questions.map((x) => ({ ...x, class: "IN" as const })) })));
/** Random bytes, or a valid query with bytes changed, cut or appended. */
const mutate = (b: Buffer) =>
  fc.record({ flips: fc.array(fc.tuple(fc.nat(), fc.integer({ min: 0, max: 255 })), { maxLength: 6 }), cut: fc.option(fc.nat()), tail: fc.uint8Array({ maxLength: 20 }) }).map(({ flips, cut, tail }) => {
    const m = Buffer.from(b);
    for (const [at, v] of flips) if (m.length) m[at % m.length] = v;
    return Buffer.concat([cut === null ? m : m.subarray(0, cut % (m.length + 1)), Buffer.from(tail)]);
  });
const dnsBytes = fc.oneof(fc.uint8Array({ maxLength: 300 }).map((a) => Buffer.from(a)), validQuery, validQuery.chain(mutate));

/** A resolver's answer: the query echoed with one A record, or garbage. */
const answerTo = (q: Buffer, garbage: Buffer | undefined): Buffer => {
  if (garbage) return garbage;
  const p = dnsPacket.decode(q);
  return Buffer.from(dnsPacket.encode({ type: "response", id: p.id, flags: dnsPacket.RECURSION_AVAILABLE, questions: p.questions, answers: [{ type: "A", name: p.questions![0]!.name, ttl: 30, data: "192.0.2.9" }] }));
};

describe("DNS proxy on arbitrary messages", () => {
  it("always settles; forwards only queries every question of which is allowed; answers with the query's id", async () => {
    await fc.assert(
      fc.asyncProperty(dnsBytes, fc.option(fc.uint8Array({ maxLength: 100 }).map((a) => Buffer.from(a))), async (msg, garbage) => {
        const forwarded: Buffer[] = [];
        const reply = await proxyDnsQuery(msg, origin, ctx, async (q) => (forwarded.push(q), answerTo(q, garbage ?? undefined)));
        if (forwarded.length) {
          const q = dnsPacket.decode(forwarded[0]!);
          expect(q.type).toBe("query");
          expect(q.questions!.length).toBeGreaterThan(0);
          for (const x of q.questions!) expect(allowedName(x.name), x.name).toBe(true);
        }
        if (reply) {
          const r = dnsPacket.decode(reply);
          expect(r.type).toBe("response");
          expect(r.id).toBe(dnsPacket.decode(msg).id);
        }
      }),
      { numRuns: RUNS * 10 },
    );
  });
});

describe("DNS over TCP and HTTP proxies on arbitrary byte streams", () => {
  let resolver: Server;
  let resolverSaw: string[][] = [];
  let web: HttpServer;
  const webSaw: string[] = [];
  let dnsH: Harness;
  let httpH: Harness;
  const rejections: unknown[] = [];
  const onRejection = (e: unknown) => void rejections.push(e);

  beforeAll(async () => {
    process.on("unhandledRejection", onRejection);
    resolver = createServer((s) => {
      const f = new TcpDnsFramer();
      s.on("error", () => undefined);
      s.on("data", (c: Buffer) => {
        for (const m of f.push(c)) {
          resolverSaw.push(dnsPacket.decode(m).questions!.map((x) => x.name));
          s.write(tcpFrame(answerTo(m, undefined)));
        }
      });
    });
    web = createHttpServer((req, res) => {
      webSaw.push(`${req.method} ${req.url}`);
      req.resume();
      req.on("end", () => res.end("ok"));
    });
    await new Promise<void>((r) => resolver.listen(0, "127.0.0.1", r));
    await new Promise<void>((r) => web.listen(0, "127.0.0.1", r));
    dnsH = await startHarness(createDnsTcpHandler(() => undefined), compiled, {
      proxyPort: dnsListener.proxyPort,
      direction: "egress",
      sourceIdentity: ids.client,
      destinationIdentity: ids.dns,
      upstreamPort: (resolver.address() as AddressInfo).port,
    });
    httpH = await startHarness(new HttpProxyHandler(), compiled, { proxyPort: httpListener.proxyPort, sourceIdentity: ids.client, destinationIdentity: ids.server, upstreamPort: (web.address() as AddressInfo).port });
  });
  afterAll(async () => {
    process.off("unhandledRejection", onRejection);
    await dnsH.close();
    await httpH.close();
    resolver.close();
    web.close();
  });

  /**
   * Writes `chunks` on a fresh connection to `port` (half-closing after them when `end`), and resolves with
   * what came back when the proxy closes, after `ms`, or as soon as `enough` says so.
   */
  const stream = (port: number, chunks: Buffer[], ms: number, end = true, enough = (_b: Buffer) => false) =>
    new Promise<Buffer>((resolve) => {
      const got: Buffer[] = [];
      const s = connect(port, "127.0.0.1", () => {
        for (const c of chunks) s.write(c);
        if (end) s.end();
      });
      const done = () => (clearTimeout(t), s.destroy(), resolve(Buffer.concat(got)));
      const t = setTimeout(done, ms);
      s.on("data", (d: Buffer) => (got.push(d), enough(Buffer.concat(got)) ? done() : undefined));
      s.on("error", done);
      s.on("close", done);
    });

  it("DNS over TCP: no rejected promise left behind; the resolver sees only allowed questions; still serving", async () => {
    resolverSaw = [];
    const framed = fc.oneof(dnsBytes.map((m) => tcpFrame(m)), fc.uint8Array({ maxLength: 60 }).map((a) => Buffer.from(a)));
    await fc.assert(
      fc.asyncProperty(fc.array(framed, { minLength: 1, maxLength: 4 }), async (chunks) => {
        await stream(dnsH.port, chunks, 200);
      }),
      { numRuns: RUNS },
    );
    await new Promise((r) => setTimeout(r, 200));
    expect(rejections.map(String)).toEqual([]);
    for (const names of resolverSaw) for (const n of names) expect(allowedName(n), n).toBe(true);
    const q = Buffer.from(dnsPacket.encode({ type: "query", id: 7, questions: [{ type: "A", name: "ok.example.com" }] }));
    const back = new TcpDnsFramer().push(await stream(dnsH.port, [tcpFrame(q)], 3000, false, (b) => new TcpDnsFramer().push(b).length > 0));
    expect(dnsPacket.decode(back[0]!)).toMatchObject({ id: 7, type: "response", answers: [{ data: "192.0.2.9" }] });
  }, 120_000);

  it("HTTP: the server sees only allowed requests; still serving", async () => {
    const request = fc
      .record({ method: fc.constantFrom("GET", "POST", "HEAD", "PUT", "get", "G ET", ""), path: fc.constantFrom("/public", "/public/x", "/private", "/publ", "*", "/public?x=1", " /public", "/p%00ublic"), extra: fc.constantFrom("", "Transfer-Encoding: chunked\r\n", "Content-Length: 3\r\n", "Content-Length: -1\r\n", "Connection: close\r\n") })
      .map((r) => Buffer.from(`${r.method} ${r.path} HTTP/1.1\r\nHost: s\r\n${r.extra}\r\n`, "latin1"));
    const bytes = fc.oneof(fc.uint8Array({ maxLength: 200 }).map((a) => Buffer.from(a)), request, request.chain(mutate));
    await fc.assert(
      fc.asyncProperty(fc.array(bytes, { minLength: 1, maxLength: 3 }), async (chunks) => {
        await stream(httpH.port, chunks, 200);
      }),
      { numRuns: RUNS },
    );
    await new Promise((r) => setTimeout(r, 200));
    expect(rejections.map(String)).toEqual([]);
    for (const r of webSaw) expect(r).toMatch(/^GET \/public/);
    const ok = (await stream(httpH.port, [Buffer.from("GET /public HTTP/1.1\r\nHost: s\r\n\r\n")], 3000, false, (b) => b.includes("\r\n\r\nok"))).toString("latin1");
    expect(ok).toMatch(/^HTTP\/1.1 200/);
  }, 120_000);
});
