/*
 * Text that fits the terminal: its width (the tty's columns, else $COLUMNS, else 120 for pipes and logs,
 * so captured output is the same everywhere) and wrapping that never cuts a word off
 * (sim/analysis/text-layout.ts). Tables built from these cells stay within the width; `--wide` callers
 * skip wrapping and print one line per record.
 */
export { hangingIndent, labelled, wrap } from "../sim/analysis/text-layout.ts";

export const PIPE_WIDTH = 120;

export function terminalWidth(stream: { isTTY?: boolean; columns?: number } = process.stdout): number {
  if (stream.isTTY && stream.columns) return stream.columns;
  const env = Number(process.env.COLUMNS);
  return Number.isInteger(env) && env > 0 ? env : PIPE_WIDTH;
}
