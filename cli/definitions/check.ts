// `ciliate check`: its flags and help, read on every start (`ciliate --help` loads every definition);
// the implementation, cli/commands/check.ts, is imported only when the command runs.
import type { Command } from "commander";

export function registerCheck(program: Command, run: (fn: () => Promise<number>) => Promise<void>): void {
  program
    .command("check")
    .description("evaluate every Expectation in the manifests; exit 1 if any fails")
    .option("--junit <file>", "also write the results as JUnit XML")
    .option("--wide", "one line per expectation, however long (default: fit the terminal, wrapping names and reasons)")
    .addHelpText(
      "after",
      `
Examples:
  ciliate check -f scenarios/starwars
  ciliate check -f scenarios/k8s-netpol -o json
  ciliate check -f scenarios/starwars --wide
  ciliate check -f scenarios/multi-node --junit results.xml

Exit codes: 0 all expectations hold, 1 at least one failed, 2 bad input.`,
    )
    .action(async (_o, cmd: Command) => run(async () => (await import("../commands/check.ts")).runCheck(cmd.optsWithGlobals(), (s) => process.stdout.write(s), (s) => process.stderr.write(s))));
}
