#!/usr/bin/env node
// The `ciliate` command. `npm run build` bundles it into build/cli/ciliate.mjs (scripts/build-cli.mjs), which
// starts without compiling TypeScript. Without that bundle — or when a source file is newer than it, as in
// a working tree being edited — the TypeScript sources run through tsx instead (slower to start, same
// behaviour); only the missing bundle is worth a note.
import { readdirSync, readFileSync, statSync } from "node:fs";
import { dirname, join } from "node:path";
import { fileURLToPath, pathToFileURL } from "node:url";

const root = join(dirname(fileURLToPath(import.meta.url)), "..");
const bundle = join(root, "build/cli/ciliate.mjs");
const SOURCES = ["cli", "sim", "node", "host", "agent", "datapath", "policy", "core"];

/**
 * True when a source file the bundle was built from is newer than the bundle. The build lists those files
 * (build/cli/sources.json, a few hundred): one stat each, missing ones skipped (an installed package
 * without its sources, a file since deleted — whatever imported it changed too). Without the list, every
 * TypeScript file under SOURCES is looked at.
 */
function stale(builtMs) {
  let listed;
  try {
    listed = JSON.parse(readFileSync(join(root, "build/cli/sources.json"), "utf8"));
  } catch {
    return SOURCES.some((s) => newerUnder(join(root, s), builtMs));
  }
  return listed.some((f) => (statSync(join(root, f), { throwIfNoEntry: false })?.mtimeMs ?? 0) > builtMs);
}

function newerUnder(dir, builtMs) {
  let names;
  try {
    names = readdirSync(dir, { withFileTypes: true });
  } catch {
    return false;
  }
  for (const d of names) {
    const p = join(dir, d.name);
    if (d.isDirectory()) {
      if (newerUnder(p, builtMs)) return true;
    } else if (d.name.endsWith(".ts") && statSync(p).mtimeMs > builtMs) return true;
  }
  return false;
}

const built = statSync(bundle, { throwIfNoEntry: false });
if (built && !stale(built.mtimeMs)) {
  await import(pathToFileURL(bundle).href);
} else {
  if (!built) process.stderr.write("ciliate: note: build/cli/ciliate.mjs is not built; running from the TypeScript sources (slow start). Run `npm run build`.\n");
  const { register } = await import("tsx/esm/api");
  register();
  await import("../cli/main.ts");
}
