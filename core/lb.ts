/*
 * Service load balancing: frontend lookup, backend selection, service connection tracking, DNAT and
 * reverse NAT, after Cilium's bpf/lib/lb.h (lb4_lookup_service, lb4_local, lb4_select_backend_id_*,
 * lb4_xlate, __lb4_rev_nat). IPv4 and IPv6 share one code path (16-byte addresses).
 *
 * Backend selection rules (numbered once; repeated where implemented):
 *   S1. Session affinity (SVC_F_AFFINITY): the MapId.Affinity entry {client address, revNatIndex} names
 *       the backend while lastUsed + timeout > now (timeout = low 24 bits of the master's backendId), the
 *       backend still exists and is active; a hit refreshes lastUsed. An expired or stale entry is deleted.
 *       (Cilium also requires the backend in cilium_lb_affinity_match; ciliate has no such map, so a backend
 *       removed from the service but still present for another service stays eligible until the entry
 *       expires — hosts should delete affinity entries of removed backends.)
 *   S2. The algorithm is the master's backendId >> 24: LB_ALG_MAGLEV → MapId.Maglev {revNatIndex,
 *       hash % ConfigValue.maglevTableSize}; anything else → "random": slot = hash % count + 1 and the
 *       backend id stored in that service slot. "Random" is a PURE hash here (Cilium draws
 *       get_prandom_u32()), so WASM, JS and the kernel pick the same backend for the same packet and maps.
 *       hash = Cilium's flow hash (core/hash.ts): jhash over saddr, (dport << 16) | sport, nexthdr, seeded
 *       with ConfigValue.hashSeed (used for IPv6 too: ciliate has one seed); with affinity the source port
 *       is 0 (as lb4_select_backend_id_maglev does).
 *   S3. Only slots 1..count (active backends) serve new flows; count == 0 selects nothing.
 *   S4. The chosen backend is recorded in the affinity map (SVC_F_AFFINITY).
 * Service conntrack (lb4_local): an entry in MapId.Conntrack keyed by the pre-DNAT tuple {daddr = VIP,
 * saddr = client, ports, nexthdr, TUPLE_F_SERVICE} remembers the backend of a flow.
 *   C1. A live entry (lifetime ≥ now) whose backend exists and is active keeps it; a terminating (or
 *       otherwise non-active) backend keeps serving the flow unless the packet is a TCP SYN.
 *   C2. Otherwise (no entry, dead entry, backend gone, SYN to a non-active backend) a backend is selected
 *       (S1–S4) and the entry (re)written; no backend → no service.
 *   C3. The entry's lifetime becomes now + ctServiceTcpLifetime (TCP) or ctServiceAnyLifetime.
 * Not implemented: east-west INT scope lookups (TWO_SCOPES), source ranges, L7 LB, NAT46/64, DSR.
 */
