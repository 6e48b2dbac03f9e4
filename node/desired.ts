/*
 * Desired state as data: what a Cilium agent writes into one node's maps, computed by one pure function
 * from (cluster model, compiled policy, node, numbering, Maglev builder). The simulator writes the result
 * into its engines; the node agent encodes it and diffs it against the pinned maps (agent/reconcile.ts).
 * What the simulator predicts is therefore exactly what the agent writes: there is one computation, and the
 * only inputs that differ are the numbering (positional in the simulator, stable and persisted on a live
 * node) and which pods have a local endpoint.
 *
 * The maps the control plane owns: the configuration; the local endpoints; the ipcache (every pod IP with
 * its identity and its node as tunnel endpoint, every node IP as host on its own node and elsewhere as
 * remote-node (with the host firewall, with that node as tunnel endpoint) — the reserved 6, or with enable-node-selector-labels that node's remote-node-scoped
 * identity (policy/identity.ts nodeIdentityOn) —, the CIDR identities of the policies, and 0.0.0.0/0 and ::/0 as world); the per-endpoint
 * policy entries compiled by policy/; and the services (master entry, backend slots — active first, then
 * terminating —, backends, reverse NAT, Maglev tables). Every other map (conntrack, SNAT, affinity, metrics,
 * events) is the datapath's own. Mirrors pkg/endpointmanager, pkg/ipcache, pkg/maps/policymap and
 * pkg/loadbalancer/reconciler upstream. A simulated node also gets its proxy listeners (SIMULATED_MAPS).
 */
import { MAP_SPECS } from "../host/codecs.gen.ts";
import * as C from "../host/constants.gen.ts";
import { addrBytes16, isIpv6, parseIpv4, parseIpv4Cidr, parseIpv6Cidr } from "../host/ip.ts";
import { familyOf, ipcacheKey } from "../host/ipcache.ts";
import { maglevHashString, maglevSeeds } from "../host/maglev.ts";
import { protoNumber } from "../host/protocols.ts";
import type { MaglevBuilder } from "../host/wasm-core.ts";
import { encodeEntries, nodeIdentityOn, type CompiledPolicy, type EndpointPolicy } from "../policy/index.ts";
import type { SimBackend, SimCluster, SimPod } from "./cluster.ts";
import { backendKey, frontendBackends, type Frontend, type LbModel } from "./services.ts";
import { tunnelProtocolNumber, type TunnelProtocol } from "../host/tunnel.ts";

/**
 * The endpoint id of a node's host endpoint (Cilium's HOST_EP_ID): its Policy entries (host policies) are
 * keyed by it and ConfigValue.hostEpId names it. The top of the u16 range, away from the ids pods get
 * (1, 2, … in the simulator and the agent).
 */
export const HOST_ENDPOINT_ID = 0xffff;

/** The maps the control plane owns, in the order their additions go in (agent/reconcile.ts rule O2). */
export const MANAGED_MAPS = ["Config", "Backends", "RevNat", "Maglev", "Services", "Policy", "Ipcache", "Endpoints"] as const;
export type ManagedMap = (typeof MANAGED_MAPS)[number];

/**
 * Maps a simulated node writes from the desired state but the node agent never does. ProxyListeners: the
 * simulated node runs its L7 proxy, so every proxy port of a local endpoint listens; on a real node only
 * the proxy manager (agent/proxy/manager.ts) writes a port, while its listener is really open, so that a
 * redirect to a proxy that is not there is dropped (178), never passed.
 */
export const SIMULATED_MAPS = ["ProxyListeners"] as const;
export const DESIRED_MAPS = [...MANAGED_MAPS, ...SIMULATED_MAPS] as const;
export type DesiredMap = (typeof DESIRED_MAPS)[number];

type KeyOf<M extends DesiredMap> = Parameters<(typeof MAP_SPECS)[M]["key"]["encode"]>[0];
type ValueOf<M extends DesiredMap> = Parameters<(typeof MAP_SPECS)[M]["value"]["encode"]>[0];

/**
 * The entries of every map of the desired state, as the codecs of host/codecs.gen.ts take them. Within one
 * map a later entry with the same key replaces an earlier one (as writing them in order does).
 */
export type DesiredMaps = { [M in DesiredMap]: { key: KeyOf<M>; value: ValueOf<M> }[] };

