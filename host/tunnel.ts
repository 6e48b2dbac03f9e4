/*
 * The overlay's host-side vocabulary: tunnel keys between their codec form (core/layout.ts TunnelKey) and
 * text, the tunnel protocols by name, and the MTU a pod gets behind the overlay. One place for the MTU
 * arithmetic: the overhead constants come from core/constants.ts (TUNNEL_OVERHEAD_*), so the datapath,
 * the simulator and the agent agree.
 */
import type { TunnelKey as TunnelKeyValue } from "./codecs.gen.ts";
import * as C from "./constants.gen.ts";
import type { TunnelKey } from "./datapath.ts";
import { addrBytes16, formatAddr, isIpv6 } from "./ip.ts";

export type TunnelProtocol = "vxlan" | "geneve";

/** ConfigValue.tunnelProtocol for a protocol name; TUNNEL_PROTO_NONE for none (native routing). */
export function tunnelProtocolNumber(p: TunnelProtocol | undefined): number {
  return p === "vxlan" ? C.TUNNEL_PROTO_VXLAN : p === "geneve" ? C.TUNNEL_PROTO_GENEVE : C.TUNNEL_PROTO_NONE;
}

/** The UDP port each protocol uses by default (Cilium's tunnel-port defaults). */
export function tunnelPort(p: TunnelProtocol): number {
  return p === "vxlan" ? C.TUNNEL_PORT_VXLAN : C.TUNNEL_PORT_GENEVE;
}

/** The codec value of a tunnel key. */
export function tunnelKeyValue(k: TunnelKey): TunnelKeyValue {
  return { remote: addrBytes16(k.remote), tunnelId: k.tunnelId >>> 0, family: isIpv6(k.remote) ? C.FAMILY_IPV6 : C.FAMILY_IPV4, pad0: 0, pad1: 0 };
}

/** A tunnel key from its codec value (a family other than IPv4/IPv6 reads as IPv4). */
export function tunnelKeyOf(v: TunnelKeyValue): TunnelKey {
  return { remote: formatAddr(v.remote, v.family === C.FAMILY_IPV6 ? 6 : 4), tunnelId: v.tunnelId >>> 0 };
}

/** The overlay's per-packet overhead over an underlay of this family (no Geneve options). */
export function tunnelOverhead(underlay: 4 | 6 = 4): number {
  return underlay === 6 ? C.TUNNEL_OVERHEAD_IPV6 : C.TUNNEL_OVERHEAD_IPV4;
}

/** The smallest MTU an IPv4 path must carry (RFC 791: 576-byte datagrams). */
export const MIN_MTU_IPV4 = 576;
/** The smallest link MTU IPv6 allows (RFC 8200 section 5); Linux turns IPv6 off on an interface below it. */
export const MIN_MTU_IPV6 = 1280;

/**
 * The MTU pods get when their traffic may be encapsulated: the device MTU minus the overhead of an underlay
 * of this family (Cilium pkg/mtu: 50 bytes over IPv4, 70 over IPv6, whatever the inner packet's family —
 * an IPv6 pod's packet over an IPv4 underlay costs 50). With `ipv6Pods` (dual stack) the result must be at
 * least 1280, or the pods' interfaces would lose IPv6. Throws RangeError, one line, when it is too small.
 */
export function podMtu(deviceMtu: number, underlay: 4 | 6 = 4, ipv6Pods = false): number {
  const mtu = deviceMtu - tunnelOverhead(underlay);
  const min = ipv6Pods ? MIN_MTU_IPV6 : MIN_MTU_IPV4;
  if (!Number.isInteger(deviceMtu) || mtu < min) throw new RangeError(`device MTU ${deviceMtu} leaves ${mtu} bytes for pods behind the overlay${underlay === 6 ? " (IPv6 underlay)" : ""}; at least ${min} are needed${ipv6Pods ? " for IPv6 pods" : ""}`);
  return mtu;
}
