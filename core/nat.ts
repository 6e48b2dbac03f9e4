/*
 * Address/port rewriting with checksum fix-ups, and source NAT for NodePort traffic that this node
 * forwards to a backend on another node (Cilium bpf/lib/nat.h snat_v4_nat / snat_v4_rev_nat, snat_v6_nat /
 * snat_v6_rev_nat and bpf/lib/nodeport.h). core/lb.ts uses the rewrite helpers for service DNAT and
 * rev-NAT. Both families share one code path and one map: the tuple's family byte keeps them apart, and the
 * node's address of the packet's family (ConfigValue.nodeIpv4 / nodeIpv6) is the SNAT source.
 *
 * Checksums (as Cilium's lb4_xlate / snat_v4_rewrite_headers): an IPv4 address change updates the IPv4
 * header checksum (pktL3CsumReplace, 4 bytes) and, for TCP / UDP, the L4 checksum as a pseudo-header
 * field (pktL4CsumReplace with CSUM_F_PSEUDO_HDR | 4); an IPv6 address change has no L3 checksum and
 * updates the L4 checksum of TCP, UDP and ICMPv6 per 32-bit word. A port change updates the L4 checksum
 * with size 2. UDP always adds CSUM_F_MARK_MANGLED_0 (a zero UDP checksum means "none" and stays zero).
 * ICMPv4's checksum does not cover addresses and is left alone; SCTP (CRC32c) ports are not rewritten.
 *
 * SNAT map (MapId.Snat, key CtTuple, value SnatValue), both directions inserted per mapping:
 *   egress  key = the tuple as the packet leaves before SNAT  {daddr, saddr, dport, sport, TUPLE_F_OUT}
 *           value = {toAddr = the node's address of the family, toPort = allocated port}
 *   ingress key = the reply as it arrives {daddr = node address, saddr = backend, dport = allocated port,
 *           sport = backend port, TUPLE_F_IN}; value = {toAddr = original source, toPort = original port}
 * Port allocation (numbered once):
 *   P1. The range is [nodePortMax + 1, 65535] (NODEPORT_PORT_MIN_NAT..MAX_NAT; 32768.. by default).
 *   P2. The original source port is kept when it is inside the range and free.
 *   P3. Otherwise candidates start at a pure hash of the flow (jhash of source address, ports and
 *       protocol with ConfigValue.hashSeed; the IPv6 flow hash for IPv6) reduced into the range, then step by one, for at most
 *       SNAT_COLLISION_RETRIES (32) candidates — Cilium draws random ports; ciliate hashes so that WASM
 *       and the kernel allocate the same port for the same packet and map state.
 *   P4. A candidate is free when its ingress key can be inserted with BPF_NOEXIST; then the egress
 *       entry is written. None free → DROP_NAT_NO_MAPPING.
 * ICMP echo: the identifier plays the source port (request sport, reply dport; core/packet.ts), so an
 * echo request gets an identifier from the same range by P1–P4 and its reply is restored by it (Cilium
 * snat_v4_nat / snat_v4_rev_nat, case IPPROTO_ICMP; snat_v6_nat / snat_v6_rev_nat, ICMPV6_ECHO_REQUEST /
 * ICMPV6_ECHO_REPLY). ICMPv4's checksum covers no pseudo-header; ICMPv6's does, so the address change is
 * folded into it as for TCP and the identifier change as a 2-byte change.
 *
 * Masquerading (BPF SNAT of pod traffic leaving the cluster; Cilium bpf/lib/nat.h snat_v4_needs_masquerade,
 * called from bpf/bpf_host.c cil_to_netdev), decided by snatNeedsMasquerade and done by snatEgress with
 * the same map and rules P1–P4; replies are restored by snatRevIngress in fromNetwork. Numbered once:
 *   M1. Only with CONFIG_F_MASQUERADE and a node address of the packet's family (ConfigValue.nodeIpv4Be
 *       for IPv4, nodeIpv6 for IPv6): the masquerade address (Cilium's IPV4_MASQUERADE /
 *       IPV6_MASQUERADE). A family without a node address is not masqueraded.
 *   M2. Only TCP, UDP and ICMP / ICMPv6 echo requests; any other protocol or ICMP type leaves
 *       untranslated (Cilium punts unknown protocols and echo replies to the stack). ICMP errors a pod
 *       sends about a masqueraded flow are not translated on the way out (a known gap:
 *       docs/multi-node.md); ICMPv4 errors arriving about one are (snatRevIcmpError, E1–E3), ICMPv6
 *       errors are not (punted to the node's stack, a known gap).
 *   M3. Only packets whose source is a local endpoint (Cilium's local_ep), or the node's own connections
 *       by H1–H5 below; other node traffic is left alone.
 *   M4. Not when the destination is inside the exclusion CIDR of its family (ConfigValue.snatExclusionIpv4Be /
 *       snatExclusionPrefixLen: ipv4-native-routing-cidr, Cilium's IPV4_SNAT_EXCLUSION_DST_CIDR;
 *       snatExclusionIpv6 / snatExclusionIpv6PrefixLen: ipv6-native-routing-cidr,
 *       IPV6_SNAT_EXCLUSION_DST_CIDR).
 *   M5. Only when the destination is outside the cluster: its ipcache identity is world (2, 9, 10, or the
 *       configured world identity of either family for a miss) or a node-local CIDR identity (scope
 *       1 << 24). Pods,
 *       hosts, remote nodes and the other reserved identities are the cluster (Cilium: no SNAT for
 *       remote-node destinations and for destinations covered by the native-routing CIDR).
 *   M6. Not a reply of a connection the outside opened: a live conntrack entry for the reverse flow
 *       made by toEndpoint (TUPLE_F_IN) means the pod is answering (Cilium's is_reply check).
 * The node's own connections (Cilium tracks host connections in the same NAT map, bpf/lib/nat.h, so that
 * pod flows never take a port a node socket uses). The node's stack picks its ports without asking, so:
 *   H1. A packet from the masquerade address (the node's own socket) to a destination M4–M5 would
 *       masquerade, TCP, UDP or an ICMP echo request, with its port (identifier) in the SNAT range (P1),
 *       goes through snatEgress like a pod's: P2 keeps its port when free, which records an identity
 *       mapping {node, port} ↔ {node, port} — from then on P4 never gives that port to a pod's flow to
 *       the same peer.
 *   H2. When a pod's flow already holds the port for that peer, the node's flow is translated to another
 *       port (P3–P4) like a pod's, and its replies are restored by the same reverse SNAT: neither flow
 *       receives the other's replies.
 *   H3. Ports below the range are left alone (a node server's replies, well-known ports): P1 never
 *       gives them to pods.
 *   H4. A reply to an identity mapping is restored to the same address and port (no change) and goes to
 *       the node's stack (fromNetwork outcome 2).
 *   H5. A node-sourced packet that is already a mapping's output (a NodePort flow SNATed by fromNetwork
 *       for a backend outside the cluster, leaving through the device) is not translated again. Pods'
 *       mappings do not count: they are applied here, so their output never comes through again. A node
 *       socket that picks the very address and port such a NodePort mapping uses towards the same
 *       backend cannot be told from it (the packets are identical) and is left alone.
 *
 * Source-port rewrite of a pod's connection whose translated tuple another connection holds (netfilter
 * does the same: get_unique_tuple in the Linux kernel's net/netfilter/nf_nat_core.c; Cilium's tc path has
 * the collision, cilium/cilium Documentation/network/kubernetes/kubeproxy-free.rst "Connection Collisions
 * When a Service Endpoint Is Accessed via Multiple VIPs", and avoids it with socket LB, bpf/bpf_sock.c).
 * Linux hands out a source port per destination 4-tuple, so one pod can use port P towards ClusterIP A and
 * ClusterIP B (or towards their backend directly) at the same time; after DNAT both are {pod:P → backend}.
 * Numbered once:
 *   T1. Only in fromEndpoint, for TCP and UDP (IPv4 and IPv6), when the lookup of the translated tuple says
 *       that its live entry belongs to another connection (core/conntrack.ts rule 6: another rev-NAT index,
 *       0 for a direct connection) and that entry is closing on neither side — a closing entry is a
 *       finished flow whose port the pod reuses, and is re-created (core/pipeline.ts R3).
 *   T2. The connection's port is kept in MapId.Snat under the mapping key {daddr = the destination the pod
 *       sent to (service frontend, or the peer itself), saddr = the pod, dport = that destination's port,
 *       sport = the pod's port, proto, TUPLE_F_OUT | TUPLE_F_SERVICE}, value {toAddr = the pod, toPort =
 *       the new port}. TUPLE_F_SERVICE keeps these keys apart from the SNAT mappings above (P1–P4, M1–M6),
 *       whose keys carry the flow's own tuple. The mapping is looked up only when the translated tuple is
 *       another connection's (rule 6), or has no entry and the packet does not open a connection (not a
 *       bare TCP SYN: a later packet of a moved connection whose neighbour has gone): other packets pay
 *       nothing.
 *   T3. No mapping and a packet that opens a connection (a bare TCP SYN, or any UDP packet): a new port from
 *       the range of P1, starting at the hash of P3 (the translated tuple), stepping by one for at most
 *       SNAT_COLLISION_RETRIES candidates; a candidate is free when the translated tuple with it has no live
 *       conntrack entry (TUPLE_F_OUT) and it is not the pod's own port. None free →
 *       DROP_NAT_NO_MAPPING (Cilium's 167, as P4). A TCP packet without mapping that does not open a
 *       connection keeps R3 (the entry is re-created: there is no port to move a running connection to).
 *   T4. The mapping is written (BPF_ANY: a stale mapping of the same original tuple is replaced) and the
 *       source port rewritten with the L4 checksum fixed (natRewritePort; UDP's zero checksum stays zero).
 *   T5. fromEndpoint creates the moved tuple's conntrack entry with the original port in origSportBe
 *       (core/conntrack.ts ctSetOrigSport). Later packets find the mapping (T2) and get the same port.
 *   T6. Replies found through that entry (toEndpoint, CT_REPLY) get their destination port back after
 *       the reverse NAT; ICMPv4 errors about the connection (CT_RELATED) get the embedded source port back.
 *   T7. The conntrack GC removes the mapping with the entry (natSportPurge); otherwise LRU eviction.
 */
