// Schema validation of ciliate's own kinds (Traffic, Expectation, Config under ciliate.dev/v1alpha1), as
// strict as `kubectl apply --validate=strict` is for built-in kinds: a misspelt field (`protocl: UDP`) or a
// wrong type is refused with its path instead of being ignored, and a near miss gets a "did you mean".
// The schemas are data in policy/schemas/ciliate/ (JSON Schema draft-07). registerCiliateSchemas() hands
// them to policy/schema.ts's registry, so every kind is validated by one ajv instance (and precompiled at
// build with the others); ciliateProblems() words the errors of these kinds.

import type { ErrorObject } from "ajv";
import { closest, distance } from "fastest-levenshtein";
// Imported, not read from disk: the data travels with the code into the bundled CLI (build/cli/).
import common from "./schemas/ciliate/common.json" with { type: "json" };
import config from "./schemas/ciliate/config.json" with { type: "json" };
import expectation from "./schemas/ciliate/expectation.json" with { type: "json" };
import traffic from "./schemas/ciliate/traffic.json" with { type: "json" };

export const CILIATE_API_VERSION = "ciliate.dev/v1alpha1";

export interface CiliateSchemaProblem {
  path: (string | number)[];
  code: "unknown-field" | "invalid-type" | "invalid-value" | "missing-field" | "unsupported-api-version";
  detail: string;
}

const SCHEMAS: Record<string, object> = { Traffic: traffic, Expectation: expectation, Config: config };

/**
 * The schema of each kind, self-contained: the shared definitions (common.json) are copied in, so that
 * their `$ref: "#/definitions/…"` resolve in any validator they are registered with.
 */
export function ciliateSchemas(): { apiVersion: string; kind: string; schema: object }[] {
  // Copies, so that a registry that annotates or compiles a schema never changes ours.
  const definitions = structuredClone(common.definitions);
  return Object.entries(SCHEMAS).map(([kind, schema]) => ({ apiVersion: CILIATE_API_VERSION, kind, schema: { ...structuredClone(schema), definitions } }));
}

/** Hands the three schemas to a registry of apiVersion/kind schemas (the one the other kinds use). */
export function registerCiliateSchemas(register: (apiVersion: string, kind: string, schema: object) => void): void {
  for (const k of ciliateSchemas()) register(k.apiVersion, k.kind, k.schema);
}

/**
 * A near miss among the allowed words: the same word in another case, a prefix of at least three
 * letters (`allow` → `allowed`), or an edit distance of 1 for short words and up to a quarter of the word
 * (at least 2: a swapped pair, `sepc` → `spec`) for longer ones. Undefined when nothing is that close.
 */
export function didYouMean(word: string, candidates: readonly string[]): string | undefined {
  if (!candidates.length || !word) return undefined;
  const w = word.toLowerCase();
  const same = candidates.find((c) => c.toLowerCase() === w);
  if (same) return same;
  const prefix = w.length >= 3 ? candidates.find((c) => c.toLowerCase().startsWith(w)) : undefined;
  if (prefix) return prefix;
  const best = closest(word, candidates as string[]);
  const limit = word.length <= 3 ? 1 : Math.max(2, Math.floor(word.length / 4));
  return distance(word, best) <= limit ? best : undefined;
}

function pathOf(instancePath: string): (string | number)[] {
  if (!instancePath) return [];
  return instancePath
    .slice(1)
    .split("/")
    .map((s) => s.replace(/~1/g, "/").replace(/~0/g, "~"))
    .map((s) => (/^\d+$/.test(s) ? Number(s) : s));
}

function typeName(v: unknown): string {
  return v === null ? "null" : Array.isArray(v) ? "array" : typeof v === "number" && Number.isInteger(v) ? "integer" : typeof v;
}

