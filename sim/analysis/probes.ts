/*
 * Probe selection for the analyses (reach, whatif): which port/protocol pairs to try when the user names
 * none — every exact port the compiled policy mentions, and for whatif also every port a pod or service
 * declares in either version — and the source port probe packets use.
 */
import { portless, protoName } from "../../host/protocols.ts";
import type { FlowProtocol } from "../../node/cluster.ts";
import type { CompiledPolicy } from "../../policy/index.ts";
import type { Loaded } from "../load.ts";

export interface Probe {
  port: number;
  protocol: FlowProtocol;
}

/** Source port of every probe packet; never equal to the probed port, so no pair looks like a reply. */
export function probeSourcePort(port: number): number {
  return port === 40999 ? 41000 : 40999;
}

export function sortProbes<T extends { port: number; protocol: string }>(a: T[]): T[] {
  return [...a].sort((x, y) => (x.protocol === y.protocol ? x.port - y.port : x.protocol < y.protocol ? -1 : 1));
}

/** Every exact port/protocol (and ICMP type) the compiled policy mentions, sorted. */
export function policyProbes(p: CompiledPolicy): Probe[] {
  const seen = new Map<string, Probe>();
  // A compile shares one entry list among the endpoints of an identity: each list is read once.
  const lists = new Set<unknown>();
  for (const ep of p.endpoints.values()) {
    if (lists.has(ep.entries)) continue;
    lists.add(ep.entries);
    for (const e of ep.entries) {
      const proto = protoName(e.key.protocol);
      // VRRP and IGMP have no ports: one probe (port 0) for the protocol.
      if (proto && portless(proto)) seen.set(`0/${proto}`, { port: 0, protocol: proto });
      if (!proto || e.key.portPrefix !== 16) continue;
      seen.set(`${e.key.port}/${proto}`, { port: e.key.port, protocol: proto });
    }
  }
  return sortProbes([...seen.values()]);
}

/** The ports pods and services declare, by (pods, services) arrays: whatif's edits of policies alone keep
 * the session's arrays, so these are read once per session. */
const declaredCache = new WeakMap<object, WeakMap<object, Probe[]>>();
function declaredProbes(c: Loaded["cluster"]): Probe[] {
  let bySvc = declaredCache.get(c.pods);
  if (!bySvc) declaredCache.set(c.pods, (bySvc = new WeakMap()));
  let out = bySvc.get(c.services);
  if (!out) {
    const m = new Map<string, Probe>();
    for (const pod of c.pods) for (const x of pod.containerPorts) m.set(`${x.port}/${x.protocol}`, { port: x.port, protocol: x.protocol });
    for (const s of c.services) for (const p of s.ports) if (typeof p.targetPort === "number") m.set(`${p.targetPort}/${p.protocol}`, { port: p.targetPort, protocol: p.protocol });
    bySvc.set(c.services, (out = [...m.values()]));
  }
  return out;
}

/** policyProbes by compiled policy: a whatif session asks for its before state's at every edit. */
const policyProbesCache = new WeakMap<CompiledPolicy, readonly Probe[]>();
function policyProbesOnce(p: CompiledPolicy): readonly Probe[] {
  let out = policyProbesCache.get(p);
  if (!out) policyProbesCache.set(p, (out = policyProbes(p)));
  return out;
}

/** whatif's default probes: the policies' ports and the ports pods and services declare, in either version. */
export function changeProbes(...versions: Loaded[]): Probe[] {
  const m = new Map<string, Probe>();
  const add = (port: number, protocol: FlowProtocol) => m.set(`${port}/${protocol}`, { port, protocol });
  for (const l of versions) {
    for (const p of policyProbesOnce(l.policy)) add(p.port, p.protocol);
    for (const p of declaredProbes(l.cluster)) add(p.port, p.protocol);
  }
  if (!m.size) add(80, "TCP");
  return sortProbes([...m.values()]);
}
