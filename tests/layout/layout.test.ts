/*
 * The layout declaration is the single source of every map key and value: these tests check that the
 * generated artefacts are up to date, deterministic, agree with the C compiler's view of the structs, and
 * that the generator refuses layouts it cannot represent faithfully.
 */
import { describe, expect, it } from "vitest";
import { execFileSync } from "node:child_process";
import { mkdtempSync, writeFileSync, mkdirSync, cpSync, rmSync, readFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join, resolve } from "node:path";
import { generateAll } from "../../codegen/outputs.ts";
import { readLayoutModel } from "../../codegen/layout.ts";
import { CodegenError } from "../../codegen/errors.ts";
import { LAYOUT_OFFSETS, PolicyKeyCodec, CtTupleCodec, MAP_SPECS } from "../../host/codecs.gen.ts";
import { hasClang, skipUnless } from "../helpers/tools.ts";

const root = resolve(import.meta.dirname, "../..");

describe("generated layout artefacts", () => {
  it("are up to date with core/layout.ts (npm run gen leaves nothing to change)", () => {
    for (const [rel, text] of generateAll(root)) {
      expect(readFileSync(join(root, rel), "utf8"), rel).toBe(text);
    }
  });

  it("are deterministic", () => {
    const a = generateAll(root);
    const b = generateAll(root);
    expect([...a.entries()]).toEqual([...b.entries()]);
  });

  it("agree with the C compiler on every size and offset", () => {
    if (skipUnless(hasClang(), "clang (the C layout probe)")) return;
    // Print sizeof/offsetof from C and compare with the TypeScript side, in addition to the header's
    // own _Static_asserts (which already fail compilation on a mismatch).
    const dir = mkdtempSync(join(tmpdir(), "ciliate-layout-"));
    try {
      const model = readLayoutModel(root);
      const lines = ['#include <stdio.h>', '#include <stddef.h>', '#define SEC(x)', '#define __uint(n, v) int n', '#define __type(n, t) t *n',
        '#include "gen/layout.h"', "int main(void) {"];
      for (const s of model.structs) {
        const cn = s.name.replace(/([a-z0-9])([A-Z])/g, "$1_$2").toLowerCase();
        lines.push(`  printf("${s.name} size %zu\\n", sizeof(struct ${cn}));`);
        for (const f of s.fields) {
          const fn = f.name.replace(/([a-z0-9])([A-Z])/g, "$1_$2").toLowerCase();
          lines.push(`  printf("${s.name} ${f.name} %zu\\n", offsetof(struct ${cn}, ${fn}));`);
        }
      }
      lines.push("  return 0;", "}");
      writeFileSync(join(dir, "probe.c"), lines.join("\n"));
      // Host compile (not BPF) so we can run it; bpf_helpers.h is replaced by the macros above.
      mkdirSync(join(dir, "bpf"), { recursive: true });
      writeFileSync(join(dir, "bpf", "bpf_helpers.h"), "");
      execFileSync("clang", ["-I", join(root, "bpf"), "-I", dir, "-o", join(dir, "probe"), join(dir, "probe.c")]);
      const out = execFileSync(join(dir, "probe"), { encoding: "utf8" }).trim().split("\n");
      for (const line of out) {
        const [struct, what, n] = line.split(" ");
        const want = LAYOUT_OFFSETS[struct]!;
        if (what === "size") expect(Number(n), `${struct} size`).toBe(want.size);
        else expect(Number(n), `${struct}.${what}`).toBe(want.fields[what]);
      }
      expect(out.length).toBeGreaterThan(100);
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });
});

describe("codecs", () => {
  it("write Be fields in network order and expose plain numbers", () => {
    const b = PolicyKeyCodec.encode({ prefixlen: 80, secLabel: 0x01020304, epId: 7, egress: 1, protocol: 6, dport: 80 });
    expect(Array.from(b.subarray(12, 14))).toEqual([0, 80]); // dportBe
    expect(Array.from(b.subarray(4, 8))).toEqual([4, 3, 2, 1]); // secLabel, host (little-endian) order
    expect(PolicyKeyCodec.decode(b)).toMatchObject({ prefixlen: 80, secLabel: 0x01020304, epId: 7, dport: 80 });
  });

  it("round-trip addresses and zero-fill short byte arrays", () => {
    const t = CtTupleCodec.decode(CtTupleCodec.encode({ saddr: Uint8Array.of(10, 0, 0, 1), family: 1 }));
    expect(Array.from(t.saddr)).toEqual([10, 0, 0, 1, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0]);
  });

  it("name every map ciliate_<name>_v<version>", () => {
    for (const spec of Object.values(MAP_SPECS)) expect(spec.bpfName).toMatch(/^ciliate_[a-z_]+_v\d+$/);
  });
});

describe("layout refusals", () => {
  function modelWith(layout: string): () => unknown {
    const dir = mkdtempSync(join(tmpdir(), "ciliate-layout-bad-"));
    mkdirSync(join(dir, "core"));
    cpSync(join(root, "core/constants.ts"), join(dir, "core/constants.ts"));
    cpSync(join(root, "core/drop-reasons.ts"), join(dir, "core/drop-reasons.ts"));
    writeFileSync(join(dir, "core/layout.ts"), layout);
    return () => readLayoutModel(dir);
  }

  it("refuses a misaligned field with its position and a hint", () => {
    const f = modelWith("export class K {\n  a: u8;\n  b: u32;\n}\nexport const MAPS = [];\n");
    expect(f).toThrow(CodegenError);
    expect(f).toThrow("core/layout.ts:3:3: K.b at offset 1 is not 4-byte aligned (add an explicit pad field before it)");
  });

  it("refuses implicit trailing padding", () => {
    expect(modelWith("export class K {\n  a: u32;\n  b: u8;\n}\nexport const MAPS = [];\n")).toThrow(
      "K is 5 bytes, not a multiple of its alignment 4",
    );
  });

  it("refuses unsupported field types", () => {
    expect(modelWith("export class K {\n  a: f64;\n}\nexport const MAPS = [];\n")).toThrow("core/layout.ts:2:6: field type f64 is not supported in a layout");
  });
});