import { memCopy, memFill, read8, read16, read32, write8, write16, write32, add64 } from "./env";
import { read16be, write16be } from "./bytes";
import { stackAlloc } from "./alloc";
import { mapDelete, mapLookup, mapUpdate } from "./maps";
import { Pkt } from "./pkt";
import { configGet } from "./config";
import { hashFromTupleV4, hashFromTupleV6 } from "./hash";
import { maglevLookup } from "./maglev";
import { natRewriteAddr, natRewriteIcmpErrorInner, natRewritePort } from "./nat";
import { MapId, PACKET_INFO_FAMILY, PACKET_INFO_NEXTHDR, PACKET_INFO_SPORT, PACKET_INFO_DPORT,
  PACKET_INFO_SADDR, PACKET_INFO_DADDR, PACKET_INFO_TCP_FLAGS, PACKET_INFO_FLAGS, PACKET_INFO_LEN,
  SERVICE_KEY_SIZE, SERVICE_KEY_ADDR, SERVICE_KEY_DPORT_BE, SERVICE_KEY_BACKEND_SLOT, SERVICE_KEY_PROTO,
  SERVICE_KEY_SCOPE, SERVICE_KEY_FAMILY, SERVICE_VALUE_BACKEND_ID, SERVICE_VALUE_COUNT,
  SERVICE_VALUE_REV_NAT_INDEX, SERVICE_VALUE_FLAGS, BACKEND_KEY_SIZE, BACKEND_KEY_BACKEND_ID, BACKEND_SIZE,
  BACKEND_ADDR, BACKEND_PORT_BE, BACKEND_STATE, BACKEND_FAMILY, REV_NAT_KEY_SIZE, REV_NAT_KEY_REV_NAT_INDEX,
  REV_NAT_VALUE_ADDR, REV_NAT_VALUE_PORT_BE, REV_NAT_VALUE_FAMILY, AFFINITY_KEY_SIZE, AFFINITY_KEY_CLIENT_ADDR,
  AFFINITY_KEY_REV_NAT_INDEX, AFFINITY_KEY_FAMILY, AFFINITY_VALUE_SIZE, AFFINITY_VALUE_LAST_USED,
  AFFINITY_VALUE_BACKEND_ID, CT_TUPLE_SIZE, CT_TUPLE_DADDR, CT_TUPLE_SADDR, CT_TUPLE_DPORT_BE,
  CT_TUPLE_SPORT_BE, CT_TUPLE_NEXTHDR, CT_TUPLE_FLAGS, CT_TUPLE_FAMILY, CT_ENTRY_SIZE, CT_ENTRY_LIFETIME,
  CT_ENTRY_BACKEND_ID, CT_ENTRY_REV_NAT_INDEX, CT_ENTRY_FLAGS, CT_ENTRY_TX_FLAGS_SEEN, CT_ENTRY_PACKETS,
  CT_ENTRY_BYTES, CONFIG_VALUE_HASH_SEED, CONFIG_VALUE_MAGLEV_TABLE_SIZE, CONFIG_VALUE_SERVICE_LOOPBACK_IPV4_BE,
  CONFIG_VALUE_CT_SERVICE_TCP_LIFETIME, CONFIG_VALUE_CT_SERVICE_ANY_LIFETIME, LB_SELECTION_SIZE,
  LB_SELECTION_BACKEND_ID, LB_SELECTION_BACKEND, PACKET_INFO_INNER_DADDR, PACKET_INFO_INNER_DPORT } from "./gen/layout";
import { FAMILY_IPV4, IPPROTO_TCP, TCP_SYN, LB_LOOKUP_SCOPE_EXT, LB_ALG_MAGLEV, SVC_F_AFFINITY, BE_STATE_ACTIVE,
  TUPLE_F_SERVICE, CT_F_LB_LOOPBACK, PKT_F_ICMP_ERROR, BPF_ANY } from "./constants";
import { DROP_UNKNOWN_L3 } from "./drop-reasons";

/** lbDnat: translated, and the source was also SNATed to the service loopback address (hairpin). */
export const LB_DNAT_LOOPBACK: i32 = 1;
/** lbRevNat: no reverse-NAT entry for the index; the packet is untouched (Cilium lb4_rev_nat returns 0). */
export const LB_REVNAT_NO_ENTRY: i32 = 1;
/** Cilium's default service_loopback_ipv4 169.254.42.1, as the numeric value of its network-order bytes,
 * used when ConfigValue.serviceLoopbackIpv4Be is 0. */
const LB_LOOPBACK_DEFAULT_BE: u32 = 0x012afea9;
/** Mask of the affinity timeout in the master's backendId (Cilium AFFINITY_TIMEOUT_MASK). */
const AFFINITY_TIMEOUT_MASK: u32 = 0xffffff;

