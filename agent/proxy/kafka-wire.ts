/*
 * The part of the Kafka wire protocol (kafka.apache.org/protocol) the Kafka proxy needs, and no more: the
 * request header (api_key, api_version, correlation_id, client_id) and the topics (with their partition
 * indexes) of the requests that carry topics — Produce, Fetch, ListOffsets, Metadata, OffsetCommit,
 * OffsetFetch, as Cilium's Kafka parser reads them (cilium/proxy proxylib/kafka/kafkalib/request.go) — and
 * the error response Cilium answers a denied request with: the same correlation id, every topic and
 * partition of the request with TOPIC_AUTHORIZATION_FAILED (kafkalib/response.go). Flexible versions
 * (compact strings and arrays, tagged fields) are parsed; error responses are built for the non-flexible
 * versions of those six kinds, which is what clients negotiate with brokers that advertise them. Every read
 * is bounds-checked: a short or inconsistent frame is a KafkaWireError, never an exception from a Buffer.
 */

export class KafkaWireError extends Error {}

/** The largest request frame the proxy buffers (the broker default socket.request.max.bytes is 100 MiB). */
export const KAFKA_MAX_FRAME = 100 * 1024 * 1024;

export interface KafkaTopicParts {
  name: string;
  partitions: number[];
}

export interface KafkaRequestHeader {
  apiKey: number;
  apiVersion: number;
  correlationId: number;
  /** Empty for version-0 requests, as Cilium reads them (kafkalib extractClientID). */
  clientID: string;
  /** Topics of kinds that carry them; undefined for other kinds. For Metadata, [] may mean "all topics". */
  topics?: KafkaTopicParts[];
  /** Metadata request for every topic (null topic array). */
  allTopics?: boolean;
  /** False for a Produce request with acks=0: the broker sends no response. */
  expectsResponse: boolean;
}

/** First version of each kind that uses the flexible encoding (request header v2). */
const FLEXIBLE_FROM: Record<number, number> = { 0: 9, 1: 12, 2: 6, 3: 9, 8: 8, 9: 6, 10: 3, 11: 6, 12: 4, 13: 4, 14: 4, 15: 5, 16: 3, 17: 99, 18: 3, 19: 5, 20: 4, 21: 2, 22: 2, 23: 4, 24: 3, 25: 3, 26: 3, 27: 1, 28: 3, 29: 2, 30: 2, 31: 2, 32: 4, 33: 2 };

export function isFlexible(apiKey: number, apiVersion: number): boolean {
  const from = FLEXIBLE_FROM[apiKey];
  return from !== undefined && apiVersion >= from;
}

class Reader {
  constructor(
    private readonly b: Buffer,
    public off = 0,
  ) {}
  private need(n: number): void {
    if (n < 0 || this.off + n > this.b.length) throw new KafkaWireError(`truncated request: need ${n} bytes at offset ${this.off} of ${this.b.length}`);
  }
  i8(): number {
    this.need(1);
    return this.b.readInt8(this.off++);
  }
  i16(): number {
    this.need(2);
    const v = this.b.readInt16BE(this.off);
    this.off += 2;
    return v;
  }
  i32(): number {
    this.need(4);
    const v = this.b.readInt32BE(this.off);
    this.off += 4;
    return v;
  }
  skip(n: number): void {
    this.need(n);
    this.off += n;
  }
  uvarint(): number {
    let v = 0;
    for (let shift = 0; shift < 35; shift += 7) {
      const x = this.b.length > this.off ? this.b[this.off++] : -1;
      if (x < 0) throw new KafkaWireError("truncated varint");
      v += (x & 0x7f) * 2 ** shift;
      if (!(x & 0x80)) return v;
    }
    throw new KafkaWireError("varint too long");
  }
  /** A STRING / NULLABLE_STRING (or COMPACT_ form); null for a null string. */
  str(compact: boolean): string | null {
    const n = compact ? this.uvarint() - 1 : this.i16();
    if (n < 0) return null;
    this.need(n);
    const s = this.b.toString("utf8", this.off, this.off + n);
    this.off += n;
    return s;
  }
  bytes(compact: boolean): void {
    const n = compact ? this.uvarint() - 1 : this.i32();
    if (n > 0) this.skip(n);
  }
  /** An ARRAY length (COMPACT_ARRAY when compact); -1 for a null array. Bounded by the bytes left. */
  arrayLen(compact: boolean): number {
    const n = compact ? this.uvarint() - 1 : this.i32();
    if (n > this.b.length - this.off) throw new KafkaWireError(`array of ${n} elements in ${this.b.length - this.off} bytes`);
    return n < 0 ? -1 : n;
  }
  taggedFields(flexible: boolean): void {
    if (!flexible) return;
    const n = this.uvarint();
    for (let i = 0; i < n; i++) {
      this.uvarint();
      this.skip(this.uvarint());
    }
  }
}

