// `ciliate reach`: its flags and help, read on every start (`ciliate --help` loads every definition);
// the implementation, cli/commands/reach.ts, is imported only when the command runs.
import type { Command } from "commander";
import { collect } from "../flags.ts";

export function registerReach(program: Command, run: (fn: () => Promise<number>) => Promise<void>): void {
  program
    .command("reach")
    .description("all-pairs pod reachability for each probe port/protocol")
    .option("--port <port/proto>", "probe, e.g. 80/TCP, 53/UDP, 8/ICMP (repeatable; default: every port/protocol the policies name, plus 80/TCP)", collect)
    .option("--namespace <ns>", "only pods in this namespace (repeatable)", collect)
    .option("--wide", "the table shows every pod, however wide (default: by equivalence class when wider than the terminal)")
    .option("--no-dedupe", "run every pair through the datapath (default: each half of a verdict — egress at the source, ingress at the destination — once per entry list and way of naming the peer's identity; same answer)")
    .addHelpText(
      "after",
      `
Output (-o): table (default; "." allowed, "X" denied, "-" not applicable), json, yaml, csv, md, dot.
  table: the whole matrix when it fits the terminal (or with --wide), else one row and column per
         equivalence class (same identity, policy entries and address family) with a legend.
  json: {"probes":[{"port":80,"protocol":"TCP","matrix":{"<ns>/<pod>":{"<ns>/<pod>":true|false|null}}}],
         "diagnostics":{"refused":[...],"errors":N,"warnings":N,"problems":[...],"warningList":[...]}}
  null (csv: n/a): the probe's IP family (ICMP: IPv4, ICMPv6: IPv6) is one a pod has no address of.
Every format streams one source pod at a time.

Examples:
  ciliate reach -f scenarios/k8s-netpol --port 80/TCP
  ciliate reach -f scenarios/k8s-netpol --port 80/TCP --port 81/TCP -o json
  ciliate reach -f scenarios/starwars -o dot | dot -Tsvg > reach.svg

Exit codes: 0 computed, 2 bad input.`,
    )
    .action(async (_o, cmd: Command) => run(async () => (await import("../commands/reach.ts")).runReach(cmd.optsWithGlobals(), (s) => process.stdout.write(s))));
}
