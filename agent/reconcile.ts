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
 *
 * Failure rules (a map operation can fail: a full map, ENOMEM, EPERM…; the agent retries with backoff):
 *   F1. A failed policy operation must never leave more allowed than the desired state: a failed delete or
 *       update of an allow entry is fenced by overwriting that key with a deny (same key and prefix length,
 *       so it shadows exactly what the stale allow covered — possibly more than the desired state would
 *       allow through a shorter entry: fail closed, until the retry deletes the fence).
 *   F2. When the fence itself fails, or a deny entry could not be added (a shorter allow may then still
 *       cover its traffic), the endpoint is quarantined: its endpoints-map (lxc) entries are deleted, so
 *       the datapath drops everything it sends (DROP_INVALID_SIP) and everything addressed to it
 *       (DROP_UNROUTABLE). A delete from a hash map needs no memory, so this holds under map pressure.
 *   F3. A quarantined endpoint stays out of the endpoints map until a reconcile leaves none of its policy
 *       operations failed; its entries are written back only then.
 * Cilium logs and counts a failed policy-map write and leaves the entry to its periodic policy-map sync
 * controller (cilium/cilium pkg/endpoint/bpf.go applyPolicyMapChanges, addPolicyKey/deletePolicyKey, and
 * syncPolicyMapWithDump), keeping the stale entry meanwhile; F1–F3 close that window here.
 */
import { MAP_SPECS } from "../host/codecs.gen.ts";
import * as C from "../host/constants.gen.ts";
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

export interface FailClosedResult extends ApplyResult {
  /** Policy keys overwritten with a deny because their delete or update failed (F1). */
  fenced: number;
  /** Endpoint ids quarantined by this apply (F2), and released by it (F3). */
  quarantined: number[];
  released: number[];
  /** Fences and quarantines that failed too: the node may then allow more than desired. */
  failOpen: { op: Op; error: Error }[];
}

const policyKey = (k: Uint8Array) => MAP_SPECS.Policy.key.decode(k);
const isDeny = (v: Uint8Array) => (MAP_SPECS.Policy.value.decode(v).flags & C.POLICY_F_DENY) !== 0;
const endpointId = (v: Uint8Array) => MAP_SPECS.Endpoints.value.decode(v).epId;

/** `desired` without the endpoints-map entries of the quarantined endpoints (F3). */
function withoutQuarantined(desired: Record<ManagedMap, MapContents>, quarantine: ReadonlySet<number>): Record<ManagedMap, MapContents> {
  if (quarantine.size === 0) return desired;
  const eps: MapContents = new Map();
  for (const [k, e] of desired.Endpoints) if (!quarantine.has(endpointId(e.value))) eps.set(k, e);
  return { ...desired, Endpoints: eps };
}

/**
 * planReconcile + applyPlan under the failure rules F1–F3: `quarantine` (the endpoint ids held out of the
 * endpoints map) is the caller's state across reconciles and is updated here.
 */
export function reconcileFailClosed(
  target: (m: ManagedMap) => ByteMap,
  current: Partial<Record<ManagedMap, MapContents>>,
  desired: Record<ManagedMap, MapContents>,
  quarantine: Set<number>,
): FailClosedResult {
  const res = applyPlan(target, planReconcile(current, withoutQuarantined(desired, quarantine)));
  const out: FailClosedResult = { ...res, fenced: 0, quarantined: [], released: [], failOpen: [] };
  const before = current.Policy ?? new Map<string, Entry>();
  const toQuarantine = new Map<number, Op>();
  const stillFailing = new Set<number>();
  for (const { op } of res.failed) {
    if (op.map !== "Policy") continue;
    const epId = policyKey(op.key).epId;
    stillFailing.add(epId);
    const old = before.get(hex(op.key));
    if (op.op === "add") {
      // A missing allow denies more than desired; a missing deny may leave a shorter allow in force (F2).
      if (isDeny(op.value!)) toQuarantine.set(epId, op);
      continue;
    }
    if (!old || isDeny(old.value)) continue; // a stale deny denies more than desired: closed already
    // F1: the stale allow becomes a deny of the same key (and prefix length).
    const fence = MAP_SPECS.Policy.value.encode({ ...MAP_SPECS.Policy.value.decode(old.value), flags: C.POLICY_F_DENY, proxyPort: 0 });
    try {
      target("Policy").update(op.key, fence);
      out.fenced++;
    } catch {
      toQuarantine.set(epId, op);
    }
  }
  if (toQuarantine.size) {
    // F2: delete the endpoint's entries as the map holds them now.
    let eps: ByteMap | undefined;
    try {
      eps = target("Endpoints");
      const held = [...eps.entries()].filter(([, v]) => toQuarantine.has(endpointId(v))).map(([k]) => new Uint8Array(k));
      for (const k of held) eps.delete(k);
      for (const id of toQuarantine.keys()) if (!quarantine.has(id)) out.quarantined.push(id);
      for (const id of toQuarantine.keys()) quarantine.add(id);
    } catch (e) {
      for (const op of toQuarantine.values()) out.failOpen.push({ op, error: e as Error });
    }
  }
  // F3: an endpoint whose policy operations all went in comes back.
  const release = [...quarantine].filter((id) => !stillFailing.has(id));
  if (release.length) {
    const back = new Map<string, Entry>();
    for (const [k, e] of desired.Endpoints) if (release.includes(endpointId(e.value))) back.set(k, e);
    try {
      const eps = target("Endpoints");
      for (const e of back.values()) eps.update(e.key, e.value);
      for (const id of release) quarantine.delete(id);
      out.released.push(...release);
      out.added += back.size;
    } catch (e) {
      // Still closed: the endpoint stays out and the next reconcile tries again.
      for (const [, en] of back) out.failed.push({ op: { map: "Endpoints", op: "add", key: en.key, value: en.value }, error: e as Error });
    }
  }
  return out;
}
