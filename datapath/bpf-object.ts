/*
 * One BPF object file in the kernel: open (bpf_object__open_file with bpf_object_open_opts), load-time
 * configuration (max_entries per map, which maps are created, where LIBBPF_PIN_BY_NAME maps are pinned),
 * load (bpf_object__load) with the verifier log captured into the thrown BpfError, and access to programs
 * and maps by name. Maps declared with `pinning = LIBBPF_PIN_BY_NAME` (every map of bpf/gen/layout.h) are
 * pinned as <pinRoot>/<map name> on the first load and reused by later loads with the same pinRoot —
 * which is how the agent keeps its maps across restarts and how two objects share one map.
 *
 * Lifecycle: BpfObject.open(path, opts) → configure → load() → program()/map()/typedMap() → close().
 * BpfObject.load(path, opts) does open + load. close() releases fds; pinned maps stay until unpinMaps()
 * or removePinRoot().
 */
import { existsSync, mkdirSync, readdirSync, rmdirSync, statfsSync, unlinkSync } from "node:fs";
import { dirname } from "node:path";
import type { MapSpec } from "../host/codecs.gen.ts";
import { BpfMapHandle, RawMap } from "./bpf-map.ts";
import { bpfError, BpfError, BpfErrorCode, errnoName } from "./errors.ts";
import { BpfObjectOpenOpts, koffi, lastErrno, libbpf, type Ptr } from "./libbpf.ts";
import { withLibbpfLog } from "./libbpf-log.ts";

/** Where the agent pins its maps when no pinRoot is given. */
export const DEFAULT_PIN_ROOT = "/sys/fs/bpf/ciliate";
/** statfs f_type of bpffs (BPF_FS_MAGIC, include/uapi/linux/magic.h). */
export const BPF_FS_MAGIC = 0xcafe4a11;

export interface BpfObjectOptions {
  /**
   * Directory (on bpffs) for maps declared LIBBPF_PIN_BY_NAME: pinned there on first load, reused after.
   * Default DEFAULT_PIN_ROOT. `null`: pin nothing (every map is private to this object).
   */
  pinRoot?: string | null;
  /** max_entries overrides by map name (bpf_map__set_max_entries). */
  maxEntries?: Record<string, number>;
  /** Maps not to create (bpf_map__set_autocreate false); a program that uses one then fails to load. */
  skipMaps?: string[];
  /** Programs not to load (bpf_program__set_autoload false). */
  skipPrograms?: string[];
  /** Verifier log level: 0 = only on failure (default), 1 = always, 2 = verbose. */
  logLevel?: number;
  /** Verifier log buffer size in bytes (default 16 MiB; the log of a failed load keeps its tail). */
  logSize?: number;
  /** Overrides the object name (default: the file's base name). */
  objectName?: string;
}

export interface BpfProgram {
  name: string;
  fd: number;
  /** enum bpf_prog_type (3 = sched_cls (tc), 6 = xdp …). */
  type: number;
}

const DEFAULT_LOG_SIZE = 16 << 20;

function isOnBpffs(path: string): boolean {
  try {
    return statfsSync(path).type === BPF_FS_MAGIC;
  } catch {
    return false;
  }
}

export class BpfObject {
  /** The verifier log of the last load when logLevel > 0 (empty otherwise). */
  verifierLog = "";
  private obj: Ptr | null;
  private loaded = false;
  private logBuf: unknown = null;
  private readonly logSize: number;
  private readonly maps = new Map<string, RawMap>();

  private constructor(
    readonly path: string,
    obj: Ptr,
    readonly pinRoot: string | null,
    logBuf: unknown,
    logSize: number,
  ) {
    this.obj = obj;
    this.logBuf = logBuf;
    this.logSize = logSize;
  }

