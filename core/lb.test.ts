// Unit tests for core/lb.ts through the real maps (core/maps.ts) and parser (core/packet.ts), JS
// semantics: DNAT / rev-NAT output verified by an independent from-scratch checksum routine
// (core/net.testutil.ts), pure backend selection, terminating backends, affinity under a fake clock,
// services without backends, Maglev selection and hairpin (loopback) translation.
import { beforeAll, beforeEach, describe, expect, it } from "vitest";
import fc from "fast-check";
import { lbDnat, lbFlowHash, lbLookupService, lbRevNat, lbSelectBackend, lbServiceBackend, LB_DNAT_LOOPBACK, LB_REVNAT_NO_ENTRY } from "./lb";
import { maglevBuild } from "./maglev";
import { allocStatic } from "./alloc";
import { read8, read16, read32, write32 } from "./env";
import { mapDelete, mapLookup } from "./maps";
import * as L from "./gen/layout";
import { BE_STATE_ACTIVE, BE_STATE_TERMINATING, FAMILY_IPV4, FAMILY_IPV6, LB_ALG_MAGLEV, LB_ALG_RANDOM, SVC_F_AFFINITY, TCP_ACK, TCP_SYN } from "./constants";
import { B, bytesAt, clearAll, createMaps, decode, frame, Flow, info, le16, le32, load, nbe16, packetBytes, pad16, put, setConfig, upsert, v4, v6 } from "./net.testutil";
import { maglevHashString, packMaglevInput } from "../host/maglev";

interface Svc {
  vip: B;
  port: number;
  proto?: number;
  family?: number;
  revNat: number;
  backends: { id: number; ip: B; port: number; state?: number }[];
  affinityTimeout?: number;
  maglev?: boolean;
  /** Write a wildcard (proto 0, port 0) entry only. */
  wildcard?: boolean;
}

function svcKeyBytes(s: Svc, slot: number, wildcard = false): B {
  const fam = s.family ?? FAMILY_IPV4;
  return [...pad16(s.vip), ...nbe16(wildcard ? 0 : s.port), ...le16(slot), wildcard ? 0 : s.proto ?? 6, 0, fam, 0];
}

function addService(s: Svc): void {
  const fam = s.family ?? FAMILY_IPV4;
  const active = s.backends.filter((b) => (b.state ?? 0) === BE_STATE_ACTIVE);
  const inactive = s.backends.filter((b) => (b.state ?? 0) !== BE_STATE_ACTIVE);
  const alg = s.maglev ? LB_ALG_MAGLEV : LB_ALG_RANDOM;
  upsert(L.MapId.Services, svcKeyBytes(s, 0, s.wildcard), L.SERVICE_KEY_SIZE, [
    [L.SERVICE_VALUE_BACKEND_ID, 4, ((alg << 24) | (s.affinityTimeout ?? 0)) >>> 0],
    [L.SERVICE_VALUE_COUNT, 2, s.wildcard ? 0 : active.length],
    [L.SERVICE_VALUE_QCOUNT, 2, s.wildcard ? 0 : inactive.length],
    [L.SERVICE_VALUE_REV_NAT_INDEX, 2, s.revNat],
    [L.SERVICE_VALUE_FLAGS, 1, s.affinityTimeout ? SVC_F_AFFINITY : 0],
  ], L.SERVICE_VALUE_SIZE);
  if (s.wildcard) return;
  [...active, ...inactive].forEach((b, i) => {
    upsert(L.MapId.Services, svcKeyBytes(s, i + 1), L.SERVICE_KEY_SIZE, [[L.SERVICE_VALUE_BACKEND_ID, 4, b.id], [L.SERVICE_VALUE_REV_NAT_INDEX, 2, s.revNat]], L.SERVICE_VALUE_SIZE);
    setBackend(b.id, b.ip, b.port, b.state ?? 0, fam);
  });
  upsert(L.MapId.RevNat, le16(s.revNat), L.REV_NAT_KEY_SIZE, [[L.REV_NAT_VALUE_ADDR, 16, pad16(s.vip)], [L.REV_NAT_VALUE_PORT_BE, 2, (s.port >> 8) | ((s.port & 255) << 8)], [L.REV_NAT_VALUE_FAMILY, 1, fam]], L.REV_NAT_VALUE_SIZE);
  if (s.maglev) {
    const m = 251;
    const input = allocStatic(160 * active.length, 8);
    const table = allocStatic(4 * m, 8);
    put(input, Array.from(packMaglevInput(active.map((b) => ({ id: b.id, hashString: maglevHashString({ addr: b.ip.join("."), port: b.port, protocol: "TCP" }) }))).bytes));
    expect(maglevBuild(input, active.length, m, 0x24b7ef82, table)).toBe(0);
    for (let j = 0; j < m; j++) upsert(L.MapId.Maglev, [...le16(s.revNat), 0, 0, ...le32(j)], L.MAGLEV_KEY_SIZE, [[0, 4, read32(table + 4 * j)]], 4);
  }
}