import { memCopy, read8, read16, read32, write8, write16, write32 } from "./env";
import { read16be, read32be, write16be } from "./bytes";
import { stackAlloc } from "./alloc";
import { mapDelete, mapLookup, mapUpdate } from "./maps";
import { Pkt, pktHas, pktLoad8, pktLoad16, pktLoad32, pktStore16, pktStore32, pktL3CsumReplace, pktL4CsumReplace,
  CSUM_F_MARK_MANGLED_0, CSUM_F_PSEUDO_HDR } from "./pkt";
import { configGet } from "./config";
import { ctIsReplyToIngress, ctTupleLive } from "./conntrack";
import { endpointLookup, ipcacheIdentity } from "./ipcache";
import { hashFromTupleV4, hashFromTupleV6 } from "./hash";
import { MapId, PACKET_INFO_FAMILY, PACKET_INFO_NEXTHDR, PACKET_INFO_L3_OFF, PACKET_INFO_L4_OFF,
  PACKET_INFO_L4_CSUM_OFF, PACKET_INFO_SPORT, PACKET_INFO_DPORT, PACKET_INFO_SADDR, PACKET_INFO_DADDR,
  CT_TUPLE_SIZE, CT_TUPLE_DADDR, CT_TUPLE_SADDR, CT_TUPLE_DPORT_BE, CT_TUPLE_SPORT_BE, CT_TUPLE_NEXTHDR,
  CT_TUPLE_FLAGS, CT_TUPLE_FAMILY, SNAT_VALUE_SIZE, SNAT_VALUE_TO_ADDR, SNAT_VALUE_TO_PORT_BE,
  SNAT_VALUE_FAMILY, SNAT_VALUE_CREATED, CONFIG_VALUE_NODE_IPV4_BE, CONFIG_VALUE_NODE_PORT_MAX,
  CONFIG_VALUE_HASH_SEED, CONFIG_VALUE_FLAGS, CONFIG_VALUE_SNAT_EXCLUSION_IPV4_BE, CONFIG_VALUE_SNAT_EXCLUSION_PREFIX_LEN,
  CONFIG_VALUE_WORLD_IPV4_IDENTITY, CONFIG_VALUE_WORLD_IPV6_IDENTITY, CONFIG_VALUE_NODE_IPV6, CONFIG_VALUE_SNAT_EXCLUSION_IPV6,
  CONFIG_VALUE_SNAT_EXCLUSION_IPV6_PREFIX_LEN, PACKET_INFO_ICMP_TYPE, REV_NAT_VALUE_ADDR, REV_NAT_VALUE_PORT_BE, PACKET_INFO_FLAGS, PACKET_INFO_INNER_SADDR, PACKET_INFO_INNER_DADDR,
  PACKET_INFO_INNER_SPORT, PACKET_INFO_INNER_DPORT, PACKET_INFO_INNER_NEXTHDR } from "./gen/layout";
