/*
 * fast-check generators shared by the differential suites (wasm vs js here, wasm vs kernel in
 * tests/differential/kernel.test.ts): random node state (endpoints, ipcache prefixes, policy entries with
 * wildcards, ranges and denies, services with random/Maglev selection, affinity and backend states) and
 * random packets (valid TCP/UDP/SCTP/ICMP over IPv4 and IPv6, replies, truncations, garbage), and the
 * overlay: a random tunnel protocol (none, VXLAN, Geneve), ipcache prefixes with or without a tunnel
 * endpoint (IPv4, IPv6, a bogus all-zero one, skip-tunnel), packets arriving through the tunnel device with
 * random tunnel keys, and the previous encapsulated output delivered through the tunnel with its key;
 * masquerading: on or off, an exclusion CIDR of each family, with or without the node's IPv6 address, SNAT
 * ports already taken (up to every candidate, over IPv4 and IPv6), IPv6 NodePorts on the node's IPv6 address
 * with local and remote backends and their round trips, pods
 * connecting to the world through the node's device (toNetwork) with colliding ports, the world's replies
 * to the node address (fromNetwork's reverse SNAT) and their delivery to the pod; the host firewall: on or
 * off, random entries of the host endpoint (HOST_EP_DIFF), the node's own connections out and in through
 * the device and their replies; IPv4 fragments: datagrams cut into fragments sent in order, reversed or
 * without their first fragment, also through masquerading.
 */
import fc from "fast-check";
import { nonZeroEntries, writeAll, type Datapath, type EntryPoint, type MapHandle, type TunnelKey } from "../../host/datapath.ts";
import { MAP_SPECS, MapType } from "../../host/codecs.gen.ts";
import * as C from "../../host/constants.gen.ts";
import { addrBytes16 } from "../../host/ip.ts";
import { PROTO_NUMBERS, type L4Proto } from "../../host/protocols.ts";
import { buildFrame, decodeFrame, fragmentFrame, type FrameSpec } from "../../sim/packets.ts";
import { addPolicy, configure, ipcacheKey } from "../conformance/fixture.ts";
import { maglevHashString } from "../../host/maglev.ts";
import type { AbiDatapath } from "../../host/abi-datapath.ts";

export const V4_PODS = ["10.244.0.10", "10.244.0.11", "10.244.0.12", "10.244.1.20"];
export const V6_PODS = ["fd00::10", "fd00::11"];
export const VIPS = ["10.96.0.10", "10.96.0.11"];
const EXTERNAL = ["203.0.113.9", "198.51.100.1", "2001:db8::9"];
const IDENTITIES = [0, 1000, 1001, 1002, 2, 3000];
const TUNNEL_ENDPOINTS = ["192.168.56.22", "192.168.56.23", "fd00::22"];
/** ConfigValue.tunnelIfindex of the differential nodes (any non-zero ifindex: a test run redirects nowhere). */
export const DIFF_TUNNEL_IFINDEX = 1;
/** ConfigValue.nodeIpv4 of the differential nodes: the SNAT source of masquerading and NodePort. */
export const NODE_IP = "192.168.57.11";
const NODE_IP_NUM = 0xc0a8390b;
/** ConfigValue.nodeIpv6 of the differential nodes (when `masquerade.node6`): the IPv6 SNAT source. */
export const NODE_IP6 = "fd00:57::11";
/** An IPv6 pod on another node (fd00:1::/64 in some states' ipcache). */
const REMOTE_V6 = "fd00:1::5";
/** ConfigValue.hostEpId of the differential nodes: the host endpoint of host policies. */
export const HOST_EP_DIFF = 40;
/** Masquerade exclusion CIDRs (ipv4-native-routing-cidr) as [address, prefix length]; [0, 0] none. */
const EXCLUSIONS: [number, number][] = [[0, 0], [0, 0], [0x0af40000, 16], [0xcb007100, 24], [0xcb007109, 32]];
/** IPv6 exclusion CIDRs (ipv6-native-routing-cidr); prefix length 0 none. */
const EXCLUSIONS6: [string, number][] = [["::", 0], ["::", 0], ["fd00::", 16], ["2001:db8::", 32], ["2001:db8::9", 128], ["2001:db8::", 127]];

/** The tunnel keys packets arrive with through the tunnel device: identities that are fine, 0 and host
 * (invalid), one wider than policy ever sees, and IPv4/IPv6 senders. */
const tunnelKeyArb: fc.Arbitrary<TunnelKey | undefined> = fc.option(
  fc.record({ remote: fc.constantFrom(...TUNNEL_ENDPOINTS), tunnelId: fc.constantFrom(1000, 1001, 3000, 3000, 0, 1, 2, 0xffffff) }),
  { nil: undefined, freq: 6 },
);

/** Map capacities for differential runs, the same on both engines (the kernel's too): far below full, so
 * no LRU map evicts (the kernel's LRU is approximate, ours exact), and small, so that the kernel's batch
 * reads of a hash map walk few buckets. */
export const SMALL_CAPACITIES: Record<string, number> = Object.fromEntries(
  ["ipcache", "lxc", "policy", "lb_services", "lb_backends", "lb_reverse_nat", "lb_affinity", "ct", "snat", "metrics", "frag_datagrams"].map((n) => [n, 1024]),
);
SMALL_CAPACITIES.lb_maglev = 4096;

