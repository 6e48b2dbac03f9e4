/*
 * Translates one core function (AssemblyScript-compatible TypeScript) into a C function for the eBPF
 * build. Only the datapath subset of docs/architecture.md is accepted; anything else is refused with
 * `file:line:col: <construct> is not supported in the datapath subset (<hint>)`.
 *
 * Integer semantics follow AssemblyScript (docs/codegen.md "Types"):
 *   - u8/u16/u32/i32/bool map to __u8/__u16/__u32/__s32/bool; `usize` is always a pointer (__u8 *) and
 *     `Pkt` is the program context, ciliate_ctx_t * (the skb, or struct xdp_md in an XDP build);
 *   - values are truncated to the declared width where AssemblyScript truncates: at assignments, returns
 *     and call arguments (an explicit cast whenever the C expression could be wider or of another type);
 *   - conversion calls u32()/u16()/u8()/i32()/bool() become casts, `>>>` becomes `>>` on an unsigned
 *     operand, `mul32(a, b)` becomes a wrapping unsigned multiply.
 * Calls to functions tagged `@seam` become calls to the C seam (bpf/include/); map calls are bound to
 * their BPF map through the literal MapId argument; `stackAlloc(X_SIZE)` becomes a zeroed slot of per-CPU
 * scratch memory (the BPF stack is too small for the pipeline's structs).
 */
import ts from "typescript";
import type { FieldDecl, LayoutModel, StructDecl } from "./layout.ts";
import { bpfMapName, cStructName, lowerSnake, upperSnake } from "./layout.ts";
import { cConstName, cFunctionName, cLocalName } from "./c-names.ts";
import {
  type CoreProgram,
  declarationOf,
  isConstDeclaration,
  isModuleVariable,
  relPath,
  seamOf,
  unsupported,
  where,
} from "./core-program.ts";
import { CodegenError } from "./errors.ts";

/** The integer kinds of the subset, plus "ptr" (usize), "pkt" (Pkt), "lit" (an untyped literal). */
export type Kind = "u8" | "u16" | "u32" | "i32" | "bool" | "ptr" | "pkt" | "void" | "lit";

const C_TYPE: Record<Exclude<Kind, "lit">, string> = {
  u8: "__u8",
  u16: "__u16",
  u32: "__u32",
  i32: "__s32",
  bool: "bool",
  ptr: "__u8 *",
  pkt: "ciliate_ctx_t *",
  void: "void",
};

export function cType(k: Kind): string {
  return k === "lit" ? "__s32" : C_TYPE[k];
}

interface CExpr {
  c: string;
  k: Kind;
  /** The C value is already within the range of `k` (no truncation needed to store it as `k`). */
  exact: boolean;
  /** A bare operand (identifier, literal, call, member access): needs no parentheses. */
  atom: boolean;
  /** Numeric value of a literal or known constant, when known. */
  value?: number;
  /** The top-level binary operator, so that `a || b || c` needs no inner parentheses. */
  op?: string;
  /** A cast, dereference or `!`/`~`: binds tighter than every binary operator. */
  unary?: boolean;
}

/** What the generator knows about core/gen/layout.ts names. */
export interface LayoutIndex {
  offsets: Map<string, { struct: StructDecl; field: FieldDecl }>;
  sizes: Map<string, StructDecl>;
}

export function indexLayout(model: LayoutModel): LayoutIndex {
  const offsets = new Map<string, { struct: StructDecl; field: FieldDecl }>();
  const sizes = new Map<string, StructDecl>();
  for (const s of model.structs) {
    const p = upperSnake(s.name);
    sizes.set(`${p}_SIZE`, s);
    for (const f of s.fields) offsets.set(`${p}_${upperSnake(f.name)}`, { struct: s, field: f });
  }
  return { offsets, sizes };
}

/** A function that the translated code calls, recorded for the call graph. */
export interface CallEdge {
  callee: ts.FunctionDeclaration;
  site: ts.CallExpression;
}

/** State shared by every function of one generated header. */
export interface GenContext {
  cp: CoreProgram;
  model: LayoutModel;
  layout: LayoutIndex;
  /** C name of each translated function (filled by the caller before translation). */
  functionName(fn: ts.FunctionDeclaration): string;
  /** `#define`s the header needs (name → [value, source comment]), collected while translating. */
  defines: Map<string, { value: string; comment: string }>;
  /** Bytes of per-CPU scratch memory handed out so far (one fixed slot per stackAlloc site). */
  scratch: { next: number };
}

const SHARED_CONSTANT_FILES = new Set(["core/constants.ts", "core/drop-reasons.ts"]);
const LAYOUT_FILE = "core/gen/layout.ts";
const CONVERSIONS: Record<string, Kind> = { u8: "u8", u16: "u16", u32: "u32", i32: "i32", bool: "bool" };
const UNSUPPORTED_TYPES = new Set(["u64", "i64", "f32", "f64", "number", "string", "isize", "i8", "i16", "boolean", "any", "bigint"]);

function paren(e: CExpr): string {
  return e.atom ? e.c : `(${e.c})`;
}

/** An operand of a binary operator or of a cast: unary expressions need no parentheses there. */
function operand(e: CExpr): string {
  return e.atom || e.unary ? e.c : `(${e.c})`;
}

const ASSOCIATIVE = new Set(["&&", "||", "|", "&", "^", "+"]);

/** The left operand of `op`: left-associative chains of one operator keep C's natural reading. */
function leftOperand(e: CExpr, op: string): string {
  return e.op === op && ASSOCIATIVE.has(op) ? e.c : operand(e);
}

function lit(c: string, value?: number): CExpr {
  return { c, k: "lit", exact: true, atom: true, value };
}

/** Rank for the usual arithmetic conversions of the subset (u32 wins, as C's unsigned int does). */
function joinKinds(a: Kind, b: Kind): Kind {
  if (a === "lit") return b;
  if (b === "lit") return a;
  const order: Kind[] = ["u32", "i32", "u16", "u8", "bool"];
  for (const k of order) if (a === k || b === k) return k === "bool" ? "i32" : k;
  return a;
}

export class FunctionTranslator {
  private readonly locals = new Map<ts.Node, { name: string; kind: Kind }>();
  private readonly usedNames = new Set<string>();
  private tmp = 0;
  readonly calls: CallEdge[] = [];
  private returnKind: Kind = "void";

  constructor(
    private readonly g: GenContext,
    private readonly fn: ts.FunctionDeclaration,
  ) {}

