// Fuzzing the two hand-written wire readers of the proxies: any bytes give an answer or their own error
// type, never another exception (a crash of the agent's proxy) and never an unbounded wait.
import fc from "fast-check";
import { describe, expect, it } from "vitest";
import { KafkaWireError, kafkaErrorResponse, kafkaFrameLength, parseKafkaRequest } from "./kafka-wire.ts";
import { readClientHello } from "./tls-client-hello.ts";

describe("wire readers on arbitrary bytes", () => {
  it("parseKafkaRequest throws only KafkaWireError, and an error response can be built for what parses", () => {
    fc.assert(
      fc.property(fc.constantFrom(0, 1, 2, 3, 8, 9, 18, 11), fc.integer({ min: 0, max: 13 }), fc.uint8Array({ maxLength: 200 }), (key, version, body) => {
        const head = Buffer.alloc(14);
        head.writeInt32BE(10 + body.length, 0);
        head.writeInt16BE(key, 4);
        head.writeInt16BE(version, 6);
        head.writeInt32BE(5, 8);
        head.writeInt16BE(0, 12);
        const frame = Buffer.concat([head, Buffer.from(body)]);
        expect(kafkaFrameLength(frame)).toBe(frame.length);
        try {
          const req = parseKafkaRequest(frame);
          const answer = kafkaErrorResponse(req, 29);
          if (answer) expect(answer.readInt32BE(4)).toBe(5);
        } catch (e) {
          expect(e).toBeInstanceOf(KafkaWireError);
        }
      }),
      { numRuns: 3000 },
    );
  });
  it("readClientHello answers need/error/serverName for any bytes", () => {
    fc.assert(
      fc.property(fc.uint8Array({ maxLength: 300 }), fc.boolean(), (bytes, asHandshake) => {
        const b = Buffer.from(bytes);
        if (asHandshake && b.length >= 6) {
          b[0] = 22;
          b[1] = 3;
          b[5] = 1;
        }
        const r = readClientHello(b);
        expect("need" in r || "error" in r || "serverName" in r).toBe(true);
      }),
      { numRuns: 3000 },
    );
  });
});
