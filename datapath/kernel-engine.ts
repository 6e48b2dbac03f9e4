/*
 * The kernel engine: the Datapath interface over the generated eBPF object (build/bpf/ciliate.bpf.o),
 * evaluated with BPF_PROG_TEST_RUN. The same conformance and differential suites that run on the WASM and
 * JS builds of core run here, so a verdict from `--engine kernel` is the kernel's own.
 *
 * Time: the programs read `now` from the per-object array map ciliate_now_v1 when it is non-zero
 * (bpf/include/ciliate_prog.h), so every run writes the caller's virtual time there first; 0 would mean
 * "the real clock", so times must be ≥ 1.
 * Proof of execution: before each run the Trace record is armed with a sentinel verdict (which also asks
 * the program to fill it in); a run that leaves it
 * in place did not execute the program, and `run` throws instead of returning a stale result. `runs`
 * counts the runs that executed.
 * XDP (`xdp: true`): fromNetwork runs the XDP build of the from-network program
 * (build/bpf/from_network_xdp.bpf.o, the agent's loadBalancer.acceleration=native) instead of the tc one.
 * Both objects are loaded with one pin directory, so they share every pinned map; the XDP run's return
 * code is the XDP action (xdpAction).
 */
import { existsSync } from "node:fs";
import { randomBytes } from "node:crypto";
import { repoPath } from "../host/paths.ts";
import { MAP_SPECS, MapType, TraceRecordCodec, TunnelKeyCodec, u32Codec, type MapSpec, type TraceRecord, type TunnelKey as TunnelKeyValue } from "../host/codecs.gen.ts";
import { tunnelKeyOf, tunnelKeyValue } from "../host/tunnel.ts";
import { DatapathError, type Datapath, type EntryPoint, type MapHandle, type RunOptions, type RunResult, type TunnelKey } from "../host/datapath.ts";
import { BpfObject, removePinRoot, type BpfProgram } from "./bpf-object.ts";
import { adHocSpec, type BpfMapHandle } from "./bpf-map.ts";
import * as C from "../host/constants.gen.ts";
import { testRun } from "./test-run.ts";
import { openEventReader, type EventReader } from "./ring-buffer.ts";
import { BpfError } from "./errors.ts";

/** What the engine loads: ciliate.bpf.o (what the agent attaches) plus the test-run harness around the
 * tunnel key (bpf/programs/test_harness.bpf.c): a test run goes through no tunnel device, so the harness
 * sets the received key before from_overlay and reads the key from_endpoint set, with the kernel's own
 * helpers, around the unchanged core call. */
export const KERNEL_OBJECT = repoPath("build/bpf/test_harness.bpf.o");
export const XDP_OBJECT = repoPath("build/bpf/from_network_xdp.bpf.o");
const PROGRAMS: Record<EntryPoint, string> = {
  fromEndpoint: "harness_from_endpoint",
  toEndpoint: "to_endpoint",
  fromNetwork: "from_network",
  fromOverlay: "harness_from_overlay",
  toNetwork: "to_network",
  fromHost: "harness_from_host",
};

/** The programs as the agent attaches them (no harness), for benchmarks against the harness's cost. */
export const PLAIN_PROGRAMS: Record<EntryPoint, string> = {
  fromEndpoint: "from_endpoint",
  toEndpoint: "to_endpoint",
  fromNetwork: "from_network",
  fromOverlay: "from_overlay",
  toNetwork: "to_network",
  fromHost: "from_host",
};

/** ciliate_harness_tunnel_v1's value: a TunnelKey and "present". */
const HarnessTunnelCodec = {
  name: "HarnessTunnel",
  size: TunnelKeyCodec.size + 4,
  encode(v: { key: TunnelKeyValue; present: number }, out = new Uint8Array(TunnelKeyCodec.size + 4), o = 0) {
    TunnelKeyCodec.encode(v.key, out, o);
    new DataView(out.buffer, out.byteOffset).setUint32(o + TunnelKeyCodec.size, v.present >>> 0, true);
    return out;
  },
  decode(b: Uint8Array, o = 0) {
    return { key: TunnelKeyCodec.decode(b, o), present: new DataView(b.buffer, b.byteOffset).getUint32(o + TunnelKeyCodec.size, true) };
  },
  zero() {
    return { key: TunnelKeyCodec.zero(), present: 0 };
  },
};

/** A verdict no program writes: it arms the Trace record (core/pipeline.ts fills an armed record), and
 * the run did not happen if it is still there afterwards. */
const SENTINEL = C.TRACE_VERDICT_ARMED;

