/*
 * A small node for the conformance suite: one Datapath (any engine) with the configuration, two local pods,
 * a remote pod range and the world, written through the typed map handles exactly as an agent would.
 * Everything the suite asserts goes through the Datapath interface, so the same cases run on every engine.
 */
import { MAP_SPECS, type PolicyEntry } from "../../host/codecs.gen.ts";
import type { Datapath, EntryPoint, RunResult } from "../../host/datapath.ts";
import * as C from "../../host/constants.gen.ts";
import { addrBytes16 } from "../../host/ip.ts";
import { buildFrame, decodeFrame, type FrameSpec } from "../../sim/packets.ts";
import { ipcacheKey } from "../../host/ipcache.ts";

export const POD_A = { ip: "10.244.0.10", epId: 1, identity: 1000 };
export const POD_B = { ip: "10.244.0.20", epId: 2, identity: 2000 };
export const REMOTE_POD = { ip: "10.244.1.5", identity: 3000 };
export const WORLD_IP = "203.0.113.7";
export const VIP = "10.96.0.10";

export const TIMEOUTS = { syn: 60, tcp: 8000, close: 10, any: 60, svcTcp: 8000, svcAny: 60 };


export { ipcacheKey };

export function configure(dp: Datapath, flags = C.CONFIG_F_ENABLE_ICMP_RULE | C.CONFIG_F_ALLOW_ICMP_FRAG_NEEDED): void {
  dp.map(MAP_SPECS.Config).update(0, {
    ctSynTimeout: TIMEOUTS.syn,
    ctTcpLifetime: TIMEOUTS.tcp,
    ctCloseTimeout: TIMEOUTS.close,
    ctAnyLifetime: TIMEOUTS.any,
    ctServiceTcpLifetime: TIMEOUTS.svcTcp,
    ctServiceAnyLifetime: TIMEOUTS.svcAny,
    hashSeed: 0x5eed,
    maglevTableSize: 251,
    flags,
    hostIdentity: C.ID_HOST,
    worldIpv4Identity: C.ID_WORLD,
    worldIpv6Identity: C.ID_WORLD,
    serviceLoopbackIpv4: 0xa9fe2a01,
    nodePortMin: 30000,
    nodePortMax: 32767,
  });
}

export function addEndpoint(dp: Datapath, pod: { ip: string; epId: number; identity: number }): void {
  const v6 = pod.ip.includes(":");
  dp.map(MAP_SPECS.Endpoints).update(
    { addr: addrBytes16(pod.ip), family: v6 ? C.FAMILY_IPV6 : C.FAMILY_IPV4 },
    { epId: pod.epId, secIdentity: pod.identity, ifindex: 100 + pod.epId },
  );
  dp.map(MAP_SPECS.Ipcache).update(ipcacheKey(pod.ip), { secIdentity: pod.identity });
}

/** The standard node: pods A and B local, a remote pod /24, and 0.0.0.0/0 as world. */
export function standardNode(dp: Datapath): void {
  configure(dp);
  addEndpoint(dp, POD_A);
  addEndpoint(dp, POD_B);
  dp.map(MAP_SPECS.Ipcache).update(ipcacheKey("10.244.1.0/24"), { secIdentity: REMOTE_POD.identity });
  dp.map(MAP_SPECS.Ipcache).update(ipcacheKey("0.0.0.0/0"), { secIdentity: C.ID_WORLD });
}

export interface PolicyRule {
  epId: number;
  egress: boolean;
  identity: number;
  /** undefined = any protocol. */
  proto?: number;
  /** Port (or ICMP type) and how many leading bits of it matter (16 = exact, default). */
  port?: number;
  portBits?: number;
  deny?: boolean;
  proxyPort?: number;
  proxyPriority?: number;
  cookie?: number;
}