/**
 * Looks up the service frontend of the packet's destination (lb4_lookup_service, scope EXT). Fills
 * `svcKey` (SERVICE_KEY_SIZE bytes) with the key that matched: {daddr, dport, slot 0, proto, scope EXT,
 * family}. On a miss of a north-south lookup (`eastWest` false: fromNetwork, Cilium's nodeport_lb4) it
 * retries the wildcard entry (proto 0, dport 0: "known VIP, unknown port"); an east-west lookup (a pod's
 * own traffic, fromEndpoint) does not, as Cilium's bpf_lxc.c passes east_west = ENABLE_NODEPORT and
 * lb4_lookup_service returns NULL on an east-west miss — so a pod's packet that is no service's costs
 * one probe, not two.
 * Returns a pointer to the master ServiceValue, or 0 (not a service: no entry, or the packet is an ICMP
 * error, which is handled by conntrack and rev-NAT). A wildcard hit has count 0: lbServiceBackend then
 * answers 0 and the caller drops with DROP_NO_SERVICE.
 */
export function lbLookupService(info: usize, svcKey: usize, eastWest: bool): usize {
  if ((read8(info + PACKET_INFO_FLAGS) & PKT_F_ICMP_ERROR) != 0) return 0;
  memFill(svcKey, 0, SERVICE_KEY_SIZE);
  memCopy(svcKey + SERVICE_KEY_ADDR, info + PACKET_INFO_DADDR, 16);
  write16be(svcKey + SERVICE_KEY_DPORT_BE, read16(info + PACKET_INFO_DPORT));
  write8(svcKey + SERVICE_KEY_PROTO, read8(info + PACKET_INFO_NEXTHDR));
  write8(svcKey + SERVICE_KEY_SCOPE, LB_LOOKUP_SCOPE_EXT);
  write8(svcKey + SERVICE_KEY_FAMILY, read8(info + PACKET_INFO_FAMILY));
  const svc = mapLookup(MapId.Services, svcKey);
  if (svc != 0 || eastWest) return svc;
  write16(svcKey + SERVICE_KEY_DPORT_BE, 0);
  write8(svcKey + SERVICE_KEY_PROTO, 0);
  const wild = mapLookup(MapId.Services, svcKey);
  if (wild != 0) return wild;
  write16be(svcKey + SERVICE_KEY_DPORT_BE, read16(info + PACKET_INFO_DPORT));
  write8(svcKey + SERVICE_KEY_PROTO, read8(info + PACKET_INFO_NEXTHDR));
  return 0;
}

/** The Backend value of `backendId`, or 0 when it does not exist. */
export function lbLookupBackend(backendId: u32): usize {
  if (backendId == 0) return 0;
  const key = stackAlloc(BACKEND_KEY_SIZE);
  if (key == 0) return 0;
  write32(key + BACKEND_KEY_BACKEND_ID, backendId);
  return mapLookup(MapId.Backends, key);
}

/** S2: Cilium's flow hash of the packet (source port 0 when `noSport`). Always returns the hash. */
export function lbFlowHash(info: usize, noSport: bool, seed: u32): u32 {
  const nexthdr = read8(info + PACKET_INFO_NEXTHDR);
  const sport: u32 = noSport ? 0 : read16(info + PACKET_INFO_SPORT);
  const dport = read16(info + PACKET_INFO_DPORT);
  if (read8(info + PACKET_INFO_FAMILY) == FAMILY_IPV4) {
    return hashFromTupleV4(read32(info + PACKET_INFO_SADDR), dport, sport, nexthdr, seed);
  }
  return hashFromTupleV6(info + PACKET_INFO_SADDR, dport, sport, nexthdr, seed);
}

/** Fills an AffinityKey for the packet's client and the service. */
function affinityKey(key: usize, info: usize, revNat: u32): void {
  memCopy(key + AFFINITY_KEY_CLIENT_ADDR, info + PACKET_INFO_SADDR, 16);
  write16(key + AFFINITY_KEY_REV_NAT_INDEX, revNat);
  write8(key + AFFINITY_KEY_FAMILY, read8(info + PACKET_INFO_FAMILY));
}

/** S4: records (client, service) → backend at `now`. */
function affinityUpdate(info: usize, revNat: u32, backendId: u32, now: u32): void {
  const key = stackAlloc(AFFINITY_KEY_SIZE);
  const val = stackAlloc(AFFINITY_VALUE_SIZE);
  if (key == 0 || val == 0) return;
  affinityKey(key, info, revNat);
  write32(val + AFFINITY_VALUE_LAST_USED, now);
  write32(val + AFFINITY_VALUE_BACKEND_ID, backendId);
  mapUpdate(MapId.Affinity, key, val, BPF_ANY);
}

