// Unit tests for core/csum.ts: the incremental checksum updates against a checksum recomputed from
// scratch, and the two places where the kernel's helpers differ (a zero sum written 0x0000 by
// csum_replace4 / inet_proto_csum_replace*, 0xffff by csum_replace2).
import { describe, expect, it } from "vitest";
import fc from "fast-check";
import { csumReplace2L3, csumReplace16, csumReplace32 } from "./csum";

/** Ones'-complement sum of 16-bit words, folded, not inverted. */
function sum16(words: number[]): number {
  let s = 0;
  for (const w of words) s += w & 0xffff;
  while (s > 0xffff) s = (s & 0xffff) + (s >>> 16);
  return s;
}
const csumOf = (words: number[]): number => ~sum16(words) & 0xffff;
const same = (a: number, b: number): boolean => a === b || (a === 0 && b === 0xffff) || (a === 0xffff && b === 0);

describe("incremental checksum updates", () => {
  it("agree with a checksum recomputed from scratch (up to the two ones'-complement zeros)", () => {
    fc.assert(
      fc.property(fc.array(fc.integer({ min: 0, max: 0xffff }), { minLength: 2, maxLength: 12 }), fc.nat(), fc.integer({ min: 0, max: 0xffffffff }), (words, at, to) => {
        const i = at % (words.length - 1);
        const before = csumOf(words);
        const from16 = words[i];
        const after16 = words.slice();
        after16[i] = to & 0xffff;
        expect(same(csumReplace16(before, from16, to & 0xffff), csumOf(after16))).toBe(true);
        expect(same(csumReplace2L3(before, from16, to & 0xffff), csumOf(after16))).toBe(true);
        const from32 = ((words[i] << 16) | words[i + 1]) >>> 0;
        const after32 = words.slice();
        after32[i] = to >>> 16;
        after32[i + 1] = to & 0xffff;
        expect(same(csumReplace32(before, from32, to >>> 0), csumOf(after32))).toBe(true);
      }),
    );
  });

  it("write a zero sum as the kernel does: 0x0000 for csum_replace4 / inet_proto_csum_replace2, 0xffff for csum_replace2", () => {
    // ~sum == 0: old checksum 0xffff, a 16-bit field 0xffff becomes 0x0000.
    expect(csumReplace16(0xffff, 0xffff, 0)).toBe(0);
    expect(csumReplace32(0xffff, 0xffff, 0)).toBe(0);
    expect(csumReplace2L3(0xffff, 0xffff, 0)).toBe(0xffff);
  });
});
