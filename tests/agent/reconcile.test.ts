/*
 * agent/reconcile.ts without a kernel: the plan's order (rules O1–O3) and, as a property, that applying
 * it one operation at a time never changes the verdict of a lookup whose verdict is the same before and
 * after (LPM maps: the policy map and the ipcache).
 */
import fc from "fast-check";
import { describe, expect, it } from "vitest";
import { MAP_SPECS } from "../../host/codecs.gen.ts";
import { hex, MANAGED_MAPS, type ManagedMap, type MapContents } from "../../agent/desired.ts";
import { applyPlan, planReconcile, readContents, type ByteMap } from "../../agent/reconcile.ts";

function empty(): Record<ManagedMap, MapContents> {
  return Object.fromEntries(MANAGED_MAPS.map((m) => [m, new Map()])) as Record<ManagedMap, MapContents>;
}

function put(c: MapContents, key: Uint8Array, value: Uint8Array): void {
  c.set(hex(key), { key, value });
}

class MemMap implements ByteMap {
  readonly m = new Map<string, [Uint8Array, Uint8Array]>();
  entries() {
    return this.m.values();
  }
  update(k: Uint8Array, v: Uint8Array) {
    this.m.set(hex(k), [k, v]);
  }
  delete(k: Uint8Array) {
    return this.m.delete(hex(k));
  }
}

/** An LPM key: prefixlen (u32 LE, bits of data that count) then a 32-bit address. */
function lpmKey(prefixlen: number, addr: number): Uint8Array {
  const b = new Uint8Array(8);
  const dv = new DataView(b.buffer);
  dv.setUint32(0, prefixlen, true);
  const mask = prefixlen === 0 ? 0 : (0xffffffff << (32 - prefixlen)) >>> 0;
  dv.setUint32(4, (addr & mask) >>> 0, false);
  return b;
}

function lpmLookup(m: MemMap, addr: number): number {
  let best = -1;
  let verdict = 0; // no entry: default deny
  for (const [k, v] of m.m.values()) {
    const dv = new DataView(k.buffer, k.byteOffset);
    const len = dv.getUint32(0, true);
    const mask = len === 0 ? 0 : (0xffffffff << (32 - len)) >>> 0;
    if (((addr & mask) >>> 0) === dv.getUint32(4, false) && len > best) {
      best = len;
      verdict = v[0]!;
    }
  }
  return verdict;
}