/**
 * lbSelectBackend's work, returning the chosen Backend value (0 when none) and writing its id to `idOut`
 * (a u32 slot), so that the new-flow path does not look the backend up a second time.
 */
function selectBackend(svcKey: usize, svc: usize, info: usize, now: u32, idOut: usize): usize {
  const revNat = read16(svc + SERVICE_VALUE_REV_NAT_INDEX);
  const master = read32(svc + SERVICE_VALUE_BACKEND_ID);
  const affinity: bool = (read8(svc + SERVICE_VALUE_FLAGS) & SVC_F_AFFINITY) != 0;
  // S3. Only active slots serve new flows; no active backend → nothing (checked before affinity, as
  // lb4_local's CT_NEW case does).
  const count = read16(svc + SERVICE_VALUE_COUNT);
  if (count == 0) return 0;
  // S1. Session affinity.
  if (affinity) {
    const key = stackAlloc(AFFINITY_KEY_SIZE);
    if (key != 0) {
      affinityKey(key, info, revNat);
      const v = mapLookup(MapId.Affinity, key);
      if (v != 0) {
        const id = read32(v + AFFINITY_VALUE_BACKEND_ID);
        const b = lbLookupBackend(id);
        const timeout: u32 = master & AFFINITY_TIMEOUT_MASK;
        const alive: bool = u32(read32(v + AFFINITY_VALUE_LAST_USED) + timeout) > now;
        if (alive && b != 0 && read8(b + BACKEND_STATE) == BE_STATE_ACTIVE) {
          write32(v + AFFINITY_VALUE_LAST_USED, now);
          write32(idOut, id);
          return b;
        }
        mapDelete(MapId.Affinity, key);
      }
    }
  }
  const cfg = configGet();
  if (cfg == 0) return 0;
  // S2. Maglev or the pure-hash "random" selection.
  const hash = lbFlowHash(info, affinity, read32(cfg + CONFIG_VALUE_HASH_SEED));
  let id: u32 = 0;
  if ((master >>> 24) == LB_ALG_MAGLEV) {
    id = maglevLookup(revNat, hash, read32(cfg + CONFIG_VALUE_MAGLEV_TABLE_SIZE));
  } else {
    write16(svcKey + SERVICE_KEY_BACKEND_SLOT, hash % count + 1);
    const slot = mapLookup(MapId.Services, svcKey);
    write16(svcKey + SERVICE_KEY_BACKEND_SLOT, 0);
    if (slot != 0) id = read32(slot + SERVICE_VALUE_BACKEND_ID);
  }
  if (id == 0) return 0;
  const b = lbLookupBackend(id);
  if (b == 0) return 0;
  // S4. Remember the choice.
  if (affinity) affinityUpdate(info, revNat, id, now);
  write32(idOut, id);
  return b;
}

/**
 * Selects a backend for a new flow of service `svc` (master ServiceValue) whose key is `svcKey` (from
 * lbLookupService), rules S1–S4. `svcKey`'s slot is restored to 0 afterwards.
 * Returns the backend id (the backend exists), or 0 when none can be chosen: count 0, no ConfigValue, a
 * Maglev table or service slot missing, or the chosen backend missing from MapId.Backends.
 */
export function lbSelectBackend(svcKey: usize, svc: usize, info: usize, now: u32): u32 {
  const idOut = stackAlloc(4);
  if (idOut == 0) return 0;
  if (selectBackend(svcKey, svc, info, now, idOut) == 0) return 0;
  return read32(idOut);
}

