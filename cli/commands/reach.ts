/*
 * `ciliate reach`: parses the options, runs the all-pairs analysis (sim/analysis/reach.ts) and prints the
 * matrices in the chosen format. Every format streams, one source pod at a time, so time and memory grow
 * with the answer. The table shows the whole matrix when it fits the terminal (or with --wide); a wider
 * one is shown by equivalence class — pods with the same identity, policy entries and address family —
 * with a legend, and the full matrix is one `-o csv` or `-o json` away.
 */
import type { Command } from "commander";
import { stringify as stringifyYaml } from "yaml";
import type { SimPod } from "../../node/cluster.ts";
import { policyProbes, sortProbes, type Probe } from "../../sim/analysis/probes.ts";
import { reachProber, type Verdict } from "../../sim/analysis/reach.ts";
import type { Simulation } from "../../sim/simulator.ts";
import type { DiagnosticsSummary } from "../../policy/index.ts";
import { collect, diagnosticsJson, load, outputOf, parseProbe, simulation, type GlobalOptions, type Out } from "../common.ts";
import { CliError } from "../errors.ts";

interface ReachOptions extends GlobalOptions {
  port?: string[];
  namespace?: string[];
  dedupe?: boolean;
  wide?: boolean;
}

const MARK = (v: Verdict) => (v === null ? "-" : v ? "." : "X");
const LEGEND = '. allowed   X denied   - not applicable (no address of that IP family)   (rows: from, columns: to)';

/** Streams one format; `probes` are run in order, each as rows of one source pod. */
function streamReach(sim: Simulation, pods: SimPod[], probes: Probe[], fmt: string, out: Out, opts: { dedupe: boolean; wide: boolean; columns: number; diagnostics?: DiagnosticsSummary }): void {
  const keys = pods.map((p) => p.key);
  const rows = function* (pr: Probe) {
    const { verdict } = reachProber(sim, pods, pr, { dedupe: opts.dedupe });
    for (const s of pods) yield { from: s, verdicts: pods.map((d) => verdict(s, d)) };
  };
  if (fmt === "json") {
    out('{"probes":[');
    probes.forEach((pr, pi) => {
      out(`${pi ? "," : ""}\n{"port":${pr.port},"protocol":${JSON.stringify(pr.protocol)},"matrix":{`);
      let first = true;
      for (const { from, verdicts } of rows(pr)) {
        out(`${first ? "" : ","}\n${JSON.stringify(from.key)}:{${verdicts.map((v, i) => `${JSON.stringify(keys[i])}:${v}`).join(",")}}`);
        first = false;
      }
      out("}}");
    });
    out(`\n]${opts.diagnostics ? `,\n"diagnostics":${JSON.stringify(opts.diagnostics)}` : ""}}\n`);
    return;
  }
  if (fmt === "yaml") {
    out("probes:\n");
    for (const pr of probes) {
      out(`  - port: ${pr.port}\n    protocol: ${pr.protocol}\n    matrix:\n`);
      for (const { from, verdicts } of rows(pr)) out(`      ${JSON.stringify(from.key)}:\n${verdicts.map((v, i) => `        ${JSON.stringify(keys[i])}: ${v}\n`).join("")}`);
    }
    if (opts.diagnostics) out(stringifyYaml({ diagnostics: opts.diagnostics }));
    return;
  }
  if (fmt === "csv") {
    out("port,protocol,from,to,allowed\n");
    for (const pr of probes) for (const { from, verdicts } of rows(pr)) out(verdicts.map((v, i) => `${pr.port},${pr.protocol},${from.key},${keys[i]},${v === null ? "n/a" : v}\n`).join(""));
    return;
  }
  if (fmt === "md") {
    for (const pr of probes) {
      out(`### ${pr.port}/${pr.protocol}\n\n| from \\ to | ${keys.join(" | ")} |\n|---|${keys.map(() => ":-:").join("|")}|\n`);
      for (const { from, verdicts } of rows(pr)) out(`| ${from.key} | ${verdicts.map((v) => (v === null ? "–" : v ? "✓" : "✗")).join(" | ")} |\n`);
      out("\n");
    }
    return;
  }
  if (fmt === "dot") {
    out(`digraph reach {\n  rankdir=LR;\n  node [shape=box];\n${keys.map((k) => `  "${k}";\n`).join("")}`);
    for (const pr of probes) for (const { from, verdicts } of rows(pr)) out(verdicts.map((v, i) => (v && pods[i] !== from ? `  "${from.key}" -> "${keys[i]}" [label="${pr.port}/${pr.protocol}"];\n` : "")).join(""));
    out("}\n");
    return;
  }
  // table
  for (const pr of probes) {
    const nameWidth = Math.max(...keys.map((k) => k.length)) + String(keys.length).length + 2;
    const cell = String(keys.length).length + 1;
    if (opts.wide || nameWidth + cell * keys.length <= opts.columns) {
      out(`${`${pr.port}/${pr.protocol}`.padEnd(nameWidth)}${keys.map((_, i) => String(i + 1).padStart(cell)).join("")}\n`);
      let i = 0;
      for (const { from, verdicts } of rows(pr)) out(`${`${++i} ${from.key}`.padEnd(nameWidth)}${verdicts.map((v) => MARK(v).padStart(cell)).join("")}\n`);
    } else classTable(sim, pods, pr, out, opts);
  }
  out(`${LEGEND}\n`);
}