export interface KernelDatapathOptions {
  /** Capacity per map (by MAP_SPECS name); the layout defaults when absent. */
  capacities?: Partial<Record<string, number>>;
  /** bpffs directory to pin maps in; null (default) pins nothing, so each engine has private maps. */
  pinRoot?: string | null;
  objectPath?: string;
  /** Run fromNetwork through the XDP program (XDP_OBJECT) instead of the tc one. Without a pinRoot the
   * engine pins both objects' maps in a private bpffs directory, removed on close. */
  xdp?: boolean;
  /** Also load from_endpoint and from_overlay as the agent attaches them (programFd(entry, true)), for
   * benchmarks; by default only the harness forms are loaded, so the verifier checks their code once. */
  plainPrograms?: boolean;
}

/** A kernel run also reports the tc return code the program gave: TC_ACT_OK (0) for a forward and for a
 * proxy redirect (the stack delivers to the proxy's transparent socket), TC_ACT_SHOT (2) for a drop
 * (bpf/include/ciliate_prog.h ciliate_tc_verdict). */
export interface KernelRunResult extends RunResult {
  retval: number;
}

/** The tc return code the programs give for a verdict under BPF_PROG_TEST_RUN (bpf/include/ciliate_proxy.h
 * ciliate_tc_action): forwards continue up the stack (TC_ACT_OK); an encapsulated packet is redirected to
 * the tunnel device (TC_ACT_REDIRECT) when the configuration names one (`tunnelIfindex`), else shot;
 * everything else is shot (TC_ACT_SHOT), proxy redirects included — test runs happen on the loopback
 * device, where no proxy socket can take the packet, and a redirect is never let through un-inspected.
 * `entry` fromHost on the tunnel device itself: an encapsulated packet continues (TC_ACT_OK). */
export function tcReturnCode(verdict: number, tunnelIfindex = 0, entry?: EntryPoint): number {
  // from_host on the device the configuration names as the tunnel device (the test run's loopback, ifindex
  // 1) lets the encapsulated packet continue on it (bpf/programs/from_host.bpf.c).
  if (verdict === C.CTX_ACT_TUNNEL && entry === "fromHost" && tunnelIfindex === 1) return 0;
  if (verdict === C.CTX_ACT_TUNNEL) return tunnelIfindex !== 0 ? 7 /* TC_ACT_REDIRECT */ : 2;
  return verdict === 0 /* CTX_ACT_OK */ ? 0 : 2;
}

export const XDP_DROP = 1;
export const XDP_PASS = 2;
export const XDP_TX = 3;

/** The XDP action the from-network XDP program gives for a verdict under BPF_PROG_TEST_RUN
 * (bpf/programs/from_network_xdp.bpf.c): a drop is XDP_DROP; a forward is XDP_PASS, because a test run
 * receives on the loopback device and no route leads back out of it (XDP_TX needs one). */
export function xdpAction(verdict: number): number {
  return verdict === 0 /* CTX_ACT_OK */ ? XDP_PASS : XDP_DROP;
}

export class KernelDatapath implements Datapath {
  readonly engine = "kernel" as const;
  private readonly stats = { runs: 0 };
  private readonly obj: BpfObject;
  private readonly progs = new Map<EntryPoint, BpfProgram>();
  private readonly handles = new Map<number, MapHandle<unknown, unknown>>();
  private readonly clock: BpfMapHandle<number, number>;
  private xdpObj: BpfObject | undefined;
  private xdpClock: BpfMapHandle<number, number> | undefined;
  private privatePins: string | undefined;
  private readonly harness: BpfMapHandle<number, ReturnType<typeof HarnessTunnelCodec.zero>>;
  private readonly plain: boolean;
  private closed = false;
  private reader: EventReader | undefined;
  private fixedBytes: { key0: Uint8Array; key1: Uint8Array; armed: Uint8Array; noTunnel: Uint8Array; now: Uint8Array } | undefined;

