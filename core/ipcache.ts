/*
 * Address → identity and address → local endpoint lookups (Cilium bpf/lib/eps.h).
 *
 * The ipcache (MapId.Ipcache, an LPM trie) maps every known IP/CIDR to its security identity; the
 * endpoints map (MapId.Endpoints, a hash) holds the pods on this node. Both mirror Cilium's
 * bpf/lib/eps.h: lookup_ip4_remote_endpoint / lookup_ip6_remote_endpoint build an ipcache_key with the
 * full address length and let the LPM trie find the most specific covering CIDR; lookup_ip4_endpoint /
 * lookup_ip6_endpoint do an exact hash lookup in cilium_lxc.
 *
 * Addresses are 16-byte fields (IPv4 in the first 4 bytes) next to a FAMILY_IPV4 / FAMILY_IPV6 family.
 */
import {
  MapId,
  ENDPOINT_KEY_ADDR,
  ENDPOINT_KEY_FAMILY,
  ENDPOINT_KEY_SIZE,
  IPCACHE_KEY_ADDR,
  IPCACHE_KEY_FAMILY,
  IPCACHE_KEY_PREFIXLEN,
  IPCACHE_KEY_SIZE,
  IPCACHE_VALUE_SEC_IDENTITY,
} from "./gen/layout";
import { FAMILY_IPV4, FAMILY_IPV6, IPCACHE_STATIC_PREFIX } from "./constants";
import { memCopy, read32, write8, write32 } from "./env";
import { mapLookup } from "./maps";
import { stackAlloc } from "./alloc";

/** Copies the significant bytes of an address (4 for IPv4, 16 for IPv6) into a zeroed key field, so that
 * bytes 4..15 of an IPv4 key are zero whatever the caller's buffer holds. */
function copyAddr(dst: usize, addr: usize, family: u32): void {
  if (family == FAMILY_IPV4) memCopy(dst, addr, 4);
  else memCopy(dst, addr, 16);
}

/**
 * The ipcache entry covering `addr` (most specific CIDR), as Cilium's lookup_ip{4,6}_remote_endpoint with
 * cluster id 0: key prefixlen = IPCACHE_STATIC_PREFIX + 32 (IPv4) or + 128 (IPv6).
 * Outcomes:
 *   - a pointer to the IpcacheValue (IPCACHE_VALUE_* offsets) when a covering entry exists;
 *   - 0 when no entry covers the address, when `family` is neither FAMILY_IPV4 nor FAMILY_IPV6, or when
 *     scratch memory is exhausted.
 */
export function ipcacheLookup(addr: usize, family: u32): usize {
  if (family != FAMILY_IPV4 && family != FAMILY_IPV6) return 0;
  const key = stackAlloc(IPCACHE_KEY_SIZE);
  if (key == 0) return 0;
  // clusterId and pad1 stay 0 (stackAlloc zeroes).
  write32(key + IPCACHE_KEY_PREFIXLEN, IPCACHE_STATIC_PREFIX + (family == FAMILY_IPV4 ? 32 : 128));
  write8(key + IPCACHE_KEY_FAMILY, family);
  copyAddr(key + IPCACHE_KEY_ADDR, addr, family);
  return mapLookup(MapId.Ipcache, key);
}

/**
 * The security identity of `addr`.
 * Outcomes:
 *   - the entry's secIdentity when the ipcache covers the address;
 *   - `worldId` on a miss (and for an unknown family): Cilium's handle_ipv4_from_lxc (bpf/bpf_lxc.c) treats
 *     a destination missing from the ipcache as WORLD_IPV4_ID / WORLD_IPV6_ID, which callers pass from
 *     ConfigValue.worldIpv4Identity / worldIpv6Identity.
 */
export function ipcacheIdentity(addr: usize, family: u32, worldId: u32): u32 {
  const v = ipcacheLookup(addr, family);
  if (v == 0) return worldId;
  return read32(v + IPCACHE_VALUE_SEC_IDENTITY);
}

/**
 * The local endpoint (pod on this node) with address `addr`: exact lookup in MapId.Endpoints with key
 * {addr, family, key 0, clusterId 0}, as Cilium's lookup_ip{4,6}_endpoint (bpf/lib/eps.h).
 * Outcomes:
 *   - a pointer to the EndpointInfo (ENDPOINT_INFO_* offsets) when the address is a local endpoint;
 *   - 0 otherwise (not local, unknown family, or scratch memory exhausted).
 */
export function endpointLookup(addr: usize, family: u32): usize {
  if (family != FAMILY_IPV4 && family != FAMILY_IPV6) return 0;
  const key = stackAlloc(ENDPOINT_KEY_SIZE);
  if (key == 0) return 0;
  copyAddr(key + ENDPOINT_KEY_ADDR, addr, family);
  write8(key + ENDPOINT_KEY_FAMILY, family);
  return mapLookup(MapId.Endpoints, key);
}
