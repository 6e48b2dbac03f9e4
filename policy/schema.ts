// Schema validation, as the Kubernetes API server does it before anything reads an object: every object
// is checked against the published schema of its apiVersion and kind (the Kubernetes OpenAPI definitions
// for built-in kinds, the CRD openAPIV3Schema Cilium ships for CiliumNetworkPolicy and
// CiliumClusterwideNetworkPolicy), with strict field validation like `kubectl apply --validate=strict`:
// unknown fields, wrong types, values outside an enum or pattern and unsupported apiVersions are problems,
// each naming its field path. The schemas are data in policy/schemas/ (see SOURCES.md there), imported as
// modules so they travel inside the bundled CLI; ciliate's own kinds (policy/ciliate-schemas.ts) are
// registered here too, so one ajv instance validates every kind. `npm run build` precompiles all of them
// (scripts/build-validators.ts), one module per kind, and a run loads only the kinds its input has: a CLI
// start pays for two or three validators, not for all of them, and never loads ajv's compiler. Without
// that build, a validator is compiled on first use. Other kinds register theirs with registerSchema().

import { createHash } from "node:crypto";
import { existsSync, readFileSync } from "node:fs";
import { createRequire } from "node:module";
import { dirname, join } from "node:path";
import { fileURLToPath } from "node:url";
import { Script } from "node:vm";
import type { Ajv, ErrorObject, ValidateFunction } from "ajv";
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
  /** The schema, made when it is compiled (most runs load a precompiled validator instead). */
  schema: () => object;
  /** A built-in kind: its precompiled validator may be used. */
  builtin: boolean;
  validate?: ValidateFunction;
}

export const AJV_OPTIONS = { allErrors: true, strict: false, validateFormats: false, verbose: true } as const;
/**
 * Where `npm run build` writes the precompiled validators (scripts/build-validators.ts): one CommonJS
 * module per kind, named by schemaKey(), exporting `validate` and the `schemaHash` it was built from, each
 * with V8's code cache for it (KEY.cache).
 */
export const PRECOMPILED_DIR = "build/schemas/validators";
const K8S_ID = "kubernetes.json";
type CrdSchema = { apiVersion: string; kind: string; schema: { properties: Record<string, unknown> } };
const CRD_SCHEMAS = [cnpSchema, ccnpSchema] as unknown as CrdSchema[];
type KubernetesSchema = { kinds: { apiVersion: string; kind: string; definition: string }[]; objectMeta: string; definitions: object };

let ajv: Ajv | undefined;
const registry = new Map<string, Map<string, Registered>>(); // kind → apiVersion → schema
let builtinsLoaded = false;
let filesHash: string | undefined;

/** The identifier of one apiVersion/kind's validator (no "/": ajv resolves $refs relative to it). */
export function schemaKey(apiVersion: string, kind: string): string {
  return `${kind}_${apiVersion.replace(/[/.]/g, "_")}`;
}

/** Identifies the schemas a precompiled module was built from (a stale module is not used). */
export function schemaFilesHash(): string {
  if (filesHash === undefined) {
    const h = createHash("sha256");
    for (const x of [kubernetesSchema, ...CRD_SCHEMAS, ...ciliateSchemas()]) h.update(JSON.stringify(x));
    filesHash = h.digest("hex");
  }
  return filesHash;
}

/** The Kubernetes definitions as one schema ($id kubernetes.json), a copy: ajv annotates what it compiles. */
function kubernetesDefinitions(): object {
  return { $id: K8S_ID, definitions: structuredClone((kubernetesSchema as unknown as KubernetesSchema).definitions) };
}

/** A Cilium CRD's schema, a copy; the CRD leaves metadata open, the API server still validates it as ObjectMeta. */
function crdSchema(c0: CrdSchema): object {
  const c = structuredClone(c0);
  return { ...c.schema, properties: { ...c.schema.properties, metadata: { $ref: `${K8S_ID}#/definitions/${(kubernetesSchema as unknown as KubernetesSchema).objectMeta}` } } };
}

/** Every built-in kind — Kubernetes, Cilium's CRDs, ciliate's own — with a function making its schema. */
function builtinKinds(): { apiVersion: string; kind: string; schema: () => object }[] {
  const kinds: { apiVersion: string; kind: string; schema: () => object }[] = (kubernetesSchema as unknown as KubernetesSchema).kinds.map((k) => ({ apiVersion: k.apiVersion, kind: k.kind, schema: () => ({ $ref: `${K8S_ID}#/definitions/${k.definition}` }) }));
  for (const c of CRD_SCHEMAS) kinds.push({ apiVersion: c.apiVersion, kind: c.kind, schema: () => crdSchema(c) });
  registerCiliateSchemas((apiVersion, kind, schema) => kinds.push({ apiVersion, kind, schema: () => schema }));
  return kinds;
}

