/*
 * Golden and determinism tests for the function generator. The golden fixture
 * (tests/fixtures/codegen/golden/sample.ts) uses every supported construct; its expected C is checked in
 * as sample.h and compared byte for byte. `UPDATE_GOLDEN=1 npx vitest run tests/codegen/golden.test.ts`
 * rewrites it (review the diff before committing).
 */
import { describe, expect, it } from "vitest";
import { readFileSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { createCoreProgram, emitCoreHeader, generateCoreHeader } from "../../codegen/functions.ts";
import { GOLDEN_HEADER, GOLDEN_SOURCE, ROOT, fixtureProgram, model } from "./helpers.ts";

function goldenText(program = fixtureProgram()): string {
  return generateCoreHeader(ROOT, model, { roots: [{ file: GOLDEN_SOURCE }], program });
}

describe("codegen golden output", () => {
  it("matches tests/fixtures/codegen/golden/sample.h byte for byte", () => {
    const text = goldenText();
    const path = join(ROOT, GOLDEN_HEADER);
    if (process.env.UPDATE_GOLDEN === "1") writeFileSync(path, text);
    expect(text).toBe(readFileSync(path, "utf8"));
  });

  it("emits callees before callers, each with its source comment", () => {
    const text = goldenText();
    const pos = (s: string): number => text.indexOf(s);
    expect(pos("static __always_inline __u32 ciliate_mix(")).toBeGreaterThan(0);
    expect(pos("ciliate_mix(")).toBeLessThan(pos("ciliate_decide("));
    expect(pos("ciliate_count_packet(")).toBeLessThan(pos("static __always_inline __u32 ciliate_decide("));
    expect(text).toMatch(/\/\* tests\/fixtures\/codegen\/golden\/sample\.ts:\d+ decide \*\//);
    // Seams are bound, never translated.
    expect(text).not.toMatch(/ciliate_pkt_load16\(struct __sk_buff \*pkt, __u32 off\)\n\{/);
    expect(text).toContain("bpf_map_lookup_elem(&ciliate_policy_v1, key)");
    expect(text).toMatch(/__u8 \*key = ciliate_scratch\(\d+, sizeof\(struct policy_key\)\);/);
    expect(text).toContain("((struct policy_key *)key)->sec_label = identity;");
    expect(text).not.toContain("#line");
  });
});

describe("codegen determinism", () => {
  it("generates the same bytes twice from separate programs (fixture)", () => {
    const a = goldenText(createCoreProgram(ROOT, [GOLDEN_SOURCE]));
    const b = goldenText(createCoreProgram(ROOT, [GOLDEN_SOURCE]));
    expect(a).toBe(b);
  });

  it("generates the same bytes twice for the real core (bpf/gen/core.h)", () => {
    const quiet = (): void => {};
    const a = emitCoreHeader(ROOT, model, quiet);
    const b = emitCoreHeader(ROOT, model, quiet);
    expect(a.length).toBeGreaterThan(0);
    expect(a).toBe(b);
  });
});
