/*
 * BPF maps from Node: a raw handle over a map fd (bytes in, bytes out, through bpf_map_lookup_elem /
 * bpf_map_update_elem / bpf_map_delete_elem / bpf_map_get_next_key) and the typed MapHandle of
 * host/datapath.ts built on it with the generated codecs (host/codecs.gen.ts). A typed handle
 * checks once that the codec sizes equal the kernel map's key and value sizes, so a stale generated layout
 * fails loudly (BPF_LAYOUT_MISMATCH) instead of corrupting entries.
 *
 * Per-CPU maps hold counters in core/'s layouts (the Metrics array): the kernel keeps one value slot per
 * possible CPU (each rounded up to 8 bytes). RawMap reads and writes all the slots (lookupPerCpu /
 * update); the typed handle presents one value, the field-by-field sum over CPUs, and writes a value to
 * CPU 0 with zeroes elsewhere, so that the sum reads back as written.
 */
import { closeSync } from "node:fs";
import type { Codec, MapSpec } from "../host/codecs.gen.ts";
import type { MapHandle } from "../host/datapath.ts";
import { bpfError, BpfError, BpfErrorCode, errnoName } from "./errors.ts";
import { libbpf } from "./libbpf.ts";

/** Update flags of bpf_map_update_elem (uapi linux/bpf.h). */
export const BPF_ANY = 0;
export const BPF_NOEXIST = 1;
export const BPF_EXIST = 2;
export const BPF_F_LOCK = 4;

/** BPF map types that matter here (uapi enum bpf_map_type). */
export const BPF_MAP_TYPE = {
  Hash: 1,
  Array: 2,
  ProgArray: 3,
  PerfEventArray: 4,
  PercpuHash: 5,
  PercpuArray: 6,
  LruHash: 9,
  LruPercpuHash: 10,
  LpmTrie: 11,
  Ringbuf: 27,
} as const;

/** Entries per batch syscall: bounds the buffers Node copies for one call. */
const BATCH_MAX = 16384;
/** Entries per bpf_map_lookup_batch call: the buffers are allocated for every call, full or not. */
const LOOKUP_BATCH = 257;
/** sizeof(struct bpf_map_batch_opts). */
const BATCH_OPTS_SIZE = 24;

const PERCPU_TYPES = new Set<number>([BPF_MAP_TYPE.PercpuHash, BPF_MAP_TYPE.PercpuArray, BPF_MAP_TYPE.LruPercpuHash]);
const ARRAY_TYPES = new Set<number>([BPF_MAP_TYPE.Array, BPF_MAP_TYPE.PercpuArray]);

/** What the kernel says about a map (struct bpf_map_info, the stable prefix). */
export interface MapInfo {
  type: number;
  id: number;
  keySize: number;
  valueSize: number;
  maxEntries: number;
  flags: number;
  name: string;
}

/** bpf_obj_get_info_by_fd on a map fd. Throws BpfError (BPF_MAP_OP_FAILED) for a bad fd. */
export function mapInfo(fd: number): MapInfo {
  const buf = new Uint8Array(88); // sizeof(struct bpf_map_info) in Linux 6.x; the kernel accepts smaller/larger
  const len = new Uint32Array([buf.length]);
  const ret = libbpf().bpf_obj_get_info_by_fd(fd, buf, len);
  if (ret < 0) throw bpfError(BpfErrorCode.MapOpFailed, `bpf_obj_get_info_by_fd(${fd})`, ret);
  const dv = new DataView(buf.buffer);
  const nameBytes = buf.subarray(24, 40);
  const nul = nameBytes.indexOf(0);
  return {
    type: dv.getUint32(0, true),
    id: dv.getUint32(4, true),
    keySize: dv.getUint32(8, true),
    valueSize: dv.getUint32(12, true),
    maxEntries: dv.getUint32(16, true),
    flags: dv.getUint32(20, true),
    name: Buffer.from(nameBytes.subarray(0, nul < 0 ? 16 : nul)).toString("latin1"),
  };
}

/**
 * A map fd with byte-level operations. Owns the fd only when opened from a pin (`RawMap.fromPin`);
 * maps of a BpfObject are owned (and closed) by the object.
 */
export class RawMap {
  readonly info: MapInfo;
  private closed = false;

