// The Kafka proxy handler on loopback with a real client (kafkajs) and a small broker stand-in that answers
// ApiVersions, Metadata and Produce and records what reached it.
import { connect, type AddressInfo, type Server } from "node:net";
import { Kafka, logLevel } from "kafkajs";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { compileYaml, podsYaml } from "../../policy/test-helpers.ts";
import { KafkaProxyHandler } from "./kafka.ts";
import { kafkaBroker, type BrokerRequest } from "./test-kafka-broker.ts";
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
const received: BrokerRequest[] = [];
let advertisedPort = 0;
let broker: Server;

beforeAll(async () => {
  broker = kafkaBroker(() => ({ host: "127.0.0.1", port: advertisedPort }), received);
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
    received.length = 0;
    const h = await asPod("kafka/empire-hq");
    expect(await produce(h, "empire-hq", "deathstar-plans")).toBe("ok");
    await h.close();
    expect(received.filter((r) => r.apiKey === 0)).toEqual([{ apiKey: 0, topics: ["deathstar-plans"] }]);
    const reqs = h.events.filter((e) => e.type === "REQUEST").map((e) => `${e.verdict} ${e.kafka!.apiKey} ${e.kafka!.topic}`);
    expect(reqs).toContain("FORWARDED produce deathstar-plans");
    expect(h.events.some((e) => e.type === "RESPONSE" && e.kafka!.apiKey === "produce" && e.latencyNs! > 0)).toBe(true);
  });

  it("empire-hq cannot produce to another topic: TOPIC_AUTHORIZATION_FAILED, nothing about it reaches the broker", async () => {
    received.length = 0;
    const h = await asPod("kafka/empire-hq");
    // kafkajs's text for error code 29 in a Metadata response.
    expect(await produce(h, "empire-hq", "empire-secrets")).toBe("Not authorized to access topics: [Topic authorization failed]");
    await h.close();
    expect(received.filter((r) => r.topics.includes("empire-secrets"))).toEqual([]);
    expect(h.events.find((e) => e.verdict === "DROPPED")!.kafka).toMatchObject({ errorCode: 29, apiKey: "metadata", topic: "empire-secrets" });
  });

  it("the outpost (consume only) cannot produce to deathstar-plans", async () => {
    received.length = 0;
    const h = await asPod("kafka/outpost");
    expect(await produce(h, "outpost", "deathstar-plans")).toBe("Not authorized to access topics: [Topic authorization failed]");
    await h.close();
    expect(received.filter((r) => r.apiKey === 0 || r.topics.length)).toEqual([]);
  });

  it("a denied Produce gets the Produce error response with its correlation id, and the connection goes on", async () => {
    received.length = 0;
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
    received.length = 0;
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
