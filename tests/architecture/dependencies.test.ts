/*
 * The dependency direction of docs/architecture.md, checked on every import in the tree:
 *   core/ imports nothing outside core/; its translated files reach core/runtime/ (WASM/JS only) only
 *     through the seam implementations (maps.ts, env.ts, alloc.ts);
 *   codegen/ reads core/ as text and never imports it;
 *   host/ imports only core's generated declarations (core/gen/) and itself;
 *   policy/ imports only host/ (and itself); node/ only policy/ and host/;
 *   sim/ and datapath/ never import each other; agent/ never imports sim/ or cli/;
 *   only cli/ (the composition root), bench/ and tests/ may combine them; bench/ never imports cli/.
 */
import { describe, expect, it } from "vitest";
import { existsSync, readdirSync, readFileSync, statSync } from "node:fs";
import { dirname, join, relative, resolve } from "node:path";

const root = resolve(import.meta.dirname, "../..");

function tsFiles(dir: string): string[] {
  const out: string[] = [];
  if (!existsSync(join(root, dir))) return out; // a folder of the target layout that holds nothing yet
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
  const specs = [...text.matchAll(/^\s*(?:import|export)\b[^;'"]*?from\s+["']([^"']+)["']|^\s*import\s+["']([^"']+)["']|import\(\s*["']([^"']+)["']\s*\)/gm)].map((m) => m[1] ?? m[2] ?? m[3]!);
  return specs
    .filter((s) => s.startsWith("."))
    .map((spec) => ({ spec, folder: relative(root, resolve(root, dirname(file), spec)).split("/")[0]! }));
}

const rules: Record<string, (folder: string, file: string) => boolean> = {
  // core's unit tests may pack their inputs with host/ (e.g. Maglev backends); core's sources may not.
  core: (f, file) => f === "core" || (file.endsWith(".test.ts") && f === "host"),
  codegen: (f) => f === "codegen",
  host: (f) => f === "host" || f === "core",
  policy: (f) => f === "policy" || f === "host",
  node: (f) => f === "node" || f === "policy" || f === "host",
  sim: (f) => f !== "datapath" && f !== "cli" && f !== "agent",
  datapath: (f) => f !== "sim" && f !== "policy" && f !== "cli" && f !== "agent" && f !== "node",
  agent: (f) => f !== "sim" && f !== "cli",
  bench: (f) => f !== "cli",
};

/**
 * Imports that break the direction today and are being removed (issue "Control plane at cluster scale":
 * the agent's desired state moves to node/, the flow vocabulary to host/, analyses out of cli/). The list
 * may only shrink: a new violation fails, and so does an entry that no longer occurs.
 */
const KNOWN: string[] = [];

describe("dependency direction (docs/architecture.md)", () => {
  const known: string[] = [];
  for (const [folder, allowed] of Object.entries(rules)) {
    it(`${folder}/ imports only what it may`, () => {
      const violations: string[] = [];
      for (const file of tsFiles(folder)) {
        if (folder !== "core" && file.endsWith(".test.ts")) continue; // unit tests may reach their fixtures
        for (const { spec, folder: target } of importedFolders(file)) {
          if (!allowed(target, file)) violations.push(`${file} imports ${spec}`);
        }
      }
      expect(violations.filter((v) => !KNOWN.includes(v))).toEqual([]);
      known.push(...violations.filter((v) => KNOWN.includes(v)));
    });
  }

  it("the known violations list holds only violations that still occur", () => {
    expect([...new Set(known)].sort()).toEqual([...KNOWN].sort());
  });

  it("core's translated files reach core/runtime/ only through the seam implementations", () => {
    const seams = new Set(["core/maps.ts", "core/env.ts", "core/alloc.ts"]);
    const violations: string[] = [];
    for (const file of tsFiles("core")) {
      if (file.startsWith("core/runtime/") || seams.has(file) || file.endsWith(".test.ts") || file.includes("testutil")) continue;
      for (const { spec } of importedFolders(file)) {
        const target = relative(root, resolve(root, dirname(file), spec));
        if (target.startsWith("core/runtime/")) violations.push(`${file} imports ${spec}`);
      }
    }
    expect(violations).toEqual([]);
  });

  it("everything outside policy/ imports policy/ only through policy/index.ts (its one front door)", () => {
    const violations: string[] = [];
    // tests/policy/ checks policy's internals on purpose; every other folder, tests included, uses the API.
    for (const folder of ["host", "node", "sim", "datapath", "agent", "cli", "bench", "tests"]) {
      for (const file of tsFiles(folder)) {
        if (file.startsWith("tests/policy/")) continue;
        for (const { spec, folder: target } of importedFolders(file)) {
          if (target !== "policy") continue;
          const target2 = relative(root, resolve(root, dirname(file), spec));
          // Unit tests may build their fixtures with policy's test helpers (compiled policies from YAML).
          if (target2 === "policy/test-helpers.ts" && file.endsWith(".test.ts")) continue;
          if (target2 !== "policy/index.ts") violations.push(`${file} imports ${spec}`);
        }
      }
    }
    expect(violations).toEqual([]);
  });

  it("host/ imports only core's generated declarations from core/", () => {
    const violations: string[] = [];
    for (const file of tsFiles("host")) {
      for (const { spec, folder } of importedFolders(file)) {
        if (folder !== "core") continue;
        const target = relative(root, resolve(root, dirname(file), spec));
        if (!target.startsWith("core/gen/")) violations.push(`${file} imports ${spec}`);
      }
    }
    expect(violations).toEqual([]);
  });
});