describe("planReconcile", () => {
  it("adds before it deletes (O1), in dependency order (O2), and leaves identical entries alone", () => {
    const cur = empty();
    const want = empty();
    put(cur.Endpoints, new Uint8Array([1]), new Uint8Array([1]));
    put(cur.Backends, new Uint8Array([9]), new Uint8Array([1]));
    put(cur.Policy, lpmKey(8, 0x0a000000), new Uint8Array([1]));
    put(want.Policy, lpmKey(8, 0x0a000000), new Uint8Array([1]));
    put(want.Endpoints, new Uint8Array([2]), new Uint8Array([1]));
    put(want.Backends, new Uint8Array([3]), new Uint8Array([1]));
    put(want.Ipcache, lpmKey(32, 1), new Uint8Array([1]));
    const ops = planReconcile(cur, want);
    expect(ops.map((o) => `${o.op} ${o.map}`)).toEqual(["add Backends", "add Ipcache", "add Endpoints", "delete Endpoints", "delete Backends"]);
  });

  it("writes service slots before the master entry, and deletes the master first", () => {
    const key = (slot: number) => MAP_SPECS.Services.key.encode({ dport: 80, backendSlot: slot, family: 1 });
    const val = (id: number) => MAP_SPECS.Services.value.encode({ backendId: id, count: 2 });
    const want = empty();
    for (const s of [0, 1, 2]) put(want.Services, key(s), val(s + 10));
    const adds = planReconcile(empty(), want).map((o) => MAP_SPECS.Services.key.decode(o.key).backendSlot);
    expect(adds[adds.length - 1]).toBe(0);
    const dels = planReconcile(want, empty()).map((o) => MAP_SPECS.Services.key.decode(o.key).backendSlot);
    expect(dels[0]).toBe(0);
  });

  it("never deletes the Config entry", () => {
    const cur = empty();
    put(cur.Config, new Uint8Array(4), new Uint8Array([1]));
    expect(planReconcile(cur, empty())).toEqual([]);
  });

  it("applyPlan records a failing operation and goes on with the others", () => {
    const want = empty();
    put(want.Backends, new Uint8Array([1]), new Uint8Array([1]));
    put(want.Endpoints, new Uint8Array([2]), new Uint8Array([1]));
    const mem = new MemMap();
    const r = applyPlan((m) => (m === "Backends" ? { ...mem, entries: () => [], update: () => { throw new Error("full"); }, delete: () => false } : mem), planReconcile(empty(), want));
    expect(r.failed.map((f) => f.op.map)).toEqual(["Backends"]);
    expect(r.added).toBe(1);
    expect(readContents(mem).size).toBe(1);
  });

  it("applyPlan batches runs of one map in plan order, and reports a failing entry of a batch", () => {
    const want = empty();
    for (let i = 0; i < 5; i++) put(want.Backends, new Uint8Array([i]), new Uint8Array([i]));
    put(want.Endpoints, new Uint8Array([9]), new Uint8Array([1]));
    const mem = new MemMap();
    const calls: { keys: number[]; kind: string }[] = [];
    const batching: ByteMap = {
      entries: () => mem.entries(),
      update: (k, v) => mem.update(k, v),
      delete: (k) => mem.delete(k),
      updateBatch(keys, values, _flags, onError) {
        calls.push({ keys: keys.map((k) => k[0]!), kind: "update" });
        let n = 0;
        keys.forEach((k, i) => {
          if (k[0] === 3) return onError(i, new Error("full"));
          mem.update(k, values[i]!);
          n++;
        });
        return n;
      },
      deleteBatch(keys, onError) {
        calls.push({ keys: keys.map((k) => k[0]!), kind: "delete" });
        return keys.filter((k, i) => (mem.delete(k) ? true : (onError(i, new Error("absent")), false))).length;
      },
    };
    const plan = planReconcile(empty(), want);
    const other = new MemMap();
    const r = applyPlan((m) => (m === "Backends" ? batching : other), plan);
    expect(calls).toEqual([{ keys: plan.filter((o) => o.map === "Backends").map((o) => o.key[0]!), kind: "update" }]);
    expect(r.failed.map((f) => [f.op.map, f.op.key[0]])).toEqual([["Backends", 3]]);
    expect(r.added).toBe(5);
    const del = applyPlan((m) => (m === "Backends" ? batching : other), planReconcile({ Backends: readContents(batching) }, empty()));
    expect(calls[1]!.kind).toBe("delete");
    expect(del.deleted).toBe(4);
    expect(del.failed).toEqual([]);
  });

  it("property (O3): a lookup with the same verdict before and after keeps it at every step", () => {
    // Entries over a small address space so that prefixes overlap often.
    const entry = fc.record({ len: fc.integer({ min: 0, max: 4 }).map((n) => n * 8), addr: fc.constantFrom(0x0a000000, 0x0a010000, 0x0a010100, 0x0a010101, 0x0b000000), verdict: fc.constantFrom(1, 2) });
    fc.assert(
      fc.property(fc.array(entry, { maxLength: 8 }), fc.array(entry, { maxLength: 8 }), (before, after) => {
        const cur = empty();
        const want = empty();
        for (const e of before) put(cur.Policy, lpmKey(e.len, e.addr), new Uint8Array([e.verdict]));
        for (const e of after) put(want.Policy, lpmKey(e.len, e.addr), new Uint8Array([e.verdict]));
        const mem = new MemMap();
        for (const e of cur.Policy.values()) mem.update(e.key, e.value);
        const probes = [0x0a000000, 0x0a010000, 0x0a010100, 0x0a010101, 0x0a0101ff, 0x0b000001, 0x0c000000];
        const wantMem = new MemMap();
        for (const e of want.Policy.values()) wantMem.update(e.key, e.value);
        const v0 = probes.map((p) => lpmLookup(mem, p));
        const v1 = probes.map((p) => lpmLookup(wantMem, p));
        for (const op of planReconcile(cur, want)) {
          applyPlan(() => mem, [op]);
          probes.forEach((p, i) => {
            if (v0[i] === v1[i]) expect(lpmLookup(mem, p)).toBe(v0[i]);
          });
        }
        expect(readContents(mem).size).toBe(want.Policy.size);
        probes.forEach((p, i) => expect(lpmLookup(mem, p)).toBe(v1[i]));
      }),
      { numRuns: 300 },
    );
  });
});
