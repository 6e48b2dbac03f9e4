/*
 * Packet parsing: reads the Ethernet, VLAN, IPv4/IPv6 (with IPv6 extension headers) and L4 headers of one
 * frame into a PacketInfo struct (core/layout.ts), or says why the frame cannot be handled. Every later
 * stage (service lookup, conntrack, policy, NAT) works from PacketInfo and the offsets it records, so this
 * is the only place that walks headers.
 *
 * It mirrors what Cilium does piecemeal across bpf/lib/eth.h (ethertype check), bpf/lib/ipv4.h (header
 * length, fragment test: the first fragment is parsed, a later one has no L4 header), bpf/lib/ipv6.h (bounded extension-header walk),
 * bpf/lib/conntrack.h (port extraction, ICMP echo identifiers, ICMP errors as related traffic) and
 * bpf/lib/nat.h (the header embedded in an ICMP error). Where ciliate's drop reason differs from the
 * one Cilium would report, the comment at that rule says so.
 *
 * Bounds: every header is checked with pktHas before it is read, and L4 headers are additionally
 * required to lie inside the IP datagram (its total/payload length), so trailing Ethernet padding never
 * counts as header bytes.
 */
import { memFill, read8, write8, write16, write32 } from "./env";
import { Pkt, pktCopyOut, pktHas, pktLen, pktLoad16, pktLoad8 } from "./pkt";
import {
  ETH_HLEN,
  ETH_P_8021AD,
  ETH_P_8021Q,
  ETH_P_IP,
  ETH_P_IPV6,
  FAMILY_IPV4,
  FAMILY_IPV6,
  ICMP_DEST_UNREACH,
  ICMP_ECHO,
  ICMP_ECHOREPLY,
  ICMP_PARAMETERPROB,
  ICMP_TIME_EXCEEDED,
  ICMPV6_DEST_UNREACH,
  ICMPV6_ECHO_REPLY,
  ICMPV6_ECHO_REQUEST,
  ICMPV6_PARAMPROB,
  ICMPV6_PKT_TOOBIG,
  ICMPV6_TIME_EXCEED,
  IP_MF,
  IP_OFFSET,
  IPPROTO_ICMP,
  IPPROTO_ICMPV6,
  IPPROTO_SCTP,
  IPPROTO_TCP,
  IPPROTO_UDP,
  IPV4_HLEN_MIN,
  IPV6_HLEN,
  IPV6_MAX_HEADERS,
  NEXTHDR_AUTH,
  NEXTHDR_DEST,
  NEXTHDR_FRAGMENT,
  NEXTHDR_HOP,
  NEXTHDR_NONE,
  NEXTHDR_ROUTING,
  PKT_F_FRAGMENT,
  PKT_F_NO_L4,
  PKT_F_ICMP_ERROR,
  PKT_F_VLAN,
  VLAN_HLEN,
} from "./constants";
import {
  DROP_CT_INVALID_HDR,
  DROP_FRAG_NOSUPPORT,
  DROP_INVALID,
  DROP_INVALID_EXTHDR,
  DROP_UNKNOWN_L3,
  DROP_UNKNOWN_L4,
} from "./drop-reasons";
import {
  PACKET_INFO_DADDR,
  PACKET_INFO_DPORT,
  PACKET_INFO_FAMILY,
  PACKET_INFO_FLAGS,
  PACKET_INFO_ICMP_CODE,
  PACKET_INFO_ICMP_TYPE,
  PACKET_INFO_INNER_DADDR,
  PACKET_INFO_INNER_DPORT,
  PACKET_INFO_INNER_NEXTHDR,
  PACKET_INFO_INNER_SADDR,
  PACKET_INFO_INNER_SPORT,
  PACKET_INFO_L3_OFF,
  PACKET_INFO_L4_CSUM_OFF,
  PACKET_INFO_L4_OFF,
  PACKET_INFO_LEN,
  PACKET_INFO_NEXTHDR,
  PACKET_INFO_SADDR,
  PACKET_INFO_SIZE,
  PACKET_INFO_SPORT,
  PACKET_INFO_TCP_FLAGS,
  PACKET_INFO_TTL,
} from "./gen/layout";