  private refuse(node: ts.Node, construct: string, hint: string): never {
    throw unsupported(this.g.cp, node, construct, hint);
  }

  /* ------------------------------------------------------------------------------------------------ */
  /* Types */

  kindOfType(t: ts.TypeNode | undefined, at: ts.Node): Kind {
    if (!t) return this.refuse(at, "a declaration without a type", "annotate it: `: u32`, `: usize`, …");
    const text = t.getText();
    switch (text) {
      case "u8": case "u16": case "u32": case "i32": case "bool": case "void":
        return text;
      case "usize":
        return "ptr";
      case "Pkt":
        return "pkt";
    }
    if (ts.isTypeReferenceNode(t) && ts.isIdentifier(t.typeName)) {
      const d = declarationOf(this.g.cp, t.typeName);
      if (d && ts.isEnumDeclaration(d)) return "u32";
      if (d && ts.isTypeAliasDeclaration(d) && d.name.text === "Pkt") return "pkt";
    }
    const what = UNSUPPORTED_TYPES.has(text) ? `the type \`${text}\`` : `the type \`${text}\``;
    const hint = text === "u64" || text === "i64"
      ? "no 64-bit integers in core: use add64/read64Lo/read64Hi for counters"
      : text === "f32" || text === "f64" || text === "number"
        ? "use u32 or i32"
        : "use u8, u16, u32, i32, bool, usize or Pkt";
    return this.refuse(t, what, hint);
  }

  /* ------------------------------------------------------------------------------------------------ */
  /* Functions */

  translate(): string {
    const fn = this.fn;
    if (!fn.body) return this.refuse(fn, "a function without a body", "add a body or tag it @seam");
    if (fn.typeParameters?.length) this.refuse(fn, "a generic function", "write one function per type");
    this.returnKind = this.kindOfType(fn.type, fn.name ?? fn);
    const params: string[] = [];
    for (const p of fn.parameters) {
      if (!ts.isIdentifier(p.name)) this.refuse(p, "a destructuring parameter", "use plain parameters");
      if (p.initializer) this.refuse(p, "a default parameter value", "pass every argument explicitly");
      if (p.dotDotDotToken) this.refuse(p, "a rest parameter", "use plain parameters");
      const k = this.kindOfType(p.type, p);
      const name = this.declare(p, (p.name as ts.Identifier).text, k);
      params.push(`${cType(k)}${k === "ptr" || k === "pkt" ? "" : " "}${name}`);
    }
    const body = this.block(fn.body, 0);
    const head = `static ${this.inlining()} ${cType(this.returnKind)}${this.returnKind === "ptr" || this.returnKind === "pkt" ? "" : " "}${this.g.functionName(fn)}(${params.length ? params.join(", ") : "void"})`;
    return `${head}\n${body}\n`;
  }

  /**
   * `__always_inline` by default; a doc tag `@bpf-noinline` makes the function a BPF-to-BPF call (its
   * stack frame then lives only while it runs; at most 5 parameters), `@bpf-inline` states the default.
   */
  inlining(): string {
    const docs = ts.getJSDocCommentsAndTags(this.fn).map((d) => d.getText()).join("\n");
    if (/@bpf-inline\b/.test(docs)) return "__always_inline";
    if (/@bpf-noinline\b/.test(docs)) {
      if (this.fn.parameters.length > 5) this.refuse(this.fn, "@bpf-noinline on a function with more than 5 parameters", "BPF calls pass at most 5 arguments");
      return "__noinline";
    }
    return "__always_inline";
  }

  private declare(node: ts.Node, tsName: string, k: Kind): string {
    let name = cLocalName(tsName);
    if (this.usedNames.has(name)) {
      let i = 2;
      while (this.usedNames.has(`${name}${i}`)) i++;
      name = `${name}${i}`;
    }
    this.usedNames.add(name);
    this.locals.set(node, { name, kind: k });
    return name;
  }

  /* ------------------------------------------------------------------------------------------------ */
  /* Statements */

  private ind(n: number): string {
    return "\t".repeat(n);
  }

  private block(b: ts.Block, depth: number): string {
    const lines = [`${this.ind(depth)}{`];
    for (const s of b.statements) lines.push(...this.statement(s, depth + 1));
    lines.push(`${this.ind(depth)}}`);
    return lines.join("\n");
  }

  /** A statement as a braced body (used for if/for/else branches and case clauses). */
  private body(s: ts.Statement, depth: number): string[] {
    if (ts.isBlock(s)) return s.statements.flatMap((x) => this.statement(x, depth));
    return this.statement(s, depth);
  }

  private statement(s: ts.Statement, depth: number): string[] {
    const I = this.ind(depth);
    if (ts.isBlock(s)) return [this.block(s, depth)];
    if (ts.isEmptyStatement(s)) return [];
    if (ts.isVariableStatement(s)) return this.variables(s.declarationList, depth);
    if (ts.isExpressionStatement(s)) return [`${I}${this.expressionStatement(s.expression)};`];
    if (ts.isReturnStatement(s)) {
      if (!s.expression) return [`${I}return;`];
      return [`${I}return ${this.coerce(this.expr(s.expression), this.returnKind, s.expression).c};`];
    }
    if (ts.isIfStatement(s)) return this.ifStatement(s, depth, I);
    if (ts.isForStatement(s)) return this.forStatement(s, depth);
    if (ts.isSwitchStatement(s)) return this.switchStatement(s, depth);
    if (ts.isBreakStatement(s) || ts.isContinueStatement(s)) {
      if (s.label) this.refuse(s, "a labelled break/continue", "restructure the loop");
      return [`${I}${ts.isBreakStatement(s) ? "break" : "continue"};`];
    }
    if (ts.isWhileStatement(s)) return this.refuse(s, "a `while` loop", "use a `for` loop with a constant upper bound and `break`");
    if (ts.isDoStatement(s)) return this.refuse(s, "a `do … while` loop", "use a `for` loop with a constant upper bound and `break`");
    if (ts.isForInStatement(s) || ts.isForOfStatement(s)) return this.refuse(s, "a `for … in/of` loop", "use a `for` loop with a constant upper bound");
    if (ts.isTryStatement(s)) return this.refuse(s, "`try`", "return a drop reason instead of throwing");
    if (ts.isThrowStatement(s)) return this.refuse(s, "`throw`", "return a drop reason instead of throwing");
    if (ts.isLabeledStatement(s)) return this.refuse(s, "a labelled statement", "restructure the loop");
    if (ts.isFunctionDeclaration(s)) return this.refuse(s, "a nested function", "declare functions at the top level of the module");
    if (ts.isClassDeclaration(s)) return this.refuse(s, "a class", "use a layout in core/layout.ts and stackAlloc");
    return this.refuse(s, `the statement \`${ts.SyntaxKind[s.kind]}\``, "see docs/architecture.md \"The core subset\"");
  }

