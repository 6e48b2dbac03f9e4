/*
 * `npm run gen`: regenerates every artefact derived from core/ (see codegen/layout.ts and, for functions,
 * codegen/functions.ts). `--check` writes nothing and exits 1 if any generated file is out of date, which
 * is how tests and CI keep checked-in output honest.
 */
import { mkdirSync, readFileSync, writeFileSync, existsSync } from "node:fs";
import { dirname, resolve } from "node:path";
import { fileURLToPath } from "node:url";
import { CodegenError } from "./errors.ts";
import { generateAll } from "./outputs.ts";

const root = resolve(dirname(fileURLToPath(import.meta.url)), "..");
const check = process.argv.includes("--check");

try {
  const outputs = generateAll(root);
  const stale: string[] = [];
  for (const [rel, text] of outputs) {
    const path = resolve(root, rel);
    const old = existsSync(path) ? readFileSync(path, "utf8") : undefined;
    if (old === text) continue;
    if (check) stale.push(rel);
    else {
      mkdirSync(dirname(path), { recursive: true });
      writeFileSync(path, text);
      console.log(`wrote ${rel}`);
    }
  }
  if (check && stale.length > 0) {
    console.error(`generated files are out of date: ${stale.join(", ")} (run \`npm run gen\`)`);
    process.exit(1);
  }
} catch (e) {
  if (e instanceof CodegenError) {
    console.error(`ciliate codegen: ${e.message}`);
    process.exit(2);
  }
  throw e;
}