  /**
   * Opens and parses an object file and applies the options. Throws BpfError: BPF_NO_LIBBPF (library
   * missing), BPF_OPEN_FAILED (no such file, bad ELF/BTF/map definitions), BPF_NOT_FOUND (an option names
   * a map or program the object lacks), BPF_BAD_ARGUMENT (a rejected max_entries).
   */
  static open(path: string, opts: BpfObjectOptions = {}): BpfObject {
    let api;
    try {
      api = libbpf();
    } catch (e) {
      throw new BpfError(BpfErrorCode.NoLibbpf, `cannot load libbpf.so.1: ${(e as Error).message}`, "install libbpf (Debian/Ubuntu: apt-get install libbpf1 or libbpf-dev)");
    }
    if (!existsSync(path)) {
      throw new BpfError(BpfErrorCode.OpenFailed, `BPF object ${path} does not exist`, "build it first (clang -O2 -g -target bpf -c …)", { errno: 2, errnoName: "ENOENT" });
    }
    const pinRoot = opts.pinRoot === undefined ? DEFAULT_PIN_ROOT : opts.pinRoot;
    const logSize = opts.logSize ?? DEFAULT_LOG_SIZE;
    const logBuf = koffi.alloc("char", logSize);
    new Uint8Array(koffi.view(logBuf, 1))[0] = 0;
    const openOpts = {
      sz: koffi.sizeof(BpfObjectOpenOpts),
      object_name: opts.objectName ?? null,
      relaxed_maps: false,
      pin_root_path: pinRoot,
      unused_attach_prog_fd: 0,
      kconfig: null,
      btf_custom_path: null,
      kernel_log_buf: logBuf,
      kernel_log_size: logSize,
      kernel_log_level: opts.logLevel ?? 0,
    };
    let obj: Ptr | null = null;
    let errno = 0;
    const lines = withLibbpfLog((lines) => {
      obj = api.bpf_object__open_file(path, openOpts);
      if (!obj) errno = lastErrno();
      return lines;
    });
    if (!obj) {
      koffi.free(logBuf);
      throw bpfError(BpfErrorCode.OpenFailed, `bpf_object__open_file(${path})`, errno || 22, "is it a BPF ELF object built with clang -target bpf -g?", { libbpfLog: lines });
    }
    const object = new BpfObject(path, obj, pinRoot, logBuf, logSize);
    try {
      if (pinRoot === null) for (const m of object.mapPtrs()) api.bpf_map__set_pin_path(m, null);
      for (const [name, n] of Object.entries(opts.maxEntries ?? {})) object.setMaxEntries(name, n);
      for (const name of opts.skipMaps ?? []) {
        const ret = api.bpf_map__set_autocreate(object.mapPtr(name), false);
        if (ret < 0) throw bpfError(BpfErrorCode.BadArgument, `bpf_map__set_autocreate(${name})`, ret);
      }
      for (const name of opts.skipPrograms ?? []) {
        const ret = api.bpf_program__set_autoload(object.progPtr(name), false);
        if (ret < 0) throw bpfError(BpfErrorCode.BadArgument, `bpf_program__set_autoload(${name})`, ret);
      }
    } catch (e) {
      object.close();
      throw e;
    }
    return object;
  }

  /** open() then load(); closes the object again when loading fails. Throws as open() and load(). */
  static load(path: string, opts: BpfObjectOptions = {}): BpfObject {
    const object = BpfObject.open(path, opts);
    try {
      object.load();
    } catch (e) {
      object.close();
      throw e;
    }
    return object;
  }

  private get handle(): Ptr {
    if (!this.obj) throw new BpfError(BpfErrorCode.Closed, `BPF object ${this.path} is closed`);
    return this.obj;
  }

  private *mapPtrs(): IterableIterator<Ptr> {
    const api = libbpf();
    let m = api.bpf_object__next_map(this.handle, null);
    while (m) {
      yield m;
      m = api.bpf_object__next_map(this.handle, m);
    }
  }

  private mapPtr(name: string): Ptr {
    const m = libbpf().bpf_object__find_map_by_name(this.handle, name);
    if (!m) throw new BpfError(BpfErrorCode.NotFound, `BPF object ${this.path} has no map named ${name}`, `maps: ${this.mapNames().join(", ")}`);
    return m;
  }

  private progPtr(name: string): Ptr {
    const p = libbpf().bpf_object__find_program_by_name(this.handle, name);
    if (!p) throw new BpfError(BpfErrorCode.NotFound, `BPF object ${this.path} has no program named ${name}`, `programs: ${this.programNames().join(", ")}`);
    return p;
  }

  /** Names of the maps in the object (including .bss/.data/.rodata internal maps). */
  mapNames(): string[] {
    return [...this.mapPtrs()].map((m) => libbpf().bpf_map__name(m));
  }

  /** Names of the programs (C function names). */
  programNames(): string[] {
    const api = libbpf();
    const names: string[] = [];
    let p = api.bpf_object__next_program(this.handle, null);
    while (p) {
      names.push(api.bpf_program__name(p));
      p = api.bpf_object__next_program(this.handle, p);
    }
    return names;
  }

