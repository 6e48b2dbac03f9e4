/*
 * Errors raised by the generator. Every refusal names the source position (`file:line:col`) and what to
 * do instead, and carries a stable code so that tests and tools can tell refusals apart.
 */
import type ts from "typescript";

export class CodegenError extends Error {
  readonly code = "CODEGEN_UNSUPPORTED";
  constructor(
    readonly location: string,
    readonly detail: string,
    readonly hint?: string,
  ) {
    super(`${location}: ${detail}${hint ? ` (${hint})` : ""}`);
    this.name = "CodegenError";
  }
}

/** `file:line:col` of a node, 1-based, as editors and compilers print it. */
export function locationOf(sf: ts.SourceFile, node: ts.Node): string {
  const { line, character } = sf.getLineAndCharacterOfPosition(node.getStart(sf));
  return `${sf.fileName}:${line + 1}:${character + 1}`;
}