/** A pod with a local endpoint on this node. */
export interface EndpointNumbers {
  epId: number;
  ifindex: number;
  /** MAC of the pod's interface and of the host side, "aa:bb:…" (optional). */
  mac?: string;
  hostMac?: string;
}

/**
 * The numbers the datapath remembers things by. The simulator numbers by position (positionalNumbering);
 * the agent keeps them stable across changes and restarts (agent/identities.ts).
 */
export interface Numbering {
  /** The local endpoint of a pod on this node, or undefined when it has none (it is then not programmed). */
  endpoint(pod: SimPod): EndpointNumbers | undefined;
  /**
   * The identity number written for one of the compiled policy's identities (reserved ones pass through),
   * or undefined while a cluster-wide allocator has not given it a number yet: a pod of such an identity is
   * written as reserved:init (as Cilium labels an endpoint whose identity is unresolved) and policy entries
   * naming it are left out (a deny naming it is kept against init), so nothing is allowed on its account
   * until it has a number.
   */
  identity(id: number): number | undefined;
  backend(b: SimBackend): number;
  revNat(f: Frontend): number;
  /** The cookie written for one of the compiled policy's cookies (default: as compiled). The agent keeps
   * them stable by provenance, so one policy change does not renumber the entries of other policies. */
  cookie?(c: number): number;
}

/** The Policy map entries of one local endpoint (desiredMaps' Policy part, for one endpoint). */
export function endpointPolicyEntries(epId: number, compiled: EndpointPolicy, numbering: Pick<Numbering, "identity" | "cookie">): DesiredMaps["Policy"] {
  const out: DesiredMaps["Policy"] = [];
  for (const { key, value } of encodeEntries(epId, compiled.entries)) {
    // A peer without a number yet: its pods are reserved:init in the ipcache, so an allow naming it is
    // left out and a deny is kept against init — a pending identity never opens a hole in a deny rule.
    const secLabel = numbering.identity(key.secLabel) ?? (value.flags & C.POLICY_F_DENY ? C.ID_INIT : undefined);
    if (secLabel === undefined) continue;
    out.push({ key: { ...key, secLabel }, value: numbering.cookie ? { ...value, cookie: numbering.cookie(value.cookie) } : value });
  }
  return out;
}

/**
 * The Policy entries of the node's host endpoint (HOST_ENDPOINT_ID): the host policies selecting it, with
 * the host firewall on (Config enableHostFirewall, Cilium's enable-host-firewall); none otherwise (the
 * datapath then never looks them up, core/host-firewall.ts H1).
 */
export function hostPolicyEntries(cluster: SimCluster, policy: CompiledPolicy, nodeName: string, numbering: Pick<Numbering, "identity" | "cookie">): DesiredMaps["Policy"] {
  const host = cluster.config.enableHostFirewall ? policy.hostEndpoints.get(nodeName) : undefined;
  return host ? endpointPolicyEntries(HOST_ENDPOINT_ID, host, numbering) : [];
}

export interface DesiredOptions {
  /** Flow events into the ring buffer: drops and new flows' policy verdicts (CONFIG_F_EVENTS). */
  events?: boolean;
  /** Every packet into the events ring buffer (CONFIG_F_EVENTS_ALL). */
  eventsAll?: boolean;
  /** Also trace about 1 in N forwarded packets (ConfigValue.traceSampleRate; 0 = none). */
  traceSampleRate?: number;
  /** The overlay (ConfigValue.tunnelProtocol/tunnelIfindex): packets to pods on other nodes are
   * encapsulated towards their node with the sender's identity. Absent: no overlay (native routing). The
   * ifindex is the node's collect-metadata tunnel device. */
  tunnel?: { protocol: TunnelProtocol; ifindex: number };
  /** BPF masquerading (CONFIG_F_MASQUERADE; Cilium's enable-bpf-masquerade): pod traffic leaving the
   * cluster through the node's device is SNATed to the node's address of its family — the IPv4 InternalIP,
   * or the IPv6 one of a dual-stack node (core/nat.ts M1–M6) — except to `nativeRoutingCidr`
   * (ipv4-native-routing-cidr, "a.b.c.d/n") and `ipv6NativeRoutingCidr` (ipv6-native-routing-cidr,
   * "x:y::/n"). Absent: no masquerading. */
  masquerade?: MasqueradeOptions;
}

