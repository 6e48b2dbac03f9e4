/*
 * The Datapath interface over core's host ABI (core/runtime/abi.ts), for both builds of core: the WASM module and
 * the JavaScript bundle export the same functions, so one adapter serves both. Keys, values and packets
 * travel through the instance's memory: the scratch area holds one key, one next-key and one value at a
 * time; the packet area holds the frame an entry point runs on.
 */
import { MAGLEV_REC_SIZE, packMaglevInput, type MaglevBackend } from "./maglev.ts";
import { LAYOUT_OFFSETS, MAP_SPECS, MapType, TraceRecordCodec, TunnelKeyCodec, type MapSpec, type TraceRecord } from "./codecs.gen.ts";
import { tunnelKeyOf, tunnelKeyValue } from "./tunnel.ts";
import { TRACE_VERDICT_ARMED } from "./constants.gen.ts";
import {
  DatapathError,
  type Datapath,
  type EngineName,
  type EntryPoint,
  type MapHandle,
  type RunOptions,
  type RunResult,
} from "./datapath.ts";

/** The functions core/runtime/abi.ts exports (numbers are raw i32/u32 as WASM returns them). */
export interface CoreAbi {
  abiInit(): number;
  abiScratch(): number;
  abiPacket(): number;
  abiHeapUsed(): number;
  abiMapCreate(map: number, maxEntries: number): number;
  abiMapLookup(map: number, key: number): number;
  abiMapUpdate(map: number, key: number, value: number, flags: number): number;
  abiMapDelete(map: number, key: number): number;
  abiMapNextKey(map: number, key: number, nextKey: number): number;
  abiMapCount(map: number): number;
  abiFromEndpoint(len: number, now: number): number;
  abiToEndpoint(len: number, srcIdentity: number, now: number): number;
  abiFromNetwork(len: number, now: number): number;
  abiToNetwork(len: number, now: number): number;
  abiFromOverlay(len: number, tunnelKeyIn: number, now: number): number;
  abiFromHost(len: number, tunnelKeyIn: number, now: number): number;
  abiTunnelIn(): number;
  abiTunnelOut(): number;
  abiTunnelOutSet(): number;
  abiHostBuffer(size: number): number;
  abiMaglevBuild(backends: number, n: number, m: number, seedMurmur: number, out: number): number;
  abiCtGc(now: number): number;
  abiMaglevStore(revNatIndex: number, table: number, m: number): number;
  abiMaglevDelete(revNatIndex: number, m: number): number;
  abiRingbufConsume(map: number, out: number, max: number): number;
}

export interface AbiDatapathOptions {
  /** Capacity per map (by MAP_SPECS name, e.g. "ct"); defaults keep a simulated node small. */
  capacities?: Partial<Record<string, number>>;
}

const KEY_OFF = 0;
const NEXT_KEY_OFF = 256;
const VALUE_OFF = 1024;
const PACKET_MAX = 65536;

/** Default capacity in the simulator: the layout default, bounded so that a node costs megabytes, not
 * hundreds of them. The kernel uses the layout defaults. */
function defaultCapacity(spec: MapSpec): number {
  if (spec.maxEntries <= 1) return spec.maxEntries;
  return Math.min(spec.maxEntries, spec.name === "lb_maglev" ? 262_144 : 65_536);
}

const ERRNO: Record<number, [string, string]> = {
  2: ["MAP_ENOENT", "no such entry"],
  7: ["MAP_FULL", "map is full"],
  12: ["MAP_ENOMEM", "out of memory"],
  17: ["MAP_EEXIST", "entry exists"],
  22: ["MAP_EINVAL", "invalid argument"],
};

export class AbiDatapath implements Datapath {
  private closed = false;
  private readonly handles = new Map<number, MapHandle<unknown, unknown>>();

  constructor(
    readonly engine: EngineName,
    private readonly abi: CoreAbi,
    private readonly memory: () => ArrayBuffer,
    opts: AbiDatapathOptions = {},
  ) {
    if (abi.abiInit() !== 0) throw new DatapathError("ENGINE_INIT", `${engine} engine: out of memory at start-up`);
    for (const spec of Object.values(MAP_SPECS) as MapSpec[]) {
      const cap = opts.capacities?.[spec.name] ?? defaultCapacity(spec);
      const rc = abi.abiMapCreate(spec.id, cap);
      if (rc !== 0) {
        throw new DatapathError("ENGINE_INIT", `${engine} engine: cannot create map ${spec.name} with ${cap} entries (error ${rc})`);
      }
    }
  }

