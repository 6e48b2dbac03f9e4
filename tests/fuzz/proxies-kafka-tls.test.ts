/*
 * Proxy input fuzzing, Kafka and TLS: byte streams a pod can send to the node's Kafka and TLS (SNI) proxies —
 * random bytes, well-formed Produce/Metadata frames naming allowed and other topics, TLS ClientHellos
 * naming allowed and other servers, and mutations, cuts and concatenations of them. What must always hold:
 *   - Kafka: every frame that reaches the broker is one the policy allows for the client (judged again here
 *     with evaluateKafka on the frame as the broker reads it), no unhandled rejection, still serving;
 *   - TLS: every connection that reaches the server starts with a ClientHello naming an allowed server.
 * The wire readers alone are fuzzed in agent/proxy/parsers.property.test.ts; the DNS and HTTP proxies in
 * tests/fuzz/proxies.test.ts. FUZZ_RUNS scales the case count (default 300: 150 streams per proxy).
 */
import { connect, createServer, type AddressInfo, type Server, type Socket } from "node:net";
import { connect as tlsConnect } from "node:tls";
import fc from "fast-check";
import { mutate as mutateBytes } from "./bytes.ts";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { evaluateKafka, evaluateTls } from "../../policy/index.ts";
import { compileYaml, podsYaml } from "../../policy/test-helpers.ts";
import { kafkaFrameLength, parseKafkaRequest } from "../../agent/proxy/kafka-wire.ts";
import { KafkaProxyHandler } from "../../agent/proxy/kafka.ts";
import { TlsProxyHandler } from "../../agent/proxy/tls.ts";
import { readClientHello } from "../../agent/proxy/tls-client-hello.ts";
import { startHarness, type Harness } from "../../agent/proxy/test-harness.ts";

// Each case holds its connection up to 60 ms (a proxy waiting for the rest of a frame or ClientHello).
const RUNS = Math.ceil(Number(process.env.FUZZ_RUNS ?? 300) / 2);

const { compiled } = compileYaml(
  podsYaml([
    { ns: "x", name: "client", labels: { app: "client" } },
    { ns: "x", name: "broker", labels: { app: "broker" } },
    { ns: "x", name: "web", labels: { app: "web" } },
  ]) +
    `\n---\napiVersion: cilium.io/v2\nkind: CiliumNetworkPolicy\nmetadata: {name: kafka, namespace: x}
spec:
  endpointSelector: {matchLabels: {app: broker}}
  ingress:
  - fromEndpoints: [{matchLabels: {app: client}}]
    toPorts: [{ports: [{port: '9092', protocol: TCP}], rules: {kafka: [{role: produce, topic: allowed}]}}]
---
apiVersion: cilium.io/v2
kind: CiliumNetworkPolicy
metadata: {name: tls, namespace: x}
spec:
  endpointSelector: {matchLabels: {app: web}}
  ingress:
  - fromEndpoints: [{matchLabels: {app: client}}]
    toPorts: [{ports: [{port: '443', protocol: TCP}], serverNames: [ok.example.com, '*.good.example']}]
`,
);
const listener = (protocol: string) => [...compiled.proxies.values()].find((l) => l.protocol === protocol)!;
const id = (p: string) => compiled.identities.podIdentity.get(p)!;
const kafkaCtx = { proxyPort: listener("kafka").proxyPort, remoteIdentity: id("x/client") };
const tlsCtx = { proxyPort: listener("tls").proxyPort, remoteIdentity: id("x/client") };

/** A request frame: header v1 (api key, version, correlation id, client id) and `body`. */
function frame(apiKey: number, apiVersion: number, body: Buffer): Buffer {
  const client = Buffer.from("fuzz");
  const head = Buffer.alloc(14 + client.length);
  head.writeInt16BE(apiKey, 4);
  head.writeInt16BE(apiVersion, 6);
  head.writeInt32BE(7, 8);
  head.writeInt16BE(client.length, 12);
  client.copy(head, 14);
  const f = Buffer.concat([head, body]);
  f.writeInt32BE(f.length - 4, 0);
  return f;
}
const str = (s: string) => {
  const b = Buffer.from(s);
  const n = Buffer.alloc(2);
  n.writeInt16BE(b.length);
  return Buffer.concat([n, b]);
};
const i32 = (v: number) => {
  const b = Buffer.alloc(4);
  b.writeInt32BE(v);
  return b;
};
const topic = fc.constantFrom("allowed", "other", "allowed2", "");
/** Metadata v1 naming `topics`; Produce v3 (acks 1) with one partition and an empty record set per topic. */
const metadata = fc.array(topic, { maxLength: 3 }).map((ts) => frame(3, 1, Buffer.concat([i32(ts.length), ...ts.map(str)])));
const produce = fc
  .array(topic, { minLength: 1, maxLength: 3 })
  .map((ts) => frame(0, 3, Buffer.concat([Buffer.from([0xff, 0xff]), Buffer.from([0, 1]), i32(1000), i32(ts.length), ...ts.map((t) => Buffer.concat([str(t), i32(1), i32(0), i32(0)]))])));
/** Bytes changed, a cut, or bytes appended. */
const mutate = (b: Buffer) => mutateBytes(b, 4, 12);

/** Writes `chunks` on a fresh connection to `port` and resolves when it closes or after `ms`. */
const stream = (port: number, chunks: Buffer[], ms: number) =>
  new Promise<void>((resolve) => {
    const s = connect(port, "127.0.0.1", () => {
      for (const c of chunks) s.write(c);
    });
    const done = () => (clearTimeout(t), s.destroy(), resolve());
    const t = setTimeout(done, ms);
    s.on("error", done);
    s.on("close", done);
  });

