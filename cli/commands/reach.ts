/*
 * `ciliate reach`: parses the options, runs the all-pairs analysis (sim/analysis/reach.ts) and prints the
 * matrices in the chosen format. Every format streams, one source pod at a time, so time and memory grow
 * with the answer. The table shows the whole matrix when it fits the terminal (or with --wide); a wider
 * one is shown by equivalence class — pods with the same identity, policy entries and address family —
 * with a legend, and the full matrix is one `-o csv` or `-o json` away.
 */
import { policyProbes, sortProbes } from "../../sim/analysis/probes.ts";
import { streamReach } from "../../sim/analysis/reach-output.ts";
import { diagnosticsJson, load, outputOf, parseProbe, simulation, simulationOptions, type GlobalOptions, type Loaded, type Out } from "../common.ts";
import { MeshSimulation } from "../../sim/mesh.ts";
import type { Probe } from "../../sim/analysis/probes.ts";
import { CliError } from "../errors.ts";
import { terminalWidth } from "../text-layout.ts";

interface ReachOptions extends GlobalOptions {
  port?: string[];
  namespace?: string[];
  dedupe?: boolean;
  wide?: boolean;
}

export async function runReach(g: ReachOptions, out: Out): Promise<number> {
  const fmt = outputOf(g, ["table", "json", "yaml", "csv", "md", "dot"]);
  const probesIn = (g.port ?? []).map(parseProbe);
  const l = load(g);
  // Without --port: every port/protocol the policies name (every cluster's), and 80/TCP (what a user probes first).
  const named = (l.mesh ? l.mesh.clusters.map((c) => c.policy) : [l.policy]).flatMap((p) => policyProbes(p));
  const probes = probesIn.length ? probesIn : sortProbes([...new Map(named.filter((p) => !(p.port === 80 && p.protocol === "TCP")).map((p) => [`${p.port}/${p.protocol}`, p])).values(), { port: 80, protocol: "TCP" as const }]);
  if (l.mesh) return reachMesh(l, g, probes, fmt, out);
  let pods = [...l.cluster.pods].sort((a, b) => (a.key < b.key ? -1 : 1));
  if (g.namespace?.length) {
    for (const ns of g.namespace) if (!l.cluster.namespaces.some((n) => n.name === ns)) throw new CliError(`unknown namespace ${ns}`, "BAD_REFERENCE");
    pods = pods.filter((p) => g.namespace!.includes(p.namespace));
  }
  const sim = await simulation(l, g);
  try {
    streamReach(sim, pods, probes, fmt, out, { dedupe: g.dedupe !== false, wide: !!g.wide, columns: terminalWidth(), diagnostics: diagnosticsJson(g) });
  } finally {
    sim.close();
  }
  return 0;
}

/** A multi-cluster scenario (sim/mesh.ts): every cluster's pods, named cluster/namespace/name. */
async function reachMesh(l: Loaded, g: ReachOptions, probes: Probe[], fmt: string, out: Out): Promise<number> {
  const mesh = await MeshSimulation.create(l.mesh!, await simulationOptions(g));
  try {
    const { pods, name, rows } = mesh.reach();
    if (g.namespace?.length) throw new CliError("--namespace does not apply to a multi-cluster scenario yet", "BAD_OPTION", "leave --namespace out");
    streamReach(mesh.sims.get(l.mesh!.clusters[0]!.name)!, pods, probes, fmt, out, { dedupe: false, wide: !!g.wide, columns: terminalWidth(), diagnostics: diagnosticsJson(g), rows, name });
  } finally {
    mesh.close();
  }
  return 0;
}