/** Reads `[topics]` whose entries are a name then what `partition` reads for each partition. */
function topicArray(r: Reader, flex: boolean, partition: () => number, nameOf = () => r.str(flex) ?? ""): KafkaTopicParts[] {
  const n = r.arrayLen(flex);
  const out: KafkaTopicParts[] = [];
  for (let i = 0; i < n; i++) {
    const name = nameOf();
    const parts: number[] = [];
    const m = r.arrayLen(flex);
    for (let j = 0; j < m; j++) {
      parts.push(partition());
      r.taggedFields(flex);
    }
    r.taggedFields(flex);
    out.push({ name, partitions: parts });
  }
  return out;
}

/** Topics of a request body, by kind and version; undefined for kinds without topics. */
function topicsOf(r: Reader, key: number, v: number, flex: boolean): { topics: KafkaTopicParts[]; all?: boolean; acks?: number } | undefined {
  switch (key) {
    case 0: { // Produce
      if (v >= 3) r.str(flex); // transactional_id
      const acks = r.i16();
      r.i32(); // timeout_ms
      return {
        acks,
        topics: topicArray(r, flex, () => {
          const p = r.i32();
          r.bytes(flex); // records
          return p;
        }),
      };
    }
    case 1: // Fetch
      r.i32(); // replica_id
      r.i32(); // max_wait_ms
      r.i32(); // min_bytes
      if (v >= 3) r.i32(); // max_bytes
      if (v >= 4) r.i8(); // isolation_level
      if (v >= 7) (r.i32(), r.i32()); // session_id, session_epoch
      // From v13 topics are named by id only: no names to match (a topic rule then cannot allow it).
      return {
        topics: topicArray(
          r,
          flex,
          () => {
            const p = r.i32();
            if (v >= 9) r.i32(); // current_leader_epoch
            r.skip(8); // fetch_offset
            if (v >= 12) r.i32(); // last_fetched_epoch
            if (v >= 5) r.skip(8); // log_start_offset
            r.i32(); // partition_max_bytes
            return p;
          },
          () => (v >= 13 ? (r.skip(16), "") : (r.str(flex) ?? "")),
        ).filter((t) => t.name !== ""),
      };
    case 2: // ListOffsets
      r.i32(); // replica_id
      if (v >= 2) r.i8(); // isolation_level
      return {
        topics: topicArray(r, flex, () => {
          const p = r.i32();
          if (v >= 4) r.i32(); // current_leader_epoch
          r.skip(8); // timestamp
          if (v === 0) r.i32(); // max_num_offsets
          return p;
        }),
      };
    case 3: {
      // Metadata: a null array (v1+) or, in v0, an empty one asks for every topic.
      const n = r.arrayLen(flex);
      const topics: KafkaTopicParts[] = [];
      for (let i = 0; i < n; i++) {
        if (v >= 10) r.skip(16); // topic_id
        const name = r.str(flex);
        r.taggedFields(flex);
        if (name) topics.push({ name, partitions: [] });
      }
      return { topics, all: n < 0 || (v === 0 && n === 0) };
    }
    case 8: // OffsetCommit
      r.str(flex); // group_id
      if (v >= 1) (r.i32(), r.str(flex)); // generation_id, member_id
      if (v >= 7) r.str(flex); // group_instance_id
      if (v >= 2 && v <= 4) r.skip(8); // retention_time_ms
      return {
        topics: topicArray(r, flex, () => {
          const p = r.i32();
          r.skip(8); // committed_offset
          if (v >= 6) r.i32(); // committed_leader_epoch
          if (v === 1) r.skip(8); // commit_timestamp
          r.str(flex); // committed_metadata
          return p;
        }),
      };
    case 9: {
      // OffsetFetch (v8+ names several groups; their topics together)
      const groups = v >= 8 ? r.arrayLen(flex) : 1;
      const topics: KafkaTopicParts[] = [];
      let all = false;
      for (let g = 0; g < groups; g++) {
        r.str(flex); // group_id
        const n = r.arrayLen(flex);
        if (n < 0) all = true;
        for (let i = 0; i < n; i++) {
          const name = r.str(flex) ?? "";
          const parts: number[] = [];
          const m = r.arrayLen(flex);
          for (let j = 0; j < m; j++) parts.push(r.i32());
          r.taggedFields(flex);
          topics.push({ name, partitions: parts });
        }
        if (v >= 8) r.taggedFields(flex);
      }
      return { topics, all };
    }
  }
  return undefined;
}