/**
 * The backend serving this packet of service `svc`, with service conntrack (Cilium lb4_local, rules
 * C1–C3 and S1–S4). Call after lbLookupService; it handles count == 0 itself, so flows already pinned
 * to a terminating backend keep working while the service has no active backend (as Cilium does) —
 * callers need not (and should not) drop on count == 0 before calling.
 * Returns a pointer to an LbSelection {backendId, Backend copy} (pass sel + LB_SELECTION_BACKEND to
 * lbDnat), or 0 — no backend can serve the packet (no config, count 0 for a new flow, selection failed,
 * or the service conntrack entry could not be written): the caller drops with DROP_NO_SERVICE.
 */
export function lbServiceBackend(svcKey: usize, svc: usize, info: usize, now: u32): usize {
  const cfg = configGet();
  if (cfg == 0) return 0;
  const revNat = read16(svc + SERVICE_VALUE_REV_NAT_INDEX);
  const nexthdr = read8(info + PACKET_INFO_NEXTHDR);
  const tcp: bool = nexthdr == IPPROTO_TCP;
  const tcpFlags: u32 = tcp ? read8(info + PACKET_INFO_TCP_FLAGS) : 0;
  const syn: bool = (tcpFlags & TCP_SYN) != 0;
  const tuple = stackAlloc(CT_TUPLE_SIZE);
  if (tuple == 0) return 0;
  memCopy(tuple + CT_TUPLE_DADDR, info + PACKET_INFO_DADDR, 16);
  memCopy(tuple + CT_TUPLE_SADDR, info + PACKET_INFO_SADDR, 16);
  write16be(tuple + CT_TUPLE_DPORT_BE, read16(info + PACKET_INFO_DPORT));
  write16be(tuple + CT_TUPLE_SPORT_BE, read16(info + PACKET_INFO_SPORT));
  write8(tuple + CT_TUPLE_NEXTHDR, nexthdr);
  write8(tuple + CT_TUPLE_FLAGS, TUPLE_F_SERVICE);
  write8(tuple + CT_TUPLE_FAMILY, read8(info + PACKET_INFO_FAMILY));

  let e = mapLookup(MapId.Conntrack, tuple);
  if (e != 0 && read32(e + CT_ENTRY_LIFETIME) < now) e = 0;
  let id: u32 = 0;
  let b: usize = 0;
  if (e != 0) {
    // C1. Keep the flow's backend while it exists and is active, or is draining and this is not a SYN.
    id = read32(e + CT_ENTRY_BACKEND_ID);
    b = lbLookupBackend(id);
    if (b == 0 || (read8(b + BACKEND_STATE) != BE_STATE_ACTIVE && syn)) {
      id = 0;
      b = 0;
    }
  }
  const lifetime: u32 = u32(now + read32(cfg + (tcp ? CONFIG_VALUE_CT_SERVICE_TCP_LIFETIME : CONFIG_VALUE_CT_SERVICE_ANY_LIFETIME)));
  if (id == 0) {
    // C2. Select and (re)write the service entry.
    const idOut = stackAlloc(4);
    if (idOut == 0) return 0;
    b = selectBackend(svcKey, svc, info, now, idOut);
    if (b == 0) return 0;
    id = read32(idOut);
    const entry = stackAlloc(CT_ENTRY_SIZE);
    if (entry == 0) return 0;
    write32(entry + CT_ENTRY_LIFETIME, lifetime);
    write32(entry + CT_ENTRY_BACKEND_ID, id);
    write16(entry + CT_ENTRY_REV_NAT_INDEX, revNat);
    if (read8(info + PACKET_INFO_FAMILY) == FAMILY_IPV4 && read32(b + BACKEND_ADDR) == read32(info + PACKET_INFO_SADDR)) {
      write16(entry + CT_ENTRY_FLAGS, CT_F_LB_LOOPBACK);
    }
    write8(entry + CT_ENTRY_TX_FLAGS_SEEN, tcpFlags);
    add64(entry + CT_ENTRY_PACKETS, 1);
    add64(entry + CT_ENTRY_BYTES, read32(info + PACKET_INFO_LEN));
    if (mapUpdate(MapId.Conntrack, tuple, entry, BPF_ANY) != 0) return 0;
  } else {
    // C3. Refresh the entry.
    write32(e + CT_ENTRY_LIFETIME, lifetime);
    write16(e + CT_ENTRY_REV_NAT_INDEX, revNat);
    write8(e + CT_ENTRY_TX_FLAGS_SEEN, read8(e + CT_ENTRY_TX_FLAGS_SEEN) | tcpFlags);
    add64(e + CT_ENTRY_PACKETS, 1);
    add64(e + CT_ENTRY_BYTES, read32(info + PACKET_INFO_LEN));
    // S4 on every packet, as lb4_local does after its CT switch.
    if ((read8(svc + SERVICE_VALUE_FLAGS) & SVC_F_AFFINITY) != 0) affinityUpdate(info, revNat, id, now);
  }
  const sel = stackAlloc(LB_SELECTION_SIZE);
  if (sel == 0) return 0;
  write32(sel + LB_SELECTION_BACKEND_ID, id);
  memCopy(sel + LB_SELECTION_BACKEND, b, BACKEND_SIZE);
  return sel;
}