/** Number of VLAN tags (802.1Q / 802.1ad) the parser looks through. */
const MAX_VLAN_TAGS: u32 = 2;

/** True when bytes [0, end) are inside the packet and `end` does not pass `limit` (the end of the IP
 * datagram). */
function hasWithin(pkt: Pkt, end: u32, limit: u32): bool {
  if (end > limit) return false;
  return pktHas(pkt, end);
}

function setInfoFlag(info: usize, flag: u32): void {
  write8(info + PACKET_INFO_FLAGS, read8(info + PACKET_INFO_FLAGS) | flag);
}

/**
 * Parses the headers of the frame `pkt` into the PacketInfo at `info`. `info` is fully overwritten: it is
 * zeroed first, then `len` is set to the frame length and every field learned is filled in. On a drop the
 * fields learned before the failing header are kept (they feed the trace record). Ports are host-order
 * numbers; addresses are 16 bytes with an IPv4 address in the first 4 and zeros after.
 *
 * Returns:
 *  1. 0 — parsed: family, nexthdr, l3Off, l4Off, ttl, saddr, daddr are set, and per protocol:
 *     TCP sport/dport, tcpFlags (byte 13), l4CsumOff = l4Off + 16; UDP sport/dport, l4CsumOff = l4Off + 6;
 *     SCTP sport/dport, l4CsumOff = 0 (CRC32c, not updated incrementally); ICMPv4/ICMPv6 icmpType,
 *     icmpCode, l4CsumOff = l4Off + 2, echo request: sport = identifier, dport = 0, echo reply: sport = 0,
 *     dport = identifier, errors (v4 3/11/12, v6 1/2/3/4): PKT_F_ICMP_ERROR and the inner* fields, other
 *     types (e.g. NDP): ports 0; any other L4 protocol: ports 0 and l4CsumOff 0 (conntrack decides).
 *     PKT_F_VLAN is set when one or two VLAN tags were skipped.
 *  2. DROP_INVALID (134) — truncated L2/L3: frame shorter than the Ethernet header or a VLAN tag; IPv4
 *     header truncated, version not 4, IHL < 5, total length < IHL * 4 or larger than the bytes present
 *     after L2; IPv6 header truncated, version not 6, payload length larger than the bytes present;
 *     ICMP error whose embedded IP header (or the first 8 bytes of its TCP/UDP/SCTP/ICMP header) is
 *     truncated or has the wrong version / IHL.
 *  3. DROP_UNKNOWN_L3 (139) — ethertype other than IPv4/IPv6 after at most two VLAN tags (ARP, a third
 *     VLAN tag, 802.3 length fields, ...).
 *  4. IPv4 fragments (MF set or a non-zero offset) set PKT_F_FRAGMENT. The first one (offset 0) is parsed
 *     as in rule 1 (and may end in rules 2 and 7); a later one returns 0 with PKT_F_NO_L4, l4Off at its
 *     payload and ports, ICMP fields and l4CsumOff 0: core/frag.ts fills the ports in from the first
 *     fragment. DROP_FRAG_NOSUPPORT (157) — an IPv6 fragment header (Cilium without IPv6 fragment
 *     tracking); PKT_F_FRAGMENT is set and addresses are filled.
 *  5. DROP_INVALID_EXTHDR (156) — an IPv6 extension header truncated (outside the packet or the IPv6
 *     payload), or more than IPV6_MAX_HEADERS (4) extension headers.
 *  6. DROP_UNKNOWN_L4 (142) — IPv6 "no next header" (59) after the extension headers.
 *  7. DROP_CT_INVALID_HDR (135) — truncated L4 header: TCP shorter than 20 bytes, data offset < 5 or the
 *     options past the datagram; UDP < 8 bytes; SCTP < 12 bytes; ICMP/ICMPv6 < 8 bytes.
 */