  private ifStatement(s: ts.IfStatement, depth: number, I: string): string[] {
    const out = [`${I}if (${this.condition(s.expression)}) {`, ...this.body(s.thenStatement, depth + 1)];
    let e = s.elseStatement;
    while (e) {
      if (ts.isIfStatement(e)) {
        out.push(`${I}} else if (${this.condition(e.expression)}) {`, ...this.body(e.thenStatement, depth + 1));
        e = e.elseStatement;
      } else {
        out.push(`${I}} else {`, ...this.body(e, depth + 1));
        e = undefined;
      }
    }
    out.push(`${I}}`);
    return out;
  }

  private condition(e: ts.Expression): string {
    const x = this.expr(e);
    if (x.k === "void") this.refuse(e, "a void value", "a condition needs a value");
    return x.c;
  }

  private variables(list: ts.VariableDeclarationList, depth: number): string[] {
    const I = this.ind(depth);
    const out: string[] = [];
    for (const d of list.declarations) {
      if (!ts.isIdentifier(d.name)) this.refuse(d, "destructuring", "declare one variable per value");
      const init = d.initializer ? skipParens(d.initializer) : undefined;
      // stackAlloc(X_SIZE): a zeroed slot of per-CPU scratch memory, one per call site (functions.ts).
      if (init && ts.isCallExpression(init)) {
        const callee = this.calleeOf(init);
        if (callee && seamOf(callee)?.kind === "alloca") {
          const k = d.type ? this.kindOfType(d.type, d) : "ptr";
          if (k !== "ptr") this.refuse(d, "stackAlloc into a non-pointer", "declare the variable as usize");
          this.tmp++;
          const [size, bytes] = this.allocaSize(init);
          const off = (this.g.scratch.next + 7) & ~7;
          this.g.scratch.next = off + bytes;
          const name = this.declare(d, d.name.text, "ptr");
          out.push(`${I}__u8 *${name} = ciliate_scratch(${off}, ${size});`);
          continue;
        }
      }
      let k: Kind;
      let value: CExpr | undefined;
      if (init) value = this.expr(init);
      if (d.type) k = this.kindOfType(d.type, d);
      else if (value) k = value.k === "lit" ? "i32" : value.k;
      else return this.refuse(d, "a variable without a type or initial value", "annotate it: `let x: u32 = 0`");
      if (k === "void") this.refuse(d, "a void variable", "use a value");
      const name = this.declare(d, d.name.text, k);
      // AssemblyScript zero-initializes; C must too (and the verifier rejects uninitialized reads).
      const rhs = value ? this.coerce(value, k, init!).c : k === "bool" ? "false" : "0";
      out.push(`${I}${cType(k)}${k === "ptr" || k === "pkt" ? "" : " "}${name} = ${rhs};`);
    }
    return out;
  }

  /** The C size expression and byte count of a stackAlloc: `sizeof(struct x)` for a layout SIZE constant,
   * else a constant number of bytes. */
  private allocaSize(call: ts.CallExpression): [string, number] {
    const arg = call.arguments[0];
    if (arg && ts.isIdentifier(arg)) {
      const d = declarationOf(this.g.cp, arg);
      if (d && relPath(this.g.cp, d.getSourceFile()) === LAYOUT_FILE) {
        const s = this.g.layout.sizes.get(arg.text);
        if (s) return [`sizeof(struct ${cStructName(s.name)})`, s.size];
      }
    }
    const n = arg ? this.constantValue(arg) : undefined;
    if (n === undefined || n <= 0) {
      return this.refuse(call, "stackAlloc of a size that is not a constant", "allocate a layout: stackAlloc(POLICY_KEY_SIZE)");
    }
    return [`${n}`, n];
  }

  private forStatement(s: ts.ForStatement, depth: number): string[] {
    const I = this.ind(depth);
    const hint = "loops need a constant upper bound: `for (let i: u32 = 0; i < 16; i++)`, with `break` to stop early";
    const init = s.initializer;
    if (!init || !ts.isVariableDeclarationList(init) || init.declarations.length !== 1) {
      return this.refuse(s, "a `for` loop without one loop variable", hint);
    }
    const v = init.declarations[0];
    const cond = s.condition ? skipParens(s.condition) : undefined;
    let bounded = false;
    if (cond && ts.isBinaryExpression(cond) && ts.isIdentifier(cond.left) && ts.isIdentifier(v.name) && cond.left.text === v.name.text) {
      const op = cond.operatorToken.kind;
      if ((op === ts.SyntaxKind.LessThanToken || op === ts.SyntaxKind.LessThanEqualsToken) && this.constantValue(cond.right) !== undefined) {
        bounded = true;
      }
    }
    if (!bounded) return this.refuse(s, "a `for` loop without a constant upper bound", hint);
    if (!s.incrementor) return this.refuse(s, "a `for` loop without an increment", hint);
    const decl = this.variables(init, 0)[0];
    const head = `${I}for (${decl.replace(/;$/, "")}; ${this.condition(s.condition!)}; ${this.expressionStatement(s.incrementor)}) {`;
    return [head, ...this.body(s.statement, depth + 1), `${I}}`];
  }

  private switchStatement(s: ts.SwitchStatement, depth: number): string[] {
    const I = this.ind(depth);
    const out = [`${I}switch (${this.condition(s.expression)}) {`];
    for (const c of s.caseBlock.clauses) {
      if (ts.isCaseClause(c)) {
        const v = this.expr(c.expression);
        if (v.value === undefined && !/^[A-Z_][A-Z0-9_]*$/.test(v.c)) {
          this.refuse(c.expression, "a `case` label that is not a constant", "use a literal, a constant or an enum member");
        }
        out.push(`${I}case ${v.c}:`);
      } else out.push(`${I}default:`);
      // C does not allow a declaration right after a case label: such clauses get their own block.
      const needsBlock = c.statements.some((x) => ts.isVariableStatement(x));
      const inner = c.statements.flatMap((x) => this.statement(x, depth + (needsBlock ? 2 : 1)));
      if (needsBlock) out.push(`${I}\t{`, ...inner, `${I}\t}`);
      else out.push(...inner);
    }
    out.push(`${I}}`);
    return out;
  }