/**
 * The built-in schemas: the Kubernetes definitions (one schema, $id kubernetes.json) and one per kind —
 * Kubernetes, Cilium's CRDs and ciliate's own kinds.
 */
export function builtinSchemas(): { definitions: object; kinds: { apiVersion: string; kind: string; schema: object }[] } {
  return { definitions: kubernetesDefinitions(), kinds: builtinKinds().map((k) => ({ apiVersion: k.apiVersion, kind: k.kind, schema: k.schema() })) };
}

/** The one ajv instance, with the Kubernetes definitions; loaded only when a validator must be compiled. */
function compiler(): Ajv {
  if (!ajv) {
    // Not imported at the top: ajv's compiler is a large module, and a built tree never needs it.
    const mod = createRequire(import.meta.url)("ajv") as { Ajv?: typeof Ajv; default?: typeof Ajv };
    const AjvClass = (mod.Ajv ?? mod.default ?? mod) as typeof Ajv;
    ajv = new AjvClass(AJV_OPTIONS);
    ajv.addSchema(kubernetesDefinitions());
  }
  return ajv;
}

let precompiledDir: string | null | undefined;

/**
 * The folder of precompiled validators, found by walking up from this module: from policy/ in the
 * sources it is ../build/schemas/validators, from build/cli/chunks/ in the bundled CLI three levels
 * further up, the same folder. Null when there is none.
 */
function precompiledFolder(): string | null {
  if (precompiledDir !== undefined) return precompiledDir;
  let dir = dirname(fileURLToPath(import.meta.url));
  for (let i = 0; i < 5; i++) {
    const f = join(dir, PRECOMPILED_DIR);
    if (existsSync(f)) return (precompiledDir = f);
    const up = dirname(dir);
    if (up === dir) break;
    dir = up;
  }
  return (precompiledDir = null);
}

/**
 * Loads a precompiled validator module (a file of scripts/build-validators.ts) as require() would, with
 * V8's code cache beside it when there is one: the validator of a CRD is one function of about a megabyte,
 * which V8 would otherwise parse when loaded and compile again on its first call (most of a CLI run's
 * time). A cache V8 does not accept (another Node version) only costs that time; `script.cachedDataRejected`
 * says so. The build script uses this too, to make the cache.
 */
export function loadValidatorModule(file: string): { script: Script; exports: { validate?: ValidateFunction; schemaHash?: string } } {
  let cachedData: Buffer | undefined;
  try {
    cachedData = readFileSync(file.replace(/\.cjs$/, ".cache"));
  } catch {
    cachedData = undefined;
  }
  // The wrapper CommonJS gives a module; the build made the cache from this same text.
  const script = new Script(`(function (exports, require, module, __filename, __dirname) {${readFileSync(file, "utf8")}\n})`, { filename: file, cachedData });
  const module = { exports: {} };
  (script.runInThisContext() as (...a: unknown[]) => void)(module.exports, createRequire(file), module, file, dirname(file));
  return { script, exports: module.exports };
}

/** The precompiled validator of one kind, when built from the schemas in this tree. */
function precompiled(apiVersion: string, kind: string): ValidateFunction | undefined {
  const folder = precompiledFolder();
  if (!folder) return undefined;
  const file = join(folder, `${schemaKey(apiVersion, kind)}.cjs`);
  if (!existsSync(file)) return undefined;
  const mod = loadValidatorModule(file).exports;
  return mod.schemaHash === schemaFilesHash() ? mod.validate : undefined;
}

function loadBuiltins(): void {
  if (builtinsLoaded) return;
  builtinsLoaded = true;
  for (const k of builtinKinds()) register(k.apiVersion, k.kind, { schema: k.schema, builtin: true });
}

function register(apiVersion: string, kind: string, r: Registered): void {
  let byVersion = registry.get(kind);
  if (!byVersion) registry.set(kind, (byVersion = new Map()));
  byVersion.set(apiVersion, r);
}

/**
 * Registers the JSON Schema of one apiVersion/kind (draft-07 keywords; `$ref` to
 * "kubernetes.json#/definitions/<name>" reaches the Kubernetes definitions). It is compiled on first use.
 * A kind registered under several apiVersions accepts each of them.
 */
export function registerSchema(apiVersion: string, kind: string, schema: object): void {
  register(apiVersion, kind, { schema: () => schema, builtin: false });
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
  reg.validate ??= (reg.builtin ? precompiled(apiVersion, kind) : undefined) ?? compiler().compile(reg.schema());
  const data = dropNulls(obj);
  if (reg.validate(data)) return [];
  // ciliate's kinds keep their own wording (known fields listed, ranges, endpoint references).
  if (apiVersion === CILIATE_API_VERSION) return ciliateProblems(reg.validate.errors ?? []);
  return problemsOf(reg.validate.errors ?? [], data);
}
