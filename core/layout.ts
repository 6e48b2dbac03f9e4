/*
 * The one declaration of every map key and value the datapath uses, and of every map.
 *
 * This file is read as source by codegen/layout (TypeScript compiler API) and never executed or compiled by
 * asc. From it the generator writes:
 *   - core/gen/layout.ts       offsets, sizes and map metadata as AS-compatible constants used by core/;
 *   - host/codecs.gen.ts   TypeScript encoders/decoders for the hosts (sim, datapath, policy, cli);
 *   - bpf/gen/layout.h          C structs and BPF map definitions for the kernel build.
 * A test compiles the C header and checks that sizes and offsets agree with the TypeScript side.
 *
 * Rules (enforced by the generator, which refuses anything else with file:line):
 *   - fields are u8/u16/u32/u64 or Bytes<N>; every field is naturally aligned and padding is explicit
 *     (fields named pad*), the struct size is a multiple of its largest alignment;
 *   - multi-byte fields are in host byte order unless the name ends in `Be` (network byte order);
 *   - addresses are Bytes<16>: IPv6 as is, IPv4 in the first 4 bytes with the remaining 12 zero, next to a
 *     `family` byte (FAMILY_IPV4 = 1, FAMILY_IPV6 = 2, as Cilium's ENDPOINT_KEY_IPV4/IPV6). One layout
 *     serves both families, so there is one code path for both;
 *   - u64 fields are counters: core only touches them through env add64/read64Lo.
 *
 * Field order and meaning follow Cilium where a Cilium map exists (cilium/cilium bpf/lib/*.h and pkg/maps/,
 * as each comment names); where we deviate, the comment says why.
 */

/** A fixed-size byte array inside a layout. */
export type Bytes<N extends number> = { readonly __bytes: N };

/** BPF map kinds that the hosts implement with BPF semantics (fixed capacity, update flags). */
export enum MapType {
  Hash = 1,
  Array = 2,
  LruHash = 9,
  /** One value per CPU (WASM/JS have one CPU); hosts read the sum over CPUs. Counters only. */
  PercpuArray = 6,
  LpmTrie = 11,
  /** BPF ring buffer: no keys; `maxEntries` is its size in bytes (a power of two, page multiple). */
  RingBuf = 27,
}

/**
 * Map handles. core/ names a map only through these; codegen binds each to `ciliate_<name>_v<version>`
 * and the WASM/JS hosts give each its own table. Numbers are stable (they index host tables).
 */
export enum MapId {
  Config = 0,
  Ipcache = 1,
  Endpoints = 2,
  Policy = 3,
  Services = 4,
  Backends = 5,
  RevNat = 6,
  Maglev = 7,
  Affinity = 8,
  Conntrack = 9,
  Snat = 10,
  Metrics = 11,
  Trace = 12,
  Events = 13,
  ProxyListeners = 14,
  FragDatagrams = 15,
}

/* ---------------------------------------------------------------------------------------------------- */
/* Configuration: one array entry the agent or simulator writes at start. Cilium compiles these into the
 * object as constants; we keep them in a map so one build serves every node and scenario. */

