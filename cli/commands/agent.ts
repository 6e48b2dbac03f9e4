/*
 * `ciliate agent`: run the node agent (cli/agent/, docs/agent.md). Needs root. Loads the generated
 * datapath with its maps pinned, reconciles the maps with the manifests (watched for changes), serves the
 * CNI API on a root-only unix socket and Prometheus metrics over HTTP, until SIGINT/SIGTERM. Exits 0 on a
 * signal, 2 on bad flags or when the datapath cannot be loaded.
 */
import type { Command } from "commander";
import { hostname } from "node:os";
import { KERNEL_OBJECT } from "../../datapath/kernel-engine.ts";
import { DEFAULT_PIN_ROOT } from "../../datapath/index.ts";
import { Agent, DEFAULT_SOCKET, DEFAULT_STATE_DIR } from "../agent/agent.ts";
import { agentRoutes, serveApi } from "../agent/api.ts";
import { ManifestSource } from "../agent/manifest-source.ts";
import { AgentMetrics } from "../agent/metrics.ts";
import { buildOptions, type GlobalOptions } from "../common.ts";
import { CliError } from "../errors.ts";

export interface AgentFlags extends GlobalOptions {
  nodeName?: string;
  nodeIp?: string;
  podCidr?: string;
  bpffs: string;
  stateDir: string;
  socket: string;
  metricsAddr?: string;
  object: string;
  resyncInterval: string;
}

export async function runAgent(f: AgentFlags): Promise<number> {
  if (!f.podCidr) throw new CliError("--pod-cidr is required", "BAD_OPTION", "the node's pod CIDR, e.g. 10.244.1.0/24");
  if (!f.nodeIp) throw new CliError("--node-ip is required", "BAD_OPTION", "the node's InternalIP");
  const interval = Number(f.resyncInterval);
  if (!Number.isFinite(interval) || interval < 50) throw new CliError(`invalid --resync-interval ${f.resyncInterval}`, "BAD_OPTION", "milliseconds, at least 50");
  const source = new ManifestSource(f.file ?? []);
  const agent = new Agent({
    nodeName: f.nodeName ?? hostname(),
    nodeIp: f.nodeIp,
    podCIDR: f.podCidr,
    pinRoot: f.bpffs,
    stateDir: f.stateDir,
    objectPath: f.object,
    source: () => source.load(),
    buildOptions: buildOptions(f),
  });
  const metrics = new AgentMetrics(agent);
  agent.events.onReconcile = (r) => metrics.observeReconcile(r);
  agent.reconcile("start");
  const server = await serveApi(f.socket, agentRoutes(agent));
  if (f.metricsAddr) await metrics.listen(f.metricsAddr);
  source.watch(interval, () => agent.reconcile("manifests changed"));
  process.stderr.write(`${new Date().toISOString()} info ciliate agent on ${agent.opts.nodeName} (${f.podCidr}): API ${f.socket}${f.metricsAddr ? `, metrics http://${f.metricsAddr}/metrics` : ""}\n`);
  await new Promise<void>((resolve) => {
    const stop = () => resolve();
    process.once("SIGINT", stop);
    process.once("SIGTERM", stop);
  });
  source.stop();
  server.close();
  metrics.close();
  agent.close();
  return 0;
}

export function registerAgent(program: Command, run: (fn: () => Promise<number>) => Promise<void>): void {
  program
    .command("agent")
    .description("run the node agent: load the datapath, join pods (CNI), keep the maps in step with the manifests")
    .option("--node-name <name>", "this node's name (default: the hostname)")
    .option("--node-ip <ip>", "this node's InternalIP")
    .option("--pod-cidr <cidr>", "this node's pod CIDR (IPAM range)")
    .option("--bpffs <dir>", "bpffs directory for the pinned maps", DEFAULT_PIN_ROOT)
    .option("--state-dir <dir>", "agent state (endpoints, IPAM, identities)", DEFAULT_STATE_DIR)
    .option("--socket <path>", "unix socket of the agent API (root only)", DEFAULT_SOCKET)
    .option("--metrics-addr <host:port>", "serve Prometheus metrics on this address")
    .option("--object <path>", "the generated eBPF object", KERNEL_OBJECT)
    .option("--resync-interval <ms>", "how often to check the manifests for changes", "500")
    .addHelpText(
      "after",
      `
Examples:
  ciliate agent -f /etc/ciliate/manifests --node-ip 192.168.56.11 --pod-cidr 10.244.1.0/24 --metrics-addr 127.0.0.1:9962

See docs/agent.md. Exit codes: 0 stopped by a signal, 2 bad flags or the datapath could not be loaded.`,
    )
    .action(async (_o, cmd: Command) => run(() => runAgent(cmd.optsWithGlobals())));
}
