import { describe, expect, it } from "vitest";
import fc from "fast-check";
import { formatAddr, parseIpv6 } from "../host/ip.ts";
import { buildFrame, decodeFrame, TCP_FLAGS } from "./packets.ts";

describe("packet builder", () => {
  it("builds IPv4 TCP frames with valid checksums that decode back", () => {
    const f = buildFrame({ src: "10.0.0.1", dst: "10.96.0.10", proto: "TCP", sport: 40000, dport: 80, tcpFlags: TCP_FLAGS.SYN });
    const d = decodeFrame(f)!;
    expect(d).toMatchObject({ family: 4, src: "10.0.0.1", dst: "10.96.0.10", sport: 40000, dport: 80, tcpFlags: 2 });
    expect(d.l3ChecksumOk && d.l4ChecksumOk).toBe(true);
  });

  it("detects a corrupted checksum", () => {
    const f = buildFrame({ src: "10.0.0.1", dst: "10.0.0.2", proto: "UDP", sport: 1, dport: 53, payload: Uint8Array.of(1, 2, 3) });
    f[14 + 20 + 8] ^= 0xff;
    expect(decodeFrame(f)!.l4ChecksumOk).toBe(false);
  });

  it("round-trips IPv6 ICMPv6 echo", () => {
    const d = decodeFrame(buildFrame({ src: "fd00::1", dst: "fd00::a:2", proto: "ICMPv6", icmpType: 128, icmpId: 7 }))!;
    expect(d).toMatchObject({ family: 6, src: "fd00::1", dst: "fd00::a:2", icmpType: 128, l4ChecksumOk: true });
  });

  it("formats and parses IPv6 addresses consistently", () => {
    fc.assert(
      fc.property(fc.uint8Array({ minLength: 16, maxLength: 16 }), (b) => {
        expect(Array.from(parseIpv6(formatAddr(b, 6)))).toEqual(Array.from(b));
      }),
    );
  });
});
