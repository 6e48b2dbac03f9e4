/*
 * `ciliate agent`: run the node agent (agent/, docs/agent.md). Needs root. Loads the generated
 * datapath with its maps pinned, reconciles the maps with the manifests (watched for changes), serves the
 * CNI API on a root-only unix socket and Prometheus metrics over HTTP, until SIGINT/SIGTERM. Exits 0 on a
 * signal, 2 on bad flags or when the datapath cannot be loaded.
 */
import type { Command } from "commander";
import { hostname } from "node:os";
import { fileURLToPath } from "node:url";
import { DEFAULT_BPFFS, DEFAULT_SOCKET, DEFAULT_STATE_DIR } from "../../agent/defaults.ts";
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
  device?: string[];
  traceAll?: boolean;
  traceSample?: string;
  kubeconfig?: string;
  policyMapMax?: string;
  k8sResync: string;
  tofqdnsMinTtl?: string;
  dnsProxy?: boolean;
}

/** datapath/kernel-engine.ts KERNEL_OBJECT (not imported here: the agent's modules load only when it runs). */
const KERNEL_OBJECT = fileURLToPath(new URL("../../build/bpf/ciliate.bpf.o", import.meta.url));

export async function runAgent(f: AgentFlags): Promise<number> {
  // Loaded here, not at the top: libbpf, prom-client and the Kubernetes client stay out of every other command.
  const [{ Agent }, { agentRoutes, serveApi }, { ManifestSource }, { AgentMetrics }, { FlowObserver, verdictLabels }] = await Promise.all([
    import("../../agent/agent.ts"),
    import("../../agent/api.ts"),
    import("../../agent/manifest-source.ts"),
    import("../../agent/metrics.ts"),
    import("../../agent/observer.ts"),
  ]);
  if (!f.podCidr) throw new CliError("--pod-cidr is required", "BAD_OPTION", "the node's pod CIDR, e.g. 10.244.1.0/24");
  if (!f.nodeIp) throw new CliError("--node-ip is required", "BAD_OPTION", "the node's InternalIP");
  if (f.policyMapMax !== undefined && !(Number.isInteger(Number(f.policyMapMax)) && Number(f.policyMapMax) > 0)) throw new CliError(`invalid --policy-map-max ${f.policyMapMax}`, "BAD_OPTION", "a positive count");
  if (f.tofqdnsMinTtl !== undefined && !/^\d+$/.test(f.tofqdnsMinTtl)) throw new CliError(`invalid --tofqdns-min-ttl ${f.tofqdnsMinTtl}`, "BAD_OPTION", "seconds, a whole number (0 = the TTL of each DNS answer)");
  const interval = Number(f.resyncInterval);
  if (!Number.isFinite(interval) || interval < 50) throw new CliError(`invalid --resync-interval ${f.resyncInterval}`, "BAD_OPTION", "milliseconds, at least 50");
  const source = new ManifestSource(f.file ?? []);
  const k8sMod = f.kubeconfig ? await import("../../agent/k8s-source.ts") : undefined;
  const k8s = k8sMod ? new k8sMod.KubernetesSource(k8sMod.kubeConfig(f.kubeconfig!), { resyncMs: Number(f.k8sResync) * 1000 || undefined }) : undefined;
  if (k8s && f.file?.length) throw new CliError("-f and --kubeconfig are exclusive", "BAD_OPTION", "the desired state comes from one source");
  const agent = new Agent({
    nodeName: f.nodeName ?? hostname(),
    nodeIp: f.nodeIp,
    podCIDR: f.podCidr,
    pinRoot: f.bpffs,
    stateDir: f.stateDir,
    objectPath: f.object,
    source: () => (k8s ? k8s.objects() : source.load()),
    buildOptions: buildOptions(f),
    devices: f.device ?? [],
    eventsAll: f.traceAll === true,
    traceSample: f.traceSample === undefined ? undefined : parseTraceSample(f.traceSample),
    policyMapMax: f.policyMapMax === undefined ? undefined : Number(f.policyMapMax),
    fqdnMinTtl: f.tofqdnsMinTtl === undefined ? undefined : Number(f.tofqdnsMinTtl),
  });
  const metrics = new AgentMetrics(agent);
  // The DNS proxy: transparent UDP listeners on the DNS proxy ports of the current policy (docs/l7.md).
  const dns = f.dnsProxy === false ? undefined : await startDnsProxy(agent);
  agent.events.onReconcile = (r) => {
    metrics.observeReconcile(r);
    dns?.sync();
  };
  if (k8s) await k8s.start(() => agent.reconcile("kubernetes"));
  agent.reconcile("start");
  const observer = new FlowObserver(agent);
  observer.onFlow = (fl) => {
    const l = verdictLabels(fl);
    if (l) metrics.policyVerdicts.inc(l);
  };
  if (!observer.start()) process.stderr.write(`${new Date().toISOString()} warn the datapath object has no events ring buffer: \`ciliate observe\` will show nothing\n`);
  const server = await serveApi(f.socket, agentRoutes(agent), new Map([["GET /v1/flows", observer.route()]]));
  if (f.metricsAddr) await metrics.listen(f.metricsAddr);
  if (!k8s) source.watch(interval, () => agent.reconcile("manifests changed"));
  process.stderr.write(`${new Date().toISOString()} info ciliate agent on ${agent.opts.nodeName} (${f.podCidr}): API ${f.socket}${f.metricsAddr ? `, metrics http://${f.metricsAddr}/metrics` : ""}\n`);
  await new Promise<void>((resolve) => {
    const stop = () => resolve();
    process.once("SIGINT", stop);
    process.once("SIGTERM", stop);
  });
  source.stop();
  k8s?.stop();
  observer.stop();
  server.closeAllConnections?.();
  server.close();
  metrics.close();
  dns?.close();
  agent.close();
  return 0;
}

/** Starts the node's DNS proxy over UDP; its ports follow the policy after every reconcile. */
async function startDnsProxy(agent: import("../../agent/agent.ts").Agent): Promise<{ sync(): void; close(): void }> {
  const { DnsUdpProxy } = await import("../../agent/proxy/dns-udp.ts");
  const log = (level: string, msg: string) => process.stderr.write(`${new Date().toISOString()} ${level} ${msg}\n`);
  const proxy = new DnsUdpProxy({
    ctx: {
      policy: () => {
        const p = agent.currentPolicy();
        if (!p) throw new Error("no policy compiled yet");
        return p;
      },
      emit: (e) => e.verdict !== "FORWARDED" && log("info", `dns ${e.type.toLowerCase()} ${e.verdict} ${e.source.ip} -> ${e.destination.ip}:${e.destination.port} ${e.dns?.query ?? ""}${e.dns?.ips?.length ? ` ${e.dns.ips.join(",")}` : ""}${e.dns?.rcode ? ` rcode ${e.dns.rcode}` : ""}`),
      upstreamError: () => undefined,
      learn: (name, ips, ttl) => agent.learnDns(name, ips, ttl),
    },
    identityOf: (ip) => agent.identityOf(ip),
    log,
  });
  return {
    sync: () => {
      try {
        proxy.sync(agent.dnsProxyPorts());
      } catch (e) {
        log("error", `dns proxy: ${(e as Error).message}`);
      }
    },
    close: () => proxy.close(),
  };
}

export function registerAgent(program: Command, run: (fn: () => Promise<number>) => Promise<void>): void {
  program
    .command("agent")
    .description("run the node agent: load the datapath, join pods (CNI), keep the maps in step with the manifests")
    .option("--node-name <name>", "this node's name (default: the hostname)")
    .option("--node-ip <ip>", "this node's InternalIP")
    .option("--pod-cidr <cidr>", "this node's pod CIDR (IPAM range)")
    .option("--bpffs <dir>", "bpffs directory for the pinned maps", DEFAULT_BPFFS)
    .option("--state-dir <dir>", "agent state (endpoints, IPAM, identities)", DEFAULT_STATE_DIR)
    .option("--socket <path>", "unix socket of the agent API (root only)", DEFAULT_SOCKET)
    .option("--metrics-addr <host:port>", "serve Prometheus metrics on this address")
    .option("--object <path>", "the generated eBPF object", KERNEL_OBJECT)
    .option("--device <ifname>", "node device facing the outside, for NodePort/LoadBalancer (repeatable)", (v: string, p: string[] = []) => [...p, v])
    .option("--kubeconfig <path>", "take the desired state from the Kubernetes API (a kubeconfig file, or `in-cluster`) instead of -f")
    .option("--k8s-resync <seconds>", "with --kubeconfig: reconcile the whole cache this often", "300")
    .option("--policy-map-max <n>", "policy entries allowed per endpoint (Cilium bpf-policy-map-max)")
    .option("--tofqdns-min-ttl <seconds>", "keep what the DNS proxy learns at least this long (0: the TTL of each answer)", "0")
    .option("--no-dns-proxy", "do not run the DNS proxy (nothing is learned for toFQDNs)")
    .option("--trace-sample <n>", "also send about 1 in N forwarded packets to `ciliate observe` as trace events (1..65535)")
    .option("--trace-all", "send every packet to `ciliate observe`, not only drops and new flows' policy verdicts")
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

/** --trace-sample: a whole number 1..65535 (the datapath keeps it in a u16). */
function parseTraceSample(v: string): number {
  const n = Number(v);
  if (!/^\d+$/.test(v) || n < 1 || n > 65535) throw new CliError(`--trace-sample: expected a whole number from 1 to 65535, got "${v}"`);
  return n;
}
