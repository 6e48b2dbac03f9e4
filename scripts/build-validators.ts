// Precompiles the schemas in policy/schemas/ into one CommonJS module of ajv validators
// (build/schemas/validators.cjs). Compiling the Pod or CiliumNetworkPolicy schema takes about a second;
// loading precompiled code takes milliseconds. policy/schema.ts uses this module when its hash of the
// schema files matches and compiles at run time otherwise, so a stale build is slow, never wrong.
import { mkdirSync, writeFileSync } from "node:fs";
import { dirname, resolve } from "node:path";
import { fileURLToPath } from "node:url";
import { Ajv } from "ajv";
import standaloneModule from "ajv/dist/standalone/index.js";

// The CommonJS default export arrives as `default` under some loaders and as the module under others.
const standalone = ((standaloneModule as unknown as { default?: unknown }).default ?? standaloneModule) as unknown as (ajv: Ajv, refs: Record<string, string>) => string;
import { AJV_OPTIONS, builtinSchemas, schemaFilesHash, schemaKey, PRECOMPILED_PATH } from "../policy/schema.ts";

const root = resolve(dirname(fileURLToPath(import.meta.url)), "..");
const ajv = new Ajv({ ...AJV_OPTIONS, code: { source: true } });
const { definitions, kinds } = builtinSchemas();
ajv.addSchema(definitions);
const exported: Record<string, string> = {};
for (const k of kinds) {
  const key = schemaKey(k.apiVersion, k.kind);
  ajv.addSchema(k.schema, key);
  exported[key] = key;
}
const code = standalone(ajv, exported);
const out = resolve(root, PRECOMPILED_PATH);
mkdirSync(dirname(out), { recursive: true });
writeFileSync(out, `${code}\nexports.schemaHash = ${JSON.stringify(schemaFilesHash())};\n`);
console.log(`${PRECOMPILED_PATH}: ${kinds.length} kinds, ${(code.length / 1e6).toFixed(1)} MB`);