/** The service loopback address (16 bytes, IPv4 in the first 4) in a scratch buffer. */
function loopbackAddr(): usize {
  const a = stackAlloc(16);
  if (a == 0) return 0;
  const cfg = configGet();
  let v: u32 = cfg != 0 ? read32(cfg + CONFIG_VALUE_SERVICE_LOOPBACK_IPV4_BE) : 0;
  if (v == 0) v = LB_LOOPBACK_DEFAULT_BE;
  write32(a, v);
  return a;
}

/**
 * DNAT of a service packet to `backend` (a Backend value, e.g. sel + LB_SELECTION_BACKEND): the
 * destination address becomes the backend's, and the destination port too when the backend port is not
 * 0 (lb4_xlate); checksums as in core/nat.ts. Hairpin (Cilium USE_LOOPBACK_LB): when an IPv4 client is
 * itself the backend, the source is also rewritten to ConfigValue.serviceLoopbackIpv4Be (169.254.42.1
 * when 0) so the pod sees a peer other than itself; lbRevNat undoes it. IPv6 hairpin is not SNATed.
 * PacketInfo is updated to the new addresses and ports.
 * Returns:
 *   0 — translated;
 *   LB_DNAT_LOOPBACK (1) — translated and the source SNATed to the loopback address;
 *   -DROP_UNKNOWN_L3 — the backend's family (when set) differs from the packet's (no NAT46/64);
 *   -DROP_WRITE_ERROR / -DROP_CSUM_L3 / -DROP_CSUM_L4 — rewriting failed.
 */
export function lbDnat(pkt: Pkt, info: usize, backend: usize): i32 {
  const family = read8(info + PACKET_INFO_FAMILY);
  const bfam = read8(backend + BACKEND_FAMILY);
  if (bfam != 0 && bfam != family) return -(<i32>DROP_UNKNOWN_L3);
  const loopback: bool = family == FAMILY_IPV4 && read32(backend + BACKEND_ADDR) == read32(info + PACKET_INFO_SADDR);
  let r = natRewriteAddr(pkt, info, true, backend + BACKEND_ADDR);
  if (r < 0) return r;
  if (loopback) {
    const lo = loopbackAddr();
    if (lo != 0) {
      r = natRewriteAddr(pkt, info, false, lo);
      if (r < 0) return r;
    }
  }
  const port = read16be(backend + BACKEND_PORT_BE);
  if (port != 0) {
    r = natRewritePort(pkt, info, true, port);
    if (r < 0) return r;
  }
  return loopback ? LB_DNAT_LOOPBACK : 0;
}

/** The RevNatValue of `revNatIndex`, or 0 when there is none (also the conntrack GC's, for T7 of
 * core/nat.ts). */
export function revNatEntry(revNatIndex: u32): usize {
  const key = stackAlloc(REV_NAT_KEY_SIZE);
  if (key == 0) return 0;
  write16(key + REV_NAT_KEY_REV_NAT_INDEX, revNatIndex);
  return mapLookup(MapId.RevNat, key);
}

