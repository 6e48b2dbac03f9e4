/*
 * `ciliate whatif`: the effect of a change. -f is the current state; --apply FILE (repeatable) replaces
 * objects with the same kind/namespace/name or adds new ones; --delete KIND/NAMESPACE/NAME (KIND/NAME for
 * cluster-scoped kinds) removes one. Both versions are simulated — the second with the addresses of the
 * first pinned, so an edit never renumbers the cluster — and the command lists every (src pod, dst pod,
 * port, protocol) whose reachability changes (pods present in both versions) and every Traffic flow whose
 * verdict or backend changes, each with the explanation before and after.
 */
import type { Command } from "commander";
import Table from "cli-table3";
import { stringify as stringifyYaml } from "yaml";
import type { ManifestObject } from "../../policy/types.ts";
import { allocationOf, buildCluster, type FlowProtocol, type FlowSpec } from "../../sim/cluster.ts";
import { loadManifests, objectKey } from "../../sim/manifests.ts";
import { compileClusterPolicy } from "../../sim/policy.ts";
import type { FlowResult, Simulation } from "../../sim/simulator.ts";
import { buildOptions, collect, diagnostics, loadFrom, outputOf, parseProbe, policyProbes, requireFiles, simulation, sortProbes, type GlobalOptions, type Loaded, type Out } from "../common.ts";
import { CliError } from "../errors.ts";
import { probeSourcePort, reachMatrix } from "./reach.ts";

interface WhatifOptions extends GlobalOptions {
  apply?: string[];
  delete?: string[];
  port?: string[];
}

export interface PairChange {
  from: string;
  to: string;
  port: number;
  protocol: FlowProtocol;
  before: "allowed" | "denied";
  after: "allowed" | "denied";
  reasonBefore: string;
  reasonAfter: string;
}

export interface FlowChange {
  name: string;
  before: "allowed" | "denied";
  after: "allowed" | "denied";
  backendBefore: string | null;
  backendAfter: string | null;
  reasonBefore: string;
  reasonAfter: string;
}

const CLUSTER_SCOPED = new Set(["Namespace", "Node", "CiliumClusterwideNetworkPolicy"]);

/** Applies --apply objects and --delete keys to the current objects. */
export function editObjects(current: ManifestObject[], applied: ManifestObject[], deletes: string[]): ManifestObject[] {
  const keyOf = (o: ManifestObject) => objectKey({ kind: o.kind, metadata: { name: o.metadata.name, namespace: CLUSTER_SCOPED.has(o.kind) ? "" : (o.metadata.namespace ?? "default") } });
  const out = new Map<string, ManifestObject>();
  for (const o of current) out.set(keyOf(o), o);
  for (const d of deletes) {
    const parts = d.split("/");
    let key: string;
    if (parts.length === 3 && parts.every(Boolean)) key = `${parts[0]}/${parts[1]}/${parts[2]}`;
    else if (parts.length === 2 && parts.every(Boolean)) key = `${parts[0]}/${CLUSTER_SCOPED.has(parts[0]!) ? "" : "default"}/${parts[1]}`;
    else throw new CliError(`malformed --delete ${JSON.stringify(d)}`, "BAD_OPTION", "write KIND/NAMESPACE/NAME, or KIND/NAME for cluster-scoped kinds");
    if (!out.delete(key)) throw new CliError(`--delete ${d}: no such object in the current manifests`, "UNKNOWN_OBJECT");
  }
  for (const o of applied) out.set(keyOf(o), o);
  return [...out.values()];
}

function backendText(r: FlowResult): string | null {
  return r.backend ? `${r.backend.pod ?? r.backend.ip}:${r.backend.port}` : null;
}

function defaultProbes(a: Loaded, b: Loaded): { port: number; protocol: FlowProtocol }[] {
  const m = new Map<string, { port: number; protocol: FlowProtocol }>();
  const add = (port: number, protocol: FlowProtocol) => m.set(`${port}/${protocol}`, { port, protocol });
  for (const l of [a, b]) {
    for (const p of policyProbes(l.policy)) add(p.port, p.protocol);
    for (const pod of l.cluster.pods) for (const c of pod.containerPorts) add(c.port, c.protocol);
    for (const s of l.cluster.services) for (const p of s.ports) if (typeof p.targetPort === "number") add(p.targetPort, p.protocol);
  }
  if (!m.size) add(80, "TCP");
  return sortProbes([...m.values()]);
}

