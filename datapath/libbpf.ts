/*
 * Raw koffi declarations for the system libbpf (libbpf.so.1, written against the 1.1 headers in
 * /usr/include/bpf) and the few libc calls the driver needs (setns, if_nametoindex, vsnprintf). No logic
 * here beyond loading the libraries lazily: every other datapath/ file goes through `libbpf()` / `libc()`.
 *
 * Struct layouts mirror the C headers field by field (x86_64/aarch64 LP64). The `sz` field of each *_opts
 * struct must be set to koffi.sizeof(<struct>), as LIBBPF_OPTS() does in C. Conventions of libbpf 1.x:
 * int-returning calls return 0 or -errno; pointer-returning calls return NULL and set errno.
 */
import koffi from "koffi";

/** Opaque libbpf handles: `struct bpf_object *`, `struct bpf_program *`, `struct bpf_map *`. */
export type Ptr = unknown;

export const LIBBPF_SONAME = "libbpf.so.1";

/* struct bpf_object_open_opts (libbpf.h, libbpf 1.1). `__u32 :32` is the removed attach_prog_fd. */
export const BpfObjectOpenOpts = koffi.struct("bpf_object_open_opts", {
  sz: "size_t",
  object_name: "const char *",
  relaxed_maps: "bool",
  pin_root_path: "const char *",
  unused_attach_prog_fd: "uint32",
  kconfig: "const char *",
  btf_custom_path: "const char *",
  kernel_log_buf: "void *",
  kernel_log_size: "size_t",
  kernel_log_level: "uint32",
});

/* struct bpf_test_run_opts (bpf.h). */
export const BpfTestRunOpts = koffi.struct("bpf_test_run_opts", {
  sz: "size_t",
  data_in: "void *",
  data_out: "void *",
  data_size_in: "uint32",
  data_size_out: "uint32",
  ctx_in: "void *",
  ctx_out: "void *",
  ctx_size_in: "uint32",
  ctx_size_out: "uint32",
  retval: "uint32",
  repeat: "int",
  duration: "uint32",
  flags: "uint32",
  cpu: "uint32",
  batch_size: "uint32",
});

/* struct bpf_tc_hook (libbpf.h). */
export const BpfTcHook = koffi.struct("bpf_tc_hook", {
  sz: "size_t",
  ifindex: "int",
  attach_point: "int",
  parent: "uint32",
});

/* struct bpf_tc_opts (libbpf.h). */
export const BpfTcOpts = koffi.struct("bpf_tc_opts", {
  sz: "size_t",
  prog_fd: "int",
  flags: "uint32",
  prog_id: "uint32",
  handle: "uint32",
  priority: "uint32",
});

/* struct bpf_map_batch_opts (bpf.h). */
export const BpfMapBatchOpts = koffi.struct("bpf_map_batch_opts", {
  sz: "size_t",
  elem_flags: "uint64",
  flags: "uint64",
});

/* libbpf_print_fn_t: va_list is passed as a pointer on the System V x86_64 and AAPCS64 ABIs. */
export const LibbpfPrintFn = koffi.proto("int libbpf_print_fn_t(int level, void *fmt, void *ap)");

export interface LibbpfApi {
  libbpf_strerror(err: number, buf: Buffer, size: number): number;
  libbpf_set_print(fn: unknown): unknown;
  libbpf_num_possible_cpus(): number;

  bpf_object__open_file(path: string, opts: unknown): Ptr | null;
  bpf_object__load(obj: Ptr): number;
  bpf_object__close(obj: Ptr): void;
  bpf_object__name(obj: Ptr): string;
  bpf_object__find_program_by_name(obj: Ptr, name: string): Ptr | null;
  bpf_object__find_map_by_name(obj: Ptr, name: string): Ptr | null;
  bpf_object__next_program(obj: Ptr, prev: Ptr | null): Ptr | null;
  bpf_object__next_map(obj: Ptr, prev: Ptr | null): Ptr | null;
  bpf_object__pin_maps(obj: Ptr, path: string | null): number;
  bpf_object__unpin_maps(obj: Ptr, path: string | null): number;

  bpf_program__name(prog: Ptr): string;
  bpf_program__fd(prog: Ptr): number;
  bpf_program__type(prog: Ptr): number;
  bpf_program__set_autoload(prog: Ptr, autoload: boolean): number;

  bpf_map__name(map: Ptr): string;
  bpf_map__fd(map: Ptr): number;
  bpf_map__type(map: Ptr): number;
  bpf_map__key_size(map: Ptr): number;
  bpf_map__value_size(map: Ptr): number;
  bpf_map__max_entries(map: Ptr): number;
  bpf_map__set_max_entries(map: Ptr, n: number): number;
  bpf_map__set_autocreate(map: Ptr, autocreate: boolean): number;
  bpf_map__set_pin_path(map: Ptr, path: string | null): number;
  bpf_map__pin_path(map: Ptr): string | null;
  bpf_map__is_pinned(map: Ptr): boolean;
  bpf_map__pin(map: Ptr, path: string | null): number;
  bpf_map__unpin(map: Ptr, path: string | null): number;