export function parsePacket(pkt: Pkt, info: usize): u32 {
  memFill(info, 0, PACKET_INFO_SIZE);
  const len = pktLen(pkt);
  write32(info + PACKET_INFO_LEN, len);

  // Rule 2: Ethernet header. (Cilium's validate_ethertype in bpf/lib/eth.h reports a short frame and an
  // 802.3 length field as DROP_UNSUPPORTED_L2; ciliate reports 134 and 139 as specified.)
  if (!pktHas(pkt, ETH_HLEN)) return DROP_INVALID;
  let etherOff: u32 = ETH_HLEN - 2;
  let proto = pktLoad16(pkt, etherOff);
  for (let i: u32 = 0; i < MAX_VLAN_TAGS; i++) {
    if (proto != ETH_P_8021Q && proto != ETH_P_8021AD) break;
    setInfoFlag(info, PKT_F_VLAN);
    etherOff += VLAN_HLEN;
    if (!pktHas(pkt, etherOff + 2)) return DROP_INVALID;
    proto = pktLoad16(pkt, etherOff);
  }
  const l3Off = etherOff + 2;
  write16(info + PACKET_INFO_L3_OFF, l3Off);

  if (proto == ETH_P_IP) return parseIpv4(pkt, info, l3Off);
  if (proto == ETH_P_IPV6) return parseIpv6(pkt, info, l3Off);
  // Rule 3: ARP and every other ethertype (bpf_lxc.c's ethertype switch: DROP_UNKNOWN_L3).
  return DROP_UNKNOWN_L3;
}

/** IPv4 header at l3Off, then L4. Outcomes: those of parsePacket for an IPv4 frame (rules 1, 2, 4, 7). */
function parseIpv4(pkt: Pkt, info: usize, l3Off: u32): u32 {
  write8(info + PACKET_INFO_FAMILY, FAMILY_IPV4);
  // Rule 2: fixed header present, version, IHL, options present (bpf/lib/ipv4.h ipv4_hdrlen).
  if (!pktHas(pkt, l3Off + IPV4_HLEN_MIN)) return DROP_INVALID;
  const b0 = pktLoad8(pkt, l3Off);
  if (b0 >>> 4 != 4) return DROP_INVALID;
  const hlen = (b0 & 0xf) << 2;
  if (hlen < IPV4_HLEN_MIN) return DROP_INVALID;
  if (!pktHas(pkt, l3Off + hlen)) return DROP_INVALID;
  // Rule 2: total length covers the header and does not claim more bytes than the frame holds after L2
  // (a shorter one is fine: the rest is Ethernet padding).
  const totLen = pktLoad16(pkt, l3Off + 2);
  if (totLen < hlen) return DROP_INVALID;
  if (totLen > pktLen(pkt) - l3Off) return DROP_INVALID;
  const l3End = l3Off + totLen;

  const nexthdr = pktLoad8(pkt, l3Off + 9);
  write8(info + PACKET_INFO_NEXTHDR, nexthdr);
  write8(info + PACKET_INFO_TTL, pktLoad8(pkt, l3Off + 8));
  pktCopyOut(pkt, l3Off + 12, info + PACKET_INFO_SADDR, 4);
  pktCopyOut(pkt, l3Off + 16, info + PACKET_INFO_DADDR, 4);

  const l4Off = l3Off + hlen;
  write16(info + PACKET_INFO_L4_OFF, l4Off);
  // Rule 4: an IPv4 fragment (bpf/lib/ipv4.h ipv4_is_fragment: MF or a non-zero offset). The first one
  // carries the L4 header and is parsed as usual; a later one has none (ipv4_is_not_first_fragment):
  // its ports are the first fragment's, which core/frag.ts looks up.
  const fragOff = pktLoad16(pkt, l3Off + 6);
  if ((fragOff & (IP_MF | IP_OFFSET)) != 0) {
    setInfoFlag(info, PKT_F_FRAGMENT);
    if ((fragOff & IP_OFFSET) != 0) {
      setInfoFlag(info, PKT_F_NO_L4);
      return 0;
    }
  }
  return parseL4(pkt, info, nexthdr, l4Off, l3End, FAMILY_IPV4);
}

/** True for the extension headers the IPv6 walk steps over or stops at (hop-by-hop, routing, fragment,
 * AH, destination options). */
