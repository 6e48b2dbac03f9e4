/*
 * The Datapath interface: the one way the simulator, the tests and the CLI drive the packet logic, whether
 * it runs as WebAssembly, as JavaScript, or in the kernel through BPF_PROG_TEST_RUN. Implementations:
 * host/abi-datapath.ts (wasm and js builds of core/) and datapath/kernel-engine.ts (generated eBPF).
 * Host-side TypeScript: never compiled by asc.
 */
import type { MapSpec, TraceRecord } from "./codecs.gen.ts";

export type EngineName = "wasm" | "js" | "kernel";

/** The entry points, mirroring Cilium's hooks (docs/architecture.md). */
export type EntryPoint = "fromEndpoint" | "toEndpoint" | "fromNetwork" | "fromOverlay" | "toNetwork" | "fromHost";

/** The tunnel metadata of a packet on a collect-metadata tunnel device (core/layout.ts TunnelKey). */
export interface TunnelKey {
  /** The remote tunnel endpoint: the destination node when sending, the sending node when receiving. */
  remote: string;
  /** The VNI: the source security identity. */
  tunnelId: number;
}

export interface RunOptions {
  /** Monotonic time in seconds, as the virtual clock or bpf_ktime_get_ns() would give it. */
  now: number;
  /** to-endpoint only: the identity carried with the packet (tunnel VNI / mark); 0 = look it up. */
  srcIdentity?: number;
  /** fromOverlay: the tunnel key the packet arrived with; absent = none (the program drops it). fromHost:
   * the key fromEndpoint already set on it (the program lets it pass); absent = none. */
  tunnel?: TunnelKey;
}

export interface RunResult {
  /** CTX_ACT_OK 0, CTX_ACT_DROP 2, CTX_ACT_REDIRECT 7. */
  verdict: number;
  /** 0 or the DROP_* reason (positive). */
  dropReason: number;
  /** The packet after the program ran (DNAT, rev-NAT, SNAT applied). */
  output: Uint8Array;
  /** What the program decided and why. */
  trace: TraceRecord;
  /** The tunnel key the program set on the packet (an encapsulation, verdict CTX_ACT_TUNNEL), as the
   * engine observed it: WASM/JS from the seam, the kernel from bpf_skb_get_tunnel_key after the run. */
  tunnel?: TunnelKey;
}

/** Typed access to one map; keys and values are the codec objects of host/codecs.gen.ts. */
export interface MapHandle<K, V> {
  readonly spec: MapSpec<K, V>;
  lookup(key: Partial<K>): V | undefined;
  /** Throws DatapathError on failure (full map, bad flags, missing entry for BPF_EXIST …). */
  update(key: Partial<K>, value: Partial<V>, flags?: number): void;
  /** Returns false when the key was absent. */
  delete(key: Partial<K>): boolean;
  entries(): IterableIterator<[K, V]>;
  count(): number;
  /** Writes many entries in order, as update() would one by one, in as few map operations as the engine
   * allows (the kernel: bpf_map_update_batch). Throws the first failure's error. Optional: fills fall
   * back to update() (see writeAll). */
  updateMany?(entries: [Partial<K>, Partial<V>][], flags?: number): void;
  /** Deletes every entry without decoding any. Optional: clearMap falls back to entries() and delete(). */
  clear?(): void;
  /** The entries whose value bytes are not all zero (of a per-CPU map: in some CPU's slot), decoding only
   * those — an array map's written slots. Optional: nonZeroEntries() falls back to entries(). */
  nonZeroEntries?(): IterableIterator<[K, V]>;
}

/** The handle's entries whose value is not all zero bytes: through its nonZeroEntries when it has one,
 * else every entry with a non-zero decoded field (a superset only where a codec leaves non-zero padding,
 * which encoders never write). */
export function nonZeroEntries<K, V>(h: MapHandle<K, V>): IterableIterator<[K, V]> {
  if (h.nonZeroEntries) return h.nonZeroEntries();
  const nonZero = (v: unknown): boolean => (typeof v === "object" && v !== null ? Object.values(v).some(nonZero) : v !== 0 && v !== 0n);
  return [...h.entries()].filter(([, v]) => nonZero(v))[Symbol.iterator]();
}

/** Empties a map through the handle's clear when it has one, else one delete() per entry. */
export function clearMap<K, V>(h: MapHandle<K, V>): void {
  if (h.clear) return h.clear();
  for (const [k] of [...h.entries()]) h.delete(k);
}

/** Writes `entries` through the handle's updateMany when it has one, else one update() each. */
export function writeAll<K, V>(h: MapHandle<K, V>, entries: [Partial<K>, Partial<V>][], flags?: number): void {
  if (h.updateMany) h.updateMany(entries, flags);
  else for (const [k, v] of entries) h.update(k, v, flags);
}

export interface Datapath {
  readonly engine: EngineName;
  map<K, V>(spec: MapSpec<K, V>): MapHandle<K, V>;
  run(entry: EntryPoint, packet: Uint8Array, opts: RunOptions): RunResult;
  /** Releases kernel objects or WASM memory. Safe to call twice. */
  close(): void;
}

/** Errors from any engine, with a stable code and a hint for the user. */
export class DatapathError extends Error {
  constructor(
    readonly code: string,
    message: string,
    readonly hint?: string,
  ) {
    super(message);
    this.name = "DatapathError";
  }
}