  bpf_map_lookup_elem(fd: number, key: Uint8Array, value: Uint8Array): number;
  bpf_map_update_elem(fd: number, key: Uint8Array, value: Uint8Array, flags: number): number;
  bpf_map_delete_elem(fd: number, key: Uint8Array): number;
  bpf_map_get_next_key(fd: number, key: Uint8Array | null, next: Uint8Array): number;
  bpf_map_update_batch(fd: number, keys: Uint8Array, values: Uint8Array, count: Uint32Array, opts: Record<string, unknown>): number;
  bpf_map_delete_batch(fd: number, keys: Uint8Array, count: Uint32Array, opts: Record<string, unknown>): number;
  bpf_map_lookup_batch(fd: number, inBatch: Uint8Array | null, outBatch: Uint8Array, keys: Uint8Array, values: Uint8Array, count: Uint32Array, opts: Record<string, unknown>): number;
  bpf_map_freeze(fd: number): number;
  bpf_obj_get(path: string): number;
  bpf_obj_pin(fd: number, path: string): number;
  bpf_obj_get_info_by_fd(fd: number, info: Uint8Array, len: Uint32Array): number;
  bpf_prog_test_run_opts(fd: number, opts: Record<string, unknown>): number;

  bpf_tc_hook_create(hook: Record<string, unknown>): number;
  bpf_tc_hook_destroy(hook: Record<string, unknown>): number;
  bpf_tc_attach(hook: Record<string, unknown>, opts: Record<string, unknown>): number;
  bpf_tc_detach(hook: Record<string, unknown>, opts: Record<string, unknown>): number;
  bpf_tc_query(hook: Record<string, unknown>, opts: Record<string, unknown>): number;
  bpf_xdp_attach(ifindex: number, progFd: number, flags: number, opts: null): number;
  bpf_xdp_detach(ifindex: number, flags: number, opts: null): number;
  bpf_xdp_query_id(ifindex: number, flags: number, progId: Uint32Array): number;
}

export interface LibcApi {
  setns(fd: number, nstype: number): number;
  if_nametoindex(name: string): number;
  vsnprintf(buf: Buffer, size: number, fmt: unknown, ap: unknown): number;
}

let libbpfApi: LibbpfApi | undefined;
let libbpfLoadError: Error | undefined;
let libcApi: LibcApi | undefined;

