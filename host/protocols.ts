/*
 * Protocol names and numbers, the one table every side shares: the simulator's frames and flows, the
 * node's service keys, the CLI's probes and the agent's flow events. Numbers are IANA's (as the datapath
 * sees them in the IP header); names are the ones Cilium policies and Hubble flows use.
 */

export type L4Proto = "TCP" | "UDP" | "SCTP" | "ICMP" | "ICMPv6" | "VRRP" | "IGMP";

/** VRRP and IGMP carry no ports; the datapath tracks them only with enable-extended-ip-protocols. */
export const PROTO_NUMBERS: Record<L4Proto, number> = { TCP: 6, UDP: 17, SCTP: 132, ICMP: 1, ICMPv6: 58, VRRP: 112, IGMP: 2 };
export const PROTO_NAMES: Record<number, L4Proto> = { 6: "TCP", 17: "UDP", 132: "SCTP", 1: "ICMP", 58: "ICMPv6", 112: "VRRP", 2: "IGMP" };

/** True for the protocols without ports (flows and probes of them have port 0). */
export function portless(name: string): boolean {
  return name === "VRRP" || name === "IGMP";
}

/** The IP protocol number of a name; undefined for a name that is none of ours. */
export function protoNumber(name: string): number | undefined {
  return PROTO_NUMBERS[name as L4Proto];
}

/** The name of an IP protocol number; undefined for a protocol the datapath does not parse. */
export function protoName(n: number): L4Proto | undefined {
  return PROTO_NAMES[n];
}
