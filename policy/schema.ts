// Schema validation, as the Kubernetes API server does it before anything reads an object: every object
// is checked against the published schema of its apiVersion and kind (the Kubernetes OpenAPI definitions
// for built-in kinds, the CRD openAPIV3Schema Cilium ships for CiliumNetworkPolicy and
// CiliumClusterwideNetworkPolicy), with strict field validation like `kubectl apply --validate=strict`:
// unknown fields, wrong types, values outside an enum or pattern and unsupported apiVersions are problems,
// each naming its field path. The schemas are data in policy/schemas/ (see SOURCES.md there), imported as
// modules so they travel inside the bundled CLI; ciliate's own kinds (policy/ciliate-schemas.ts) are
// registered here too, so one ajv instance validates every kind. `npm run build` precompiles all of them
// (scripts/build-validators.ts); without that, a validator is compiled on first use. Other kinds register
// theirs with registerSchema().

import { createHash } from "node:crypto";
import { existsSync } from "node:fs";
import { createRequire } from "node:module";
import { dirname, join } from "node:path";
import { fileURLToPath } from "node:url";
import { Ajv, type ErrorObject, type ValidateFunction } from "ajv";
import { CILIATE_API_VERSION, ciliateProblems, ciliateSchemas, didYouMean, registerCiliateSchemas } from "./ciliate-schemas.ts";
import ccnpSchema from "./schemas/ciliumclusterwidenetworkpolicy-v2.json" with { type: "json" };
import cnpSchema from "./schemas/ciliumnetworkpolicy-v2.json" with { type: "json" };
import kubernetesSchema from "./schemas/kubernetes.json" with { type: "json" };

export interface SchemaProblem {
  path: (string | number)[];
  code: "unknown-field" | "invalid-type" | "invalid-value" | "missing-field" | "unsupported-api-version";
  detail: string;
  /** What to do, when there is one thing to say (e.g. "did you mean http?"). */
  hint?: string;
}

interface Registered {
  schema: object;
  validate?: ValidateFunction;
}

export const AJV_OPTIONS = { allErrors: true, strict: false, validateFormats: false, verbose: true } as const;
/** Where `npm run build` writes the precompiled validators (scripts/build-validators.ts). */
export const PRECOMPILED_PATH = "build/schemas/validators.cjs";
const K8S_ID = "kubernetes.json";
const CRD_SCHEMAS = [cnpSchema, ccnpSchema] as unknown as { apiVersion: string; kind: string; schema: { properties: Record<string, unknown> } }[];

const ajv = new Ajv(AJV_OPTIONS);
const registry = new Map<string, Map<string, Registered>>(); // kind → apiVersion → schema
let builtinsLoaded = false;

/** The identifier of one apiVersion/kind's validator (no "/": ajv resolves $refs relative to it). */
export function schemaKey(apiVersion: string, kind: string): string {
  return `${kind}_${apiVersion.replace(/[/.]/g, "_")}`;
}

/** Identifies the schemas a precompiled module was built from (a stale module is not used). */
export function schemaFilesHash(): string {
  const h = createHash("sha256");
  for (const x of [kubernetesSchema, ...CRD_SCHEMAS, ...ciliateSchemas()]) h.update(JSON.stringify(x));
  return h.digest("hex");
}

/**
 * The built-in schemas: the Kubernetes definitions (one schema, $id kubernetes.json) and one per kind —
 * Kubernetes, Cilium's CRDs and ciliate's own kinds.
 */
export function builtinSchemas(): { definitions: object; kinds: { apiVersion: string; kind: string; schema: object }[] } {
  const k8s = structuredClone(kubernetesSchema) as unknown as { kinds: { apiVersion: string; kind: string; definition: string }[]; objectMeta: string; definitions: object };
  const kinds = k8s.kinds.map((k) => ({ apiVersion: k.apiVersion, kind: k.kind, schema: { $ref: `${K8S_ID}#/definitions/${k.definition}` } as object }));
  for (const c0 of CRD_SCHEMAS) {
    const c = structuredClone(c0);
    // The CRD leaves metadata open; the API server still validates it as ObjectMeta.
    kinds.push({ apiVersion: c.apiVersion, kind: c.kind, schema: { ...c.schema, properties: { ...c.schema.properties, metadata: { $ref: `${K8S_ID}#/definitions/${k8s.objectMeta}` } } } });
  }
  registerCiliateSchemas((apiVersion, kind, schema) => kinds.push({ apiVersion, kind, schema }));
  return { definitions: { $id: K8S_ID, definitions: k8s.definitions }, kinds };
}

