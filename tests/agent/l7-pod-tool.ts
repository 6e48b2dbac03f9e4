/*
 * L7 servers and clients inside a test network namespace, for tests/agent/e2e-l7-protocols.test.ts (run
 * with `ip netns exec <ns> node --import tsx tests/agent/l7-pod-tool.ts …` from the repository root). Each
 * mode is bounded in time and prints one JSON line (servers print {serving} once listening, then one JSON
 * line per request they received).
 *   kafka-broker PORT HOST MS        the Kafka broker stand-in (agent/proxy/test-kafka-broker.ts) on PORT,
 *                                    advertising HOST:PORT; prints {apiKey, topics} per request
 *   kafka-produce HOST PORT CLIENT TOPIC   kafkajs producer: one message → {ok: true} or {ok: false, type, code, message}
 *   tls-serve PORT CERT KEY MS [HOST]  node:tls server on HOST (default 0.0.0.0; "::" for IPv4 and IPv6):
 *                                    answers "tls:<servername>" to the first bytes; prints {sni, peer}
 *   tls HOST PORT SNI CA             node:tls client (verifies the certificate against CA and SNI) → {ok, reply} or {ok: false, error}
 */
import { readFileSync } from "node:fs";
import { connect as tlsConnect, createServer as tlsServer } from "node:tls";
import { Kafka, logLevel } from "kafkajs";
import { kafkaBroker, type BrokerRequest } from "../../agent/proxy/test-kafka-broker.ts";

const [mode, a, b, c, d] = process.argv.slice(2);
const print = (o: unknown) => process.stdout.write(JSON.stringify(o) + "\n");
const exitAfter = (ms: number) => setTimeout(() => process.exit(0), ms).unref();

async function main(): Promise<void> {
  if (mode === "kafka-broker") {
    const received: BrokerRequest[] = [];
    const push = received.push.bind(received);
    received.push = (...r: BrokerRequest[]) => (r.forEach((x) => print(x)), push(...r));
    const port = Number(a);
    kafkaBroker(() => ({ host: b!, port }), received).listen(port, "0.0.0.0", () => print({ serving: "kafka" }));
    setTimeout(() => process.exit(0), Number(c));
  } else if (mode === "kafka-produce") {
    const kafka = new Kafka({ clientId: c!, brokers: [`${a}:${b}`], logLevel: logLevel.NOTHING, retry: { retries: 0 }, connectionTimeout: 2000, requestTimeout: 4000 });
    const producer = kafka.producer({ allowAutoTopicCreation: false });
    exitAfter(15_000);
    try {
      await producer.connect();
      await producer.send({ topic: d!, messages: [{ key: "k", value: "plans" }] });
      print({ ok: true });
    } catch (e) {
      // kafkajs wraps the broker's error (a KafkaJSProtocolError with Kafka's type and code) in its own.
      const err = e as Error & { type?: string; code?: number; cause?: { type?: string; code?: number } };
      print({ ok: false, type: err.cause?.type ?? err.type ?? err.name, code: err.cause?.code ?? err.code, message: err.message });
    } finally {
      await producer.disconnect().catch(() => {});
    }
    process.exit(0);
  } else if (mode === "tls-serve") {
    const server = tlsServer({ cert: readFileSync(b!), key: readFileSync(c!) }, (s) => {
      const sni = (s as unknown as { servername?: string }).servername ?? "";
      print({ sni, peer: s.remoteAddress });
      s.once("data", () => s.end(`tls:${sni}`));
      s.on("error", () => {});
    });
    server.on("tlsClientError", () => {});
    server.listen(Number(a), process.argv[7] ?? "0.0.0.0", () => print({ serving: "tls" }));
    setTimeout(() => process.exit(0), Number(d));
  } else if (mode === "tls") {
    exitAfter(5000);
    const r = await new Promise<Record<string, unknown>>((resolve) => {
      const s = tlsConnect({ host: a, port: Number(b), servername: c, ca: readFileSync(d!), timeout: 2000 });
      s.on("secureConnect", () => s.write("hello"));
      s.on("data", (x) => (resolve({ ok: true, reply: String(x) }), s.destroy()));
      s.on("timeout", () => (resolve({ ok: false, error: "timeout" }), s.destroy()));
      s.on("error", (e: Error & { code?: string }) => resolve({ ok: false, error: e.code ?? e.message }));
      s.on("close", () => resolve({ ok: false, error: "closed" }));
    });
    print(r);
    process.exit(0);
  } else {
    print({ error: `unknown mode ${mode}` });
    process.exit(2);
  }
}

void main();