import { FAMILY_IPV4, IPPROTO_TCP, IPPROTO_UDP, IPPROTO_ICMP, IPPROTO_ICMPV6, TUPLE_F_IN, TUPLE_F_OUT, TUPLE_F_SERVICE,
  BPF_ANY, BPF_NOEXIST, ICMP_ECHO, ICMP_ECHOREPLY, ICMPV6_ECHO_REQUEST, ICMPV6_ECHO_REPLY, CONFIG_F_MASQUERADE, ID_WORLD,
  ID_WORLD_IPV4, ID_WORLD_IPV6, ID_SCOPE_LOCAL, PKT_F_NO_L4, PKT_F_ICMP_ERROR,
  IP_OFFSET } from "./constants";
import { DROP_CSUM_L3, DROP_CSUM_L4, DROP_WRITE_ERROR, DROP_NAT_NO_MAPPING, DROP_NAT_UNSUPP_PROTO,
  DROP_NO_CONFIG } from "./drop-reasons";

/** Candidate ports tried before giving up (Cilium SNAT_COLLISION_RETRIES). */
export const SNAT_COLLISION_RETRIES: u32 = 32;
/** snatRevIngress: the packet belongs to no SNAT mapping and was left alone (Cilium NAT_PUNT_TO_STACK). */
export const NAT_PUNT_TO_STACK: i32 = 1;

/**
 * Rewrites the source (dst = false) or destination (dst = true) address of the parsed packet to the 16
 * bytes at `newAddr` (IPv4 in the first 4), fixing the checksums (file comment), and updates PacketInfo.
 * Returns 0, -DROP_WRITE_ERROR (header outside the packet), -DROP_CSUM_L3 or -DROP_CSUM_L4.
 */
export function natRewriteAddr(pkt: Pkt, info: usize, dst: bool, newAddr: usize): i32 {
  const family = read8(info + PACKET_INFO_FAMILY);
  const nexthdr = read8(info + PACKET_INFO_NEXTHDR);
  const l3Off = read16(info + PACKET_INFO_L3_OFF);
  const csumOff = read16(info + PACKET_INFO_L4_CSUM_OFF);
  const udp: bool = nexthdr == IPPROTO_UDP;
  let l4Flags: u32 = CSUM_F_PSEUDO_HDR | 4;
  if (udp) l4Flags = l4Flags | CSUM_F_MARK_MANGLED_0;
  if (family == FAMILY_IPV4) {
    const off: u32 = l3Off + (dst ? 16 : 12);
    if (!pktHas(pkt, off + 4)) return -(<i32>DROP_WRITE_ERROR);
    const from = pktLoad32(pkt, off);
    const to = read32be(newAddr);
    pktStore32(pkt, off, to);
    if (pktL3CsumReplace(pkt, l3Off + 10, from, to, 4) < 0) return -(<i32>DROP_CSUM_L3);
    if (csumOff != 0 && (nexthdr == IPPROTO_TCP || udp)) {
      if (pktL4CsumReplace(pkt, csumOff, from, to, l4Flags) < 0) return -(<i32>DROP_CSUM_L4);
    }
  } else {
    const off: u32 = l3Off + (dst ? 24 : 8);
    if (!pktHas(pkt, off + 16)) return -(<i32>DROP_WRITE_ERROR);
    const l4: bool = csumOff != 0 && (nexthdr == IPPROTO_TCP || udp || nexthdr == IPPROTO_ICMPV6);
    for (let i: u32 = 0; i < 4; i++) {
      const from = pktLoad32(pkt, off + (i << 2));
      const to = read32be(newAddr + (i << 2));
      pktStore32(pkt, off + (i << 2), to);
      if (l4) {
        if (pktL4CsumReplace(pkt, csumOff, from, to, l4Flags) < 0) return -(<i32>DROP_CSUM_L4);
      }
    }
  }
  memCopy(info + (dst ? PACKET_INFO_DADDR : PACKET_INFO_SADDR), newAddr, 16);
  return 0;
}

/**
 * Rewrites the source (dst = false) or destination (dst = true) port of a TCP or UDP packet to `port`
 * (host order) with the L4 checksum fix-up, and updates PacketInfo. Other protocols are left alone.
 * Returns 0, -DROP_WRITE_ERROR or -DROP_CSUM_L4.
 */
export function natRewritePort(pkt: Pkt, info: usize, dst: bool, port: u32): i32 {
  const nexthdr = read8(info + PACKET_INFO_NEXTHDR);
  if (nexthdr != IPPROTO_TCP && nexthdr != IPPROTO_UDP) return 0;
  const to: u32 = port & 0xffff;
  // A later IPv4 fragment has no L4 header: the first fragment's rewrite covers the datagram.
  if (noL4(info)) {
    write16(info + (dst ? PACKET_INFO_DPORT : PACKET_INFO_SPORT), to);
    return 0;
  }
  const off: u32 = read16(info + PACKET_INFO_L4_OFF) + (dst ? 2 : 0);
  if (!pktHas(pkt, off + 2)) return -(<i32>DROP_WRITE_ERROR);
  const from = pktLoad16(pkt, off);
  pktStore16(pkt, off, to);
  const csumOff = read16(info + PACKET_INFO_L4_CSUM_OFF);
  if (csumOff != 0) {
    let flags: u32 = 2;
    if (nexthdr == IPPROTO_UDP) flags = flags | CSUM_F_MARK_MANGLED_0;
    if (pktL4CsumReplace(pkt, csumOff, from, to, flags) < 0) return -(<i32>DROP_CSUM_L4);
  }
  write16(info + (dst ? PACKET_INFO_DPORT : PACKET_INFO_SPORT), to);
  return 0;
}

