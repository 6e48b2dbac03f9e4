/*
 * Layout generator: reads core/layout.ts, core/constants.ts and core/drop-reasons.ts as source (TypeScript
 * compiler API; codegen never imports core) and writes every derived artefact:
 *   core/gen/layout.ts            offsets/sizes/map metadata for core (AS-compatible)
 *   host/codecs.gen.ts       encoders/decoders for the hosts
 *   host/drop-reasons.gen.ts the drop-reason table for hosts (CLI, flows, metrics)
 *   bpf/gen/layout.h              C structs with size/offset assertions, and the BPF map definitions
 *   bpf/gen/constants.h           CILIATE_* defines for every core constant and drop reason
 *   docs/drop-reasons.md          the user-facing table
 * Deterministic: the output depends only on the input text.
 */
import ts from "typescript";
import { readFileSync } from "node:fs";
import { relative } from "node:path";
import { CodegenError, locationOf } from "./errors.ts";

export interface FieldDecl {
  name: string;
  kind: "u8" | "u16" | "u32" | "u64" | "bytes";
  size: number;
  align: number;
  offset: number;
  doc: string;
  line: number;
}

export interface StructDecl {
  name: string;
  fields: FieldDecl[];
  size: number;
  align: number;
  doc: string;
  line: number;
}

export interface MapDecl {
  id: number;
  idName: string;
  name: string;
  version: number;
  type: number;
  typeName: string;
  key: string;
  value: string;
  maxEntries: number;
}

export interface ConstDecl {
  name: string;
  value: number;
  type: string;
  doc: string;
}

export interface LayoutModel {
  structs: StructDecl[];
  maps: MapDecl[];
  mapTypes: Map<string, number>;
  mapIds: Map<string, number>;
  constants: ConstDecl[];
  dropReasons: (ConstDecl & { text: string; hubble: string })[];
  sourceFile: string;
}

const SCALARS: Record<string, [FieldDecl["kind"], number]> = { u8: ["u8", 1], u16: ["u16", 2], u32: ["u32", 4], u64: ["u64", 8] };

function docOf(node: ts.Node): string {
  const docs = ts.getJSDocCommentsAndTags(node);
  return docs
    .map((d) => (typeof d.comment === "string" ? d.comment : (d.comment ?? []).map((c) => c.text).join("")))
    .join(" ")
    .replace(/\s+/g, " ")
    .trim();
}

function parse(path: string, root: string): ts.SourceFile {
  const text = readFileSync(path, "utf8");
  const sf = ts.createSourceFile(relative(root, path), text, ts.ScriptTarget.ES2022, true);
  return sf;
}

function readStruct(sf: ts.SourceFile, cls: ts.ClassDeclaration): StructDecl {
  const name = cls.name!.text;
  const fields: FieldDecl[] = [];
  let offset = 0;
  let maxAlign = 1;
  for (const m of cls.members) {
    if (!ts.isPropertyDeclaration(m) || !m.type || !ts.isIdentifier(m.name)) {
      throw new CodegenError(locationOf(sf, m), "only typed fields are allowed in a layout class", "declare `name: u8|u16|u32|u64|Bytes<N>;`");
    }
    const fname = m.name.text;
    let kind: FieldDecl["kind"];
    let size: number;
    let align: number;
    const t = m.type;
    if (ts.isTypeReferenceNode(t) && ts.isIdentifier(t.typeName) && t.typeName.text === "Bytes") {
      const arg = t.typeArguments?.[0];
      if (!arg || !ts.isLiteralTypeNode(arg) || !ts.isNumericLiteral(arg.literal)) {
        throw new CodegenError(locationOf(sf, t), "Bytes<N> needs a numeric literal N");
      }
      kind = "bytes";
      size = Number(arg.literal.text);
      align = 1;
    } else {
      const tn = t.getText(sf);
      const s = SCALARS[tn];
      if (!s) throw new CodegenError(locationOf(sf, t), `field type ${tn} is not supported in a layout`, "use u8, u16, u32, u64 or Bytes<N>");
      [kind, size] = s;
      align = size;
    }
    if (offset % align !== 0) {
      throw new CodegenError(locationOf(sf, m), `${name}.${fname} at offset ${offset} is not ${align}-byte aligned`, "add an explicit pad field before it");
    }
    const line = sf.getLineAndCharacterOfPosition(m.getStart(sf)).line + 1;
    fields.push({ name: fname, kind, size, align, offset, doc: docOf(m), line });
    offset += size;
    maxAlign = Math.max(maxAlign, align);
  }
  if (offset % maxAlign !== 0) {
    throw new CodegenError(locationOf(sf, cls), `${name} is ${offset} bytes, not a multiple of its alignment ${maxAlign}`, "add explicit trailing padding");
  }
  const line = sf.getLineAndCharacterOfPosition(cls.getStart(sf)).line + 1;
  return { name, fields, size: offset, align: maxAlign, doc: docOf(cls), line };
}