/** The masquerading settings (DesiredOptions.masquerade). */
export interface MasqueradeOptions {
  nativeRoutingCidr?: string;
  ipv6NativeRoutingCidr?: string;
}

/** An IPv4 CIDR as ConfigValue's snatExclusion fields; {0, 0} for none. Throws on anything else. */
function snatExclusion(cidr: string | undefined): { snatExclusionIpv4: number; snatExclusionPrefixLen: number } {
  if (cidr === undefined) return { snatExclusionIpv4: 0, snatExclusionPrefixLen: 0 };
  const c = parseIpv4Cidr(cidr);
  return { snatExclusionIpv4: c.addr, snatExclusionPrefixLen: c.prefixLen };
}

/** An IPv6 CIDR as ConfigValue's snatExclusionIpv6 fields; none for undefined. Throws on anything else. */
function snatExclusion6(cidr: string | undefined): { snatExclusionIpv6: Uint8Array; snatExclusionIpv6PrefixLen: number } {
  if (cidr === undefined) return { snatExclusionIpv6: new Uint8Array(16), snatExclusionIpv6PrefixLen: 0 };
  const c = parseIpv6Cidr(cidr);
  return { snatExclusionIpv6: c.addr, snatExclusionIpv6PrefixLen: c.prefixLen };
}

/** The key a frontend is known by across changes (for stable reverse-NAT indexes). */
export function frontendKey(f: Frontend): string {
  return `${f.kind}/${f.ip}/${f.fport}/${f.protocol}`;
}

/** Pods of a node that get an endpoint in the simulator: scheduled there, not on the host network. */
export function localPods(cluster: SimCluster, nodeName: string): SimPod[] {
  return cluster.pods.filter((p) => p.node === nodeName && !p.hostNetwork).sort((a, b) => (a.key < b.key ? -1 : 1));
}

/** The simulator's numbering: endpoint ids 1, 2, … in namespace/name order, the LB model's numbers. */
export function positionalNumbering(cluster: SimCluster, nodeName: string, lb: LbModel): Numbering & { epIds: Map<string, number> } {
  const epIds = new Map<string, number>();
  localPods(cluster, nodeName).forEach((p, i) => epIds.set(p.key, i + 1));
  return {
    epIds,
    endpoint: (p) => {
      const epId = epIds.get(p.key);
      return epId === undefined ? undefined : { epId, ifindex: 100 + epId };
    },
    identity: (id) => id,
    backend: (b) => lb.backendIds.get(backendKey(b))!,
    revNat: (f) => f.revNat,
  };
}

function macBytes(mac: string | undefined): Uint8Array {
  const out = new Uint8Array(8);
  if (mac) mac.split(":").forEach((h, i) => (out[i] = parseInt(h, 16)));
  return out;
}

function ipv4Number(ip: string): number {
  const b = parseIpv4(isIpv6(ip) ? "0.0.0.0" : ip);
  return ((b[0]! << 24) | (b[1]! << 16) | (b[2]! << 8) | b[3]!) >>> 0;
}

/**
 * The exact contents of every managed map of node `nodeName`. Pure: the same inputs give the same entries
 * (the numbering's own allocation aside). Throws only when `nodeName` is not a node of the cluster.
 */