function isIpv6ExtHdr(nh: u32): bool {
  return nh == NEXTHDR_HOP || nh == NEXTHDR_ROUTING || nh == NEXTHDR_FRAGMENT || nh == NEXTHDR_AUTH ||
    nh == NEXTHDR_DEST;
}

/** IPv6 header at l3Off, extension headers, then L4. Outcomes: those of parsePacket for an IPv6 frame
 * (rules 1, 2, 4, 5, 6, 7). */
function parseIpv6(pkt: Pkt, info: usize, l3Off: u32): u32 {
  write8(info + PACKET_INFO_FAMILY, FAMILY_IPV6);
  // Rule 2: fixed header, version, payload length within the frame.
  if (!pktHas(pkt, l3Off + IPV6_HLEN)) return DROP_INVALID;
  if (pktLoad8(pkt, l3Off) >>> 4 != 6) return DROP_INVALID;
  const payloadLen = pktLoad16(pkt, l3Off + 4);
  if (IPV6_HLEN + payloadLen > pktLen(pkt) - l3Off) return DROP_INVALID;
  const l3End = l3Off + IPV6_HLEN + payloadLen;

  let nh = pktLoad8(pkt, l3Off + 6);
  write8(info + PACKET_INFO_TTL, pktLoad8(pkt, l3Off + 7));
  pktCopyOut(pkt, l3Off + 8, info + PACKET_INFO_SADDR, 16);
  pktCopyOut(pkt, l3Off + 24, info + PACKET_INFO_DADDR, 16);

  // Extension headers: at most IPV6_MAX_HEADERS, as bpf/lib/ipv6.h ipv6_hdrlen_offset. The loop runs
  // one extra round only to detect a fifth extension header.
  let off = l3Off + IPV6_HLEN;
  for (let i: u32 = 0; i <= IPV6_MAX_HEADERS; i++) {
    if (!isIpv6ExtHdr(nh)) break;
    write8(info + PACKET_INFO_NEXTHDR, nh);
    // Rule 5: too many extension headers.
    if (i == IPV6_MAX_HEADERS) return DROP_INVALID_EXTHDR;
    // Rule 4: fragment header (Cilium without IPv6 fragment tracking).
    if (nh == NEXTHDR_FRAGMENT) {
      setInfoFlag(info, PKT_F_FRAGMENT);
      return DROP_FRAG_NOSUPPORT;
    }
    // Rule 5: the 2-byte next-header/length prefix and the whole header must be present. (Cilium reports
    // an unreadable option header as DROP_INVALID; ciliate uses the more specific 156.)
    if (!hasWithin(pkt, off + 2, l3End)) return DROP_INVALID_EXTHDR;
    const hdrLen = pktLoad8(pkt, off + 1);
    // AH counts 4-byte units minus 2 (RFC 4302); the others 8-byte units minus 1 (RFC 8200).
    const extLen = nh == NEXTHDR_AUTH ? (hdrLen + 2) << 2 : (hdrLen + 1) << 3;
    if (!hasWithin(pkt, off + extLen, l3End)) return DROP_INVALID_EXTHDR;
    nh = pktLoad8(pkt, off);
    off += extLen;
  }
  write8(info + PACKET_INFO_NEXTHDR, nh);
  write16(info + PACKET_INFO_L4_OFF, off);
  // Rule 6: nothing follows. (Cilium's walk reports 59 as DROP_INVALID_EXTHDR; ciliate uses 142.)
  if (nh == NEXTHDR_NONE) return DROP_UNKNOWN_L4;
  return parseL4(pkt, info, nh, off, l3End, FAMILY_IPV6);
}

/** Records the ports of a TCP/UDP/SCTP header whose first 4 bytes were already checked. */
function recordPorts(pkt: Pkt, info: usize, l4Off: u32): void {
  write16(info + PACKET_INFO_SPORT, pktLoad16(pkt, l4Off));
  write16(info + PACKET_INFO_DPORT, pktLoad16(pkt, l4Off + 2));
}