function evalNumber(sf: ts.SourceFile, e: ts.Expression, enums: Map<string, Map<string, number>>): number {
  if (ts.isNumericLiteral(e)) return Number(e.text);
  if (ts.isPrefixUnaryExpression(e) && e.operator === ts.SyntaxKind.MinusToken) return -evalNumber(sf, e.operand, enums);
  if (ts.isPropertyAccessExpression(e) && ts.isIdentifier(e.expression)) {
    const v = enums.get(e.expression.text)?.get(e.name.text);
    if (v !== undefined) return v;
  }
  throw new CodegenError(locationOf(sf, e), `expected a number, found ${e.getText(sf)}`);
}

function readConstants(sf: ts.SourceFile): ConstDecl[] {
  const out: ConstDecl[] = [];
  for (const st of sf.statements) {
    if (!ts.isVariableStatement(st)) continue;
    for (const d of st.declarationList.declarations) {
      if (!ts.isIdentifier(d.name) || !d.initializer) continue;
      const type = d.type?.getText(sf) ?? "";
      if (!/^[iu](8|16|32)$/.test(type)) {
        throw new CodegenError(locationOf(sf, d), `constant ${d.name.text} needs an explicit integer type`, "declare it as `: u32` (or i32/u16/u8)");
      }
      out.push({ name: d.name.text, value: evalNumber(sf, d.initializer, new Map()), type, doc: docOf(st) });
    }
  }
  return out;
}

export function readLayoutModel(root: string): LayoutModel {
  const sf = parse(`${root}/core/layout.ts`, root);
  const structs: StructDecl[] = [];
  const enums = new Map<string, Map<string, number>>();
  let maps: MapDecl[] = [];
  for (const st of sf.statements) {
    if (ts.isClassDeclaration(st) && st.name) structs.push(readStruct(sf, st));
    else if (ts.isEnumDeclaration(st)) {
      const m = new Map<string, number>();
      for (const mem of st.members) {
        if (!mem.initializer) throw new CodegenError(locationOf(sf, mem), "enum members of layouts need explicit values");
        m.set(mem.name.getText(sf), evalNumber(sf, mem.initializer, enums));
      }
      enums.set(st.name.text, m);
    }
  }
  const names = new Set(structs.map((s) => s.name));
  for (const st of sf.statements) {
    if (!ts.isVariableStatement(st)) continue;
    for (const d of st.declarationList.declarations) {
      if (!ts.isIdentifier(d.name) || d.name.text !== "MAPS") continue;
      if (!d.initializer || !ts.isArrayLiteralExpression(d.initializer)) throw new CodegenError(locationOf(sf, d), "MAPS must be an array literal");
      maps = d.initializer.elements.map((el) => {
        if (!ts.isObjectLiteralExpression(el)) throw new CodegenError(locationOf(sf, el), "each map is an object literal");
        const props = new Map<string, ts.Expression>();
        for (const p of el.properties) if (ts.isPropertyAssignment(p)) props.set(p.name.getText(sf), p.initializer);
        const str = (k: string): string => {
          const e = props.get(k);
          if (!e || !ts.isStringLiteral(e)) throw new CodegenError(locationOf(sf, el), `map needs a string \`${k}\``);
          return e.text;
        };
        const num = (k: string): number => {
          const e = props.get(k);
          if (!e) throw new CodegenError(locationOf(sf, el), `map needs \`${k}\``);
          return evalNumber(sf, e, enums);
        };
        const idExpr = props.get("id")!;
        const typeExpr = props.get("type")!;
        const m: MapDecl = {
          id: num("id"),
          idName: (idExpr as ts.PropertyAccessExpression).name.text,
          name: str("name"),
          version: num("version"),
          type: num("type"),
          typeName: (typeExpr as ts.PropertyAccessExpression).name.text,
          key: str("key"),
          value: str("value"),
          maxEntries: num("maxEntries"),
        };
        for (const t of [m.key, m.value]) {
          if (t !== "u32" && t !== "none" && !names.has(t)) throw new CodegenError(locationOf(sf, el), `map ${m.name} names unknown layout ${t}`);
        }
        return m;
      });
    }
  }
  const constSf = parse(`${root}/core/constants.ts`, root);
  const dropSf = parse(`${root}/core/drop-reasons.ts`, root);
  const dropReasons = readConstants(dropSf).map((c) => {
    const [text, hubble] = c.doc.split("|").map((s) => s.trim());
    if (!text || !hubble) throw new CodegenError(`core/drop-reasons.ts: ${c.name}`, "drop reason doc must be `<text> | <HUBBLE_NAME>`");
    return { ...c, text, hubble };
  });
  return {
    structs,
    maps,
    mapTypes: enums.get("MapType") ?? new Map(),
    mapIds: enums.get("MapId") ?? new Map(),
    constants: readConstants(constSf),
    dropReasons,
    sourceFile: "core/layout.ts",
  };
}

