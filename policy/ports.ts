// Port ranges → (port, prefix) blocks, as Cilium's PortRangeToMaskedPorts (pkg/policy/types.go) does for
// the LPM policy map, protocol names → numbers, and ICMP type names (pkg/policy/api/icmp.go).

import { IPPROTO_ICMP, IPPROTO_ICMPV6, IPPROTO_IGMP, IPPROTO_SCTP, IPPROTO_TCP, IPPROTO_UDP, IPPROTO_VRRP } from "../host/constants.gen.ts";

export interface PortPrefix {
  port: number;
  /** Number of leading port bits that must match (0 = any port, 16 = exact). */
  prefix: number;
}

/**
 * Minimal set of aligned power-of-two blocks covering [start, end].
 * 1. start 0 and end 0 or 65535 → one wildcard block.
 * 2. end ≤ start → the exact port `start`.
 * 3. otherwise greedy aligned blocks from `start` upwards (the unique minimal prefix cover).
 */
export function portRangeToPrefixes(start: number, end: number): PortPrefix[] {
  if (start === 0 && (end === 0 || end === 65535)) return [{ port: 0, prefix: 0 }];
  if (end <= start) return [{ port: start, prefix: 16 }];
  const out: PortPrefix[] = [];
  let p = start;
  while (p <= end) {
    let bits = 0; // number of wildcard low bits
    while (bits < 16) {
      const size = 1 << (bits + 1);
      if (p % size !== 0 || p + size - 1 > end) break;
      bits++;
    }
    out.push({ port: p, prefix: 16 - bits });
    p += 1 << bits;
  }
  return out;
}

/** True when `port` falls inside the block. */
export function portInPrefix(port: number, b: PortPrefix): boolean {
  if (b.prefix === 0) return true;
  const shift = 16 - b.prefix;
  return port >>> shift === b.port >>> shift;
}

export const PROTO_NUMBERS: Record<string, number> = {
  TCP: IPPROTO_TCP,
  UDP: IPPROTO_UDP,
  SCTP: IPPROTO_SCTP,
  ICMP: IPPROTO_ICMP,
  ICMPv6: IPPROTO_ICMPV6,
  ICMPV6: IPPROTO_ICMPV6,
  VRRP: IPPROTO_VRRP,
  IGMP: IPPROTO_IGMP,
};

/** Protocols without transport ports that Cilium's agent accepts with enable-extended-ip-protocols (pkg/policy/api/l4.go). */
export const EXTENDED_IP_PROTOCOLS = ["VRRP", "IGMP"] as const;

export function protocolName(n: number): string {
  switch (n) {
    case 0:
      return "ANY";
    case IPPROTO_TCP:
      return "TCP";
    case IPPROTO_UDP:
      return "UDP";
    case IPPROTO_SCTP:
      return "SCTP";
    case IPPROTO_ICMP:
      return "ICMP";
    case IPPROTO_ICMPV6:
      return "ICMPv6";
    default:
      return String(n);
  }
}

export const ICMPV4_TYPES: Record<string, number> = {
  EchoReply: 0,
  DestinationUnreachable: 3,
  Redirect: 5,
  Echo: 8,
  EchoRequest: 8,
  RouterAdvertisement: 9,
  RouterSelection: 10,
  TimeExceeded: 11,
  ParameterProblem: 12,
  Timestamp: 13,
  TimestampReply: 14,
  Photuris: 40,
  ExtendedEchoRequest: 42,
  ExtendedEchoReply: 43,
};

export const ICMPV6_TYPES: Record<string, number> = {
  DestinationUnreachable: 1,
  PacketTooBig: 2,
  TimeExceeded: 3,
  ParameterProblem: 4,
  EchoRequest: 128,
  EchoReply: 129,
  MulticastListenerQuery: 130,
  MulticastListenerReport: 131,
  MulticastListenerDone: 132,
  RouterSolicitation: 133,
  RouterAdvertisement: 134,
  NeighborSolicitation: 135,
  NeighborAdvertisement: 136,
  RedirectMessage: 137,
  RouterRenumbering: 138,
  ICMPNodeInformationQuery: 139,
  ICMPNodeInformationResponse: 140,
  InverseNeighborDiscoverySolicitation: 141,
  InverseNeighborDiscoveryAdvertisement: 142,
  HomeAgentAddressDiscoveryRequest: 144,
  HomeAgentAddressDiscoveryReply: 145,
  MobilePrefixSolicitation: 146,
  MobilePrefixAdvertisement: 147,
  DuplicateAddressRequestCodeSuffix: 157,
  DuplicateAddressConfirmationCodeSuffix: 158,
  ExtendedEchoRequest: 160,
  ExtendedEchoReply: 161,
};

/** ICMP type from a number or name for a family; undefined when unknown or out of 0..255. */
export function icmpType(family: "IPv4" | "IPv6", t: unknown): number | undefined {
  if (typeof t === "number") return Number.isInteger(t) && t >= 0 && t <= 255 ? t : undefined;
  if (typeof t === "string") {
    if (/^\d+$/.test(t)) return icmpType(family, Number(t));
    const table = family === "IPv6" ? ICMPV6_TYPES : ICMPV4_TYPES;
    return Object.prototype.hasOwnProperty.call(table, t) ? table[t] : undefined;
  }
  return undefined;
}
