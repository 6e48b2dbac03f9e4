/*
 * The Kafka proxy handler, as Cilium's Kafka parser behaves (cilium/proxy proxylib/kafka/parser.go): the
 * client's byte stream is cut into request frames; each request's header and topics are read
 * (kafka-wire.ts) and judged by policy/'s evaluateKafka at this listener for the remote identity, with the
 * policy read per request.
 *   - allowed: the frame is forwarded unchanged to the destination;
 *   - denied: it is not forwarded; the client gets the error response Cilium injects (the same correlation
 *     id, TOPIC_AUTHORIZATION_FAILED on every topic), in its place in the response order. A denied request
 *     of a kind or version without such a response closes the connection (Cilium drops the request and
 *     leaves the client waiting);
 *   - unparseable (bad length, truncated body): the connection is closed, as Cilium does on a parse error.
 * Responses from the destination are passed back as they are, and reported with the latency of their
 * request. The client's bytes are buffered up to one frame (KAFKA_MAX_FRAME).
 */
import type { Socket } from "node:net";
import { evaluateKafka, kafkaApiKeyName } from "../../policy/index.ts";
import { flowEvent, l7ContextOf, nowNs, ruleReason } from "./common.ts";
import { KAFKA_MAX_FRAME, KafkaWireError, kafkaErrorResponse, kafkaFrameLength, parseKafkaRequest, type KafkaRequestHeader } from "./kafka-wire.ts";
import type { L7FlowEvent, ProxyHandler, ProxyHandlerContext, RedirectedConnection } from "./types.ts";

/** A response owed to the client, in request order: from upstream, or injected by the proxy. */
interface Owed {
  req: KafkaRequestHeader;
  start: bigint;
  injected?: Buffer;
  reason: string;
}

function kafkaOf(req: KafkaRequestHeader, errorCode: number): NonNullable<L7FlowEvent["kafka"]> {
  return { errorCode, apiVersion: req.apiVersion, apiKey: kafkaApiKeyName(req.apiKey), correlationId: req.correlationId, topic: (req.topics ?? []).map((t) => t.name).join(",") };
}

export class KafkaProxyHandler implements ProxyHandler {
  readonly protocol = "kafka" as const;

  constructor(private readonly maxFrame = KAFKA_MAX_FRAME) {}

  handle(conn: RedirectedConnection, ctx: ProxyHandlerContext): void {
    const client = conn.client;
    let inBuf: Buffer = Buffer.alloc(0);
    let upBuf: Buffer = Buffer.alloc(0);
    let upstream: Socket | undefined;
    let closed = false;
    const pendingWrites: Buffer[] = [];
    const owed: Owed[] = [];

    const close = (why?: string, req?: KafkaRequestHeader) => {
      if (closed) return;
      closed = true;
      if (why) ctx.emit({ ...flowEvent(conn, "kafka", "REQUEST", "ERROR", why), ...(req ? { kafka: kafkaOf(req, 0) } : {}) });
      client.destroy();
      upstream?.destroy();
    };

    // Injected answers wait for the upstream responses owed before them, so the client sees its order.
    const flush = () => {
      while (owed.length && owed[0].injected) {
        const o = owed.shift()!;
        client.write(o.injected!);
      }
    };

    conn.connectUpstream().then(
      (s) => {
        if (closed) return s.destroy();
        upstream = s;
        for (const b of pendingWrites.splice(0)) s.write(b);
        s.on("data", (d: Buffer) => {
          upBuf = upBuf.length ? Buffer.concat([upBuf, d]) : d;
          for (;;) {
            if (upBuf.length < 8) return;
            const n = upBuf.readInt32BE(0);
            if (n < 4 || n > this.maxFrame) return close(`invalid response frame length ${n} from the destination`);
            if (upBuf.length < 4 + n) return;
            const frame = upBuf.subarray(0, 4 + n);
            upBuf = upBuf.subarray(4 + n);
            const i = owed.findIndex((o) => !o.injected);
            const o = i >= 0 ? owed.splice(i, 1)[0] : undefined;
            client.write(frame);
            if (o)
              ctx.emit({ ...flowEvent(conn, "kafka", "RESPONSE", "FORWARDED", o.reason), latencyNs: Number(nowNs() - o.start), kafka: { ...kafkaOf(o.req, 0), correlationId: frame.readInt32BE(4) } });
            flush();
          }
        });
        s.on("end", () => client.end());
        s.on("close", () => client.end());
        s.on("error", () => {
          ctx.upstreamError("kafka");
          client.destroy();
        });
      },
      () => {
        ctx.upstreamError("kafka");
        close();
      },
    );

    const forward = (frame: Buffer) => {
      if (upstream) upstream.write(frame);
      else pendingWrites.push(frame);
    };

    const onFrame = (frame: Buffer) => {
      let req: KafkaRequestHeader;
      try {
        req = parseKafkaRequest(frame);
      } catch (e) {
        return close(`unparseable Kafka request: ${(e as Error).message}`);
      }
      const start = nowNs();
      const v = evaluateKafka(ctx.policy(), l7ContextOf(conn), { apiKey: req.apiKey, apiVersion: req.apiVersion, clientID: req.clientID, topics: (req.topics ?? []).map((t) => t.name), correlationId: req.correlationId });
      const reason = ruleReason(v);
      if (v.allowed) {
        ctx.emit({ ...flowEvent(conn, "kafka", "REQUEST", "FORWARDED", reason), kafka: kafkaOf(req, 0) });
        if (req.expectsResponse) owed.push({ req, start, reason });
        forward(frame);
        return;
      }
      ctx.emit({ ...flowEvent(conn, "kafka", "REQUEST", "DROPPED", reason), kafka: kafkaOf(req, v.errorCode) });
      const answer = kafkaErrorResponse(req, v.errorCode);
      if (!answer) return close(`denied ${kafkaApiKeyName(req.apiKey)} v${req.apiVersion} has no error response: connection closed`, req);
      if (req.expectsResponse) {
        owed.push({ req, start, injected: answer, reason });
        ctx.emit({ ...flowEvent(conn, "kafka", "RESPONSE", "FORWARDED", reason), latencyNs: Number(nowNs() - start), kafka: kafkaOf(req, v.errorCode) });
        flush();
      }
    };

    client.on("data", (d: Buffer) => {
      if (closed) return;
      inBuf = inBuf.length ? Buffer.concat([inBuf, d]) : d;
      for (;;) {
        let n: number;
        try {
          n = kafkaFrameLength(inBuf, this.maxFrame);
        } catch (e) {
          if (e instanceof KafkaWireError) return close(e.message);
          throw e;
        }
        if (n === 0 || closed) return;
        const frame = inBuf.subarray(0, n);
        inBuf = inBuf.subarray(n);
        onFrame(Buffer.from(frame));
      }
    });
    client.on("end", () => upstream?.end());
    client.on("close", () => {
      closed = true;
      upstream?.destroy();
    });
    client.on("error", () => upstream?.destroy());
  }
}