export interface NodeState {
  endpoints: { ip: string; epId: number; identity: number }[];
  prefixes: { cidr: string; identity: number; tunnel?: { endpoint: string; skip: boolean } }[];
  /** ConfigValue.tunnelProtocol: TUNNEL_PROTO_NONE, _VXLAN or _GENEVE. */
  tunnelProtocol: number;
  policies: { epId: number; egress: boolean; identity: number; proto?: number; port?: number; portBits?: number; deny: boolean; proxyPort: number; cookie: number }[];
  /** Whether the node's proxy listens on 10001 (ProxyListeners): a redirect without it is a 178 drop. */
  proxyListening: boolean;
  /** CONFIG_F_EXTENDED_IP_PROTOCOLS: VRRP and IGMP tracked and policed (otherwise 137). */
  extendedProtocols: boolean;
  /** CONFIG_F_MASQUERADE, the exclusion CIDR, and how many SNAT ports of 203.0.113.9:80/TCP from 40000 on
   * are already taken (32 = every candidate of a flow keeping port 40000: NAT_NO_MAPPING). */
  masquerade: { on: boolean; exclusion: [number, number]; taken: number; node6: boolean; exclusion6: [string, number] };
  /** CONFIG_F_HOST_FIREWALL (the host endpoint's entries are among `policies`, epId HOST_EP_DIFF). */
  hostFirewall: boolean;
  services: { vip: string; port: number; routable: boolean; revNat: number; maglev: boolean; affinity: number; backends: { id: number; ip: string; port: number; state: number }[] }[];
  /** An IPv6 NodePort on the node's IPv6 address (port 80, TCP, revNat 60) with backends among the local
   * IPv6 pod, an IPv6 pod not on this node and one on another node; absent: none. */
  nodePort6?: { backends: { id: number; ip: string; port: number; state: number }[] };
}

const policyArb = fc.record({
  epId: fc.constantFrom(1, 2, 3, HOST_EP_DIFF),
  egress: fc.boolean(),
  identity: fc.constantFrom(...IDENTITIES),
  proto: fc.option(fc.constantFrom(6, 17, 1, 132, 112, 2), { nil: undefined }),
  port: fc.option(fc.constantFrom(0, 8, 53, 80, 443, 8080, 16, 31), { nil: undefined }),
  portBits: fc.option(fc.integer({ min: 1, max: 16 }), { nil: undefined }),
  deny: fc.boolean(),
  proxyPort: fc.constantFrom(0, 0, 0, 10001),
  cookie: fc.integer({ min: 0, max: 1000 }),
});

export const nodeStateArb: fc.Arbitrary<NodeState> = fc.record({
  endpoints: fc.constant([
    { ip: V4_PODS[0]!, epId: 1, identity: 1000 },
    { ip: V4_PODS[1]!, epId: 2, identity: 1001 },
    { ip: V6_PODS[0]!, epId: 3, identity: 1002 },
  ]),
  prefixes: fc.array(
    fc.record({
      cidr: fc.constantFrom("10.244.1.0/24", "10.244.1.0/24", "10.244.0.0/16", "203.0.113.0/24", "0.0.0.0/0", "fd00::/64", "::/0", "198.51.100.0/25", "fd00:1::/64", "2001:db8::/48"),
      identity: fc.constantFrom(...IDENTITIES.filter((i) => i), 0x1000001),
      tunnel: fc.option(fc.record({ endpoint: fc.constantFrom(...TUNNEL_ENDPOINTS, "0.0.0.0"), skip: fc.constantFrom(false, false, false, true) }), { nil: undefined, freq: 2 }),
    }),
    { maxLength: 5 },
  ),
  tunnelProtocol: fc.constantFrom(C.TUNNEL_PROTO_NONE, C.TUNNEL_PROTO_VXLAN, C.TUNNEL_PROTO_VXLAN, C.TUNNEL_PROTO_GENEVE),
  policies: fc.tuple(fc.array(policyArb, { maxLength: 12 }), fc.tuple(...[1, 2, 3, HOST_EP_DIFF].flatMap((epId) => [true, false].map((egress) => fc.constantFrom(true, true, false).map((open) => (open ? [{ epId, egress }] : []))))).map((l) => l.flat())).map(([random, open]) => [
    ...random,
    // Endpoints with allow-all entries, so that flows get past policy and reach LB, CT and replies.
    ...open.map((o) => ({ ...o, identity: 0, deny: false, proxyPort: 0, cookie: 0 })),
  ]),
  proxyListening: fc.constantFrom(true, true, false),
  extendedProtocols: fc.boolean(),
  masquerade: fc.record({ on: fc.constantFrom(true, true, false), exclusion: fc.constantFrom(...EXCLUSIONS), taken: fc.constantFrom(0, 0, 0, 2, 32), node6: fc.constantFrom(true, true, true, false), exclusion6: fc.constantFrom(...EXCLUSIONS6) }),
  nodePort6: fc.option(fc.record({
    backends: fc.array(fc.record({ id: fc.integer({ min: 21, max: 24 }), ip: fc.constantFrom(V6_PODS[0]!, V6_PODS[0]!, V6_PODS[1]!, REMOTE_V6), port: fc.constantFrom(0, 8080), state: fc.constantFrom(0, 0, 0, 1) }), { minLength: 1, maxLength: 3 }),
  }), { nil: undefined, freq: 3 }),
  hostFirewall: fc.constantFrom(true, true, false),
  services: fc.array(
    fc.record({
      vip: fc.constantFrom(...VIPS),
      port: fc.constantFrom(80, 80, 53),
      routable: fc.boolean(),
      revNat: fc.integer({ min: 1, max: 50 }),
      maglev: fc.boolean(),
      affinity: fc.constantFrom(0, 0, 30),
      backends: fc.array(
        fc.record({ id: fc.integer({ min: 1, max: 20 }), ip: fc.constantFrom(V4_PODS[0]!, V4_PODS[1]!, V4_PODS[0]!, V4_PODS[1]!, V4_PODS[2]!, V4_PODS[3]!), port: fc.constantFrom(0, 8080), state: fc.constantFrom(0, 0, 0, 1) }),
        { minLength: 1, maxLength: 4 },
      ),
    }),
    { minLength: 1, maxLength: 2 },
  ),
});