  /** An expression used as a statement: assignments, ++/--, calls (memory writes become assignments). */
  private expressionStatement(e: ts.Expression): string {
    const x = this.expr(e, true);
    return x.c;
  }

  /* ------------------------------------------------------------------------------------------------ */
  /* Expressions */

  /** Converts `e` to kind `to` with AssemblyScript's truncation at assignments, returns and calls. */
  coerce(e: CExpr, to: Kind, at: ts.Node): CExpr {
    if (to === "void") return e;
    if (e.k === "void") this.refuse(at, "a void value", "a value is needed here");
    if (to === "ptr" || to === "pkt") {
      if (e.k === "ptr" || e.k === "pkt" || (e.k === "lit" && e.value === 0)) return e;
      return this.refuse(at, "an integer used as a pointer", "a usize is a pointer; integers cannot become pointers in eBPF");
    }
    if (e.k === "ptr" || e.k === "pkt") {
      return this.refuse(at, "a pointer used as an integer", "usize values are pointers: compare them with 0, add offsets, pass them on");
    }
    if (to === "bool") return e.k === "bool" ? e : { c: `(bool)${operand(e)}`, k: "bool", exact: true, atom: false, unary: true };
    if (e.k === "lit") {
      const max = to === "u8" ? 0xff : to === "u16" ? 0xffff : to === "i32" ? 0x7fffffff : 0xffffffff;
      const min = to === "i32" ? -0x80000000 : 0;
      if (e.value !== undefined && e.value >= min && e.value <= max) return { ...e, k: to };
    } else if (e.k === to && e.exact) return e;
    else if (e.k === to && (to === "u32" || to === "i32")) return e; // C arithmetic on 32-bit operands already wraps
    return { c: `(${cType(to)})${operand(e)}`, k: to, exact: true, atom: false, unary: true };
  }

  expr(e: ts.Expression, asStatement = false): CExpr {
    if (ts.isParenthesizedExpression(e)) {
      const x = this.expr(e.expression, asStatement);
      return x;
    }
    if (ts.isNumericLiteral(e)) {
      const text = e.getText().replace(/_/g, "");
      const v = Number(text);
      if (!Number.isInteger(v)) this.refuse(e, "a floating-point literal", "use integers");
      return lit(v > 0x7fffffff ? `${text}U` : text, v);
    }
    if (e.kind === ts.SyntaxKind.TrueKeyword) return { c: "true", k: "bool", exact: true, atom: true, value: 1 };
    if (e.kind === ts.SyntaxKind.FalseKeyword) return { c: "false", k: "bool", exact: true, atom: true, value: 0 };
    if (ts.isIdentifier(e)) return this.identifier(e);
    if (ts.isPropertyAccessExpression(e)) return this.propertyAccess(e);
    if (ts.isCallExpression(e)) return this.call(e, asStatement);
    if (ts.isBinaryExpression(e)) return this.binary(e, asStatement);
    if (ts.isPrefixUnaryExpression(e)) return this.prefix(e);
    if (ts.isPostfixUnaryExpression(e)) {
      const x = this.lvalue(e.operand);
      const op = e.operator === ts.SyntaxKind.PlusPlusToken ? "++" : "--";
      return { c: `${x.c}${op}`, k: x.k, exact: false, atom: false };
    }
    if (ts.isConditionalExpression(e)) {
      const cond = this.expr(e.condition);
      if (cond.k === "void") this.refuse(e.condition, "a void value", "a condition needs a value");
      const c = cond.op === "?:" ? `(${cond.c})` : cond.c;
      const a = this.expr(e.whenTrue);
      const b = this.expr(e.whenFalse);
      const k = a.k === "ptr" || b.k === "ptr" ? "ptr" : joinKinds(a.k, b.k);
      const ca = k === "ptr" ? a : a.k === "lit" && b.k === "lit" ? a : this.coerce(a, k, e.whenTrue);
      const cb = k === "ptr" ? b : a.k === "lit" && b.k === "lit" ? b : this.coerce(b, k, e.whenFalse);
      return { c: `${c} ? ${operand(ca)} : ${operand(cb)}`, k, exact: ca.exact && cb.exact, atom: false, op: "?:" };
    }
    if (ts.isTypeAssertionExpression(e) || ts.isAsExpression(e)) {
      const k = this.kindOfType(e.type, e);
      const x = this.expr(e.expression);
      // `<usize>i` on an integer is AssemblyScript's spelling of a byte offset for pointer arithmetic
      // (`p + (<usize>i << 4)`): it stays an unsigned integer; using it as a pointer is still refused.
      if (k === "ptr" && x.k !== "ptr" && x.k !== "pkt" && x.k !== "void") {
        return x.k === "u32" || x.k === "lit" ? { ...x, k: x.k === "lit" ? "lit" : "u32" } : { c: `(__u32)${operand(x)}`, k: "u32", exact: true, atom: false, unary: true };
      }
      if (k === "ptr" || k === "pkt") return this.coerce(x, k, e);
      if (x.k === "ptr" || x.k === "pkt") this.refuse(e, "a pointer used as an integer", "usize values are pointers");
      if (x.k === k) return x;
      if (x.k === "lit") return this.coerce(x, k, e);
      return { c: `(${cType(k)})${operand(x)}`, k, exact: true, atom: false, unary: true };
    }
    if (ts.isStringLiteral(e) || ts.isNoSubstitutionTemplateLiteral(e) || ts.isTemplateExpression(e)) {
      return this.refuse(e, "a string", "the datapath has no strings: use numeric constants");
    }
    if (ts.isArrayLiteralExpression(e)) return this.refuse(e, "an array", "use a layout in core/layout.ts and stackAlloc, or a map");
    if (ts.isElementAccessExpression(e)) return this.refuse(e, "indexing (`a[i]`)", "read memory with read8/read16/read32 at an offset");
    if (ts.isObjectLiteralExpression(e)) return this.refuse(e, "an object literal", "use a layout in core/layout.ts and stackAlloc");
    if (ts.isArrowFunction(e)) return this.refuse(e, "an arrow function (closure)", "declare a top-level function");
    if (ts.isFunctionExpression(e)) return this.refuse(e, "a function expression (closure)", "declare a top-level function");
    if (ts.isNewExpression(e)) return this.refuse(e, "`new`", "no allocation on the packet path: use stackAlloc(X_SIZE) for a scratch struct");
    if (ts.isClassExpression(e)) return this.refuse(e, "a class", "use a layout in core/layout.ts");
    if (e.kind === ts.SyntaxKind.ThisKeyword) return this.refuse(e, "`this`", "use top-level functions");
    if (e.kind === ts.SyntaxKind.NullKeyword) return this.refuse(e, "`null`", "use 0 for a missing pointer");
    if (ts.isNonNullExpression(e)) return this.refuse(e, "a non-null assertion", "compare with 0 instead");
    if (ts.isTypeOfExpression(e)) return this.refuse(e, "`typeof`", "types are static in the datapath");
    return this.refuse(e, `the expression \`${ts.SyntaxKind[e.kind]}\``, "see docs/architecture.md \"The core subset\"");
  }