/* ------------------------------------------------------------------------------------------------ */
/* Naming: one mechanical rule each way. */

export function upperSnake(name: string): string {
  return name.replace(/([a-z0-9])([A-Z])/g, "$1_$2").replace(/([A-Z])([A-Z][a-z])/g, "$1_$2").toUpperCase();
}

export function lowerSnake(name: string): string {
  return upperSnake(name).toLowerCase();
}

/** Host-side (codec) field name: the byte-order suffix is the codec's business, not the caller's. */
export function hostFieldName(name: string): string {
  return name.endsWith("Be") ? name.slice(0, -2) : name;
}

export function bpfMapName(m: MapDecl): string {
  return `ciliate_${m.name}_v${m.version}`;
}

const BANNER = (what: string): string =>
  `Generated by codegen/layout.ts from ${what}. Do not edit: run \`npm run gen\`.`;

/* ------------------------------------------------------------------------------------------------ */
/* core/gen/layout.ts */

export function emitCoreLayout(model: LayoutModel): string {
  const out: string[] = [];
  out.push(`// ${BANNER("core/layout.ts")}`, "");
  out.push("export enum MapType {");
  for (const [k, v] of model.mapTypes) out.push(`  ${k} = ${v},`);
  out.push("}", "", "export enum MapId {");
  for (const [k, v] of model.mapIds) out.push(`  ${k} = ${v},`);
  out.push("}", "");
  out.push(`export const MAP_COUNT: u32 = ${model.maps.length};`, "");
  for (const s of model.structs) {
    const p = upperSnake(s.name);
    out.push(`// ${s.name} (core/layout.ts:${s.line})`);
    out.push(`export const ${p}_SIZE: u32 = ${s.size};`);
    for (const f of s.fields) out.push(`export const ${p}_${upperSnake(f.name)}: u32 = ${f.offset};`);
    out.push("");
  }
  const sizeOf = (t: string): number => (t === "u32" ? 4 : t === "none" ? 0 : model.structs.find((s) => s.name === t)!.size);
  const sw = (fn: string, doc: string, pick: (m: MapDecl) => number): void => {
    out.push(`/** ${doc} */`, `export function ${fn}(id: u32): u32 {`, "  switch (id) {");
    for (const m of model.maps) out.push(`    case MapId.${m.idName}: return ${pick(m)};`);
    out.push("  }", "  return 0;", "}", "");
  };
  sw("mapType", "MapType of a map (0 for an unknown id).", (m) => m.type);
  sw("mapKeySize", "Key size in bytes.", (m) => sizeOf(m.key));
  sw("mapValueSize", "Value size in bytes.", (m) => sizeOf(m.value));
  sw("mapDefaultMaxEntries", "Default capacity.", (m) => m.maxEntries);
  return out.join("\n");
}

/* ------------------------------------------------------------------------------------------------ */
/* host/codecs.gen.ts */