  /** Before load: sets a map's max_entries. Throws BPF_NOT_FOUND / BPF_BAD_ARGUMENT (e.g. after load). */
  setMaxEntries(name: string, n: number): void {
    const ret = libbpf().bpf_map__set_max_entries(this.mapPtr(name), n);
    if (ret < 0) throw bpfError(BpfErrorCode.BadArgument, `bpf_map__set_max_entries(${name}, ${n})`, ret, "only before load()");
  }

  /** Before load: pins (and reuses) one map at an explicit bpffs path, or not at all (null). */
  setPinPath(name: string, path: string | null): void {
    const ret = libbpf().bpf_map__set_pin_path(this.mapPtr(name), path);
    if (ret < 0) throw bpfError(BpfErrorCode.BadArgument, `bpf_map__set_pin_path(${name})`, ret);
  }

  /** The pin path libbpf will use (or used) for a map, or null when it is not pinned. */
  pinPath(name: string): string | null {
    return libbpf().bpf_map__pin_path(this.mapPtr(name)) ?? null;
  }

  /**
   * Creates (or reuses pinned) maps and loads every program. Throws BpfError: BPF_LOAD_FAILED with
   * `verifierLog` (the verifier rejected a program; the log tail is in the message), BPF_PIN_FAILED (a
   * pinned map is incompatible or the pin directory is unusable; libbpf's reason in `libbpfLog`),
   * BPF_NO_BPFFS (pinRoot is not on bpffs), BPF_NOT_PERMITTED (not root), BPF_BAD_ARGUMENT (loaded twice).
   */
  load(): void {
    const api = libbpf();
    const obj = this.handle;
    if (this.loaded) throw new BpfError(BpfErrorCode.BadArgument, `BPF object ${this.path} is already loaded`);
    const pinned = [...this.mapPtrs()].map((m) => api.bpf_map__pin_path(m)).filter((p): p is string => !!p);
    for (const dir of new Set(pinned.map((p) => dirname(p)))) {
      const mount = existingAncestor(dir);
      if (!isOnBpffs(mount)) {
        throw new BpfError(BpfErrorCode.NoBpffs, `pin directory ${dir} is not on a bpffs mount (${mount} is not bpffs)`, "mount bpffs: mount -t bpf bpf /sys/fs/bpf");
      }
      try {
        mkdirSync(dir, { recursive: true, mode: 0o700 });
      } catch (e) {
        throw new BpfError(BpfErrorCode.PinFailed, `cannot create pin directory ${dir}: ${(e as Error).message}`, "run as root");
      }
    }
    let ret = 0;
    const lines = withLibbpfLog((lines) => {
      ret = api.bpf_object__load(obj);
      return lines;
    });
    const log = this.readLog();
    this.freeLog();
    if (ret < 0) {
      const pinProblem = lines.some((l) => /pinned map|pin path|pin_path|bpf_map__pin|failed to pin/i.test(l));
      if (pinProblem) {
        throw bpfError(BpfErrorCode.PinFailed, `loading ${this.path}: cannot reuse or create pinned maps under ${this.pinRoot}`, ret, "a map pinned by an older build has a different type, size or max_entries: remove the pin (removePinRoot) or use another pinRoot", { libbpfLog: lines });
      }
      const verifierLog = log || undefined;
      const hint = verifierLog
        ? "the verifier rejected a program: read the verifier log (the last lines say why)"
        : errnoName(-ret) === "EPERM"
          ? "run as root (CAP_BPF + CAP_SYS_ADMIN)"
          : undefined;
      throw bpfError(BpfErrorCode.LoadFailed, `bpf_object__load(${this.path})`, ret, hint, { verifierLog, libbpfLog: lines });
    }
    this.verifierLog = log;
    this.loaded = true;
  }

  private readLog(): string {
    if (!this.logBuf) return "";
    const bytes = new Uint8Array(koffi.view(this.logBuf, this.logSize));
    const nul = bytes.indexOf(0);
    return Buffer.from(bytes.subarray(0, nul < 0 ? bytes.length : nul)).toString("utf8");
  }

  private freeLog(): void {
    if (this.logBuf) koffi.free(this.logBuf);
    this.logBuf = null;
  }