  constructor(
    readonly fd: number,
    readonly name: string,
    private readonly ownsFd = false,
    /** Called to check that the owner (a BpfObject) is still open. */
    private readonly alive: () => boolean = () => true,
  ) {
    this.info = mapInfo(fd);
    if (PERCPU_TYPES.has(this.info.type)) {
      const cpus = libbpf().libbpf_num_possible_cpus();
      if (cpus <= 0) throw bpfError(BpfErrorCode.MapOpFailed, "libbpf_num_possible_cpus", cpus);
      this.cpus = cpus;
    }
  }

  /** Value slots per key: the number of possible CPUs for a per-CPU map, else 1. */
  readonly cpus: number = 1;

  get isPerCpu(): boolean {
    return PERCPU_TYPES.has(this.info.type);
  }

  /** Bytes the kernel reads or writes for one key's value (all CPUs' slots of a per-CPU map). */
  private get valueBytes(): number {
    return this.isPerCpu ? this.cpus * ((this.info.valueSize + 7) & ~7) : this.info.valueSize;
  }

  /** Opens a pinned map by its bpffs path (bpf_obj_get). The returned map owns its fd: close() it. */
  static fromPin(path: string): RawMap {
    const fd = libbpf().bpf_obj_get(path);
    if (fd < 0) {
      throw bpfError(BpfErrorCode.PinFailed, `bpf_obj_get(${path})`, fd, "is the path on a mounted bpffs, and was the map pinned there?");
    }
    return new RawMap(fd, path, true);
  }

  get isArray(): boolean {
    return ARRAY_TYPES.has(this.info.type);
  }

  private check(key: Uint8Array, value?: Uint8Array): void {
    if (this.closed || !this.alive()) throw new BpfError(BpfErrorCode.Closed, `map ${this.name} is closed`);
    if (key.length !== this.info.keySize) {
      throw new BpfError(BpfErrorCode.BadArgument, `map ${this.name}: key is ${key.length} bytes, map key size is ${this.info.keySize}`);
    }
    if (value && value.length !== this.info.valueSize && value.length !== this.valueBytes) {
      throw new BpfError(BpfErrorCode.BadArgument, `map ${this.name}: value is ${value.length} bytes, map value size is ${this.info.valueSize}`);
    }
  }

  /** The value bytes, or undefined when the key is absent (ENOENT). Other failures throw BpfError. For a
   * per-CPU map: CPU 0's slot (use lookupPerCpu for all of them). */
  lookup(key: Uint8Array): Uint8Array | undefined {
    return this.lookupPerCpu(key)?.[0];
  }

  /** One value per CPU slot (a single one for other maps), or undefined when the key is absent. */
  lookupPerCpu(key: Uint8Array): Uint8Array[] | undefined {
    this.check(key);
    const all = new Uint8Array(this.valueBytes);
    const ret = libbpf().bpf_map_lookup_elem(this.fd, key, all);
    if (ret === 0) {
      if (!this.isPerCpu) return [all];
      const stride = (this.info.valueSize + 7) & ~7;
      return Array.from({ length: this.cpus }, (_, i) => all.subarray(i * stride, i * stride + this.info.valueSize));
    }
    if (errnoName(-ret) === "ENOENT") return undefined;
    throw bpfError(BpfErrorCode.MapOpFailed, `lookup in map ${this.name}`, ret);
  }

  /** A per-CPU map's value buffer with `value` in CPU 0's slot and zeroes elsewhere; other maps: `value`. */
  private expand(value: Uint8Array): Uint8Array {
    if (!this.isPerCpu || value.length === this.valueBytes) return value;
    const all = new Uint8Array(this.valueBytes);
    all.set(value, 0);
    return all;
  }

