/*
 * Text that fits the terminal: its width (the tty's columns, else $COLUMNS, else 120 for pipes and logs,
 * so captured output is the same everywhere) and wrapping that never cuts a word off — a name longer than
 * its column is broken across lines, not shortened with "…". Tables built from these cells stay within the
 * width; `--wide` callers skip wrapping and print one line per record.
 */
import wrapAnsi from "wrap-ansi";

export const PIPE_WIDTH = 120;

export function terminalWidth(stream: { isTTY?: boolean; columns?: number } = process.stdout): number {
  if (stream.isTTY && stream.columns) return stream.columns;
  const env = Number(process.env.COLUMNS);
  return Number.isInteger(env) && env > 0 ? env : PIPE_WIDTH;
}

/** Wraps at word boundaries within `width` columns; a word longer than the width is broken, never cut. */
export function wrap(text: string, width: number): string {
  return wrapAnsi(text, Math.max(1, width), { hard: true, trim: true });
}

/** Prefixes every line of `text` after the first with `indent` spaces (for one-record-per-block output). */
export function hangingIndent(text: string, indent: number): string {
  return text.split("\n").join(`\n${" ".repeat(indent)}`);
}

/**
 * `prefix` then `text` wrapped to `width` columns, later lines indented under the text's first column (a
 * labelled field of a one-record-per-block listing: "  before: …"). Very narrow widths keep at least 20
 * columns for the text.
 */
export function labelled(prefix: string, text: string, width: number, indent = prefix.length): string {
  return `${prefix}${hangingIndent(wrap(text, Math.max(20, width - indent)), indent)}`;
}