export class ConfigValue {
  /** CT_SYN_TIMEOUT, seconds (Cilium default 60). */
  ctSynTimeout: u32;
  /** CT_CONNECTION_LIFETIME_TCP, seconds (8000 since Cilium 1.15). */
  ctTcpLifetime: u32;
  /** CT_CLOSE_TIMEOUT, seconds (10). */
  ctCloseTimeout: u32;
  /** CT_CONNECTION_LIFETIME_NONTCP, seconds (60). */
  ctAnyLifetime: u32;
  /** CT_SERVICE_LIFETIME_TCP, seconds. */
  ctServiceTcpLifetime: u32;
  /** CT_SERVICE_LIFETIME_NONTCP, seconds. */
  ctServiceAnyLifetime: u32;
  /** Seed for flow hashing (random selection): Cilium's HASH_INIT4_SEED, from the Maglev seed bytes 4–7. */
  hashSeed: u32;
  /** Maglev lookup-table size M (a prime from Cilium's list). */
  maglevTableSize: u32;
  /** CONFIG_F_* bits. */
  flags: u32;
  /** Identity of this node's host (normally 1, reserved:host). */
  hostIdentity: u32;
  /** Identity used for destinations missing from the ipcache (2 single-stack; 9/10 dual-stack). */
  worldIpv4Identity: u32;
  worldIpv6Identity: u32;
  /** Address used to SNAT a pod that reaches itself through a service (169.254.42.1 by default). */
  serviceLoopbackIpv4Be: u32;
  /** Cluster id of this node (0 single cluster). */
  clusterId: u16;
  /** Lowest NodePort (30000) and highest (32767); SNAT ports start above the highest. */
  nodePortMin: u16;
  nodePortMax: u16;
  /** With CONFIG_F_EVENTS: also emit about 1 in N forwarded packets as a trace event (0 = none). The
   * choice is a pure hash of the packet, so every engine samples the same packets. */
  traceSampleRate: u16;
  /** This node's IPv4 address: the SNAT source of IPv4 masquerading and NodePort traffic to remote backends. */
  nodeIpv4Be: u32;
  /** ifindex of the node's collect-metadata tunnel device (Cilium's ENCAP_IFINDEX); encapsulated packets
   * are redirected there. */
  tunnelIfindex: u32;
  /** TUNNEL_PROTO_*: 0 = no overlay (packets to remote pods are routed natively), VXLAN or Geneve. */
  tunnelProtocol: u8;
  /** Masquerade exclusion (Cilium's ipv4-native-routing-cidr, IPV4_SNAT_EXCLUSION_DST_CIDR): destinations
   * inside snatExclusionIpv4Be/snatExclusionPrefixLen are never masqueraded; prefix length 0 = none. */
  snatExclusionPrefixLen: u8;
  /** The host endpoint's id (Cilium's HOST_EP_ID): the Policy map entries of host policies (nodeSelector)
   * are keyed by it; used with CONFIG_F_HOST_FIREWALL (core/host-firewall.ts). */
  hostEpId: u16;
  snatExclusionIpv4Be: u32;
  /** This node's IPv6 address (Cilium's IPV6_MASQUERADE, from ipv6-node): the SNAT source of IPv6
   * masquerading and of IPv6 NodePort traffic to remote backends. All zero = none (no IPv6 SNAT). */
  nodeIpv6: Bytes<16>;
  /** IPv6 masquerade exclusion (Cilium's ipv6-native-routing-cidr, IPV6_SNAT_EXCLUSION_DST_CIDR):
   * destinations inside snatExclusionIpv6/snatExclusionIpv6PrefixLen are never masqueraded; 0 = none. */
  snatExclusionIpv6: Bytes<16>;
  snatExclusionIpv6PrefixLen: u8;
  pad0: u8;
  pad1: u16;
}

/* ---------------------------------------------------------------------------------------------------- */
/* ipcache: IP/CIDR → identity (Cilium bpf/lib/eps.h). Key prefixlen counts bits after the prefixlen field:
 * 32 static bits (clusterId, pad1, family) + the CIDR bits, exactly as IPCACHE_PREFIX_LEN. */

export class IpcacheKey {
  prefixlen: u32;
  clusterId: u16;
  pad1: u8;
  family: u8;
  addr: Bytes<16>;
}

/** struct remote_endpoint_info. */
export class IpcacheValue {
  secIdentity: u32;
  tunnelEndpoint: Bytes<16>;
  pad0: u16;
  key: u8;
  /** IPCACHE_F_* bits (skip tunnel 0x1, has tunnel endpoint 0x2, IPv6 tunnel endpoint 0x4, remote cluster 0x8). */
  flags: u8;
}

/* ---------------------------------------------------------------------------------------------------- */
/* Local endpoints (cilium_lxc, Cilium bpf/lib/eps.h): pods on this node. */

export class EndpointKey {
  addr: Bytes<16>;
  family: u8;
  key: u8;
  clusterId: u16;
}

export class EndpointInfo {
  ifindex: u32;
  /** Endpoint id (Cilium's lxc_id); also the policy-map partition. */
  epId: u16;
  pad0: u16;
  /** ENDPOINT_F_* bits (host 0x1, at host netns 0x2). */
  flags: u32;
  secIdentity: u32;
  mac: Bytes<8>;
  nodeMac: Bytes<8>;
}