/** Maglev tables built so far, by backend ids: a table is a function of its backends alone (core's
 * maglevBuild with a fixed seed), so every case shares them. */
const maglevCache = new Map<string, Uint32Array>();

/** Maglev tables (M 251) for sets of backend ids, built once per set (by `dp` the first time), for
 * installState. */
export function maglevTables(dp: AbiDatapath): (backendIds: number[]) => Uint32Array {
  const tables = maglevCache;
  return (ids) => {
    const key = ids.join(",");
    if (!tables.has(key)) {
      const backends = ids.map((id) => ({ id, hashString: maglevHashString({ addr: `10.0.0.${id}`, port: 80, protocol: "TCP" }) }));
      tables.set(key, dp.maglevTable(backends, 251, 0x1234));
    }
    return tables.get(key)!;
  };
}

/** Configuration flags of the differential nodes: ICMP rules, and flow events on, so the ring buffer is
 * compared too. */
export const DIFF_CONFIG_FLAGS = C.CONFIG_F_ENABLE_ICMP_RULE | C.CONFIG_F_ALLOW_ICMP_FRAG_NEEDED | C.CONFIG_F_EVENTS;

export function installState(dp: Datapath, s: NodeState, maglevTable?: (backendIds: number[]) => Uint32Array, flags?: number): void {
  configure(dp, flags === undefined && !s.extendedProtocols ? undefined : ((flags ?? C.CONFIG_F_ENABLE_ICMP_RULE | C.CONFIG_F_ALLOW_ICMP_FRAG_NEEDED) | (s.extendedProtocols ? C.CONFIG_F_EXTENDED_IP_PROTOCOLS : 0)) >>> 0);
  for (const ep of s.endpoints) {
    const v6 = ep.ip.includes(":");
    dp.map(MAP_SPECS.Endpoints).update({ addr: addrBytes16(ep.ip), family: v6 ? C.FAMILY_IPV6 : C.FAMILY_IPV4 }, { epId: ep.epId, secIdentity: ep.identity });
    dp.map(MAP_SPECS.Ipcache).update(ipcacheKey(ep.ip), { secIdentity: ep.identity });
  }
  const cfg = dp.map(MAP_SPECS.Config).lookup(0)!;
  const m = s.masquerade;
  dp.map(MAP_SPECS.Config).update(0, {
    ...cfg,
    tunnelProtocol: s.tunnelProtocol ?? 0,
    tunnelIfindex: DIFF_TUNNEL_IFINDEX,
    nodeIpv4: NODE_IP_NUM,
    hostEpId: HOST_EP_DIFF,
    flags: (cfg.flags | (m.on ? C.CONFIG_F_MASQUERADE : 0) | (s.hostFirewall ? C.CONFIG_F_HOST_FIREWALL : 0)) >>> 0,
    snatExclusionIpv4: m.exclusion[0],
    snatExclusionPrefixLen: m.exclusion[1],
    nodeIpv6: m.node6 ? addrBytes16(NODE_IP6) : new Uint8Array(16),
    snatExclusionIpv6: addrBytes16(m.exclusion6[0]),
    snatExclusionIpv6PrefixLen: m.exclusion6[1],
  });
  // Ports taken by earlier flows: reply keys {node, 203.0.113.9:80 → port} (and {node6, 2001:db8::9:80 →
  // port}) as snatEgress writes them.
  for (let i = 0; i < m.taken; i++) {
    dp.map(MAP_SPECS.Snat).update(
      { daddr: addrBytes16(NODE_IP), saddr: addrBytes16(EXTERNAL[0]!), dport: 40000 + i, sport: 80, nexthdr: C.IPPROTO_TCP, flags: C.TUPLE_F_IN, family: C.FAMILY_IPV4 },
      { toAddr: addrBytes16("10.244.0.99"), toPort: 1, family: C.FAMILY_IPV4, created: 1 },
    );
    dp.map(MAP_SPECS.Snat).update(
      { daddr: addrBytes16(NODE_IP6), saddr: addrBytes16(EXTERNAL[2]!), dport: 40000 + i, sport: 80, nexthdr: C.IPPROTO_TCP, flags: C.TUPLE_F_IN, family: C.FAMILY_IPV6 },
      { toAddr: addrBytes16("fd00::99"), toPort: 1, family: C.FAMILY_IPV6, created: 1 },
    );
  }
  // The node's own addresses are the host on its own node (node/desired.ts).
  dp.map(MAP_SPECS.Ipcache).update(ipcacheKey(NODE_IP), { secIdentity: C.ID_HOST });
  dp.map(MAP_SPECS.Ipcache).update(ipcacheKey(NODE_IP6), { secIdentity: C.ID_HOST });
  for (const p of s.prefixes) {
    const t = p.tunnel;
    const v6 = t?.endpoint.includes(":") ?? false;
    const flags = t ? C.IPCACHE_F_HAS_TUNNEL_EP | (v6 ? C.IPCACHE_F_IPV6_TUNNEL_EP : 0) | (t.skip ? C.IPCACHE_F_SKIP_TUNNEL : 0) : 0;
    dp.map(MAP_SPECS.Ipcache).update(ipcacheKey(p.cidr), { secIdentity: p.identity, tunnelEndpoint: t ? addrBytes16(t.endpoint) : new Uint8Array(16), flags });
  }
  for (const p of s.policies) addPolicy(dp, p);
  if (s.proxyListening) dp.map(MAP_SPECS.ProxyListeners).update(10001, { direction: C.POLICY_EGRESS });
  for (const svc of s.services) {
    const uniq = [...new Map(svc.backends.map((b) => [b.id, b])).values()];
    const active = uniq.filter((b) => b.state === 0);
    const inactive = uniq.filter((b) => b.state !== 0);
    const key = { addr: addrBytes16(svc.vip), dport: svc.port, proto: C.IPPROTO_TCP, family: C.FAMILY_IPV4 };
    const alg = svc.maglev ? C.LB_ALG_MAGLEV : C.LB_ALG_RANDOM;
    dp.map(MAP_SPECS.Services).update({ ...key, backendSlot: 0 }, { backendId: ((alg << 24) | svc.affinity) >>> 0, count: active.length, qcount: inactive.length, revNatIndex: svc.revNat, flags: (svc.affinity ? C.SVC_F_AFFINITY : 0) | (svc.routable ? C.SVC_F_ROUTABLE : 0) });
    [...active, ...inactive].forEach((b, i) => {
      dp.map(MAP_SPECS.Services).update({ ...key, backendSlot: i + 1 }, { backendId: b.id, revNatIndex: svc.revNat });
      dp.map(MAP_SPECS.Backends).update({ backendId: b.id }, { addr: addrBytes16(b.ip), port: b.port, proto: C.IPPROTO_TCP, state: b.state, family: C.FAMILY_IPV4 });
    });
    dp.map(MAP_SPECS.RevNat).update({ revNatIndex: svc.revNat }, { addr: addrBytes16(svc.vip), port: svc.port, family: C.FAMILY_IPV4 });
    if (svc.maglev && active.length && maglevTable) {
      const table = maglevTable(active.map((b) => b.id));
      // One batch (bpf_map_update_batch on the kernel) for the table's 251 slots.
      writeAll(dp.map(MAP_SPECS.Maglev), Array.from(table, (id, slot): [{ revNatIndex: number; slot: number }, { backendId: number }] => [{ revNatIndex: svc.revNat, slot }, { backendId: id }]));
    }
  }
  if (s.nodePort6) {
    const uniq = [...new Map(s.nodePort6.backends.map((b) => [b.id, b])).values()];
    const active = uniq.filter((b) => b.state === 0);
    const inactive = uniq.filter((b) => b.state !== 0);
    const key = { addr: addrBytes16(NODE_IP6), dport: 80, proto: C.IPPROTO_TCP, family: C.FAMILY_IPV6 };
    dp.map(MAP_SPECS.Services).update({ ...key, backendSlot: 0 }, { backendId: C.LB_ALG_RANDOM << 24, count: active.length, qcount: inactive.length, revNatIndex: 60, flags: C.SVC_F_ROUTABLE | C.SVC_F_NODEPORT });
    [...active, ...inactive].forEach((b, i) => {
      dp.map(MAP_SPECS.Services).update({ ...key, backendSlot: i + 1 }, { backendId: b.id, revNatIndex: 60 });
      dp.map(MAP_SPECS.Backends).update({ backendId: b.id }, { addr: addrBytes16(b.ip), port: b.port, proto: C.IPPROTO_TCP, state: b.state, family: C.FAMILY_IPV6 });
    });
    dp.map(MAP_SPECS.RevNat).update({ revNatIndex: 60 }, { addr: addrBytes16(NODE_IP6), port: 80, family: C.FAMILY_IPV6 });
  }
}