function problemOf(e: ErrorObject, all: ErrorObject[]): CiliateSchemaProblem | undefined {
  const path = pathOf(e.instancePath);
  const p = e.params as Record<string, unknown>;
  const hint = (w: string | undefined) => (w ? ` (did you mean "${w}"?)` : "");
  switch (e.keyword) {
    case "additionalProperties": {
      const field = String(p.additionalProperty);
      const known = Object.keys(((e.parentSchema ?? {}) as { properties?: object }).properties ?? {});
      return { path: [...path, field], code: "unknown-field", detail: `unknown field "${field}"${hint(didYouMean(field, known))}; known fields: ${known.join(", ")}` };
    }
    case "required":
      return { path: [...path, String(p.missingProperty)], code: "missing-field", detail: "required field is missing" };
    case "type":
      return { path, code: "invalid-type", detail: `must be ${String(p.type)}, got ${typeName(e.data)}` };
    case "const":
      if (path[0] === "apiVersion") return { path, code: "unsupported-api-version", detail: `apiVersion ${JSON.stringify(e.data)} is not supported; use ${JSON.stringify(p.allowedValue)}` };
      return { path, code: "invalid-value", detail: `must be ${JSON.stringify(p.allowedValue)}` };
    case "enum": {
      const allowed = (p.allowedValues as unknown[]).map(String);
      return { path, code: "invalid-value", detail: `unsupported value ${JSON.stringify(e.data)}${typeof e.data === "string" ? hint(didYouMean(e.data, allowed)) : ""}; supported: ${allowed.join(", ")}` };
    }
    case "minimum":
    case "maximum": {
      const s = e.parentSchema as { minimum?: number; maximum?: number };
      const range = s.minimum !== undefined && s.maximum !== undefined ? `out of range ${s.minimum}-${s.maximum}` : s.minimum !== undefined ? `below the minimum ${s.minimum}` : `above the maximum ${s.maximum}`;
      return { path, code: "invalid-value", detail: `${JSON.stringify(e.data)} is ${range}` };
    }
    case "minProperties":
    case "maxProperties":
      if (path.at(-1) === "from" || path.at(-1) === "to")
        return { path, code: "invalid-value", detail: `an endpoint reference has exactly one of pod, service, selector, cidr, ip, entity (got ${Object.keys(e.data as object).join(", ") || "none"})` };
      return { path, code: "invalid-value", detail: e.message ?? e.keyword };
    case "anyOf": {
      // The alternatives' own errors say only why each failed; one line names what would be accepted.
      const branches = all.filter((x) => x.instancePath === e.instancePath && x.schemaPath.startsWith(`${e.schemaPath}/`));
      const types = [...new Set(branches.filter((x) => x.keyword === "type").map((x) => String((x.params as Record<string, unknown>).type)))];
      if (path.at(-1) === "port") return { path, code: "invalid-value", detail: `invalid port ${JSON.stringify(e.data)} (1-65535)` };
      return { path, code: types.length === branches.length ? "invalid-type" : "invalid-value", detail: `must be ${types.join(" or ") || "one of the allowed forms"}, got ${typeName(e.data)}` };
    }
    default:
      return { path, code: "invalid-value", detail: `invalid value ${JSON.stringify(e.data)}: ${e.message ?? e.keyword}` };
  }
}

/**
 * ajv's errors for an object of a ciliate kind as one problem per field, each with its path (errors inside
 * an `anyOf` alternative are folded into the alternative's one problem). The validator must be built with
 * `verbose: true`: an unknown field is compared with the known ones of its parent schema.
 */
export function ciliateProblems(errors: ErrorObject[]): CiliateSchemaProblem[] {
  const anyOfs = errors.filter((e) => e.keyword === "anyOf");
  const inBranch = (e: ErrorObject) => anyOfs.some((a) => e.instancePath === a.instancePath && e.schemaPath.startsWith(`${a.schemaPath}/`));
  const out: CiliateSchemaProblem[] = [];
  const seen = new Set<string>();
  for (const e of errors) {
    if (inBranch(e)) continue;
    const p = problemOf(e, errors);
    if (!p) continue;
    const k = `${p.path.join(".")}\n${p.detail}`;
    if (!seen.has(k)) out.push(p), seen.add(k);
  }
  // `sepc:` makes `spec` missing too; the unknown field's "did you mean" already says it, once.
  const suggested = new Set(out.filter((p) => p.code === "unknown-field").map((p) => `${p.path.slice(0, -1).join(".")}\n${/did you mean "([^"]+)"/.exec(p.detail)?.[1]}`));
  return out.filter((p) => p.code !== "missing-field" || !suggested.has(`${p.path.slice(0, -1).join(".")}\n${String(p.path.at(-1))}`));
}
