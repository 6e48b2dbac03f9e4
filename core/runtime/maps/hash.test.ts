// Unit and property tests for the BPF hash / LRU hash tables (core/runtime/maps/hash.ts), directly and through
// the public map API (core/maps.ts). Runs the JavaScript semantics (env.portable).
import { describe, expect, it } from "vitest";
import fc from "fast-check";
import { hashCount, hashCreate, hashDelete, hashLookup, hashNextKey, hashUpdate } from "./hash";
import { allocStatic } from "../../alloc";
import { read32, write32 } from "../../env";
import { BPF_ANY, BPF_EXIST, BPF_NOEXIST, E2BIG, EEXIST, EINVAL, ENOENT } from "../../constants";
import { mapCount, mapCreate, mapDelete, mapLookup, mapNextKey, mapUpdate } from "../../maps";
import { MapId, SERVICE_KEY_SIZE, SERVICE_VALUE_SIZE, CT_TUPLE_SIZE, CT_ENTRY_SIZE } from "../../gen/layout";

// Scratch buffers shared by the whole file (memory is shared within a file).
const K = allocStatic(64, 8);
const V = allocStatic(128, 8);
const OUT = allocStatic(64, 8);

/** Writes a key of `ks` bytes: word 0 = id, word 1 = id ^ salt, the rest derived from id. */
function key(id: number, ks = 8): number {
  for (let i = 0; i < ks / 4; i++) write32(K + i * 4, i === 0 ? id : Math.imul(id + i, 0x9e3779b1) >>> 0);
  return K;
}
function val(x: number, vs = 8): number {
  for (let i = 0; i < vs / 4; i++) write32(V + i * 4, (x + i) >>> 0);
  return V;
}
function get(d: number, id: number, ks = 8): number | undefined {
  const p = hashLookup(d, key(id, ks));
  return p === 0 ? undefined : read32(p);
}
/** Every key id in iteration order (word 0 of each key). */
function iterate(d: number): number[] {
  const ids: number[] = [];
  let prev = 0;
  for (let n = 0; n < 100000; n++) {
    if (hashNextKey(d, prev, OUT) !== 0) break;
    ids.push(read32(OUT));
    // Copy OUT to a separate buffer used as the next "previous key".
    if (prev === 0) prev = allocStatic(64, 8);
    for (let i = 0; i < 16; i++) write32(prev + i * 4, read32(OUT + i * 4));
  }
  return ids;
}