/**
 * Rewrites the identifier of an ICMPv4 or ICMPv6 echo request or reply to `id` (host order) with the ICMP
 * checksum fix-up — a 2-byte change inside the message: ICMPv6's pseudo-header holds no identifier —, and
 * updates PacketInfo's port that carries it (request sport, reply dport).
 * Returns 0, -DROP_WRITE_ERROR or -DROP_CSUM_L4.
 */
function natRewriteIcmpId(pkt: Pkt, info: usize, id: u32): i32 {
  const to: u32 = id & 0xffff;
  const type = read8(info + PACKET_INFO_ICMP_TYPE);
  const request = read8(info + PACKET_INFO_NEXTHDR) == IPPROTO_ICMP ? type == ICMP_ECHO : type == ICMPV6_ECHO_REQUEST;
  if (!noL4(info)) {
    const off: u32 = read16(info + PACKET_INFO_L4_OFF) + 4;
    if (!pktHas(pkt, off + 2)) return -(<i32>DROP_WRITE_ERROR);
    const from = pktLoad16(pkt, off);
    pktStore16(pkt, off, to);
    if (pktL4CsumReplace(pkt, read16(info + PACKET_INFO_L4_CSUM_OFF), from, to, 2) < 0) return -(<i32>DROP_CSUM_L4);
  }
  write16(info + (request ? PACKET_INFO_SPORT : PACKET_INFO_DPORT), to);
  return 0;
}

/** A later IPv4 fragment (core/frag.ts F3): ports are known, but there is no L4 header to rewrite. */
function noL4(info: usize): bool {
  return (read8(info + PACKET_INFO_FLAGS) & PKT_F_NO_L4) != 0;
}

/**
 * Rewrites the packet embedded in an ICMPv4 error (the datagram the error is about; RFC 5508 section 4.2,
 * Cilium bpf/lib/nat.h snat_v4_rev_nat_handle_icmp_error): its source (dst = false) or destination
 * (dst = true) address becomes the 4 bytes at `newAddr`, and its port — the TCP/UDP port on that side, or
 * the identifier of an embedded ICMP echo — becomes `port` (host order). Fix-ups: the embedded IPv4
 * header checksum, and the ICMP checksum for every changed byte (it covers the embedded bytes, no
 * pseudo-header). The embedded L4 checksum is left alone, as Cilium does: it covers a datagram the error
 * carries only the start of, and receivers do not check it. PacketInfo's inner* fields are updated.
 * Returns 0, -DROP_WRITE_ERROR, -DROP_CSUM_L3 or -DROP_CSUM_L4.
 */
export function natRewriteIcmpErrorInner(pkt: Pkt, info: usize, dst: bool, newAddr: usize, port: u32): i32 {
  const icmpCsum: u32 = read16(info + PACKET_INFO_L4_CSUM_OFF);
  const inner: u32 = read16(info + PACKET_INFO_L4_OFF) + 8;
  if (!pktHas(pkt, inner + 20)) return -(<i32>DROP_WRITE_ERROR);
  const ihl: u32 = (pktLoad8(pkt, inner) & 0xf) << 2;
  const aoff: u32 = inner + (dst ? 16 : 12);
  const from = pktLoad32(pkt, aoff);
  const to = read32be(newAddr);
  const oldCs = pktLoad16(pkt, inner + 10);
  pktStore32(pkt, aoff, to);
  if (pktL3CsumReplace(pkt, inner + 10, from, to, 4) < 0) return -(<i32>DROP_CSUM_L3);
  if (pktL4CsumReplace(pkt, icmpCsum, from, to, 4) < 0) return -(<i32>DROP_CSUM_L4);
  if (pktL4CsumReplace(pkt, icmpCsum, oldCs, pktLoad16(pkt, inner + 10), 2) < 0) return -(<i32>DROP_CSUM_L4);
  memCopy(info + (dst ? PACKET_INFO_INNER_DADDR : PACKET_INFO_INNER_SADDR), newAddr, 4);
  // Ports: only when the embedded datagram starts here (not a later fragment) and has them.
  const proto = read8(info + PACKET_INFO_INNER_NEXTHDR);
  if ((pktLoad16(pkt, inner + 6) & IP_OFFSET) != 0) return 0;
  let poff: u32 = 0;
  if (proto == IPPROTO_TCP || proto == IPPROTO_UDP) poff = inner + ihl + (dst ? 2 : 0);
  else if (proto == IPPROTO_ICMP) poff = inner + ihl + 4;
  else return 0;
  if (!pktHas(pkt, poff + 2)) return -(<i32>DROP_WRITE_ERROR);
  const pfrom = pktLoad16(pkt, poff);
  const pto: u32 = port & 0xffff;
  pktStore16(pkt, poff, pto);
  if (pktL4CsumReplace(pkt, icmpCsum, pfrom, pto, 2) < 0) return -(<i32>DROP_CSUM_L4);
  write16(info + (dst ? PACKET_INFO_INNER_DPORT : PACKET_INFO_INNER_SPORT), pto);
  return 0;
}

/** M2: true for the packets snatEgress / snatRevIngress translate, either family: TCP, UDP, and the echo
 * of the family's ICMP — a request on the way out (`request`), a reply on the way back (Cilium snat_v4_nat
 * / snat_v6_nat: ICMP_ECHO / ICMPV6_ECHO_REQUEST). */
function snatProto(info: usize, request: bool): bool {
  const nexthdr = read8(info + PACKET_INFO_NEXTHDR);
  if (nexthdr == IPPROTO_TCP || nexthdr == IPPROTO_UDP) return true;
  const type = read8(info + PACKET_INFO_ICMP_TYPE);
  if (read8(info + PACKET_INFO_FAMILY) == FAMILY_IPV4) return nexthdr == IPPROTO_ICMP && type == (request ? ICMP_ECHO : ICMP_ECHOREPLY);
  return nexthdr == IPPROTO_ICMPV6 && type == (request ? ICMPV6_ECHO_REQUEST : ICMPV6_ECHO_REPLY);
}

/** M1: fills the zeroed 16 bytes at `out` with the node's address of `family` (the masquerade address:
 * ConfigValue.nodeIpv4 or nodeIpv6). Returns false when the node has none of that family. */