  private lvalue(e: ts.Expression): CExpr {
    const x = this.expr(e);
    const inner = skipParens(e);
    if (!ts.isIdentifier(inner) || !this.locals.has(declarationOf(this.g.cp, inner) as ts.Node)) {
      this.refuse(e, "assignment to something other than a local variable", "write memory with write8/write16/write32; module state lives in maps");
    }
    return x;
  }

  private identifier(e: ts.Identifier): CExpr {
    if (e.text === "undefined") this.refuse(e, "`undefined`", "use 0");
    const d = declarationOf(this.g.cp, e);
    if (!d) return this.refuse(e, `the name \`${e.text}\``, "it does not resolve to a core declaration");
    const local = this.locals.get(d);
    if (local) return { c: local.name, k: local.kind, exact: true, atom: true };
    if (ts.isFunctionDeclaration(d)) return this.refuse(e, "a function used as a value", "call it directly; function pointers are not available in eBPF");
    if (isModuleVariable(d)) return this.moduleConstant(e, d);
    if (ts.isEnumDeclaration(d)) return this.refuse(e, "an enum used as a value", "use one of its members");
    return this.refuse(e, `the name \`${e.text}\``, "only locals, parameters, module constants and enum members are allowed");
  }

  /** A module-level constant: shared ones are CILIATE_* (bpf/gen/constants.h); layout ones become
   * sizeof/offsetof; others get a #define in the generated header. */
  private moduleConstant(e: ts.Identifier, d: ts.VariableDeclaration): CExpr {
    const file = relPath(this.g.cp, d.getSourceFile());
    if (!isConstDeclaration(d)) {
      return this.refuse(e, "module-level `let` on the packet path", "keep per-packet state in locals and persistent state in maps");
    }
    const name = (d.name as ts.Identifier).text;
    const k: Kind = d.type ? this.kindOfType(d.type, d) : "i32";
    const value = d.initializer ? this.constantValue(d.initializer) : undefined;
    if (file === LAYOUT_FILE) {
      const s = this.g.layout.sizes.get(name);
      if (s) return { c: `sizeof(struct ${cStructName(s.name)})`, k: "u32", exact: true, atom: true, value };
      const o = this.g.layout.offsets.get(name);
      if (o) {
        this.g.defines.set(cConstName(name), {
          value: `__builtin_offsetof(struct ${cStructName(o.struct.name)}, ${lowerSnake(o.field.name)})`,
          comment: `${o.struct.name}.${o.field.name} (core/gen/layout.ts)`,
        });
      } else if (value !== undefined) {
        this.g.defines.set(cConstName(name), { value: `${value}${k === "u32" ? "U" : ""}`, comment: LAYOUT_FILE });
      }
      return { c: cConstName(name), k, exact: true, atom: true, value };
    }
    if (!SHARED_CONSTANT_FILES.has(file)) {
      if (!d.initializer) this.refuse(d, "a constant without a value", "give it a literal value");
      const v = this.expr(d.initializer!);
      if (v.value === undefined && !/^[A-Z_][A-Z0-9_]*$/.test(v.c)) {
        this.refuse(d.initializer!, "a module constant whose value is not a compile-time constant", "use a literal or another constant");
      }
      const text = v.value !== undefined && v.k === "lit" && k === "u32" && !v.c.endsWith("U") ? `${v.c}U` : v.c;
      const existing = this.g.defines.get(cConstName(name));
      const comment = `${file}:${lineOf(d)}`;
      if (existing && existing.comment !== comment) {
        this.refuse(e, `a second constant named ${name}`, `the first is at ${existing.comment}; constants share one C namespace`);
      }
      this.g.defines.set(cConstName(name), { value: text, comment });
    }
    return { c: cConstName(name), k, exact: true, atom: true, value };
  }

  /** Compile-time value of a literal or constant expression, if it has one. */
  constantValue(e: ts.Expression): number | undefined {
    e = skipParens(e);
    if (ts.isNumericLiteral(e)) return Number(e.text.replace(/_/g, ""));
    if (ts.isPrefixUnaryExpression(e) && e.operator === ts.SyntaxKind.MinusToken) {
      const v = this.constantValue(e.operand);
      return v === undefined ? undefined : -v;
    }
    if (ts.isIdentifier(e)) {
      const d = declarationOf(this.g.cp, e);
      if (d && isModuleVariable(d) && isConstDeclaration(d) && d.initializer) return this.constantValue(d.initializer);
      return undefined;
    }
    if (ts.isPropertyAccessExpression(e) && ts.isIdentifier(e.name)) {
      const d = declarationOf(this.g.cp, e.name);
      if (d && ts.isEnumMember(d) && d.initializer) return this.constantValue(d.initializer);
    }
    if (ts.isTypeAssertionExpression(e) || ts.isAsExpression(e)) return this.constantValue(e.expression);
    if (ts.isBinaryExpression(e)) {
      const a = this.constantValue(e.left);
      const b = this.constantValue(e.right);
      if (a === undefined || b === undefined) return undefined;
      return foldConst(e.operatorToken.kind, a, b);
    }
    return undefined;
  }

  private propertyAccess(e: ts.PropertyAccessExpression): CExpr {
    const d = declarationOf(this.g.cp, e.name);
    if (d && ts.isEnumMember(d)) {
      const en = d.parent;
      const file = relPath(this.g.cp, en.getSourceFile());
      const value = d.initializer ? this.constantValue(d.initializer) : undefined;
      if (value === undefined) this.refuse(e, "an enum member without a literal value", "give every member an explicit number");
      const member = d.name.getText();
      if (file === LAYOUT_FILE && en.name.text === "MapId") {
        return { c: `CILIATE_MAP_${upperSnake(member)}`, k: "u32", exact: true, atom: true, value };
      }
      // Every member of the enum gets a define (the thin programs may use the others).
      for (const m of en.members) {
        const mv = m.initializer ? this.constantValue(m.initializer) : undefined;
        if (mv === undefined) this.refuse(m, "an enum member without a literal value", "give every member an explicit number");
        const mn = m.name.getText();
        this.g.defines.set(`CILIATE_${upperSnake(en.name.text)}_${upperSnake(mn)}`, { value: `${mv}`, comment: `${en.name.text}.${mn} (${file})` });
      }
      return { c: `CILIATE_${upperSnake(en.name.text)}_${upperSnake(member)}`, k: "u32", exact: true, atom: true, value };
    }
    if (ts.isCallExpression(e.parent) && e.parent.expression === e) {
      return this.refuse(e, "a method call", "call a top-level function; there are no objects in the datapath");
    }
    return this.refuse(e, "a property access", "read struct fields with read8/16/32(p + LAYOUT_FIELD)");
  }