  /**
   * Inserts or replaces. Throws BpfError: BPF_MAP_FULL (hash/LRU/LPM map full), BPF_KEY_OUT_OF_RANGE (array
   * index ≥ max_entries), BPF_KEY_EXISTS (BPF_NOEXIST and present), BPF_KEY_NOT_FOUND (BPF_EXIST and absent),
   * BPF_NOT_PERMITTED, BPF_MAP_OP_FAILED (anything else).
   */
  update(key: Uint8Array, value: Uint8Array, flags = BPF_ANY): void {
    this.check(key, value);
    const ret = libbpf().bpf_map_update_elem(this.fd, key, this.expand(value), flags);
    if (ret === 0) return;
    const what = `update of map ${this.name}`;
    switch (errnoName(-ret)) {
      case "E2BIG":
        if (this.isArray) throw bpfError(BpfErrorCode.KeyOutOfRange, what, ret, `array index must be < max_entries (${this.info.maxEntries})`);
        throw bpfError(BpfErrorCode.MapFull, what, ret, `map is full (max_entries ${this.info.maxEntries}): delete entries or raise max_entries`);
      case "EEXIST":
        throw bpfError(BpfErrorCode.KeyExists, what, ret, "BPF_NOEXIST given and the key exists");
      case "ENOENT":
        throw bpfError(BpfErrorCode.KeyNotFound, what, ret, "BPF_EXIST given and the key is absent");
      default:
        throw bpfError(BpfErrorCode.MapOpFailed, what, ret);
    }
  }

  /** Deletes a key. Returns false when it was absent (ENOENT); array maps throw (EINVAL: cannot delete). */
  delete(key: Uint8Array): boolean {
    this.check(key);
    const ret = libbpf().bpf_map_delete_elem(this.fd, key);
    if (ret === 0) return true;
    if (errnoName(-ret) === "ENOENT") return false;
    throw bpfError(BpfErrorCode.MapOpFailed, `delete from map ${this.name}`, ret, this.isArray ? "array map entries cannot be deleted; write zeroes instead" : undefined);
  }

  /**
   * BPF_MAP_FREEZE: from now on the kernel refuses every write to this map from user space (updates and
   * deletes fail with EPERM, BPF_NOT_PERMITTED) while programs still read and write it; irreversible for
   * the map's lifetime. Tests use it to make the kernel itself refuse an agent's writes.
   */
  freeze(): void {
    this.check(new Uint8Array(this.info.keySize));
    const ret = libbpf().bpf_map_freeze(this.fd);
    if (ret < 0) throw bpfError(BpfErrorCode.MapOpFailed, `freeze of map ${this.name}`, ret);
  }

  /** Whether this map's type refused a batch operation (LPM tries have none): then entries go one by one. */
  private noBatch = false;
  /** Whether this map's type refused a batch lookup (LPM tries): then entries are read key by key. */
  private noLookupBatch = false;

  /**
   * Writes many entries in few syscalls (bpf_map_update_batch, chunks of BATCH_MAX) — what fills and
   * reconciles use, since one bpf_map_update_elem from Node costs microseconds of call overhead. Entries
   * are written in order, as the kernel's batch walks its arrays in order (so callers' ordering rules
   * hold). A map type without batch support, or an entry the kernel refuses, falls back to a single
   * update for that entry, which throws update()'s precise BpfError; `onError` (when given) receives it
   * with the entry's index and the rest are still written, otherwise it is thrown. Returns how many
   * entries were written.
   */
  updateBatch(keys: Uint8Array[], values: Uint8Array[], flags = BPF_ANY, onError?: (index: number, error: Error) => void): number {
    if (keys.length !== values.length) throw new BpfError(BpfErrorCode.BadArgument, `map ${this.name}: ${keys.length} keys but ${values.length} values`);
    const ks = this.info.keySize;
    const vb = this.valueBytes;
    let written = 0;
    let i = 0;
    while (i < keys.length) {
      if (this.noBatch) {
        written += this.single(i, onError, () => this.update(keys[i]!, values[i]!, flags));
        i++;
        continue;
      }
      const n = Math.min(BATCH_MAX, keys.length - i);
      const kbuf = new Uint8Array(n * ks);
      const vbuf = new Uint8Array(n * vb);
      for (let j = 0; j < n; j++) {
        this.check(keys[i + j]!, values[i + j]!);
        kbuf.set(keys[i + j]!, j * ks);
        vbuf.set(this.expand(values[i + j]!), j * vb);
      }
      const count = new Uint32Array([n]);
      const ret = libbpf().bpf_map_update_batch(this.fd, kbuf, vbuf, count, { sz: BATCH_OPTS_SIZE, elem_flags: flags, flags: 0 });
      const done = ret === 0 ? n : Math.min(count[0]!, n);
      written += done;
      i += done;
      if (ret === 0) continue;
      // The entry at i failed (or the type has no batch): retry it alone for the exact error.
      const ok = this.single(i, onError, () => this.update(keys[i]!, values[i]!, flags));
      if (ok && done === 0) this.noBatch = true;
      written += ok;
      i++;
    }
    return written;
  }

