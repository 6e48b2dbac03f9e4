// Unit tests for core/nat.ts (snatEgress / snatRevIngress) through the real Snat LRU map and the
// parser, JS semantics; checksums verified from scratch by core/net.testutil.ts.
import { beforeAll, beforeEach, describe, expect, it } from "vitest";
import fc from "fast-check";
import { snatEgress, snatRevIngress, NAT_PUNT_TO_STACK, SNAT_COLLISION_RETRIES } from "./nat";
import { read16 } from "./env";
import { mapCount } from "./maps";
import * as L from "./gen/layout";
import { DROP_NAT_NO_MAPPING, DROP_NO_CONFIG } from "./drop-reasons";
import { FAMILY_IPV4, TUPLE_F_IN } from "./constants";
import { clearAll, createMaps, decode, frame, Flow, info, load, nbe16, pad16, packetBytes, setConfig, upsert, v4, v6 } from "./net.testutil";

const NODE = v4("192.168.1.10");
const BACKEND = v4("10.244.7.9");
const CLIENT = v4("203.0.113.5");

/** A NodePort request after DNAT: client → remote backend. */
const req = (sport: number, proto: 6 | 17 = 6, src = CLIENT): Flow => ({ family: 4, proto, src, dst: BACKEND, sport, dport: 8080 });

function snat(f: Flow, now = 100): { rc: number; out: ReturnType<typeof decode> } {
  const [pkt, prc] = load(frame(f));
  expect(prc).toBe(0);
  const rc = snatEgress(pkt, info, now);
  return { rc, out: decode(packetBytes()) };
}

beforeAll(() => createMaps());
beforeEach(() => {
  clearAll();
  setConfig();
});

describe("snatEgress / snatRevIngress", () => {
  it("SNATs to the node IP, keeps an in-range source port, and reverses the reply; checksums verify", () => {
    fc.assert(fc.property(fc.integer({ min: 32768, max: 65535 }), fc.constantFrom<6 | 17>(6, 17), fc.uint8Array({ maxLength: 30 }), (sport, proto, payload) => {
      clearAll();
      const f = { ...req(sport, proto), payload: Array.from(payload) };
      const { rc, out } = snat(f);
      expect(rc).toBe(0);
      expect([out.src, out.sport, out.dst, out.dport]).toEqual([NODE, sport, BACKEND, 8080]);
      expect(out.l3ok && out.l4ok).toBe(true);
      expect(mapCount(L.MapId.Snat)).toBe(2); // both directions
      // The reply comes back to the node and is restored to the client.
      const [rp] = load(frame({ family: 4, proto, src: BACKEND, dst: NODE, sport: 8080, dport: sport, payload: Array.from(payload) }));
      expect(snatRevIngress(rp, info)).toBe(0);
      const r = decode(packetBytes());
      expect([r.src, r.sport, r.dst, r.dport]).toEqual([BACKEND, 8080, CLIENT, sport]);
      expect(r.l3ok && r.l4ok).toBe(true);
      expect(read16(info + L.PACKET_INFO_DPORT)).toBe(sport);
    }), { numRuns: 60 });
  });

  it("allocates a port in [nodePortMax + 1, 65535] for an out-of-range source port, deterministically", () => {
    const a = snat(req(1234));
    expect(a.rc).toBe(0);
    expect(a.out.sport).toBeGreaterThanOrEqual(32768);
    clearAll();
    expect(snat(req(1234)).out.sport).toBe(a.out.sport); // same packet, same maps → same port
    // The same flow again reuses its mapping.
    expect(snat(req(1234)).out.sport).toBe(a.out.sport);
    expect(mapCount(L.MapId.Snat)).toBe(2);
    // A different configured range is honoured.
    clearAll();
    setConfig({ nodePortMax: 60000 });
    expect(snat(req(1234)).out.sport).toBeGreaterThan(60000);
  });

  it("two clients with the same source port to the same backend get different ports", () => {
    const a = snat(req(40000, 6, v4("203.0.113.5")));
    const b = snat(req(40000, 6, v4("203.0.113.6")));
    expect(a.rc).toBe(0);
    expect(b.rc).toBe(0);
    expect(a.out.sport).toBe(40000);
    expect(b.out.sport).not.toBe(40000);
    // Each reply goes back to its own client.
    for (const [port, cli] of [[a.out.sport, v4("203.0.113.5")], [b.out.sport, v4("203.0.113.6")]] as const) {
      const [rp] = load(frame({ family: 4, proto: 6, src: BACKEND, dst: NODE, sport: 8080, dport: port }));
      expect(snatRevIngress(rp, info)).toBe(0);
      expect(decode(packetBytes()).dst).toEqual(cli);
    }
  });

  it("gives up with DROP_NAT_NO_MAPPING after SNAT_COLLISION_RETRIES taken candidates", () => {
    // Occupy the reply keys of ports 40000..40031 (the candidates for source port 40000).
    for (let p = 40000; p < 40000 + SNAT_COLLISION_RETRIES; p++) {
      upsert(L.MapId.Snat, [...pad16(NODE), ...pad16(BACKEND), ...nbe16(p), ...nbe16(8080), 6, TUPLE_F_IN, FAMILY_IPV4, 0], L.CT_TUPLE_SIZE,
        [[L.SNAT_VALUE_TO_ADDR, 16, pad16(v4("198.51.100.1"))], [L.SNAT_VALUE_FAMILY, 1, FAMILY_IPV4]], L.SNAT_VALUE_SIZE);
    }
    const f = req(40000);
    const { rc } = snat(f);
    expect(rc).toBe(-DROP_NAT_NO_MAPPING);
    expect(packetBytes()).toEqual(frame(f)); // untouched
    // One more free port at the end of the window is found.
    clearAll();
    setConfig();
    for (let p = 40000; p < 40000 + SNAT_COLLISION_RETRIES - 1; p++) {
      upsert(L.MapId.Snat, [...pad16(NODE), ...pad16(BACKEND), ...nbe16(p), ...nbe16(8080), 6, TUPLE_F_IN, FAMILY_IPV4, 0], L.CT_TUPLE_SIZE,
        [[L.SNAT_VALUE_FAMILY, 1, FAMILY_IPV4]], L.SNAT_VALUE_SIZE);
    }
    const ok = snat(f);
    expect([ok.rc, ok.out.sport]).toEqual([0, 40000 + SNAT_COLLISION_RETRIES - 1]);
  });

  it("a reply without a mapping is punted untouched; IPv6 without a node IPv6 address is not SNATed", () => {
    const reply = frame({ family: 4, proto: 6, src: BACKEND, dst: NODE, sport: 8080, dport: 45000 });
    const [rp] = load(reply);
    expect(snatRevIngress(rp, info)).toBe(NAT_PUNT_TO_STACK);
    expect(packetBytes()).toEqual(reply);
    // The config has no nodeIpv6: an IPv6 flow cannot be SNATed (fails closed).
    const [p6] = load(frame({ family: 6, proto: 6, src: v6("fd00::1"), dst: v6("fd00::2"), sport: 1, dport: 2 }));
    expect(snatEgress(p6, info, 1)).toBe(-DROP_NO_CONFIG);
  });
});
