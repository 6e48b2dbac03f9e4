/*
 * Where the repository's build outputs are, from the sources (host/) and from the bundled CLI
 * (build/cli/) alike: the nearest folder above this module that holds package.json.
 */
import { existsSync } from "node:fs";
import { dirname, join } from "node:path";
import { fileURLToPath } from "node:url";

function findRoot(): string {
  let dir = dirname(fileURLToPath(import.meta.url));
  for (;;) {
    if (existsSync(join(dir, "package.json"))) return dir;
    const up = dirname(dir);
    if (up === dir) return process.cwd();
    dir = up;
  }
}

/** The repository (or installed package) root, with a trailing separator-free path. */
export const ROOT = findRoot();

/** A path under the root, e.g. repoPath("build/wasm/core.wasm"). */
export function repoPath(rel: string): string {
  return join(ROOT, rel);
}