/* ---------------------------------------------------------------------------------------------------- */
/* Policy (Cilium bpf/lib/policy.h). Cilium keeps one LPM map per endpoint; we keep one LPM map for the node
 * with the endpoint id as the first exact-match field, so that one program and one map serve every endpoint.
 * prefixlen = POLICY_STATIC_PREFIX (56: secLabel, epId, egress) + 8 if the protocol is exact + the
 * port prefix length (0..16). Wildcard identity is identity 0, found by the second lookup. */

export class PolicyKey {
  prefixlen: u32;
  secLabel: u32;
  epId: u16;
  /** 1 = egress, 0 = ingress (Cilium: key.egress). */
  egress: u8;
  protocol: u8;
  /** Destination port, or the ICMP type for ICMP/ICMPv6 rules. */
  dportBe: u16;
  pad0: u16;
}

export class PolicyEntry {
  /** Non-zero: redirect to this L7 proxy port. */
  proxyPortBe: u16;
  /** POLICY_F_* bits: 0x1 deny. */
  flags: u8;
  /** Bits of protocol+port this entry matches (0 = any protocol, 8 = protocol only, 24 = exact port). */
  lpmPrefixLength: u8;
  /** Low 7 bits: auth type (0 none); bit 0x80: has explicit auth type (Cilium's auth_type:7,
   * has_explicit_auth_type:1). */
  authType: u8;
  /** Higher proxy priority wins (Cilium 1.17 proxy_port_priority). */
  proxyPortPriority: u8;
  pad0: u16;
  /** Rule cookie: the host maps it back to the rules that produced this entry. */
  cookie: u32;
}

/* ---------------------------------------------------------------------------------------------------- */
/* Load balancing (Cilium bpf/lib/lb.h). Service slot 0 is the master entry; slots 1..count are active
 * backends and count+1..count+qcount terminating ones. */

export class ServiceKey {
  addr: Bytes<16>;
  dportBe: u16;
  backendSlot: u16;
  /** L4 protocol; 0 with dport 0 is the "known VIP, unknown port" wildcard entry. */
  proto: u8;
  /** LB_LOOKUP_SCOPE_EXT 0, LB_LOOKUP_SCOPE_INT 1. */
  scope: u8;
  family: u8;
  pad0: u8;
}

export class ServiceValue {
  /** Slots: backend id. Master: affinity timeout (low 24 bits, seconds) | algorithm << 24 (1 random, 2 Maglev). */
  backendId: u32;
  count: u16;
  revNatIndex: u16;
  /** SVC_F_* (Cilium's flags byte). */
  flags: u8;
  /** SVC_F2_* (Cilium's flags2 byte). */
  flags2: u8;
  qcount: u16;
}

export class BackendKey {
  backendId: u32;
}

export class Backend {
  addr: Bytes<16>;
  portBe: u16;
  proto: u8;
  /** BE_STATE_*: active 0, terminating 1, quarantined 2, maintenance 3. */
  state: u8;
  clusterId: u16;
  zone: u8;
  family: u8;
}

export class RevNatKey {
  revNatIndex: u16;
  pad0: u16;
}

export class RevNatValue {
  addr: Bytes<16>;
  portBe: u16;
  family: u8;
  pad0: u8;
}

/** Maglev lookup table, flattened: (service, slot) → backend id. Cilium uses a hash of arrays sized at
 * compile time; a flat hash lets the table size be configuration rather than a rebuild. */
export class MaglevKey {
  revNatIndex: u16;
  pad0: u16;
  slot: u32;
}

export class MaglevValue {
  backendId: u32;
}

export class AffinityKey {
  clientAddr: Bytes<16>;
  revNatIndex: u16;
  family: u8;
  pad0: u8;
}

export class AffinityValue {
  /** Monotonic seconds of the last use. */
  lastUsed: u32;
  backendId: u32;
}

/* ---------------------------------------------------------------------------------------------------- */
/* Connection tracking (Cilium bpf/lib/conntrack_map.h). One tuple layout for both families and for TCP and
 * non-TCP: the tuple is stored in the direction of the packet that created the entry (saddr = initiator); a
 * lookup tries the reversed tuple first (REPLY), then the tuple as is (ESTABLISHED). flags carries TUPLE_F_*. */

