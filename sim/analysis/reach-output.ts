/*
 * The output of `ciliate reach` in every format (table, json, yaml, csv, md, dot), streamed one source pod
 * at a time through `out`, so time and memory grow with the answer and nothing holds the whole matrix. The
 * table shows the whole matrix when it fits the terminal (or with --wide); a wider one is shown by
 * equivalence class — pods with the same identity, policy entries and address family — with a legend.
 * Here rather than in cli/ so that bench/ measures exactly what the command prints.
 */
import { stringify as stringifyYaml } from "yaml";
import type { SimPod } from "../../node/cluster.ts";
import type { DiagnosticsSummary } from "../../policy/index.ts";
import type { Simulation } from "../simulator.ts";
import type { Probe } from "./probes.ts";
import { reachProber, reachRows, type Verdict } from "./reach.ts";
import { labelled, wrap } from "./text-layout.ts";

export interface ReachOutputOptions {
  dedupe: boolean;
  wide: boolean;
  /** Terminal width the table must fit. */
  columns: number;
  diagnostics?: DiagnosticsSummary;
  /** The rows, when another source computes them (a multi-cluster scenario, sim/mesh.ts): the whole
   * matrix is then shown, never by equivalence class. */
  rows?: (pr: Probe) => Iterable<{ from: SimPod; verdicts: Verdict[] }>;
  /** How a pod is named (default: its key). */
  name?: (p: SimPod) => string;
}

const MARK = (v: Verdict) => (v === null ? "-" : v ? "." : "X");
const LEGEND = '. allowed   X denied   - not applicable (no address of that IP family)   (rows: from, columns: to)';

/** Streams one format; `probes` are run in order, each as rows of one source pod. */
export function streamReach(sim: Simulation, pods: SimPod[], probes: Probe[], fmt: string, out: (s: string) => void, opts: ReachOutputOptions): void {
  const nameOf = opts.name ?? ((p: SimPod) => p.key);
  const keys = pods.map(nameOf);
  const rows = function* (pr: Probe): Generator<{ from: SimPod; verdicts: Verdict[] }> {
    for (const r of opts.rows ? opts.rows(pr) : reachRows(sim, pods, pr, { dedupe: opts.dedupe })) yield { ...r, from: { ...r.from, key: nameOf(r.from) } };
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
    for (const pr of probes) for (const { from, verdicts } of rows(pr)) out(verdicts.map((v, i) => (v && keys[i] !== from.key ? `  "${from.key}" -> "${keys[i]}" [label="${pr.port}/${pr.protocol}"];\n` : "")).join(""));
    out("}\n");
    return;
  }
  // table
  for (const pr of probes) {
    const nameWidth = Math.max(...keys.map((k) => k.length)) + String(keys.length).length + 2;
    const cell = String(keys.length).length + 1;
    if (opts.wide || opts.rows || nameWidth + cell * keys.length <= opts.columns) {
      out(`${`${pr.port}/${pr.protocol}`.padEnd(nameWidth)}${keys.map((_, i) => String(i + 1).padStart(cell)).join("")}\n`);
      let i = 0;
      for (const { from, verdicts } of rows(pr)) out(`${`${++i} ${from.key}`.padEnd(nameWidth)}${verdicts.map((v) => MARK(v).padStart(cell)).join("")}\n`);
    } else classTable(sim, pods, pr, out, opts);
  }
  out(`${opts.wide ? LEGEND : wrap(LEGEND, opts.columns)}\n`);
}

/** The matrix of one probe by equivalence class, with a legend naming each class and its pods. */
function classTable(sim: Simulation, pods: SimPod[], pr: Probe, out: (s: string) => void, opts: { dedupe: boolean; columns: number }): void {
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
  // Every line of the class view is wrapped to the terminal (a class's pods and labels may be long).
  const line = (prefix: string, text: string, indent?: number) => out(`${labelled(prefix, text, opts.columns, indent)}\n`);
  line("", `${pr.port}/${pr.protocol}: ${pods.length} pods in ${m.length} classes (same identity, policy entries and address family). The full matrix: -o csv, -o json, or --wide.`);
  const nameWidth = Math.max(...names.map((n) => n.length)) + 2;
  const cell = Math.max(...names.map((n) => n.length)) + 1;
  if (nameWidth + cell * m.length <= opts.columns) {
    out(`${"".padEnd(nameWidth)}${names.map((n) => n.padStart(cell)).join("")}\n`);
    m.forEach((_, a) => out(`${names[a]!.padEnd(nameWidth)}${m.map((_, b) => MARK(classVerdict(a, b)).padStart(cell)).join("")}\n`));
  } else {
    // Too many classes for a grid: one line per class, listing the classes it reaches.
    m.forEach((_, a) => {
      const allowed = names.filter((_, b) => classVerdict(a, b) === true);
      line(`${names[a]} reaches `, allowed.length === m.length ? "every class" : allowed.length ? allowed.join(" ") : "no class", 4);
    });
  }
  out("Classes:\n");
  m.forEach((members, i) => {
    const id = sim.identityOfPod(members[0]!);
    // The pod's own labels: the namespace and Cilium's derived labels are the same for every pod of it.
    const labels = [`namespace ${members[0]!.namespace}`, ...(sim.policy.identities.byId.get(id)?.labels ?? []).filter((l) => l.source === "k8s" && !/^io\.(cilium|kubernetes)\./.test(l.key)).map((l) => `${l.key}=${l.value}`)];
    const shown = members.slice(0, 5).map((p) => p.key);
    const more = members.length > shown.length ? `, … (${members.length} pods)` : "";
    line(`  ${names[i]}  `, `identity ${id}${labels.length ? ` (${labels.join(", ")})` : ""}: ${shown.join(", ")}${more}`, 6);
  });
}