function setBackend(id: number, ip: B, port: number, state: number, fam = FAMILY_IPV4): void {
  upsert(L.MapId.Backends, le32(id), 4, [
    [L.BACKEND_ADDR, 16, pad16(ip)],
    [L.BACKEND_PORT_BE, 2, (port >> 8) | ((port & 255) << 8)],
    [L.BACKEND_PROTO, 1, 6],
    [L.BACKEND_STATE, 1, state],
    [L.BACKEND_FAMILY, 1, fam],
  ], L.BACKEND_SIZE);
}

const svcKey = allocStatic(L.SERVICE_KEY_SIZE, 8);
const VIP = v4("10.96.0.10");
const CLIENT = v4("10.244.0.5");
const B1 = v4("10.244.1.11");
const B2 = v4("10.244.1.12");
const B3 = v4("10.244.2.13");
const TWO: Svc = { vip: VIP, port: 80, revNat: 7, backends: [{ id: 1, ip: B1, port: 8080 }, { id: 2, ip: B2, port: 8080 }] };

/** Loads the flow's packet, looks the service up and returns the chosen backend id (0 = none). */
function choose(f: Flow, now: number, eastWest = false): number {
  const [, rc] = load(frame(f));
  expect(rc).toBe(0);
  const svc = lbLookupService(info, svcKey, eastWest);
  if (svc === 0) return -1;
  const sel = lbServiceBackend(svcKey, svc, info, now);
  return sel === 0 ? 0 : read32(sel + L.LB_SELECTION_BACKEND_ID);
}
const tcpFlow = (sport: number, flags = TCP_SYN, src = CLIENT): Flow => ({ family: 4, proto: 6, src, dst: VIP, sport, dport: 80, tcpFlags: flags });

beforeAll(() => createMaps());
beforeEach(() => {
  clearAll();
  setConfig();
});

