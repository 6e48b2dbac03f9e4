/*
 * `ciliate whatif`: the effect of a change. -f is the current state; --apply FILE (repeatable) replaces
 * objects with the same kind/namespace/name or adds new ones; --delete KIND/NAMESPACE/NAME (KIND/NAME for
 * cluster-scoped kinds) removes one. The comparison is sim/analysis/whatif.ts; this parses and prints.
 */
import Table from "cli-table3";
import { stringify as stringifyYaml } from "yaml";
import { allocationOf } from "../../node/cluster.ts";
import { computeWhatif, editObjects, type FlowChange, type PairChange } from "../../sim/analysis/whatif.ts";
import { loadManifests } from "../../sim/manifests.ts";
import { buildOptions, diagnostics, loadFrom, outputOf, parseProbe, requireFiles, simulation, type GlobalOptions, type Out } from "../common.ts";
import { CliError } from "../errors.ts";
import { labelled, terminalWidth } from "../text-layout.ts";

interface WhatifOptions extends GlobalOptions {
  apply?: string[];
  delete?: string[];
  port?: string[];
  wide?: boolean;
}

/**
 * One record per block, each line wrapped to the terminal's `width` (names and backends broken across
 * lines, never cut): the pair or flow, then the reason before and after, indented.
 */
function blocks(pairs: PairChange[], flows: FlowChange[], width: number): string {
  const out: string[] = [];
  const record = (head: string, before: string, after: string) => out.push(labelled("", head, width, 4), labelled("  before: ", before, width), labelled("  after:  ", after, width));
  for (const p of pairs) record(`${p.from} -> ${p.to} ${p.port}/${p.protocol}: ${p.before} -> ${p.after}`, p.reasonBefore, p.reasonAfter);
  for (const f of flows) {
    const be = f.backendBefore === f.backendAfter ? "" : ` (backend ${f.backendBefore ?? "-"} -> ${f.backendAfter ?? "-"})`;
    record(`flow ${f.name}: ${f.before} -> ${f.after}${be}`, f.reasonBefore, f.reasonAfter);
  }
  return out.length ? `${out.join("\n")}\n` : "";
}

/** One line per record (--wide): columns as wide as their longest cell. */
function wideTables(pairs: PairChange[], flows: FlowChange[]): string {
  const parts: string[] = [];
  if (pairs.length) {
    const t = new Table({ head: ["FROM", "TO", "PORT", "BEFORE", "AFTER", "REASON BEFORE", "REASON AFTER"], style: { head: [], border: [] } });
    for (const p of pairs) t.push([p.from, p.to, `${p.port}/${p.protocol}`, p.before, p.after, p.reasonBefore, p.reasonAfter]);
    parts.push(t.toString());
  }
  if (flows.length) {
    const t = new Table({ head: ["FLOW", "BEFORE", "AFTER", "BACKEND BEFORE", "BACKEND AFTER", "REASON BEFORE", "REASON AFTER"], style: { head: [], border: [] } });
    for (const f of flows) t.push([f.name, f.before, f.after, f.backendBefore ?? "-", f.backendAfter ?? "-", f.reasonBefore, f.reasonAfter]);
    parts.push(t.toString());
  }
  return parts.length ? `${parts.join("\n")}\n` : "";
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
  const after = loadFrom(edited, { ...opts, pinned: allocationOf(before.cluster) }, diag);
  const { pairs, flows } = await computeWhatif(before, after, (l) => simulation(l, g), probesIn);
  if (fmt === "json") out(`${JSON.stringify({ pairs, flows, diagnostics: diag.summary() }, null, 2)}\n`);
  else if (fmt === "yaml") out(stringifyYaml({ pairs, flows, diagnostics: diag.summary() }));
  else {
    if (!pairs.length && !flows.length) out("no reachability or Traffic flow changes\n");
    out(g.wide ? wideTables(pairs, flows) : blocks(pairs, flows, terminalWidth()));
    out(`${pairs.length} pair(s) and ${flows.length} flow(s) change\n`);
  }
  return 0;
}
