/*
 * Host-only conntrack garbage collection (Cilium's userspace CT GC, pkg/maps/ctmap/gc).
 * Kept apart from core/conntrack.ts because map iteration (mapNextKey) is host-only: codegen never
 * translates this file; the host ABI (core/runtime/abi.ts) exports ctGc. Expiry uses the same rule as
 * ctLookup: an entry is dead when lifetime < now.
 */
import { MapId, CT_ENTRY_LIFETIME, CT_TUPLE_SIZE } from "../gen/layout";
import { memCopy, read32 } from "../env";
import { mapDelete, mapLookup, mapNextKey } from "../maps";
import { stackAlloc } from "../alloc";

/** More than any conntrack map holds: the constant bound of ctGc's walk. */
const CT_GC_MAX_VISIT: u32 = 16777216;

/**
 * Walks MapId.Conntrack with mapNextKey and deletes every entry whose lifetime < now. The next key is
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
      if (mapDelete(MapId.Conntrack, cur) == 0) removed++;
    }
    if (!more) break;
    memCopy(cur, nxt, CT_TUPLE_SIZE);
  }
  return removed;
}
