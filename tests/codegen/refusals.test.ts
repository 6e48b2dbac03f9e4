/*
 * The generator refuses everything outside the datapath subset with an exact `file:line:col` message.
 * One fixture per construct under tests/fixtures/codegen/refuse/, each with an exported `root`.
 */
import { describe, expect, it } from "vitest";
import { generateCoreHeader } from "../../codegen/functions.ts";
import { CodegenError } from "../../codegen/errors.ts";
import { FIXTURES, ROOT, fixtureProgram, model, refusalFixtures } from "./helpers.ts";

const R = `${FIXTURES}/refuse`;
const S = "is not supported in the datapath subset";

const EXPECTED: Record<string, string> = {
  "array.ts": `${R}/array.ts:3:13: an array ${S} (use a layout in core/layout.ts and stackAlloc, or a map)`,
  "arrow.ts": `${R}/arrow.ts:3:13: an arrow function (closure) ${S} (declare a top-level function)`,
  "class.ts": `${R}/class.ts:7:13: \`new\` ${S} (no allocation on the packet path: use stackAlloc(X_SIZE) for a scratch struct)`,
  "do-while.ts": `${R}/do-while.ts:3:3: a \`do … while\` loop ${S} (use a \`for\` loop with a constant upper bound and \`break\`)`,
  "element-access.ts": `${R}/element-access.ts:3:10: indexing (\`a[i]\`) ${S} (read memory with read8/read16/read32 at an offset)`,
  "f64.ts": `${R}/f64.ts:2:25: the type \`f64\` ${S} (use u32 or i32)`,
  "for-of.ts": `${R}/for-of.ts:3:3: a \`for … in/of\` loop ${S} (use a \`for\` loop with a constant upper bound)`,
  "function-expression.ts": `${R}/function-expression.ts:3:13: a function expression (closure) ${S} (declare a top-level function)`,
  "int-to-pointer.ts": `${R}/int-to-pointer.ts:3:10: an integer used as a pointer ${S} (a usize is a pointer; integers cannot become pointers in eBPF)`,
  "map-variable.ts": `${R}/map-variable.ts:9:20: a map handle that is not a \`MapId.X\` literal ${S} (pass the map as a literal, e.g. mapLookup(MapId.Policy, key), so it can be bound to its BPF map)`,
  "memcopy-length.ts": `${R}/memcopy-length.ts:8:21: a memory copy or fill of a non-constant length ${S} (pass a literal or a layout SIZE constant)`,
  "method-call.ts": `${R}/method-call.ts:3:10: a method call ${S} (call a top-level function; there are no objects in the datapath)`,
  "mixed-compare.ts": `${R}/mixed-compare.ts:3:10: a comparison of i32 with u32 ${S} (convert one side explicitly: u32(x) or i32(x))`,
  "module-let.ts": `${R}/module-let.ts:5:10: module-level \`let\` on the packet path ${S} (keep per-packet state in locals and persistent state in maps)`,
  "multiply.ts": `${R}/multiply.ts:3:16: \`*\` on integers ${S} (use mul32(a, b), which wraps like AssemblyScript)`,
  "nested-assign.ts": `${R}/nested-assign.ts:4:8: an assignment inside an expression ${S} (assign in a statement of its own)`,
  "recursion.ts": `${R}/recursion.ts:8:10: recursion ${S} (ping → pong → ping; eBPF has no recursion: use a bounded loop)`,
  "signed-division.ts": `${R}/signed-division.ts:3:12: signed division ${S} (divide u32 values; eBPF has no signed division)`,
  "string.ts": `${R}/string.ts:3:13: a string ${S} (the datapath has no strings: use numeric constants)`,
  "throw.ts": `${R}/throw.ts:3:15: \`throw\` ${S} (return a drop reason instead of throwing)`,
  "try.ts": `${R}/try.ts:3:3: \`try\` ${S} (return a drop reason instead of throwing)`,
  "u64.ts": `${R}/u64.ts:3:15: the type \`u64\` ${S} (no 64-bit integers in core: use add64/read64Lo/read64Hi for counters)`,
  "unbounded-for.ts": `${R}/unbounded-for.ts:4:3: a \`for\` loop without a constant upper bound ${S} (loops need a constant upper bound: \`for (let i: u32 = 0; i < 16; i++)\`, with \`break\` to stop early)`,
  "while.ts": `${R}/while.ts:3:3: a \`while\` loop ${S} (use a \`for\` loop with a constant upper bound and \`break\`)`,
};

function refusalOf(file: string): unknown {
  try {
    generateCoreHeader(ROOT, model, { roots: [{ file, names: ["root"] }], program: fixtureProgram() });
  } catch (e) {
    return e;
  }
  return undefined;
}

describe("codegen refusals", () => {
  it("has an expected message for every fixture and a fixture for every message", () => {
    expect(refusalFixtures.map((f) => f.slice(R.length + 1))).toEqual(Object.keys(EXPECTED).sort());
  });

  for (const [name, message] of Object.entries(EXPECTED)) {
    it(`refuses ${name.replace(/\.ts$/, "")}`, () => {
      const e = refusalOf(`${R}/${name}`);
      expect(e).toBeInstanceOf(CodegenError);
      expect((e as CodegenError).message).toBe(message);
      expect((e as CodegenError).code).toBe("CODEGEN_UNSUPPORTED");
    });
  }
});
