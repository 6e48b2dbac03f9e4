/*
 * What every simulator command shares: the global options, loading manifests into a cluster model,
 * compiling policy, starting one datapath per node, and parsing the references and probes users type.
 * The analyses themselves live in sim/analysis/; commands parse, call and print.
 * cli/ is the composition root: it is the only place that wires policy/ and sim/ together.
 */
import { Diagnostics, type DiagnosticsSummary, type EnforcementMode } from "../policy/index.ts";
import { loadFrom, type Loaded } from "../sim/load.ts";
import { endpointRefOf, type BuildOptions, type EndpointRefSpec, type FlowProtocol, type SimCluster } from "../node/cluster.ts";
import { loadManifests } from "../sim/manifests.ts";
import { Simulation, type SimulationOptions } from "../sim/simulator.ts";
import { MeshSimulation } from "../sim/mesh.ts";
import { CliError } from "./errors.ts";
import { currentDiagnostics, setDiagnostics } from "./run-diagnostics.ts";
import { parseIpv4Cidr, parseIpv6Cidr } from "../host/ip.ts";
import type { MasqueradeOptions } from "../node/desired.ts";

export { loadFrom, type Loaded };

export interface GlobalOptions {
  file?: string[];
  output?: string;
  engine?: string;
  clusterName?: string;
  policyEnforcement?: string;
  strict?: boolean;
  tunnelProtocol?: "vxlan" | "geneve" | "disabled";
  tofqdnsMinTtl?: string;
  enableBpfMasquerade?: boolean;
  ipv4NativeRoutingCidr?: string;
  ipv6NativeRoutingCidr?: string;
  enableHostFirewall?: boolean;
}

/**
 * --tofqdns-min-ttl: the minimum lifetime (seconds) of what a DNS answer teaches toFQDNs, the same for the
 * agent's DNS proxy and the simulator's modelled one (undefined when not given: each answer's own TTL).
 */
export function fqdnMinTtlOf(g: GlobalOptions): number | undefined {
  const v = g.tofqdnsMinTtl;
  if (v === undefined) return undefined;
  if (!/^\d+$/.test(v) || !Number.isSafeInteger(Number(v))) throw new CliError(`invalid --tofqdns-min-ttl ${JSON.stringify(v)}`, "BAD_OPTION", "seconds, a whole number (0 = the TTL of each DNS answer)");
  return Number(v);
}

/**
 * The run's diagnostics (created on first use with the run's --strict): every refused object and warning
 * is printed on stderr once, as found; main() turns "something was refused" into exit 2 after the command
 * has printed its results for everything that was valid.
 */
export function diagnostics(g: GlobalOptions = {}): Diagnostics {
  return currentDiagnostics() ?? setDiagnostics(new Diagnostics(Boolean(g.strict), (line) => process.stderr.write(`${line}\n`)));
}

/** What `-o json` documents carry about the input: counts, refused objects, every problem and warning. */
export function diagnosticsJson(g: GlobalOptions): DiagnosticsSummary {
  return diagnostics(g).summary();
}

export type Out = (s: string) => void;

export function engineOf(g: GlobalOptions): "wasm" | "js" | "kernel" {
  const e = g.engine ?? "wasm";
  if (e === "wasm" || e === "js" || e === "kernel") return e;
  throw new CliError(`unknown engine ${JSON.stringify(e)}`, "BAD_OPTION", "use --engine wasm, js or kernel");
}

export function outputOf(g: GlobalOptions, allowed: string[], dflt = "table"): string {
  const o = g.output ?? dflt;
  if (!allowed.includes(o)) throw new CliError(`unknown output format ${JSON.stringify(o)} for this command`, "BAD_OPTION", `use -o ${allowed.join("|")}`);
  return o;
}

export function buildOptions(g: GlobalOptions): BuildOptions {
  const pe = g.policyEnforcement;
  if (pe !== undefined && pe !== "default" && pe !== "always" && pe !== "never")
    throw new CliError(`invalid --policy-enforcement ${JSON.stringify(pe)}`, "BAD_OPTION", "use default, always or never");
  return { clusterName: g.clusterName, policyEnforcement: pe as EnforcementMode | undefined, ...(g.enableHostFirewall ? { enableHostFirewall: true } : {}) };
}

