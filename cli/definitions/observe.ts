// `ciliate observe`: its flags and help, read on every start (`ciliate --help` loads every definition);
// the implementation, cli/commands/observe.ts, is imported only when the command runs.
import type { Command } from "commander";
import { DEFAULT_SOCKET } from "../../agent/defaults.ts";

export function registerObserve(program: Command, run: (fn: () => Promise<number>) => Promise<void>): void {
  program
    .command("observe")
    .description("the node's flows from the agent (drops, policy verdicts, traces), like `hubble observe`")
    .option("--socket <path>", "unix socket of the agent API", DEFAULT_SOCKET)
    .option("--server <address>", "read a Hubble Observer gRPC API instead: unix:///path (an agent's hubble.sock) or host:port (e.g. `ciliate relay`)")
    .option("--from-pod <pod>", "only flows from this pod (ns/name or name)")
    .option("--to-pod <pod>", "only flows to this pod (ns/name or name)")
    .option("--verdict <verdict>", "only flows with this verdict (FORWARDED, DROPPED, …)")
    .option("--port <port>", "only flows with this source or destination port")
    .option("--follow", "keep printing new flows until interrupted")
    .option("--last <n>", "how many already-seen flows to print first (0 = all kept)", "20")
    .addHelpText("after", "\nExamples:\n  ciliate observe --verdict DROPPED --last 50\n  ciliate observe --to-pod default/server --follow -o json\n  ciliate observe --server 127.0.0.1:4245 --verdict DROPPED --follow\n\nExit codes: 0, 2 bad flags or agent/server unreachable.")
    .action(async (_o, cmd: Command) => run(async () => (await import("../commands/observe.ts")).runObserve(cmd.optsWithGlobals(), (s) => process.stdout.write(s))));
}