export function desiredMaps(cluster: SimCluster, policy: CompiledPolicy, lb: LbModel, nodeName: string, numbering: Numbering, maglev: MaglevBuilder, opts: DesiredOptions = {}): DesiredMaps {
  const node = cluster.nodes.find((n) => n.name === nodeName);
  if (!node) throw new Error(`node ${nodeName} is not in the cluster`);
  const cfg = cluster.config;
  const seeds = maglevSeeds(cfg.maglevSeed);
  const out: DesiredMaps = { Config: [], Backends: [], RevNat: [], Maglev: [], Services: [], Policy: [], Ipcache: [], Endpoints: [], ProxyListeners: [] };
  const identityOf = (p: SimPod) => numbering.identity(policy.identities.podIdentity.get(p.key) ?? C.ID_WORLD) ?? C.ID_INIT;

  let flags = C.CONFIG_F_ENABLE_ICMP_RULE | C.CONFIG_F_ALLOW_ICMP_FRAG_NEEDED;
  if (cfg.enableExtendedIPProtocols) flags |= C.CONFIG_F_EXTENDED_IP_PROTOCOLS;
  if (opts.events || opts.eventsAll) flags |= C.CONFIG_F_EVENTS;
  if (opts.eventsAll) flags |= C.CONFIG_F_EVENTS_ALL;
  if (opts.masquerade) flags |= C.CONFIG_F_MASQUERADE;
  if (cfg.enableHostFirewall) flags |= C.CONFIG_F_HOST_FIREWALL;
  out.Config.push({
    key: 0,
    value: {
      ctSynTimeout: cfg.ct.syn,
      ctTcpLifetime: cfg.ct.tcp,
      ctCloseTimeout: cfg.ct.close,
      ctAnyLifetime: cfg.ct.any,
      ctServiceTcpLifetime: cfg.ct.svcTcp,
      ctServiceAnyLifetime: cfg.ct.svcAny,
      hashSeed: seeds.jhash0,
      maglevTableSize: cfg.maglevTableSize,
      flags: flags >>> 0,
      traceSampleRate: opts.traceSampleRate ?? 0,
      hostIdentity: C.ID_HOST,
      worldIpv4Identity: C.ID_WORLD,
      worldIpv6Identity: C.ID_WORLD,
      serviceLoopbackIpv4: 0xa9fe2a01,
      nodePortMin: 30000,
      nodePortMax: 32767,
      nodeIpv4: ipv4Number(node.ip),
      tunnelProtocol: tunnelProtocolNumber(opts.tunnel?.protocol),
      tunnelIfindex: opts.tunnel?.ifindex ?? 0,
      hostEpId: HOST_ENDPOINT_ID,
      ...snatExclusion(opts.masquerade?.nativeRoutingCidr),
      // The SNAT source of IPv6 masquerading and IPv6 NodePort flows to remote backends (core/nat.ts M1).
      nodeIpv6: node.ip6 ? addrBytes16(node.ip6) : new Uint8Array(16),
      ...snatExclusion6(opts.masquerade?.ipv6NativeRoutingCidr),
    },
  });

  // Local endpoints and their policy.
  const programmed = new Set<string>();
  for (const p of localPods(cluster, nodeName)) {
    const ep = numbering.endpoint(p);
    if (!ep) continue;
    programmed.add(p.key);
    // One entry per address: a dual-stack pod is one endpoint reached by its IPv4 and its IPv6 address
    // (Cilium's cilium_lxc holds both keys for the same lxc_id).
    for (const ip of p.ips) {
      out.Endpoints.push({
        key: { addr: addrBytes16(ip), family: familyOf(ip) },
        value: { epId: ep.epId, secIdentity: identityOf(p), ifindex: ep.ifindex, mac: macBytes(ep.mac), nodeMac: macBytes(ep.hostMac) },
      });
    }
    const compiled = policy.endpoints.get(p.key);
    if (!compiled) continue;
    out.Policy.push(...endpointPolicyEntries(ep.epId, compiled, numbering));
  }
  out.Policy.push(...hostPolicyEntries(cluster, policy, nodeName, numbering));
  // The proxy ports of the local endpoints' policy (SIMULATED_MAPS).
  for (const l of policy.proxies.values()) {
    if (programmed.has(l.endpoint)) out.ProxyListeners.push({ key: l.proxyPort, value: { direction: l.direction === "egress" ? C.POLICY_EGRESS : C.POLICY_INGRESS } });
  }

  // The ipcache: world, then CIDR identities, nodes and pods (a later, more specific writer wins a shared key).
  out.Ipcache.push({ key: ipcacheKey("0.0.0.0/0"), value: { secIdentity: C.ID_WORLD } });
  out.Ipcache.push({ key: ipcacheKey("::/0"), value: { secIdentity: C.ID_WORLD } });
  for (const c of policy.cidrIdentities) {
    const secIdentity = numbering.identity(c.identity);
    if (secIdentity !== undefined) out.Ipcache.push({ key: ipcacheKey(c.prefix), value: { secIdentity } });
  }
  const nodeIp = new Map<string, string>();
  // With the host firewall another node's address names that node as its tunnel endpoint (Cilium's
  // pkg/node/manager nodeAddressHasTunnelIP): in tunnel mode a pod's packet to it crosses the tunnel with
  // the pod's identity, which that node's host policy judges (core/host-firewall.ts H10).
  const nodeTunnel = cluster.config.enableHostFirewall;
  for (const n of cluster.nodes) {
    nodeIp.set(n.name, n.ip);
    // Both addresses of a dual-stack node: host on its own node, remote-node elsewhere (so IPv6 traffic to
    // a node is never masqueraded, core/nat.ts M5, and is judged as the node's); both name the node's
    // underlay address as tunnel endpoint when the host firewall needs it.
    const secIdentity = numbering.identity(nodeIdentityOn(policy.identities, nodeName, n.name));
    const viaTunnel = nodeTunnel && n.name !== nodeName;
    for (const ip of n.ip6 ? [n.ip, n.ip6] : [n.ip])
      out.Ipcache.push({
        key: ipcacheKey(ip),
        value: viaTunnel
          ? { secIdentity, tunnelEndpoint: addrBytes16(n.ip), flags: C.IPCACHE_F_HAS_TUNNEL_EP | (isIpv6(n.ip) ? C.IPCACHE_F_IPV6_TUNNEL_EP : 0) }
          : { secIdentity },
      });
  }
  for (const p of cluster.pods) {
    if (p.hostNetwork) continue;
    const remote = p.node !== nodeName;
    // Every address of the pod carries its identity (identity by IP for IPv6 peers too); the tunnel endpoint
    // is its node's (IPv4) address whichever the family of the inner packet.
    for (const ip of p.ips) {
      out.Ipcache.push({
        key: ipcacheKey(ip),
        value: { secIdentity: identityOf(p), tunnelEndpoint: remote ? addrBytes16(nodeIp.get(p.node)!) : new Uint8Array(16), flags: remote ? C.IPCACHE_F_HAS_TUNNEL_EP | (isIpv6(nodeIp.get(p.node)!) ? C.IPCACHE_F_IPV6_TUNNEL_EP : 0) : 0 },
      });
    }
  }

  // Services.
  const written = new Set<number>();
  for (const f of lb.frontends) {
    const list = frontendBackends(f, nodeName);
    const active = list.filter((b) => b.state === "active");
    const inactive = list.filter((b) => b.state !== "active");
    const revNat = numbering.revNat(f);
    const key = { addr: addrBytes16(f.ip), dport: f.fport, proto: protoNumber(f.protocol)!, scope: C.LB_LOOKUP_SCOPE_EXT, family: familyOf(f.ip) };
    const alg = f.svc.maglev ? C.LB_ALG_MAGLEV : C.LB_ALG_RANDOM;
    // Slot 0 (the master) holds the algorithm and the affinity timeout where the slots hold a backend id.
    out.Services.push({
      key: { ...key, backendSlot: 0 },
      value: { backendId: ((alg << 24) | (f.svc.affinityTimeout & 0xffffff)) >>> 0, count: active.length, qcount: inactive.length, revNatIndex: revNat, flags: f.flags, flags2: f.flags2 },
    });
    [...active, ...inactive].forEach((b, i) => {
      const id = numbering.backend(b);
      out.Services.push({ key: { ...key, backendSlot: i + 1 }, value: { backendId: id, revNatIndex: revNat } });
      if (!written.has(id)) {
        written.add(id);
        out.Backends.push({ key: { backendId: id }, value: { addr: addrBytes16(b.ip), port: b.port, proto: protoNumber(b.protocol)!, state: b.state === "active" ? C.BE_STATE_ACTIVE : C.BE_STATE_TERMINATING, family: familyOf(b.ip) } });
      }
    });
    out.RevNat.push({ key: { revNatIndex: revNat }, value: { addr: addrBytes16(f.ip), port: f.fport, family: familyOf(f.ip) } });
    if (f.svc.maglev && active.length) {
      const table = maglev(
        active.map((b) => ({ id: numbering.backend(b), hashString: maglevHashString({ addr: b.ip, port: b.port, protocol: b.protocol }) })),
        cfg.maglevTableSize,
        seeds.murmur,
      );
      for (let slot = 0; slot < table.length; slot++) out.Maglev.push({ key: { revNatIndex: revNat, slot }, value: { backendId: table[slot]! } });
    }
  }
  return out;
}