export async function computeWhatif(before: Loaded, after: Loaded, g: GlobalOptions, probesIn: { port: number; protocol: FlowProtocol }[]) {
  const probes = probesIn.length ? probesIn : defaultProbes(before, after);
  const simA = await simulation(before, g);
  const simB = await simulation(after, g);
  try {
    const keysB = new Set(after.cluster.pods.map((p) => p.key));
    const pods = before.cluster.pods.filter((p) => keysB.has(p.key)).sort((x, y) => (x.key < y.key ? -1 : 1));
    const podB = new Map(after.cluster.pods.map((p) => [p.key, p]));
    const pairs: PairChange[] = [];
    const podsB = pods.map((p) => podB.get(p.key)!);
    for (const pr of probes) {
      const ma = reachMatrix(simA, pods, pr).matrix;
      const mb = reachMatrix(simB, podsB, pr).matrix;
      // A fresh source port for the explaining probes, so they start new connections too.
      const sport = probeSourcePort(pr.port) + 2;
      for (const s of pods)
        for (const d of pods) {
          if (ma[s.key]![d.key] === mb[s.key]![d.key]) continue;
          const a = simA.probe(s, d, pr.port, pr.protocol, sport);
          const b = simB.probe(podB.get(s.key)!, podB.get(d.key)!, pr.port, pr.protocol, sport);
          pairs.push({
            from: s.key,
            to: d.key,
            port: pr.port,
            protocol: pr.protocol,
            before: a.allowed ? "allowed" : "denied",
            after: b.allowed ? "allowed" : "denied",
            reasonBefore: simA.probeReason(s, d, a),
            reasonAfter: simB.probeReason(podB.get(s.key)!, podB.get(d.key)!, b),
          });
        }
    }
    const flows: FlowChange[] = [];
    const flowsA = new Map(before.cluster.traffic.map((f) => [f.name, f]));
    for (const fb of after.cluster.traffic) {
      const fa = flowsA.get(fb.name);
      if (!fa) continue;
      const ra = tryFlow(simA, fa);
      const rb = tryFlow(simB, fb);
      if (!ra || !rb) continue;
      if (ra.verdict !== rb.verdict || backendText(ra) !== backendText(rb))
        flows.push({ name: fb.name, before: ra.verdict, after: rb.verdict, backendBefore: backendText(ra), backendAfter: backendText(rb), reasonBefore: ra.reason, reasonAfter: rb.reason });
    }
    return { pairs, flows, probes };
  } finally {
    simA.close();
    simB.close();
  }
}

function tryFlow(sim: Simulation, f: FlowSpec): FlowResult | undefined {
  try {
    return sim.runFlow(f);
  } catch {
    return undefined; // a flow whose endpoints no longer exist in one version is not comparable
  }
}

export async function runWhatif(g: WhatifOptions, out: Out): Promise<number> {
  const fmt = outputOf(g, ["table", "json", "yaml"]);
  const probesIn = (g.port ?? []).map(parseProbe);
  if (!g.apply?.length && !g.delete?.length) throw new CliError("nothing to compare", "NO_CHANGE", "pass --apply FILE and/or --delete KIND/NAMESPACE/NAME");
  const opts = buildOptions(g);
  const diag = diagnostics(g);
  const current = loadManifests(requireFiles(g), diag);
  const applied = g.apply?.length ? loadManifests(g.apply, diag) : [];
  const edited = editObjects(current, applied, g.delete ?? []);
  const before = loadFrom(current, opts, diag);
  const afterCluster = buildCluster(edited, { ...opts, pinned: allocationOf(before.cluster) });
  const after: Loaded = { objects: edited, cluster: afterCluster, policy: compileClusterPolicy(afterCluster, diag) };
  const { pairs, flows } = await computeWhatif(before, after, g, probesIn);
  if (fmt === "json") out(`${JSON.stringify({ pairs, flows, diagnostics: diag.summary() }, null, 2)}\n`);
  else if (fmt === "yaml") out(stringifyYaml({ pairs, flows, diagnostics: diag.summary() }));
  else {
    if (!pairs.length && !flows.length) out("no reachability or Traffic flow changes\n");
    if (pairs.length) {
      const t = new Table({ head: ["FROM", "TO", "PORT", "BEFORE", "AFTER", "REASON BEFORE", "REASON AFTER"], wordWrap: true, colWidths: [22, 22, 10, 9, 9, 45, 45], style: { head: [], border: [] } });
      for (const p of pairs) t.push([p.from, p.to, `${p.port}/${p.protocol}`, p.before, p.after, p.reasonBefore, p.reasonAfter]);
      out(`${t.toString()}\n`);
    }
    if (flows.length) {
      const t = new Table({ head: ["FLOW", "BEFORE", "AFTER", "BACKEND BEFORE", "BACKEND AFTER", "REASON BEFORE", "REASON AFTER"], wordWrap: true, colWidths: [24, 9, 9, 20, 20, 40, 40], style: { head: [], border: [] } });
      for (const f of flows) t.push([f.name, f.before, f.after, f.backendBefore ?? "-", f.backendAfter ?? "-", f.reasonBefore, f.reasonAfter]);
      out(`${t.toString()}\n`);
    }
    out(`${pairs.length} pair(s) and ${flows.length} flow(s) change\n`);
  }
  return 0;
}

export function registerWhatif(program: Command, run: (fn: () => Promise<number>) => Promise<void>): void {
  program
    .command("whatif")
    .description("what changes if manifests are applied or deleted: pod pairs and Traffic flows whose verdict or backend changes")
    .option("--apply <file>", "objects that replace (same kind/namespace/name) or add to the current ones (repeatable)", collect)
    .option("--delete <kind/ns/name>", "remove an object, e.g. CiliumNetworkPolicy/default/rule1 (repeatable)", collect)
    .option("--port <port/proto>", "probe, e.g. 80/TCP (repeatable; default: every port either version's policies mention or a pod/service declares)", collect)
    .addHelpText(
      "after",
      `
Examples:
  ciliate whatif -f scenarios/starwars --apply scenarios/extras/starwars-l3-l4-policy.yaml
  ciliate whatif -f scenarios/starwars --delete CiliumNetworkPolicy/default/rule1 -o json
  ciliate whatif -f scenarios/k8s-netpol --apply new-policy.yaml --port 80/TCP

-o json: {"pairs":[{"from","to","port","protocol","before","after","reasonBefore","reasonAfter"}],
          "flows":[{"name","before","after","backendBefore","backendAfter","reasonBefore","reasonAfter"}]}
Exit codes: 0 compared, 2 bad input.`,
    )
    .action(async (_o, cmd: Command) => run(() => runWhatif(cmd.optsWithGlobals(), (s) => process.stdout.write(s))));
}