export class CtTuple {
  daddr: Bytes<16>;
  saddr: Bytes<16>;
  dportBe: u16;
  sportBe: u16;
  nexthdr: u8;
  /** TUPLE_F_OUT 0, TUPLE_F_IN 1, TUPLE_F_RELATED 2, TUPLE_F_SERVICE 4. */
  flags: u8;
  family: u8;
  pad0: u8;
}

export class CtEntry {
  /** Monotonic seconds after which the entry is dead. */
  lifetime: u32;
  srcSecId: u32;
  backendId: u32;
  revNatIndex: u16;
  /** CT_F_* bits: rx closing, tx closing, seen non-SYN, lb loopback, node port, proxy redirect. */
  flags: u16;
  txFlagsSeen: u8;
  rxFlagsSeen: u8;
  proxyPortBe: u16;
  /** The pod's own source port when fromEndpoint rewrote it because the translated tuple was taken
   * (core/nat.ts T1–T6); 0 = not rewritten. Replies get it back as their destination port. */
  origSportBe: u16;
  pad0: u16;
  packets: u64;
  bytes: u64;
}

/** SNAT for NodePort traffic forwarded to a remote backend (Cilium bpf/lib/nat.h). Key: the tuple as it
 * leaves (egress) or the reply tuple as it comes back (ingress); value: the address and port to rewrite to. */
export class SnatValue {
  toAddr: Bytes<16>;
  toPortBe: u16;
  family: u8;
  pad0: u8;
  created: u32;
}

/* ---------------------------------------------------------------------------------------------------- */
/* IPv4 fragments (Cilium bpf/lib/ipv4.h struct ipv4_frag_id / ipv4_frag_l4ports, map IPV4_FRAG_DATAGRAMS):
 * the first fragment of a datagram records its L4 ports under the datagram's identity, the later fragments
 * (which carry no L4 header) read them back (core/frag.ts). */

/** A datagram: the IPv4 addresses, IP identification and protocol shared by all of its fragments. */
export class FragId {
  daddrBe: u32;
  saddrBe: u32;
  idBe: u16;
  proto: u8;
  pad0: u8;
}

/** The L4 fields of a datagram's first fragment: Cilium's sport/dport, plus the ICMP type and code (a
 * ciliate addition: ICMP policy keys on the type, which only the first fragment carries). Ports as
 * PacketInfo holds them (an ICMP echo identifier in sport for a request, dport for a reply). */
export class FragL4Ports {
  sportBe: u16;
  dportBe: u16;
  icmpType: u8;
  icmpCode: u8;
  pad0: u16;
}

/* ---------------------------------------------------------------------------------------------------- */
/* Counters and trace. */

/** Forward/drop counters (cilium_metrics): reason 0 = forwarded, otherwise the drop reason. The Metrics
 * map is a per-CPU array, and this key read as a little-endian u32 (reason | dir << 8) is the index. */
export class MetricsKey {
  reason: u8;
  /** METRIC_DIR_INGRESS 1, METRIC_DIR_EGRESS 2, METRIC_DIR_SERVICE 3. */
  dir: u8;
  pad0: u16;
}

export class MetricsValue {
  packets: u64;
  bytes: u64;
}

/** A proxy port the node's L7 proxy listens on (key: the proxy port, u32 host order). The host writes it
 * when the listener is open and deletes it when it closes; core redirects to a proxy port only while its
 * entry is present (and drops with DROP_PROXY_LOOKUP_FAILED otherwise). Cilium has no such map: its agent
 * keeps the proxy ports in the policy map only while Envoy listens; this map makes that state explicit. */
export class ProxyListenerValue {
  /** POLICY_INGRESS 0 / POLICY_EGRESS 1: the direction of the listener's rules. */
  direction: u8;
  pad0: u8;
  pad1: u16;
}

/** What one invocation of an entry point decided, and why. The entry writes it into the one-entry Trace
 * map; hosts read it after the run (BPF_PROG_TEST_RUN, WASM, JS alike) and turn it into a flow event. */