export function requireFiles(g: GlobalOptions): string[] {
  if (!g.file?.length) throw new CliError("no manifests given", "NO_INPUT", "pass -f FILE or -f DIR (repeatable)");
  return g.file;
}

export function load(g: GlobalOptions): Loaded {
  const d = diagnostics(g);
  return loadFrom(loadManifests(requireFiles(g), d), buildOptions(g), d);
}

/**
 * One simulation with the chosen engine. `kernel` runs every packet through the generated eBPF programs
 * with BPF_PROG_TEST_RUN (datapath/kernel-engine.ts), one loaded object per simulated node; it needs root
 * (CAP_BPF, CAP_SYS_ADMIN, CAP_NET_ADMIN), libbpf, a mounted bpffs and the built object (npm run build).
 */
export async function simulation(l: Loaded, g: GlobalOptions): Promise<Simulation> {
  if (l.mesh) throw new CliError("this command models one cluster; the scenario declares several (simulate, check, trace and reach take it)", "UNSUPPORTED_MESH", "docs/clustermesh.md");
  return Simulation.create(l.cluster, l.policy, await simulationOptions(g));
}

/** The simulation of the scenario: one cluster's, or every cluster's of a multi-cluster scenario (sim/mesh.ts). */
export async function flowSimulation(l: Loaded, g: GlobalOptions): Promise<Simulation | MeshSimulation> {
  return l.mesh ? MeshSimulation.create(l.mesh, await simulationOptions(g)) : simulation(l, g);
}

/** The simulation options the global flags give (engine, tunnel, FQDN TTL, masquerading). */
export async function simulationOptions(g: GlobalOptions): Promise<SimulationOptions> {
  const engine = engineOf(g);
  const tunnel = g.tunnelProtocol ?? "vxlan";
  const fqdnMinTtl = fqdnMinTtlOf(g);
  const masquerade = masqueradeOption(g);
  if (engine !== "kernel") return { engine, tunnel, fqdnMinTtl, masquerade };
  const { preflight } = await import("../datapath/preflight.ts");
  const report = preflight(["root", "libbpf", "bpffs"]);
  if (!report.ok) throw new CliError(`the kernel engine cannot run here: ${report.missing}`, "ENGINE_UNAVAILABLE", "use --engine wasm or --engine js");
  const { KernelDatapath, KERNEL_OBJECT } = await import("../datapath/kernel-engine.ts");
  const { existsSync } = await import("node:fs");
  if (!existsSync(KERNEL_OBJECT)) throw new CliError(`the kernel build of core is missing (${KERNEL_OBJECT})`, "ENGINE_NOT_BUILT", "run `npm run build` (needs clang)");
  // Small maps: a simulated node holds a few thousand entries at most, and every node loads its own object.
  const capacities = { ct: 65536, snat: 16384, ipcache: 65536, lb_maglev: 262144, policy: 65536 };
  return { engine: "wasm", engineName: "kernel", tunnel, fqdnMinTtl, masquerade, createDatapath: async () => new KernelDatapath({ capacities }) };
}

/**
 * --enable-bpf-masquerade, --ipv4-native-routing-cidr and --ipv6-native-routing-cidr (global: the
 * simulator's nodes and the agent take them alike): the masquerade option, or undefined when off. A bad
 * CIDR is a CliError.
 */
export function masqueradeOption(g: GlobalOptions): MasqueradeOptions | undefined {
  if (g.ipv4NativeRoutingCidr !== undefined) {
    try {
      parseIpv4Cidr(g.ipv4NativeRoutingCidr);
    } catch (e) {
      throw new CliError(`invalid --ipv4-native-routing-cidr: ${(e as Error).message}`, "BAD_OPTION", "an IPv4 CIDR such as 10.244.0.0/16");
    }
  }
  if (g.ipv6NativeRoutingCidr !== undefined) {
    try {
      parseIpv6Cidr(g.ipv6NativeRoutingCidr);
    } catch (e) {
      throw new CliError(`invalid --ipv6-native-routing-cidr: ${(e as Error).message}`, "BAD_OPTION", "an IPv6 CIDR such as fd00:10:244::/56");
    }
  }
  if (!g.enableBpfMasquerade) return undefined;
  return {
    ...(g.ipv4NativeRoutingCidr === undefined ? {} : { nativeRoutingCidr: g.ipv4NativeRoutingCidr }),
    ...(g.ipv6NativeRoutingCidr === undefined ? {} : { ipv6NativeRoutingCidr: g.ipv6NativeRoutingCidr }),
  };
}

