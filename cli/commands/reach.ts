/*
 * `ciliate reach`: all-pairs reachability between pods, per probe (port/protocol). For each probe and
 * each (src, dst) pod pair, a new-connection packet (TCP SYN, a UDP/SCTP datagram, an ICMP echo) runs
 * through src's fromEndpoint and, when it passes, dst's toEndpoint on their nodes' datapaths. A pair is
 * allowed when both pass; an L7 redirect counts as allowed at L3/L4 (the request itself is judged by
 * `trace`/`simulate` with an HTTP request). Conntrack state never leaks between pairs: every pair has its
 * own address pair, and a probe's tuple is never the reverse of another pair's.
 */
import type { Command } from "commander";
import Table from "cli-table3";
import { stringify as stringifyYaml } from "yaml";
import type { FlowProtocol, SimPod } from "../../sim/cluster.ts";
import type { Simulation } from "../../sim/simulator.ts";
import type { DiagnosticsSummary } from "../../policy/diagnostics.ts";
import { collect, diagnosticsJson, load, outputOf, parseProbe, policyProbes, simulation, sortProbes, type GlobalOptions, type Out } from "../common.ts";
import { CliError } from "../errors.ts";

export interface ProbeMatrix {
  port: number;
  protocol: FlowProtocol;
  matrix: Record<string, Record<string, boolean>>;
}

/** Source port of every probe packet; never equal to the probed port, so no pair looks like a reply. */
export function probeSourcePort(port: number): number {
  return port === 40999 ? 41000 : 40999;
}

/**
 * Policy class of a pod: its identity and its endpoint's compiled policy entries. Two pods of the same
 * class are indistinguishable to the datapath's policy decision (identity in the ipcache, entries in the
 * policy map), so a probe between two classes is run through the datapath once and reused for every pair
 * of pods of those classes. Host-networked pods are never grouped.
 */
export function policyClass(sim: Simulation, p: SimPod): string {
  if (p.hostNetwork) return `host:${p.key}`;
  const ep = sim.policy.endpoints.get(p.key);
  const entries = ep ? ep.entries.map((e) => `${e.key.direction}/${e.key.identity}/${e.key.protocol}/${e.key.port}/${e.key.portPrefix}/${e.deny ? 1 : 0}/${e.proxyPort ? 1 : 0}`).join(",") : "";
  return `${sim.identityOfPod(p)}|${entries}`;
}

export function reachMatrix(sim: Simulation, pods: SimPod[], probe: { port: number; protocol: FlowProtocol }, opts: { dedupe?: boolean } = {}): ProbeMatrix {
  const matrix: Record<string, Record<string, boolean>> = {};
  const sport = probeSourcePort(probe.port);
  const dedupe = opts.dedupe ?? true;
  const cls = new Map<SimPod, string>();
  if (dedupe) for (const p of pods) cls.set(p, policyClass(sim, p));
  const seen = new Map<string, boolean>();
  for (const s of pods) {
    const row: Record<string, boolean> = {};
    for (const d of pods) {
      if (!dedupe) {
        row[d.key] = sim.probe(s, d, probe.port, probe.protocol, sport).allowed;
        continue;
      }
      const k = `${cls.get(s)}\n${cls.get(d)}\n${s === d ? 1 : 0}`;
      let v = seen.get(k);
      if (v === undefined) {
        v = sim.probe(s, d, probe.port, probe.protocol, sport).allowed;
        seen.set(k, v);
      }
      row[d.key] = v;
    }
    matrix[s.key] = row;
  }
  return { port: probe.port, protocol: probe.protocol, matrix };
}

export function renderReach(probes: ProbeMatrix[], fmt: string, diagnostics?: DiagnosticsSummary): string {
  if (fmt === "json") return `${JSON.stringify({ probes, diagnostics }, null, 2)}\n`;
  if (fmt === "yaml") return stringifyYaml({ probes, diagnostics });
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
  // Without --port: every port/protocol the policies name, and 80/TCP (what a user probes first).
  const probes = probesIn.length ? probesIn : sortProbes([...policyProbes(l.policy).filter((p) => !(p.port === 80 && p.protocol === "TCP")), { port: 80, protocol: "TCP" as const }]);
  let pods = [...l.cluster.pods].sort((a, b) => (a.key < b.key ? -1 : 1));
  if (g.namespace?.length) {
    for (const ns of g.namespace) if (!l.cluster.namespaces.some((n) => n.name === ns)) throw new CliError(`unknown namespace ${ns}`, "BAD_REFERENCE");
    pods = pods.filter((p) => g.namespace!.includes(p.namespace));
  }
  const sim = await simulation(l, g);
  try {
    out(renderReach(probes.map((p) => reachMatrix(sim, pods, p, { dedupe: g.dedupe !== false })), fmt, diagnosticsJson(g)));
  } finally {
    sim.close();
  }
  return 0;
}

export function registerReach(program: Command, run: (fn: () => Promise<number>) => Promise<void>): void {
  program
    .command("reach")
    .description("all-pairs pod reachability for each probe port/protocol")
    .option("--port <port/proto>", "probe, e.g. 80/TCP, 53/UDP, 8/ICMP (repeatable; default: every port/protocol the policies name, plus 80/TCP)", collect)
    .option("--namespace <ns>", "only pods in this namespace (repeatable)", collect)
    .option("--no-dedupe", "run every pair through the datapath (default: once per pair of policy classes — same identity and same policy entries)")
    .addHelpText(
      "after",
      `
Output (-o): table (default; "." allowed, "X" denied), json, yaml, csv, md, dot.
  json: {"probes":[{"port":80,"protocol":"TCP","matrix":{"<ns>/<pod>":{"<ns>/<pod>":true|false}}}],
         "diagnostics":{"refused":[...],"errors":N,"warnings":N,"problems":[...],"warningList":[...]}}

Examples:
  ciliate reach -f scenarios/k8s-netpol --port 80/TCP
  ciliate reach -f scenarios/k8s-netpol --port 80/TCP --port 81/TCP -o json
  ciliate reach -f scenarios/starwars -o dot | dot -Tsvg > reach.svg

Exit codes: 0 computed, 2 bad input.`,
    )
    .action(async (_o, cmd: Command) => run(() => runReach(cmd.optsWithGlobals(), (s) => process.stdout.write(s))));
}