export class TraceRecord {
  /** CTX_ACT_OK 0, CTX_ACT_DROP 2, CTX_ACT_REDIRECT 7. */
  verdict: u32;
  /** 0 or a DROP_* reason (positive, as Hubble shows it). */
  dropReason: u32;
  srcIdentity: u32;
  dstIdentity: u32;
  /** Policy entry cookies of the deciding egress/ingress entries (0 = none). */
  egressCookie: u32;
  ingressCookie: u32;
  backendId: u32;
  /** Source endpoint id (from-endpoint) or destination endpoint id (to-endpoint); 0 if none. */
  epId: u16;
  revNatIndex: u16;
  /** CT_NEW 0, CT_ESTABLISHED 1, CT_REPLY 2, CT_RELATED 3 (255 = not looked up). */
  ctState: u8;
  /** POLICY_MATCH_* of the egress/ingress decision (0 none). */
  egressMatchType: u8;
  ingressMatchType: u8;
  /** TRACE_F_* bits: which policy checks ran, denied, L7 redirect, DNAT, rev-NAT, SNAT, reply. */
  traceFlags: u8;
  proxyPortBe: u16;
  /** Observation point (TRACE_TO_ENDPOINT …) of the final event. */
  obsPoint: u8;
  family: u8;
  /** Destination before service translation (the VIP) and after. */
  origDaddr: Bytes<16>;
  origDportBe: u16;
  pad0: u16;
  newDportBe: u16;
  pad1: u16;
  newDaddr: Bytes<16>;
  /** Packet summary for flow events: source as the packet arrived, protocol, TCP flags, ICMP type. */
  saddr: Bytes<16>;
  sportBe: u16;
  nexthdr: u8;
  tcpFlags: u8;
  /** Frame length in bytes. */
  len: u32;
  /** Which entry point ran: HOOK_FROM_ENDPOINT 1, HOOK_TO_ENDPOINT 2, HOOK_FROM_NETWORK 3, HOOK_TO_NETWORK 5. */
  hook: u8;
  icmpType: u8;
  pad2: u16;
  /** Overlay: the tunnel key this packet was sent with (encapsulation, obsPoint TRACE_TO_OVERLAY) or
   * arrived with (decapsulation, fromOverlay). tunnelFamily 0 = no tunnel. tunnelPeer is the remote
   * tunnel endpoint (the destination node's address on encap, the sending node's on decap). */
  tunnelId: u32;
  tunnelPeer: Bytes<16>;
  tunnelFamily: u8;
  pad3: u8;
  pad4: u16;
}

/* ---------------------------------------------------------------------------------------------------- */
/* Per-packet working structs (stack-allocated, never stored in a map). Declared here so that C gets the
 * same struct as WASM/JS. */

/** The outer-header metadata of a collect-metadata tunnel device (the parts of the kernel's struct
 * bpf_tunnel_key ciliate uses): the remote endpoint and the tunnel id (VXLAN VNI / Geneve VNI), which
 * carries the source security identity (Cilium bpf/lib/encap.h, bpf/bpf_overlay.c). */
export class TunnelKey {
  remote: Bytes<16>;
  tunnelId: u32;
  family: u8;
  pad0: u8;
  pad1: u16;
}

/** What core/packet.ts learns from the headers of one packet. Ports are host-order numbers here (the
 * packet holds them big-endian). ICMP echo: request sport = identifier, dport = 0; reply sport = 0,
 * dport = identifier, so a reply's reversed tuple is its request's tuple. ICMP errors carry the embedded
 * (inner) header of the packet that caused them, in the inner* fields, as it was sent. */
export class PacketInfo {
  family: u8;
  nexthdr: u8;
  /** Offsets from the start of the frame. */
  l3Off: u16;
  l4Off: u16;
  /** Offset of the L4 checksum (0 when the protocol has none we update). */
  l4CsumOff: u16;
  sport: u16;
  dport: u16;
  tcpFlags: u8;
  icmpType: u8;
  icmpCode: u8;
  /** PKT_F_* bits: fragment, ICMP error with embedded header, VLAN tagged. */
  flags: u8;
  ttl: u8;
  innerNexthdr: u8;
  innerSport: u16;
  innerDport: u16;
  pad0: u16;
  /** Bytes counted for metrics (the frame length). */
  len: u32;
  saddr: Bytes<16>;
  daddr: Bytes<16>;
  innerSaddr: Bytes<16>;
  innerDaddr: Bytes<16>;
}