/** Loads libbpf.so.1 once and declares its functions. Throws the loader's error when it is missing. */
export function libbpf(): LibbpfApi {
  if (libbpfApi) return libbpfApi;
  if (libbpfLoadError) throw libbpfLoadError;
  let lib: koffi.IKoffiLib;
  try {
    lib = koffi.load(LIBBPF_SONAME);
  } catch (e) {
    libbpfLoadError = e as Error;
    throw e;
  }
  const f = (decl: string) => lib.func(decl);
  const api = {
    libbpf_strerror: f("int libbpf_strerror(int err, _Out_ char *buf, size_t size)"),
    libbpf_set_print: f("void *libbpf_set_print(libbpf_print_fn_t *fn)"),
    libbpf_num_possible_cpus: f("int libbpf_num_possible_cpus(void)"),

    bpf_object__open_file: f("void *bpf_object__open_file(const char *path, const bpf_object_open_opts *opts)"),
    bpf_object__load: f("int bpf_object__load(void *obj)"),
    bpf_object__close: f("void bpf_object__close(void *obj)"),
    bpf_object__name: f("const char *bpf_object__name(void *obj)"),
    bpf_object__find_program_by_name: f("void *bpf_object__find_program_by_name(void *obj, const char *name)"),
    bpf_object__find_map_by_name: f("void *bpf_object__find_map_by_name(void *obj, const char *name)"),
    bpf_object__next_program: f("void *bpf_object__next_program(void *obj, void *prev)"),
    bpf_object__next_map: f("void *bpf_object__next_map(void *obj, void *prev)"),
    bpf_object__pin_maps: f("int bpf_object__pin_maps(void *obj, const char *path)"),
    bpf_object__unpin_maps: f("int bpf_object__unpin_maps(void *obj, const char *path)"),

    bpf_program__name: f("const char *bpf_program__name(void *prog)"),
    bpf_program__fd: f("int bpf_program__fd(void *prog)"),
    bpf_program__type: f("int bpf_program__type(void *prog)"),
    bpf_program__set_autoload: f("int bpf_program__set_autoload(void *prog, bool autoload)"),

    bpf_map__name: f("const char *bpf_map__name(void *map)"),
    bpf_map__fd: f("int bpf_map__fd(void *map)"),
    bpf_map__type: f("int bpf_map__type(void *map)"),
    bpf_map__key_size: f("uint32 bpf_map__key_size(void *map)"),
    bpf_map__value_size: f("uint32 bpf_map__value_size(void *map)"),
    bpf_map__max_entries: f("uint32 bpf_map__max_entries(void *map)"),
    bpf_map__set_max_entries: f("int bpf_map__set_max_entries(void *map, uint32 n)"),
    bpf_map__set_autocreate: f("int bpf_map__set_autocreate(void *map, bool autocreate)"),
    bpf_map__set_pin_path: f("int bpf_map__set_pin_path(void *map, const char *path)"),
    bpf_map__pin_path: f("const char *bpf_map__pin_path(void *map)"),
    bpf_map__is_pinned: f("bool bpf_map__is_pinned(void *map)"),
    bpf_map__pin: f("int bpf_map__pin(void *map, const char *path)"),
    bpf_map__unpin: f("int bpf_map__unpin(void *map, const char *path)"),

    bpf_map_lookup_elem: f("int bpf_map_lookup_elem(int fd, const void *key, _Out_ void *value)"),
    bpf_map_update_elem: f("int bpf_map_update_elem(int fd, const void *key, const void *value, uint64 flags)"),
    bpf_map_delete_elem: f("int bpf_map_delete_elem(int fd, const void *key)"),
    bpf_map_get_next_key: f("int bpf_map_get_next_key(int fd, const void *key, _Out_ void *next)"),
    bpf_map_update_batch: f("int bpf_map_update_batch(int fd, const void *keys, const void *values, _Inout_ uint32 *count, const bpf_map_batch_opts *opts)"),
    bpf_map_delete_batch: f("int bpf_map_delete_batch(int fd, const void *keys, _Inout_ uint32 *count, const bpf_map_batch_opts *opts)"),
    bpf_map_lookup_batch: f("int bpf_map_lookup_batch(int fd, void *in_batch, _Out_ void *out_batch, _Out_ void *keys, _Out_ void *values, _Inout_ uint32 *count, const bpf_map_batch_opts *opts)"),
    bpf_map_freeze: f("int bpf_map_freeze(int fd)"),
    bpf_obj_get: f("int bpf_obj_get(const char *path)"),
    bpf_obj_pin: f("int bpf_obj_pin(int fd, const char *path)"),
    bpf_obj_get_info_by_fd: f("int bpf_obj_get_info_by_fd(int fd, _Inout_ void *info, _Inout_ uint32 *len)"),
    bpf_prog_test_run_opts: f("int bpf_prog_test_run_opts(int fd, _Inout_ bpf_test_run_opts *opts)"),

    bpf_tc_hook_create: f("int bpf_tc_hook_create(bpf_tc_hook *hook)"),
    bpf_tc_hook_destroy: f("int bpf_tc_hook_destroy(bpf_tc_hook *hook)"),
    bpf_tc_attach: f("int bpf_tc_attach(const bpf_tc_hook *hook, _Inout_ bpf_tc_opts *opts)"),
    bpf_tc_detach: f("int bpf_tc_detach(const bpf_tc_hook *hook, const bpf_tc_opts *opts)"),
    bpf_tc_query: f("int bpf_tc_query(const bpf_tc_hook *hook, _Inout_ bpf_tc_opts *opts)"),
    bpf_xdp_attach: f("int bpf_xdp_attach(int ifindex, int prog_fd, uint32 flags, const void *opts)"),
    bpf_xdp_detach: f("int bpf_xdp_detach(int ifindex, uint32 flags, const void *opts)"),
    bpf_xdp_query_id: f("int bpf_xdp_query_id(int ifindex, int flags, _Out_ uint32 *prog_id)"),
  };
  libbpfApi = api as unknown as LibbpfApi;
  return libbpfApi;
}

/** True when libbpf.so.1 can be loaded (does not throw). */
export function libbpfAvailable(): boolean {
  try {
    libbpf();
    return true;
  } catch {
    return false;
  }
}

/** libc.so.6 functions used for network namespaces, interface names and libbpf's printf-style logs. */
export function libc(): LibcApi {
  if (libcApi) return libcApi;
  const lib = koffi.load("libc.so.6");
  libcApi = {
    setns: lib.func("int setns(int fd, int nstype)"),
    if_nametoindex: lib.func("unsigned int if_nametoindex(const char *name)"),
    vsnprintf: lib.func("int vsnprintf(_Out_ char *buf, size_t size, void *fmt, void *ap)"),
  } as unknown as LibcApi;
  return libcApi;
}

/** The errno value of the last foreign call on this thread (for libbpf calls that return NULL). */
export function lastErrno(): number {
  return koffi.errno();
}

export { koffi };
