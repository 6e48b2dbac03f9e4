// The Kafka proxy handler on loopback with a real client (kafkajs) and a small broker stand-in that answers
// ApiVersions, Metadata and Produce and records what reached it.
import { connect, createServer, type AddressInfo, type Server, type Socket } from "node:net";
import { Kafka, logLevel } from "kafkajs";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { compileYaml, podsYaml } from "../../policy/test-helpers.ts";
import { KafkaProxyHandler } from "./kafka.ts";
import { parseKafkaRequest } from "./kafka-wire.ts";
import { startHarness, type Harness } from "./test-harness.ts";

const yaml =
  podsYaml([
    { ns: "kafka", name: "kafka-broker", labels: { app: "kafka" } },
    { ns: "kafka", name: "empire-hq", labels: { app: "empire-hq" } },
    { ns: "kafka", name: "outpost", labels: { app: "empire-outpost" } },
  ]) +
  `\n---\napiVersion: cilium.io/v2\nkind: CiliumNetworkPolicy\nmetadata: {name: secure-empire-kafka, namespace: kafka}
spec:
  endpointSelector: {matchLabels: {app: kafka}}
  ingress:
  - fromEndpoints: [{matchLabels: {app: empire-hq}}]
    toPorts: [{ports: [{port: '9092', protocol: TCP}], rules: {kafka: [{role: produce, topic: deathstar-plans}]}}]
  - fromEndpoints: [{matchLabels: {app: empire-outpost}}]
    toPorts: [{ports: [{port: '9092', protocol: TCP}], rules: {kafka: [{role: consume, topic: empire-announce}]}}]
`;
const { compiled } = compileYaml(yaml);
const listener = [...compiled.proxies.values()][0];
const id = (p: string) => compiled.identities.podIdentity.get(p)!;

/** What the broker received: api key and topics of each request. */
let received: { apiKey: number; topics: string[] }[] = [];
let advertisedPort = 0;
let broker: Server;

function brokerAnswer(frame: Buffer): Buffer {
  const req = parseKafkaRequest(frame);
  received.push({ apiKey: req.apiKey, topics: (req.topics ?? []).map((t) => t.name) });
  const parts: Buffer[] = [];
  const i16 = (v: number) => parts.push(Buffer.from([(v >> 8) & 0xff, v & 0xff]));
  const i32 = (v: number) => {
    const b = Buffer.alloc(4);
    b.writeInt32BE(v);
    parts.push(b);
  };
  const i64 = (v: bigint) => {
    const b = Buffer.alloc(8);
    b.writeBigInt64BE(v);
    parts.push(b);
  };
  const str = (s: string | null) => (s === null ? i16(-1) : (i16(Buffer.byteLength(s)), parts.push(Buffer.from(s))));
  i32(req.correlationId);
  const v = req.apiVersion;
  if (req.apiKey === 18) {
    const apis = [
      [0, 0, 2],
      [3, 0, 1],
      [18, 0, 2],
    ];
    i16(0);
    i32(apis.length);
    for (const [k, lo, hi] of apis) (i16(k), i16(lo), i16(hi));
    if (v >= 1) i32(0);
  } else if (req.apiKey === 3) {
    i32(1); // brokers
    (i32(0), str("127.0.0.1"), i32(advertisedPort));
    if (v >= 1) str(null);
    if (v >= 1) i32(0); // controller
    const topics = req.topics ?? [];
    i32(topics.length);
    for (const t of topics) {
      (i16(0), str(t.name));
      if (v >= 1) parts.push(Buffer.from([0]));
      i32(1);
      (i16(0), i32(0), i32(0), i32(1), i32(0), i32(1), i32(0));
    }
  } else if (req.apiKey === 0) {
    const topics = req.topics ?? [];
    i32(topics.length);
    for (const t of topics) {
      str(t.name);
      i32(t.partitions.length);
      for (const p of t.partitions) {
        (i32(p), i16(0), i64(0n));
        if (v >= 2) i64(-1n);
      }
    }
    if (v >= 1) i32(0);
  } else throw new Error(`stand-in broker: unexpected api key ${req.apiKey}`);
  const body = Buffer.concat(parts);
  const len = Buffer.alloc(4);
  len.writeInt32BE(body.length);
  return Buffer.concat([len, body]);
}

beforeAll(async () => {
  broker = createServer((s: Socket) => {
    let buf = Buffer.alloc(0);
    s.on("data", (d) => {
      buf = Buffer.concat([buf, d]);
      while (buf.length >= 4 && buf.length >= 4 + buf.readInt32BE(0)) {
        const n = 4 + buf.readInt32BE(0);
        s.write(brokerAnswer(buf.subarray(0, n)));
        buf = buf.subarray(n);
      }
    });
    s.on("error", () => {});
  });
  await new Promise<void>((r) => broker.listen(0, "127.0.0.1", r));
});
afterAll(() => new Promise<void>((r) => broker.close(() => r())));

async function asPod(pod: string): Promise<Harness> {
  const h = await startHarness(new KafkaProxyHandler(), compiled, { proxyPort: listener.proxyPort, sourceIdentity: id(pod), destinationIdentity: id("kafka/kafka-broker"), upstreamPort: (broker.address() as AddressInfo).port });
  advertisedPort = h.port;
  return h;
}