/** Writes one policy-map entry with the LPM prefix arithmetic of Cilium's bpf/lib/policy.h. */
export function addPolicy(dp: Datapath, r: PolicyRule): void {
  const protoBits = r.proto === undefined ? 0 : 8;
  const portBits = r.proto === undefined ? 0 : r.port === undefined ? 0 : (r.portBits ?? 16);
  const value: Partial<PolicyEntry> = {
    proxyPort: r.proxyPort ?? 0,
    flags: r.deny ? C.POLICY_F_DENY : 0,
    lpmPrefixLength: protoBits + portBits,
    proxyPortPriority: r.proxyPriority ?? 0,
    cookie: r.cookie ?? 0,
  };
  const mask = portBits === 0 ? 0 : (0xffff << (16 - portBits)) & 0xffff;
  dp.map(MAP_SPECS.Policy).update(
    {
      prefixlen: C.POLICY_STATIC_PREFIX + protoBits + portBits,
      secLabel: r.identity,
      epId: r.epId,
      egress: r.egress ? 1 : 0,
      protocol: r.proto ?? 0,
      dport: (r.port ?? 0) & mask,
    },
    value,
  );
}

/** A TCP service: master entry, backend slots (active first), backends and its reverse-NAT entry. */
export interface Svc {
  vip: string;
  port: number;
  revNat: number;
  backends: { id: number; ip: string; port: number; state?: number }[];
  affinityTimeout?: number;
  maglev?: boolean;
  /** IPPROTO_TCP unless given. */
  proto?: number;
}

export function addService(dp: Datapath, s: Svc): void {
  const active = s.backends.filter((b) => (b.state ?? 0) === C.BE_STATE_ACTIVE);
  const inactive = s.backends.filter((b) => (b.state ?? 0) !== C.BE_STATE_ACTIVE);
  const proto = s.proto ?? C.IPPROTO_TCP;
  const key = { addr: addrBytes16(s.vip), dport: s.port, proto, scope: 0, family: C.FAMILY_IPV4 };
  const alg = s.maglev ? C.LB_ALG_MAGLEV : C.LB_ALG_RANDOM;
  dp.map(MAP_SPECS.Services).update(
    { ...key, backendSlot: 0 },
    {
      backendId: ((alg << 24) | (s.affinityTimeout ?? 0)) >>> 0,
      count: active.length,
      qcount: inactive.length,
      revNatIndex: s.revNat,
      flags: s.affinityTimeout ? C.SVC_F_AFFINITY : 0,
    },
  );
  [...active, ...inactive].forEach((b, i) => {
    dp.map(MAP_SPECS.Services).update({ ...key, backendSlot: i + 1 }, { backendId: b.id, revNatIndex: s.revNat });
    dp.map(MAP_SPECS.Backends).update({ backendId: b.id }, { addr: addrBytes16(b.ip), port: b.port, proto, state: b.state ?? 0, family: C.FAMILY_IPV4 });
  });
  dp.map(MAP_SPECS.RevNat).update({ revNatIndex: s.revNat }, { addr: addrBytes16(s.vip), port: s.port, family: C.FAMILY_IPV4 });
}

/** The node's L7 proxy listens on `proxyPort` (what the agent writes while its listener is open). */
export function proxyListening(dp: Datapath, proxyPort: number, egress = true): void {
  dp.map(MAP_SPECS.ProxyListeners).update(proxyPort, { direction: egress ? C.POLICY_EGRESS : C.POLICY_INGRESS });
}

/** Allows everything in both directions for an endpoint (Cilium's allow-all entries when no policy selects it). */
export function allowAll(dp: Datapath, epId: number): void {
  addPolicy(dp, { epId, egress: true, identity: 0 });
  addPolicy(dp, { epId, egress: false, identity: 0 });
}

export function send(dp: Datapath, entry: EntryPoint, spec: FrameSpec, now: number, srcIdentity = 0): RunResult {
  return dp.run(entry, buildFrame(spec), { now, srcIdentity });
}

export function decoded(r: RunResult) {
  const d = decodeFrame(r.output);
  if (!d) throw new Error("output is not a decodable frame");
  return d;
}

export const TCP = C.IPPROTO_TCP;
export const UDP = C.IPPROTO_UDP;
export const ICMP = C.IPPROTO_ICMP;
export { C };
