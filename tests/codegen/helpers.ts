/*
 * Shared set-up for the generator tests: the repository root, the layout model, one TypeScript program
 * over all fixtures (creating a program is the slow part), and clang/bpftool runners.
 */
import { execFileSync, spawnSync } from "node:child_process";
import { mkdtempSync, readdirSync } from "node:fs";
import { tmpdir } from "node:os";
import { join, resolve } from "node:path";
import { fileURLToPath } from "node:url";
import { readLayoutModel } from "../../codegen/layout.ts";
import { createCoreProgram } from "../../codegen/core-program.ts";

export const ROOT = resolve(fileURLToPath(new URL(".", import.meta.url)), "../..");
export const FIXTURES = "tests/fixtures/codegen";
export const model = readLayoutModel(ROOT);

export const refusalFixtures = readdirSync(join(ROOT, FIXTURES, "refuse"))
  .filter((f) => f.endsWith(".ts"))
  .sort()
  .map((f) => `${FIXTURES}/refuse/${f}`);
export const GOLDEN_SOURCE = `${FIXTURES}/golden/sample.ts`;
export const GOLDEN_HEADER = `${FIXTURES}/golden/sample.h`;

let program: ReturnType<typeof createCoreProgram> | undefined;
/** One program over every fixture, reused by all tests in a file. */
export function fixtureProgram(): ReturnType<typeof createCoreProgram> {
  program ??= createCoreProgram(ROOT, [GOLDEN_SOURCE, ...refusalFixtures]);
  return program;
}

export function hasTool(name: string): boolean {
  return spawnSync(name, ["--version"], { stdio: "ignore" }).status === 0;
}

export const CLANG_FLAGS = ["-O2", "-g", "-target", "bpf", "-Wall", "-Werror", "-I", join(ROOT, "bpf"), "-I/usr/include/x86_64-linux-gnu"];

/** Compiles a C file for BPF; throws with clang's diagnostics on failure. */
export function clang(src: string, out: string, extra: string[] = []): void {
  // `extra` first: its -I directories (a freshly generated gen/) must win over the checked-in bpf/gen/.
  const r = spawnSync("clang", [...extra, ...CLANG_FLAGS, "-c", src, "-o", out], { encoding: "utf8" });
  if (r.status !== 0) throw new Error(`clang failed for ${src}:\n${r.stderr}`);
}

export function tempDir(prefix: string): string {
  return mkdtempSync(join(tmpdir(), prefix));
}

/** True when this process may load BPF programs (root and a bpffs at /sys/fs/bpf). */
export function canLoadBpf(): boolean {
  if (process.getuid?.() !== 0 || !hasTool("bpftool")) return false;
  try {
    execFileSync("bpftool", ["prog", "show"], { stdio: "ignore" });
    return true;
  } catch {
    return false;
  }
}
