// Unit tests (no kernel needed) for the struct __sk_buff context codec of datapath/test-run.ts.
import fc from "fast-check";
import { describe, expect, it } from "vitest";
import { decodeSkbContext, encodeSkbContext, SKB_CTX_SIZE } from "./test-run.ts";
import { BpfErrorCode } from "./errors.ts";

describe("SkbContext codec", () => {
  it("places the accepted fields at their uapi offsets and leaves every other byte zero", () => {
    const b = encodeSkbContext({ mark: 0x11223344, priority: 7, ingressIfindex: 3, ifindex: 4, cb: [1, 2, 3, 4, 0xffffffff], tstamp: 5n, wireLen: 100, gsoSegs: 2, gsoSize: 1400, hwtstamp: 9n });
    expect(b.length).toBe(SKB_CTX_SIZE);
    const dv = new DataView(b.buffer);
    expect(dv.getUint32(8, true)).toBe(0x11223344);
    expect(dv.getUint32(32, true)).toBe(7);
    expect(dv.getUint32(36, true)).toBe(3);
    expect(dv.getUint32(40, true)).toBe(4);
    expect(dv.getUint32(48 + 16, true)).toBe(0xffffffff);
    expect(dv.getBigUint64(152, true)).toBe(5n);
    expect(dv.getUint32(160, true)).toBe(100);
    expect(dv.getUint32(164, true)).toBe(2);
    expect(dv.getUint32(176, true)).toBe(1400);
    expect(dv.getBigUint64(184, true)).toBe(9n);
    const allowed = new Set<number>();
    for (const [off, len] of [[8, 4], [32, 12], [48, 20], [152, 16], [176, 4], [184, 8]]) for (let i = 0; i < len!; i++) allowed.add(off! + i);
    for (let i = 0; i < SKB_CTX_SIZE; i++) if (!allowed.has(i)) expect(b[i], `byte ${i}`).toBe(0);
  });

  it("decode(encode(x)) = x for any accepted fields", () => {
    const u32 = fc.integer({ min: 0, max: 0xffffffff });
    const u64 = fc.bigInt({ min: 0n, max: (1n << 64n) - 1n });
    fc.assert(
      fc.property(
        fc.record({ mark: u32, priority: u32, ingressIfindex: u32, ifindex: u32, cb: fc.array(u32, { minLength: 5, maxLength: 5 }), tstamp: u64, wireLen: u32, gsoSegs: u32, gsoSize: u32, hwtstamp: u64 }),
        (ctx) => {
          expect(decodeSkbContext(encodeSkbContext(ctx))).toEqual(ctx);
        },
      ),
    );
  });

  it("rejects more than five cb words", () => {
    expect(() => encodeSkbContext({ cb: [1, 2, 3, 4, 5, 6] })).toThrow(expect.objectContaining({ code: BpfErrorCode.BadArgument }));
  });
});