export function emitCodecs(model: LayoutModel): string {
  const out: string[] = [];
  out.push(`// ${BANNER("core/layout.ts")}`);
  out.push("// Host-side codecs: plain objects <-> the exact bytes of each layout. Fields ending in `Be` in the");
  out.push("// layout are network byte order in memory and plain numbers here (the suffix is dropped).", "");
  out.push("export interface Codec<T> {", "  readonly name: string;", "  readonly size: number;");
  out.push("  encode(value: Partial<T>, out?: Uint8Array, offset?: number): Uint8Array;");
  out.push("  decode(bytes: Uint8Array, offset?: number): T;", "  zero(): T;", "}", "");
  out.push("export const u32Codec: Codec<number> = {", '  name: "u32",', "  size: 4,");
  out.push("  encode(value, out = new Uint8Array(4), offset = 0) {");
  out.push("    new DataView(out.buffer, out.byteOffset).setUint32(offset, Number(value ?? 0) >>> 0, true);", "    return out;", "  },");
  out.push("  decode(bytes, offset = 0) {", "    return new DataView(bytes.buffer, bytes.byteOffset).getUint32(offset, true);", "  },");
  out.push("  zero() {", "    return 0;", "  },", "};", "");
  out.push("/** Maps without keys (ring buffers). */");
  out.push("export const noneCodec: Codec<never> = {", '  name: "none",', "  size: 0,");
  out.push("  encode() {", '    throw new Error("this map has no keys");', "  },");
  out.push("  decode() {", '    throw new Error("this map has no keys");', "  },");
  out.push("  zero(): never {", '    throw new Error("this map has no keys");', "  },", "};", "");
  for (const s of model.structs) {
    out.push(`/** ${s.doc || s.name} (core/layout.ts:${s.line}) */`);
    out.push(`export interface ${s.name} {`);
    for (const f of s.fields) {
      const t = f.kind === "bytes" ? "Uint8Array" : f.kind === "u64" ? "bigint" : "number";
      out.push(`  ${hostFieldName(f.name)}: ${t};`);
    }
    out.push("}", "");
    out.push(`export const ${s.name}Codec: Codec<${s.name}> = {`);
    out.push(`  name: "${s.name}",`, `  size: ${s.size},`);
    out.push(`  encode(v, out = new Uint8Array(${s.size}), o = 0) {`);
    out.push("    const dv = new DataView(out.buffer, out.byteOffset);");
    for (const f of s.fields) {
      const h = `v.${hostFieldName(f.name)}`;
      const le = f.name.endsWith("Be") ? "false" : "true";
      const at = `o + ${f.offset}`;
      switch (f.kind) {
        case "u8": out.push(`    dv.setUint8(${at}, Number(${h} ?? 0) & 0xff);`); break;
        case "u16": out.push(`    dv.setUint16(${at}, Number(${h} ?? 0) & 0xffff, ${le});`); break;
        case "u32": out.push(`    dv.setUint32(${at}, Number(${h} ?? 0) >>> 0, ${le});`); break;
        case "u64": out.push(`    dv.setBigUint64(${at}, BigInt.asUintN(64, BigInt(${h} ?? 0n)), true);`); break;
        case "bytes":
          out.push(`    out.fill(0, ${at}, ${at} + ${f.size});`);
          out.push(`    if (${h}) out.set(${h}.subarray(0, ${f.size}), ${at});`);
          break;
      }
    }
    out.push("    return out;", "  },");
    out.push("  decode(b, o = 0) {", "    const dv = new DataView(b.buffer, b.byteOffset);", "    return {");
    for (const f of s.fields) {
      const le = f.name.endsWith("Be") ? "false" : "true";
      const at = `o + ${f.offset}`;
      const n = hostFieldName(f.name);
      switch (f.kind) {
        case "u8": out.push(`      ${n}: dv.getUint8(${at}),`); break;
        case "u16": out.push(`      ${n}: dv.getUint16(${at}, ${le}),`); break;
        case "u32": out.push(`      ${n}: dv.getUint32(${at}, ${le}),`); break;
        case "u64": out.push(`      ${n}: dv.getBigUint64(${at}, true),`); break;
        case "bytes": out.push(`      ${n}: b.slice(${at}, ${at} + ${f.size}),`); break;
      }
    }
    out.push("    };", "  },");
    out.push(`  zero() {`, `    return this.decode(new Uint8Array(${s.size}));`, "  },", "};", "");
  }
  out.push("export enum MapType {");
  for (const [k, v] of model.mapTypes) out.push(`  ${k} = ${v},`);
  out.push("}", "", "export enum MapId {");
  for (const [k, v] of model.mapIds) out.push(`  ${k} = ${v},`);
  out.push("}", "");
  out.push("export interface MapSpec<K = unknown, V = unknown> {");
  out.push("  id: MapId;", "  name: string;", "  bpfName: string;", "  type: MapType;", "  maxEntries: number;");
  out.push("  key: Codec<K>;", "  value: Codec<V>;", "}", "");
  out.push("export const MAP_SPECS = {");
  for (const m of model.maps) {
    const kc = m.key === "u32" ? "u32Codec" : m.key === "none" ? "noneCodec" : `${m.key}Codec`;
    const vc = m.value === "u32" ? "u32Codec" : `${m.value}Codec`;
    const kt = m.key === "u32" ? "number" : m.key === "none" ? "never" : m.key;
    const vt = m.value === "u32" ? "number" : m.value;
    out.push(
      `  ${m.idName}: { id: MapId.${m.idName}, name: "${m.name}", bpfName: "${bpfMapName(m)}", type: MapType.${m.typeName}, maxEntries: ${m.maxEntries}, key: ${kc}, value: ${vc} } as MapSpec<${kt}, ${vt}>,`,
    );
  }
  out.push("};", "");
  out.push("/** Field offsets by layout, for tests that compare the TypeScript and C views of a layout. */");
  out.push("export const LAYOUT_OFFSETS: Record<string, { size: number; fields: Record<string, number> }> = {");
  for (const s of model.structs) {
    out.push(`  ${s.name}: { size: ${s.size}, fields: { ${s.fields.map((f) => `${f.name}: ${f.offset}`).join(", ")} } },`);
  }
  out.push("};", "");
  return out.join("\n");
}

