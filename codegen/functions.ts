/*
 * Function generator: writes bpf/gen/core.h, one `static __always_inline` C function per core function
 * reachable from the entry points, callees before callers, each headed by `/* core/<file>.ts:<line> <name> *\/`.
 *
 * Roots: the entry points of core/pipeline.ts (fromEndpoint, toEndpoint, fromNetwork, fromOverlay, toNetwork, fromHost). Until that file
 * exists, the exported functions of the modules in FALLBACK_MODULES that exist; in that mode a module that
 * cannot be translated is left out with a warning (other engineers are still writing it), so that
 * `npm run gen` keeps working. With core/pipeline.ts present every refusal is an error.
 *
 * The call graph is walked from the roots through the translator (codegen/translate.ts), which records
 * every call; seams (`@seam`) end the walk. A cycle is refused as recursion. The output depends only on
 * the source text (deterministic order: depth-first post-order from the roots in declaration order).
 */
import ts from "typescript";
import { existsSync } from "node:fs";
import { resolve } from "node:path";
import type { LayoutModel } from "./layout.ts";
import { lowerSnake } from "./layout.ts";
import { CodegenError } from "./errors.ts";
import { cFunctionName } from "./c-names.ts";
export { createCoreProgram } from "./core-program.ts";
import { createCoreProgram, type CoreProgram, relPath, seamOf, unsupported, lineOf } from "./core-program.ts";
import { FunctionTranslator, type GenContext, indexLayout } from "./translate.ts";

export const PIPELINE_FILE = "core/pipeline.ts";
export const PIPELINE_ENTRIES = ["fromEndpoint", "toEndpoint", "fromNetwork", "fromOverlay", "toNetwork", "fromHost"];
/** Modules whose exported functions are roots while core/pipeline.ts does not exist. */
export const FALLBACK_MODULES = [
  "core/csum.ts",
  "core/bytes.ts",
  "core/packet.ts",
  "core/config.ts",
  "core/ipcache.ts",
  "core/policy.ts",
  "core/conntrack.ts",
  "core/lb.ts",
  "core/nat.ts",
];
/** Fallback modules that must translate (the others are skipped with a warning when they fail). */
const STRICT_FALLBACK = new Set(["core/csum.ts", "core/bytes.ts"]);

export interface RootSpec {
  /** Source file relative to the repository root. */
  file: string;
  /** Function names to start from; all exported functions when omitted. */
  names?: string[];
}

export interface CoreHeaderOptions {
  roots: RootSpec[];
  /** Roots whose translation may fail (left out with a warning), by file. */
  lenient?: Set<string>;
  /** Called with each skipped module's error. */
  warn?: (message: string) => void;
  /** What the banner names as the source. */
  source?: string;
  /** A program to reuse (it must contain the root files), e.g. one program for many test fixtures. */
  program?: CoreProgram;
}

interface Translated {
  fn: ts.FunctionDeclaration;
  file: string;
  line: number;
  text: string;
  defines: GenContext["defines"];
}

/** The roots for the real core: pipeline entry points, or the fallback module list. */
export function defaultRoots(root: string): { roots: RootSpec[]; lenient: Set<string>; pipeline: boolean } {
  if (existsSync(resolve(root, PIPELINE_FILE))) {
    return { roots: [{ file: PIPELINE_FILE, names: PIPELINE_ENTRIES }], lenient: new Set(), pipeline: true };
  }
  const roots = FALLBACK_MODULES.filter((f) => existsSync(resolve(root, f))).map((file) => ({ file }));
  return { roots, lenient: new Set(roots.map((r) => r.file).filter((f) => !STRICT_FALLBACK.has(f))), pipeline: false };
}