describe("DNAT and reverse NAT checksums", () => {
  const addr4 = fc.tuple(fc.integer({ min: 1, max: 223 }), fc.integer({ min: 0, max: 255 }), fc.integer({ min: 0, max: 255 }), fc.integer({ min: 1, max: 254 }));
  const port = fc.integer({ min: 1, max: 65535 });

  it("IPv4 TCP/UDP DNAT then rev-NAT: headers rewritten, every checksum verifies from scratch", () => {
    fc.assert(fc.property(addr4, addr4, addr4, port, port, port, fc.constantFrom<6 | 17>(6, 17), fc.boolean(), fc.uint8Array({ maxLength: 40 }),
      (cli, vip, be, sport, vport, bport, proto, noUdpCsum, payload) => {
        clearAll();
        const s: Svc = { vip, port: vport, proto, revNat: 9, backends: [{ id: 5, ip: be, port: bport }] };
        addService(s);
        const f: Flow = { family: 4, proto, src: cli, dst: vip, sport, dport: vport, payload: Array.from(payload), noUdpCsum };
        const [pkt] = load(frame(f));
        const svc = lbLookupService(info, svcKey, false);
        expect(svc).not.toBe(0);
        const sel = lbServiceBackend(svcKey, svc, info, 100);
        expect(read32(sel)).toBe(5);
        const loop = cli.join() === be.join();
        expect(lbDnat(pkt, info, sel + L.LB_SELECTION_BACKEND)).toBe(loop ? LB_DNAT_LOOPBACK : 0);
        const d = decode(packetBytes());
        expect(d.dst).toEqual(be);
        expect(d.dport).toBe(bport);
        expect(d.src).toEqual(loop ? [169, 254, 42, 1] : cli);
        expect(d.l3ok).toBe(true);
        expect(d.l4ok).toBe(true);
        if (proto === 17 && noUdpCsum) expect(d.l4csum).toBe(0);
        // PacketInfo follows the rewrite.
        expect(bytesAt(info + L.PACKET_INFO_DADDR, 4)).toEqual(be);
        expect(read16(info + L.PACKET_INFO_DPORT)).toBe(bport);
        // The reply from the backend, reverse-translated to the VIP.
        const reply: Flow = { family: 4, proto, src: be, dst: d.src, sport: bport, dport: sport, payload: Array.from(payload), noUdpCsum };
        const [rp] = load(frame(reply));
        expect(lbRevNat(rp, info, 9)).toBe(0);
        const r = decode(packetBytes());
        expect(r.src).toEqual(vip);
        expect(r.sport).toBe(vport);
        expect(r.dst).toEqual(cli);
        expect(r.l3ok && r.l4ok).toBe(true);
      }), { numRuns: 150 });
  });

  it("IPv6 UDP and TCP DNAT and rev-NAT keep the L4 checksum valid", () => {
    const vip = v6("fd00:96::10"), cli = v6("fd00:244::5"), be = v6("fd00:244:1::b");
    for (const proto of [6, 17] as const) {
      clearAll();
      addService({ vip, port: 53, proto, family: FAMILY_IPV6, revNat: 3, backends: [{ id: 8, ip: be, port: 5353 }] });
      const [pkt] = load(frame({ family: 6, proto, src: cli, dst: vip, sport: 40000, dport: 53 }));
      const svc = lbLookupService(info, svcKey, false);
      const sel = lbServiceBackend(svcKey, svc, info, 1);
      expect(lbDnat(pkt, info, sel + L.LB_SELECTION_BACKEND)).toBe(0);
      const d = decode(packetBytes());
      expect([d.dst, d.dport, d.l4ok]).toEqual([be, 5353, true]);
      const [rp] = load(frame({ family: 6, proto, src: be, dst: cli, sport: 5353, dport: 40000 }));
      expect(lbRevNat(rp, info, 3)).toBe(0);
      const r = decode(packetBytes());
      expect([r.src, r.sport, r.l4ok]).toEqual([vip, 53, true]);
    }
  });

  it("backend port 0 keeps the service port; a missing rev-NAT entry leaves the packet alone", () => {
    addService({ ...TWO, backends: [{ id: 1, ip: B1, port: 0 }] });
    const [pkt] = load(frame(tcpFlow(1234)));
    const sel = lbServiceBackend(svcKey, lbLookupService(info, svcKey, false), info, 1);
    expect(lbDnat(pkt, info, sel + L.LB_SELECTION_BACKEND)).toBe(0);
    expect(decode(packetBytes()).dport).toBe(80);
    const reply = frame({ family: 4, proto: 6, src: B1, dst: CLIENT, sport: 80, dport: 1234 });
    const [rp] = load(reply);
    expect(lbRevNat(rp, info, 99)).toBe(LB_REVNAT_NO_ENTRY);
    expect(packetBytes()).toEqual(reply);
  });

  it("hairpin: a pod reaching itself is SNATed to the loopback address and rev-NAT restores it", () => {
    addService({ ...TWO, backends: [{ id: 1, ip: CLIENT, port: 8080 }] });
    setConfig({ loopbackBe: 0x0142fea9 }); // 169.254.66.1
    const [pkt] = load(frame(tcpFlow(5555)));
    const sel = lbServiceBackend(svcKey, lbLookupService(info, svcKey, false), info, 1);
    expect(lbDnat(pkt, info, sel + L.LB_SELECTION_BACKEND)).toBe(LB_DNAT_LOOPBACK);
    const d = decode(packetBytes());
    expect([d.src, d.dst, d.dport, d.l3ok, d.l4ok]).toEqual([[169, 254, 66, 1], CLIENT, 8080, true, true]);
    const [rp] = load(frame({ family: 4, proto: 6, src: CLIENT, dst: [169, 254, 66, 1], sport: 8080, dport: 5555, tcpFlags: TCP_SYN | TCP_ACK }));
    expect(lbRevNat(rp, info, 7)).toBe(0);
    const r = decode(packetBytes());
    expect([r.src, r.sport, r.dst, r.dport, r.l3ok, r.l4ok]).toEqual([VIP, 80, CLIENT, 5555, true, true]);
  });
});