const LOCAL_V4 = [V4_PODS[0]!, V4_PODS[1]!];
const LOCAL_V6 = [V6_PODS[0]!];

/** A frame whose addresses suit the hook it is sent to: pods send from their own address; packets
 * arriving at a pod are addressed to it; traffic from outside comes from outside. */
function frameFor(entry: EntryPoint): fc.Arbitrary<FrameSpec> {
  return fc.boolean().chain((v6) => {
    const local = v6 ? LOCAL_V6 : LOCAL_V4;
    const remote = v6 ? [...V6_PODS, EXTERNAL[2]!] : [...V4_PODS, ...VIPS, ...VIPS, ...VIPS, EXTERNAL[0]!, EXTERNAL[1]!];
    const arriving = entry === "toEndpoint" || entry === "fromOverlay";
    const outside = v6 ? [EXTERNAL[2]!] : [EXTERNAL[0]!, EXTERNAL[1]!];
    // toNetwork: what leaves through the device — pods' packets (to the world, other nodes, pods) and the
    // node's own.
    // fromHost: what the node's stack routes into the tunnel device — its own (NODE_IP), its proxy's on a
    // local pod's behalf, NodePort flows SNATed to it, forwarded ones — to pods elsewhere, or not.
    const src = entry === "fromEndpoint" ? fc.constantFrom(...local)
      : entry === "toNetwork" ? fc.constantFrom(...local, ...local, v6 ? NODE_IP6 : NODE_IP, ...outside)
      : entry === "fromHost" ? fc.constantFrom(...local, ...(v6 ? [] : [NODE_IP, NODE_IP]), ...outside)
      : arriving ? fc.constantFrom(...remote.filter((a) => !VIPS.includes(a))) : fc.constantFrom(...outside);
    const dst = arriving ? fc.constantFrom(...local)
      : entry === "fromNetwork" ? fc.constantFrom(...(v6 ? [...V6_PODS, NODE_IP6, NODE_IP6] : [...VIPS, ...LOCAL_V4, NODE_IP, NODE_IP]))
      : entry === "toNetwork" ? fc.constantFrom(...outside, ...outside, ...remote, v6 ? REMOTE_V6 : "192.168.57.12")
      : fc.constantFrom(...remote);
    return fc.record({
      src,
      dst,
      proto: fc.constantFrom<L4Proto>("TCP", "TCP", "UDP", "SCTP", v6 ? "ICMPv6" : "ICMP", "VRRP", v6 ? "VRRP" : "IGMP"),
      sport: fc.constantFrom(40000, 40001, 80, 53, 1234),
      dport: fc.constantFrom(80, 80, 53, 443, 8080, 16, 40000),
      tcpFlags: fc.constantFrom(0x02, 0x02, 0x12, 0x10, 0x11, 0x04, 0x18),
      icmpType: fc.constantFrom(...(v6 ? [128, 129, 1, 135] : [8, 0, 3, 13])),
      icmpCode: fc.constantFrom(0, 4),
      icmpId: fc.constantFrom(1, 2),
      payload: fc.uint8Array({ maxLength: 24 }),
    });
  });
}