  private prefix(e: ts.PrefixUnaryExpression): CExpr {
    switch (e.operator) {
      case ts.SyntaxKind.PlusPlusToken:
      case ts.SyntaxKind.MinusMinusToken: {
        const x = this.lvalue(e.operand);
        return { c: `${e.operator === ts.SyntaxKind.PlusPlusToken ? "++" : "--"}${x.c}`, k: x.k, exact: false, atom: false };
      }
      case ts.SyntaxKind.ExclamationToken: {
        const x = this.expr(e.operand);
        return { c: `!${operand(x)}`, k: "bool", exact: true, atom: false, unary: true };
      }
      case ts.SyntaxKind.TildeToken: {
        const x = this.expr(e.operand);
        if (x.k === "ptr" || x.k === "pkt") this.refuse(e, "`~` on a pointer", "usize values are pointers");
        return { c: `~${operand(x)}`, k: x.k === "lit" ? "i32" : x.k, exact: x.k === "u32" || x.k === "i32", atom: false, unary: true };
      }
      case ts.SyntaxKind.MinusToken: {
        const x = this.expr(e.operand);
        if (x.k === "lit" && x.value !== undefined) return lit(`-${x.c}`, -x.value);
        if (x.k === "ptr" || x.k === "pkt") this.refuse(e, "`-` on a pointer", "usize values are pointers");
        return { c: `-${paren(x)}`, k: x.k, exact: x.k === "u32" || x.k === "i32", atom: false };
      }
      case ts.SyntaxKind.PlusToken:
        return this.expr(e.operand);
    }
    return this.refuse(e, "this unary operator", "see docs/architecture.md");
  }

  private binary(e: ts.BinaryExpression, asStatement: boolean): CExpr {
    const op = e.operatorToken.kind;
    const K = ts.SyntaxKind;
    if (op === K.CommaToken) return this.refuse(e.operatorToken, "the comma operator", "write separate statements");
    if (op === K.QuestionQuestionToken || op === K.QuestionQuestionEqualsToken) return this.refuse(e.operatorToken, "`??`", "compare with 0");
    if (op === K.InstanceOfKeyword || op === K.InKeyword) return this.refuse(e.operatorToken, "`instanceof`/`in`", "there are no objects in the datapath");
    if (op === K.AsteriskAsteriskToken || op === K.AsteriskAsteriskEqualsToken) return this.refuse(e.operatorToken, "`**`", "use shifts or mul32");
    if (op === K.EqualsToken || (op >= K.FirstCompoundAssignment && op <= K.LastCompoundAssignment)) {
      if (!asStatement) this.refuse(e, "an assignment inside an expression", "assign in a statement of its own");
      const target = this.lvalue(e.left);
      const rhs = this.expr(e.right);
      if (op === K.EqualsToken) return { c: `${target.c} = ${this.coerce(rhs, target.k, e.right).c}`, k: "void", exact: true, atom: false };
      if (op === K.GreaterThanGreaterThanGreaterThanEqualsToken) {
        if (target.k !== "u32" && target.k !== "u16" && target.k !== "u8") this.refuse(e, "`>>>=` on a signed value", "shift u32 values");
        return { c: `${target.c} >>= ${paren(rhs)}`, k: "void", exact: true, atom: false };
      }
      if (target.k === "ptr" && op !== K.PlusEqualsToken && op !== K.MinusEqualsToken) this.refuse(e, "this operator on a pointer", "only + and - apply to usize");
      if (op === K.AsteriskEqualsToken && target.k !== "lit") this.refuse(e.operatorToken, "`*=`", "use mul32(a, b), which wraps like AssemblyScript");
      if ((op === K.SlashEqualsToken || op === K.PercentEqualsToken) && target.k === "i32") {
        this.refuse(e.operatorToken, "signed division", "divide u32 values; eBPF has no signed division");
      }
      const opText = ts.tokenToString(op)!;
      return { c: `${target.c} ${opText} ${rhs.k === "ptr" ? this.coerce(rhs, "u32", e.right).c : rhs.c}`, k: "void", exact: true, atom: false };
    }
    const l = this.expr(e.left);
    const r = this.expr(e.right);
    const opText = op === K.EqualsEqualsEqualsToken ? "==" : op === K.ExclamationEqualsEqualsToken ? "!=" : ts.tokenToString(op)!;
    const voidCheck = (x: CExpr, n: ts.Node): void => {
      if (x.k === "void") this.refuse(n, "a void value", "a value is needed here");
    };
    voidCheck(l, e.left);
    voidCheck(r, e.right);
    switch (op) {
      case K.AmpersandAmpersandToken:
      case K.BarBarToken:
        return { c: `${leftOperand(l, opText)} ${opText} ${operand(r)}`, k: "bool", exact: true, atom: false, op: opText };
      case K.EqualsEqualsToken: case K.EqualsEqualsEqualsToken: case K.ExclamationEqualsToken: case K.ExclamationEqualsEqualsToken:
      case K.LessThanToken: case K.LessThanEqualsToken: case K.GreaterThanToken: case K.GreaterThanEqualsToken: {
        const isPtr = (x: CExpr): boolean => x.k === "ptr" || x.k === "pkt";
        if (isPtr(l) !== isPtr(r) && !(l.k === "lit" && l.value === 0) && !(r.k === "lit" && r.value === 0)) {
          this.refuse(e, "a comparison of a pointer with an integer", "compare usize values with 0 or with other pointers");
        }
        const signed = (x: CExpr): boolean => x.k === "i32";
        const unsigned = (x: CExpr): boolean => x.k === "u32";
        if ((signed(l) && unsigned(r)) || (unsigned(l) && signed(r))) {
          this.refuse(e, "a comparison of i32 with u32", "convert one side explicitly: u32(x) or i32(x)");
        }
        return { c: `${operand(l)} ${opText} ${operand(r)}`, k: "bool", exact: true, atom: false, value: undefined };
      }
    }
    // Arithmetic and bitwise operators.
    if (l.k === "ptr" || r.k === "ptr" || l.k === "pkt" || r.k === "pkt") {
      if (op === K.PlusToken && l.k === "ptr" && r.k !== "ptr" && r.k !== "pkt") return { c: `${operand(l)} + ${operand(r)}`, k: "ptr", exact: true, atom: false };
      if (op === K.MinusToken && l.k === "ptr" && r.k !== "ptr" && r.k !== "pkt") return { c: `${operand(l)} - ${operand(r)}`, k: "ptr", exact: true, atom: false };
      return this.refuse(e, "this arithmetic on a pointer", "only `pointer + offset` and `pointer - offset` are allowed on usize");
    }
    const k = joinKinds(l.k, r.k);
    const value = l.value !== undefined && r.value !== undefined && l.k === "lit" && r.k === "lit" ? foldConst(op, l.value, r.value) : undefined;
    if (op === K.AsteriskToken && !(l.k === "lit" && r.k === "lit")) {
      return this.refuse(e.operatorToken, "`*` on integers", "use mul32(a, b), which wraps like AssemblyScript");
    }
    if ((op === K.SlashToken || op === K.PercentToken) && k === "i32") {
      return this.refuse(e.operatorToken, "signed division", "divide u32 values; eBPF has no signed division");
    }
    if (op === K.GreaterThanGreaterThanGreaterThanToken) {
      // Logical shift: AssemblyScript's >>> on an unsigned value is C's >> on an unsigned operand.
      if (l.k === "i32" || l.k === "lit") {
        const shifted = `(__u32)${operand(l)} >> ${operand(r)}`;
        return l.k === "lit" ? lit(`(${shifted})`, value) : { c: `(__s32)(${shifted})`, k: "i32", exact: true, atom: false };
      }
      return { c: `${operand(l)} >> ${operand(r)}`, k: l.k, exact: true, atom: false, value };
    }
    if (op === K.GreaterThanGreaterThanToken) {
      return { c: `${operand(l)} >> ${operand(r)}`, k: l.k === "lit" ? "lit" : l.k, exact: true, atom: false, value };
    }
    if (op === K.LessThanLessThanToken) {
      const lk = l.k === "lit" ? (r.k === "lit" ? "lit" : "i32") : l.k;
      return { c: `${operand(l)} << ${operand(r)}`, k: lk, exact: lk === "u32" || lk === "i32", atom: false, value };
    }
    const exact = (k === "u32" || k === "i32" || k === "lit") || op === K.AmpersandToken || op === K.SlashToken;
    const c = `${leftOperand(l, opText)} ${opText} ${operand(r)}`;
    if (k === "lit") return { c, k, exact: true, atom: false, value, op: opText };
    return { c, k, exact, atom: false, value, op: opText };
  }