/** What policyCanAccess (core/policy.ts) decided, for traces and flow events. */
export class PolicyResult {
  /** Cookie of the deciding policy entry (0 = none). */
  cookie: u32;
  /** Proxy port of the deciding entry, host order (0 = no L7 redirect). */
  proxyPort: u16;
  /** POLICY_MATCH_* of the deciding entry (0 none). */
  matchType: u8;
  /** POLICY_LOOKUP_*: 1 identity-specific lookup decided, 2 wildcard-identity lookup, 0 neither matched. */
  lookup: u8;
  /** Effective auth type (0 none) of the decision. */
  authType: u8;
  /** 1 when audit mode turned a drop into an allow (policyAudit). */
  audited: u8;
  pad0: u16;
}

/** What ctLookup (core/conntrack.ts) copies out of the entry it found (all zero on CT_NEW). */
export class CtState {
  backendId: u32;
  srcSecId: u32;
  revNatIndex: u16;
  /** CT_F_* bits of the entry. */
  flags: u16;
  /** Proxy port recorded at creation, host order (0 none). */
  proxyPort: u16;
  /** The pod's original source port of a rewritten connection, host order (0 = not rewritten). */
  origSport: u16;
}

/** What lbServiceBackend (core/lb.ts) chose for a service packet: the backend id and a copy of its
 * Backend value (BACKEND_* offsets apply at `backend`). */
export class LbSelection {
  backendId: u32;
  backend: Bytes<24>;
}

/* ---------------------------------------------------------------------------------------------------- */
/* The maps. `name` gives the BPF name ciliate_<name>_v<version>; `maxEntries` is the default capacity,
 * which hosts may override per map when they create it. */

export const MAPS = [
  { id: MapId.Config, name: "config", version: 2, type: MapType.Array, key: "u32", value: "ConfigValue", maxEntries: 1 },
  { id: MapId.Ipcache, name: "ipcache", version: 1, type: MapType.LpmTrie, key: "IpcacheKey", value: "IpcacheValue", maxEntries: 512000 },
  { id: MapId.Endpoints, name: "lxc", version: 1, type: MapType.Hash, key: "EndpointKey", value: "EndpointInfo", maxEntries: 65535 },
  { id: MapId.Policy, name: "policy", version: 1, type: MapType.LpmTrie, key: "PolicyKey", value: "PolicyEntry", maxEntries: 65536 },
  { id: MapId.Services, name: "lb_services", version: 1, type: MapType.Hash, key: "ServiceKey", value: "ServiceValue", maxEntries: 65536 },
  { id: MapId.Backends, name: "lb_backends", version: 1, type: MapType.Hash, key: "BackendKey", value: "Backend", maxEntries: 65536 },
  { id: MapId.RevNat, name: "lb_reverse_nat", version: 1, type: MapType.Hash, key: "RevNatKey", value: "RevNatValue", maxEntries: 65536 },
  { id: MapId.Maglev, name: "lb_maglev", version: 1, type: MapType.Hash, key: "MaglevKey", value: "MaglevValue", maxEntries: 1048576 },
  { id: MapId.Affinity, name: "lb_affinity", version: 1, type: MapType.LruHash, key: "AffinityKey", value: "AffinityValue", maxEntries: 65536 },
  { id: MapId.Conntrack, name: "ct", version: 1, type: MapType.LruHash, key: "CtTuple", value: "CtEntry", maxEntries: 262144 },
  { id: MapId.Snat, name: "snat", version: 1, type: MapType.LruHash, key: "CtTuple", value: "SnatValue", maxEntries: 131072 },
  { id: MapId.Metrics, name: "metrics", version: 2, type: MapType.PercpuArray, key: "MetricsKey", value: "MetricsValue", maxEntries: 1024 },
  { id: MapId.Trace, name: "trace", version: 1, type: MapType.Array, key: "u32", value: "TraceRecord", maxEntries: 1 },
  { id: MapId.Events, name: "events", version: 1, type: MapType.RingBuf, key: "none", value: "TraceRecord", maxEntries: 262144 },
  { id: MapId.ProxyListeners, name: "proxy_listeners", version: 1, type: MapType.Hash, key: "u32", value: "ProxyListenerValue", maxEntries: 1024 },
  // CILIUM_IPV4_FRAG_MAP_MAX_ENTRIES (8192).
  { id: MapId.FragDatagrams, name: "frag_datagrams", version: 1, type: MapType.LruHash, key: "FragId", value: "FragL4Ports", maxEntries: 8192 },
];