/** The L4 header at l4Off, which must end by l3End. Outcomes: rule 1, rule 7 and (ICMP errors) rule 2. */
function parseL4(pkt: Pkt, info: usize, nexthdr: u32, l4Off: u32, l3End: u32, family: u32): u32 {
  // Rule 7: truncated L4 headers are what Cilium's conntrack lookup reports as DROP_CT_INVALID_HDR
  // (bpf/lib/conntrack.h, reading the ports / ICMP fields).
  if (nexthdr == IPPROTO_TCP) {
    if (!hasWithin(pkt, l4Off + 20, l3End)) return DROP_CT_INVALID_HDR;
    const doff = pktLoad8(pkt, l4Off + 12) >>> 4;
    if (doff < 5) return DROP_CT_INVALID_HDR;
    if (!hasWithin(pkt, l4Off + (doff << 2), l3End)) return DROP_CT_INVALID_HDR;
    recordPorts(pkt, info, l4Off);
    write8(info + PACKET_INFO_TCP_FLAGS, pktLoad8(pkt, l4Off + 13));
    write16(info + PACKET_INFO_L4_CSUM_OFF, l4Off + 16);
    return 0;
  }
  if (nexthdr == IPPROTO_UDP) {
    if (!hasWithin(pkt, l4Off + 8, l3End)) return DROP_CT_INVALID_HDR;
    recordPorts(pkt, info, l4Off);
    write16(info + PACKET_INFO_L4_CSUM_OFF, l4Off + 6);
    return 0;
  }
  if (nexthdr == IPPROTO_SCTP) {
    if (!hasWithin(pkt, l4Off + 12, l3End)) return DROP_CT_INVALID_HDR;
    recordPorts(pkt, info, l4Off);
    // SCTP's CRC32c cannot be updated with the ones'-complement helpers: no checksum offset.
    return 0;
  }
  if ((nexthdr == IPPROTO_ICMP && family == FAMILY_IPV4) || (nexthdr == IPPROTO_ICMPV6 && family == FAMILY_IPV6)) {
    if (!hasWithin(pkt, l4Off + 8, l3End)) return DROP_CT_INVALID_HDR;
    const type = pktLoad8(pkt, l4Off);
    write8(info + PACKET_INFO_ICMP_TYPE, type);
    write8(info + PACKET_INFO_ICMP_CODE, pktLoad8(pkt, l4Off + 1));
    write16(info + PACKET_INFO_L4_CSUM_OFF, l4Off + 2);
    const ident = pktLoad16(pkt, l4Off + 4);
    if (family == FAMILY_IPV4) {
      if (type == ICMP_ECHO) write16(info + PACKET_INFO_SPORT, ident);
      else if (type == ICMP_ECHOREPLY) write16(info + PACKET_INFO_DPORT, ident);
      else if (type == ICMP_DEST_UNREACH || type == ICMP_TIME_EXCEEDED || type == ICMP_PARAMETERPROB) {
        setInfoFlag(info, PKT_F_ICMP_ERROR);
        return parseInnerIpv4(pkt, info, l4Off + 8, l3End);
      }
    } else {
      if (type == ICMPV6_ECHO_REQUEST) write16(info + PACKET_INFO_SPORT, ident);
      else if (type == ICMPV6_ECHO_REPLY) write16(info + PACKET_INFO_DPORT, ident);
      else if (type == ICMPV6_DEST_UNREACH || type == ICMPV6_PKT_TOOBIG || type == ICMPV6_TIME_EXCEED ||
        type == ICMPV6_PARAMPROB) {
        setInfoFlag(info, PKT_F_ICMP_ERROR);
        return parseInnerIpv6(pkt, info, l4Off + 8, l3End);
      }
    }
    // Other ICMP types (NDP, redirects, timestamps, ...): ports stay 0.
    return 0;
  }
  // Rule 1: any other protocol is left to conntrack (Cilium: DROP_CT_UNKNOWN_PROTO there).
  return 0;
}

/** innerSport/innerDport for the first 8 bytes of an embedded L4 header at `off` (already checked), as
 * parsePacket would have reported them for the original packet. `icmpProto` is the ICMP protocol number of
 * the embedding family (ICMP for v4, ICMPv6 for v6). */