  private bytes(): Uint8Array {
    return new Uint8Array(this.memory());
  }

  private scratch(): number {
    return this.abi.abiScratch() >>> 0;
  }

  map<K, V>(spec: MapSpec<K, V>): MapHandle<K, V> {
    const cached = this.handles.get(spec.id);
    if (cached) return cached as MapHandle<K, V>;
    const dp = this;
    const h: MapHandle<K, V> = {
      spec,
      lookup(key) {
        const s = dp.scratch();
        dp.bytes().set(spec.key.encode(key), s + KEY_OFF);
        const p = dp.abi.abiMapLookup(spec.id, s + KEY_OFF) >>> 0;
        if (p === 0) return undefined;
        return spec.value.decode(dp.bytes(), p);
      },
      update(key, value, flags = 0) {
        const s = dp.scratch();
        const mem = dp.bytes();
        mem.set(spec.key.encode(key), s + KEY_OFF);
        mem.set(spec.value.encode(value), s + VALUE_OFF);
        const rc = dp.abi.abiMapUpdate(spec.id, s + KEY_OFF, s + VALUE_OFF, flags) | 0;
        if (rc !== 0) {
          const [code, text] = ERRNO[-rc] ?? ["MAP_ERROR", `error ${rc}`];
          throw new DatapathError(code, `${dp.engine}: update of map ${spec.name} failed: ${text}`);
        }
      },
      // One memory view and scratch address for the whole batch, each key and value encoded straight into
      // the scratch area (no per-entry buffers): a simulated node's fill is tens of thousands of entries.
      updateMany(entries, flags = 0) {
        const s = dp.scratch();
        let mem = dp.bytes();
        const ks = spec.key.size;
        const vs = spec.value.size;
        for (const [key, value] of entries) {
          // A memory that grew has a new buffer; bytes a codec leaves out (padding) are zero, as update's.
          if (mem.buffer !== dp.memory()) mem = dp.bytes();
          mem.fill(0, s + KEY_OFF, s + KEY_OFF + ks);
          mem.fill(0, s + VALUE_OFF, s + VALUE_OFF + vs);
          spec.key.encode(key, mem, s + KEY_OFF);
          spec.value.encode(value, mem, s + VALUE_OFF);
          const rc = dp.abi.abiMapUpdate(spec.id, s + KEY_OFF, s + VALUE_OFF, flags) | 0;
          if (rc !== 0) {
            const [code, text] = ERRNO[-rc] ?? ["MAP_ERROR", `error ${rc}`];
            throw new DatapathError(code, `${dp.engine}: update of map ${spec.name} failed: ${text}`);
          }
        }
      },
      delete(key) {
        const s = dp.scratch();
        dp.bytes().set(spec.key.encode(key), s + KEY_OFF);
        return (dp.abi.abiMapDelete(spec.id, s + KEY_OFF) | 0) === 0;
      },
      *entries() {
        // Collect keys first: callers may update values while iterating.
        const keys = dp.rawKeys(spec);
        const s = dp.scratch();
        let mem = dp.bytes();
        for (const k of keys) {
          if (mem.buffer !== dp.memory()) mem = dp.bytes();
          mem.set(k, s + KEY_OFF);
          const p = dp.abi.abiMapLookup(spec.id, s + KEY_OFF) >>> 0;
          if (p !== 0) yield [spec.key.decode(k), spec.value.decode(mem, p)] as [K, V];
        }
      },
      // One walk: each value's bytes are checked where they lie, and only entries with a non-zero byte are
      // decoded (collected before the first is yielded, as entries() collects its keys).
      *nonZeroEntries() {
        if (spec.type === MapType.Array || spec.type === MapType.PercpuArray) {
          yield* dp.nonZeroArraySlots(spec);
          return;
        }
        const out: [K, V][] = [];
        const s = dp.scratch();
        const ks = spec.key.size;
        const vs = spec.value.size;
        let rc = dp.abi.abiMapNextKey(spec.id, 0, s + NEXT_KEY_OFF) | 0;
        let mem = dp.bytes();
        while (rc === 0) {
          if (mem.buffer !== dp.memory()) mem = dp.bytes();
          mem.copyWithin(s + KEY_OFF, s + NEXT_KEY_OFF, s + NEXT_KEY_OFF + ks);
          const p = dp.abi.abiMapLookup(spec.id, s + KEY_OFF) >>> 0;
          if (p !== 0) {
            let i = p;
            while (i < p + vs && mem[i] === 0) i++;
            if (i < p + vs) out.push([spec.key.decode(mem, s + KEY_OFF), spec.value.decode(mem, p)]);
          }
          rc = dp.abi.abiMapNextKey(spec.id, s + KEY_OFF, s + NEXT_KEY_OFF) | 0;
        }
        yield* out;
      },
      count() {
        return dp.abi.abiMapCount(spec.id) >>> 0;
      },
      // The keys as raw bytes, then deleted: no codec on either side (conntrack between whatif's probes).
      clear() {
        if ((dp.abi.abiMapCount(spec.id) >>> 0) === 0) return;
        const keys = dp.rawKeys(spec);
        const s = dp.scratch();
        for (const k of keys) {
          dp.bytes().set(k, s + KEY_OFF);
          dp.abi.abiMapDelete(spec.id, s + KEY_OFF);
        }
      },
    };
    this.handles.set(spec.id, h as MapHandle<unknown, unknown>);
    return h;
  }