  private requireLoaded(): void {
    if (!this.loaded) throw new BpfError(BpfErrorCode.BadArgument, `BPF object ${this.path} is not loaded yet`, "call load() first");
  }

  /** A loaded program by C function name. Throws BPF_NOT_FOUND, BPF_CLOSED, or BPF_BAD_ARGUMENT before load. */
  program(name: string): BpfProgram {
    const p = this.progPtr(name);
    this.requireLoaded();
    const api = libbpf();
    const fd = api.bpf_program__fd(p);
    if (fd < 0) throw new BpfError(BpfErrorCode.NotFound, `program ${name} was not loaded (skipped?)`);
    return { name, fd, type: api.bpf_program__type(p) };
  }

  /** A created map by name, as a byte-level handle (owned by this object). Throws like program(). */
  map(name: string): RawMap {
    const cached = this.maps.get(name);
    if (cached) return cached;
    const m = this.mapPtr(name);
    this.requireLoaded();
    const fd = libbpf().bpf_map__fd(m);
    if (fd < 0) throw new BpfError(BpfErrorCode.NotFound, `map ${name} was not created (skipped?)`);
    const raw = new RawMap(fd, name, false, () => this.obj !== null);
    this.maps.set(name, raw);
    return raw;
  }

  /** A typed MapHandle for a generated MapSpec (found by spec.bpfName). Throws BPF_LAYOUT_MISMATCH … */
  typedMap<K, V>(spec: MapSpec<K, V>): BpfMapHandle<K, V> {
    return new BpfMapHandle(spec, this.map(spec.bpfName));
  }

  /** Pins every map that has a pin path (bpf_object__pin_maps(obj, NULL)), or all maps under `dir`. */
  pinMaps(dir?: string): void {
    this.requireLoaded();
    const ret = libbpf().bpf_object__pin_maps(this.handle, dir ?? null);
    if (ret < 0) throw bpfError(BpfErrorCode.PinFailed, `bpf_object__pin_maps(${dir ?? this.pinRoot})`, ret);
  }

  /**
   * Pins again, from the fds this object holds, every map whose pin path is set but whose pin is gone
   * (someone removed it under a running agent). The map itself lives on while any fd or program holds it, so
   * this restores the very map the attached programs use — a later load finds it instead of creating an
   * empty one. Returns the names re-pinned; throws BPF_PIN_FAILED when a pin cannot be made.
   */
  repinMissing(): string[] {
    this.requireLoaded();
    const api = libbpf();
    const repinned: string[] = [];
    for (const m of this.mapPtrs()) {
      const path = api.bpf_map__pin_path(m);
      if (!path || existsSync(path)) continue;
      mkdirSync(dirname(path), { recursive: true, mode: 0o700 });
      const ret = api.bpf_obj_pin(api.bpf_map__fd(m), path);
      if (ret < 0) throw bpfError(BpfErrorCode.PinFailed, `bpf_obj_pin(${path})`, ret);
      repinned.push(api.bpf_map__name(m));
    }
    return repinned;
  }

  /** Removes the pins of this object's pinned maps (the maps live on while an fd or program holds them). */
  unpinMaps(): void {
    const ret = libbpf().bpf_object__unpin_maps(this.handle, null);
    if (ret < 0 && errnoName(-ret) !== "ENOENT") throw bpfError(BpfErrorCode.PinFailed, `bpf_object__unpin_maps(${this.path})`, ret);
  }

  /** Releases the object, its programs and map fds. Pins stay. Safe to call twice. */
  close(): void {
    this.freeLog();
    if (!this.obj) return;
    libbpf().bpf_object__close(this.obj);
    this.obj = null;
    for (const m of this.maps.values()) m.close();
    this.maps.clear();
  }
}

function existingAncestor(dir: string): string {
  let d = dir;
  for (let i = 0; i < 64 && !existsSync(d); i++) d = dirname(d);
  return d;
}

/**
 * Removes a pin directory and every pin in it (one level, as libbpf pins by name). Refuses paths that are
 * not on bpffs, so it can never delete ordinary files. Returns false when the directory did not exist.
 */
export function removePinRoot(dir: string): boolean {
  if (!existsSync(dir)) return false;
  if (!isOnBpffs(dir)) throw new BpfError(BpfErrorCode.NoBpffs, `${dir} is not on bpffs; refusing to remove it`);
  for (const name of readdirSync(dir)) unlinkSync(`${dir}/${name}`);
  rmdirSync(dir);
  return true;
}