/**
 * The precompiled module, found by walking up from this module: from policy/ in the sources it is
 * ../build/schemas/, from build/cli/chunks/ in the bundled CLI three levels further up, the same file.
 */
function precompiledFile(): string | undefined {
  let dir = dirname(fileURLToPath(import.meta.url));
  for (let i = 0; i < 5; i++) {
    const f = join(dir, PRECOMPILED_PATH);
    if (existsSync(f)) return f;
    const up = dirname(dir);
    if (up === dir) break;
    dir = up;
  }
  return undefined;
}

function precompiled(): Record<string, ValidateFunction> | undefined {
  const file = precompiledFile();
  if (!file) return undefined;
  const mod = createRequire(import.meta.url)(file) as Record<string, ValidateFunction> & { schemaHash?: string };
  return mod.schemaHash === schemaFilesHash() ? mod : undefined;
}

function loadBuiltins(): void {
  if (builtinsLoaded) return;
  builtinsLoaded = true;
  const { definitions, kinds } = builtinSchemas();
  ajv.addSchema(definitions);
  const pre = precompiled();
  for (const k of kinds) {
    registerSchema(k.apiVersion, k.kind, k.schema);
    const v = pre?.[schemaKey(k.apiVersion, k.kind)];
    if (v) registry.get(k.kind)!.get(k.apiVersion)!.validate = v;
  }
}

/**
 * Registers the JSON Schema of one apiVersion/kind (draft-07 keywords; `$ref` to
 * "kubernetes.json#/definitions/<name>" reaches the Kubernetes definitions). It is compiled on first use.
 * A kind registered under several apiVersions accepts each of them.
 */
export function registerSchema(apiVersion: string, kind: string, schema: object): void {
  let byVersion = registry.get(kind);
  if (!byVersion) registry.set(kind, (byVersion = new Map()));
  byVersion.set(apiVersion, { schema });
}

/** The apiVersions with a schema for a kind (empty: the kind has no schema). */
export function schemaApiVersions(kind: string): string[] {
  loadBuiltins();
  return [...(registry.get(kind)?.keys() ?? [])];
}

