/*
 * Host-only conntrack garbage collection (Cilium's userspace CT GC, pkg/maps/ctmap/gc), which also removes
 * the SNAT mapping of every flow whose entry it removes (Cilium: pkg/maps/ctmap purgeCtEntry → the NAT
 * map's DeleteMapping): an egress-direction (TUPLE_F_OUT) entry's key is, byte for byte, the SNAT map's
 * egress key of the same flow (both the flow as it left: core/nat.ts snatEgress), and that entry's value
 * names the reply key. An entry whose connection fromEndpoint moved to another source port takes its port
 * mapping with it (core/nat.ts T7).
 * Kept apart from core/conntrack.ts because map iteration (mapNextKey) is host-only: codegen never
 * translates this file; the host ABI (core/runtime/abi.ts) exports ctGc. Expiry uses the same rule as
 * ctLookup: an entry is dead when lifetime < now.
 */
import { MapId, CT_ENTRY_LIFETIME, CT_ENTRY_ORIG_SPORT_BE, CT_ENTRY_REV_NAT_INDEX, CT_TUPLE_SIZE, CT_TUPLE_FLAGS, SNAT_VALUE_TO_ADDR, SNAT_VALUE_TO_PORT_BE } from "../gen/layout";
import { TUPLE_F_IN, TUPLE_F_SERVICE } from "../constants";
import { memCopy, read8, read16, read32 } from "../env";
import { read16be } from "../bytes";
import { natSportPurge, snatReplyKey } from "../nat";
import { revNatEntry } from "../lb";
import { mapDelete, mapLookup, mapNextKey } from "../maps";
import { stackAlloc } from "../alloc";

/** More than any conntrack map holds: the constant bound of ctGc's walk. */
const CT_GC_MAX_VISIT: u32 = 16777216;

/** Removes both entries of the SNAT mapping of the flow whose conntrack key is `key`, if it has one. */
function snatPurge(key: usize): void {
  if ((read8(key + CT_TUPLE_FLAGS) & (TUPLE_F_IN | TUPLE_F_SERVICE)) != 0) return;
  const v = mapLookup(MapId.Snat, key);
  if (v == 0) return;
  const rkey = stackAlloc(CT_TUPLE_SIZE);
  if (rkey == 0) return;
  snatReplyKey(rkey, key, v + SNAT_VALUE_TO_ADDR, read16be(v + SNAT_VALUE_TO_PORT_BE));
  mapDelete(MapId.Snat, rkey);
  mapDelete(MapId.Snat, key);
}

/** core/nat.ts T7: the port mapping of a connection fromEndpoint moved to another source port (entry `e`,
 * key `key`), if it is one. */
function sportPurge(key: usize, e: usize): void {
  const orig = read16be(e + CT_ENTRY_ORIG_SPORT_BE);
  if (orig == 0 || (read8(key + CT_TUPLE_FLAGS) & (TUPLE_F_IN | TUPLE_F_SERVICE)) != 0) return;
  const revNat = read16(e + CT_ENTRY_REV_NAT_INDEX);
  let frontend: usize = 0;
  if (revNat != 0) {
    frontend = revNatEntry(revNat);
    if (frontend == 0) return;
  }
  natSportPurge(key, frontend, orig);
}

/**
 * Walks MapId.Conntrack with mapNextKey and deletes every entry whose lifetime < now, with its SNAT
 * mapping (file comment). The next key is
 * fetched before the current one is deleted, so the walk never continues from a deleted key. Host only:
 * the caller resets the scratch arena first (arenaReset), as for any core call. Not for the packet path.
 * Outcomes: the number of entries removed (0 when the map is empty or missing).
 */
export function ctGc(now: u32): u32 {
  const cur = stackAlloc(CT_TUPLE_SIZE);
  const nxt = stackAlloc(CT_TUPLE_SIZE);
  if (cur == 0 || nxt == 0) return 0;
  if (mapNextKey(MapId.Conntrack, 0, cur) != 0) return 0;
  let removed: u32 = 0;
  for (let i: u32 = 0; i < CT_GC_MAX_VISIT; i++) {
    const more = mapNextKey(MapId.Conntrack, cur, nxt) == 0;
    const e = mapLookup(MapId.Conntrack, cur);
    if (e != 0 && read32(e + CT_ENTRY_LIFETIME) < now) {
      sportPurge(cur, e);
      if (mapDelete(MapId.Conntrack, cur) == 0) removed++;
      snatPurge(cur);
    }
    if (!more) break;
    memCopy(cur, nxt, CT_TUPLE_SIZE);
  }
  return removed;
}
