/*
 * The map API of the datapath: lookup / update / delete on a map handle (MapId), with BPF semantics.
 * In C, codegen binds each call to bpf_map_*_elem on the concrete map named by the (literal) MapId
 * argument; in WASM and JS the calls dispatch to the table implementations in core/runtime/maps/, which live in
 * this instance's linear memory.
 *
 * Semantics shared by every map type (as in the kernel):
 *   - keys and values are copied in; lookup returns a pointer to the stored value (0 on a miss), and
 *     writes through that pointer change the stored value;
 *   - update flags BPF_ANY / BPF_NOEXIST / BPF_EXIST; a full map fails with -E2BIG instead of growing
 *     (an LRU hash evicts its least recently used entry instead);
 *   - errors are negative errno values (-ENOENT, -EEXIST, -E2BIG, -EINVAL);
 *   - a per-CPU array is an array here: WASM and JS run on one CPU.
 */
import { MapId, MapType, mapType, mapKeySize, mapValueSize, MAP_COUNT } from "./gen/layout";
import { EINVAL, ENOENT } from "./constants";
import { allocStatic } from "./alloc";
import { read32, write32 } from "./env";
import { hashCreate, hashLookup, hashUpdate, hashDelete, hashNextKey, hashCount } from "./runtime/maps/hash";
import { lpmCreate, lpmLookup, lpmUpdate, lpmDelete, lpmNextKey, lpmCount } from "./runtime/maps/lpm";
import { ringbufCreate, ringbufOutput, ringbufConsume, ringbufCount } from "./runtime/maps/ringbuf";
import { arrayCreate, arrayLookup, arrayUpdate, arrayDelete, arrayNextKey, arrayCount } from "./runtime/maps/array";

// One pointer per MapId to the table's descriptor (0 until created).
let tables: usize = 0;

function table(map: MapId): usize {
  if (tables == 0) return 0;
  return <usize>read32(tables + (<usize>map << 2));
}

/** Creates the table for `map` with room for `maxEntries` entries (0 = the layout's default is chosen by
 * the host). Returns 0, -EEXIST if it exists, -EINVAL for an unknown map, -ENOMEM if memory is short.
 * Not used on the packet path. */
export function mapCreate(map: MapId, maxEntries: u32): i32 {
  if (<u32>map >= MAP_COUNT || maxEntries == 0) return -EINVAL;
  if (tables == 0) tables = allocStatic(<usize>MAP_COUNT << 2, 8);
  if (table(map) != 0) return -17;
  const t = mapType(map);
  const ks = mapKeySize(map);
  const vs = mapValueSize(map);
  let desc: usize = 0;
  if (t == MapType.Hash) desc = hashCreate(ks, vs, maxEntries, false);
  else if (t == MapType.LruHash) desc = hashCreate(ks, vs, maxEntries, true);
  else if (t == MapType.LpmTrie) desc = lpmCreate(ks, vs, maxEntries);
  else if (t == MapType.Array || t == MapType.PercpuArray) desc = arrayCreate(vs, maxEntries);
  else if (t == MapType.RingBuf) desc = ringbufCreate(maxEntries);
  if (desc == 0) return -12;
  write32(tables + (<usize>map << 2), <u32>desc);
  return 0;
}

/** Looks up `key`. Returns a pointer to the stored value, or 0 when absent (or the map does not exist).
 * @seam bpf_map_lookup_elem */
export function mapLookup(map: MapId, key: usize): usize {
  const d = table(map);
  if (d == 0) return 0;
  const t = mapType(map);
  if (t == MapType.RingBuf) return 0;
  if (t == MapType.LpmTrie) return lpmLookup(d, key);
  if (t == MapType.Array || t == MapType.PercpuArray) return arrayLookup(d, key);
  return hashLookup(d, key);
}

/** Inserts or replaces. Returns 0, -EEXIST (BPF_NOEXIST and present), -ENOENT (BPF_EXIST and absent),
 * -E2BIG (full, non-LRU), -EINVAL (bad flags, array index out of range, LPM prefix too long).
 * @seam bpf_map_update_elem */
export function mapUpdate(map: MapId, key: usize, value: usize, flags: u32): i32 {
  const d = table(map);
  if (d == 0) return -EINVAL;
  if (flags > 2) return -EINVAL;
  const t = mapType(map);
  if (t == MapType.RingBuf) return -EINVAL;
  if (t == MapType.LpmTrie) return lpmUpdate(d, key, value, flags);
  if (t == MapType.Array || t == MapType.PercpuArray) return arrayUpdate(d, key, value, flags);
  return hashUpdate(d, key, value, flags);
}

/** Removes `key`. Returns 0 or -ENOENT; arrays cannot delete (-EINVAL), as in the kernel.
 * @seam bpf_map_delete_elem */
export function mapDelete(map: MapId, key: usize): i32 {
  const d = table(map);
  if (d == 0) return -ENOENT;
  const t = mapType(map);
  if (t == MapType.RingBuf) return -EINVAL;
  if (t == MapType.LpmTrie) return lpmDelete(d, key);
  if (t == MapType.Array || t == MapType.PercpuArray) return arrayDelete(d, key);
  return hashDelete(d, key);
}

/** Iteration for dumps: writes the key after `key` (the first key when `key` is 0) to `nextKey`.
 * Returns 0, or -ENOENT at the end. Order is deterministic for a given history. Host only. */
export function mapNextKey(map: MapId, key: usize, nextKey: usize): i32 {
  const d = table(map);
  if (d == 0) return -ENOENT;
  const t = mapType(map);
  if (t == MapType.RingBuf) return -ENOENT;
  if (t == MapType.LpmTrie) return lpmNextKey(d, key, nextKey);
  if (t == MapType.Array || t == MapType.PercpuArray) return arrayNextKey(d, key, nextKey);
  return hashNextKey(d, key, nextKey);
}

/** Appends a record of `size` bytes at `data` to a ring buffer map (bpf_ringbuf_output with flags 0).
 * Returns 0, or a negative errno when the buffer is full (-ENOSPC: the record is lost) or the map is not a
 * ring buffer. @seam bpf_ringbuf_output */
export function mapRingbufOutput(map: MapId, data: usize, size: u32): i32 {
  const d = table(map);
  if (d == 0 || mapType(map) != MapType.RingBuf) return -EINVAL;
  return ringbufOutput(d, data, size);
}

/** Takes the oldest record of a ring buffer map into `out` (at most `max` bytes): its length, 0 when
 * empty, or a negative errno. Host only. */
export function mapRingbufConsume(map: MapId, out: usize, max: u32): i32 {
  const d = table(map);
  if (d == 0 || mapType(map) != MapType.RingBuf) return -EINVAL;
  return ringbufConsume(d, out, max);
}

/** Number of entries (arrays report their capacity, ring buffers their pending records). Host only. */
export function mapCount(map: MapId): u32 {
  const d = table(map);
  if (d == 0) return 0;
  const t = mapType(map);
  if (t == MapType.LpmTrie) return lpmCount(d);
  if (t == MapType.Array || t == MapType.PercpuArray) return arrayCount(d);
  if (t == MapType.RingBuf) return ringbufCount(d);
  return hashCount(d);
}