/** API servers drop null fields of objects before validation (a CRD field is not nullable by default). */
export function dropNulls(v: unknown): unknown {
  if (Array.isArray(v)) return v.map(dropNulls);
  if (!v || typeof v !== "object") return v;
  const out: Record<string, unknown> = {};
  for (const [k, x] of Object.entries(v)) if (x !== null) out[k] = dropNulls(x);
  return out;
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

function valueAt(root: unknown, path: (string | number)[]): unknown {
  let v = root as Record<string | number, unknown> | undefined;
  for (const p of path) v = v?.[p] as Record<string | number, unknown> | undefined;
  return v;
}

/** Turns ajv's errors into one problem per field, in the words kubectl uses. */
function problemsOf(errors: ErrorObject[], root: unknown): SchemaProblem[] {
  const out: SchemaProblem[] = [];
  // Errors inside a oneOf/anyOf branch only explain why that branch failed; the combinator's own error
  // (rewritten below from its branches) is the one to show.
  const combinators = errors.filter((e) => e.keyword === "oneOf" || e.keyword === "anyOf");
  const inBranch = (e: ErrorObject) => combinators.some((c) => c !== e && e.schemaPath.startsWith(`${c.schemaPath}/`));
  for (const e of errors) {
    if (inBranch(e)) continue;
    const path = pathOf(e.instancePath);
    const value = valueAt(root, path);
    const p = e.params as Record<string, unknown>;
    switch (e.keyword) {
      case "additionalProperties": {
        // kubectl names only the field; the near miss among the known ones is what to fix (`HTTP` → http).
        const field = String(p.additionalProperty);
        const near = didYouMean(field, Object.keys(((e.parentSchema ?? {}) as { properties?: object }).properties ?? {}));
        out.push({ path: [...path, field], code: "unknown-field", detail: `unknown field "${field}"`, ...(near ? { hint: `did you mean ${near}?` } : {}) });
        break;
      }
      case "required":
        out.push({ path: [...path, String(p.missingProperty)], code: "missing-field", detail: "Required value" });
        break;
      case "type":
        out.push({ path, code: "invalid-type", detail: `must be of type ${String(p.type)}, got ${typeName(value)}` });
        break;
      case "enum":
        out.push({ path, code: "invalid-value", detail: `Unsupported value ${JSON.stringify(value)}: supported values: ${(p.allowedValues as unknown[]).map((x) => JSON.stringify(x)).join(", ")}` });
        break;
      case "pattern":
        out.push({ path, code: "invalid-value", detail: `Invalid value ${JSON.stringify(value)}: does not match the schema's pattern` });
        break;
      case "oneOf":
      case "anyOf": {
        const branches = errors.filter((x) => x.schemaPath.startsWith(`${e.schemaPath}/`));
        const required = [...new Set(branches.filter((x) => x.keyword === "required").map((x) => String((x.params as Record<string, unknown>).missingProperty)))];
        const types = [...new Set(branches.filter((x) => x.keyword === "type" && x.instancePath === e.instancePath).map((x) => String((x.params as Record<string, unknown>).type)))];
        const named = ((e.schema as { required?: string[] }[] | undefined) ?? []).flatMap((b) => b.required ?? []);
        if (e.keyword === "oneOf" && (p.passingSchemas as number[] | null)?.length) out.push({ path, code: "invalid-value", detail: `only one of ${named.join(", ") || "the alternatives"} may be set` });
        else if (required.length && branches.every((x) => x.keyword === "required")) out.push({ path, code: "missing-field", detail: `one of ${required.join(", ")} is required` });
        else if (types.length === branches.length) out.push({ path, code: "invalid-type", detail: `must be of type ${types.join(" or ")}, got ${typeName(value)}` });
        else {
          const first = problemsOf(branches.filter((x) => x.keyword !== "required" && x.keyword !== "type"), root)[0];
          out.push(first ?? { path, code: "invalid-value", detail: "does not match any allowed form" });
        }
        break;
      }
      default:
        out.push({ path, code: "invalid-value", detail: `Invalid value ${JSON.stringify(value)}: ${e.message ?? e.keyword}` });
    }
  }
  const seen = new Set<string>();
  return out.filter((x) => {
    const k = `${x.path.join(".")}\n${x.detail}`;
    if (seen.has(k)) return false;
    seen.add(k);
    return true;
  });
}

/**
 * Validates one object. Outcomes: undefined — no schema is registered for its kind (the caller decides
 * what unknown kinds mean); [] — valid; otherwise every problem found (an apiVersion without a schema for
 * the kind is a single `unsupported-api-version` problem). Null fields are dropped first, as the API
 * server does.
 */
export function validateAgainstSchema(obj: Record<string, unknown>): SchemaProblem[] | undefined {
  loadBuiltins();
  const kind = String(obj.kind ?? "");
  const byVersion = registry.get(kind);
  if (!byVersion) return undefined;
  const apiVersion = String(obj.apiVersion ?? "");
  const reg = byVersion.get(apiVersion);
  if (obj.apiVersion === undefined) {
    const near = Object.keys(obj).find((k) => k !== "apiVersion" && k.toLowerCase() === "apiversion");
    const hint = near ? ` (found "${near}": field names are case-sensitive)` : "";
    return [{ path: ["apiVersion"], code: "missing-field", detail: `apiVersion is required; use ${[...byVersion.keys()].join(" or ")}${hint}` }];
  }
  if (!reg) {
    const known = [...byVersion.keys()];
    return [{ path: ["apiVersion"], code: "unsupported-api-version", detail: `apiVersion ${JSON.stringify(apiVersion)} is not supported for kind ${kind}; use ${known.join(" or ")}` }];
  }
  reg.validate ??= ajv.compile(reg.schema);
  const data = dropNulls(obj);
  if (reg.validate(data)) return [];
  // ciliate's kinds keep their own wording (known fields listed, ranges, endpoint references).
  if (apiVersion === CILIATE_API_VERSION) return ciliateProblems(reg.validate.errors ?? []);
  return problemsOf(reg.validate.errors ?? [], data);
}
