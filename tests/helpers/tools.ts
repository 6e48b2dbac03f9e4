// Small probes for external tools used by tests.
import { spawnSync } from "node:child_process";

export function hasClang(): boolean {
  return spawnSync("clang", ["--version"], { stdio: "ignore" }).status === 0;
}
