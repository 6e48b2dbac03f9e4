// The bundled command (scripts/build-cli.mjs → build/cli/ciliate.mjs) behaves as the TypeScript sources do,
// and bin/ciliate.js falls back to the sources with a one-line note when the bundle is missing.
import { spawnSync } from "node:child_process";
import { cpSync, existsSync, mkdtempSync, rmSync, symlinkSync } from "node:fs";
import { tmpdir } from "node:os";
import { join, resolve } from "node:path";
import { describe, expect, it } from "vitest";
import { skipUnless } from "../helpers/tools.ts";

const ROOT = resolve(import.meta.dirname, "../..");
const BUNDLE = join(ROOT, "build/cli/ciliate.mjs");

describe("bundled CLI", () => {
  it("runs trace on the Star Wars scenario exactly as the sources do", (t) => {
    if (skipUnless(existsSync(BUNDLE), "the CLI bundle (npm run build)")) return t.skip();
    const args = ["trace", "-f", "scenarios/starwars", "--from", "default/xwing", "--to", "default/deathstar-0", "--port", "80", "-o", "json"];
    const bundled = spawnSync(process.execPath, [BUNDLE, ...args], { cwd: ROOT, encoding: "utf8" });
    const sources = spawnSync(process.execPath, ["--import", "tsx", "cli/main.ts", ...args], { cwd: ROOT, encoding: "utf8" });
    expect(bundled.status).toBe(0);
    expect(bundled.stderr).toBe("");
    expect(bundled.stdout).toBe(sources.stdout);
    expect(JSON.parse(bundled.stdout).verdict).toMatch(/denied/i);
  });

  it("bin/ciliate.js without a bundle runs the sources and says so in one line", () => {
    const dir = mkdtempSync(join(tmpdir(), `ciliate-nobundle-${process.pid}-`));
    try {
      // A copy of the package without build/cli: bin/, package.json and links to everything else.
      cpSync(join(ROOT, "bin"), join(dir, "bin"), { recursive: true });
      cpSync(join(ROOT, "package.json"), join(dir, "package.json"));
      for (const d of ["cli", "sim", "node", "host", "agent", "datapath", "policy", "core", "node_modules", "scenarios"]) symlinkSync(join(ROOT, d), join(dir, d));
      const r = spawnSync(process.execPath, [join(dir, "bin/ciliate.js"), "--help"], { cwd: dir, encoding: "utf8" });
      expect(r.status).toBe(0);
      expect(r.stdout).toMatch(/^Usage: ciliate/);
      expect(r.stderr.trim().split("\n")).toEqual([expect.stringMatching(/^ciliate: note: build\/cli\/ciliate\.mjs is not built; .*npm run build/)]);
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });
});
