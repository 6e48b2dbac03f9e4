/*
 * A node's desired state (node/desired.ts) written into a simulated engine's maps: the maps sized to what
 * the node holds, every map written in one batch (bytes shared between nodes), and the policy-dependent
 * maps rewritten when the FQDN cache changes the policy.
 */
import { MAP_SPECS, type MapSpec } from "../host/codecs.gen.ts";
import { writeAll, type Datapath } from "../host/datapath.ts";
import { AbiDatapath } from "../host/abi-datapath.ts";
import { DESIRED_MAPS, type DesiredMap, type DesiredMaps } from "../node/desired.ts";

/** Empties the maps `names` of an engine and writes them from the desired state. */
export function rewriteMaps(dp: Datapath, maps: DesiredMaps, names: readonly DesiredMap[]): void {
  for (const name of names) {
    const m = dp.map(MAP_SPECS[name] as MapSpec);
    for (const [k] of [...m.entries()]) m.delete(k as never);
    for (const e of maps[name]) m.update(e.key as never, e.value as never);
  }
}

/**
 * Encoded entries of the first node's maps, reused for the entries other nodes share with it. Nodes of one
 * cluster hold mostly the same ipcache (every pod and node; only the local pods and the node entries
 * differ), listed in the same order (node/desired.ts), so entry i of a node is compared with entry i of
 * the first and, when equal, its bytes are copied instead of encoded again: at 10,000 pods on 50 nodes the
 * encoding was most of the simulation build.
 */
export type EncodedMaps = Partial<Record<DesiredMap, { entries: DesiredMaps[DesiredMap]; keys: Uint8Array[]; values: Uint8Array[] }>>;

/** Structural equality of two codec objects (numbers, byte arrays, nested records). */
function sameCodecValue(a: unknown, b: unknown): boolean {
  if (a === b) return true;
  if (a instanceof Uint8Array) {
    if (!(b instanceof Uint8Array) || a.length !== b.length) return false;
    for (let i = 0; i < a.length; i++) if (a[i] !== b[i]) return false;
    return true;
  }
  if (typeof a !== "object" || typeof b !== "object" || a === null || b === null) return false;
  const ka = Object.keys(a);
  if (ka.length !== Object.keys(b).length) return false;
  for (const k of ka) if (!sameCodecValue((a as Record<string, unknown>)[k], (b as Record<string, unknown>)[k])) return false;
  return true;
}

/** Writes a node's desired state into an engine's maps, in map order (a later entry replaces an earlier
 * one), each map in one batch: encoded bytes shared through `shared` on a WASM/JS engine, else writeAll. */
export function writeDesired(dp: Datapath, maps: DesiredMaps, shared?: EncodedMaps): void {
  for (const name of DESIRED_MAPS) {
    const spec = MAP_SPECS[name] as MapSpec;
    const list = maps[name];
    if (!(dp instanceof AbiDatapath) || !shared) {
      writeAll(dp.map(spec), list.map((e) => [e.key, e.value] as [never, never]));
      continue;
    }
    const ref = shared[name];
    const keys: Uint8Array[] = new Array(list.length);
    const values: Uint8Array[] = new Array(list.length);
    list.forEach((e, i) => {
      const r = ref?.entries[i];
      const same = r !== undefined && sameCodecValue(e.key, r.key);
      keys[i] = same ? ref!.keys[i]! : spec.key.encode(e.key as never);
      values[i] = same && sameCodecValue(e.value, r.value) ? ref!.values[i]! : spec.value.encode(e.value as never);
    });
    if (!ref) shared[name] = { entries: list, keys, values };
    dp.updateEncoded(spec, keys, values);
  }
}

/**
 * Sizes of a simulated node's control-plane maps: twice what the node holds (with the simulator's own
 * ipcache entries for reserved entities), at least 1,024 entries, at most the map's maximum. The datapath's own maps (conntrack, SNAT, affinity)
 * keep their defaults. A node of a large cluster otherwise takes ~54 MiB of engine memory, most of it
 * empty map space (10,000 pods on 50 nodes: 2.7 GiB).
 */
export function capacitiesFor(d: DesiredMaps, extraIpcache: number): Record<string, number> {
  const max = new Map((Object.values(MAP_SPECS) as MapSpec[]).map((m) => [m.name, m.maxEntries]));
  const size = (name: string, n: number) => [name, Math.min(max.get(name) ?? Infinity, Math.max(1024, 2 * n))] as const;
  return Object.fromEntries([
    size("ipcache", d.Ipcache.length + extraIpcache),
    size("lxc", d.Endpoints.length),
    size("policy", d.Policy.length),
    size("lb_services", d.Services.length),
    size("lb_backends", d.Backends.length),
    size("lb_reverse_nat", d.RevNat.length),
    size("lb_maglev", d.Maglev.length),
  ]);
}
