/* agent/ipam.ts: unique addresses, idempotent allocate/release, persistence, exhaustion. */
import fc from "fast-check";
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterAll, describe, expect, it } from "vitest";
import { Ipam, IpamError } from "../../agent/ipam.ts";

const dir = mkdtempSync(join(tmpdir(), "ciliate-ipam-"));
let n = 0;
const file = () => join(dir, `ipam-${n++}.json`);
afterAll(() => rmSync(dir, { recursive: true, force: true }));

/** Under any sequence of allocate/release, no address is held by two owners and every one is inside `cidr`. */
function noAddressHeldTwice(cidr: string): void {
  fc.assert(
    fc.property(fc.array(fc.tuple(fc.boolean(), fc.integer({ min: 0, max: 7 })), { maxLength: 60 }), (ops) => {
      const ipam = new Ipam(cidr, file());
      const held = new Map<string, string>();
      for (const [alloc, o] of ops) {
        const owner = `c${o}`;
        if (alloc) {
          const ip = ipam.allocate(owner);
          expect(ipam.contains(ip)).toBe(true);
          for (const [other, oip] of held) if (other !== owner) expect(oip).not.toBe(ip);
          held.set(owner, ip);
        } else {
          ipam.release(owner);
          held.delete(owner);
        }
      }
      expect(Object.keys(ipam.allocations()).length).toBe(held.size);
    }),
    { numRuns: 100 },
  );
}

describe("Ipam", () => {
  it("hands out addresses from the pod CIDR, skipping the network, router and broadcast addresses", () => {
    const ipam = new Ipam("10.244.1.0/29", file());
    const got = ["a", "b", "c", "d", "e"].map((o) => ipam.allocate(o));
    expect(got).toEqual(["10.244.1.2", "10.244.1.3", "10.244.1.4", "10.244.1.5", "10.244.1.6"]);
    expect(() => ipam.allocate("f")).toThrow(IpamError);
  });

  it("answers the same address to the same owner, and DEL (release) is idempotent", () => {
    const ipam = new Ipam("10.244.2.0/24", file());
    const a = ipam.allocate("ctr-a");
    expect(ipam.allocate("ctr-a")).toBe(a);
    expect(ipam.release("ctr-a")).toEqual([a]);
    expect(ipam.release("ctr-a")).toEqual([]);
    expect(ipam.release("never")).toEqual([]);
    expect(ipam.allocate("ctr-b")).not.toBe(a); // the cursor moved on
  });

  it("persists allocations: a new instance on the same file never re-issues a held address", () => {
    const f = file();
    const one = new Ipam("10.244.3.0/24", f);
    const a = one.allocate("x");
    const two = new Ipam("10.244.3.0/24", f);
    expect(two.ipOf("x")).toBe(a);
    expect(two.allocate("y")).not.toBe(a);
  });

  it("rejects a bad CIDR", () => {
    expect(() => new Ipam("10.244.0.0/33", file())).toThrow(IpamError);
    expect(() => new Ipam("nonsense", file())).toThrow(IpamError);
  });

  it("property: under any sequence of allocate/release, no address is held by two owners", () => noAddressHeldTwice("10.244.4.0/28"));
});

describe("Ipam for an IPv6 pod CIDR (dual stack)", () => {
  it("hands out canonical IPv6 addresses from ::2, never the router (::1) nor the last address", () => {
    const ipam = new Ipam("fd00:10:244:1::/126", file());
    expect(ipam.family).toBe(6);
    expect(ipam.allocate("a")).toBe("fd00:10:244:1::2");
    expect(() => ipam.allocate("b")).toThrow(/has no free address/);
    expect(ipam.contains("fd00:10:244:1::1")).toBe(false);
    expect(ipam.contains("fd00:10:244:1::3")).toBe(false);
    expect(ipam.contains("10.0.0.2")).toBe(false);
  });

  it("allocates in a /64 without walking it, persists, and keeps IPv6 owners apart", () => {
    const f = file();
    const one = new Ipam("fd00:10:244:7::/64", f);
    const got = ["a", "b", "c"].map((o) => one.allocate(o));
    expect(got).toEqual(["fd00:10:244:7::2", "fd00:10:244:7::3", "fd00:10:244:7::4"]);
    one.release("b");
    const two = new Ipam("fd00:10:244:7::/64", f);
    expect(two.ipOf("a")).toBe("fd00:10:244:7::2");
    expect(two.allocate("d")).toBe("fd00:10:244:7::5");
  });

  it("rejects IPv6 prefixes outside /64../126 and a mixed-up address", () => {
    expect(() => new Ipam("fd00::/48", file())).toThrow(/IPv6 \/64 to \/126/);
    expect(() => new Ipam("fd00::/127", file())).toThrow(IpamError);
    expect(() => new Ipam("fd00::zz/64", file())).toThrow(IpamError);
  });

  it("property: an IPv6 range behaves like an IPv4 one (no address held twice, all inside the CIDR)", () => noAddressHeldTwice("fd00:4::/124"));
});
