/*
 * Hubble's protobuf API (host/proto: flow.proto, observer.proto, relay.proto, kept as upstream wrote them)
 * loaded with protobufjs, and a strict check that a JSON object is exactly a message of it.
 *
 * The check is a protobuf round trip: the object is read into the message type, encoded to the wire
 * format, decoded and written back as proto3 JSON; anything the protobuf library did not carry through —
 * a field the message does not have, an enum value by a name the enum does not have, a string where a
 * number belongs, two members of one oneof — comes back different and is reported with its path. ciliate's
 * flows are written in proto3's canonical JSON form (defaults left out, host/flows.ts hubbleFlow), so an
 * exact match is the contract.
 *
 * google.protobuf.Timestamp and the wrapper types (BoolValue, …) are written in JSON as an RFC 3339 string
 * and a bare value; protobufjs reads and writes them as objects unless told otherwise, so this module
 * registers those JSON forms (protobufjs `wrappers`), used only when converting with `json: true`.
 */
import { join } from "node:path";
import protobuf from "protobufjs";
import { repoPath } from "./paths.ts";

/** host/proto under the repository root (host/paths.ts finds it from the sources and the bundled command alike). */
export const PROTO_DIR = repoPath("host/proto");
export const PROTO_FILES = ["flow/flow.proto", "observer/observer.proto", "relay/relay.proto"];

type WrapperThis = protobuf.Type;

/** RFC 3339 text of a Timestamp, with 3, 6 or 9 fraction digits as proto3 JSON writes it. */
export function timestampText(seconds: number, nanos: number): string {
  const base = new Date(seconds * 1000).toISOString().slice(0, 19);
  const frac = nanos % 1_000_000 === 0 ? String(nanos / 1_000_000).padStart(3, "0") : nanos % 1000 === 0 ? String(nanos / 1000).padStart(6, "0") : String(nanos).padStart(9, "0");
  return `${base}.${frac}Z`;
}

/** Seconds and nanoseconds of an RFC 3339 time; throws on text that is not one. */
export function parseTimestamp(text: string): { seconds: number; nanos: number } {
  const m = /^(\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d)(?:\.(\d{1,9}))?(Z|[+-]\d\d:\d\d)$/.exec(text);
  const ms = m ? Date.parse(`${m[1]}${m[3]}`) : NaN;
  if (!m || Number.isNaN(ms)) throw new Error(`not an RFC 3339 time: ${JSON.stringify(text)}`);
  return { seconds: Math.floor(ms / 1000), nanos: Number((m[2] ?? "").padEnd(9, "0")) };
}

let registered = false;
function registerJsonForms(): void {
  if (registered) return;
  registered = true;
  const w = protobuf.wrappers as Record<string, protobuf.IWrapper>;
  w[".google.protobuf.Timestamp"] = {
    // Reading is done by fromJsonForm: generated readers want an object before a wrapper is consulted.
    fromObject(this: WrapperThis, o: { [k: string]: unknown }) {
      return this.fromObject(o);
    },
    toObject(this: WrapperThis, m: protobuf.Message, opts?: protobuf.IConversionOptions) {
      const t = m as unknown as { seconds: number | { toNumber(): number }; nanos: number };
      if (!opts?.json) return this.toObject(m, opts);
      return timestampText(typeof t.seconds === "number" ? t.seconds : t.seconds.toNumber(), t.nanos) as unknown as { [k: string]: unknown };
    },
  };
  for (const name of ["BoolValue", "UInt32Value", "Int32Value", "StringValue"]) {
    w[`.google.protobuf.${name}`] = {
      fromObject(this: WrapperThis, o: { [k: string]: unknown }) {
        return this.fromObject(o);
      },
      toObject(this: WrapperThis, m: protobuf.Message, opts?: protobuf.IConversionOptions) {
        return opts?.json ? ((m as unknown as { value: unknown }).value as { [k: string]: unknown }) : this.toObject(m, opts);
      },
    };
  }
}