describe("backend selection", () => {
  it("is a pure function of packet and maps: same flow, fresh conntrack → same backend", () => {
    addService({ ...TWO, backends: [...TWO.backends, { id: 3, ip: B3, port: 8080 }] });
    const seen = new Set<number>();
    fc.assert(fc.property(fc.integer({ min: 1024, max: 65535 }), fc.integer({ min: 1, max: 254 }), (sport, host) => {
      const f = tcpFlow(sport, TCP_SYN, [10, 244, 3, host]);
      const first = choose(f, 10);
      expect([1, 2, 3]).toContain(first);
      seen.add(first);
      clearAll();
      addService({ ...TWO, backends: [...TWO.backends, { id: 3, ip: B3, port: 8080 }] });
      expect(choose(f, 99)).toBe(first);
      // lbSelectBackend alone agrees and is the documented hash: slot = hash % count + 1.
      load(frame(f));
      const svc = lbLookupService(info, svcKey, false);
      const h = lbFlowHash(info, false, 0x7ae34c0f);
      expect(lbSelectBackend(svcKey, svc, info, 5)).toBe([1, 2, 3][h % 3]);
    }), { numRuns: 60 });
    expect(seen.size).toBe(3); // flows spread over every backend
  });

  it("an established flow keeps its backend through conntrack even if the hash would change", () => {
    addService(TWO);
    const b = choose(tcpFlow(4000), 1);
    // Reorder the slots: the hash now maps elsewhere, but the CT_SERVICE entry pins the flow.
    addService({ ...TWO, backends: [...TWO.backends].reverse() });
    expect(choose(tcpFlow(4000, TCP_ACK), 2)).toBe(b);
    expect(choose(tcpFlow(4000, TCP_SYN), 3)).toBe(b); // a retransmitted SYN to an active backend keeps it
    // The entry expires (service any/tcp lifetime) → reselected by hash.
    expect(choose(tcpFlow(4000, TCP_ACK), 1 + 8000 + 1)).not.toBe(0);
  });

  it("terminating backends keep existing flows and get no new ones", () => {
    const svc3: Svc = { ...TWO, backends: [{ id: 1, ip: B1, port: 8080 }, { id: 2, ip: B2, port: 8080 }, { id: 3, ip: B3, port: 8080 }] };
    addService(svc3);
    // Find a flow pinned to backend 3.
    let sport = 0;
    for (let p = 1000; p < 2000 && sport === 0; p++) if (choose(tcpFlow(p), 1) === 3) sport = p;
    expect(sport).not.toBe(0);
    // Backend 3 starts terminating: the agent moves it behind the active slots (count 2, qcount 1).
    addService({ ...svc3, backends: [svc3.backends[0], svc3.backends[1], { ...svc3.backends[2], state: BE_STATE_TERMINATING }] });
    expect(choose(tcpFlow(sport, TCP_ACK), 2)).toBe(3); // draining flow continues
    expect([1, 2]).toContain(choose(tcpFlow(sport, TCP_SYN), 3)); // a SYN re-selects
    for (let p = 3000; p < 3200; p++) expect([1, 2]).toContain(choose(tcpFlow(p), 4)); // new flows avoid it
    // Even with no active backend left (count 0), the draining flow is still served.
    addService({ ...svc3, backends: svc3.backends.map((b) => ({ ...b, state: BE_STATE_TERMINATING })) });
    const pinned = choose(tcpFlow(3000, TCP_ACK), 5);
    expect([1, 2]).toContain(pinned);
    expect(choose(tcpFlow(9999), 5)).toBe(0); // … while new flows find no service
  });

  it("session affinity sticks while lastUsed + timeout > now, is refreshed on use, and expires", () => {
    const s: Svc = { ...TWO, affinityTimeout: 100, backends: [{ id: 1, ip: B1, port: 8080 }, { id: 2, ip: B2, port: 8080 }] };
    addService(s);
    const first = choose(tcpFlow(1111), 1000);
    const other = first === 1 ? 2 : 1;
    // Make the hash point at the other backend: only slot 1 → other, count 1.
    const only: Svc = { ...s, backends: [s.backends.find((b) => b.id === other)!, { ...s.backends.find((b) => b.id === first)!, state: BE_STATE_TERMINATING }] };
    addService(only);
    setBackend(first, first === 1 ? B1 : B2, 8080, BE_STATE_ACTIVE); // still active, but not in a slot
    expect(choose(tcpFlow(2222), 1050)).toBe(first); // affinity, new flow
    expect(choose(tcpFlow(3333), 1149)).toBe(first); // refreshed at 1050 → valid until < 1150
    expect(choose(tcpFlow(4444), 1248)).toBe(first); // refreshed at 1149
    expect(choose(tcpFlow(5555), 1349)).toBe(other); // 1248 + 100 ≤ 1349: expired → hash
    expect(choose(tcpFlow(6666), 1350)).toBe(other); // and the new affinity is recorded
  });

  it("affinity to a backend that is no longer active is ignored", () => {
    const s: Svc = { ...TWO, affinityTimeout: 1000, backends: [{ id: 1, ip: B1, port: 8080 }, { id: 2, ip: B2, port: 8080 }] };
    addService(s);
    const first = choose(tcpFlow(1111), 10);
    setBackend(first, first === 1 ? B1 : B2, 8080, BE_STATE_TERMINATING);
    addService({ ...s, backends: s.backends.map((b) => (b.id === first ? { ...b, state: BE_STATE_TERMINATING } : b)) });
    expect(choose(tcpFlow(2222), 20)).toBe(first === 1 ? 2 : 1);
  });

  it("Maglev services pick table[hash % M], the same for every packet of a flow", () => {
    const s: Svc = { ...TWO, maglev: true, backends: [{ id: 1, ip: B1, port: 8080 }, { id: 2, ip: B2, port: 8080 }, { id: 3, ip: B3, port: 8080 }] };
    addService(s);
    const seen = new Set<number>();
    for (let p = 20000; p < 20060; p++) {
      const id = choose(tcpFlow(p), 1);
      load(frame(tcpFlow(p)));
      const slot = lbFlowHash(info, false, 0x7ae34c0f) % 251;
      const key = allocStatic(8, 8);
      put(key, [...le16(7), 0, 0, ...le32(slot)]);
      expect(id).toBe(read32(mapLookup(L.MapId.Maglev, key)));
      seen.add(id);
    }
    expect(seen.size).toBe(3);
  });
});

