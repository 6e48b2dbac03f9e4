// `ciliate relay`: its flags and help, read on every start (`ciliate --help` loads every definition);
// the implementation, cli/commands/relay.ts, is imported only when the command runs.
import type { Command } from "commander";
import { collect } from "../flags.ts";

/** Hubble Relay's default port (hubble-relay serve --listen-address :4245), on loopback: ciliate has no relay TLS. */
export const DEFAULT_RELAY_LISTEN = "127.0.0.1:4245";

export function registerRelay(program: Command, run: (fn: () => Promise<number>) => Promise<void>): void {
  program
    .command("relay")
    .description("serve one Hubble Observer API merging several nodes' flows in time order, like Hubble Relay")
    .option("--peer <address>", "a node's Observer API: unix:///path/hubble.sock or host:port (repeatable)", collect)
    .option("--listen-address <host:port>", `serve on TCP, plaintext (default ${DEFAULT_RELAY_LISTEN} unless --socket is given; :port is every address)`)
    .option("--socket <path>", "serve on this unix socket (mode 0600)")
    .option("--sort-buffer-len-max <n>", "flows held per request to sort them", "100")
    .option("--sort-buffer-drain-timeout <duration>", "sort window when following: a flow waits at most this long for older ones", "1s")
    .option("--retry-timeout <duration>", "longest wait between two dials of a peer that is down", "30s")
    .option("--dial-timeout <duration>", "how long a status call to a peer may take", "5s")
    .addHelpText(
      "after",
      `
Examples:
  ciliate relay --peer unix:///var/run/ciliate/hubble.sock --peer 192.168.56.12:4244 --listen-address 127.0.0.1:4245
  ciliate observe --server 127.0.0.1:4245 --follow

See docs/observability.md. Exit codes: 0 stopped by a signal, 2 bad flags or an address that cannot be bound.`,
    )
    .action(async (_o, cmd: Command) => run(async () => (await import("../commands/relay.ts")).runRelay(cmd.optsWithGlobals())));
}