  constructor(opts: KernelDatapathOptions = {}) {
    const path = opts.objectPath ?? KERNEL_OBJECT;
    if (!existsSync(path)) {
      throw new DatapathError("ENGINE_NOT_BUILT", `the kernel build of core is missing (${path})`, "run `npm run build:bpf` (needs clang)");
    }
    const maxEntries: Record<string, number> = {};
    for (const spec of Object.values(MAP_SPECS) as MapSpec[]) {
      const cap = opts.capacities?.[spec.name];
      if (cap !== undefined) maxEntries[spec.bpfName] = cap;
    }
    let pinRoot = opts.pinRoot ?? null;
    if (opts.xdp && !existsSync(XDP_OBJECT)) {
      throw new DatapathError("ENGINE_NOT_BUILT", `the XDP build of from-network is missing (${XDP_OBJECT})`, "run `npm run build:bpf` (needs clang)");
    }
    if (opts.xdp && pinRoot === null) {
      pinRoot = `/sys/fs/bpf/ciliate-xdp-engine-${process.pid}-${randomBytes(4).toString("hex")}`;
      this.privatePins = pinRoot;
    }
    const harnessed = (Object.keys(PROGRAMS) as EntryPoint[]).filter((e) => PROGRAMS[e] !== PLAIN_PROGRAMS[e]).map((e) => PLAIN_PROGRAMS[e]);
    this.plain = opts.plainPrograms === true;
    let obj: BpfObject | undefined;
    // The Events ring buffer is not pinned by name (each agent object reads its own); the XDP object writes
    // its flow events into the tc object's, pinned explicitly in the shared directory.
    const loadShared = (file: string, skipPrograms: string[] = []) => {
      const o = BpfObject.open(file, { pinRoot, maxEntries, skipPrograms });
      try {
        if (opts.xdp) o.setPinPath(MAP_SPECS.Events.bpfName, `${pinRoot}/${MAP_SPECS.Events.bpfName}`);
        o.load();
      } catch (e) {
        o.close();
        throw e;
      }
      return o;
    };
    try {
      obj = loadShared(path, this.plain ? [] : harnessed);
      this.obj = obj;
      for (const [entry, name] of Object.entries(PROGRAMS) as [EntryPoint, string][]) this.progs.set(entry, this.obj.program(name));
      this.clock = this.obj.typedMap(adHocSpec("ciliate_now_v1", u32Codec, u32Codec));
      this.harness = this.obj.typedMap(adHocSpec("ciliate_harness_tunnel_v1", u32Codec, HarnessTunnelCodec));
      if (opts.xdp) {
        // Same pin directory: libbpf reuses every pinned map of the tc object. The clock is per object.
        this.xdpObj = loadShared(XDP_OBJECT);
        this.progs.set("fromNetwork", this.xdpObj.program("from_network_xdp"));
        this.xdpClock = this.xdpObj.typedMap(adHocSpec("ciliate_now_v1", u32Codec, u32Codec));
      }
    } catch (e) {
      this.xdpObj?.close();
      obj?.close();
      if (this.privatePins) removePinRoot(this.privatePins);
      throw e;
    }
  }

  /** True when fromNetwork runs the XDP program. */
  get xdp(): boolean {
    return this.xdpObj !== undefined;
  }

  map<K, V>(spec: MapSpec<K, V>): MapHandle<K, V> {
    let h = this.handles.get(spec.id);
    if (!h) {
      h = this.obj.typedMap(spec) as MapHandle<unknown, unknown>;
      this.handles.set(spec.id, h);
    }
    return h as MapHandle<K, V>;
  }

  run(entry: EntryPoint, packet: Uint8Array, opts: RunOptions): KernelRunResult {
    if (this.closed) throw new DatapathError("ENGINE_CLOSED", "kernel engine is closed");
    const now = opts.now >>> 0;
    if (now === 0) throw new DatapathError("BAD_TIME", "the kernel engine needs a virtual time of at least 1 second (0 selects the real clock)");
    if (packet.length < 14) {
      // BPF_PROG_TEST_RUN needs at least an Ethernet header for tc programs.
      throw new DatapathError("PACKET_REJECTED_BY_KERNEL", `the kernel refuses a ${packet.length}-byte frame before running the program`);
    }
    // The writes before a run go out as bytes encoded once (a differential run makes millions of them).
    const fixed = (this.fixedBytes ??= {
      key0: u32Codec.encode(0),
      key1: u32Codec.encode(1),
      armed: TraceRecordCodec.encode({ ...TraceRecordCodec.zero(), verdict: SENTINEL }),
      noTunnel: HarnessTunnelCodec.encode(HarnessTunnelCodec.zero()),
      now: new Uint8Array(4),
    });
    new DataView(fixed.now.buffer).setUint32(0, now, true);
    this.clock.raw.update(fixed.key0, fixed.now);
    this.xdpClock?.raw.update(fixed.key0, fixed.now);
    const trace = this.map(MAP_SPECS.Trace);
    (trace as BpfMapHandle<number, TraceRecord>).raw.update(fixed.key0, fixed.armed);
    // Only the harness programs read or write these slots.
    if (entry === "fromOverlay" || entry === "fromHost") this.setTunnelIn(opts.tunnel);
    if (entry === "fromEndpoint" || entry === "fromHost") this.harness.raw.update(fixed.key1, fixed.noTunnel);
    let res;
    try {
      const xdp = entry === "fromNetwork" && this.xdpObj !== undefined;
      // An XDP run takes no skb context (the kernel receives it on the loopback device, rx queue 0).
      res = xdp
        ? testRun(this.progs.get(entry)!, { data: packet, dataOutSize: packet.length + 256 })
        : testRun(this.progs.get(entry)!, { data: packet, ctx: { mark: (opts.srcIdentity ?? 0) >>> 0 }, dataOutSize: packet.length + 256 });
    } catch (e) {
      if (e instanceof BpfError && e.errno === 22) {
        // The kernel refuses some frames before any program runs (e.g. IPv4 frames under 34 bytes).
        throw new DatapathError("PACKET_REJECTED_BY_KERNEL", `the kernel refused a ${packet.length}-byte frame before running the program (EINVAL)`);
      }
      throw e;
    }
    const t = trace.lookup(0)!;
    if (t.verdict === SENTINEL) throw new DatapathError("KERNEL_DID_NOT_RUN", `the ${PROGRAMS[entry]} program did not run (trace record untouched)`);
    this.stats.runs++;
    const result: KernelRunResult = { verdict: t.verdict, dropReason: t.dropReason, output: res.data, trace: t, retval: res.retval };
    const set = entry === "fromEndpoint" || entry === "fromHost" ? this.harness.lookup(1) : undefined;
    if (set?.present) result.tunnel = tunnelKeyOf(set.key);
    return result;
  }

