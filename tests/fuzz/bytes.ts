// Shared by the proxy fuzzers: mutations of valid messages as fast-check arbitraries.
import fc from "fast-check";

/** `b` with up to `maxFlips` bytes changed, maybe cut short, maybe with up to `maxTail` bytes appended. */
export function mutate(b: Buffer, maxFlips = 6, maxTail = 20): fc.Arbitrary<Buffer> {
  return fc
    .record({ flips: fc.array(fc.tuple(fc.nat(), fc.integer({ min: 0, max: 255 })), { maxLength: maxFlips }), cut: fc.option(fc.nat()), tail: fc.uint8Array({ maxLength: maxTail }) })
    .map(({ flips, cut, tail }) => {
      const m = Buffer.from(b);
      for (const [at, v] of flips) if (m.length) m[at % m.length] = v;
      return Buffer.concat([cut === null ? m : m.subarray(0, cut % (m.length + 1)), Buffer.from(tail)]);
    });
}
