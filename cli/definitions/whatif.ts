// `ciliate whatif`: its flags and help, read on every start (`ciliate --help` loads every definition);
// the implementation, cli/commands/whatif.ts, is imported only when the command runs.
import type { Command } from "commander";
import { collect } from "../flags.ts";

export function registerWhatif(program: Command, run: (fn: () => Promise<number>) => Promise<void>): void {
  program
    .command("whatif")
    .description("what changes if manifests are applied or deleted: pod pairs and Traffic flows whose verdict or backend changes")
    .option("--apply <file>", "objects that replace (same kind/namespace/name) or add to the current ones (repeatable)", collect)
    .option("--delete <kind/ns/name>", "remove an object, e.g. CiliumNetworkPolicy/default/rule1 (repeatable)", collect)
    .option("--port <port/proto>", "probe, e.g. 80/TCP (repeatable; default: every port either version's policies mention or a pod/service declares)", collect)
    .option("--wide", "one line per change (a table as wide as its longest cell) instead of one block per change")
    .addHelpText(
      "after",
      `
Examples:
  ciliate whatif -f scenarios/starwars --apply scenarios/extras/starwars-l3-l4-policy.yaml
  ciliate whatif -f scenarios/starwars --delete CiliumNetworkPolicy/default/rule1 -o json
  ciliate whatif -f scenarios/k8s-netpol --apply scenarios/extras/k8s-netpol-new-policy.yaml --port 80/TCP

Table output: one block per change (the pair or flow, then the reason before and after), wrapped to the
terminal's width (names and backends are broken across lines, never cut); --wide prints one table row per
change instead. A flow whose Traffic document or
endpoint exists in only one version is "absent" there.
-o json: {"pairs":[{"from","to","port","protocol","before","after","reasonBefore","reasonAfter"}],
          "flows":[{"name","before","after","backendBefore","backendAfter","reasonBefore","reasonAfter"}]}
Exit codes: 0 compared, 2 bad input.`,
    )
    .action(async (_o, cmd: Command) => run(async () => (await import("../commands/whatif.ts")).runWhatif(cmd.optsWithGlobals(), (s) => process.stdout.write(s))));
}
