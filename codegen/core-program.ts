/*
 * The TypeScript view of core/ that the function translator works on: a ts.Program over the entry files
 * with AssemblyScript's portable declarations and core/as-builtins.d.ts (the same setup as
 * core/tsconfig.json), plus the small queries the translator needs (resolve an identifier to its
 * declaration, read a function's @seam tag, print a `file:line:col`).
 */
import ts from "typescript";
import { relative, resolve } from "node:path";
import { CodegenError } from "./errors.ts";

export interface CoreProgram {
  root: string;
  program: ts.Program;
  checker: ts.TypeChecker;
}

export function createCoreProgram(root: string, entryFiles: string[]): CoreProgram {
  const rootNames = [
    resolve(root, "node_modules/assemblyscript/std/portable/index.d.ts"),
    resolve(root, "core/as-builtins.d.ts"),
    ...entryFiles.map((f) => resolve(root, f)),
  ];
  const program = ts.createProgram(rootNames, {
    target: ts.ScriptTarget.ES2022,
    module: ts.ModuleKind.ESNext,
    moduleResolution: ts.ModuleResolutionKind.Bundler,
    noEmit: true,
    strict: true,
    skipLibCheck: true,
    experimentalDecorators: true,
    types: [],
    lib: ["lib.es2024.d.ts"],
    allowImportingTsExtensions: true,
  });
  return { root, program, checker: program.getTypeChecker() };
}

/** Path of a source file relative to the repository root, with forward slashes. */
export function relPath(cp: CoreProgram, sf: ts.SourceFile): string {
  return relative(cp.root, sf.fileName).split("\\").join("/");
}

/** `file:line:col` (1-based) of a node, with the file relative to the repository root. */
export function where(cp: CoreProgram, node: ts.Node): string {
  const sf = node.getSourceFile();
  const { line, character } = sf.getLineAndCharacterOfPosition(node.getStart(sf));
  return `${relPath(cp, sf)}:${line + 1}:${character + 1}`;
}

export function lineOf(node: ts.Node): number {
  const sf = node.getSourceFile();
  return sf.getLineAndCharacterOfPosition(node.getStart(sf)).line + 1;
}

/** The refusal every unsupported construct gets (exact format checked by tests/codegen). */
export function unsupported(cp: CoreProgram, node: ts.Node, construct: string, hint: string): CodegenError {
  return new CodegenError(where(cp, node), `${construct} is not supported in the datapath subset`, hint);
}

/** The declaration an identifier refers to, through imports. */
export function declarationOf(cp: CoreProgram, id: ts.Node): ts.Declaration | undefined {
  let sym = cp.checker.getSymbolAtLocation(id);
  if (!sym) return undefined;
  if (sym.flags & ts.SymbolFlags.Alias) sym = cp.checker.getAliasedSymbol(sym);
  return sym.valueDeclaration ?? sym.declarations?.[0];
}

export type SeamInfo = { kind: "seam"; cName: string } | { kind: "alloca" } | undefined;

/** The `@seam <c_name>` / `@seam-alloca` tag of a function, read from its doc comment. */
export function seamOf(fn: ts.FunctionDeclaration): SeamInfo {
  const docs = ts.getJSDocCommentsAndTags(fn).map((d) => d.getText()).join("\n");
  if (/@seam-alloca\b/.test(docs)) return { kind: "alloca" };
  const m = /@seam\s+([A-Za-z_][A-Za-z0-9_]*)/.exec(docs);
  return m ? { kind: "seam", cName: m[1] } : undefined;
}

/** True for a `const`/`let` declared at the top level of a module. */
export function isModuleVariable(d: ts.Declaration): d is ts.VariableDeclaration {
  return (
    ts.isVariableDeclaration(d) &&
    ts.isVariableDeclarationList(d.parent) &&
    ts.isVariableStatement(d.parent.parent) &&
    ts.isSourceFile(d.parent.parent.parent)
  );
}

export function isConstDeclaration(d: ts.VariableDeclaration): boolean {
  return (ts.getCombinedNodeFlags(d) & ts.NodeFlags.Const) !== 0;
}
