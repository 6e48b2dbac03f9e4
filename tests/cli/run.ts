// Runs the built `ciliate` command as a user would (node bin/ciliate.js …) and captures its output.
import { spawnSync } from "node:child_process";
import { fileURLToPath } from "node:url";

export const ROOT = fileURLToPath(new URL("../..", import.meta.url));

export interface CliRun {
  code: number;
  stdout: string;
  stderr: string;
}

export function ciliate(...args: string[]): CliRun {
  return ciliateEnv({}, ...args);
}

/** As ciliate(), with extra environment variables (e.g. COLUMNS for the terminal width). */
export function ciliateEnv(env: Record<string, string>, ...args: string[]): CliRun {
  const r = spawnSync(process.execPath, ["bin/ciliate.js", ...args], { cwd: ROOT, encoding: "utf8", maxBuffer: 64 << 20, env: { ...process.env, CILIATE_DEBUG: "", ...env } });
  return { code: r.status ?? -1, stdout: r.stdout, stderr: r.stderr };
}

export function json<T = any>(r: CliRun): T {
  if (r.code !== 0 && r.code !== 1) throw new Error(`ciliate failed (${r.code}): ${r.stderr}`);
  return JSON.parse(r.stdout) as T;
}