/** A real ClientHello for `servername` (node:tls, captured by a server that never answers). */
async function clientHello(servername: string): Promise<Buffer> {
  const got: Buffer[] = [];
  const srv = createServer((s) => s.on("data", (d: Buffer) => got.push(d)));
  await new Promise<void>((r) => srv.listen(0, "127.0.0.1", r));
  const c = tlsConnect({ host: "127.0.0.1", port: (srv.address() as AddressInfo).port, servername });
  c.on("error", () => undefined);
  await new Promise((r) => setTimeout(r, 150));
  c.destroy();
  await new Promise<void>((r) => srv.close(() => r()));
  return Buffer.concat(got);
}

describe("Kafka and TLS proxies on arbitrary byte streams", () => {
  let broker: Server;
  const brokerFrames: Buffer[] = [];
  let tlsServer: Server;
  const tlsFirstBytes: Buffer[] = [];
  let kafkaH: Harness;
  let tlsH: Harness;
  const rejections: unknown[] = [];
  const onRejection = (e: unknown) => void rejections.push(e);
  const hellos: Buffer[] = [];

  beforeAll(async () => {
    process.on("unhandledRejection", onRejection);
    // The broker records every whole frame it receives (it never answers: the proxy must not care).
    broker = createServer((s: Socket) => {
      let buf = Buffer.alloc(0);
      s.on("error", () => undefined);
      s.on("data", (d: Buffer) => {
        buf = Buffer.concat([buf, d]);
        for (let n = kafkaFrameLength(buf); n > 0; n = buf.length >= 4 ? kafkaFrameLength(buf) : 0) {
          brokerFrames.push(buf.subarray(0, n));
          buf = buf.subarray(n);
        }
      });
    });
    tlsServer = createServer((s: Socket) => {
      s.on("error", () => undefined);
      s.once("data", (d: Buffer) => tlsFirstBytes.push(d));
    });
    await new Promise<void>((r) => broker.listen(0, "127.0.0.1", r));
    await new Promise<void>((r) => tlsServer.listen(0, "127.0.0.1", r));
    kafkaH = await startHarness(new KafkaProxyHandler(), compiled, { proxyPort: kafkaCtx.proxyPort, sourceIdentity: id("x/client"), destinationIdentity: id("x/broker"), upstreamPort: (broker.address() as AddressInfo).port });
    tlsH = await startHarness(new TlsProxyHandler(), compiled, { proxyPort: tlsCtx.proxyPort, sourceIdentity: id("x/client"), destinationIdentity: id("x/web"), upstreamPort: (tlsServer.address() as AddressInfo).port });
    for (const name of ["ok.example.com", "a.good.example", "evil.example.com", "a.b.good.example"]) hellos.push(await clientHello(name));
  });
  afterAll(async () => {
    process.off("unhandledRejection", onRejection);
    await kafkaH.close();
    await tlsH.close();
    broker.close();
    tlsServer.close();
  });

  it("Kafka: the broker receives only frames the policy allows; no rejected promise; still serving", async () => {
    const frames = fc.oneof(metadata, produce, fc.oneof(metadata, produce).chain(mutate), fc.uint8Array({ maxLength: 60 }).map((a) => Buffer.from(a)));
    // Several frames on one connection, sometimes glued together and split at a random point.
    const input = fc.tuple(fc.array(frames, { minLength: 1, maxLength: 4 }), fc.nat()).map(([fs, at]) => {
      const all = Buffer.concat(fs);
      const cut = all.length ? at % all.length : 0;
      return [all.subarray(0, cut), all.subarray(cut)];
    });
    await fc.assert(fc.asyncProperty(input, async (chunks) => stream(kafkaH.port, chunks, 60)), { numRuns: RUNS });
    await new Promise((r) => setTimeout(r, 200));
    expect(rejections.map(String)).toEqual([]);
    for (const f of brokerFrames) {
      const req = parseKafkaRequest(f);
      const v = evaluateKafka(compiled, kafkaCtx, { apiKey: req.apiKey, apiVersion: req.apiVersion, clientID: req.clientID, topics: (req.topics ?? []).map((t) => t.name) });
      expect(v.allowed, `${req.apiKey} v${req.apiVersion} ${JSON.stringify(req.topics)}`).toBe(true);
    }
    expect(brokerFrames.length, "some frames were allowed").toBeGreaterThan(0);
    const before = brokerFrames.length;
    await stream(kafkaH.port, [frame(3, 1, Buffer.concat([i32(1), str("allowed")]))], 1000);
    expect(brokerFrames.length).toBe(before + 1);
  }, 120_000);

  it("TLS: a connection reaches the server only with a ClientHello naming an allowed server", async () => {
    const hello = fc.constantFrom(...hellos);
    const bytes = fc.oneof(hello, hello.chain(mutate), fc.uint8Array({ maxLength: 200 }).map((a) => Buffer.from(a)), fc.tuple(hello, fc.nat()).map(([h, at]) => Buffer.concat([Buffer.from([22, 3, 1]), h.subarray(3, 3 + (at % h.length))])));
    await fc.assert(fc.asyncProperty(fc.array(bytes, { minLength: 1, maxLength: 2 }), async (chunks) => stream(tlsH.port, chunks, 60)), { numRuns: RUNS });
    await new Promise((r) => setTimeout(r, 200));
    expect(rejections.map(String)).toEqual([]);
    expect(tlsFirstBytes.length).toBeGreaterThan(0);
    for (const b of tlsFirstBytes) {
      const r = readClientHello(b);
      expect("serverName" in r && evaluateTls(compiled, tlsCtx, { serverName: r.serverName ?? "" }).allowed, JSON.stringify(r)).toBe(true);
    }
  }, 120_000);
});
