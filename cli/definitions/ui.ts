// `ciliate ui`: its flags and help, read on every start (`ciliate --help` loads every definition);
// the implementation, cli/commands/ui.ts, is imported only when the command runs.
import type { Command } from "commander";

export function registerUi(program: Command, run: (fn: () => Promise<number>) => Promise<void>): void {
  program
    .command("ui")
    .description("serve a service map page: namespaces, workloads, services and the flows between them, coloured by verdict")
    .option("--server <address>", "draw the flows of a Hubble Observer API, followed live: unix:///path (an agent's hubble.sock) or host:port (`ciliate relay`)")
    .option("--port <port>", "serve on 127.0.0.1:PORT (0: any free port)", "12000")
    .option("--flow <name>", "with -f: only this Traffic flow (repeatable)", (v: string, p: string[] = []) => [...p, v])
    .addHelpText(
      "after",
      `
Examples:
  ciliate ui -f scenarios/starwars                      # then open http://127.0.0.1:12000/
  ciliate ui --server unix:///var/run/ciliate/hubble.sock
  ciliate ui --server 127.0.0.1:4245 --port 12001       # the whole cluster through ciliate relay

Exit codes: 0 when interrupted, 2 bad flags or input, or the port is taken.`,
    )
    .action(async (_o, cmd: Command) => run(async () => (await import("../commands/ui.ts")).runUi(cmd.optsWithGlobals(), (s) => process.stdout.write(s), (s) => process.stderr.write(s))));
}
