/*
 * Naming rules for generated C (docs/codegen.md "Naming"): one mechanical rule each way, so a reader can
 * go from a C name to the TypeScript one and back.
 *   core function `csumReplace32`           → `ciliate_csum_replace32`
 *   constant `DROP_POLICY` (constants.ts …) → `CILIATE_DROP_POLICY` (bpf/gen/constants.h)
 *   layout offset `POLICY_KEY_SEC_LABEL`    → field access `((struct policy_key *)(p))->sec_label`
 *   local variable `srcIdentity`            → `src_identity`
 */
import { lowerSnake } from "./layout.ts";

const C_KEYWORDS = new Set([
  "auto", "break", "case", "char", "const", "continue", "default", "do", "double", "else", "enum", "extern",
  "float", "for", "goto", "if", "inline", "int", "long", "register", "restrict", "return", "short", "signed",
  "sizeof", "static", "struct", "switch", "typedef", "union", "unsigned", "void", "volatile", "while", "bool",
  "true", "false", "ctx", "asm", "typeof",
]);

/** C name of a translated core function. */
export function cFunctionName(tsName: string): string {
  return `ciliate_${lowerSnake(tsName)}`;
}

/** C name of a constant defined in core (constants.ts, drop-reasons.ts, or any other core module). */
export function cConstName(tsName: string): string {
  return `CILIATE_${tsName}`;
}

/** C name of a local variable or parameter; C keywords get a trailing underscore. */
export function cLocalName(tsName: string): string {
  const n = lowerSnake(tsName);
  return C_KEYWORDS.has(n) || n.startsWith("__") ? `${n}_` : n;
}
