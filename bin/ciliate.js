#!/usr/bin/env node
// The `ciliate` command. `npm run build` bundles it into build/cli/ciliate.mjs (scripts/build-cli.mjs), which
// starts without compiling TypeScript. Without that bundle — or when a source file is newer than it, as in
// a working tree being edited — the TypeScript sources run through tsx instead (slower to start, same
// behaviour); only the missing bundle is worth a note.
import { existsSync, readdirSync, statSync } from "node:fs";
import { dirname, join } from "node:path";
import { fileURLToPath, pathToFileURL } from "node:url";

const root = join(dirname(fileURLToPath(import.meta.url)), "..");
const bundle = join(root, "build/cli/ciliate.mjs");
const SOURCES = ["cli", "sim", "node", "host", "agent", "datapath", "policy", "core"];

/** True when some TypeScript source under SOURCES is newer than the bundle. */
function stale(builtMs) {
  const walk = (dir) => {
    let names;
    try {
      names = readdirSync(dir, { withFileTypes: true });
    } catch {
      return false;
    }
    for (const d of names) {
      const p = join(dir, d.name);
      if (d.isDirectory()) {
        if (walk(p)) return true;
      } else if (d.name.endsWith(".ts") && statSync(p).mtimeMs > builtMs) return true;
    }
    return false;
  };
  return SOURCES.some((s) => walk(join(root, s)));
}

if (existsSync(bundle) && !stale(statSync(bundle).mtimeMs)) {
  await import(pathToFileURL(bundle).href);
} else {
  if (!existsSync(bundle)) process.stderr.write("ciliate: note: build/cli/ciliate.mjs is not built; running from the TypeScript sources (slow start). Run `npm run build`.\n");
  const { register } = await import("tsx/esm/api");
  register();
  await import("../cli/main.ts");
}
