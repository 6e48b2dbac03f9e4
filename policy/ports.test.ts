import { describe, expect, it } from "vitest";
import fc from "fast-check";
import { icmpType, portInPrefix, portRangeToPrefixes } from "./ports.ts";

describe("portRangeToPrefixes", () => {
  it("wildcards 0-0 and 0-65535", () => {
    expect(portRangeToPrefixes(0, 0)).toEqual([{ port: 0, prefix: 0 }]);
    expect(portRangeToPrefixes(0, 65535)).toEqual([{ port: 0, prefix: 0 }]);
  });
  it("exact port when end <= start", () => {
    expect(portRangeToPrefixes(80, 0)).toEqual([{ port: 80, prefix: 16 }]);
    expect(portRangeToPrefixes(80, 80)).toEqual([{ port: 80, prefix: 16 }]);
  });
  it("16-31 is a single /12 block", () => {
    expect(portRangeToPrefixes(16, 31)).toEqual([{ port: 16, prefix: 12 }]);
  });
  it("443-450 splits into aligned blocks", () => {
    expect(portRangeToPrefixes(443, 450)).toEqual([
      { port: 443, prefix: 16 },
      { port: 444, prefix: 14 },
      { port: 448, prefix: 15 },
      { port: 450, prefix: 16 },
    ]);
  });
  it("property: blocks cover exactly the range, without overlap", () => {
    fc.assert(
      fc.property(fc.integer({ min: 1, max: 65535 }), fc.integer({ min: 0, max: 2000 }), fc.integer({ min: 0, max: 65535 }), (start, len, probe) => {
        const end = Math.min(65535, start + len);
        const blocks = portRangeToPrefixes(start, end);
        const hits = blocks.filter((b) => portInPrefix(probe, b)).length;
        expect(hits).toBe(probe >= start && probe <= end ? 1 : 0);
      }),
      { numRuns: 200 },
    );
  });
});

describe("icmpType", () => {
  it("numbers and names per family", () => {
    expect(icmpType("IPv4", 8)).toBe(8);
    expect(icmpType("IPv4", "EchoRequest")).toBe(8);
    expect(icmpType("IPv6", "EchoRequest")).toBe(128);
    expect(icmpType("IPv4", 256)).toBeUndefined();
    expect(icmpType("IPv4", "Bogus")).toBeUndefined();
    expect(icmpType("IPv6", "PacketTooBig")).toBe(2);
  });
});