function snatNodeAddr(cfg: usize, family: u32, out: usize): bool {
  if (family == FAMILY_IPV4) {
    const ip = read32(cfg + CONFIG_VALUE_NODE_IPV4_BE);
    write32(out, ip);
    return ip != 0;
  }
  memCopy(out, cfg + CONFIG_VALUE_NODE_IPV6, 16);
  return (read32(out) | read32(out + 4) | read32(out + 8) | read32(out + 12)) != 0;
}

/** Whether the addresses at `a` and `b` are equal: the first 4 bytes for IPv4, all 16 for IPv6. */
function addrEqual(a: usize, b: usize, family: u32): bool {
  if (read32(a) != read32(b)) return false;
  if (family == FAMILY_IPV4) return true;
  return read32(a + 4) == read32(b + 4) && read32(a + 8) == read32(b + 8) && read32(a + 12) == read32(b + 12);
}

/** Fills `key` with the packet's tuple (as it travels) and the given direction flag. */
function snatTuple(info: usize, key: usize, dirFlag: u32): void {
  memCopy(key + CT_TUPLE_DADDR, info + PACKET_INFO_DADDR, 16);
  memCopy(key + CT_TUPLE_SADDR, info + PACKET_INFO_SADDR, 16);
  write16be(key + CT_TUPLE_DPORT_BE, read16(info + PACKET_INFO_DPORT));
  write16be(key + CT_TUPLE_SPORT_BE, read16(info + PACKET_INFO_SPORT));
  write8(key + CT_TUPLE_NEXTHDR, read8(info + PACKET_INFO_NEXTHDR));
  write8(key + CT_TUPLE_FLAGS, dirFlag);
  write8(key + CT_TUPLE_FAMILY, read8(info + PACKET_INFO_FAMILY));
}

/**
 * Fills the zeroed `rkey` with the ingress key of a mapping from its egress key `okey` (the flow as it
 * left): the reply as it arrives, {daddr = `toAddr` (16 bytes), saddr = the peer, dport = `toPort` (host
 * order), sport = the peer's port, TUPLE_F_IN}. Used here and by the host-side conntrack GC.
 */
export function snatReplyKey(rkey: usize, okey: usize, toAddr: usize, toPort: u32): void {
  memCopy(rkey + CT_TUPLE_DADDR, toAddr, 16);
  memCopy(rkey + CT_TUPLE_SADDR, okey + CT_TUPLE_DADDR, 16);
  write16be(rkey + CT_TUPLE_DPORT_BE, toPort);
  write16(rkey + CT_TUPLE_SPORT_BE, read16(okey + CT_TUPLE_DPORT_BE));
  write8(rkey + CT_TUPLE_NEXTHDR, read8(okey + CT_TUPLE_NEXTHDR));
  write8(rkey + CT_TUPLE_FLAGS, TUPLE_F_IN);
  write8(rkey + CT_TUPLE_FAMILY, read8(okey + CT_TUPLE_FAMILY));
}

/** Applies an SNAT value to the source (egress) or destination (ingress) of the packet. */
function snatApply(pkt: Pkt, info: usize, v: usize, dst: bool): i32 {
  const addr = stackAlloc(16);
  memCopy(addr, v + SNAT_VALUE_TO_ADDR, 16);
  const port = read16be(v + SNAT_VALUE_TO_PORT_BE);
  const r = natRewriteAddr(pkt, info, dst, addr);
  if (r < 0) return r;
  const nexthdr = read8(info + PACKET_INFO_NEXTHDR);
  if (nexthdr == IPPROTO_ICMP || nexthdr == IPPROTO_ICMPV6) return natRewriteIcmpId(pkt, info, port);
  return natRewritePort(pkt, info, dst, port);
}

/** Whether the first `plen` bits of the network-order addresses at `a` and `b` agree (plen ≤ 128). */
function prefixMatch(a: usize, b: usize, plen: u32): bool {
  for (let i: u32 = 0; i < 4; i++) {
    const base: u32 = i << 5;
    if (plen <= base) return true;
    const bits: u32 = plen - base;
    const mask: u32 = bits >= 32 ? 0xffffffff : u32(0xffffffff << (32 - bits));
    if ((read32be(a + (i << 2)) & mask) != (read32be(b + (i << 2)) & mask)) return false;
  }
  return true;
}

/** M4: the packet's destination is inside the exclusion CIDR of its family (ipv4- / ipv6-native-routing-cidr). */
function snatExcluded(cfg: usize, info: usize, family: u32): bool {
  if (family == FAMILY_IPV4) {
    const plen = read8(cfg + CONFIG_VALUE_SNAT_EXCLUSION_PREFIX_LEN);
    if (plen == 0) return false;
    return prefixMatch(cfg + CONFIG_VALUE_SNAT_EXCLUSION_IPV4_BE, info + PACKET_INFO_DADDR, plen > 32 ? 32 : plen);
  }
  const plen6 = read8(cfg + CONFIG_VALUE_SNAT_EXCLUSION_IPV6_PREFIX_LEN);
  if (plen6 == 0) return false;
  return prefixMatch(cfg + CONFIG_VALUE_SNAT_EXCLUSION_IPV6, info + PACKET_INFO_DADDR, plen6 > 128 ? 128 : plen6);
}

/** M5: an identity outside the cluster (world of either family, or a node-local CIDR identity). */
function identityIsOutside(cfg: usize, id: u32): bool {
  if (id == ID_WORLD || id == ID_WORLD_IPV4 || id == ID_WORLD_IPV6) return true;
  if (id == read32(cfg + CONFIG_VALUE_WORLD_IPV4_IDENTITY) || id == read32(cfg + CONFIG_VALUE_WORLD_IPV6_IDENTITY)) return true;
  return (id >>> 24) == ID_SCOPE_LOCAL;
}

/** Fills `key` with the tuple {daddr, saddr (16-byte fields), dport, sport (host order), proto, flags,
 * family}: the SNAT map's keys as snatEgress writes them. */
function snatKey(key: usize, daddr: usize, saddr: usize, dport: u32, sport: u32, proto: u32, flags: u32, family: u32): void {
  memCopy(key + CT_TUPLE_DADDR, daddr, 16);
  memCopy(key + CT_TUPLE_SADDR, saddr, 16);
  write16be(key + CT_TUPLE_DPORT_BE, dport);
  write16be(key + CT_TUPLE_SPORT_BE, sport);
  write8(key + CT_TUPLE_NEXTHDR, proto);
  write8(key + CT_TUPLE_FLAGS, flags);
  write8(key + CT_TUPLE_FAMILY, family);
}