/**
 * Reverse NAT of a reply from a backend (__lb4_rev_nat): the source becomes the frontend address and
 * port of MapId.RevNat[revNatIndex] (the port only when non-zero). A hairpin reply (IPv4 destination =
 * the service loopback address) also gets its destination restored to its own source address, the
 * client that is its own backend. Checksums as in core/nat.ts; PacketInfo is updated.
 * Returns:
 *   0 — translated;
 *   LB_REVNAT_NO_ENTRY (1) — no entry for the index: untouched (Cilium passes such packets unchanged);
 *   -DROP_UNKNOWN_L3 — the entry's family (when set) differs from the packet's;
 *   -DROP_WRITE_ERROR / -DROP_CSUM_L3 / -DROP_CSUM_L4 — rewriting failed.
 */
export function lbRevNat(pkt: Pkt, info: usize, revNatIndex: u32): i32 {
  const nat = revNatEntry(revNatIndex);
  if (nat == 0) return LB_REVNAT_NO_ENTRY;
  const family = read8(info + PACKET_INFO_FAMILY);
  const nfam = read8(nat + REV_NAT_VALUE_FAMILY);
  if (nfam != 0 && nfam != family) return -(<i32>DROP_UNKNOWN_L3);
  let r: i32 = 0;
  if (family == FAMILY_IPV4) {
    const lo = loopbackAddr();
    if (lo != 0 && read32(lo) == read32(info + PACKET_INFO_DADDR)) {
      const self = stackAlloc(16);
      if (self != 0) {
        memCopy(self, info + PACKET_INFO_SADDR, 16);
        r = natRewriteAddr(pkt, info, true, self);
        if (r < 0) return r;
      }
    }
  }
  r = natRewriteAddr(pkt, info, false, nat + REV_NAT_VALUE_ADDR);
  if (r < 0) return r;
  const port = read16be(nat + REV_NAT_VALUE_PORT_BE);
  if (port != 0) {
    r = natRewritePort(pkt, info, false, port);
    if (r < 0) return r;
  }
  return 0;
}

/**
 * Reverse NAT of an ICMPv4 error about a load-balanced flow (CT_RELATED with the flow's rev-NAT index):
 * the packet it embeds went to the backend, so the embedded destination address and port become the
 * frontend's (MapId.RevNat[revNatIndex]; the port only when non-zero), and the outer source too when the
 * backend itself sent the error (a router in between keeps its own address). Checksums as
 * natRewriteIcmpErrorInner. The client then sees an error about the packet it sent, from the address it
 * sent it to (Linux nf_nat_icmp_reply_translation; RFC 5508 section 4.2).
 * Returns lbRevNat's outcomes; IPv6 errors and non-errors are left alone (LB_REVNAT_NO_ENTRY).
 */
export function lbRevNatIcmpError(pkt: Pkt, info: usize, revNatIndex: u32): i32 {
  if ((read8(info + PACKET_INFO_FLAGS) & PKT_F_ICMP_ERROR) == 0) return LB_REVNAT_NO_ENTRY;
  if (read8(info + PACKET_INFO_FAMILY) != FAMILY_IPV4) return LB_REVNAT_NO_ENTRY;
  const nat = revNatEntry(revNatIndex);
  if (nat == 0) return LB_REVNAT_NO_ENTRY;
  const nfam = read8(nat + REV_NAT_VALUE_FAMILY);
  if (nfam != 0 && nfam != FAMILY_IPV4) return -(<i32>DROP_UNKNOWN_L3);
  if (read32(info + PACKET_INFO_SADDR) == read32(info + PACKET_INFO_INNER_DADDR)) {
    const r = natRewriteAddr(pkt, info, false, nat + REV_NAT_VALUE_ADDR);
    if (r < 0) return r;
  }
  let port = read16be(nat + REV_NAT_VALUE_PORT_BE);
  if (port == 0) port = read16(info + PACKET_INFO_INNER_DPORT);
  return natRewriteIcmpErrorInner(pkt, info, true, nat + REV_NAT_VALUE_ADDR, port);
}