  /** An array map's slots whose value bytes are not all zero, decoded. core's arrays (core/runtime/maps/
   * array.ts) keep their slots in one block, slot i at the address of slot 0 plus i strides, so the block
   * is scanned a word at a time where it lies: a 1,024-slot metrics array costs a scan, not 2,048 calls. */
  private nonZeroArraySlots<K, V>(spec: MapSpec<K, V>): [K, V][] {
    const n = this.abi.abiMapCount(spec.id) >>> 0;
    const s = this.scratch();
    const at = (i: number) => {
      new DataView(this.memory()).setUint32(s + KEY_OFF, i, true);
      return this.abi.abiMapLookup(spec.id, s + KEY_OFF) >>> 0;
    };
    const out: [K, V][] = [];
    if (n === 0) return out;
    const base = at(0);
    const stride = n > 1 ? at(1) - base : spec.value.size;
    const vs = spec.value.size;
    const mem = this.bytes();
    const aligned = base % 4 === 0 && stride % 4 === 0;
    const words = aligned ? new Uint32Array(mem.buffer, 0, mem.length >>> 2) : undefined;
    for (let i = 0; i < n; i++) {
      const p = base + i * stride;
      let nonZero = false;
      if (words) {
        const end = (p + (vs & ~3)) >>> 2;
        for (let w = p >>> 2; w < end && !nonZero; w++) nonZero = words[w] !== 0;
        for (let b = p + (vs & ~3); b < p + vs && !nonZero; b++) nonZero = mem[b] !== 0;
      } else {
        for (let b = p; b < p + vs && !nonZero; b++) nonZero = mem[b] !== 0;
      }
      if (nonZero) {
        const key = new Uint8Array(4);
        new DataView(key.buffer).setUint32(0, i, true);
        out.push([spec.key.decode(key), spec.value.decode(mem, p)]);
      }
    }
    return out;
  }

  /** Every key of a map, as its bytes (iteration order). */
  private rawKeys(spec: MapSpec): Uint8Array[] {
    const keys: Uint8Array[] = [];
    const s = this.scratch();
    let rc = this.abi.abiMapNextKey(spec.id, 0, s + NEXT_KEY_OFF) | 0;
    // One view of memory while it does not grow (a new view per key was most of a 1024-entry walk).
    let mem = this.bytes();
    while (rc === 0) {
      if (mem.buffer !== this.memory()) mem = this.bytes();
      mem.copyWithin(s + KEY_OFF, s + NEXT_KEY_OFF, s + NEXT_KEY_OFF + spec.key.size);
      keys.push(mem.slice(s + KEY_OFF, s + KEY_OFF + spec.key.size));
      rc = this.abi.abiMapNextKey(spec.id, s + KEY_OFF, s + NEXT_KEY_OFF) | 0;
    }
    return keys;
  }

  /**
   * Writes entries already encoded (each key and value `spec`'s size), in order, as update() would one by
   * one: for a caller that writes the same entries into many engines and encodes each once. Throws the
   * first failure's DatapathError.
   */
  updateEncoded(spec: MapSpec, keys: Uint8Array[], values: Uint8Array[], flags = 0): void {
    const s = this.scratch();
    let mem = this.bytes();
    for (let i = 0; i < keys.length; i++) {
      if (mem.buffer !== this.memory()) mem = this.bytes();
      mem.set(keys[i]!, s + KEY_OFF);
      mem.set(values[i]!, s + VALUE_OFF);
      const rc = this.abi.abiMapUpdate(spec.id, s + KEY_OFF, s + VALUE_OFF, flags) | 0;
      if (rc !== 0) {
        const [code, text] = ERRNO[-rc] ?? ["MAP_ERROR", `error ${rc}`];
        throw new DatapathError(code, `${this.engine}: update of map ${spec.name} failed: ${text}`);
      }
    }
  }