describe("hash table", () => {
  it("applies BPF_ANY / BPF_NOEXIST / BPF_EXIST like check_flags()", () => {
    const d = hashCreate(8, 8, 4, false);
    expect(d).not.toBe(0);
    expect(hashUpdate(d, key(1), val(10), BPF_EXIST)).toBe(-ENOENT);
    expect(get(d, 1)).toBeUndefined();
    expect(hashUpdate(d, key(1), val(10), BPF_NOEXIST)).toBe(0);
    expect(hashUpdate(d, key(1), val(11), BPF_NOEXIST)).toBe(-EEXIST);
    expect(get(d, 1)).toBe(10);
    expect(hashUpdate(d, key(1), val(12), BPF_EXIST)).toBe(0);
    expect(get(d, 1)).toBe(12);
    expect(hashUpdate(d, key(1), val(13), BPF_ANY)).toBe(0);
    expect(hashUpdate(d, key(2), val(20), BPF_ANY)).toBe(0);
    expect(get(d, 1)).toBe(13);
    expect(get(d, 2)).toBe(20);
    expect(hashUpdate(d, key(3), val(30), 3)).toBe(-EINVAL);
    expect(hashCount(d)).toBe(2);
  });

  it("returns a pointer through which writes change the stored value", () => {
    const d = hashCreate(8, 8, 4, false);
    hashUpdate(d, key(5), val(50), BPF_ANY);
    const p = hashLookup(d, key(5));
    expect(p % 8).toBe(0);
    write32(p + 4, 777);
    expect(read32(hashLookup(d, key(5)) + 4)).toBe(777);
  });

  it("fails with -E2BIG when full, but still replaces existing keys", () => {
    const d = hashCreate(8, 8, 3, false);
    for (let i = 1; i <= 3; i++) expect(hashUpdate(d, key(i), val(i), BPF_ANY)).toBe(0);
    expect(hashUpdate(d, key(4), val(4), BPF_ANY)).toBe(-E2BIG);
    expect(hashUpdate(d, key(4), val(4), BPF_NOEXIST)).toBe(-E2BIG);
    expect(hashUpdate(d, key(2), val(22), BPF_ANY)).toBe(0);
    expect(get(d, 2)).toBe(22);
    expect(hashCount(d)).toBe(3);
    expect(get(d, 4)).toBeUndefined();
  });

  it("deletes and reinserts", () => {
    const d = hashCreate(8, 8, 3, false);
    for (let i = 1; i <= 3; i++) hashUpdate(d, key(i), val(i), BPF_ANY);
    expect(hashDelete(d, key(2))).toBe(0);
    expect(hashDelete(d, key(2))).toBe(-ENOENT);
    expect(get(d, 2)).toBeUndefined();
    expect(hashCount(d)).toBe(2);
    expect(hashUpdate(d, key(4), val(4), BPF_NOEXIST)).toBe(0);
    expect(hashUpdate(d, key(2), val(2), BPF_NOEXIST)).toBe(-E2BIG);
    expect(hashDelete(d, key(1))).toBe(0);
    expect(hashUpdate(d, key(2), val(200), BPF_NOEXIST)).toBe(0);
    expect([get(d, 1), get(d, 2), get(d, 3), get(d, 4)]).toEqual([undefined, 200, 3, 4]);
  });

  it("survives heavy collisions and backward-shift deletion (many keys in a small table)", () => {
    const d = hashCreate(4, 4, 64, false);
    for (let i = 0; i < 64; i++) expect(hashUpdate(d, key(i * 128, 4), val(i, 4), BPF_NOEXIST)).toBe(0);
    for (let i = 0; i < 64; i += 2) expect(hashDelete(d, key(i * 128, 4))).toBe(0);
    for (let i = 0; i < 64; i++) expect(get(d, i * 128, 4)).toBe(i % 2 === 0 ? undefined : i);
    expect(hashCount(d)).toBe(32);
  });

  it("iterates every live key exactly once, also after deletes", () => {
    const d = hashCreate(8, 8, 100, false);
    expect(hashNextKey(d, 0, OUT)).toBe(-ENOENT);
    for (let i = 0; i < 100; i++) hashUpdate(d, key(1000 + i), val(i), BPF_ANY);
    for (let i = 0; i < 100; i += 3) hashDelete(d, key(1000 + i));
    const ids = iterate(d);
    const expected = [];
    for (let i = 0; i < 100; i++) if (i % 3 !== 0) expected.push(1000 + i);
    expect(ids.length).toBe(expected.length);
    expect([...ids].sort((a, b) => a - b)).toEqual(expected);
    // Deterministic: the same history gives the same order.
    expect(iterate(d)).toEqual(ids);
    // A key that is not present restarts from the first key, as the kernel does.
    expect(hashNextKey(d, key(999999), OUT)).toBe(0);
    expect(read32(OUT)).toBe(ids[0]);
    // From the last key: the end.
    expect(hashNextKey(d, key(ids[ids.length - 1]), OUT)).toBe(-ENOENT);
  });

  it("supports the delete-while-iterating pattern (next key, then delete the current one)", () => {
    const d = hashCreate(8, 8, 50, false);
    for (let i = 0; i < 50; i++) hashUpdate(d, key(i + 1), val(i), BPF_ANY);
    const cur = allocStatic(8, 8);
    let seen = 0;
    let rc = hashNextKey(d, 0, cur);
    for (let n = 0; rc === 0 && n < 1000; n++) {
      seen++;
      const have = rc;
      const nextRc = hashNextKey(d, cur, OUT);
      expect(have).toBe(0);
      expect(hashDelete(d, cur)).toBe(0);
      if (nextRc !== 0) break;
      write32(cur, read32(OUT));
      write32(cur + 4, read32(OUT + 4));
      rc = nextRc;
    }
    expect(seen).toBe(50);
    expect(hashCount(d)).toBe(0);
  });

  it("rejects unusable sizes", () => {
    expect(hashCreate(0, 8, 4, false)).toBe(0);
    expect(hashCreate(6, 8, 4, false)).toBe(0);
    expect(hashCreate(8, 6, 4, false)).toBe(0);
    expect(hashCreate(8, 8, 0, false)).toBe(0);
  });
});

