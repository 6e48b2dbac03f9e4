/*
 * All-pairs reachability between pods, per probe (port/protocol) — the analysis behind `ciliate reach`. For each probe and
 * each (src, dst) pod pair, a new-connection packet (TCP SYN, a UDP/SCTP datagram, an ICMP echo) runs
 * through src's fromEndpoint and, when it passes, dst's toEndpoint on their nodes' datapaths. A pair is
 * allowed when both pass; an L7 redirect counts as allowed at L3/L4 (the request itself is judged by
 * `trace`/`simulate` with an HTTP request). Conntrack state never leaks between pairs: every pair has its
 * own address pair, and a probe's tuple is never the reverse of another pair's.
 */
import type { FlowProtocol, SimPod } from "../../node/cluster.ts";
import type { Simulation } from "../simulator.ts";
import { probeSourcePort } from "./probes.ts";

export interface ProbeMatrix {
  port: number;
  protocol: FlowProtocol;
  matrix: Record<string, Record<string, boolean>>;
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