  /** The loaded program's fd for an entry point (for BPF_PROG_TEST_RUN with a repeat count: bench/);
   * `plain`: the program as the agent attaches it, without the test-run harness. */
  programFd(entry: EntryPoint, plain = false): number {
    if (plain && !this.plain && PROGRAMS[entry] !== PLAIN_PROGRAMS[entry]) {
      throw new DatapathError("BAD_ARGUMENT", `${PLAIN_PROGRAMS[entry]} is not loaded: create the engine with plainPrograms: true`);
    }
    return plain ? this.obj.program(PLAIN_PROGRAMS[entry]).fd : this.progs.get(entry)!.fd;
  }

  /** Writes the tunnel key the next harness_from_overlay run starts with (bench/: repeated test runs). */
  setTunnelIn(key: TunnelKey | undefined): void {
    this.harness.update(0, key ? { key: tunnelKeyValue(key), present: 1 } : HarnessTunnelCodec.zero());
  }

  /** Flow events the programs wrote to the Events ring buffer since the last call (CONFIG_F_EVENTS). */
  events(): TraceRecord[] {
    this.reader ??= openEventReader(this.obj.map(MAP_SPECS.Events.bpfName).fd);
    return this.reader.drain();
  }

  /** Program runs that really executed in the kernel. */
  get runs(): number {
    return this.stats.runs;
  }

  /** Empties every map (arrays are zeroed), so one loaded object can serve many test cases. `skip`: maps
   * the caller knows to be empty already (a differential harness drains the maps packets write after
   * comparing them), left unread. */
  reset(skip: readonly MapSpec[] = []): void {
    for (const spec of Object.values(MAP_SPECS) as MapSpec[]) {
      if (skip.includes(spec)) continue;
      if (spec.type === MapType.RingBuf) {
        this.events();
        continue;
      }
      // Raw bytes and batches (bpf_map_lookup/update/delete_batch): a differential case resets every map,
      // so decoding each entry or writing one syscall per key would dominate its cost.
      // An array's slots are checked for non-zero bytes before any is decoded or viewed (the Maglev
      // array has 8,192 slots, mostly zero after a case).
      const raw = (this.map(spec) as BpfMapHandle<unknown, unknown>).raw;
      if (spec.type === MapType.Array || spec.type === MapType.PercpuArray) {
        const dirty = [...raw.entriesPerCpu(true)];
        if (dirty.length) raw.updateBatch(dirty.map(([k]) => k), dirty.map(() => new Uint8Array(raw.info.valueSize)));
      } else {
        const entries = [...raw.entriesPerCpu()];
        if (entries.length) raw.deleteBatch(entries.map(([k]) => k));
      }
    }
    this.clock.update(0, 0);
  }

  close(): void {
    if (this.closed) return;
    this.closed = true;
    this.reader?.close();
    this.xdpObj?.close();
    this.obj.close();
    if (this.privatePins) removePinRoot(this.privatePins);
  }
}