/** A packet to run at `entry`: a valid frame, a truncated or corrupted one, or garbage. */
export function packetFor(entry: EntryPoint): fc.Arbitrary<Uint8Array> {
  const spec = frameFor(entry);
  return fc.oneof(
    { weight: 8, arbitrary: spec.map((s) => buildFrame(s)) },
    { weight: 1, arbitrary: fc.tuple(spec, fc.nat()).map(([s, n]) => { const f = buildFrame(s); return f.subarray(0, n % (f.length + 1)); }) },
    { weight: 1, arbitrary: fc.tuple(spec, fc.nat(), fc.integer({ min: 0, max: 255 })).map(([s, i, v]) => { const f = buildFrame(s); f[14 + (i % Math.max(1, f.length - 14))] = v; return f; }) },
    { weight: 1, arbitrary: fc.uint8Array({ maxLength: 120 }) },
  );
}

/**
 * One step of a packet sequence:
 *   raw     — run `packet` at `entry`;
 *   deliver — the previous step's output arrives at its destination pod (toEndpoint), as on the wire;
 *   reply   — the destination answers the previous step's output (addresses and ports swapped, SYN-ACK
 *             for TCP), sent from a pod (fromEndpoint) or arriving at one (toEndpoint);
 *   again   — the previous input once more as an established packet (TCP ACK);
 *   tunnel  — the previous step's output arrives through the tunnel device (fromOverlay) with the tunnel
 *             key the previous step set (none when it set none);
 *   egress  — the previous step's output leaves through the node's device (toNetwork: masquerading);
 *   beside  — a new connection (TCP SYN) from the previous input's source address and port to the previous
 *             output's destination: a pod's direct connection to the backend its service connection on the
 *             same port was translated to (fromEndpoint).
 * `tunnel` on a raw step is the key a fromOverlay packet arrives with.
 */
export type Step =
  | { kind: "raw"; entry: EntryPoint; packet: Uint8Array; now: number; srcIdentity: number; tunnel?: TunnelKey }
  | { kind: "deliver" | "again" | "tunnel" | "egress" | "beside"; now: number; srcIdentity: number }
  | { kind: "reply"; entry: EntryPoint; now: number; srcIdentity: number };

const entryArb = fc.constantFrom<EntryPoint>("fromEndpoint", "fromEndpoint", "fromEndpoint", "toEndpoint", "toEndpoint", "fromNetwork", "fromOverlay", "toNetwork", "fromHost");

/** A pod connecting to a service: the packets that exercise LB, DNAT and, after a reply, reverse NAT. */
const connectArb: fc.Arbitrary<Step> = fc
  .record({ src: fc.constantFrom(...LOCAL_V4), dst: fc.constantFrom(...VIPS), proto: fc.constantFrom<L4Proto>("TCP", "TCP", "UDP"), sport: fc.integer({ min: 40000, max: 40003 }), now: fc.nat() })
  .map(({ now, ...f }) => ({ kind: "raw" as const, entry: "fromEndpoint" as const, packet: buildFrame({ ...f, dport: 80, tcpFlags: 0x02 }), now, srcIdentity: 0 }));