/**
 * H5: the node-sourced packet `info` is the output of an existing mapping (a NodePort flow SNATed by
 * fromNetwork, leaving through the device): the reply key {node, peer, its port, peer port} exists, its
 * original source is not a local endpoint, and its flow's egress entry translates to exactly this address
 * and port.
 */
function snatAlreadyTranslated(info: usize): bool {
  const family = read8(info + PACKET_INFO_FAMILY);
  const proto = read8(info + PACKET_INFO_NEXTHDR);
  const sport = read16(info + PACKET_INFO_SPORT);
  const dport = read16(info + PACKET_INFO_DPORT);
  const rkey = stackAlloc(CT_TUPLE_SIZE);
  snatKey(rkey, info + PACKET_INFO_SADDR, info + PACKET_INFO_DADDR, sport, dport, proto, TUPLE_F_IN, family);
  const rv = mapLookup(MapId.Snat, rkey);
  if (rv == 0) return false;
  // A pod's masquerade mapping is applied here, at the device: its output never comes back through it.
  if (endpointLookup(rv + SNAT_VALUE_TO_ADDR, family) != 0) return false;
  const okey = stackAlloc(CT_TUPLE_SIZE);
  snatKey(okey, info + PACKET_INFO_DADDR, rv + SNAT_VALUE_TO_ADDR, dport, read16be(rv + SNAT_VALUE_TO_PORT_BE), proto, TUPLE_F_OUT, family);
  const ov = mapLookup(MapId.Snat, okey);
  if (ov == 0) return false;
  return addrEqual(ov + SNAT_VALUE_TO_ADDR, info + PACKET_INFO_SADDR, family) &&
    read16be(ov + SNAT_VALUE_TO_PORT_BE) == read16(info + PACKET_INFO_SPORT);
}

/**
 * Whether the packet `info` (parsed, leaving the node) is masqueraded: rules M1–M6 in the file comment.
 * `cfg` is the ConfigValue (non-zero). Pure: reads the Config, Endpoints, ipcache and conntrack maps,
 * changes nothing. Outcomes: true (the caller runs snatEgress), false (the packet leaves as it is).
 */
export function snatNeedsMasquerade(cfg: usize, info: usize, now: u32): bool {
  // M1.
  if ((read32(cfg + CONFIG_VALUE_FLAGS) & CONFIG_F_MASQUERADE) == 0) return false;
  const family = read8(info + PACKET_INFO_FAMILY);
  const node = stackAlloc(16);
  if (!snatNodeAddr(cfg, family, node)) return false;
  // M2.
  if (!snatProto(info, true)) return false;
  // M3, H1–H3: a pod's packet, or the node's own connection from the masquerade address with a port in
  // the SNAT range.
  const own: bool = addrEqual(info + PACKET_INFO_SADDR, node, family);
  if (own) {
    if (<u32>read16(info + PACKET_INFO_SPORT) <= <u32>read16(cfg + CONFIG_VALUE_NODE_PORT_MAX)) return false;
  } else if (endpointLookup(info + PACKET_INFO_SADDR, family) == 0) return false;
  // M4.
  if (snatExcluded(cfg, info, family)) return false;
  // M5.
  const world = read32(cfg + (family == FAMILY_IPV4 ? CONFIG_VALUE_WORLD_IPV4_IDENTITY : CONFIG_VALUE_WORLD_IPV6_IDENTITY));
  const dstId = ipcacheIdentity(info + PACKET_INFO_DADDR, family, world);
  if (!identityIsOutside(cfg, dstId)) return false;
  // H5.
  if (own && snatAlreadyTranslated(info)) return false;
  // M6.
  return !ctIsReplyToIngress(info, now);
}

/**
 * SNAT of a packet leaving this node — a NodePort packet for a remote backend (after DNAT), or a pod's
 * packet leaving the cluster (masquerading, M1–M6): the source becomes the node's address of the packet's
 * family and an allocated port or ICMP / ICMPv6 echo identifier (rules P1–P4). An existing mapping for
 * the flow is reused.
 * Returns:
 *   0 — translated (PacketInfo holds the new source);
 *   -DROP_NAT_UNSUPP_PROTO — not TCP, UDP or an ICMP / ICMPv6 echo request;
 *   -DROP_NO_CONFIG — no ConfigValue, or no node address of the packet's family (nodeIpv4 0 for IPv4,
 *     nodeIpv6 all zero for IPv6): fails closed rather than forward a packet whose reply cannot return;
 *   -DROP_NAT_NO_MAPPING — no free port among SNAT_COLLISION_RETRIES candidates, or the egress entry
 *     could not be stored;
 *   -DROP_WRITE_ERROR / -DROP_CSUM_L3 / -DROP_CSUM_L4 — rewriting failed.
 */
