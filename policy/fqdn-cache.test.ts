import fc from "fast-check";
import { describe, expect, it } from "vitest";
import { FqdnCache } from "./fqdn-cache.ts";

describe("FqdnCache", () => {
  it("learns A and AAAA answers under the FQDN form of the name, expiring with the TTL", () => {
    const c = new FqdnCache();
    expect(c.learn("API.github.com", ["140.82.112.5", "2001:DB8::1", "not-an-ip"], 30, 100)).toEqual({ changed: true, expires: 130 });
    expect(c.state(100)).toEqual([{ name: "api.github.com.", ips: ["140.82.112.5", "2001:db8::1"] }]);
    expect(c.state(129)).toHaveLength(1);
    expect(c.state(130)).toEqual([]);
    expect(c.nextExpiry()).toBe(130);
    expect(c.expire(130)).toBe(true);
    expect(c.entries()).toEqual([]);
    expect(c.expire(131)).toBe(false);
  });
  it("the min TTL raises short TTLs (--tofqdns-min-ttl)", () => {
    const c = new FqdnCache(3600);
    expect(c.learn("a.io", ["10.0.0.1"], 5, 0).expires).toBe(3600);
    expect(c.state(3599)).toHaveLength(1);
    expect(c.state(3600)).toEqual([]);
  });
  it("a new answer extends but never shortens; addresses missing from it keep their own expiry", () => {
    const c = new FqdnCache();
    c.learn("a.io", ["10.0.0.1", "10.0.0.2"], 100, 0);
    expect(c.learn("a.io", ["10.0.0.1"], 10, 50).changed).toBe(false);
    expect(c.entries()).toEqual([
      { name: "a.io.", ip: "10.0.0.1", expires: 100 },
      { name: "a.io.", ip: "10.0.0.2", expires: 100 },
    ]);
    c.learn("a.io", ["10.0.0.1"], 200, 50);
    expect(c.state(150)).toEqual([{ name: "a.io.", ips: ["10.0.0.1"] }]);
  });
  it("refuses a negative min TTL", () => expect(() => new FqdnCache(-1)).toThrow(/non-negative/));
  it("entries() restored into a new cache give the same state (an agent restart)", () => {
    const a = new FqdnCache();
    a.learn("a.io", ["10.0.0.1", "2001:db8::1"], 30, 0);
    a.learn("b.io", ["10.0.0.2"], 90, 10);
    const b = new FqdnCache();
    for (const e of a.entries()) b.restore(e);
    b.restore({ name: "a.io", ip: "10.0.0.1", expires: 5 }); // older: never shortens
    b.restore({ name: "x.io", ip: "garbage", expires: 50 });
    for (const t of [0, 29, 30, 99, 100]) expect(b.state(t)).toEqual(a.state(t));
  });
  it("state(now) holds exactly the pairs whose latest expiry is after now (property)", () =>
    fc.assert(
      fc.property(
        fc.array(fc.record({ n: fc.constantFrom("a.io", "b.io"), ip: fc.constantFrom("10.0.0.1", "10.0.0.2", "::1"), ttl: fc.nat(50), at: fc.nat(50) }), { maxLength: 20 }),
        fc.nat(120),
        fc.nat(10),
        (answers, now, minTtl) => {
          const c = new FqdnCache(minTtl);
          const sorted = [...answers].sort((x, y) => x.at - y.at);
          const want = new Map<string, number>();
          for (const a of sorted) {
            c.learn(a.n, [a.ip], a.ttl, a.at);
            const k = `${a.n}.|${a.ip}`;
            want.set(k, Math.max(want.get(k) ?? 0, a.at + Math.max(a.ttl, minTtl)));
          }
          const got = c.state(now).flatMap((e) => e.ips.map((ip) => `${e.name}|${ip}`)).sort();
          expect(got).toEqual([...want].filter(([, exp]) => exp > now).map(([k]) => k).sort());
        },
      ),
    ));
});
