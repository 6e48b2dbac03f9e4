/*
 * The `ciliate` command (docs/cli.md): global options, one file per command in cli/commands/, and the exit
 * code contract — 0 success, 1 a check failed, 2 bad input (one line on stderr, never a stack trace).
 * Each command's flags and help are in cli/definitions/, which import nothing heavy; the command itself is
 * imported when it runs, so `ciliate --help` or a usage error does not load the simulator.
 */
import { Command, CommanderError, Option } from "commander";
import { registerAgent } from "./definitions/agent.ts";
import { registerCheck } from "./definitions/check.ts";
import { registerCni } from "./definitions/cni.ts";
import { registerObserve } from "./definitions/observe.ts";
import { registerReach } from "./definitions/reach.ts";
import { registerRelay } from "./definitions/relay.ts";
import { registerSimulate } from "./definitions/simulate.ts";
import { registerTrace } from "./definitions/trace.ts";
import { registerUi } from "./definitions/ui.ts";
import { registerWhatif } from "./definitions/whatif.ts";
import { finishDiagnostics } from "./run-diagnostics.ts";
import { EXIT_BAD_INPUT, reportError } from "./errors.ts";

/**
 * Commander's usage errors ("error: unknown option '--x'\n") as our one line: the same prefix as every
 * other error and where to look next, so a script reading the first line of stderr sees everything.
 */
export function usageLine(s: string): string {
  const text = s.replace(/^error:\s*/, "").replace(/\s+/g, " ").trim();
  return `ciliate: ${text} (run ciliate --help, or ciliate COMMAND --help, for usage)\n`;
}

export function buildProgram(): Command {
  const program = new Command();
  program
    .name("ciliate")
    .description("Cilium-style network policy and load balancing, simulated packet by packet on the same datapath code that runs as eBPF")
    .option("-f, --file <path>", "manifest file or directory (repeatable)", (v: string, p: string[] = []) => [...p, v])
    .option("-o, --output <format>", "output format (table default; json; per command: csv, md, dot)")
    .addOption(new Option("--engine <engine>", "where packets are evaluated").choices(["wasm", "js", "kernel"]).default("wasm"))
    .option("--cluster-name <name>", "cluster name (overrides the Config document)")
    .addOption(new Option("--policy-enforcement <mode>", "policy enforcement mode (overrides the Config document)").choices(["default", "always", "never"]))
    .option("--tofqdns-min-ttl <seconds>", "keep what DNS answers teach toFQDNs at least this long, as the agent's DNS proxy (Cilium's tofqdns-min-ttl; default 0: each answer's TTL)")
    .addOption(new Option("--tunnel-protocol <protocol>", "overlay between the simulated nodes (Cilium's tunnel-protocol; disabled: no encapsulation, the receiver looks the source identity up)").choices(["vxlan", "geneve", "disabled"]).default("vxlan"))
    .option("--enable-bpf-masquerade", "masquerade pod traffic leaving the cluster to the node's address (BPF SNAT at the node device's egress; Cilium's enable-bpf-masquerade)")
    .option("--ipv4-native-routing-cidr <cidr>", "with --enable-bpf-masquerade: destinations in this CIDR are never masqueraded (Cilium's ipv4-native-routing-cidr)")
    .option("--ipv6-native-routing-cidr <cidr>", "with --enable-bpf-masquerade: IPv6 destinations in this CIDR are never masqueraded (Cilium's ipv6-native-routing-cidr)")
    .option("--enable-host-firewall", "enforce host policies (nodeSelector) at each node's device, as the Config's enableHostFirewall (Cilium's enable-host-firewall)")
    .option("--strict", "treat warnings (parts of a policy that would not be enforced, deprecated forms) as errors")
    .exitOverride()
    .configureOutput({ outputError: (s, write) => write(usageLine(s)) });
  return program;
}

export async function main(argv: string[]): Promise<number> {
  const program = buildProgram();
  let code = 0;
  const run = async (fn: () => Promise<number>) => {
    code = await fn();
  };
  registerSimulate(program, run);
  registerReach(program, run);
  registerTrace(program, run);
  registerWhatif(program, run);
  registerCheck(program, run);
  registerAgent(program, run);
  registerCni(program, run);
  registerObserve(program, run);
  registerRelay(program, run);
  registerUi(program, run);
  for (const c of program.commands) c.exitOverride();
  try {
    await program.parseAsync(argv);
  } catch (e) {
    if (e instanceof CommanderError) {
      // --help and --version exit 0; usage errors (and a missing command) are bad input.
      return e.exitCode === 0 ? 0 : EXIT_BAD_INPUT;
    }
    finishDiagnostics();
    return reportError(e);
  }
  // Refused objects were reported as they were found and the command ran with the valid ones; the exit
  // status still says the input was bad (docs/cli.md, exit codes).
  if (finishDiagnostics()?.failed) return EXIT_BAD_INPUT;
  return code;
}

// A reader that stops early (`ciliate simulate … | head`) is not an error.
process.stdout.on("error", (e: NodeJS.ErrnoException) => {
  if (e.code === "EPIPE") process.exit(process.exitCode ?? 0);
  throw e;
});

process.exitCode = await main(process.argv);
