/*
 * A small Kafka broker stand-in for tests: it answers ApiVersions, Metadata and Produce from the request
 * parsed by the project's own kafka-wire code, advertises one broker (itself, at the address the test
 * names: the client must come back through the same path, e.g. the node's proxy) and records the api key
 * and topics of every request that reached it, so a test can prove a denied request never did.
 * Used by agent/proxy/kafka.test.ts on loopback and by tests/agent/l7-pod-tool.ts inside a pod namespace.
 */
import { createServer, type Server, type Socket } from "node:net";
import { parseKafkaRequest } from "./kafka-wire.ts";

export interface BrokerRequest {
  apiKey: number;
  topics: string[];
}

/** The response frame for one request frame (ApiVersions, Metadata and Produce only: anything else throws). */
export function brokerAnswer(frame: Buffer, advertised: { host: string; port: number }, received: BrokerRequest[]): Buffer {
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
    // Only non-flexible versions, so clients speak what the proxy can answer with an error response.
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
    (i32(0), str(advertised.host), i32(advertised.port));
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

/** A TCP server answering Kafka frames with brokerAnswer; `advertised()` is read per Metadata request. */
export function kafkaBroker(advertised: () => { host: string; port: number }, received: BrokerRequest[]): Server {
  return createServer((s: Socket) => {
    let buf = Buffer.alloc(0);
    s.on("data", (d) => {
      buf = Buffer.concat([buf, d]);
      while (buf.length >= 4 && buf.length >= 4 + buf.readInt32BE(0)) {
        const n = 4 + buf.readInt32BE(0);
        try {
          s.write(brokerAnswer(buf.subarray(0, n), advertised(), received));
        } catch {
          s.destroy();
          return;
        }
        buf = buf.subarray(n);
      }
    });
    s.on("error", () => {});
  });
}
