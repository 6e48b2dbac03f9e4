/*
 * `ciliate reach`: parses the options, runs the all-pairs analysis (sim/analysis/reach.ts) and prints the
 * matrices in the chosen format.
 */
import type { Command } from "commander";
import Table from "cli-table3";
import { stringify as stringifyYaml } from "yaml";
import { reachMatrix, type ProbeMatrix } from "../../sim/analysis/reach.ts";
import { policyProbes } from "../../sim/analysis/probes.ts";
import { collect, load, outputOf, parseProbe, simulation, type GlobalOptions, type Out } from "../common.ts";
import { CliError } from "../errors.ts";

export function renderReach(probes: ProbeMatrix[], fmt: string): string {
  if (fmt === "json") return `${JSON.stringify({ probes }, null, 2)}\n`;
  if (fmt === "yaml") return stringifyYaml({ probes });
  const keys = (p: ProbeMatrix) => Object.keys(p.matrix);
  if (fmt === "csv") {
    const lines = ["port,protocol,from,to,allowed"];
    for (const p of probes) for (const s of keys(p)) for (const d of keys(p)) lines.push(`${p.port},${p.protocol},${s},${d},${p.matrix[s]![d]}`);
    return `${lines.join("\n")}\n`;
  }
  if (fmt === "md") {
    const parts: string[] = [];
    for (const p of probes) {
      const ks = keys(p);
      parts.push(`### ${p.port}/${p.protocol}\n`, `| from \\ to | ${ks.join(" | ")} |`, `|---|${ks.map(() => ":-:").join("|")}|`);
      for (const s of ks) parts.push(`| ${s} | ${ks.map((d) => (p.matrix[s]![d] ? "✓" : "✗")).join(" | ")} |`);
      parts.push("");
    }
    return `${parts.join("\n")}\n`;
  }
  if (fmt === "dot") {
    const lines = ["digraph reach {", "  rankdir=LR;", "  node [shape=box];"];
    const nodes = new Set<string>();
    for (const p of probes) for (const s of keys(p)) nodes.add(s);
    for (const n of nodes) lines.push(`  "${n}";`);
    for (const p of probes)
      for (const s of keys(p)) for (const d of keys(p)) if (s !== d && p.matrix[s]![d]) lines.push(`  "${s}" -> "${d}" [label="${p.port}/${p.protocol}"];`);
    lines.push("}");
    return `${lines.join("\n")}\n`;
  }
  const parts: string[] = [];
  for (const p of probes) {
    const ks = keys(p);
    const t = new Table({ head: [`${p.port}/${p.protocol}`, ...ks.map((_, i) => String(i + 1))], style: { head: [], border: [] } });
    ks.forEach((s, i) => t.push([`${i + 1} ${s}`, ...ks.map((d) => (p.matrix[s]![d] ? "." : "X"))]));
    parts.push(t.toString());
  }
  parts.push(". allowed   X denied   (rows: from, columns: to)");
  return `${parts.join("\n")}\n`;
}

export async function runReach(g: GlobalOptions & { port?: string[]; namespace?: string[]; dedupe?: boolean }, out: Out): Promise<number> {
  const fmt = outputOf(g, ["table", "json", "yaml", "csv", "md", "dot"]);
  const probesIn = (g.port ?? []).map(parseProbe);
  const l = load(g);
  let probes = probesIn.length ? probesIn : policyProbes(l.policy);
  if (!probes.length) probes = [{ port: 80, protocol: "TCP" }];
  let pods = [...l.cluster.pods].sort((a, b) => (a.key < b.key ? -1 : 1));
  if (g.namespace?.length) {
    for (const ns of g.namespace) if (!l.cluster.namespaces.some((n) => n.name === ns)) throw new CliError(`unknown namespace ${ns}`, "BAD_REFERENCE");
    pods = pods.filter((p) => g.namespace!.includes(p.namespace));
  }
  const sim = await simulation(l, g);
  try {
    out(renderReach(probes.map((p) => reachMatrix(sim, pods, p, { dedupe: g.dedupe !== false })), fmt));
  } finally {
    sim.close();
  }
  return 0;
}

export function registerReach(program: Command, run: (fn: () => Promise<number>) => Promise<void>): void {
  program
    .command("reach")
    .description("all-pairs pod reachability for each probe port/protocol")
    .option("--port <port/proto>", "probe, e.g. 80/TCP, 53/UDP, 8/ICMP (repeatable; default: every port the policies mention)", collect)
    .option("--namespace <ns>", "only pods in this namespace (repeatable)", collect)
    .option("--no-dedupe", "run every pair through the datapath (default: once per pair of policy classes — same identity and same policy entries)")
    .addHelpText(
      "after",
      `
Output (-o): table (default; "." allowed, "X" denied), json, yaml, csv, md, dot.
  json: {"probes":[{"port":80,"protocol":"TCP","matrix":{"<ns>/<pod>":{"<ns>/<pod>":true|false}}}]}

Examples:
  ciliate reach -f scenarios/k8s-netpol --port 80/TCP
  ciliate reach -f scenarios/k8s-netpol --port 80/TCP --port 81/TCP -o json
  ciliate reach -f scenarios/starwars -o dot | dot -Tsvg > reach.svg

Exit codes: 0 computed, 2 bad input.`,
    )
    .action(async (_o, cmd: Command) => run(() => runReach(cmd.optsWithGlobals(), (s) => process.stdout.write(s))));
}
