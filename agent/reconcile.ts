/*
 * Incremental map programming: the difference between what the maps hold and what they should hold,
 * applied entry by entry in an order that never opens a hole (docs/agent.md, "No holes during changes";
 * issue #6 item 4). Cilium does the same with its per-map reconcilers (pkg/maps/policymap syncPolicyMap,
 * pkg/ipcache, pkg/loadbalancer reconciler): compute the delta, then write it, never reload programs.
 *
 * Ordering rules (numbered; repeated where implemented):
 *   O1. All additions and in-place updates come before any deletion, so for a while the maps hold the union
 *       of the old and the new state, never less than either.
 *   O2. Additions go in dependency order — backends, reverse NAT, Maglev, service slots, then the service's
 *       master entry (which makes the slots reachable), policy, ipcache, and the endpoint last (which makes
 *       a new pod's policy reachable). Deletions go the other way round.
 *   O3. In the LPM maps (policy, ipcache), additions go longest prefix first and deletions shortest prefix
 *       first. For any packet, the longest match in the union is then always either the old winner or the
 *       new one: a flow with the same verdict before and after keeps it throughout.
 */
import { MAP_SPECS } from "../host/codecs.gen.ts";
import { hex, MANAGED_MAPS, type Entry, type ManagedMap, type MapContents } from "./desired.ts";

export interface ByteMap {
  entries(): Iterable<[Uint8Array, Uint8Array]>;
  update(key: Uint8Array, value: Uint8Array): void;
  delete(key: Uint8Array): boolean;
  /** Many updates in order, in few syscalls (datapath/bpf-map.ts RawMap.updateBatch): each failing entry
   * is reported through onError and the rest still go in. Optional: without it, entries go one by one. */
  updateBatch?(keys: Uint8Array[], values: Uint8Array[], flags: number, onError: (index: number, error: Error) => void): number;
  /** Many deletes in order (RawMap.deleteBatch), same contract. */
  deleteBatch?(keys: Uint8Array[], onError: (index: number, error: Error) => void): number;
}

export interface Op {
  map: ManagedMap;
  op: "add" | "update" | "delete";
  key: Uint8Array;
  value?: Uint8Array;
}

export interface ApplyResult {
  added: number;
  updated: number;
  deleted: number;
  /** Failed operations (e.g. a full map) with the error; the rest were still applied. */
  failed: { op: Op; error: Error }[];
}

const LPM = new Set<ManagedMap>(["Policy", "Ipcache"]);

function prefixlen(key: Uint8Array): number {
  return new DataView(key.buffer, key.byteOffset, 4).getUint32(0, true);
}

function serviceSlot(key: Uint8Array): number {
  return MAP_SPECS.Services.key.decode(key).backendSlot;
}

function equal(a: Uint8Array, b: Uint8Array): boolean {
  if (a.length !== b.length) return false;
  for (let i = 0; i < a.length; i++) if (a[i] !== b[i]) return false;
  return true;
}

/** Reads a map's current contents. */
export function readContents(m: ByteMap): MapContents {
  const out: MapContents = new Map();
  for (const [k, v] of m.entries()) out.set(hex(k), { key: new Uint8Array(k), value: new Uint8Array(v) });
  return out;
}

/** The operations that turn `current` into `desired`, in the order of rules O1–O3. */
export function planReconcile(current: Partial<Record<ManagedMap, MapContents>>, desired: Record<ManagedMap, MapContents>): Op[] {
  const writes: Op[] = [];
  const deletes: Op[] = [];
  // O2: additions in MANAGED_MAPS order, deletions in reverse.
  for (const map of MANAGED_MAPS) {
    const cur = current[map] ?? new Map<string, Entry>();
    const want = desired[map];
    if (cur === want) continue; // the same contents object: nothing to diff (an incremental computeDesired reuses unchanged maps)
    let w: Op[] = [];
    for (const [k, e] of want) {
      const have = cur.get(k);
      if (!have) w.push({ map, op: "add", key: e.key, value: e.value });
      else if (!equal(have.value, e.value)) w.push({ map, op: "update", key: e.key, value: e.value });
    }
    let d: Op[] = [];
    if (map !== "Config") for (const [k, e] of cur) if (!want.has(k)) d.push({ map, op: "delete", key: e.key });
    if (LPM.has(map)) {
      // O3
      w = w.sort((a, b) => prefixlen(b.key) - prefixlen(a.key));
      d = d.sort((a, b) => prefixlen(a.key) - prefixlen(b.key));
    } else if (map === "Services") {
      // O2: slots before the master entry on the way in, the master first on the way out.
      w = w.sort((a, b) => (serviceSlot(a.key) === 0 ? 1 : 0) - (serviceSlot(b.key) === 0 ? 1 : 0));
      d = d.sort((a, b) => (serviceSlot(a.key) === 0 ? 0 : 1) - (serviceSlot(b.key) === 0 ? 0 : 1));
    }
    writes.push(...w);
    deletes.unshift(...d);
  }
  return [...writes, ...deletes]; // O1
}

/**
 * Applies the operations in order; a failing one is recorded and the others still go in. Runs of
 * consecutive writes (or deletes) to one map go as one batch when the map supports it: a batch keeps its
 * entries' order, so rules O1–O3 hold as they do entry by entry.
 */
export function applyPlan(target: (m: ManagedMap) => ByteMap, ops: Op[]): ApplyResult {
  const r: ApplyResult = { added: 0, updated: 0, deleted: 0, failed: [] };
  let i = 0;
  while (i < ops.length) {
    const first = ops[i]!;
    const isDelete = first.op === "delete";
    let j = i + 1;
    while (j < ops.length && ops[j]!.map === first.map && (ops[j]!.op === "delete") === isDelete) j++;
    const run = ops.slice(i, j);
    i = j;
    let m: ByteMap;
    try {
      m = target(first.map);
    } catch (e) {
      for (const op of run) r.failed.push({ op, error: e as Error });
      continue;
    }
    if (run.length > 1 && (isDelete ? m.deleteBatch : m.updateBatch)) {
      const failed = new Set<number>();
      const onError = (index: number, error: Error) => {
        failed.add(index);
        r.failed.push({ op: run[index]!, error });
      };
      if (isDelete) m.deleteBatch!(run.map((o) => o.key), onError);
      else m.updateBatch!(run.map((o) => o.key), run.map((o) => o.value!), 0, onError);
      run.forEach((o, k) => {
        if (failed.has(k)) return;
        if (o.op === "delete") r.deleted++;
        else if (o.op === "add") r.added++;
        else r.updated++;
      });
      continue;
    }
    applyOne(m, run, r);
  }
  return r;
}

function applyOne(m: ByteMap, ops: Op[], r: ApplyResult): void {
  for (const op of ops) {
    try {
      if (op.op === "delete") {
        m.delete(op.key);
        r.deleted++;
      } else {
        m.update(op.key, op.value!);
        if (op.op === "add") r.added++;
        else r.updated++;
      }
    } catch (e) {
      r.failed.push({ op, error: e as Error });
    }
  }
}