describe("LRU hash table", () => {
  it("evicts the least recently used entry; lookups and updates refresh", () => {
    const d = hashCreate(8, 8, 3, true);
    for (const i of [1, 2, 3]) expect(hashUpdate(d, key(i), val(i), BPF_ANY)).toBe(0); // MRU: 3 2 1
    expect(get(d, 1)).toBe(1); // MRU: 1 3 2
    expect(hashUpdate(d, key(4), val(4), BPF_ANY)).toBe(0); // evicts 2 → 4 1 3
    expect(get(d, 2)).toBeUndefined();
    expect(hashCount(d)).toBe(3);
    expect(hashUpdate(d, key(3), val(33), BPF_EXIST)).toBe(0); // 3 4 1
    expect(hashUpdate(d, key(5), val(5), BPF_NOEXIST)).toBe(0); // evicts 1 → 5 3 4
    expect(get(d, 1)).toBeUndefined();
    expect([get(d, 3), get(d, 4), get(d, 5)]).toEqual([33, 4, 5]); // 5 4 3
    expect(hashUpdate(d, key(6), val(6), BPF_ANY)).toBe(0); // evicts 3
    expect([get(d, 3), get(d, 4), get(d, 5), get(d, 6)]).toEqual([undefined, 4, 5, 6]);
  });

  it("does not evict on a failing update, and failed updates do not refresh", () => {
    const d = hashCreate(8, 8, 2, true);
    hashUpdate(d, key(1), val(1), BPF_ANY);
    hashUpdate(d, key(2), val(2), BPF_ANY); // MRU: 2 1
    expect(hashUpdate(d, key(9), val(9), BPF_EXIST)).toBe(-ENOENT);
    expect(hashUpdate(d, key(1), val(9), BPF_NOEXIST)).toBe(-EEXIST);
    expect(hashCount(d)).toBe(2);
    expect(hashUpdate(d, key(3), val(3), BPF_ANY)).toBe(0); // evicts 1
    expect([get(d, 1), get(d, 2), get(d, 3)]).toEqual([undefined, 2, 3]);
  });

  it("next-key iteration does not change the LRU order", () => {
    const d = hashCreate(8, 8, 3, true);
    for (const i of [1, 2, 3]) hashUpdate(d, key(i), val(i), BPF_ANY);
    expect(iterate(d).sort()).toEqual([1, 2, 3]);
    hashUpdate(d, key(4), val(4), BPF_ANY);
    expect(get(d, 1)).toBeUndefined();
  });

  it("inserting a key copied out of the entry about to be evicted works", () => {
    const d = hashCreate(8, 8, 1, true);
    hashUpdate(d, key(1), val(1), BPF_ANY);
    const p = hashLookup(d, key(1)); // value pointer of the only (LRU) entry
    write32(p, 42);
    expect(hashUpdate(d, key(2), p, BPF_ANY)).toBe(0); // value source is evicted and reused in place
    expect(get(d, 2)).toBe(42);
    expect(get(d, 1)).toBeUndefined();
  });
});

describe("public map API (core/maps.ts)", () => {
  it("dispatches Services (hash) and Conntrack (LRU hash)", () => {
    expect(mapCreate(MapId.Services, 2)).toBe(0);
    expect(mapCreate(MapId.Services, 2)).toBe(-EEXIST);
    expect(mapCreate(MapId.Conntrack, 2)).toBe(0);
    expect(SERVICE_KEY_SIZE % 4).toBe(0);
    for (const i of [1, 2]) expect(mapUpdate(MapId.Services, key(i, SERVICE_KEY_SIZE), val(i, SERVICE_VALUE_SIZE), BPF_ANY)).toBe(0);
    expect(mapUpdate(MapId.Services, key(3, SERVICE_KEY_SIZE), val(3, SERVICE_VALUE_SIZE), BPF_ANY)).toBe(-E2BIG);
    expect(mapUpdate(MapId.Services, key(3, SERVICE_KEY_SIZE), val(3, SERVICE_VALUE_SIZE), 4)).toBe(-EINVAL);
    expect(read32(mapLookup(MapId.Services, key(2, SERVICE_KEY_SIZE)))).toBe(2);
    expect(mapDelete(MapId.Services, key(2, SERVICE_KEY_SIZE))).toBe(0);
    expect(mapDelete(MapId.Services, key(2, SERVICE_KEY_SIZE))).toBe(-ENOENT);
    expect(mapCount(MapId.Services)).toBe(1);
    expect(mapNextKey(MapId.Services, 0, OUT)).toBe(0);
    expect(read32(OUT)).toBe(1);

    for (const i of [1, 2, 3]) expect(mapUpdate(MapId.Conntrack, key(i, CT_TUPLE_SIZE), val(i, CT_ENTRY_SIZE), BPF_ANY)).toBe(0);
    expect(mapCount(MapId.Conntrack)).toBe(2);
    expect(mapLookup(MapId.Conntrack, key(1, CT_TUPLE_SIZE))).toBe(0);
    expect(read32(mapLookup(MapId.Conntrack, key(3, CT_TUPLE_SIZE)))).toBe(3);
  });
});