function rootFunctions(cp: CoreProgram, spec: RootSpec): ts.FunctionDeclaration[] {
  const sf = cp.program.getSourceFile(resolve(cp.root, spec.file));
  if (!sf) throw new CodegenError(spec.file, "entry file not found");
  const fns: ts.FunctionDeclaration[] = [];
  for (const st of sf.statements) {
    if (!ts.isFunctionDeclaration(st) || !st.name || !st.body) continue;
    const exported = st.modifiers?.some((m) => m.kind === ts.SyntaxKind.ExportKeyword) ?? false;
    if (spec.names ? spec.names.includes(st.name.text) : exported && !seamOf(st)) fns.push(st);
  }
  if (spec.names) {
    for (const n of spec.names) {
      if (!fns.some((f) => f.name!.text === n)) throw new CodegenError(spec.file, `entry point ${n} not found`);
    }
  }
  return fns;
}

/** Translates everything reachable from `roots` into the text of bpf/gen/core.h. */
export function generateCoreHeader(root: string, model: LayoutModel, opts: CoreHeaderOptions): string {
  const cp = opts.program ?? createCoreProgram(root, opts.roots.map((r) => r.file));
  const layout = indexLayout(model);
  const names = new Map<ts.FunctionDeclaration, string>();
  const nameOwners = new Map<string, ts.FunctionDeclaration>();
  const functionName = (fn: ts.FunctionDeclaration): string => {
    let n = names.get(fn);
    if (n) return n;
    n = cFunctionName(fn.name!.text);
    const owner = nameOwners.get(n);
    if (owner && owner !== fn) {
      // Two functions of the same name in different modules: prefix the module name.
      const stem = relPath(cp, fn.getSourceFile()).replace(/^core\//, "").replace(/\.ts$/, "").replace(/[^A-Za-z0-9]+/g, "_");
      n = `ciliate_${lowerSnake(stem)}_${lowerSnake(fn.name!.text)}`;
    }
    nameOwners.set(n, fn);
    names.set(fn, n);
    return n;
  };

  const done = new Map<ts.FunctionDeclaration, Translated>();
  const scratch = { next: 0 };
  const order: ts.FunctionDeclaration[] = [];

  // Depth-first post-order; `stack` holds the functions being translated (a call into it is recursion).
  const visit = (fn: ts.FunctionDeclaration, stack: ts.FunctionDeclaration[], site?: ts.Node): void => {
    if (done.has(fn)) return;
    if (stack.includes(fn)) {
      const cycle = [...stack.slice(stack.indexOf(fn)), fn].map((f) => f.name!.text).join(" → ");
      throw unsupported(cp, site ?? fn, "recursion", `${cycle}; eBPF has no recursion: use a bounded loop`);
    }
    const defines: GenContext["defines"] = new Map();
    const g: GenContext = { cp, model, layout, functionName, defines, scratch };
    const t = new FunctionTranslator(g, fn);
    functionName(fn);
    const text = t.translate();
    for (const c of t.calls) visit(c.callee, [...stack, fn], c.site);
    const file = relPath(cp, fn.getSourceFile());
    done.set(fn, { fn, file, line: lineOf(fn), text, defines });
    order.push(fn);
  };

  for (const spec of opts.roots) {
    const fns = rootFunctions(cp, spec);
    if (opts.lenient?.has(spec.file)) {
      // Translate the module as a unit; on a refusal, drop everything it added.
      const before = order.length;
      const saved = new Map(done);
      try {
        for (const fn of fns) visit(fn, []);
      } catch (e) {
        if (!(e instanceof CodegenError)) throw e;
        for (const fn of order.splice(before)) if (!saved.has(fn)) done.delete(fn);
        opts.warn?.(`ciliate codegen: skipped ${spec.file} (not yet in the datapath subset): ${e.message}`);
      }
    } else {
      for (const fn of fns) visit(fn, []);
    }
  }

  const defines = new Map<string, { value: string; comment: string }>();
  for (const fn of order) for (const [k, v] of done.get(fn)!.defines) defines.set(k, v);

  const out: string[] = [];
  const rootsText = opts.source ?? opts.roots.map((r) => (r.names ? `${r.file} (${r.names.join(", ")})` : r.file)).join(", ");
  out.push(`/* Generated by codegen/functions.ts from ${rootsText}. Do not edit: run \`npm run gen\`. */`);
  out.push("#pragma once", "");
  out.push("#include <linux/types.h>", "#include <stdbool.h>", '#include "gen/layout.h"', '#include "gen/constants.h"');
  out.push('#include "include/ciliate_env.h"', '#include "include/ciliate_pkt.h"', '#include "include/ciliate_tunnel.h"', "");
  if (opts.roots.some((r) => r.file === PIPELINE_FILE)) {
    out.push("/* The entry points of core/pipeline.ts are present (bpf/programs/ call them). */", "#define CILIATE_CORE_HAS_PIPELINE 1", "");
  }
  if (defines.size > 0) {
    out.push("/* Constants and layout offsets used by the functions below. */");
    for (const k of [...defines.keys()].sort()) {
      const v = defines.get(k)!;
      out.push(`#define ${k} ${v.value} /* ${v.comment} */`);
    }
    out.push("");
  }
  if (scratch.next > 0) out.push(...scratchBlock(scratch.next));
  for (const fn of order) {
    const t = done.get(fn)!;
    out.push(`/* ${t.file}:${t.line} ${fn.name!.text} */`);
    out.push(t.text);
  }
  return out.join("\n");
}

/**
 * Per-CPU scratch memory behind stackAlloc. Every stackAlloc site gets its own fixed slot (offsets assigned
 * in generation order), so two structs that can be live at the same time never share bytes; a site is
 * zeroed each time it runs. The pipeline's structs do not fit the 512-byte BPF stack, which is why they
 * live here rather than in locals (as Cilium keeps large buffers in per-CPU maps). Not pinned: one per
 * loaded object.
 */
function scratchBlock(size: number): string[] {
  const total = (size + 7) & ~7;
  return [
    "/* Scratch memory for stackAlloc: one zeroed slot per call site (codegen/functions.ts scratchBlock). */",
    `#define CILIATE_SCRATCH_SIZE ${total}`,
    "struct {",
    "\t__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);",
    "\t__type(key, __u32);",
    "\t__type(value, __u8[CILIATE_SCRATCH_SIZE]);",
    "\t__uint(max_entries, 1);",
    "} ciliate_scratch_v1 SEC(\".maps\");",
    "",
    "static __always_inline __u8 *ciliate_scratch(__u32 off, __u32 size)",
    "{",
    "\t__u32 zero = 0;",
    "\t__u8 *base = bpf_map_lookup_elem(&ciliate_scratch_v1, &zero);",
    "",
    "\tif (!base)",
    "\t\treturn 0;",
    "\t__builtin_memset(base + off, 0, size);",
    "\treturn base + off;",
    "}",
    "",
  ];
}

/**
 * bpf/gen/core.h for the repository's core/ (used by codegen/outputs.ts).
 *
 * With CILIATE_CODEGEN_STRICT=1 (set by scripts/build-bpf.mjs) every refusal is an error. Without it (plain
 * `npm run gen`, while core/ is still being written), a refusal in core/pipeline.ts is printed as a warning
 * and the header falls back to the exported functions of the fallback modules that translate, so that the
 * other generated files are still written.
 */
export function emitCoreHeader(root: string, model: LayoutModel, warn: (m: string) => void = (m) => console.warn(m)): string {
  const strict = process.env.CILIATE_CODEGEN_STRICT === "1";
  const { roots, lenient, pipeline } = defaultRoots(root);
  if (!pipeline) return generateCoreHeader(root, model, { roots, lenient: strict ? new Set() : lenient, warn });
  try {
    return generateCoreHeader(root, model, { roots, warn });
  } catch (e) {
    if (strict || !(e instanceof CodegenError)) throw e;
    warn(`ciliate codegen: core/pipeline.ts is not translatable yet, bpf/gen/core.h falls back to ${FALLBACK_MODULES.join(", ")}: ${e.message}`);
    const fb = FALLBACK_MODULES.filter((f) => existsSync(resolve(root, f))).map((file) => ({ file }));
    return generateCoreHeader(root, model, {
      roots: fb,
      lenient: new Set(fb.map((r) => r.file).filter((f) => !STRICT_FALLBACK.has(f))),
      warn,
    });
  }
}