  /** Deletes the entries of already encoded keys (each `spec`'s key size), as delete() would one by one;
   * a key that is absent is skipped, as delete() returns false for it. */
  deleteEncoded(spec: MapSpec, keys: Uint8Array[]): void {
    const s = this.scratch();
    let mem = this.bytes();
    for (const k of keys) {
      if (mem.buffer !== this.memory()) mem = this.bytes();
      mem.set(k, s + KEY_OFF);
      this.abi.abiMapDelete(spec.id, s + KEY_OFF);
    }
  }

  /** Writes TRACE_VERDICT_ARMED into the Trace record's verdict (offset 0), in place. */
  private armTrace(): void {
    const s = this.scratch();
    new DataView(this.memory()).setUint32(s + KEY_OFF, 0, true);
    const p = this.abi.abiMapLookup(MAP_SPECS.Trace.id, s + KEY_OFF) >>> 0;
    if (p !== 0) new DataView(this.memory()).setUint32(p + LAYOUT_OFFSETS.TraceRecord!.fields.verdict!, TRACE_VERDICT_ARMED, true);
  }

  run(entry: EntryPoint, packet: Uint8Array, opts: RunOptions): RunResult {
    if (this.closed) throw new DatapathError("ENGINE_CLOSED", `${this.engine} engine is closed`);
    if (packet.length > PACKET_MAX) {
      throw new DatapathError("PACKET_TOO_LARGE", `packet of ${packet.length} bytes exceeds ${PACKET_MAX}`);
    }
    const p = this.abi.abiPacket() >>> 0;
    this.bytes().set(packet, p);
    // Arm the Trace record: core fills it in only for hosts that read it (core/pipeline.ts traceBegin).
    this.armTrace();
    const now = opts.now >>> 0;
    let verdict: number;
    if (entry === "fromEndpoint") verdict = this.abi.abiFromEndpoint(packet.length, now);
    else if (entry === "toEndpoint") verdict = this.abi.abiToEndpoint(packet.length, (opts.srcIdentity ?? 0) >>> 0, now);
    else if (entry === "fromOverlay") {
      if (opts.tunnel) this.bytes().set(TunnelKeyCodec.encode(tunnelKeyValue(opts.tunnel)), this.abi.abiTunnelIn() >>> 0);
      verdict = this.abi.abiFromOverlay(packet.length, opts.tunnel ? 1 : 0, now);
    } else if (entry === "fromHost") {
      if (opts.tunnel) this.bytes().set(TunnelKeyCodec.encode(tunnelKeyValue(opts.tunnel)), this.abi.abiTunnelIn() >>> 0);
      verdict = this.abi.abiFromHost(packet.length, opts.tunnel ? 1 : 0, now);
    } else if (entry === "toNetwork") verdict = this.abi.abiToNetwork(packet.length, now);
    else verdict = this.abi.abiFromNetwork(packet.length, now);
    const output = this.bytes().slice(p, p + packet.length);
    const trace = this.map(MAP_SPECS.Trace).lookup(0) ?? (TraceRecordCodec.zero() as TraceRecord);
    const result: RunResult = { verdict: verdict >>> 0, dropReason: trace.dropReason, output, trace };
    if ((entry === "fromEndpoint" || entry === "fromHost") && this.abi.abiTunnelOutSet() !== 0) {
      const at = this.abi.abiTunnelOut() >>> 0;
      result.tunnel = tunnelKeyOf(TunnelKeyCodec.decode(this.bytes().slice(at, at + TunnelKeyCodec.size)));
    }
    return result;
  }

  /**
   * Builds a service's Maglev lookup table in core (core/maglev.ts) — the same code and arithmetic the
   * node agent uses — and returns the M backend ids. Throws DatapathError on invalid input.
   */
  maglevTable(backends: MaglevBackend[], m: number, seedMurmur: number): Uint32Array {
    return this.buildMaglev(backends, m, seedMurmur).table;
  }