/** The matrix of one probe by equivalence class, with a legend naming each class and its pods. */
function classTable(sim: Simulation, pods: SimPod[], pr: Probe, out: Out, opts: { dedupe: boolean; columns: number }): void {
  const { classes, verdict } = reachProber(sim, pods, pr, { dedupe: opts.dedupe });
  const m = classes.members;
  const names = m.map((_, i) => `C${i + 1}`);
  // A class's verdict towards another is that of two distinct members (a pod and itself only for a
  // class of one pod): the members are indistinguishable to the datapath.
  const classVerdict = (a: number, b: number): Verdict => {
    const s = m[a]![0]!;
    const d = a === b && m[b]!.length > 1 ? m[b]![1]! : m[b]![0]!;
    return verdict(s, d);
  };
  out(`${pr.port}/${pr.protocol}: ${pods.length} pods in ${m.length} classes (same identity, policy entries and address family). The full matrix: -o csv, -o json, or --wide.\n`);
  const nameWidth = Math.max(...names.map((n) => n.length)) + 2;
  const cell = Math.max(...names.map((n) => n.length)) + 1;
  if (nameWidth + cell * m.length <= opts.columns) {
    out(`${"".padEnd(nameWidth)}${names.map((n) => n.padStart(cell)).join("")}\n`);
    m.forEach((_, a) => out(`${names[a]!.padEnd(nameWidth)}${m.map((_, b) => MARK(classVerdict(a, b)).padStart(cell)).join("")}\n`));
  } else {
    // Too many classes for a grid: one line per class, listing the classes it reaches.
    m.forEach((_, a) => {
      const allowed = names.filter((_, b) => classVerdict(a, b) === true);
      out(`${names[a]} reaches ${allowed.length === m.length ? "every class" : allowed.length ? allowed.join(" ") : "no class"}\n`);
    });
  }
  out("Classes:\n");
  m.forEach((members, i) => {
    const id = sim.identityOfPod(members[0]!);
    // The pod's own labels: the namespace and Cilium's derived labels are the same for every pod of it.
    const labels = [`namespace ${members[0]!.namespace}`, ...(sim.policy.identities.byId.get(id)?.labels ?? []).filter((l) => l.source === "k8s" && !/^io\.(cilium|kubernetes)\./.test(l.key)).map((l) => `${l.key}=${l.value}`)];
    const shown = members.slice(0, 5).map((p) => p.key);
    const more = members.length > shown.length ? `, … (${members.length} pods)` : "";
    out(`  ${names[i]}  identity ${id}${labels.length ? ` (${labels.join(", ")})` : ""}: ${shown.join(", ")}${more}\n`);
  });
}

export async function runReach(g: ReachOptions, out: Out): Promise<number> {
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
    const columns = process.stdout.columns || Number(process.env.COLUMNS) || 120;
    streamReach(sim, pods, probes, fmt, out, { dedupe: g.dedupe !== false, wide: !!g.wide, columns, diagnostics: diagnosticsJson(g) });
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
    .option("--wide", "the table shows every pod, however wide (default: by equivalence class when wider than the terminal)")
    .option("--no-dedupe", "run every pair through the datapath (default: once per pair of policy classes — same identity and same policy entries)")
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
    .action(async (_o, cmd: Command) => run(() => runReach(cmd.optsWithGlobals(), (s) => process.stdout.write(s))));
}
