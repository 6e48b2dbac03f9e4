/*
 * Wrapping that never cuts a word off — a name longer than its column is broken across lines, not
 * shortened with "…" — shared by the analyses' text output (reach's class tables, here in sim/ so bench/
 * measures what the command prints) and the commands' tables (cli/text-layout.ts adds the terminal width).
 */
import wrapAnsi from "wrap-ansi";

/** Wraps at word boundaries within `width` columns; a word longer than the width is broken, never cut. */
export function wrap(text: string, width: number): string {
  return wrapAnsi(text, Math.max(1, width), { hard: true, trim: true });
}

/** Prefixes every line of `text` after the first with `indent` spaces (for one-record-per-block output). */
export function hangingIndent(text: string, indent: number): string {
  return text.split("\n").join(`\n${" ".repeat(indent)}`);
}

/**
 * `prefix` then `text` wrapped to `width` columns, later lines indented by `indent` (by default under the
 * text's first column: a labelled field of a one-record-per-block listing, "  before: …"). No line is
 * wider than `width`, whatever the prefix; very narrow widths keep at least 12 columns for the text.
 */
export function labelled(prefix: string, text: string, width: number, indent = prefix.length): string {
  const lead = /^ */.exec(prefix)![0];
  // The prefix's own leading spaces are kept out of the wrapping (which trims them).
  const body = wrap(`${prefix.slice(lead.length)}${text}`, Math.max(12, width - Math.max(indent, lead.length)));
  return `${lead}${hangingIndent(body, indent)}`;
}