const stepArb: fc.Arbitrary<Step> = fc.oneof(
  { weight: 2, arbitrary: connectArb },
  // fromHost mostly without a key (its own encapsulation); with one it is fromEndpoint's packet passing.
  { weight: 5, arbitrary: entryArb.chain((entry) => fc.record({ kind: fc.constant("raw" as const), entry: fc.constant(entry), packet: packetFor(entry), now: fc.nat(), srcIdentity: fc.constantFrom(0, 0, 1000, 3000), tunnel: entry === "fromHost" ? fc.oneof(fc.constant(undefined), fc.constant(undefined), fc.constant(undefined), tunnelKeyArb) : tunnelKeyArb })) },
  { weight: 1, arbitrary: fc.record({ kind: fc.constant("tunnel" as const), now: fc.nat(), srcIdentity: fc.constant(0) }) },
  { weight: 2, arbitrary: fc.record({ kind: fc.constant("deliver" as const), now: fc.nat(), srcIdentity: fc.constantFrom(0, 1000) }) },
  { weight: 2, arbitrary: fc.record({ kind: fc.constant("reply" as const), entry: fc.constantFrom<EntryPoint>("fromEndpoint", "toEndpoint", "fromNetwork", "toNetwork"), now: fc.nat(), srcIdentity: fc.constantFrom(0, 1001) }) },
  { weight: 1, arbitrary: fc.record({ kind: fc.constant("egress" as const), now: fc.nat(), srcIdentity: fc.constant(0) }) },
  { weight: 1, arbitrary: fc.record({ kind: fc.constant("again" as const), now: fc.nat(), srcIdentity: fc.constantFrom(0, 1000) }) },
);

/** A whole exchange through a service: the connection, its delivery to the backend, the backend's reply
 * and that reply's delivery to the client (where it is reverse-NATed). */
const roundTripArb: fc.Arbitrary<Step[]> = fc.tuple(connectArb, fc.nat(), fc.nat(), fc.nat()).map(([connect, a, b, c]) => [
  connect,
  { kind: "deliver" as const, now: a, srcIdentity: 0 },
  { kind: "reply" as const, entry: "fromEndpoint" as const, now: b, srcIdentity: 0 },
  { kind: "deliver" as const, now: c, srcIdentity: 0 },
]);

/** A pod reaching the world through masquerading: fromEndpoint, the device (toNetwork SNAT), the world's
 * reply at the node (fromNetwork reverse SNAT) and its delivery to the pod. Few pods, ports and servers,
 * so that flows of one sequence collide on the node's ports (P4). */
const masqRoundTripArb: fc.Arbitrary<Step[]> = fc
  .boolean()
  .chain((v6) => fc.record({
    src: fc.constantFrom(...(v6 ? LOCAL_V6 : LOCAL_V4)),
    dst: fc.constantFrom(...(v6 ? [EXTERNAL[2]!, EXTERNAL[2]!, "2001:db8::1:7"] : [EXTERNAL[0]!, EXTERNAL[0]!, EXTERNAL[1]!])),
    proto: fc.constantFrom<L4Proto>("TCP", "TCP", "UDP", v6 ? "ICMPv6" : "ICMP"),
    sport: fc.constantFrom(40000, 40000, 40001, 1234),
    times: fc.tuple(fc.nat(), fc.nat(), fc.nat(), fc.nat()),
  }))
  .map(({ src, dst, proto, sport, times: [a, b, c, d] }) => [
    { kind: "raw" as const, entry: "fromEndpoint" as const, packet: buildFrame({ src, dst, proto, sport, dport: 80, tcpFlags: 0x02, icmpType: proto === "ICMPv6" ? 128 : 8, icmpId: sport }), now: a, srcIdentity: 0 },
    { kind: "egress" as const, now: b, srcIdentity: 0 },
    { kind: "reply" as const, entry: "fromNetwork" as const, now: c, srcIdentity: 0 },
    { kind: "deliver" as const, now: d, srcIdentity: 0 },
  ]);

/** An outside IPv6 client reaching the IPv6 NodePort (fromNetwork: DNAT, and SNAT for a backend off this
 * node); then either the delivery to a local backend and its answer through its fromEndpoint (reverse NAT),
 * or the remote backend's answer arriving at the node (fromNetwork: reverse SNAT and reverse NAT). */
const nodePort6RoundTripArb: fc.Arbitrary<Step[]> = fc
  .record({ sport: fc.constantFrom(40000, 40001, 1234), local: fc.boolean(), times: fc.tuple(fc.nat(), fc.nat(), fc.nat()) })
  .map(({ sport, local, times: [a, b, c] }): Step[] => [
    { kind: "raw", entry: "fromNetwork", packet: buildFrame({ src: EXTERNAL[2]!, dst: NODE_IP6, proto: "TCP", sport, dport: 80, tcpFlags: 0x02 }), now: a, srcIdentity: 0 },
    ...(local
      ? [{ kind: "deliver" as const, now: b, srcIdentity: 0 }, { kind: "reply" as const, entry: "fromEndpoint" as const, now: c, srcIdentity: 0 }]
      : [{ kind: "reply" as const, entry: "fromNetwork" as const, now: b, srcIdentity: 0 }]),
  ]);

/** The node's own connection through its device (the host firewall): out to the world or another node
 * and its reply in, or in from outside and the node's reply out; then one more packet of the flow. */
