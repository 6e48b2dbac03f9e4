// The Kafka wire codec against an independent implementation: kafkajs's own request encoders build the
// requests (every version kafkajs speaks) and its response decoders read our error responses.
import { createRequire } from "node:module";
import { describe, expect, it } from "vitest";
import { kafkaErrorResponse, kafkaFrameLength, KafkaWireError, parseKafkaRequest } from "./kafka-wire.ts";

const require = createRequire(import.meta.url);
type Versions = { versions: string[]; protocol: (o: { version: number }) => (args: unknown) => { request: unknown; response: { decode: (b: Buffer) => Promise<unknown> } } };
const api = (name: string) => require(`kafkajs/src/protocol/requests/${name}/index.js`) as Versions;
const encodeRequest = require("kafkajs/src/protocol/request.js") as (o: { correlationId: number; clientId: string; request: unknown }) => Promise<{ buffer: Buffer }>;

const two = [
  { topic: "deathstar-plans", partitions: [0, 3] },
  { topic: "empire-announce", partitions: [1] },
];
const ARGS: Record<string, (v: number) => unknown> = {
  produce: () => ({ acks: -1, timeout: 1000, topicData: two.map((t) => ({ topic: t.topic, partitions: t.partitions.map((p) => ({ partition: p, messages: [{ key: "k", value: "v" }] })) })) }),
  fetch: () => ({ maxWaitTime: 100, minBytes: 1, maxBytes: 1024, topics: two.map((t) => ({ topic: t.topic, partitions: t.partitions.map((p) => ({ partition: p, fetchOffset: "0", maxBytes: 1024 })) })) }),
  listOffsets: () => ({ topics: two.map((t) => ({ topic: t.topic, partitions: t.partitions.map((p) => ({ partition: p, timestamp: -1 })) })) }),
  metadata: () => ({ topics: two.map((t) => t.topic), allowAutoTopicCreation: false }),
  offsetCommit: () => ({ groupId: "g", groupGenerationId: 1, memberId: "m", topics: two.map((t) => ({ topic: t.topic, partitions: t.partitions.map((p) => ({ partition: p, offset: "5" })) })) }),
  offsetFetch: () => ({ groupId: "g", topics: two.map((t) => ({ topic: t.topic, partitions: t.partitions.map((p) => ({ partition: p })) })) }),
};
const KEYS: Record<string, number> = { produce: 0, fetch: 1, listOffsets: 2, metadata: 3, offsetCommit: 8, offsetFetch: 9 };

async function frameOf(name: string, version: number, correlationId = 77) {
  const { request, response } = api(name).protocol({ version })(ARGS[name](version));
  const enc = await encodeRequest({ correlationId, clientId: "empire-hq", request });
  return { frame: Buffer.from(enc.buffer), response };
}

describe("parseKafkaRequest + kafkaErrorResponse against kafkajs", () => {
  for (const name of Object.keys(ARGS))
    for (const version of api(name).versions.map(Number))
      it(`${name} v${version}`, async () => {
        const { frame, response } = await frameOf(name, version);
        expect(kafkaFrameLength(frame)).toBe(frame.length);
        const req = parseKafkaRequest(frame);
        expect(req).toMatchObject({ apiKey: KEYS[name], apiVersion: version, correlationId: 77, clientID: version === 0 ? "" : "empire-hq" });
        const wantParts = name === "metadata" ? [[], []] : two.map((t) => t.partitions);
        expect(req.topics).toEqual(two.map((t, i) => ({ name: t.topic, partitions: wantParts[i] })));
        const answer = kafkaErrorResponse(req, 29)!;
        expect(answer.readInt32BE(0)).toBe(answer.length - 4);
        expect(answer.readInt32BE(4)).toBe(77);
        // kafkajs decodes the body after the correlation id; every topic carries error code 29.
        const decoded = JSON.stringify(await response.decode(answer.subarray(8)));
        for (const t of two) expect(decoded).toContain(t.topic);
        const codes = [...decoded.matchAll(/"(\w*[eE]rrorCode)":(-?\d+)/g)].map((m) => Number(m[2]));
        expect(codes.filter((c) => c === 29).length).toBe(name === "metadata" ? 2 : 3);
      });
});

describe("bounds", () => {
  it("a frame length below the header size or above the maximum is an error; a short buffer needs more", () => {
    expect(kafkaFrameLength(Buffer.from([0, 0]))).toBe(0);
    expect(kafkaFrameLength(Buffer.from([0, 0, 0, 20, 1]))).toBe(0);
    expect(() => kafkaFrameLength(Buffer.from([0xff, 0xff, 0xff, 0xff]))).toThrow(KafkaWireError);
    expect(() => kafkaFrameLength(Buffer.from([0x7f, 0, 0, 0]), 1 << 20)).toThrow(/invalid frame length/);
  });
  it("truncated bodies and lying array lengths are KafkaWireErrors, for every prefix of a real request", async () => {
    const { frame } = await frameOf("produce", 7);
    for (let n = 12; n < frame.length; n++) {
      const cut = Buffer.from(frame.subarray(0, n));
      cut.writeInt32BE(n - 4, 0);
      try {
        parseKafkaRequest(cut);
      } catch (e) {
        expect(e).toBeInstanceOf(KafkaWireError);
      }
    }
    const lie = Buffer.from(frame);
    // The topic array count sits after transactional_id (null: -1), acks and timeout.
    const off = 4 + 2 + 2 + 4 + 2 + "empire-hq".length + 2 + 2 + 4;
    lie.writeInt32BE(0x7fffffff, off);
    expect(() => parseKafkaRequest(lie)).toThrow(/array of/);
  });
  it("a Metadata request for all topics (kafkajs sends a null array for no topics) and a Produce with acks=0 are recognised", async () => {
    const { request } = api("metadata").protocol({ version: 4 })({ topics: [], allowAutoTopicCreation: false });
    const m = parseKafkaRequest(Buffer.from((await encodeRequest({ correlationId: 1, clientId: "c", request })).buffer));
    expect(m).toMatchObject({ allTopics: true, topics: [] });
    const p = api("produce").protocol({ version: 3 })({ ...(ARGS.produce(3) as object), acks: 0 });
    expect(parseKafkaRequest(Buffer.from((await encodeRequest({ correlationId: 1, clientId: "c", request: p.request })).buffer)).expectsResponse).toBe(false);
  });
  it("kinds without an error response get none (the proxy closes instead)", () => {
    expect(kafkaErrorResponse({ apiKey: 11, apiVersion: 0, correlationId: 1, clientID: "", expectsResponse: true }, 29)).toBeUndefined();
    expect(kafkaErrorResponse({ apiKey: 0, apiVersion: 9, correlationId: 1, clientID: "", topics: [], expectsResponse: true }, 29)).toBeUndefined();
  });
});
