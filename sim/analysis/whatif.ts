/*
 * The effect of a change — the analysis behind `ciliate whatif`. Given the current state and the edited
 * one (built with the addresses of the first pinned, so an edit never renumbers the cluster), it lists
 * every (src pod, dst pod, port, protocol) whose reachability changes (pods present in both versions) and
 * every Traffic flow whose verdict or backend changes, each with the explanation before and after; a flow
 * that exists in only one version (its Traffic document or one of its pods added or deleted) is reported as
 * added or removed.
 *
 * Only the pairs that can change are probed. A probe's verdict is decided by the source's egress entries,
 * the destination's ingress entries and the two identities (sim/analysis/reach.ts policyClass); when the
 * change touches only policies, a pair of pods whose classes are both unchanged keeps its verdict, so only
 * pairs with an endpoint whose class changed are run, in both versions. Any other edit (pods, services,
 * nodes, config) changes what a class does not capture, and every pair is compared.
 */
import type { FlowProtocol, FlowSpec, SimPod } from "../../node/cluster.ts";
import { SimError } from "../../node/errors.ts";
import type { ManifestObject } from "../../policy/index.ts";
import type { Loaded } from "../load.ts";
import { objectKey } from "../manifests.ts";
import type { FlowResult, Simulation } from "../simulator.ts";
import { changeProbes, probeSourcePort, type Probe } from "./probes.ts";
import { policyClass } from "./reach.ts";

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

export type FlowState = "allowed" | "denied" | "absent";

export interface FlowChange {
  name: string;
  /** "absent": the flow does not exist in that version (its document or one of its endpoints is gone). */
  before: FlowState;
  after: FlowState;
  backendBefore: string | null;
  backendAfter: string | null;
  reasonBefore: string;
  reasonAfter: string;
}

export interface WhatifResult {
  pairs: PairChange[];
  flows: FlowChange[];
  probes: Probe[];
}

const CLUSTER_SCOPED = new Set(["Namespace", "Node", "CiliumClusterwideNetworkPolicy"]);
const POLICY_KINDS = new Set(["NetworkPolicy", "CiliumNetworkPolicy", "CiliumClusterwideNetworkPolicy"]);

/**
 * Applies `applied` objects (replacing the same kind/namespace/name, or adding) and `deletes` keys
 * (KIND/NAMESPACE/NAME, or KIND/NAME for cluster-scoped kinds) to the current objects. Throws SimError
 * BAD_OPTION on a malformed key and UNKNOWN_OBJECT on a key that names nothing.
 */
export function editObjects(current: ManifestObject[], applied: ManifestObject[], deletes: string[]): ManifestObject[] {
  const keyOf = (o: ManifestObject) => objectKey({ kind: o.kind, metadata: { name: o.metadata.name, namespace: CLUSTER_SCOPED.has(o.kind) ? "" : (o.metadata.namespace ?? "default") } });
  const out = new Map<string, ManifestObject>();
  for (const o of current) out.set(keyOf(o), o);
  for (const d of deletes) {
    const parts = d.split("/");
    let key: string;
    if (parts.length === 3 && parts.every(Boolean)) key = `${parts[0]}/${parts[1]}/${parts[2]}`;
    else if (parts.length === 2 && parts.every(Boolean)) key = `${parts[0]}/${CLUSTER_SCOPED.has(parts[0]!) ? "" : "default"}/${parts[1]}`;
    else throw new SimError("BAD_OPTION", `malformed --delete ${JSON.stringify(d)}`, "write KIND/NAMESPACE/NAME, or KIND/NAME for cluster-scoped kinds");
    if (!out.delete(key)) throw new SimError("UNKNOWN_OBJECT", `--delete ${d}: no such object in the current manifests`);
  }
  for (const o of applied) out.set(keyOf(o), o);
  return [...out.values()];
}

function backendText(r: FlowResult): string | null {
  return r.backend ? `${r.backend.pod ?? r.backend.ip}:${r.backend.port}` : null;
}

/** True when the two versions differ only in policy objects. */
function onlyPoliciesChanged(a: ManifestObject[], b: ManifestObject[]): boolean {
  const rest = (objs: ManifestObject[]) =>
    objs
      .filter((o) => !POLICY_KINDS.has(o.kind))
      .map((o) => JSON.stringify([o.kind, o.metadata.namespace ?? "", o.metadata.name, o.raw ?? null]))
      .sort();
  const x = rest(a);
  const y = rest(b);
  return x.length === y.length && x.every((v, i) => v === y[i]);
}

/** Probe verdicts cached per (source class, destination class, same pod), as reach does. */
function verdicts(sim: Simulation, probe: Probe, sport: number) {
  const cls = new Map<SimPod, string>();
  const seen = new Map<string, boolean>();
  const classOf = (p: SimPod) => {
    let c = cls.get(p);
    if (c === undefined) cls.set(p, (c = policyClass(sim, p)));
    return c;
  };
  return {
    classOf,
    allowed(s: SimPod, d: SimPod): boolean {
      const k = `${classOf(s)}\n${classOf(d)}\n${s === d ? 1 : 0}`;
      let v = seen.get(k);
      if (v === undefined) seen.set(k, (v = sim.probe(s, d, probe.port, probe.protocol, sport).allowed));
      return v;
    },
  };
}