  /** Deletes many keys (bpf_map_delete_batch); absent keys are skipped. Returns how many were deleted.
   * Same fallback and error handling as updateBatch. */
  deleteBatch(keys: Uint8Array[], onError?: (index: number, error: Error) => void): number {
    const ks = this.info.keySize;
    let deleted = 0;
    let i = 0;
    while (i < keys.length) {
      if (this.noBatch) {
        deleted += this.single(i, onError, () => this.delete(keys[i]!) || null);
        i++;
        continue;
      }
      const n = Math.min(BATCH_MAX, keys.length - i);
      const kbuf = new Uint8Array(n * ks);
      for (let j = 0; j < n; j++) {
        this.check(keys[i + j]!);
        kbuf.set(keys[i + j]!, j * ks);
      }
      const count = new Uint32Array([n]);
      const ret = libbpf().bpf_map_delete_batch(this.fd, kbuf, count, { sz: BATCH_OPTS_SIZE, elem_flags: 0, flags: 0 });
      const done = ret === 0 ? n : Math.min(count[0]!, n);
      deleted += done;
      i += done;
      if (ret === 0) continue;
      // ENOENT for an absent key stops the kernel's batch too: delete it alone (false when absent).
      const errno = errnoName(-ret);
      const ok = this.single(i, onError, () => this.delete(keys[i]!) || null);
      if (done === 0 && errno !== "ENOENT") this.noBatch = true;
      deleted += ok;
      i++;
    }
    return deleted;
  }

  /** Runs one fallback operation: 1 when it did something, 0 when it did nothing (null) or failed. */
  private single(index: number, onError: ((index: number, error: Error) => void) | undefined, op: () => unknown): number {
    try {
      return op() === null ? 0 : 1;
    } catch (e) {
      if (!onError) throw e;
      onError(index, e as Error);
      return 0;
    }
  }

  /**
   * Every key, in the kernel's iteration order (bpf_map_get_next_key from NULL). Bounded by
   * 2 × max_entries + 1 steps, since a concurrent delete restarts a hash map's iteration.
   */
  *keys(): IterableIterator<Uint8Array> {
    this.check(new Uint8Array(this.info.keySize));
    const api = libbpf();
    let prev: Uint8Array | null = null;
    const limit = this.info.maxEntries * 2 + 1;
    for (let i = 0; i < limit; i++) {
      const next = new Uint8Array(this.info.keySize);
      const ret = api.bpf_map_get_next_key(this.fd, prev, next);
      if (ret < 0) {
        if (errnoName(-ret) === "ENOENT") return;
        throw bpfError(BpfErrorCode.MapOpFailed, `iteration of map ${this.name}`, ret);
      }
      yield next;
      prev = next;
    }
  }

  /** Every (key, value) pair; keys deleted between the key walk and the lookup are skipped. */
  *entries(): IterableIterator<[Uint8Array, Uint8Array]> {
    for (const [k, vs] of this.entriesPerCpu()) yield [k, vs[0]!];
  }

  /** Every (key, values per CPU) pair (one value for maps that are not per-CPU). Reads in batches
   * (bpf_map_lookup_batch) where the map type has them, else key by key. `nonZero`: only the entries
   * with a non-zero byte in some CPU's value (an array's written slots), checked on the bytes before any
   * view is made — a 1,024-slot per-CPU array with a dozen counters set costs a dozen entries, not 1,024. */
  *entriesPerCpu(nonZero = false): IterableIterator<[Uint8Array, Uint8Array[]]> {
    const batched = this.noLookupBatch ? undefined : this.lookupAll(nonZero);
    if (batched) {
      yield* batched;
      return;
    }
    for (const k of this.keys()) {
      const v = this.lookupPerCpu(k);
      if (v && (!nonZero || v.some((b) => anyNonZero(b, 0, b.length)))) yield [k, v];
    }
  }