  /* ------------------------------------------------------------------------------------------------ */
  /* Calls */

  private calleeOf(call: ts.CallExpression): ts.FunctionDeclaration | undefined {
    if (!ts.isIdentifier(call.expression)) return undefined;
    const d = declarationOf(this.g.cp, call.expression);
    return d && ts.isFunctionDeclaration(d) && !d.getSourceFile().isDeclarationFile ? d : undefined;
  }

  private call(e: ts.CallExpression, asStatement: boolean): CExpr {
    if (e.questionDotToken) this.refuse(e, "optional call `?.()`", "call functions directly");
    if (ts.isPropertyAccessExpression(e.expression)) return this.propertyAccess(e.expression);
    if (!ts.isIdentifier(e.expression)) return this.refuse(e, "a call through an expression", "call a top-level function by name");
    if (e.typeArguments?.length) this.refuse(e, "a generic call", "call an explicit-width helper (read32, write16, …)");
    const name = e.expression.text;
    const d = declarationOf(this.g.cp, e.expression);
    if (d && ts.isFunctionDeclaration(d) && d.getSourceFile().isDeclarationFile) {
      const conv = CONVERSIONS[name];
      if (conv && e.arguments.length === 1) {
        const x = this.expr(e.arguments[0]);
        if (x.k === "ptr" || x.k === "pkt") this.refuse(e, "a pointer converted to an integer", "usize values are pointers");
        if (x.k === "lit") return this.coerce(x, conv, e);
        if (conv === "bool") return x.k === "bool" ? x : { c: `(bool)${operand(x)}`, k: "bool", exact: true, atom: false, unary: true };
        // A 32-bit C expression of the same kind already wraps like AssemblyScript: no cast needed.
        if (x.k === conv && (x.exact || conv === "u32" || conv === "i32")) return { ...x, k: conv, exact: true };
        return { c: `(${cType(conv)})${operand(x)}`, k: conv, exact: true, atom: false, unary: true };
      }
      const hint = UNSUPPORTED_TYPES.has(name) ? "no 64-bit or floating-point values in core" : "use core/env.ts, core/bytes.ts or a core function";
      return this.refuse(e, `the builtin \`${name}\``, hint);
    }
    if (!d) throw new CodegenError(where(this.g.cp, e), `cannot resolve \`${name}\``, "its module is missing or does not export it");
    if (!ts.isFunctionDeclaration(d)) return this.refuse(e, `a call to \`${name}\``, "call a top-level core function");
    const seam = seamOf(d);
    if (seam?.kind === "alloca") {
      return this.refuse(e, "stackAlloc outside a variable declaration", "write `const k = stackAlloc(X_SIZE);`");
    }
    const paramKinds = d.parameters.map((p) => this.kindOfType(p.type, p));
    const ret = this.kindOfType(d.type, d);
    if (e.arguments.length !== d.parameters.length) this.refuse(e, "a call with a missing or extra argument", "pass every parameter");
    if (seam?.kind === "seam") return this.seamCall(e, name, seam.cName, paramKinds, ret, asStatement);
    this.calls.push({ callee: d, site: e });
    const args = e.arguments.map((a, i) => this.coerce(this.expr(a), paramKinds[i], a).c);
    return { c: `${this.g.functionName(d)}(${args.join(", ")})`, k: ret, exact: true, atom: true };
  }

  private args(e: ts.CallExpression, kinds: Kind[]): CExpr[] {
    return e.arguments.map((a, i) => this.coerce(this.expr(a), kinds[i], a));
  }

