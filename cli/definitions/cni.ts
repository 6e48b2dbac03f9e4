// `ciliate cni`: its flags and help, read on every start (`ciliate --help` loads every definition);
// the implementation, cli/commands/cni.ts, is imported only when the command runs.
import type { Command } from "commander";
import { readFileSync } from "node:fs";

export function registerCni(program: Command, run: (fn: () => Promise<number>) => Promise<void>): void {
  program
    .command("cni")
    .description("the CNI plugin: ADD/DEL/CHECK/VERSION from CNI_* variables and the configuration on stdin, via the agent")
    .addHelpText("after", "\nRun by the container runtime (see docs/agent.md for the network configuration).\nExit codes: 0 success, 1 a CNI error (printed as JSON on stdout).")
    .action(async () => run(async () => (await import("../commands/cni.ts")).runCni(process.env, process.env.CNI_COMMAND === "VERSION" ? "" : readFileSync(0, "utf8"), (s) => process.stdout.write(s))));
}