const hostRoundTripArb: fc.Arbitrary<Step[]> = fc
  .record({
    out: fc.boolean(),
    peer: fc.constantFrom(EXTERNAL[0]!, EXTERNAL[1]!, "192.168.57.12"),
    proto: fc.constantFrom<L4Proto>("TCP", "TCP", "UDP", "ICMP"),
    port: fc.constantFrom(22, 80, 443, 53),
    times: fc.tuple(fc.nat(), fc.nat(), fc.nat()),
  })
  .map(({ out, peer, proto, port, times: [a, b, c] }) => {
    const first = buildFrame(out
      ? { src: NODE_IP, dst: peer, proto, sport: 45000, dport: port, tcpFlags: 0x02, icmpType: 8, icmpId: 5 }
      : { src: peer, dst: NODE_IP, proto, sport: 45000, dport: port, tcpFlags: 0x02, icmpType: 8, icmpId: 5 });
    const there = out ? ("toNetwork" as const) : ("fromNetwork" as const);
    const back = out ? ("fromNetwork" as const) : ("toNetwork" as const);
    return [
      { kind: "raw" as const, entry: there, packet: first, now: a, srcIdentity: 0 },
      { kind: "reply" as const, entry: back, now: b, srcIdentity: 0 },
      { kind: "raw" as const, entry: there, packet: first, now: c, srcIdentity: 0 },
    ];
  });

/** One IPv4 datagram cut into fragments (core/frag.ts F1–F3), sent to one hook in order, reversed (later
 * fragments before their first: 175) or without its first fragment, with the same or another IP id as an
 * earlier datagram; from a pod optionally each fragment on through the node's device (masquerading). */
const fragmentsArb: fc.Arbitrary<Step[]> = fc
  .constantFrom<EntryPoint>("fromEndpoint", "fromEndpoint", "toEndpoint", "fromNetwork", "toNetwork")
  .chain((entry) => fc.record({
    entry: fc.constant(entry),
    spec: frameFor(entry).filter((f) => !f.src.includes(":")),
    size: fc.integer({ min: 8, max: 64 }),
    piece: fc.constantFrom(16, 24, 32),
    id: fc.constantFrom(1, 2),
    order: fc.constantFrom("in", "in", "reversed", "noFirst"),
    egress: fc.boolean(),
  }))
  .map(({ entry, spec, size, piece, id, order, egress }) => {
    const frags = fragmentFrame(buildFrame({ ...spec, payload: new Uint8Array(size).fill(0x5a) }), piece, id);
    const sent = order === "reversed" ? [...frags].reverse() : order === "noFirst" ? frags.slice(1) : frags;
    return sent.flatMap((packet): Step[] => [
      { kind: "raw", entry, packet, now: 1, srcIdentity: 0 },
      ...(egress && entry === "fromEndpoint" ? [{ kind: "egress" as const, now: 1, srcIdentity: 0 }] : []),
    ]);
  });

/** Two connections of one pod from one source port at the same time (core/nat.ts T1–T7): to a ClusterIP and
 * then (`beside`) to the backend it was translated to, or to a second ClusterIP or pod (which often shares
 * that backend); each answered at the pod, then the first connection's next packet and its answer. Within
 * one second, so that no entry expires. */
const collideArb: fc.Arbitrary<Step[]> = fc
  .record({
    src: fc.constantFrom(...LOCAL_V4),
    first: fc.constantFrom(...VIPS),
    second: fc.constantFrom(undefined, undefined, ...VIPS, V4_PODS[0]!, V4_PODS[1]!),
    proto: fc.constantFrom<L4Proto>("TCP", "TCP", "TCP", "UDP"),
    sport: fc.constantFrom(40000, 40001),
    now: fc.nat(),
  })
  .map(({ src, first, second, proto, sport, now }) => {
    const to = (dst: string, tcpFlags: number, t: number): Step =>
      ({ kind: "raw", entry: "fromEndpoint", packet: buildFrame({ src, dst, proto, sport, dport: VIPS.includes(dst) ? 80 : 8080, tcpFlags }), now: t, srcIdentity: 0 });
    const answer: Step = { kind: "reply", entry: "toEndpoint", now: 0, srcIdentity: 0 };
    const next: Step = second ? to(second, 0x02, 0) : { kind: "beside", now: 0, srcIdentity: 0 };
    return [to(first, 0x02, now), next, answer, to(first, 0x10, 0), answer];
  });

export const stepsArb: fc.Arbitrary<Step[]> = fc
  .array(fc.oneof({ weight: 6, arbitrary: stepArb.map((s) => [s]) }, { weight: 1, arbitrary: roundTripArb }, { weight: 2, arbitrary: collideArb }, { weight: 2, arbitrary: masqRoundTripArb }, { weight: 1, arbitrary: nodePort6RoundTripArb }, { weight: 1, arbitrary: hostRoundTripArb }, { weight: 1, arbitrary: fragmentsArb }), { minLength: 1, maxLength: 6 })
  .map((groups) => groups.flat().slice(0, 10))
  .map((steps) => {
    // Time moves forward, as it does on a node (and never reaches 0: that selects the kernel's real clock).
    let t = 1;
    return steps.map((s) => ({ ...s, now: (t += s.now % 500) }));
  });

export interface Concrete {
  entry: EntryPoint;
  packet: Uint8Array;
  /** fromOverlay: the key the packet arrives with. */
  tunnel?: TunnelKey;
}

/** Turns a step into the packet to run, given the previous step's input and output; undefined when the
 * step has nothing to act on (no previous packet, or one that cannot be decoded). */