let root: protobuf.Root | undefined;
/** The loaded Hubble API (field names kept as written in the .proto files). */
export function hubbleRoot(): protobuf.Root {
  if (root) return root;
  registerJsonForms();
  const r = new protobuf.Root();
  // Imports are relative to host/proto; google/protobuf/* come with protobufjs.
  r.resolvePath = (_origin, target) => (target.startsWith("google/protobuf/") ? target : join(PROTO_DIR, target.startsWith(PROTO_DIR) ? target.slice(PROTO_DIR.length + 1) : target));
  r.loadSync(PROTO_FILES, { keepCase: true });
  r.resolveAll();
  root = r;
  return r;
}

/** proto3 JSON conversion options: enum names, 64-bit integers as strings, defaults left out. */
export const JSON_FORM: protobuf.IConversionOptions = { json: true, enums: String, longs: String, defaults: false };

function differences(want: unknown, got: unknown, path: string, out: string[]): void {
  if (out.length >= 10) return;
  if (want !== null && typeof want === "object" && got !== null && typeof got === "object" && Array.isArray(want) === Array.isArray(got)) {
    const keys = new Set([...Object.keys(want), ...Object.keys(got)]);
    for (const k of keys) differences((want as Record<string, unknown>)[k], (got as Record<string, unknown>)[k], Array.isArray(want) ? `${path}[${k}]` : `${path}.${k}`, out);
    return;
  }
  if (want === got) return;
  if (got === undefined) out.push(`${path}: ${JSON.stringify(want)} is not a field or value of the message (it did not survive the protobuf round trip)`);
  else if (want === undefined) out.push(`${path}: the protobuf form has ${JSON.stringify(got)} here that the JSON does not`);
  else out.push(`${path}: ${JSON.stringify(want)} became ${JSON.stringify(got)} in the protobuf round trip`);
}

const WRAPPERS = new Set([".google.protobuf.BoolValue", ".google.protobuf.UInt32Value", ".google.protobuf.Int32Value", ".google.protobuf.StringValue"]);

/**
 * The object form protobufjs reads of a proto3 JSON value of type T: a Timestamp's RFC 3339 text becomes
 * {seconds, nanos}, a wrapper's bare value {value}. (protobufjs's generated readers insist on an object for
 * a message field before any wrapper is asked.) Fields T does not have are passed through untouched, so the
 * round trip still reports them.
 */
export function fromJsonForm(T: protobuf.Type, json: unknown): unknown {
  if (json === null || typeof json !== "object" || Array.isArray(json)) return json;
  const out: Record<string, unknown> = {};
  for (const [k, v] of Object.entries(json)) {
    const f = T.fields[k];
    const mt = f?.resolvedType instanceof protobuf.Type ? f.resolvedType : undefined;
    if (!mt) out[k] = v;
    else {
      const one = (x: unknown): unknown =>
        mt.fullName === ".google.protobuf.Timestamp" && typeof x === "string" ? parseTimestamp(x) : WRAPPERS.has(mt.fullName) && (typeof x !== "object" || x === null) ? { value: x } : fromJsonForm(mt, x);
      out[k] = f!.repeated && Array.isArray(v) ? v.map(one) : one(v);
    }
  }
  return out;
}

/**
 * Problems that keep `json` from being exactly a proto3-JSON `typeName` message (e.g. "flow.Flow"): an
 * empty list when it is one. Each problem names the JSON path.
 */
export function protoProblems(json: unknown, typeName = "flow.Flow"): string[] {
  const T = hubbleRoot().lookupType(typeName);
  let back: unknown;
  try {
    const bytes = T.encode(T.fromObject(fromJsonForm(T, json) as Record<string, unknown>)).finish();
    back = T.toObject(T.decode(bytes), JSON_FORM);
  } catch (e) {
    return [`${typeName}: ${(e as Error).message}`];
  }
  const out: string[] = [];
  differences(json, back, typeName, out);
  return out;
}