  /** Builds service `revNatIndex`'s Maglev table and writes it into the Maglev map (replacing the old
   * one), as the node agent does; returns the table. */
  maglevInstall(revNatIndex: number, backends: MaglevBackend[], m: number, seedMurmur: number): Uint32Array {
    const { table, out } = this.buildMaglev(backends, m, seedMurmur);
    const rc = this.abi.abiMaglevStore(revNatIndex, out, m) | 0;
    if (rc !== 0) throw new DatapathError("MAP_FULL", `${this.engine}: cannot store the Maglev table of service ${revNatIndex} (error ${rc})`, "raise the lb_maglev map capacity");
    return table;
  }

  /** Removes service `revNatIndex`'s Maglev entries; returns how many there were. */
  maglevRemove(revNatIndex: number, m: number): number {
    return this.abi.abiMaglevDelete(revNatIndex, m) >>> 0;
  }

  private buildMaglev(backends: MaglevBackend[], m: number, seedMurmur: number): { table: Uint32Array; out: number } {
    const inputBytes = backends.length * MAGLEV_REC_SIZE;
    const buf = this.abi.abiHostBuffer(inputBytes + m * 4) >>> 0;
    if (buf === 0) throw new DatapathError("ENGINE_ENOMEM", `${this.engine}: no memory for a Maglev table of ${m} slots`);
    this.bytes().set(packMaglevInput(backends).bytes, buf);
    const out = buf + inputBytes;
    const rc = this.abi.abiMaglevBuild(buf, backends.length, m, seedMurmur >>> 0, out) | 0;
    if (rc !== 0) {
      throw new DatapathError("MAGLEV_INVALID", `cannot build a Maglev table of size ${m} for ${backends.length} backends`, "M must be one of Cilium's primes and there must be at least one backend");
    }
    return { table: new Uint32Array(this.memory().slice(out, out + m * 4)), out };
  }

  /** Flow events written to the Events ring buffer since the last call (CONFIG_F_EVENTS). */
  events(): TraceRecord[] {
    const out: TraceRecord[] = [];
    const s = this.scratch() + VALUE_OFF;
    for (;;) {
      const n = this.abi.abiRingbufConsume(MAP_SPECS.Events.id, s, 4096) | 0;
      if (n <= 0) return out;
      out.push(TraceRecordCodec.decode(this.bytes(), s));
    }
  }

  /** Deletes expired conntrack entries at time `now`; returns how many. */
  ctGc(now: number): number {
    return this.abi.abiCtGc(now >>> 0) >>> 0;
  }

  /** Bytes of linear memory in use by maps and buffers (for memory reports). */
  heapUsed(): number {
    return this.abi.abiHeapUsed() >>> 0;
  }

  /**
   * A copy of the instance's whole state, for restore(): core keeps every map, table and buffer in linear
   * memory; its only other state is the allocator's pointers (core/alloc.ts, core/runtime/abi.ts), which
   * move only when a host buffer or a table is allocated — restore() refuses a snapshot taken before such
   * an allocation. A differential harness restores an instance instead of instantiating a new one.
   */
  snapshot(into?: { bytes: Uint8Array; heapUsed: number }): { bytes: Uint8Array; heapUsed: number } {
    // `into`: an earlier snapshot of this instance whose buffer is reused (a harness taking one per case
    // would otherwise allocate a megabyte each time).
    const mem = this.bytes();
    if (into && into.bytes.length === mem.length) {
      into.bytes.set(mem);
      into.heapUsed = this.heapUsed();
      return into;
    }
    return { bytes: mem.slice(), heapUsed: this.heapUsed() };
  }

  /** Puts back a snapshot() of this instance: every map holds exactly what it held then (entries, LRU
   * order, ring buffer positions). Throws DatapathError SNAPSHOT_STALE when the instance allocated memory
   * since (Maglev builds through maglevTable/maglevInstall do). */
  restore(s: { bytes: Uint8Array; heapUsed: number }): void {
    if (this.heapUsed() !== s.heapUsed || this.memory().byteLength < s.bytes.length) {
      throw new DatapathError("SNAPSHOT_STALE", `${this.engine}: the instance allocated memory since the snapshot (${s.heapUsed} → ${this.heapUsed()} bytes); take a new one`);
    }
    const mem = this.bytes();
    mem.set(s.bytes);
    // Memory that grew after the snapshot held nothing then.
    if (mem.length > s.bytes.length) mem.fill(0, s.bytes.length);
  }

  close(): void {
    this.closed = true;
  }
}