export function concretize(step: Step, prevIn?: Uint8Array, prevOut?: Uint8Array, prevTunnel?: TunnelKey): Concrete | undefined {
  if (step.kind === "raw") return { entry: step.entry, packet: step.packet, tunnel: step.tunnel };
  if (step.kind === "again") {
    if (!prevIn) return undefined;
    const d = decodeFrame(prevIn);
    if (!d || d.protoName !== "TCP") return { entry: "fromEndpoint", packet: prevIn };
    return { entry: "fromEndpoint", packet: buildFrame({ src: d.src, dst: d.dst, proto: "TCP", sport: d.sport, dport: d.dport, tcpFlags: 0x10 }) };
  }
  if (!prevOut) return undefined;
  if (step.kind === "beside") {
    const i = prevIn && decodeFrame(prevIn);
    const o = decodeFrame(prevOut);
    if (!i || !o || (i.protoName !== "TCP" && i.protoName !== "UDP")) return undefined;
    return { entry: "fromEndpoint", packet: buildFrame({ src: i.src, dst: o.dst, proto: i.protoName, sport: i.sport, dport: o.dport, tcpFlags: 0x02 }) };
  }
  if (step.kind === "deliver") return { entry: "toEndpoint", packet: prevOut };
  if (step.kind === "tunnel") return { entry: "fromOverlay", packet: prevOut, tunnel: prevTunnel };
  if (step.kind === "egress") return { entry: "toNetwork", packet: prevOut };
  const d = decodeFrame(prevOut);
  if (!d || !PROTO_NUMBERS[d.protoName as L4Proto]) return undefined;
  const proto = d.protoName as L4Proto;
  const icmp = proto === "ICMP" || proto === "ICMPv6";
  const echoReply = proto === "ICMP" ? 0 : 129;
  return {
    entry: (step as Extract<Step, { kind: "reply" }>).entry,
    packet: buildFrame({ src: d.dst, dst: d.src, proto, sport: d.dport, dport: d.sport, tcpFlags: 0x12, icmpType: icmp ? echoReply : undefined, icmpId: icmp ? echoIdOf(prevOut, d.family) : undefined }),
  };
}

/** The ICMP echo identifier of a frame (after any translation: a masqueraded request carries the node's). */
function echoIdOf(f: Uint8Array, family: 4 | 6): number {
  const l4 = 14 + (family === 4 ? (f[14]! & 0x0f) * 4 : 40);
  return f.length >= l4 + 6 ? (f[l4 + 4]! << 8) | f[l4 + 5]! : 1;
}

/** The maps packets write (besides the Trace record and the Events ring buffer): what sideEffects
 * compares, and what a harness empties between packet sequences on one installed node state. */
export const PACKET_MAPS = [MAP_SPECS.Conntrack, MAP_SPECS.Snat, MAP_SPECS.Affinity, MAP_SPECS.FragDatagrams, MAP_SPECS.Metrics] as const;

/** How sideEffects reads one map: a hash map's entries, an array's slots that are not all zero. */
export type MapReader = <K, V>(h: MapHandle<K, V>) => Iterable<[K, V]>;

const readMap: MapReader = (h) => (h.spec.type === MapType.PercpuArray || h.spec.type === MapType.Array ? nonZeroEntries(h) : h.entries());

/** One decoded entry as text: JSON, with bigints as strings and byte arrays as lists of numbers (what
 * JSON.stringify with a replacer gives, without calling a replacer for every field). */
function entryText(k: unknown, v: unknown): string {
  return `[${jsonOf(k)},${jsonOf(v)}]`;
}

function jsonOf(x: unknown): string {
  if (typeof x === "number" || typeof x === "boolean") return JSON.stringify(x);
  if (typeof x === "bigint") return `"${x}"`;
  if (x instanceof Uint8Array) return `[${x.join(",")}]`;
  if (Array.isArray(x)) return `[${x.map((e) => (e === undefined ? "null" : jsonOf(e))).join(",")}]`;
  if (x === null || typeof x !== "object") return JSON.stringify(x) ?? "null";
  const parts: string[] = [];
  for (const [name, value] of Object.entries(x)) if (value !== undefined && typeof value !== "function") parts.push(`${JSON.stringify(name)}:${jsonOf(value)}`);
  return `{${parts.join(",")}}`;
}

/** Map contents that packets may change, in a comparable form. `read` reads each map (default: without
 * changing it; the kernel differential passes BpfMapHandle.drain, which empties each map as it reads it,
 * so a map is read once per packet sequence). */
export function sideEffects(dp: Datapath, read: MapReader = readMap): unknown {
  const dump = <K, V>(m: MapHandle<K, V>, keep: (v: V) => boolean = () => true) =>
    [...read(m)].filter(([, v]) => keep(v)).map(([k, v]) => entryText(k, v)).sort();
  return {
    ct: dump(dp.map(MAP_SPECS.Conntrack)),
    // An array map holds every index of its capacity; both sides have the same capacity (the differential
    // suites check it), so the indexes that are not all zero, compared, are all of them compared. Both
    // engines skip all-zero slots on their bytes before decoding (nonZeroEntries, drain); the decoded
    // check stays, so what is compared is exactly the slots with a non-zero field.
    metrics: dump(dp.map(MAP_SPECS.Metrics), (v) => Object.values(v as object).some((x) => x !== 0 && x !== 0n)),
    affinity: dump(dp.map(MAP_SPECS.Affinity)),
    snat: dump(dp.map(MAP_SPECS.Snat)),
    frag: dump(dp.map(MAP_SPECS.FragDatagrams)),
  };
}