/**
 * Compares two versions. `simulate` starts a simulation of one version (the caller chooses the engine);
 * both are closed before this returns. `full` probes every pair even when only policies changed.
 */
export async function computeWhatif(before: Loaded, after: Loaded, simulate: (l: Loaded) => Promise<Simulation>, probesIn: Probe[] = [], opts: { full?: boolean } = {}): Promise<WhatifResult> {
  const probes = probesIn.length ? probesIn : changeProbes(before, after);
  const simA = await simulate(before);
  let simB: Simulation | undefined;
  try {
    simB = await simulate(after);
    const podB = new Map(after.cluster.pods.map((p) => [p.key, p]));
    const pods = before.cluster.pods.filter((p) => podB.has(p.key)).sort((x, y) => (x.key < y.key ? -1 : 1));
    // `full` compares every pair (the reference the property test checks the narrowing against).
    const narrow = !opts.full && onlyPoliciesChanged(before.objects, after.objects);
    const pairs: PairChange[] = [];
    for (const pr of probes) {
      const sport = probeSourcePort(pr.port);
      const va = verdicts(simA, pr, sport);
      const vb = verdicts(simB, pr, sport);
      const changed = new Set(narrow ? pods.filter((p) => va.classOf(p) !== vb.classOf(podB.get(p.key)!)) : pods);
      if (!changed.size) continue;
      // A fresh source port for the explaining probes, so they start new connections too.
      const explainPort = sport + 2;
      for (const s of pods)
        for (const d of pods) {
          if (!changed.has(s) && !changed.has(d)) continue;
          const s2 = podB.get(s.key)!;
          const d2 = podB.get(d.key)!;
          if (va.allowed(s, d) === vb.allowed(s2, d2)) continue;
          const a = simA.probe(s, d, pr.port, pr.protocol, explainPort);
          const b = simB.probe(s2, d2, pr.port, pr.protocol, explainPort);
          pairs.push({
            from: s.key,
            to: d.key,
            port: pr.port,
            protocol: pr.protocol,
            before: a.allowed ? "allowed" : "denied",
            after: b.allowed ? "allowed" : "denied",
            reasonBefore: simA.probeReason(s, d, a),
            reasonAfter: simB.probeReason(s2, d2, b),
          });
        }
    }
    return { pairs, flows: compareFlows(simA, simB, before.cluster.traffic, after.cluster.traffic), probes };
  } finally {
    simA.close();
    simB?.close();
  }
}

/**
 * Plays every Traffic flow of either version in both, in the order of the union of their names, each from
 * the same source-port cursor and clock: a flow present in only one version does not shift the source
 * ports (and so the hash-chosen backends) of the flows after it.
 */
function compareFlows(simA: Simulation, simB: Simulation, flowsA: FlowSpec[], flowsB: FlowSpec[]): FlowChange[] {
  const a = new Map(flowsA.map((f) => [f.name, f]));
  const b = new Map(flowsB.map((f) => [f.name, f]));
  const names = [...new Set([...a.keys(), ...b.keys()])];
  const out: FlowChange[] = [];
  for (const name of names) {
    const start = simA.cursor;
    simB.cursor = start;
    const ra = play(simA, a.get(name));
    const rb = play(simB, b.get(name));
    const endA = simA.cursor;
    const endB = simB.cursor;
    const end = { port: Math.max(endA.port, endB.port), clockMs: Math.max(endA.clockMs, endB.clockMs) };
    simA.cursor = end;
    simB.cursor = end;
    const state = (r: FlowResult | Error | undefined): FlowState => (r instanceof Error || r === undefined ? "absent" : r.verdict);
    const sa = state(ra);
    const sb = state(rb);
    if (sa === "absent" && sb === "absent") continue;
    const backend = (r: FlowResult | Error | undefined) => (r instanceof Error || r === undefined ? null : backendText(r));
    const reason = (r: FlowResult | Error | undefined) => (r === undefined ? "no such Traffic flow" : r instanceof Error ? r.message : r.reason);
    if (sa === sb && backend(ra) === backend(rb)) continue;
    out.push({ name, before: sa, after: sb, backendBefore: backend(ra), backendAfter: backend(rb), reasonBefore: reason(ra), reasonAfter: reason(rb) });
  }
  return out;
}

/** A flow's result, or the error that makes it unplayable in this version (an endpoint that is gone). */
function play(sim: Simulation, f: FlowSpec | undefined): FlowResult | Error | undefined {
  if (!f) return undefined;
  try {
    return sim.runFlow(f);
  } catch (e) {
    if (e instanceof SimError) return e;
    throw e;
  }
}
