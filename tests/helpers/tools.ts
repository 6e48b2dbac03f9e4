// Small probes for external tools used by tests.
import { spawnSync } from "node:child_process";

export function hasClang(): boolean {
  return spawnSync("clang", ["--version"], { stdio: "ignore" }).status === 0;
}

/**
 * Gate for a test that needs a tool or privilege: returns true (skip) with a printed reason outside CI,
 * and throws with CI=true, where every suite must run.
 */
export function skipUnless(available: boolean, what: string): boolean {
  if (available) return false;
  if (process.env.CI === "true" || process.env.CI === "1") throw new Error(`${what} is required in CI`);
  console.warn(`[skip] ${what} is not available`);
  return true;
}

/** Debian's chromium (apt package `chromium`), driven headless by the service map's browser test. */
export const CHROMIUM = process.env.CHROMIUM ?? "/usr/bin/chromium";

export function hasChromium(): boolean {
  return spawnSync(CHROMIUM, ["--version"], { stdio: "ignore" }).status === 0;
}
