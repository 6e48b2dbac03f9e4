// Precompiles the schemas in policy/schemas/ into CommonJS modules of ajv validators, one per kind
// (build/schemas/validators/<kind>_<apiVersion>.cjs). Compiling the Pod or CiliumNetworkPolicy schema takes
// about a second; loading precompiled code takes milliseconds, and one module per kind lets a run load only
// the kinds its manifests have. policy/schema.ts uses a module when its hash of the schema files matches
// and compiles at run time otherwise, so a stale build is slow, never wrong.
// Beside each module goes V8's code cache for it (KEY.cache), made after running the validator on every
// object of its kind in scenarios/, so that the functions those reach are in it already compiled: the
// CiliumNetworkPolicy validator is one function of over a megabyte, and compiling it took most of a
// `ciliate trace`. The cache holds no results; V8 checks it against the source and its own version.
import { mkdirSync, readdirSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { join, resolve } from "node:path";
import { fileURLToPath } from "node:url";
import { Ajv } from "ajv";
import standaloneModule from "ajv/dist/standalone/index.js";
import { parseAllDocuments } from "yaml";

// The CommonJS default export arrives as `default` under some loaders and as the module under others.
const standalone = ((standaloneModule as unknown as { default?: unknown }).default ?? standaloneModule) as unknown as (ajv: Ajv, refs: Record<string, string>) => string;
import { AJV_OPTIONS, builtinSchemas, dropNulls, loadValidatorModule, schemaFilesHash, schemaKey, PRECOMPILED_DIR } from "../policy/schema.ts";

const root = resolve(fileURLToPath(import.meta.url), "../..");
// One instance compiles every kind once; each module then holds its kind's validator and the functions it
// calls (the definitions kinds share, such as ObjectMeta or PodSpec, appear in each module that uses them).
const ajv = new Ajv({ ...AJV_OPTIONS, code: { source: true } });
const { definitions, kinds } = builtinSchemas();
ajv.addSchema(definitions);
for (const k of kinds) ajv.addSchema(k.schema, schemaKey(k.apiVersion, k.kind));
const out = resolve(root, PRECOMPILED_DIR);
rmSync(out, { recursive: true, force: true });
// The single module of earlier builds, now unused.
rmSync(resolve(root, "build/schemas/validators.cjs"), { force: true });
mkdirSync(out, { recursive: true });
const hash = schemaFilesHash();
let bytes = 0;
for (const k of kinds) {
  const key = schemaKey(k.apiVersion, k.kind);
  const code = standalone(ajv, { validate: key });
  bytes += code.length;
  writeFileSync(resolve(out, `${key}.cjs`), `${code}\nexports.schemaHash = ${JSON.stringify(hash)};\n`);
}

/** Every object of the scenarios, by schema key. */
function scenarioObjects(): Map<string, unknown[]> {
  const out = new Map<string, unknown[]>();
  const walk = (dir: string): void => {
    for (const d of readdirSync(dir, { withFileTypes: true })) {
      const p = join(dir, d.name);
      if (d.isDirectory()) walk(p);
      else if (/\.ya?ml$/.test(d.name))
        for (const doc of parseAllDocuments(readFileSync(p, "utf8"))) {
          const o = doc.toJS() as { apiVersion?: unknown; kind?: unknown } | null;
          if (!o || typeof o.kind !== "string" || typeof o.apiVersion !== "string") continue;
          const key = schemaKey(o.apiVersion, o.kind);
          out.set(key, [...(out.get(key) ?? []), dropNulls(o)]);
        }
    }
  };
  walk(resolve(root, "scenarios"));
  return out;
}

const samples = scenarioObjects();
let cacheBytes = 0;
for (const k of kinds) {
  const key = schemaKey(k.apiVersion, k.kind);
  const file = resolve(out, `${key}.cjs`);
  const { script, exports } = loadValidatorModule(file);
  for (const o of [{}, ...(samples.get(key) ?? [])]) exports.validate!(o);
  const cache = script.createCachedData();
  cacheBytes += cache.length;
  writeFileSync(resolve(out, `${key}.cache`), cache);
}
console.log(`${PRECOMPILED_DIR}/: ${kinds.length} kinds, ${(bytes / 1e6).toFixed(1)} MB of validators, ${(cacheBytes / 1e6).toFixed(1)} MB of code cache`);
