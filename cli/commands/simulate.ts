/*
 * `ciliate simulate`: play every flow of the Traffic documents through the per-node datapaths and print
 * the flow events as `hubble observe` does (compact lines, -o table, the default) or as JSON lines with
 * Hubble's field names (-o json). Exit 0 (the verdicts are the output, not a check).
 */
import { compactLine, jsonLine } from "../../host/flows.ts";
import { diagnosticsJson, flowSimulation, load, outputOf, type GlobalOptions, type Out } from "../common.ts";
import { CliError } from "../errors.ts";

export async function runSimulate(g: GlobalOptions & { flow?: string[] }, out: Out, err: Out): Promise<number> {
  const fmt = outputOf(g, ["table", "compact", "json"]);
  const l = load(g);
  for (const name of g.flow ?? [])
    if (!l.cluster.traffic.some((f) => f.name === name))
      throw new CliError(`--flow ${name}: no Traffic flow has this name`, "UNKNOWN_FLOW", `flows: ${l.cluster.traffic.map((f) => f.name).join(", ") || "none"}`);
  const flows = g.flow?.length ? l.cluster.traffic.filter((f) => g.flow!.includes(f.name)) : l.cluster.traffic;
  // (Not when something was refused: the refused Traffic may be the reason, and its line says so.)
  if (!l.cluster.traffic.length && !diagnosticsJson(g).errors) err("ciliate: no Traffic in the manifests: nothing to simulate (see docs/scenarios.md)\n");
  const sim = await flowSimulation(l, g);
  try {
    for (const f of flows) sim.resolveFlow(f); // every reference is checked before anything is printed
    for (const f of flows) {
      const r = sim.runFlow(f);
      for (const e of r.events) out(`${fmt === "json" ? jsonLine(e) : compactLine(e)}\n`);
      if (fmt !== "json") out(`# ${f.name}: ${r.verdict.toUpperCase()} — ${r.reason}\n`);
    }
    // JSON lines: when the input had problems, one last line says what, so a consumer can count them.
    const d = diagnosticsJson(g);
    if (fmt === "json" && (d.errors || d.warnings)) out(`${JSON.stringify({ diagnostics: d })}\n`);
  } finally {
    sim.close();
  }
  return 0;
}