/**
 * Size of the first frame in `buf` when it is complete (4-byte length + body), 0 when more bytes are
 * needed. Throws KafkaWireError for a negative or oversized length.
 */
export function kafkaFrameLength(buf: Buffer, max = KAFKA_MAX_FRAME): number {
  if (buf.length < 4) return 0;
  const n = buf.readInt32BE(0);
  if (n < 8 || n > max) throw new KafkaWireError(`invalid frame length ${n}`);
  return buf.length >= 4 + n ? 4 + n : 0;
}

/** Parses one complete request frame (with its 4-byte length). */
export function parseKafkaRequest(frame: Buffer): KafkaRequestHeader {
  const r = new Reader(frame, 4);
  const apiKey = r.i16();
  const apiVersion = r.i16();
  const correlationId = r.i32();
  if (apiKey < 0 || apiVersion < 0) throw new KafkaWireError(`invalid api key ${apiKey} / version ${apiVersion}`);
  // ControlledShutdown v0 is the one request with header v0 (no client id).
  const headerV0 = apiKey === 7 && apiVersion === 0;
  const id = headerV0 ? "" : (r.str(false) ?? "");
  const flex = isFlexible(apiKey, apiVersion);
  r.taggedFields(flex);
  const t = topicsOf(r, apiKey, apiVersion, flex);
  return { apiKey, apiVersion, correlationId, clientID: apiVersion === 0 ? "" : id, topics: t?.topics, allTopics: t?.all, expectsResponse: !(apiKey === 0 && t?.acks === 0) };
}

class Writer {
  private parts: Buffer[] = [];
  private push(n: number, f: (b: Buffer) => void): this {
    const b = Buffer.alloc(n);
    f(b);
    this.parts.push(b);
    return this;
  }
  i8(v: number): this {
    return this.push(1, (b) => b.writeInt8(v));
  }
  i16(v: number): this {
    return this.push(2, (b) => b.writeInt16BE(v));
  }
  i32(v: number): this {
    return this.push(4, (b) => b.writeInt32BE(v));
  }
  i64(v: bigint): this {
    return this.push(8, (b) => b.writeBigInt64BE(v));
  }
  str(s: string | null): this {
    if (s === null) return this.i16(-1);
    const x = Buffer.from(s, "utf8");
    this.i16(x.length);
    this.parts.push(x);
    return this;
  }
  array<T>(items: T[], f: (w: this, x: T) => void): this {
    this.i32(items.length);
    for (const x of items) f(this, x);
    return this;
  }
  frame(): Buffer {
    const body = Buffer.concat(this.parts);
    const len = Buffer.alloc(4);
    len.writeInt32BE(body.length);
    return Buffer.concat([len, body]);
  }
}