export function snatEgress(pkt: Pkt, info: usize, now: u32): i32 {
  const family = read8(info + PACKET_INFO_FAMILY);
  const nexthdr = read8(info + PACKET_INFO_NEXTHDR);
  if (!snatProto(info, true)) return -(<i32>DROP_NAT_UNSUPP_PROTO);
  const cfg = configGet();
  if (cfg == 0) return -(<i32>DROP_NO_CONFIG);
  const nodeAddr = stackAlloc(16);
  if (!snatNodeAddr(cfg, family, nodeAddr)) return -(<i32>DROP_NO_CONFIG);
  const okey = stackAlloc(CT_TUPLE_SIZE);
  snatTuple(info, okey, TUPLE_F_OUT);
  const existing = mapLookup(MapId.Snat, okey);
  if (existing != 0) return snatApply(pkt, info, existing, false);

  // P1. Port range.
  const minPort: u32 = read16(cfg + CONFIG_VALUE_NODE_PORT_MAX) + 1;
  if (minPort > 65535) return -(<i32>DROP_NAT_NO_MAPPING);
  const span: u32 = 65536 - minPort;
  const sport = read16(info + PACKET_INFO_SPORT);
  const dport = read16(info + PACKET_INFO_DPORT);
  // P3. Deterministic start: flow hash reduced into the range.
  const seed = read32(cfg + CONFIG_VALUE_HASH_SEED);
  const h = family == FAMILY_IPV4
    ? hashFromTupleV4(read32(info + PACKET_INFO_SADDR), dport, sport, nexthdr, seed)
    : hashFromTupleV6(info + PACKET_INFO_SADDR, dport, sport, nexthdr, seed);
  let cand: u32 = minPort + h % span;
  // P2. Keep the original port when it is in range.
  if (sport >= minPort) cand = sport;

  // Reply key: {daddr = node IP, saddr = backend, dport = candidate, sport = backend port, TUPLE_F_IN}.
  const rkey = stackAlloc(CT_TUPLE_SIZE);
  snatReplyKey(rkey, okey, nodeAddr, 0);
  const rval = stackAlloc(SNAT_VALUE_SIZE);
  memCopy(rval + SNAT_VALUE_TO_ADDR, info + PACKET_INFO_SADDR, 16);
  write16be(rval + SNAT_VALUE_TO_PORT_BE, sport);
  write8(rval + SNAT_VALUE_FAMILY, family);
  write32(rval + SNAT_VALUE_CREATED, now);

  // P4. Claim the first free candidate.
  let found: bool = false;
  for (let i: u32 = 0; i < SNAT_COLLISION_RETRIES; i++) {
    write16be(rkey + CT_TUPLE_DPORT_BE, cand);
    if (mapUpdate(MapId.Snat, rkey, rval, BPF_NOEXIST) == 0) {
      found = true;
      break;
    }
    cand = cand >= 65535 ? minPort : cand + 1;
  }
  if (!found) return -(<i32>DROP_NAT_NO_MAPPING);

  const oval = stackAlloc(SNAT_VALUE_SIZE);
  memCopy(oval + SNAT_VALUE_TO_ADDR, nodeAddr, 16);
  write16be(oval + SNAT_VALUE_TO_PORT_BE, cand);
  write8(oval + SNAT_VALUE_FAMILY, family);
  write32(oval + SNAT_VALUE_CREATED, now);
  if (mapUpdate(MapId.Snat, okey, oval, BPF_ANY) != 0) {
    mapDelete(MapId.Snat, rkey);
    return -(<i32>DROP_NAT_NO_MAPPING);
  }
  return snatApply(pkt, info, oval, false);
}

/**
 * Reverse SNAT of a reply arriving at this node for a mapping made by snatEgress: the destination
 * becomes the original client address and port (or ICMP echo identifier).
 * Returns:
 *   0 — translated (PacketInfo holds the new destination);
 *   NAT_PUNT_TO_STACK (1) — no mapping for this packet (or not TCP/UDP/ICMP or ICMPv6 echo reply): left
 *     untouched;
 *   -DROP_WRITE_ERROR / -DROP_CSUM_L3 / -DROP_CSUM_L4 — rewriting failed.
 */
export function snatRevIngress(pkt: Pkt, info: usize): i32 {
  if ((read8(info + PACKET_INFO_FLAGS) & PKT_F_ICMP_ERROR) != 0) return snatRevIcmpError(pkt, info);
  if (!snatProto(info, false)) return NAT_PUNT_TO_STACK;
  const key = stackAlloc(CT_TUPLE_SIZE);
  snatTuple(info, key, TUPLE_F_IN);
  const v = mapLookup(MapId.Snat, key);
  if (v == 0) return NAT_PUNT_TO_STACK;
  return snatApply(pkt, info, v, true);
}

/**
 * Reverse SNAT of an ICMPv4 error about a flow snatEgress translated (fragmentation needed, port
 * unreachable, time exceeded, … sent to the node's address by a router or the peer; Cilium bpf/lib/nat.h
 * snat_v4_rev_nat_handle_icmp_error). Numbered once:
 *   E1. The embedded packet is the flow's packet as it left: {saddr = node, sport = allocated port (or
 *       echo identifier), daddr = peer}. Its mapping is the reply key {daddr = embedded saddr, saddr =
 *       embedded daddr, dport = embedded sport, sport = embedded dport, TUPLE_F_IN} (snatReplyKey).
 *   E2. Only when the error is addressed to the embedded source (the node: errors go to the sender of
 *       the offending datagram) and the embedded protocol is TCP, UDP or an ICMP echo request.
 *   E3. The outer destination and the embedded source address and port become the mapping's original
 *       source (natRewriteIcmpErrorInner), so the pod receives an error about its own packet.
 * Returns snatRevIngress's outcomes (NAT_PUNT_TO_STACK when E1/E2 find nothing).
 */
function snatRevIcmpError(pkt: Pkt, info: usize): i32 {
  if (read8(info + PACKET_INFO_FAMILY) != FAMILY_IPV4) return NAT_PUNT_TO_STACK;
  // E2.
  const proto = read8(info + PACKET_INFO_INNER_NEXTHDR);
  if (proto != IPPROTO_TCP && proto != IPPROTO_UDP && proto != IPPROTO_ICMP) return NAT_PUNT_TO_STACK;
  if (read32(info + PACKET_INFO_DADDR) != read32(info + PACKET_INFO_INNER_SADDR)) return NAT_PUNT_TO_STACK;
  // E1.
  const key = stackAlloc(CT_TUPLE_SIZE);
  snatKey(key, info + PACKET_INFO_INNER_SADDR, info + PACKET_INFO_INNER_DADDR, read16(info + PACKET_INFO_INNER_SPORT),
    read16(info + PACKET_INFO_INNER_DPORT), proto, TUPLE_F_IN, FAMILY_IPV4);
  const v = mapLookup(MapId.Snat, key);
  if (v == 0) return NAT_PUNT_TO_STACK;
  // E3.
  const addr = stackAlloc(16);
  memCopy(addr, v + SNAT_VALUE_TO_ADDR, 16);
  const r = natRewriteAddr(pkt, info, true, addr);
  if (r < 0) return r;
  return natRewriteIcmpErrorInner(pkt, info, false, addr, read16be(v + SNAT_VALUE_TO_PORT_BE));
}

/** T1: the protocols whose source port can move (TCP and UDP, either family). */
function sportProto(info: usize): bool {
  const nexthdr = read8(info + PACKET_INFO_NEXTHDR);
  return nexthdr == IPPROTO_TCP || nexthdr == IPPROTO_UDP;
}

