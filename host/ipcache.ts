/*
 * The ipcache's key for a prefix, written once for the node's desired state, the conformance fixtures and
 * the benchmarks. The datapath's ipcache is an LPM trie keyed by (static prefix, family, address): the
 * prefix length counts the static part, as Cilium's ipcache key does (bpf/lib/eps.h, pkg/maps/ipcache).
 */
import * as C from "./constants.gen.ts";
import { addrBytes16, isIpv6 } from "./ip.ts";

/** Family number (core's FAMILY_IPV4 / FAMILY_IPV6) of an address in text. */
export function familyOf(ip: string): number {
  return isIpv6(ip) ? C.FAMILY_IPV6 : C.FAMILY_IPV4;
}

/** Key of "a.b.c.d/n", "x::/n" or a bare address (a host prefix). */
export function ipcacheKey(cidr: string): { prefixlen: number; family: number; addr: Uint8Array } {
  const [ip, len] = cidr.split("/") as [string, string | undefined];
  return { prefixlen: C.IPCACHE_STATIC_PREFIX + Number(len ?? (isIpv6(ip) ? 128 : 32)), family: familyOf(ip), addr: addrBytes16(ip) };
}
