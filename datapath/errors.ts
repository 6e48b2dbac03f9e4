/*
 * Typed errors of the kernel driver. Every failure of a libbpf or bpf() call becomes a BpfError: a
 * DatapathError (host/datapath.ts) with a stable `code` (BpfErrorCode), the errno and its text (from
 * libbpf_strerror, which also knows libbpf's own LIBBPF_ERRNO__* codes), a hint for the user, and — for
 * loads — the verifier log and the messages libbpf printed while the call ran.
 */
import { constants as osConstants } from "node:os";
import { DatapathError } from "../host/datapath.ts";
import { libbpf } from "./libbpf.ts";

/** Stable error codes. Callers and tests match on these, never on message text. */
export const BpfErrorCode = {
  /** libbpf.so.1 cannot be loaded (package libbpf1 / libbpf-dev missing). */
  NoLibbpf: "BPF_NO_LIBBPF",
  /** The object file cannot be opened or parsed (missing file, bad ELF, bad BTF or map definition). */
  OpenFailed: "BPF_OPEN_FAILED",
  /** bpf_object__load failed: the verifier rejected a program, or a map could not be created. */
  LoadFailed: "BPF_LOAD_FAILED",
  /** The kernel refused for lack of privilege (EPERM; EACCES outside a program load). */
  NotPermitted: "BPF_NOT_PERMITTED",
  /** A map update failed because the map is full (E2BIG on a hash/LRU/LPM map). */
  MapFull: "BPF_MAP_FULL",
  /** An array map key is outside [0, max_entries). */
  KeyOutOfRange: "BPF_KEY_OUT_OF_RANGE",
  /** BPF_NOEXIST update of a key that exists. */
  KeyExists: "BPF_KEY_EXISTS",
  /** BPF_EXIST update of a key that is absent. */
  KeyNotFound: "BPF_KEY_NOT_FOUND",
  /** Any other map syscall failure. */
  MapOpFailed: "BPF_MAP_OP_FAILED",
  /** A codec's key or value size differs from the kernel map's (generated layout out of date). */
  LayoutMismatch: "BPF_LAYOUT_MISMATCH",
  /** Pinning, unpinning, or reusing a pinned map failed (incompatible pinned map, not a bpffs path …). */
  PinFailed: "BPF_PIN_FAILED",
  /** bpffs is not mounted where a pin path points. */
  NoBpffs: "BPF_NO_BPFFS",
  /** A program or map name that the object does not contain. */
  NotFound: "BPF_NOT_FOUND",
  /** BPF_PROG_TEST_RUN failed (bad ctx fields, packet too short, output buffer too small …). */
  TestRunFailed: "BPF_TEST_RUN_FAILED",
  /** tc or XDP attach / detach failed. */
  AttachFailed: "BPF_ATTACH_FAILED",
  /** A network namespace or interface name that does not exist, or setns failed. */
  NetnsFailed: "BPF_NETNS_FAILED",
  /** Using an object, map or attachment after close()/detach(). */
  Closed: "BPF_CLOSED",
  /** An argument the driver rejects before calling the kernel. */
  BadArgument: "BPF_BAD_ARGUMENT",
  /** A kernel prerequisite is missing and CI=true (see datapath/preflight.ts). */
  PreflightFailed: "BPF_PREFLIGHT_FAILED",
} as const;
export type BpfErrorCodeValue = (typeof BpfErrorCode)[keyof typeof BpfErrorCode];

export interface BpfErrorDetails {
  /** Positive errno (EPERM = 1 …) or a libbpf LIBBPF_ERRNO__* code (4000+). */
  errno?: number;
  /** Symbolic name, e.g. "EACCES", when the errno is a system one. */
  errnoName?: string;
  /** Text from libbpf_strerror / strerror. */
  errnoText?: string;
  /** The verifier log of a failed (or log_level>0) program load. */
  verifierLog?: string;
  /** Lines libbpf printed (through libbpf_set_print) while the failing call ran. */
  libbpfLog?: string[];
}

