/*
 * The dependency direction of DESIGN.md §2, checked on every import in the tree:
 *   core/ imports nothing outside core/ (and core's AssemblyScript files nothing outside core/ but core/gen);
 *   codegen/ reads core/ as text and never imports it;
 *   sim/ and datapath/ never import each other;
 *   policy/ depends only on core/ (host codecs and constants);
 *   only cli/ (the composition root), bench/ and tests/ may combine sim/ or policy/ with datapath/.
 */
import { describe, expect, it } from "vitest";
import { readdirSync, readFileSync, statSync } from "node:fs";
import { dirname, join, relative, resolve } from "node:path";

const root = resolve(import.meta.dirname, "../..");

function tsFiles(dir: string): string[] {
  const out: string[] = [];
  for (const name of readdirSync(join(root, dir))) {
    const p = join(dir, name);
    if (statSync(join(root, p)).isDirectory()) out.push(...tsFiles(p));
    else if (/\.ts$/.test(name) && !name.endsWith(".d.ts")) out.push(p);
  }
  return out;
}

/** Top-level folder of every relative import of `file` (imports of packages are not checked here). */
function importedFolders(file: string): { spec: string; folder: string }[] {
  const text = readFileSync(join(root, file), "utf8");
  const specs = [...text.matchAll(/(?:import|export)[^'"]*?from\s+["']([^"']+)["']|import\(\s*["']([^"']+)["']\s*\)/g)].map((m) => m[1] ?? m[2]!);
  return specs
    .filter((s) => s.startsWith("."))
    .map((spec) => ({ spec, folder: relative(root, resolve(root, dirname(file), spec)).split("/")[0]! }));
}

const rules: Record<string, (folder: string, file: string) => boolean> = {
  core: (f) => f === "core",
  codegen: (f) => f === "codegen",
  sim: (f) => f !== "datapath" && f !== "cli",
  datapath: (f) => f !== "sim" && f !== "policy" && f !== "cli",
  policy: (f) => f === "policy" || f === "core",
};

describe("dependency direction (DESIGN.md §2)", () => {
  for (const [folder, allowed] of Object.entries(rules)) {
    it(`${folder}/ imports only what it may`, () => {
      const violations: string[] = [];
      for (const file of tsFiles(folder)) {
        if (folder !== "core" && file.endsWith(".test.ts")) continue; // unit tests may reach their fixtures
        for (const { spec, folder: target } of importedFolders(file)) {
          if (!allowed(target, file)) violations.push(`${file} imports ${spec}`);
        }
      }
      expect(violations).toEqual([]);
    });
  }

  it("core's AssemblyScript files import only core's AssemblyScript files", () => {
    const violations: string[] = [];
    for (const file of tsFiles("core")) {
      if (file.startsWith("core/host/") || file.endsWith(".test.ts") || file.includes("testutil")) continue;
      for (const { spec } of importedFolders(file)) {
        const target = relative(root, resolve(root, dirname(file), spec));
        if (target.startsWith("core/host")) violations.push(`${file} imports ${spec}`);
      }
    }
    expect(violations).toEqual([]);
  });
});