  /** All entries through bpf_map_lookup_batch, or undefined when the map type has no batch lookup. */
  private lookupAll(nonZero: boolean): [Uint8Array, Uint8Array[]][] | undefined {
    this.check(new Uint8Array(this.info.keySize));
    const ks = this.info.keySize;
    const vb = this.valueBytes;
    const stride = (this.info.valueSize + 7) & ~7;
    // One slot more than the map holds: a whole map then comes back in one call that already says ENOENT
    // (the kernel's generic batch stops at the end), instead of a second call to learn it — up to
    // LOOKUP_BATCH entries: buffers for a 4,096-entry conntrack map that holds a dozen entries were most of
    // a differential case's garbage. Larger maps take several calls.
    // An array returns every slot, so its buffers are never larger than what comes back: all of it in one
    // call (a 1,024-slot per-CPU metrics array took five).
    const n = Math.max(1, Math.min(this.isArray ? BATCH_MAX : LOOKUP_BATCH, this.info.maxEntries + 1));
    // The batch position token: a bucket or index (u32) for hash and array maps; sized generously.
    const tokSize = Math.max(ks, 8);
    let inTok: Uint8Array | null = null;
    const out: [Uint8Array, Uint8Array[]][] = [];
    for (let guard = 0; guard <= this.info.maxEntries + 1; guard++) {
      const outTok = new Uint8Array(tokSize);
      const count = new Uint32Array([n]);
      const kbuf = new Uint8Array(n * ks);
      const vbuf = new Uint8Array(n * vb);
      const ret = libbpf().bpf_map_lookup_batch(this.fd, inTok, outTok, kbuf, vbuf, count, { sz: BATCH_OPTS_SIZE, elem_flags: 0, flags: 0 });
      const errno = ret < 0 ? errnoName(-ret) : undefined;
      if (ret < 0 && errno !== "ENOENT") {
        if (inTok === null && (errno === "EINVAL" || errno === "EOPNOTSUPP" || errno === "ENOTSUPP" || errno === undefined)) {
          this.noLookupBatch = true;
          return undefined;
        }
        throw bpfError(BpfErrorCode.MapOpFailed, `batch lookup in map ${this.name}`, ret);
      }
      // Whole words where the value size allows (a per-CPU value's strides are 8-byte multiples): the scan
      // of a 1,024-slot per-CPU array is most of its read.
      const words = nonZero && vb % 4 === 0 ? new Uint32Array(vbuf.buffer, vbuf.byteOffset, (count[0]! * vb) >>> 2) : undefined;
      for (let i = 0; i < count[0]!; i++) {
        // Padding between per-CPU slots is zero (the kernel copies each slot into a zeroed stride).
        if (nonZero && !(words ? anyNonZero(words, (i * vb) >>> 2, ((i + 1) * vb) >>> 2) : anyNonZero(vbuf, i * vb, (i + 1) * vb))) continue;
        // Views, not copies: kbuf and vbuf are fresh for each batch call and never written again.
        const key = kbuf.subarray(i * ks, (i + 1) * ks);
        const all = vbuf.subarray(i * vb, (i + 1) * vb);
        let values: Uint8Array[] = [all];
        if (this.isPerCpu) {
          values = new Array<Uint8Array>(this.cpus);
          for (let c = 0; c < this.cpus; c++) values[c] = all.subarray(c * stride, c * stride + this.info.valueSize);
        }
        out.push([key, values]);
      }
      if (errno === "ENOENT") return out;
      inTok = outTok;
    }
    throw new BpfError(BpfErrorCode.MapOpFailed, `batch lookup in map ${this.name} did not end`);
  }

  /** Number of keys (for an array map: max_entries, every index exists). */
  count(): number {
    let n = 0;
    for (const _ of this.keys()) n++;
    return n;
  }

  /** Deletes every key (arrays: writes zero values). Returns how many entries were cleared. */
  clear(): number {
    let n = 0;
    if (this.isArray) {
      const zero = new Uint8Array(this.info.valueSize);
      for (const k of [...this.keys()]) {
        this.update(k, zero);
        n++;
      }
      return n;
    }
    for (const k of [...this.keys()]) if (this.delete(k)) n++;
    return n;
  }

  /** Closes the fd when this handle owns it (pinned maps opened with fromPin). Safe to call twice. */
  close(): void {
    if (this.closed) return;
    this.closed = true;
    if (this.ownsFd) closeSync(this.fd);
  }
}

/** Whether elements [from, to) of `b` hold a non-zero one (bytes, or words of a byte buffer). */
function anyNonZero(b: Uint8Array | Uint32Array, from: number, to: number): boolean {
  for (let i = from; i < to; i++) if (b[i] !== 0) return true;
  return false;
}