// ---- Property tests against a plain JS Map model ----------------------------------------------------

type Op =
  | { t: "update"; k: number; v: number; flags: number }
  | { t: "delete"; k: number }
  | { t: "lookup"; k: number }
  | { t: "next"; k: number | null };

const opArb = (keys: number): fc.Arbitrary<Op> =>
  fc.oneof(
    { weight: 5, arbitrary: fc.record({ t: fc.constant("update" as const), k: fc.nat(keys - 1), v: fc.nat(), flags: fc.constantFrom(0, 0, 1, 2) }) },
    { weight: 2, arbitrary: fc.record({ t: fc.constant("delete" as const), k: fc.nat(keys - 1) }) },
    { weight: 3, arbitrary: fc.record({ t: fc.constant("lookup" as const), k: fc.nat(keys - 1) }) },
    { weight: 1, arbitrary: fc.record({ t: fc.constant("next" as const), k: fc.option(fc.nat(keys - 1)) }) },
  );

/** Runs `ops` on a fresh table and on the model; `lru` models exact LRU (Map order = recency, oldest first). */
function runModel(ops: Op[], ks: number, max: number, lru: boolean): void {
  const d = hashCreate(ks, 8, max, lru);
  expect(d).not.toBe(0);
  const model = new Map<number, number>();
  const touch = (k: number) => {
    if (!lru) return;
    const v = model.get(k)!;
    model.delete(k);
    model.set(k, v);
  };
  // Key ids are spread so that word 0 alone does not make keys distinct (word 1 derives from the id).
  const id = (k: number) => (k * 0x10001) >>> 0;
  for (const op of ops) {
    if (op.t === "update") {
      const rc = hashUpdate(d, key(id(op.k), ks), val(op.v), op.flags);
      const present = model.has(op.k);
      let want = 0;
      if (present && op.flags === BPF_NOEXIST) want = -EEXIST;
      else if (!present && op.flags === BPF_EXIST) want = -ENOENT;
      else if (!present && model.size >= max) {
        if (lru) model.delete(model.keys().next().value!);
        else want = -E2BIG;
      }
      expect(rc).toBe(want);
      if (want === 0) {
        model.set(op.k, op.v);
        touch(op.k);
      }
    } else if (op.t === "delete") {
      const want = model.has(op.k) ? 0 : -ENOENT;
      expect(hashDelete(d, key(id(op.k), ks))).toBe(want);
      model.delete(op.k);
    } else if (op.t === "lookup") {
      const p = hashLookup(d, key(id(op.k), ks));
      if (model.has(op.k)) {
        expect(p).not.toBe(0);
        expect(read32(p)).toBe(model.get(op.k));
        expect(read32(p + 4)).toBe((model.get(op.k)! + 1) >>> 0);
        touch(op.k);
      } else expect(p).toBe(0);
    } else {
      // Next key from a given key: the answer must be a live key (or the end) and must not be the key itself.
      const rc = hashNextKey(d, op.k === null ? 0 : key(id(op.k), ks), OUT);
      if (model.size === 0) expect(rc).toBe(-ENOENT);
      if (rc === 0) {
        const got = read32(OUT);
        expect([...model.keys()].map(id)).toContain(got);
        if (op.k !== null) expect(got).not.toBe(id(op.k));
      } else if (op.k === null || !model.has(op.k)) expect(model.size).toBe(0);
    }
    expect(hashCount(d)).toBe(model.size);
  }
  const ids = iterate(d);
  expect(ids.length).toBe(model.size);
  expect([...ids].sort((a, b) => a - b)).toEqual([...model.keys()].map(id).sort((a, b) => a - b));
}

describe("hash table properties", () => {
  it("random operation sequences agree with a Map model (plain hash)", () => {
    fc.assert(
      fc.property(fc.constantFrom(4, 8, 40), fc.integer({ min: 1, max: 12 }), fc.array(opArb(24), { maxLength: 200 }), (ks, max, ops) => {
        runModel(ops, ks, max, false);
      }),
      { numRuns: 150 },
    );
  });

  it("random operation sequences agree with an exact-LRU Map model (LRU hash)", () => {
    fc.assert(
      fc.property(fc.constantFrom(4, 8, 40), fc.integer({ min: 1, max: 12 }), fc.array(opArb(24), { maxLength: 200 }), (ks, max, ops) => {
        runModel(ops, ks, max, true);
      }),
      { numRuns: 150 },
    );
  });
});