/* ------------------------------------------------------------------------------------------------ */
/* bpf/gen/layout.h and bpf/gen/constants.h */

const C_TYPES: Record<string, string> = { u8: "__u8", u16: "__u16", u32: "__u32", u64: "__u64" };
const C_MAP_TYPES: Record<string, string> = {
  Hash: "BPF_MAP_TYPE_HASH",
  Array: "BPF_MAP_TYPE_ARRAY",
  PercpuArray: "BPF_MAP_TYPE_PERCPU_ARRAY",
  LruHash: "BPF_MAP_TYPE_LRU_HASH",
  LpmTrie: "BPF_MAP_TYPE_LPM_TRIE",
  RingBuf: "BPF_MAP_TYPE_RINGBUF",
};

export function cStructName(name: string): string {
  return lowerSnake(name);
}

export function emitCLayout(model: LayoutModel): string {
  const out: string[] = [];
  out.push(`/* ${BANNER("core/layout.ts")} */`, "#pragma once", "", "#include <linux/types.h>", "#include <linux/bpf.h>", "#include <bpf/bpf_helpers.h>", "");
  for (const s of model.structs) {
    const cn = cStructName(s.name);
    out.push(`/* ${s.name} (core/layout.ts:${s.line})${s.doc ? ` ${s.doc}` : ""} */`);
    out.push(`struct ${cn} {`);
    for (const f of s.fields) {
      const n = lowerSnake(f.name);
      const loc = `/* core/layout.ts:${f.line} */`;
      if (f.kind === "bytes") out.push(`\t__u8 ${n}[${f.size}]; ${loc}`);
      else if (f.name.endsWith("Be")) out.push(`\t__be${f.size * 8} ${n}; ${loc}`);
      else out.push(`\t${C_TYPES[f.kind]} ${n}; ${loc}`);
    }
    out.push("};");
    out.push(`_Static_assert(sizeof(struct ${cn}) == ${s.size}, "${s.name} size");`);
    for (const f of s.fields) {
      out.push(`_Static_assert(__builtin_offsetof(struct ${cn}, ${lowerSnake(f.name)}) == ${f.offset}, "${s.name}.${f.name} offset");`);
    }
    out.push("");
  }
  out.push("/* Maps (core/layout.ts MAPS). Pinned by name so that the agent and tests can reuse them. */", "");
  for (const m of model.maps) {
    // The kernel's array maps take only a 4-byte integer key in BTF; a struct key of an array map (e.g.
    // MetricsKey) is its u32 index, so the map is declared with __u32 and the struct asserted to fit.
    const arrayish = m.typeName === "Array" || m.typeName === "PercpuArray";
    const kt = m.key === "u32" || arrayish ? "__u32" : `struct ${cStructName(m.key)}`;
    if (arrayish && m.key !== "u32") out.push(`_Static_assert(sizeof(struct ${cStructName(m.key)}) == 4, "${m.key} is the u32 index of ${m.name}");`);
    const vt = m.value === "u32" ? "__u32" : `struct ${cStructName(m.value)}`;
    out.push("struct {");
    out.push(`\t__uint(type, ${C_MAP_TYPES[m.typeName]});`);
    if (m.key !== "none") out.push(`\t__type(key, ${kt});`, `\t__type(value, ${vt});`);
    else out.push(`\t/* records are ${vt} */`);
    out.push(`\t__uint(max_entries, ${m.maxEntries});`);
    if (m.typeName === "LpmTrie") out.push("\t__uint(map_flags, BPF_F_NO_PREALLOC);");
    if (m.typeName !== "RingBuf") out.push("\t__uint(pinning, LIBBPF_PIN_BY_NAME);");
    out.push(`} ${bpfMapName(m)} SEC(".maps");`, "");
  }
  return out.join("\n");
}