/** A MapHandle over a kernel map, encoding keys and values with the spec's codecs. */
export class BpfMapHandle<K, V> implements MapHandle<K, V> {
  constructor(
    readonly spec: MapSpec<K, V>,
    readonly raw: RawMap,
  ) {
    const { keySize, valueSize } = raw.info;
    if (spec.key.size !== keySize || spec.value.size !== valueSize) {
      throw new BpfError(
        BpfErrorCode.LayoutMismatch,
        `map ${raw.name}: codecs ${spec.key.name}/${spec.value.name} are ${spec.key.size}/${spec.value.size} bytes, kernel map has ${keySize}/${valueSize}`,
        "regenerate layouts (npm run gen) and rebuild the BPF object",
      );
    }
  }

  lookup(key: Partial<K>): V | undefined {
    const v = this.raw.lookupPerCpu(this.spec.key.encode(key));
    return v ? this.combine(v) : undefined;
  }

  /** One value from the per-CPU slots: numeric fields summed (per-CPU maps hold counters). */
  private combine(slots: Uint8Array[]): V {
    const first = this.spec.value.decode(slots[0]!);
    if (slots.length === 1) return first;
    const sum = first as Record<string, unknown>;
    for (const slot of slots.slice(1)) {
      const v = this.spec.value.decode(slot) as Record<string, unknown>;
      for (const f of Object.keys(sum)) {
        const a = sum[f];
        const b = v[f];
        if (typeof a === "bigint" && typeof b === "bigint") sum[f] = a + b;
        else if (typeof a === "number" && typeof b === "number") sum[f] = a + b;
      }
    }
    return first;
  }

  update(key: Partial<K>, value: Partial<V>, flags = BPF_ANY): void {
    this.raw.update(this.spec.key.encode(key), this.spec.value.encode(value), flags);
  }

  delete(key: Partial<K>): boolean {
    return this.raw.delete(this.spec.key.encode(key));
  }

  updateMany(entries: [Partial<K>, Partial<V>][], flags = BPF_ANY): void {
    this.raw.updateBatch(
      entries.map(([k]) => this.spec.key.encode(k)),
      entries.map(([, v]) => this.spec.value.encode(v)),
      flags,
    );
  }

  *entries(): IterableIterator<[K, V]> {
    for (const [k, v] of this.raw.entriesPerCpu()) yield [this.spec.key.decode(k), this.combine(v)];
  }

  *nonZeroEntries(): IterableIterator<[K, V]> {
    for (const [k, v] of this.raw.entriesPerCpu(true)) yield [this.spec.key.decode(k), this.combine(v)];
  }

  count(): number {
    return this.raw.count();
  }

  /**
   * Takes the map's contents: every entry of a hash map, or the slots of an array that are not all zero
   * (in any CPU's slot), decoded as entries() and nonZeroEntries() decode them, and then removes them —
   * keys deleted, array slots zeroed — with one batch read and one batch write. For a harness that
   * compares a map and then empties it (the differential between packet sequences): the map is read once.
   */
  drain(): [K, V][] {
    const raw = [...this.raw.entriesPerCpu(this.raw.isArray)];
    const out = raw.map(([k, v]): [K, V] => [this.spec.key.decode(k), this.combine(v)]);
    if (raw.length === 0) return out;
    const keys = raw.map(([k]) => k);
    if (this.raw.isArray) this.raw.updateBatch(keys, keys.map(() => new Uint8Array(this.raw.info.valueSize)));
    else this.raw.deleteBatch(keys);
    return out;
  }
}

/** A MapSpec for a map that is not in core/layout.ts (fixtures, tools): name plus codecs. */
export function adHocSpec<K, V>(bpfName: string, key: Codec<K>, value: Codec<V>, type = 0, maxEntries = 0): MapSpec<K, V> {
  return { id: -1, name: bpfName, bpfName, type, maxEntries, key, value } as unknown as MapSpec<K, V>;
}

/** Typed handle over a pinned map path (opens its own fd; close with handle.raw.close()). */
export function openPinnedMap<K, V>(path: string, spec: MapSpec<K, V>): BpfMapHandle<K, V> {
  const raw = RawMap.fromPin(path);
  try {
    return new BpfMapHandle(spec, raw);
  } catch (e) {
    raw.close();
    throw e;
  }
}