export class BpfError extends DatapathError implements BpfErrorDetails {
  readonly errno?: number;
  readonly errnoName?: string;
  readonly errnoText?: string;
  readonly verifierLog?: string;
  readonly libbpfLog?: string[];
  constructor(code: BpfErrorCodeValue, message: string, hint?: string, details: BpfErrorDetails = {}) {
    super(code, message, hint);
    this.name = "BpfError";
    Object.assign(this, details);
  }
}

const ERRNO_NAMES = new Map<number, string>();
for (const [name, n] of Object.entries(osConstants.errno)) if (!ERRNO_NAMES.has(n)) ERRNO_NAMES.set(n, name);

/** Symbolic name of a positive errno ("ENOENT"), or undefined. */
export function errnoName(errno: number): string | undefined {
  return ERRNO_NAMES.get(Math.abs(errno));
}

/** Human text for an errno (positive or negative): libbpf_strerror when libbpf loads, else the name. */
export function errnoText(errno: number): string {
  const e = Math.abs(errno);
  try {
    const buf = Buffer.alloc(256);
    libbpf().libbpf_strerror(e, buf, buf.length);
    const nul = buf.indexOf(0);
    return buf.toString("utf8", 0, nul < 0 ? buf.length : nul);
  } catch {
    return errnoName(e) ?? `errno ${e}`;
  }
}

/** The default hint for an errno, used when the call site has no more specific one. */
export function hintForErrno(errno: number): string | undefined {
  switch (errnoName(errno)) {
    case "EPERM":
      return "run as root (needs CAP_BPF and CAP_SYS_ADMIN, CAP_NET_ADMIN for tc/XDP), and check RLIMIT_MEMLOCK on old kernels";
    case "EACCES":
      return "the kernel denied the operation: run as root; for program loads read the verifier log";
    case "ENOENT":
      return "the object does not exist (map key, pinned path, interface or program)";
    case "E2BIG":
      return "the map is full or the key is outside the array: raise max_entries or delete entries";
    case "ENOSPC":
      return "an output buffer was too small (verifier log, data_out or ctx_out): enlarge it";
    case "EINVAL":
      return "the kernel rejected an argument: check key/value sizes, flags and ctx fields";
    case "ENOMEM":
      return "the kernel could not allocate memory for the map or program: lower max_entries";
    case "EEXIST":
      return "the entry or attachment already exists: use BPF_ANY or replace";
    case "ENODEV":
      return "no such network interface in this network namespace";
    case "EOPNOTSUPP":
      return "the kernel or driver does not support this attach mode";
    default:
      return undefined;
  }
}

/**
 * Builds a BpfError for a failed call: `<what>: <errno text> (<NAME>, errno N)`. `ret` is the call's
 * return value (-errno) or a positive errno. `hint` overrides the errno's default hint.
 */
export function bpfError(
  code: BpfErrorCodeValue,
  what: string,
  ret: number,
  hint?: string,
  extra: Omit<BpfErrorDetails, "errno" | "errnoName" | "errnoText"> = {},
): BpfError {
  const errno = Math.abs(ret);
  const name = errnoName(errno);
  const text = errnoText(errno);
  // EPERM means missing privileges, except when a verifier log explains a program rejection.
  const finalCode = name === "EPERM" && !extra.verifierLog ? BpfErrorCode.NotPermitted : code;
  let message = `${what}: ${text} (${name ?? "libbpf"}, errno ${errno})`;
  if (extra.verifierLog) message += `\n--- verifier log ---\n${tail(extra.verifierLog, 16_000)}`;
  else if (extra.libbpfLog && extra.libbpfLog.length > 0) message += `\n--- libbpf ---\n${extra.libbpfLog.slice(-20).join("\n")}`;
  return new BpfError(finalCode, message, hint ?? hintForErrno(errno), { errno, errnoName: name, errnoText: text, ...extra });
}

function tail(text: string, max: number): string {
  return text.length <= max ? text : `… (${text.length - max} characters cut)\n${text.slice(text.length - max)}`;
}