function recordInnerPorts(pkt: Pkt, info: usize, proto: u32, off: u32, icmpProto: u32): void {
  if (proto == IPPROTO_TCP || proto == IPPROTO_UDP || proto == IPPROTO_SCTP) {
    write16(info + PACKET_INFO_INNER_SPORT, pktLoad16(pkt, off));
    write16(info + PACKET_INFO_INNER_DPORT, pktLoad16(pkt, off + 2));
  } else if (proto == icmpProto) {
    const type = pktLoad8(pkt, off);
    const ident = pktLoad16(pkt, off + 4);
    const request = icmpProto == IPPROTO_ICMP ? ICMP_ECHO : ICMPV6_ECHO_REQUEST;
    const reply = icmpProto == IPPROTO_ICMP ? ICMP_ECHOREPLY : ICMPV6_ECHO_REPLY;
    if (type == request) write16(info + PACKET_INFO_INNER_SPORT, ident);
    else if (type == reply) write16(info + PACKET_INFO_INNER_DPORT, ident);
  }
}

/** True when the embedded protocol's first 8 bytes are needed to report inner ports. */
function innerNeedsL4(proto: u32, icmpProto: u32): bool {
  return proto == IPPROTO_TCP || proto == IPPROTO_UDP || proto == IPPROTO_SCTP || proto == icmpProto;
}

/** The IPv4 header (and first 8 L4 bytes) embedded in an ICMPv4 error at `off`, as in Cilium's handling
 * of ICMP errors for related traffic and NAT (bpf/lib/conntrack.h, bpf/lib/nat.h). Outcomes: 0 (rule 1)
 * or DROP_INVALID (rule 2). */
function parseInnerIpv4(pkt: Pkt, info: usize, off: u32, l3End: u32): u32 {
  if (!hasWithin(pkt, off + IPV4_HLEN_MIN, l3End)) return DROP_INVALID;
  const b0 = pktLoad8(pkt, off);
  if (b0 >>> 4 != 4) return DROP_INVALID;
  const hlen = (b0 & 0xf) << 2;
  if (hlen < IPV4_HLEN_MIN) return DROP_INVALID;
  if (!hasWithin(pkt, off + hlen, l3End)) return DROP_INVALID;
  const proto = pktLoad8(pkt, off + 9);
  write8(info + PACKET_INFO_INNER_NEXTHDR, proto);
  pktCopyOut(pkt, off + 12, info + PACKET_INFO_INNER_SADDR, 4);
  pktCopyOut(pkt, off + 16, info + PACKET_INFO_INNER_DADDR, 4);
  // A non-first fragment carries no L4 header: inner ports stay 0.
  if ((pktLoad16(pkt, off + 6) & IP_OFFSET) != 0) return 0;
  if (!innerNeedsL4(proto, IPPROTO_ICMP)) return 0;
  if (!hasWithin(pkt, off + hlen + 8, l3End)) return DROP_INVALID;
  recordInnerPorts(pkt, info, proto, off + hlen, IPPROTO_ICMP);
  return 0;
}

/** The IPv6 header (and first 8 L4 bytes) embedded in an ICMPv6 error at `off`. Extension headers of the
 * embedded packet are not walked: innerNexthdr is then the extension header number and the inner ports
 * stay 0. Outcomes: 0 (rule 1) or DROP_INVALID (rule 2). */
function parseInnerIpv6(pkt: Pkt, info: usize, off: u32, l3End: u32): u32 {
  if (!hasWithin(pkt, off + IPV6_HLEN, l3End)) return DROP_INVALID;
  if (pktLoad8(pkt, off) >>> 4 != 6) return DROP_INVALID;
  const proto = pktLoad8(pkt, off + 6);
  write8(info + PACKET_INFO_INNER_NEXTHDR, proto);
  pktCopyOut(pkt, off + 8, info + PACKET_INFO_INNER_SADDR, 16);
  pktCopyOut(pkt, off + 24, info + PACKET_INFO_INNER_DADDR, 16);
  if (!innerNeedsL4(proto, IPPROTO_ICMPV6)) return 0;
  if (!hasWithin(pkt, off + IPV6_HLEN + 8, l3End)) return DROP_INVALID;
  recordInnerPorts(pkt, info, proto, off + IPV6_HLEN, IPPROTO_ICMPV6);
  return 0;
}