describe("services without backends", () => {
  it("count 0 → lbServiceBackend answers 0 (caller drops DROP_NO_SERVICE)", () => {
    addService({ ...TWO, backends: [] });
    expect(choose(tcpFlow(1000), 1)).toBe(0);
  });

  it("unknown port on a known VIP hits the wildcard entry (count 0); unknown VIP is not a service", () => {
    addService({ ...TWO, wildcard: true });
    expect(choose({ ...tcpFlow(1000), dport: 81 }, 1)).toBe(0);
    expect(read16(svcKey + L.SERVICE_KEY_DPORT_BE)).toBe(0);
    expect(choose({ ...tcpFlow(1000), dst: v4("10.96.0.99") }, 1)).toBe(-1);
  });

  it("an east-west lookup (a pod's own packet) does not retry the wildcard: unknown port is not a service", () => {
    addService({ ...TWO, wildcard: true });
    expect(choose({ ...tcpFlow(1000), dport: 81 }, 1, true)).toBe(-1);
    // The key still holds the packet's port and protocol.
    expect(read16(svcKey + L.SERVICE_KEY_DPORT_BE)).toBe(((81 & 0xff) << 8) | (81 >> 8));
    expect(read8(svcKey + L.SERVICE_KEY_PROTO)).toBe(6);
  });

  it("a slot pointing at a missing backend selects nothing", () => {
    addService(TWO);
    for (const id of [1, 2]) {
      const k = allocStatic(4, 4);
      write32(k, id);
      expect(mapDelete(L.MapId.Backends, k)).toBe(0);
    }
    expect(choose(tcpFlow(1000), 1)).toBe(0);
  });
});