/** `80/TCP`, `53/udp`, `8080` (TCP), `8/ICMP` (ICMP type 8). */
export function parseProbe(s: string): { port: number; protocol: FlowProtocol } {
  const m = /^(\d+)(?:\/([A-Za-z0-9]+))?$/.exec(s.trim());
  const protoRaw = (m?.[2] ?? "TCP").toUpperCase();
  const protocol = (protoRaw === "ICMPV6" ? "ICMPv6" : protoRaw) as FlowProtocol;
  if (!m || !["TCP", "UDP", "SCTP", "ICMP", "ICMPv6", "VRRP", "IGMP"].includes(protocol))
    throw new CliError(`malformed port ${JSON.stringify(s)}`, "BAD_PORT", "write PORT/PROTOCOL, e.g. 80/TCP, 53/UDP, 8/ICMP (an ICMP type) or 0/VRRP");
  const port = Number(m[1]);
  if (protocol === "VRRP" || protocol === "IGMP") {
    if (port !== 0) throw new CliError(`${protocol} has no ports in ${JSON.stringify(s)}`, "BAD_PORT", `write 0/${protocol}`);
    return { port, protocol };
  }
  const icmp = protocol === "ICMP" || protocol === "ICMPv6";
  if (icmp ? port > 255 : port < 1 || port > 65535) throw new CliError(`port out of range in ${JSON.stringify(s)}`, "BAD_PORT", icmp ? "an ICMP type is 0-255" : "a port is 1-65535");
  return { port, protocol };
}

export function parsePort(s: string | undefined, what: string): number {
  if (s === undefined) throw new CliError(`${what} is required`, "BAD_OPTION");
  if (!/^\d+$/.test(s) || Number(s) < 1 || Number(s) > 65535) throw new CliError(`malformed ${what} ${JSON.stringify(s)}`, "BAD_PORT", "a port is a number 1-65535");
  return Number(s);
}

/** `ns/pod`, `pod` (namespace default), `pod:ns/name`, `svc:ns/name`, an IP, a CIDR, `entity:NAME`. */
export function parseRef(s: string, what: string): EndpointRefSpec {
  const t = s.trim();
  const wrap = (v: unknown) => {
    try {
      return endpointRefOf(undefined, [], v);
    } catch (e) {
      throw new CliError(`${what} ${JSON.stringify(s)}: ${(e as Error).message}`, "BAD_REFERENCE");
    }
  };
  if (t.startsWith("svc:") || t.startsWith("service:")) return wrap({ service: t.slice(t.indexOf(":") + 1) });
  if (t.startsWith("pod:")) return wrap({ pod: t.slice(4) });
  if (t.startsWith("entity:")) return wrap({ entity: t.slice(7) });
  if (t.startsWith("ip:")) return wrap({ ip: t.slice(3) });
  if (t.startsWith("cidr:")) return wrap({ cidr: t.slice(5) });
  if (/^[0-9a-fA-F:.]+\/\d+$/.test(t) && (t.includes(".") || t.includes(":"))) return wrap({ cidr: t });
  if (/^\d+\.\d+\.\d+\.\d+$/.test(t) || (t.includes(":") && /^[0-9a-fA-F:.]+$/.test(t))) return wrap({ ip: t });
  // ns/pod, pod, or cluster/ns/pod (a multi-cluster scenario, sim/mesh.ts).
  if (/^[a-z0-9]([-a-z0-9.]*[a-z0-9])?(\/[a-z0-9]([-a-z0-9.]*[a-z0-9])?){0,2}$/.test(t)) return wrap({ pod: t });
  throw new CliError(`${what}: cannot read ${JSON.stringify(s)}`, "BAD_REFERENCE", "use ns/pod, svc:ns/name, an IP, a CIDR or entity:NAME");
}