async function produce(h: Harness, clientId: string, topic: string): Promise<string> {
  const kafka = new Kafka({ clientId, brokers: [`127.0.0.1:${h.port}`], logLevel: logLevel.NOTHING, retry: { retries: 0 } });
  const producer = kafka.producer({ allowAutoTopicCreation: false });
  try {
    await producer.connect();
    await producer.send({ topic, messages: [{ key: "k", value: "plans" }] });
    return "ok";
  } catch (e) {
    return (e as Error).message;
  } finally {
    await producer.disconnect().catch(() => {});
  }
}

describe("Kafka proxy handler with kafkajs", () => {
  it("empire-hq produces to deathstar-plans; the broker sees the request", async () => {
    received = [];
    const h = await asPod("kafka/empire-hq");
    expect(await produce(h, "empire-hq", "deathstar-plans")).toBe("ok");
    await h.close();
    expect(received.filter((r) => r.apiKey === 0)).toEqual([{ apiKey: 0, topics: ["deathstar-plans"] }]);
    const reqs = h.events.filter((e) => e.type === "REQUEST").map((e) => `${e.verdict} ${e.kafka!.apiKey} ${e.kafka!.topic}`);
    expect(reqs).toContain("FORWARDED produce deathstar-plans");
    expect(h.events.some((e) => e.type === "RESPONSE" && e.kafka!.apiKey === "produce" && e.latencyNs! > 0)).toBe(true);
  });

  it("empire-hq cannot produce to another topic: TOPIC_AUTHORIZATION_FAILED, nothing about it reaches the broker", async () => {
    received = [];
    const h = await asPod("kafka/empire-hq");
    // kafkajs's text for error code 29 in a Metadata response.
    expect(await produce(h, "empire-hq", "empire-secrets")).toBe("Not authorized to access topics: [Topic authorization failed]");
    await h.close();
    expect(received.filter((r) => r.topics.includes("empire-secrets"))).toEqual([]);
    expect(h.events.find((e) => e.verdict === "DROPPED")!.kafka).toMatchObject({ errorCode: 29, apiKey: "metadata", topic: "empire-secrets" });
  });

  it("the outpost (consume only) cannot produce to deathstar-plans", async () => {
    received = [];
    const h = await asPod("kafka/outpost");
    expect(await produce(h, "outpost", "deathstar-plans")).toBe("Not authorized to access topics: [Topic authorization failed]");
    await h.close();
    expect(received.filter((r) => r.apiKey === 0 || r.topics.length)).toEqual([]);
  });

  it("a denied Produce gets the Produce error response with its correlation id, and the connection goes on", async () => {
    received = [];
    const h = await asPod("kafka/empire-hq");
    h.setPolicy(compileYaml(yaml.replace("[{role: produce, topic: deathstar-plans}]", "[{apiKey: apiversions}, {apiKey: metadata}, {apiKey: produce, topic: deathstar-plans}]")).compiled);
    const kafka = new Kafka({ clientId: "hq", brokers: [`127.0.0.1:${h.port}`], logLevel: logLevel.NOTHING, retry: { retries: 0 } });
    const producer = kafka.producer();
    await producer.connect();
    const denied = await producer.send({ topic: "empire-secrets", messages: [{ value: "x" }] }).then(() => "ok", (e: Error) => e.message);
    const allowed = await producer.send({ topic: "deathstar-plans", messages: [{ value: "y" }] }).then(() => "ok", (e: Error) => e.message);
    await producer.disconnect();
    await h.close();
    expect(denied).toBe("Not authorized to access topics: [Topic authorization failed]");
    expect(allowed).toBe("ok");
    expect(received.filter((r) => r.apiKey === 0)).toEqual([{ apiKey: 0, topics: ["deathstar-plans"] }]);
    const drop = h.events.find((e) => e.verdict === "DROPPED")!;
    expect(drop.kafka).toMatchObject({ apiKey: "produce", errorCode: 29, topic: "empire-secrets" });
    expect(h.events.find((e) => e.type === "RESPONSE" && e.kafka!.correlationId === drop.kafka!.correlationId)!.kafka!.errorCode).toBe(29);
  });

  it("a garbage frame length closes the connection and nothing reaches the broker", async () => {
    received = [];
    const h = await asPod("kafka/empire-hq");
    const closed = await new Promise<boolean>((resolve) => {
      const s = connect(h.port, "127.0.0.1", () => s.write(Buffer.from([0xff, 0xff, 0xff, 0xf0, 1, 2, 3, 4])));
      s.on("close", () => resolve(true));
      s.on("error", () => {});
    });
    const truncated = await new Promise<boolean>((resolve) => {
      // A Produce frame whose declared body is shorter than its topic array claims.
      const body = Buffer.from([0, 0, 0, 2, 0, 0, 0, 1, 0, 1, 0x61, 0xff, 0xff, 0, 0, 0, 0, 0x7f, 0xff, 0xff, 0xff]);
      const f = Buffer.concat([Buffer.from([0, 0, 0, body.length]), body]);
      const s = connect(h.port, "127.0.0.1", () => s.write(f));
      s.on("close", () => resolve(true));
      s.on("error", () => {});
    });
    await h.close();
    expect([closed, truncated]).toEqual([true, true]);
    expect(received).toEqual([]);
    expect(h.events.filter((e) => e.verdict === "ERROR").length).toBe(2);
  });
});
