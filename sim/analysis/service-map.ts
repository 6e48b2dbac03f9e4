/*
 * The service map of a simulation (`ciliate ui -f`): every Traffic flow played through the per-node
 * datapaths, its events added to host/service-map.ts's ServiceMap in the shape an Observer API sends
 * (flow.proto's Flow, ciliate's rule references under `ciliate`), with the simulator's explanation of the
 * flow's verdict, so a connection on the page shows the rule that decided it.
 */
import { ciliateExtras, hubbleFlow } from "../../host/flows.ts";
import { ServiceMap } from "../../host/service-map.ts";
import type { FlowSpec } from "../../node/cluster.ts";
import type { Simulation } from "../simulator.ts";

/** Plays `flows` (every reference is resolved first, so a bad one fails before anything is added). */
export function addSimulatedFlows(map: ServiceMap, sim: Simulation, flows: readonly FlowSpec[]): void {
  for (const f of flows) sim.resolveFlow(f);
  for (const f of flows) {
    const r = sim.runFlow(f);
    const explanation = `${r.verdict.toUpperCase()} — ${r.reason}`;
    for (const e of r.events) {
      const extras = ciliateExtras(e);
      map.add({ flow: hubbleFlow(e), node_name: e.node_name, time: e.time, ...(extras ? { ciliate: extras } : {}) }, explanation);
    }
  }
}