export function emitCConstants(model: LayoutModel): string {
  const out: string[] = [];
  out.push(`/* ${BANNER("core/constants.ts and core/drop-reasons.ts")} */`, "#pragma once", "");
  for (const c of model.constants) out.push(`#define CILIATE_${c.name} ${c.value}${c.type.startsWith("u") && c.value >= 0 ? "U" : ""}`);
  out.push("", "/* Drop reasons (core/drop-reasons.ts). */");
  for (const c of model.dropReasons) out.push(`#define CILIATE_${c.name} ${c.value}U /* ${c.text} */`);
  out.push("", "/* Map ids (core/layout.ts MapId). */");
  for (const [k, v] of model.mapIds) out.push(`#define CILIATE_MAP_${upperSnake(k)} ${v}`);
  out.push("");
  return out.join("\n");
}

/* ------------------------------------------------------------------------------------------------ */
/* Drop reasons for hosts and docs. */

export function emitDropReasonsTs(model: LayoutModel): string {
  const out: string[] = [];
  out.push(`// ${BANNER("core/drop-reasons.ts")}`, "");
  out.push("export interface DropReasonInfo {", "  code: number;", "  name: string;", "  text: string;", "  hubble: string;", "}", "");
  out.push("export const DROP_REASONS: ReadonlyMap<number, DropReasonInfo> = new Map([");
  for (const d of model.dropReasons) {
    out.push(`  [${d.value}, { code: ${d.value}, name: ${JSON.stringify(d.name)}, text: ${JSON.stringify(d.text)}, hubble: ${JSON.stringify(d.hubble)} }],`);
  }
  out.push("]);", "");
  out.push("/** Text shown to users for a drop reason; unknown codes are printed as numbers. */");
  out.push("export function dropReasonText(code: number): string {");
  out.push("  return DROP_REASONS.get(code)?.text ?? `Unknown drop reason ${code}`;", "}", "");
  out.push("/** Hubble's DropReason enum name (flow.proto) for a code. */");
  out.push("export function dropReasonHubble(code: number): string {");
  out.push('  return DROP_REASONS.get(code)?.hubble ?? "DROP_REASON_UNKNOWN";', "}", "");
  return out.join("\n");
}

export function emitHostConstants(model: LayoutModel): string {
  const out: string[] = [];
  out.push(`// ${BANNER("core/constants.ts and core/drop-reasons.ts")}`, "");
  out.push("// The same numbers core/ uses, for host-side TypeScript (which cannot import AssemblyScript files).");
  for (const c of model.constants) out.push(`export const ${c.name} = ${c.value};`);
  out.push("");
  for (const c of model.dropReasons) out.push(`export const ${c.name} = ${c.value};`);
  out.push("");
  return out.join("\n");
}

export function emitDropReasonsMd(model: LayoutModel): string {
  const out: string[] = [];
  out.push("# Drop reasons", "", `<!-- ${BANNER("core/drop-reasons.ts")} -->`, "");
  out.push("Every packet ciliate drops carries one of these reasons, in the simulator, in traces, in `ciliate observe`");
  out.push("and in the `ciliate_drop_count_total` metric. The numbers are Cilium's, so Hubble users can read them as is.", "");
  out.push("| Code | Constant | Text | Hubble `drop_reason_desc` |", "|---:|---|---|---|");
  for (const d of model.dropReasons) out.push(`| ${d.value} | \`${d.name}\` | ${d.text} | \`${d.hubble}\` |`);
  out.push("");
  return out.join("\n");
}