  private seamCall(e: ts.CallExpression, tsName: string, cName: string, kinds: Kind[], ret: Kind, asStatement: boolean): CExpr {
    const width: Record<string, number> = { read8: 8, read16: 16, read32: 32, write8: 8, write16: 16, write32: 32 };
    if (width[tsName] && (cName.startsWith("ciliate_read") || cName.startsWith("ciliate_write"))) {
      const bits = width[tsName];
      const place = this.memoryPlace(e.arguments[0], bits);
      if (tsName.startsWith("read")) {
        const field = place.startsWith("((struct ");
        return bits === 32 ? { c: place, k: "u32", exact: true, atom: field, unary: true } : { c: `(__u32)${place}`, k: "u32", exact: true, atom: false, unary: true };
      }
      if (!asStatement) this.refuse(e, "a memory write inside an expression", "write memory in a statement of its own");
      const v = this.expr(e.arguments[1]);
      const to: Kind = bits === 8 ? "u8" : bits === 16 ? "u16" : "u32";
      return { c: `${place} = ${this.coerce(v, to, e.arguments[1]).c}`, k: "void", exact: true, atom: false };
    }
    if (cName === "ciliate_mul32") {
      const [a, b] = this.args(e, ["u32", "u32"]);
      return { c: `(__u32)(${operand(a)} * ${operand(b)})`, k: "u32", exact: true, atom: false, unary: true };
    }
    if (cName === "__builtin_memcpy" || cName === "__builtin_memset") {
      const n = e.arguments[2];
      if (this.constantValue(n) === undefined && !this.isLayoutSize(n)) {
        this.refuse(n, "a memory copy or fill of a non-constant length", "pass a literal or a layout SIZE constant");
      }
      const dst = this.coerce(this.expr(e.arguments[0]), "ptr", e.arguments[0]);
      const mid = cName === "__builtin_memcpy"
        ? this.coerce(this.expr(e.arguments[1]), "ptr", e.arguments[1])
        : this.coerce(this.expr(e.arguments[1]), "u8", e.arguments[1]);
      const len = this.expr(n);
      return { c: `${cName}(${dst.c}, ${mid.c}, ${len.c})`, k: "void", exact: true, atom: true };
    }
    if (cName === "bpf_map_lookup_elem" || cName === "bpf_map_update_elem" || cName === "bpf_map_delete_elem") {
      const map = this.mapName(e.arguments[0]);
      const rest = e.arguments.slice(1).map((a, i) => this.coerce(this.expr(a), kinds[i + 1], a).c);
      const c = `${cName}(&${map}, ${rest.join(", ")})`;
      if (ret === "ptr" || asStatement) return { c, k: ret, exact: true, atom: true };
      return { c: `(__s32)${c}`, k: "i32", exact: true, atom: false };
    }
    if (cName === "bpf_ringbuf_output") {
      const map = this.mapName(e.arguments[0]);
      const rest = e.arguments.slice(1).map((a, i) => this.coerce(this.expr(a), kinds[i + 1], a).c);
      const c = `bpf_ringbuf_output(&${map}, ${rest.join(", ")}, 0)`;
      if (asStatement) return { c, k: ret, exact: true, atom: true };
      return { c: `(__s32)${c}`, k: "i32", exact: true, atom: false };
    }
    const args = this.args(e, kinds).map((a) => a.c);
    return { c: `${cName}(${args.join(", ")})`, k: ret, exact: true, atom: true };
  }

  private isLayoutSize(n: ts.Expression): boolean {
    return ts.isIdentifier(n) && this.g.layout.sizes.has(n.text);
  }

  /** The C lvalue for a readN/writeN address: a struct field when the address is `p + LAYOUT_FIELD` of the
   * same width, otherwise a typed dereference. */
  private memoryPlace(addr: ts.Expression, bits: number): string {
    const a = skipParens(addr);
    if (ts.isBinaryExpression(a) && a.operatorToken.kind === ts.SyntaxKind.PlusToken && ts.isIdentifier(a.right)) {
      const d = declarationOf(this.g.cp, a.right);
      const o = d && relPath(this.g.cp, d.getSourceFile()) === LAYOUT_FILE ? this.g.layout.offsets.get(a.right.text) : undefined;
      if (o) {
        const base = this.coerce(this.expr(a.left), "ptr", a.left);
        const f = o.field;
        const s = `((struct ${cStructName(o.struct.name)} *)${paren(base)})->${lowerSnake(f.name)}`;
        if (f.kind !== "bytes" && f.size * 8 === bits) return s;
        if (f.kind === "bytes" && bits === 8) return `${s}[0]`;
      }
    }
    const p = this.coerce(this.expr(addr), "ptr", addr);
    return `*(__u${bits} *)${paren(p)}`; // a unary expression (callers mark it so)
  }

  private mapName(arg: ts.Expression): string {
    const a = skipParens(arg);
    if (ts.isPropertyAccessExpression(a) && ts.isIdentifier(a.expression)) {
      const d = declarationOf(this.g.cp, a.name);
      if (d && ts.isEnumMember(d) && d.parent.name.text === "MapId") {
        const m = this.g.model.maps.find((x) => x.idName === a.name.text);
        if (m) return bpfMapName(m);
      }
    }
    return this.refuse(arg, "a map handle that is not a `MapId.X` literal", "pass the map as a literal, e.g. mapLookup(MapId.Policy, key), so it can be bound to its BPF map");
  }
}

function skipParens(e: ts.Expression): ts.Expression {
  while (ts.isParenthesizedExpression(e)) e = e.expression;
  return e;
}

function lineOf(n: ts.Node): number {
  const sf = n.getSourceFile();
  return sf.getLineAndCharacterOfPosition(n.getStart(sf)).line + 1;
}

function foldConst(op: ts.SyntaxKind, a: number, b: number): number | undefined {
  const K = ts.SyntaxKind;
  switch (op) {
    case K.PlusToken: return a + b;
    case K.MinusToken: return a - b;
    case K.AsteriskToken: return a * b;
    case K.BarToken: return (a | b) >>> 0;
    case K.AmpersandToken: return (a & b) >>> 0;
    case K.LessThanLessThanToken: return (a << b) >>> 0;
    case K.GreaterThanGreaterThanGreaterThanToken: return a >>> b;
    case K.GreaterThanGreaterThanToken: return a >> b;
    case K.SlashToken: return b === 0 ? undefined : Math.trunc(a / b);
    case K.PercentToken: return b === 0 ? undefined : a % b;
    case K.CaretToken: return (a ^ b) >>> 0;
  }
  return undefined;
}
