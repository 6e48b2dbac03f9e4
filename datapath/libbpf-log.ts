/*
 * Captures what libbpf prints. libbpf reports most of its reasons (a pinned map that cannot be reused, a
 * bad BTF, the verifier log when no buffer was given) through its print callback, by default to stderr.
 * The driver installs one callback (libbpf_set_print) that formats each message with vsnprintf and appends
 * it to the capture that is active, so the message ends up in the BpfError of the failing call instead of
 * on the terminal. Outside a capture, warnings go to stderr; CILIATE_LIBBPF_DEBUG=1 echoes everything.
 */
import { koffi, LibbpfPrintFn, libbpf, libc } from "./libbpf.ts";

const LIBBPF_WARN = 0;
const LIBBPF_DEBUG = 2;

let installed = false;
let sink: string[] | null = null;
const fmtBuf = Buffer.alloc(8192);

function onPrint(level: number, fmt: unknown, ap: unknown): number {
  const n = libc().vsnprintf(fmtBuf, fmtBuf.length, fmt, ap);
  const text = fmtBuf.toString("utf8", 0, Math.max(0, Math.min(n, fmtBuf.length - 1))).replace(/\n$/, "");
  const debug = process.env.CILIATE_LIBBPF_DEBUG === "1";
  if (debug) process.stderr.write(`libbpf[${level}]: ${text}\n`);
  if (level === LIBBPF_DEBUG) return 0;
  if (sink) sink.push(text);
  else if (level === LIBBPF_WARN && !debug) process.stderr.write(text.startsWith("libbpf:") ? `${text}\n` : `libbpf: ${text}\n`);
  return 0;
}

/** Installs the print callback once per process (libbpf's print hook is global). */
export function installLibbpfPrint(): void {
  if (installed) return;
  const cb = koffi.register(onPrint, koffi.pointer(LibbpfPrintFn));
  libbpf().libbpf_set_print(cb);
  installed = true;
}

/** Runs `fn` with libbpf's messages collected into `lines` (passed to fn, also kept after it throws). */
export function withLibbpfLog<T>(fn: (lines: string[]) => T): T {
  installLibbpfPrint();
  const prev = sink;
  const lines: string[] = [];
  sink = lines;
  try {
    return fn(lines);
  } finally {
    sink = prev;
    if (prev) prev.push(...lines);
  }
}