/** Highest version of each kind whose error response is built (the non-flexible ones). */
export const KAFKA_ERROR_RESPONSE_MAX_VERSION: Record<number, number> = { 0: 8, 1: 11, 2: 5, 3: 8, 8: 7, 9: 5 };

/**
 * The response Cilium sends for a denied request: its correlation id and `errorCode` on every topic and
 * partition it named. Undefined for kinds and versions it cannot answer (the proxy then closes the
 * connection rather than pass the request).
 */
export function kafkaErrorResponse(req: KafkaRequestHeader, errorCode: number): Buffer | undefined {
  const v = req.apiVersion;
  const max = KAFKA_ERROR_RESPONSE_MAX_VERSION[req.apiKey];
  if (max === undefined || v > max || !req.topics) return undefined;
  const w = new Writer().i32(req.correlationId);
  const topics = req.topics;
  switch (req.apiKey) {
    case 0:
      w.array(topics, (w, t) =>
        w.str(t.name).array(t.partitions, (w, p) => {
          w.i32(p).i16(errorCode).i64(-1n);
          if (v >= 2) w.i64(-1n); // log_append_time_ms
          if (v >= 5) w.i64(-1n); // log_start_offset
          if (v >= 8) w.i32(0).str(null); // record_errors, error_message
        }),
      );
      if (v >= 1) w.i32(0); // throttle_time_ms
      break;
    case 1:
      if (v >= 1) w.i32(0);
      if (v >= 7) w.i16(0).i32(0); // error_code, session_id
      w.array(topics, (w, t) =>
        w.str(t.name).array(t.partitions, (w, p) => {
          w.i32(p).i16(errorCode).i64(-1n);
          if (v >= 4) w.i64(-1n); // last_stable_offset
          if (v >= 5) w.i64(-1n); // log_start_offset
          if (v >= 4) w.i32(0); // aborted_transactions: empty
          if (v >= 11) w.i32(-1); // preferred_read_replica
          w.i32(0); // records: empty
        }),
      );
      break;
    case 2:
      if (v >= 2) w.i32(0);
      w.array(topics, (w, t) =>
        w.str(t.name).array(t.partitions, (w, p) => {
          w.i32(p).i16(errorCode);
          if (v === 0) w.i32(0); // old_style_offsets: empty
          else w.i64(-1n).i64(-1n); // timestamp, offset
          if (v >= 4) w.i32(-1); // leader_epoch
        }),
      );
      break;
    case 3:
      if (v >= 3) w.i32(0);
      w.i32(0); // brokers: none
      if (v >= 2) w.str(null); // cluster_id
      if (v >= 1) w.i32(-1); // controller_id
      w.array(topics, (w, t) => {
        w.i16(errorCode).str(t.name);
        if (v >= 1) w.i8(0); // is_internal
        w.i32(0); // partitions: none
        if (v >= 8) w.i32(-2147483648); // topic_authorized_operations
      });
      if (v >= 8) w.i32(-2147483648); // cluster_authorized_operations
      break;
    case 8:
      if (v >= 3) w.i32(0);
      w.array(topics, (w, t) => w.str(t.name).array(t.partitions, (w, p) => w.i32(p).i16(errorCode)));
      break;
    case 9:
      if (v >= 3) w.i32(0);
      w.array(topics, (w, t) =>
        w.str(t.name).array(t.partitions, (w, p) => {
          w.i32(p).i64(-1n);
          if (v >= 5) w.i32(-1); // committed_leader_epoch
          w.str("").i16(errorCode);
        }),
      );
      if (v >= 2) w.i16(0);
      break;
  }
  return w.frame();
}
