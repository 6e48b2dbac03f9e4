// `ciliate simulate`: its flags and help, read on every start (`ciliate --help` loads every definition);
// the implementation, cli/commands/simulate.ts, is imported only when the command runs.
import type { Command } from "commander";

export function registerSimulate(program: Command, run: (fn: () => Promise<number>) => Promise<void>): void {
  program
    .command("simulate")
    .description("play the Traffic in the manifests packet by packet and print the flows like `hubble observe`")
    .option("--flow <name>", "only this Traffic flow (repeatable)", (v: string, p: string[] = []) => [...p, v])
    .addHelpText(
      "after",
      `
Examples:
  ciliate simulate -f scenarios/starwars
  ciliate simulate -f scenarios/starwars -o json | jq .flow.verdict
  ciliate simulate -f scenarios/lb --engine js --flow client-to-web

Exit codes: 0 simulated, 2 bad input.`,
    )
    .action(async (_o, cmd: Command) => run(async () => (await import("../commands/simulate.ts")).runSimulate(cmd.optsWithGlobals(), (s) => process.stdout.write(s), (s) => process.stderr.write(s))));
}
