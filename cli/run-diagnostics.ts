// The run's diagnostics, held apart from cli/common.ts so that main() can ask for them after any command
// without loading the simulator and policy compiler that common.ts brings (`ciliate --help`, `ciliate cni`).
import type { Diagnostics } from "../policy/index.ts";

let current: Diagnostics | undefined;

/** The diagnostics of this run, once a command created them (cli/common.ts diagnostics()). */
export function currentDiagnostics(): Diagnostics | undefined {
  return current;
}

export function setDiagnostics(d: Diagnostics): Diagnostics {
  current = d;
  return d;
}

/** Called by main() once the command is done: the diagnostics of the run (undefined: nothing was loaded). */
export function finishDiagnostics(): Diagnostics | undefined {
  const d = current;
  current = undefined;
  return d;
}
