/*
 * All-pairs reachability between pods, per probe (port/protocol) — the analysis behind `ciliate reach`. For each probe and
 * each (src, dst) pod pair, a new-connection packet (TCP SYN, a UDP/SCTP datagram, an ICMP echo) runs
 * through src's fromEndpoint and, when it passes, dst's toEndpoint on their nodes' datapaths. A pair is
 * allowed when both pass; an L7 redirect counts as allowed at L3/L4 (the request itself is judged by
 * `trace`/`simulate` with an HTTP request). Conntrack state never leaks between pairs: every pair has its
 * own address pair, and a probe's tuple is never the reverse of another pair's. A probe of one IP family
 * (ICMP is IPv4's, ICMPv6 IPv6's) between pods of which one has no address of that family is not
 * applicable (null), never allowed or denied.
 *
 * Answers stream: rows are produced one source pod at a time, and pods fall into equivalence classes
 * (identity, policy entries, address family) that are probed through the datapath once per pair of
 * classes, so time and memory grow with the answer, not with pairs × string keys.
 */
import { isIpv6 } from "../../host/ip.ts";
import type { FlowProtocol, SimPod } from "../../node/cluster.ts";
import type { Simulation } from "../simulator.ts";
import { probeSourcePort, type Probe } from "./probes.ts";

export type Verdict = boolean | null;

export interface ProbeMatrix {
  port: number;
  protocol: FlowProtocol;
  /** from → to → allowed (true), denied (false) or not applicable (null). */
  matrix: Record<string, Record<string, Verdict>>;
}

/** False when the probe's protocol belongs to an IP family the pod has no address of. */
export function applicable(p: SimPod, protocol: FlowProtocol): boolean {
  if (protocol === "ICMP" || protocol === "IGMP") return !isIpv6(p.ip);
  if (protocol === "ICMPv6") return isIpv6(p.ip);
  return true;
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

/** The equivalence classes of a probe: pods grouped by (policy class, address family), in first-seen order. */
export interface ReachClasses {
  /** Class index of each pod (same order as the pods given). */
  of: Map<SimPod, number>;
  /** Members of each class. */
  members: SimPod[][];
}

export function reachClasses(sim: Simulation, pods: SimPod[]): ReachClasses {
  const index = new Map<string, number>();
  const of = new Map<SimPod, number>();
  const members: SimPod[][] = [];
  for (const p of pods) {
    const k = `${isIpv6(p.ip) ? 6 : 4}|${policyClass(sim, p)}`;
    let i = index.get(k);
    if (i === undefined) {
      index.set(k, (i = members.length));
      members.push([]);
    }
    members[i]!.push(p);
    of.set(p, i);
  }
  return { of, members };
}

/**
 * Verdicts of one probe with the datapath run once per (source class, destination class, same pod).
 * `dedupe: false` runs every pair through the datapath (a check of the deduplication).
 */
export function reachProber(sim: Simulation, pods: SimPod[], probe: Probe, opts: { dedupe?: boolean } = {}) {
  const sport = probeSourcePort(probe.port);
  const dedupe = opts.dedupe ?? true;
  const classes = reachClasses(sim, pods);
  const n = classes.members.length;
  // Per class pair: 0 unknown, 1 allowed, 2 denied; self pairs (s === d) apart.
  const seen = new Uint8Array(n * n * 2);
  const verdict = (s: SimPod, d: SimPod): Verdict => {
    if (!applicable(s, probe.protocol) || !applicable(d, probe.protocol)) return null;
    if (!dedupe) return sim.probe(s, d, probe.port, probe.protocol, sport).allowed;
    const k = (classes.of.get(s)! * n + classes.of.get(d)!) * 2 + (s === d ? 1 : 0);
    if (seen[k] === 0) seen[k] = sim.probe(s, d, probe.port, probe.protocol, sport).allowed ? 1 : 2;
    return seen[k] === 1;
  };
  return { classes, verdict };
}

/** The rows of one probe's matrix, one source pod at a time (verdicts in the order of `pods`). */
export function* reachRows(sim: Simulation, pods: SimPod[], probe: Probe, opts: { dedupe?: boolean } = {}): Generator<{ from: SimPod; verdicts: Verdict[] }> {
  const { verdict } = reachProber(sim, pods, probe, opts);
  for (const s of pods) yield { from: s, verdicts: pods.map((d) => verdict(s, d)) };
}

/** The whole matrix of one probe as an object (small clusters and tests; the CLI streams reachRows). */
export function reachMatrix(sim: Simulation, pods: SimPod[], probe: Probe, opts: { dedupe?: boolean } = {}): ProbeMatrix {
  const matrix: Record<string, Record<string, Verdict>> = {};
  for (const { from, verdicts } of reachRows(sim, pods, probe, opts)) {
    const row: Record<string, Verdict> = {};
    pods.forEach((d, i) => (row[d.key] = verdicts[i]!));
    matrix[from.key] = row;
  }
  return { port: probe.port, protocol: probe.protocol, matrix };
}