/** T2: fills `key` with the mapping key of the pod's connection: the packet's source and protocol with the
 * destination the pod sent to (`origDaddr`, 16 bytes, and `origDport`, host order). */
function sportMapKey(key: usize, info: usize, origDaddr: usize, origDport: u32): void {
  memCopy(key + CT_TUPLE_DADDR, origDaddr, 16);
  memCopy(key + CT_TUPLE_SADDR, info + PACKET_INFO_SADDR, 16);
  write16be(key + CT_TUPLE_DPORT_BE, origDport);
  write16be(key + CT_TUPLE_SPORT_BE, read16(info + PACKET_INFO_SPORT));
  write8(key + CT_TUPLE_NEXTHDR, read8(info + PACKET_INFO_NEXTHDR));
  write8(key + CT_TUPLE_FLAGS, TUPLE_F_OUT | TUPLE_F_SERVICE);
  write8(key + CT_TUPLE_FAMILY, read8(info + PACKET_INFO_FAMILY));
}

/**
 * T2: the source port the pod's connection (packet `info` before any port rewrite, sent to `origDaddr`:
 * `origDport`) was moved to. Pure (reads MapId.Snat). Outcomes: the port (host order), or 0 — no mapping,
 * or not TCP/UDP.
 */
export function natSportLookup(info: usize, origDaddr: usize, origDport: u32): u32 {
  if (!sportProto(info)) return 0;
  const key = stackAlloc(CT_TUPLE_SIZE);
  sportMapKey(key, info, origDaddr, origDport);
  const v = mapLookup(MapId.Snat, key);
  if (v == 0) return 0;
  return read16be(v + SNAT_VALUE_TO_PORT_BE);
}

/**
 * T3–T4: a free source port for the pod's new connection (packet `info`, already DNATed, sent to
 * `origDaddr`:`origDport`), recorded in the mapping. `cfg` is the ConfigValue (non-zero). Does not touch
 * the packet (the caller rewrites it with natRewritePort). Outcomes:
 *   the port (> 0, host order) — free by T3, mapping written;
 *   -DROP_NAT_UNSUPP_PROTO — not TCP or UDP;
 *   -DROP_NAT_NO_MAPPING — no free candidate among SNAT_COLLISION_RETRIES, an empty range, or the mapping
 *     could not be stored (MapId.Snat full).
 */
export function natSportAllocate(cfg: usize, info: usize, origDaddr: usize, origDport: u32, now: u32): i32 {
  if (!sportProto(info)) return -(<i32>DROP_NAT_UNSUPP_PROTO);
  const nexthdr = read8(info + PACKET_INFO_NEXTHDR);
  const sport = read16(info + PACKET_INFO_SPORT);
  const dport = read16(info + PACKET_INFO_DPORT);
  // P1. Port range.
  const minPort: u32 = read16(cfg + CONFIG_VALUE_NODE_PORT_MAX) + 1;
  if (minPort > 65535) return -(<i32>DROP_NAT_NO_MAPPING);
  const span: u32 = 65536 - minPort;
  // P3. Deterministic start: hash of the translated tuple.
  const seed = read32(cfg + CONFIG_VALUE_HASH_SEED);
  const h = read8(info + PACKET_INFO_FAMILY) == FAMILY_IPV4
    ? hashFromTupleV4(read32(info + PACKET_INFO_SADDR), dport, sport, nexthdr, seed)
    : hashFromTupleV6(info + PACKET_INFO_SADDR, dport, sport, nexthdr, seed);
  let cand: u32 = minPort + h % span;
  const ckey = stackAlloc(CT_TUPLE_SIZE);
  snatTuple(info, ckey, TUPLE_F_OUT);
  let found: bool = false;
  for (let i: u32 = 0; i < SNAT_COLLISION_RETRIES; i++) {
    write16be(ckey + CT_TUPLE_SPORT_BE, cand);
    if (cand != sport && !ctTupleLive(ckey, now)) {
      found = true;
      break;
    }
    cand = cand >= 65535 ? minPort : cand + 1;
  }
  if (!found) return -(<i32>DROP_NAT_NO_MAPPING);
  // T4.
  const key = stackAlloc(CT_TUPLE_SIZE);
  sportMapKey(key, info, origDaddr, origDport);
  const val = stackAlloc(SNAT_VALUE_SIZE);
  memCopy(val + SNAT_VALUE_TO_ADDR, info + PACKET_INFO_SADDR, 16);
  write16be(val + SNAT_VALUE_TO_PORT_BE, cand);
  write8(val + SNAT_VALUE_FAMILY, read8(info + PACKET_INFO_FAMILY));
  write32(val + SNAT_VALUE_CREATED, now);
  if (mapUpdate(MapId.Snat, key, val, BPF_ANY) != 0) return -(<i32>DROP_NAT_NO_MAPPING);
  return <i32>cand;
}

/**
 * T7: removes the mapping of a moved connection whose conntrack entry (key `ctKey`, an egress entry with
 * the moved port as its source port) goes away. `frontend` is the RevNatValue of the entry's service (the
 * destination the pod sent to), or 0 when it sent to the peer itself; `origSport` is the entry's original
 * port. A mapping that now names another port (a newer connection of the same original tuple) is kept.
 * Host-side (the conntrack GC). Outcomes: none.
 */
export function natSportPurge(ctKey: usize, frontend: usize, origSport: u32): void {
  const key = stackAlloc(CT_TUPLE_SIZE);
  memCopy(key, ctKey, CT_TUPLE_SIZE);
  if (frontend != 0) {
    memCopy(key + CT_TUPLE_DADDR, frontend + REV_NAT_VALUE_ADDR, 16);
    write16(key + CT_TUPLE_DPORT_BE, read16(frontend + REV_NAT_VALUE_PORT_BE));
  }
  write16be(key + CT_TUPLE_SPORT_BE, origSport);
  write8(key + CT_TUPLE_FLAGS, TUPLE_F_OUT | TUPLE_F_SERVICE);
  const v = mapLookup(MapId.Snat, key);
  if (v == 0) return;
  if (read16(v + SNAT_VALUE_TO_PORT_BE) != read16(ctKey + CT_TUPLE_SPORT_BE)) return;
  mapDelete(MapId.Snat, key);
}
