/*
 * How the command fails. Every failure a user can cause is a CliError (exit 2, one line on stderr naming
 * what and where); a failed check exits 1; anything else is a bug and is reported as such, without a
 * stack trace unless CILIATE_DEBUG=1.
 */

export const EXIT_OK = 0;
export const EXIT_CHECK_FAILED = 1;
export const EXIT_BAD_INPUT = 2;

export class CliError extends Error {
  constructor(
    message: string,
    readonly code = "BAD_INPUT",
    readonly hint?: string,
    readonly exitCode = EXIT_BAD_INPUT,
  ) {
    super(message);
    this.name = "CliError";
  }
}

/** Errors from other modules that carry a stable code and a user-facing message. */
interface CodedError {
  code: string;
  message: string;
  hint?: string;
}

function isCoded(e: unknown): e is CodedError {
  return e instanceof Error && typeof (e as { code?: unknown }).code === "string";
}

/** Prints an error the way users should see it and returns the exit code. */
export function reportError(e: unknown, write: (s: string) => void = (s) => process.stderr.write(s)): number {
  if (e instanceof CliError) {
    write(`ciliate: ${e.message}${e.hint ? ` (${e.hint})` : ""}\n`);
    return e.exitCode;
  }
  if (isCoded(e) && !(e as NodeJS.ErrnoException).syscall) {
    // A loader error may list several problems, one per line: each line stands alone, with our prefix.
    const lines = e.message.split("\n").filter((l) => l.trim());
    lines[lines.length - 1] += e.hint ? ` (${e.hint})` : "";
    write(lines.map((l) => `ciliate: ${l}\n`).join(""));
    return EXIT_BAD_INPUT;
  }
  const errno = e as NodeJS.ErrnoException;
  if (e instanceof Error && errno.path && errno.syscall) {
    // A file we cannot read (missing, a directory, no permission) is the user's to fix, not a bug.
    const why: Record<string, string> = { ENOENT: "no such file or directory", EACCES: "permission denied", EISDIR: "is a directory", ENOTDIR: "not a directory" };
    write(`ciliate: ${errno.path}: ${why[errno.code ?? ""] ?? errno.message}\n`);
    return EXIT_BAD_INPUT;
  }
  const detail = process.env.CILIATE_DEBUG === "1" && e instanceof Error ? `\n${e.stack}` : "";
  write(`ciliate: internal error: ${e instanceof Error ? e.message : String(e)} (this is a bug; CILIATE_DEBUG=1 shows the stack)${detail}\n`);
  return EXIT_BAD_INPUT;
}
