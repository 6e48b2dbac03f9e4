/*
 * Unit and property tests for core/packet.ts (parsePacket), run with the portable (JavaScript) semantics.
 * Packets are built by a small builder written here, independently of the parser: Ethernet with VLAN tags,
 * IPv4 with options, IPv6 with extension headers, TCP/UDP/SCTP/ICMP/ICMPv6 (echo, errors, others).
 *
 *   npx vitest run core/packet.test.ts
 */
import { describe, expect, it } from "vitest";
import fc from "fast-check";
import { parsePacket } from "./packet";
import { allocStatic } from "./alloc";
import { read8, read16, read32, write8, write32 } from "./env";
import * as L from "./gen/layout";
import * as D from "./drop-reasons";
import {
  FAMILY_IPV4,
  FAMILY_IPV6,
  PKT_F_FRAGMENT,
  PKT_F_NO_L4,
  PKT_F_ICMP_ERROR,
  PKT_F_VLAN,
} from "./constants";

/* ------------------------------------------------------------------------------------------------ */
/* Memory: one region with a canary-filled area before the packet and a tail after it, a descriptor,
 * and the PacketInfo with guard bytes around it. */

const REGION = 4096;
const TAIL = 64;
const GUARD = 32;
const CANARY = (i: number): number => (i * 37 + 0xa5) & 0xff;

const region = allocStatic(REGION, 16);
const desc = allocStatic(8, 8);
const infoArea = allocStatic(L.PACKET_INFO_SIZE + 2 * GUARD, 8);
const info = infoArea + GUARD;

function fillCanary(): void {
  for (let i = 0; i < REGION; i++) write8(region + i, CANARY(i));
  for (let i = 0; i < L.PACKET_INFO_SIZE + 2 * GUARD; i++) write8(infoArea + i, 0x5a);
}

/** Places `bytes` so that it ends TAIL bytes before the region end, followed by `tail`; returns its address. */
function place(bytes: ArrayLike<number>, tail?: ArrayLike<number>): number {
  if (bytes.length > REGION - TAIL - 64) throw new Error("packet too large for the test region");
  fillCanary();
  const data = region + REGION - TAIL - bytes.length;
  for (let i = 0; i < bytes.length; i++) write8(data + i, bytes[i]);
  if (tail) for (let i = 0; i < Math.min(tail.length, TAIL); i++) write8(data + bytes.length + i, tail[i]);
  write32(desc, data);
  write32(desc + 4, bytes.length);
  return data;
}

interface Info {
  family: number;
  nexthdr: number;
  l3Off: number;
  l4Off: number;
  l4CsumOff: number;
  sport: number;
  dport: number;
  tcpFlags: number;
  icmpType: number;
  icmpCode: number;
  flags: number;
  ttl: number;
  innerNexthdr: number;
  innerSport: number;
  innerDport: number;
  pad0: number;
  len: number;
  saddr: number[];
  daddr: number[];
  innerSaddr: number[];
  innerDaddr: number[];
}

function bytesAt(p: number, n: number): number[] {
  const out: number[] = [];
  for (let i = 0; i < n; i++) out.push(read8(p + i));
  return out;
}

function readInfo(): Info {
  return {
    family: read8(info + L.PACKET_INFO_FAMILY),
    nexthdr: read8(info + L.PACKET_INFO_NEXTHDR),
    l3Off: read16(info + L.PACKET_INFO_L3_OFF),
    l4Off: read16(info + L.PACKET_INFO_L4_OFF),
    l4CsumOff: read16(info + L.PACKET_INFO_L4_CSUM_OFF),
    sport: read16(info + L.PACKET_INFO_SPORT),
    dport: read16(info + L.PACKET_INFO_DPORT),
    tcpFlags: read8(info + L.PACKET_INFO_TCP_FLAGS),
    icmpType: read8(info + L.PACKET_INFO_ICMP_TYPE),
    icmpCode: read8(info + L.PACKET_INFO_ICMP_CODE),
    flags: read8(info + L.PACKET_INFO_FLAGS),
    ttl: read8(info + L.PACKET_INFO_TTL),
    innerNexthdr: read8(info + L.PACKET_INFO_INNER_NEXTHDR),
    innerSport: read16(info + L.PACKET_INFO_INNER_SPORT),
    innerDport: read16(info + L.PACKET_INFO_INNER_DPORT),
    pad0: read16(info + L.PACKET_INFO_PAD0),
    len: read32(info + L.PACKET_INFO_LEN),
    saddr: bytesAt(info + L.PACKET_INFO_SADDR, 16),
    daddr: bytesAt(info + L.PACKET_INFO_DADDR, 16),
    innerSaddr: bytesAt(info + L.PACKET_INFO_INNER_SADDR, 16),
    innerDaddr: bytesAt(info + L.PACKET_INFO_INNER_DADDR, 16),
  };
}

function parse(bytes: ArrayLike<number>, tail?: ArrayLike<number>): { rc: number; info: Info } {
  place(bytes, tail);
  const rc = parsePacket(desc, info);
  return { rc, info: readInfo() };
}

/* ------------------------------------------------------------------------------------------------ */
/* The builder. */

type B = number[];
const be16 = (v: number): B => [(v >>> 8) & 0xff, v & 0xff];
const zeros = (n: number): B => new Array(n).fill(0);
const pad16 = (a: B): B => [...a, ...zeros(16 - a.length)];

const MAC_D = [0x02, 0, 0, 0, 0, 0x02];
const MAC_S = [0x02, 0, 0, 0, 0, 0x01];
const ETH_IP = 0x0800;
const ETH_IPV6 = 0x86dd;
const ETH_ARP = 0x0806;

/** Ethernet header; `tpids` are VLAN tag protocol ids, outermost first. */
function eth(etherType: number, tpids: number[] = []): B {
  const out = [...MAC_D, ...MAC_S];
  tpids.forEach((t, i) => out.push(...be16(t), ...be16(100 + i)));
  out.push(...be16(etherType));
  return out;
}

const SRC4 = [10, 0, 1, 5];
const DST4 = [10, 0, 2, 7];
const SRC6 = [0xfd, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0x01, 0x05];
const DST6 = [0xfd, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0x02, 0x07];

interface V4Opts {
  proto: number;
  src?: B;
  dst?: B;
  ttl?: number;
  options?: B;
  frag?: number;
  version?: number;
  ihl?: number;
  totLen?: number;
}

/** IPv4 header followed by `payload`; total length and IHL are computed unless overridden. */
function ipv4(o: V4Opts, payload: B): B {
  const options = o.options ?? [];
  if (options.length % 4 !== 0) throw new Error("IPv4 options must be a multiple of 4 bytes");
  const ihl = o.ihl ?? 5 + options.length / 4;
  const totLen = o.totLen ?? 20 + options.length + payload.length;
  const frag = o.frag ?? 0x4000; // DF
  return [
    ((o.version ?? 4) << 4) | (ihl & 0xf), 0, ...be16(totLen), 0x12, 0x34, ...be16(frag), o.ttl ?? 64, o.proto, 0, 0,
    ...(o.src ?? SRC4), ...(o.dst ?? DST4), ...options, ...payload,
  ];
}

interface V6Opts {
  nh: number;
  src?: B;
  dst?: B;
  hlim?: number;
  version?: number;
  plen?: number;
}

/** IPv6 header followed by `payload` (which includes any extension headers). */
function ipv6(o: V6Opts, payload: B): B {
  return [
    (o.version ?? 6) << 4, 0, 0, 0, ...be16(o.plen ?? payload.length), o.nh, o.hlim ?? 64,
    ...(o.src ?? SRC6), ...(o.dst ?? DST6), ...payload,
  ];
}

/** One IPv6 extension header of kind `kind` (0, 43, 60: 8-byte units; 51 AH: 4-byte units; 44: fragment)
 * whose next header is `next`; `units` is its length field. */
function ext(kind: number, next: number, units: number): B {
  const size = kind === 51 ? (units + 2) * 4 : kind === 44 ? 8 : (units + 1) * 8;
  const out = [next, kind === 44 ? 0 : units, ...zeros(size - 2)];
  for (let i = 2; i < size; i++) out[i] = (i * 7 + kind) & 0xff;
  return out;
}

function tcp(sport: number, dport: number, flags: number, doff = 5, payload: B = []): B {
  const opts = new Array(Math.max(doff * 4 - 20, 0)).fill(1); // NOP options
  return [...be16(sport), ...be16(dport), 0, 0, 0, 1, 0, 0, 0, 0, (doff & 0xf) << 4, flags, ...be16(512), 0xab, 0xcd,
    0, 0, ...opts, ...payload];
}

function udp(sport: number, dport: number, payload: B = []): B {
  return [...be16(sport), ...be16(dport), ...be16(8 + payload.length), 0x11, 0x22, ...payload];
}

function sctp(sport: number, dport: number, payload: B = []): B {
  return [...be16(sport), ...be16(dport), 1, 2, 3, 4, 5, 6, 7, 8, ...payload];
}

function icmp(type: number, code: number, ident: number, seq: number, payload: B = []): B {
  return [type, code, 0x33, 0x44, ...be16(ident), ...be16(seq), ...payload];
}

const frame4 = (o: V4Opts, l4: B, tpids: number[] = []): B => [...eth(ETH_IP, tpids), ...ipv4(o, l4)];
const frame6 = (o: V6Opts, payload: B, tpids: number[] = []): B => [...eth(ETH_IPV6, tpids), ...ipv6(o, payload)];

/* ------------------------------------------------------------------------------------------------ */

const KNOWN_REASONS = new Set<number>(Object.values(D).filter((v): v is number => typeof v === "number"));
/** The outcomes parsePacket documents. */
const PARSE_OUTCOMES = new Set<number>([
  0, D.DROP_INVALID, D.DROP_UNKNOWN_L3, D.DROP_FRAG_NOSUPPORT, D.DROP_INVALID_EXTHDR, D.DROP_UNKNOWN_L4,
  D.DROP_CT_INVALID_HDR,
]);

describe("parsePacket: Ethernet and VLAN", () => {
  it("IPv4/TCP happy path fills every field", () => {
    const pkt = frame4({ proto: 6, ttl: 61 }, tcp(40000, 80, 0x12, 5, [1, 2, 3]));
    const { rc, info: i } = parse(pkt);
    expect(rc).toBe(0);
    expect(i).toEqual({
      family: FAMILY_IPV4, nexthdr: 6, l3Off: 14, l4Off: 34, l4CsumOff: 50, sport: 40000, dport: 80,
      tcpFlags: 0x12, icmpType: 0, icmpCode: 0, flags: 0, ttl: 61, innerNexthdr: 0, innerSport: 0,
      innerDport: 0, pad0: 0, len: pkt.length, saddr: pad16(SRC4), daddr: pad16(DST4), innerSaddr: zeros(16),
      innerDaddr: zeros(16),
    } satisfies Info);
  });

  it("one 802.1Q tag sets PKT_F_VLAN and shifts offsets by 4", () => {
    const { rc, info } = parse(frame4({ proto: 17 }, udp(53, 5353), [0x8100]));
    expect(rc).toBe(0);
    expect(info.flags).toBe(PKT_F_VLAN);
    expect(info.l3Off).toBe(18);
    expect(info.l4Off).toBe(38);
    expect(info.l4CsumOff).toBe(44);
    expect([info.sport, info.dport]).toEqual([53, 5353]);
  });

  it("two tags (802.1ad outer, 802.1Q inner) are skipped", () => {
    const { rc, info } = parse(frame6({ nh: 6 }, tcp(1, 2, 0x10), [0x88a8, 0x8100]));
    expect(rc).toBe(0);
    expect(info.flags).toBe(PKT_F_VLAN);
    expect(info.l3Off).toBe(22);
    expect(info.l4Off).toBe(62);
  });

  it("a third VLAN tag is an unknown L3 protocol (139)", () => {
    const { rc, info } = parse(frame4({ proto: 6 }, tcp(1, 2, 2), [0x8100, 0x8100, 0x8100]));
    expect(rc).toBe(D.DROP_UNKNOWN_L3);
    expect(info.flags).toBe(PKT_F_VLAN);
  });

  it("ARP and other ethertypes are DROP_UNKNOWN_L3 (139)", () => {
    expect(parse([...eth(ETH_ARP), ...zeros(28)]).rc).toBe(D.DROP_UNKNOWN_L3);
    expect(parse([...eth(0x1234), ...zeros(28)]).rc).toBe(D.DROP_UNKNOWN_L3);
    expect(parse([...eth(0x0040), ...zeros(28)]).rc).toBe(D.DROP_UNKNOWN_L3); // 802.3 length field
    expect(parse(eth(ETH_ARP)).rc).toBe(D.DROP_UNKNOWN_L3);
  });

  it("a frame shorter than the Ethernet header or a VLAN tag is DROP_INVALID (134)", () => {
    expect(parse([]).rc).toBe(D.DROP_INVALID);
    expect(parse(eth(ETH_IP).slice(0, 13)).rc).toBe(D.DROP_INVALID);
    const tagged = eth(ETH_IP, [0x8100]);
    expect(parse(tagged.slice(0, 17)).rc).toBe(D.DROP_INVALID);
    expect(parse(tagged.slice(0, 15)).rc).toBe(D.DROP_INVALID);
  });

  it("len is the frame length and stale info is cleared", () => {
    place([...eth(ETH_ARP), ...zeros(30)]);
    for (let i = 0; i < L.PACKET_INFO_SIZE; i++) write8(info + i, 0xff);
    expect(parsePacket(desc, info)).toBe(D.DROP_UNKNOWN_L3);
    const i = readInfo();
    expect(i.len).toBe(44);
    expect(i.l3Off).toBe(14);
    expect({ ...i, len: 0, l3Off: 0 }).toEqual(parse([]).info); // everything else zero
    expect(parse([]).info.len).toBe(0);
  });
});

describe("parsePacket: IPv4", () => {
  it("options are skipped (IHL 7) and UDP is parsed after them", () => {
    const pkt = frame4({ proto: 17, options: [1, 1, 1, 1, 0x94, 4, 0, 0] }, udp(1234, 53, [9, 9]));
    const { rc, info } = parse(pkt);
    expect(rc).toBe(0);
    expect(info.l4Off).toBe(14 + 28);
    expect(info.l4CsumOff).toBe(14 + 28 + 6);
    expect([info.sport, info.dport]).toEqual([1234, 53]);
  });

  it("Ethernet padding after the datagram is ignored", () => {
    const pkt = [...frame4({ proto: 6 }, tcp(1, 2, 2)), ...zeros(6)];
    const { rc, info } = parse(pkt);
    expect(rc).toBe(0);
    expect(info.len).toBe(pkt.length);
  });

  it("L4 headers must lie inside the datagram, not in the padding (135)", () => {
    const l4 = tcp(1, 2, 2);
    const pkt = frame4({ proto: 6, totLen: 20 + 10 }, l4); // claims 10 bytes of TCP; 10 more are "padding"
    expect(parse(pkt).rc).toBe(D.DROP_CT_INVALID_HDR);
  });

  it("bad version, IHL < 5, truncated header or options are DROP_INVALID (134)", () => {
    expect(parse(frame4({ proto: 6, version: 6 }, tcp(1, 2, 2))).rc).toBe(D.DROP_INVALID);
    expect(parse(frame4({ proto: 6, ihl: 4 }, tcp(1, 2, 2))).rc).toBe(D.DROP_INVALID);
    expect(parse([...eth(ETH_IP), ...ipv4({ proto: 6 }, []).slice(0, 19)]).rc).toBe(D.DROP_INVALID);
    // IHL 15 (60-byte header) but only 20 + 20 bytes present
    expect(parse(frame4({ proto: 6, ihl: 15, totLen: 40 }, tcp(1, 2, 2))).rc).toBe(D.DROP_INVALID);
  });

  it("total length below IHL*4 or beyond the frame is DROP_INVALID (134)", () => {
    expect(parse(frame4({ proto: 6, totLen: 19 }, tcp(1, 2, 2))).rc).toBe(D.DROP_INVALID);
    expect(parse(frame4({ proto: 6, options: [1, 1, 1, 1], totLen: 22 }, tcp(1, 2, 2))).rc).toBe(D.DROP_INVALID);
    expect(parse(frame4({ proto: 6, totLen: 41 }, tcp(1, 2, 2))).rc).toBe(D.DROP_INVALID);
    expect(parse(frame4({ proto: 6, totLen: 40 }, tcp(1, 2, 2))).rc).toBe(0);
  });

  it("a first fragment (MF, offset 0) sets PKT_F_FRAGMENT and is parsed with its ports; a later one (offset != 0) has PKT_F_NO_L4 and no ports; DF alone is fine", () => {
    for (const frag of [0x2000, 0x2000 | 0x4000]) {
      const { rc, info } = parse(frame4({ proto: 17, frag }, udp(1, 2)));
      expect(rc).toBe(0);
      expect(info.flags).toBe(PKT_F_FRAGMENT);
      expect([info.sport, info.dport]).toEqual([1, 2]);
    }
    for (const frag of [0x0001, 0x1fff, 0x2000 | 0x4000 | 0x0010]) {
      // The payload of a later fragment is data, not a header: even 3 bytes are fine.
      const { rc, info } = parse(frame4({ proto: 17, frag }, [9, 9, 9]));
      expect(rc).toBe(0);
      expect(info.flags).toBe(PKT_F_FRAGMENT | PKT_F_NO_L4);
      expect(info.saddr).toEqual(pad16(SRC4));
      expect(info.nexthdr).toBe(17);
      expect([info.sport, info.dport, info.l4CsumOff]).toEqual([0, 0, 0]);
      expect(info.l4Off).toBe(14 + 20);
    }
    // A first fragment's L4 header is checked as any other (135 when cut).
    expect(parse(frame4({ proto: 17, frag: 0x2000 }, [1, 2, 3])).rc).toBe(D.DROP_CT_INVALID_HDR);
    const ok = parse(frame4({ proto: 17, frag: 0x4000 }, udp(1, 2)));
    expect(ok.rc).toBe(0);
    expect(ok.info.flags).toBe(0);
    expect(parse(frame4({ proto: 17, frag: 0x8000 }, udp(1, 2))).rc).toBe(0); // reserved bit is not MF
  });

  it("SCTP: ports, no checksum offset", () => {
    const { rc, info } = parse(frame4({ proto: 132 }, sctp(3868, 3869)));
    expect(rc).toBe(0);
    expect([info.sport, info.dport, info.l4CsumOff, info.l4Off]).toEqual([3868, 3869, 0, 34]);
  });

  it("other L4 protocols succeed with ports 0 and no checksum offset", () => {
    const { rc, info } = parse(frame4({ proto: 47 }, [0, 0, 0x08, 0, 1, 2, 3, 4]));
    expect(rc).toBe(0);
    expect([info.nexthdr, info.sport, info.dport, info.l4CsumOff, info.l4Off]).toEqual([47, 0, 0, 0, 34]);
    // ICMPv6 inside IPv4 is just another protocol
    const v6in4 = parse(frame4({ proto: 58 }, icmp(128, 0, 7, 1)));
    expect([v6in4.rc, v6in4.info.sport, v6in4.info.icmpType, v6in4.info.l4CsumOff]).toEqual([0, 0, 0, 0]);
    // and an empty datagram of an unknown protocol is fine too
    expect(parse(frame4({ proto: 253 }, [])).rc).toBe(0);
  });

  it("truncated L4 headers are DROP_CT_INVALID_HDR (135)", () => {
    expect(parse(frame4({ proto: 6 }, tcp(1, 2, 2).slice(0, 19))).rc).toBe(D.DROP_CT_INVALID_HDR);
    expect(parse(frame4({ proto: 6 }, tcp(1, 2, 2, 4))).rc).toBe(D.DROP_CT_INVALID_HDR); // doff < 5
    expect(parse(frame4({ proto: 6 }, tcp(1, 2, 2, 8).slice(0, 31))).rc).toBe(D.DROP_CT_INVALID_HDR);
    expect(parse(frame4({ proto: 6 }, tcp(1, 2, 2, 8))).rc).toBe(0);
    expect(parse(frame4({ proto: 17 }, udp(1, 2).slice(0, 7))).rc).toBe(D.DROP_CT_INVALID_HDR);
    expect(parse(frame4({ proto: 132 }, sctp(1, 2).slice(0, 11))).rc).toBe(D.DROP_CT_INVALID_HDR);
    expect(parse(frame4({ proto: 1 }, icmp(8, 0, 1, 1).slice(0, 7))).rc).toBe(D.DROP_CT_INVALID_HDR);
    expect(parse(frame4({ proto: 6 }, [])).rc).toBe(D.DROP_CT_INVALID_HDR);
  });
});

describe("parsePacket: ICMPv4", () => {
  it("echo request: sport = identifier, dport = 0; echo reply: sport = 0, dport = identifier", () => {
    const req = parse(frame4({ proto: 1 }, icmp(8, 0, 0xbeef, 3, [1, 2, 3, 4])));
    expect(req.rc).toBe(0);
    expect([req.info.icmpType, req.info.icmpCode, req.info.sport, req.info.dport, req.info.l4CsumOff])
      .toEqual([8, 0, 0xbeef, 0, 36]);
    expect(req.info.flags).toBe(0);
    const rep = parse(frame4({ proto: 1 }, icmp(0, 0, 0xbeef, 3)));
    expect(rep.rc).toBe(0);
    expect([rep.info.icmpType, rep.info.sport, rep.info.dport]).toEqual([0, 0, 0xbeef]);
  });

  it("other ICMP types keep ports 0", () => {
    const ts = parse(frame4({ proto: 1 }, icmp(13, 0, 0x1234, 1, zeros(12))));
    expect(ts.rc).toBe(0);
    expect([ts.info.icmpType, ts.info.sport, ts.info.dport, ts.info.flags]).toEqual([13, 0, 0, 0]);
  });

  it("dest-unreachable carrying TCP: inner header as originally sent", () => {
    const inner = ipv4({ proto: 6, src: DST4, dst: [192, 168, 9, 9], totLen: 1500 }, tcp(33000, 443, 2).slice(0, 8));
    const { rc, info } = parse(frame4({ proto: 1, src: [10, 0, 0, 1] }, icmp(3, 4, 0, 1400, inner)));
    expect(rc).toBe(0);
    expect(info.flags).toBe(PKT_F_ICMP_ERROR);
    expect([info.icmpType, info.icmpCode, info.sport, info.dport]).toEqual([3, 4, 0, 0]);
    expect([info.innerNexthdr, info.innerSport, info.innerDport]).toEqual([6, 33000, 443]);
    expect(info.innerSaddr).toEqual(pad16(DST4));
    expect(info.innerDaddr).toEqual(pad16([192, 168, 9, 9]));
    expect(info.saddr).toEqual(pad16([10, 0, 0, 1]));
  });

  it("time-exceeded carrying UDP with inner IPv4 options; parameter-problem carrying an echo request", () => {
    const inner = ipv4({ proto: 17, options: [1, 1, 1, 1] }, udp(5000, 53));
    const te = parse(frame4({ proto: 1 }, icmp(11, 0, 0, 0, inner)));
    expect(te.rc).toBe(0);
    expect([te.info.innerNexthdr, te.info.innerSport, te.info.innerDport]).toEqual([17, 5000, 53]);
    const pp = parse(frame4({ proto: 1 }, icmp(12, 0, 0, 0, ipv4({ proto: 1 }, icmp(8, 0, 77, 1)))));
    expect(pp.rc).toBe(0);
    expect([pp.info.innerNexthdr, pp.info.innerSport, pp.info.innerDport]).toEqual([1, 77, 0]);
    const pr = parse(frame4({ proto: 1 }, icmp(3, 1, 0, 0, ipv4({ proto: 1 }, icmp(0, 0, 78, 1)))));
    expect([pr.rc, pr.info.innerSport, pr.info.innerDport]).toEqual([0, 0, 78]);
  });

  it("embedded non-port protocols and non-first fragments need no L4 bytes", () => {
    const gre = parse(frame4({ proto: 1 }, icmp(3, 0, 0, 0, ipv4({ proto: 47 }, []))));
    expect([gre.rc, gre.info.innerNexthdr, gre.info.innerSport]).toEqual([0, 47, 0]);
    const frag = parse(frame4({ proto: 1 }, icmp(3, 0, 0, 0, ipv4({ proto: 6, frag: 0x00ff }, []))));
    expect([frag.rc, frag.info.innerNexthdr, frag.info.innerSport, frag.info.innerDport]).toEqual([0, 6, 0, 0]);
  });

  it("a truncated or invalid embedded header is DROP_INVALID (134)", () => {
    const inner = ipv4({ proto: 6 }, tcp(1, 2, 2).slice(0, 8));
    expect(parse(frame4({ proto: 1 }, icmp(3, 0, 0, 0, inner.slice(0, 27)))).rc).toBe(D.DROP_INVALID);
    expect(parse(frame4({ proto: 1 }, icmp(3, 0, 0, 0, inner.slice(0, 19)))).rc).toBe(D.DROP_INVALID);
    expect(parse(frame4({ proto: 1 }, icmp(3, 0, 0, 0, []))).rc).toBe(D.DROP_INVALID);
    const v6 = ipv4({ proto: 6, version: 6 }, tcp(1, 2, 2).slice(0, 8));
    expect(parse(frame4({ proto: 1 }, icmp(11, 0, 0, 0, v6))).rc).toBe(D.DROP_INVALID);
    const ihl4 = ipv4({ proto: 6, ihl: 4 }, tcp(1, 2, 2).slice(0, 8));
    expect(parse(frame4({ proto: 1 }, icmp(12, 0, 0, 0, ihl4))).rc).toBe(D.DROP_INVALID);
    const ihl6 = ipv4({ proto: 6, ihl: 6 }, tcp(1, 2, 2).slice(0, 8)); // options claimed, L4 bytes short
    expect(parse(frame4({ proto: 1 }, icmp(3, 0, 0, 0, ihl6))).rc).toBe(D.DROP_INVALID);
    expect(parse(frame4({ proto: 1 }, icmp(3, 0, 0, 0, inner))).rc).toBe(0);
  });
});

describe("parsePacket: IPv6", () => {
  it("IPv6/UDP happy path fills every field", () => {
    const pkt = frame6({ nh: 17, hlim: 3 }, udp(546, 547, [1, 2, 3]));
    const { rc, info: i } = parse(pkt);
    expect(rc).toBe(0);
    expect(i).toEqual({
      family: FAMILY_IPV6, nexthdr: 17, l3Off: 14, l4Off: 54, l4CsumOff: 60, sport: 546, dport: 547,
      tcpFlags: 0, icmpType: 0, icmpCode: 0, flags: 0, ttl: 3, innerNexthdr: 0, innerSport: 0, innerDport: 0,
      pad0: 0, len: pkt.length, saddr: SRC6, daddr: DST6, innerSaddr: zeros(16), innerDaddr: zeros(16),
    } satisfies Info);
  });

  it("walks hop-by-hop, routing, AH and destination options (4 headers) to TCP", () => {
    const payload = [...ext(0, 43, 0), ...ext(43, 51, 2), ...ext(51, 60, 4), ...ext(60, 6, 1), ...tcp(8080, 80, 0x18)];
    const { rc, info } = parse(frame6({ nh: 0 }, payload));
    expect(rc).toBe(0);
    const l4Off = 14 + 40 + 8 + 24 + 24 + 16;
    expect([info.nexthdr, info.l4Off, info.l4CsumOff, info.sport, info.dport, info.tcpFlags])
      .toEqual([6, l4Off, l4Off + 16, 8080, 80, 0x18]);
  });

  it("a fifth extension header is DROP_INVALID_EXTHDR (156)", () => {
    const payload = [...ext(0, 60, 0), ...ext(60, 60, 0), ...ext(60, 60, 0), ...ext(60, 60, 0), ...ext(60, 6, 0),
      ...tcp(1, 2, 2)];
    expect(parse(frame6({ nh: 0 }, payload)).rc).toBe(D.DROP_INVALID_EXTHDR);
  });

  it("a fragment header sets PKT_F_FRAGMENT and returns 157, also after other headers", () => {
    const direct = parse(frame6({ nh: 44 }, [...ext(44, 17, 0), ...udp(1, 2)]));
    expect(direct.rc).toBe(D.DROP_FRAG_NOSUPPORT);
    expect(direct.info.flags).toBe(PKT_F_FRAGMENT);
    expect(direct.info.saddr).toEqual(SRC6);
    const later = parse(frame6({ nh: 0 }, [...ext(0, 44, 0), ...ext(44, 17, 0), ...udp(1, 2)]));
    expect(later.rc).toBe(D.DROP_FRAG_NOSUPPORT);
    expect(later.info.flags).toBe(PKT_F_FRAGMENT);
    // even with the fragment header itself cut off
    expect(parse(frame6({ nh: 44 }, [])).rc).toBe(D.DROP_FRAG_NOSUPPORT);
  });

  it("a truncated extension header is DROP_INVALID_EXTHDR (156)", () => {
    expect(parse(frame6({ nh: 0 }, [])).rc).toBe(D.DROP_INVALID_EXTHDR);
    expect(parse(frame6({ nh: 0 }, [6])).rc).toBe(D.DROP_INVALID_EXTHDR);
    expect(parse(frame6({ nh: 43 }, ext(43, 6, 1).slice(0, 15))).rc).toBe(D.DROP_INVALID_EXTHDR);
    expect(parse(frame6({ nh: 51 }, ext(51, 6, 4).slice(0, 23))).rc).toBe(D.DROP_INVALID_EXTHDR);
    // present in the frame but beyond the payload length (the rest is padding)
    const pkt = frame6({ nh: 60, plen: 8 }, [...ext(60, 17, 1), ...udp(1, 2)]);
    expect(parse(pkt).rc).toBe(D.DROP_INVALID_EXTHDR);
  });

  it("no next header (59) is DROP_UNKNOWN_L4 (142), directly or after extension headers", () => {
    expect(parse(frame6({ nh: 59 }, [])).rc).toBe(D.DROP_UNKNOWN_L4);
    const { rc, info } = parse(frame6({ nh: 0 }, [...ext(0, 59, 0)]));
    expect(rc).toBe(D.DROP_UNKNOWN_L4);
    expect([info.nexthdr, info.l4Off]).toEqual([59, 62]);
  });

  it("bad version, truncated header or payload length beyond the frame are DROP_INVALID (134)", () => {
    expect(parse(frame6({ nh: 17, version: 4 }, udp(1, 2))).rc).toBe(D.DROP_INVALID);
    expect(parse(frame6({ nh: 17 }, []).slice(0, 14 + 39)).rc).toBe(D.DROP_INVALID);
    expect(parse(frame6({ nh: 17, plen: 9 }, udp(1, 2))).rc).toBe(D.DROP_INVALID);
    expect(parse([...frame6({ nh: 17, plen: 8 }, udp(1, 2)), 0, 0]).rc).toBe(0); // padding is fine
  });

  it("truncated L4 headers are DROP_CT_INVALID_HDR (135)", () => {
    expect(parse(frame6({ nh: 6 }, tcp(1, 2, 2).slice(0, 19))).rc).toBe(D.DROP_CT_INVALID_HDR);
    expect(parse(frame6({ nh: 6 }, tcp(1, 2, 2, 0))).rc).toBe(D.DROP_CT_INVALID_HDR);
    expect(parse(frame6({ nh: 17 }, udp(1, 2).slice(0, 7))).rc).toBe(D.DROP_CT_INVALID_HDR);
    expect(parse(frame6({ nh: 132 }, sctp(1, 2).slice(0, 11))).rc).toBe(D.DROP_CT_INVALID_HDR);
    expect(parse(frame6({ nh: 58 }, icmp(128, 0, 1, 1).slice(0, 7))).rc).toBe(D.DROP_CT_INVALID_HDR);
    expect(parse(frame6({ nh: 0 }, [...ext(0, 17, 0), ...udp(1, 2).slice(0, 4)])).rc).toBe(D.DROP_CT_INVALID_HDR);
  });

  it("ICMPv6 echo, NDP and errors", () => {
    const req = parse(frame6({ nh: 58 }, icmp(128, 0, 0x4242, 1)));
    expect([req.rc, req.info.icmpType, req.info.sport, req.info.dport, req.info.l4CsumOff])
      .toEqual([0, 128, 0x4242, 0, 56]);
    const rep = parse(frame6({ nh: 58 }, icmp(129, 0, 0x4242, 1)));
    expect([rep.rc, rep.info.sport, rep.info.dport]).toEqual([0, 0, 0x4242]);
    for (const t of [133, 134, 135, 136, 137]) {
      const ndp = parse(frame6({ nh: 58, hlim: 255 }, icmp(t, 0, 0, 0, [...DST6, 1, 1, 2, 0, 0, 0, 0, 1])));
      expect([ndp.rc, ndp.info.icmpType, ndp.info.sport, ndp.info.dport, ndp.info.flags]).toEqual([0, t, 0, 0, 0]);
    }
    for (const t of [1, 2, 3, 4]) {
      const inner = ipv6({ nh: 17, src: DST6, dst: SRC6, plen: 1000 }, udp(7000, 8000));
      const err = parse(frame6({ nh: 58 }, icmp(t, 0, 0, 1280, inner)));
      expect(err.rc).toBe(0);
      expect(err.info.flags).toBe(PKT_F_ICMP_ERROR);
      expect([err.info.innerNexthdr, err.info.innerSport, err.info.innerDport]).toEqual([17, 7000, 8000]);
      expect(err.info.innerSaddr).toEqual(DST6);
      expect(err.info.innerDaddr).toEqual(SRC6);
    }
    const echoErr = parse(frame6({ nh: 58 }, icmp(1, 0, 0, 0, ipv6({ nh: 58 }, icmp(128, 0, 99, 1)))));
    expect([echoErr.rc, echoErr.info.innerSport, echoErr.info.innerDport]).toEqual([0, 99, 0]);
    const extInner = parse(frame6({ nh: 58 }, icmp(1, 0, 0, 0, ipv6({ nh: 0 }, ext(0, 6, 0)))));
    expect([extInner.rc, extInner.info.innerNexthdr, extInner.info.innerSport]).toEqual([0, 0, 0]);
    // ICMP (v4) inside IPv6 is just another protocol
    const v4in6 = parse(frame6({ nh: 1 }, icmp(8, 0, 5, 1)));
    expect([v4in6.rc, v4in6.info.sport, v4in6.info.icmpType, v4in6.info.l4CsumOff]).toEqual([0, 0, 0, 0]);
  });

  it("ICMPv6 error with a truncated or invalid embedded header is DROP_INVALID (134)", () => {
    const inner = ipv6({ nh: 6 }, tcp(1, 2, 2).slice(0, 8));
    expect(parse(frame6({ nh: 58 }, icmp(1, 0, 0, 0, inner.slice(0, 39)))).rc).toBe(D.DROP_INVALID);
    expect(parse(frame6({ nh: 58 }, icmp(2, 0, 0, 0, inner.slice(0, 47)))).rc).toBe(D.DROP_INVALID);
    const v4 = ipv6({ nh: 6, version: 4 }, tcp(1, 2, 2).slice(0, 8));
    expect(parse(frame6({ nh: 58 }, icmp(3, 0, 0, 0, v4))).rc).toBe(D.DROP_INVALID);
    expect(parse(frame6({ nh: 58 }, icmp(4, 0, 0, 0, inner))).rc).toBe(0);
  });
});

/* ------------------------------------------------------------------------------------------------ */
/* Properties. */

/** A generated valid packet as segments: a cut inside segment k of the datagram (with lengths fixed up)
 * must give segs[k].reason. */
interface Spec {
  family: 4 | 6;
  tpids: number[];
  v4options: B;
  v6first: number;
  segs: { bytes: B; reason: number }[];
  payload: B;
  padding: B;
  proto: number;
  sport: number;
  dport: number;
}

const arbPort = fc.integer({ min: 0, max: 0xffff });
const arbBytes = (max: number) => fc.array(fc.integer({ min: 0, max: 255 }), { maxLength: max });

const arbSpec: fc.Arbitrary<Spec> = fc
  .record({
    family: fc.constantFrom<4 | 6>(4, 6),
    tpids: fc.array(fc.constantFrom(0x8100, 0x88a8), { maxLength: 2 }),
    optWords: fc.integer({ min: 0, max: 10 }),
    exts: fc.array(fc.record({ kind: fc.constantFrom(0, 43, 51, 60), units: fc.integer({ min: 0, max: 3 }) }),
      { maxLength: 4 }),
    l4: fc.constantFrom("tcp", "udp", "sctp", "echo", "reply", "error", "icmp-other", "other"),
    doff: fc.integer({ min: 5, max: 15 }),
    tcpFlags: fc.integer({ min: 0, max: 255 }),
    innerProto: fc.constantFrom("tcp", "udp", "echo", "other"),
    innerOptWords: fc.integer({ min: 0, max: 3 }),
    sport: arbPort,
    dport: arbPort,
    payload: arbBytes(40),
    padding: arbBytes(12),
  })
  .map((r): Spec => {
    const v6 = r.family === 6;
    const icmpProto = v6 ? 58 : 1;
    const segs: { bytes: B; reason: number }[] = [];
    let proto = 0;
    let sport = 0;
    let dport = 0;
    let payload = r.payload;
    switch (r.l4) {
      case "tcp": proto = 6; sport = r.sport; dport = r.dport;
        segs.push({ bytes: tcp(r.sport, r.dport, r.tcpFlags, r.doff), reason: D.DROP_CT_INVALID_HDR }); break;
      case "udp": proto = 17; sport = r.sport; dport = r.dport;
        segs.push({ bytes: udp(r.sport, r.dport, []), reason: D.DROP_CT_INVALID_HDR }); break;
      case "sctp": proto = 132; sport = r.sport; dport = r.dport;
        segs.push({ bytes: sctp(r.sport, r.dport), reason: D.DROP_CT_INVALID_HDR }); break;
      case "echo": proto = icmpProto; sport = r.sport;
        segs.push({ bytes: icmp(v6 ? 128 : 8, 0, r.sport, 1), reason: D.DROP_CT_INVALID_HDR }); break;
      case "reply": proto = icmpProto; dport = r.dport;
        segs.push({ bytes: icmp(v6 ? 129 : 0, 0, r.dport, 1), reason: D.DROP_CT_INVALID_HDR }); break;
      case "icmp-other": proto = icmpProto;
        segs.push({ bytes: icmp(v6 ? 135 : 13, 0, r.sport, 1), reason: D.DROP_CT_INVALID_HDR }); break;
      case "error": {
        proto = icmpProto;
        segs.push({ bytes: icmp(v6 ? 1 : 3, 3, 0, 0), reason: D.DROP_CT_INVALID_HDR });
        const ip = r.innerProto === "tcp" ? 6 : r.innerProto === "udp" ? 17 : r.innerProto === "echo" ? icmpProto : 47;
        const l4 = r.innerProto === "tcp" ? tcp(r.sport, r.dport, 2).slice(0, 8)
          : r.innerProto === "udp" ? udp(r.sport, r.dport)
          : r.innerProto === "echo" ? icmp(v6 ? 128 : 8, 0, r.sport, 1) : [];
        const hdr = v6 ? ipv6({ nh: ip, plen: 100 }, []) : ipv4({ proto: ip, options: zeros(4 * r.innerOptWords), totLen: 100 }, []);
        segs.push({ bytes: [...hdr, ...l4], reason: D.DROP_INVALID });
        break;
      }
      default: proto = 253; // unknown protocol: no header needed, the payload follows directly
    }
    let v6first = proto;
    if (v6 && r.exts.length > 0) {
      const extBytes: B[] = [];
      r.exts.forEach((e, i) => extBytes.push(ext(e.kind, i + 1 < r.exts.length ? r.exts[i + 1].kind : proto, e.units)));
      v6first = r.exts[0].kind;
      segs.unshift({ bytes: extBytes.flat(), reason: D.DROP_INVALID_EXTHDR });
    }
    if (r.l4 === "error") payload = payload.slice(0, 8); // keep ICMP errors small
    return {
      family: r.family, tpids: r.tpids, v4options: v6 ? [] : zeros(4 * r.optWords).map(() => 1), v6first, segs,
      payload, padding: r.padding, proto, sport, dport,
    };
  });

/** The frame for `spec` whose datagram payload (everything after the fixed IP header and options) is cut
 * to `keep` bytes, with the IP length fields describing the cut datagram. */
function buildSpec(s: Spec, keep = Infinity): { frame: B; l3Off: number; ipEnd: number } {
  const body = [...s.segs.flatMap((g) => g.bytes), ...s.payload].slice(0, keep);
  const l2 = eth(s.family === 4 ? ETH_IP : ETH_IPV6, s.tpids);
  const l3 = s.family === 4 ? ipv4({ proto: s.proto, options: s.v4options }, body) : ipv6({ nh: s.v6first }, body);
  return { frame: [...l2, ...l3, ...s.padding], l3Off: l2.length, ipEnd: l2.length + l3.length };
}

function expectedForKeep(s: Spec, keep: number): number {
  let end = 0;
  for (const g of s.segs) {
    end += g.bytes.length;
    if (keep < end) return g.reason;
  }
  return 0;
}

describe("parsePacket: properties", () => {
  it("(1) arbitrary bytes never throw and give 0 or a documented drop reason", () => {
    const structured = fc
      .record({
        et: fc.constantFrom(0x0800, 0x86dd, 0x8100, 0x88a8, 0x0806),
        vnib: fc.constantFrom(4, 6, 0, 15),
        rest: fc.uint8Array({ maxLength: 186 }),
      })
      .map(({ et, vnib, rest }) => {
        const b = [...MAC_D, ...MAC_S, ...be16(et), ...rest];
        if (b.length > 14) b[14] = (vnib << 4) | (b[14] & 0xf);
        return b;
      });
    fc.assert(
      fc.property(fc.oneof(fc.uint8Array({ maxLength: 200 }).map((a) => Array.from(a)), structured), (bytes) => {
        const { rc, info: i } = parse(bytes);
        expect(KNOWN_REASONS.has(rc) || rc === 0).toBe(true);
        expect(PARSE_OUTCOMES.has(rc)).toBe(true);
        expect(i.len).toBe(bytes.length);
        if (rc === 0) {
          expect(i.l4Off).toBeLessThanOrEqual(bytes.length);
          expect([FAMILY_IPV4, FAMILY_IPV6]).toContain(i.family);
        }
      }),
      { numRuns: 3000 },
    );
  });

  it("valid generated packets parse with the builder's protocol and ports", () => {
    fc.assert(
      fc.property(arbSpec, (s) => {
        const { frame, l3Off } = buildSpec(s);
        const { rc, info: i } = parse(frame);
        expect(rc).toBe(0);
        expect([i.family, i.nexthdr, i.sport, i.dport, i.l3Off]).toEqual([s.family === 4 ? 1 : 2, s.proto, s.sport, s.dport, l3Off]);
        expect(i.flags & PKT_F_VLAN).toBe(s.tpids.length > 0 ? PKT_F_VLAN : 0);
      }),
      { numRuns: 500 },
    );
  });

  it("(2a) cutting a frame inside the IP datagram is a drop; cutting only padding is not", () => {
    fc.assert(
      fc.property(arbSpec, fc.nat(), (s, k0) => {
        const { frame, ipEnd } = buildSpec(s);
        const full = parse(frame);
        const k = k0 % (frame.length + 1);
        const cut = parse(frame.slice(0, k));
        if (k >= ipEnd) {
          expect(cut.rc).toBe(0);
          expect({ ...cut.info, len: 0 }).toEqual({ ...full.info, len: 0 });
        } else {
          expect(cut.rc).not.toBe(0);
          expect(PARSE_OUTCOMES.has(cut.rc)).toBe(true);
          // a cut L2/L3 header, or an IP total/payload length that now exceeds the bytes present
          expect(cut.rc).toBe(D.DROP_INVALID);
        }
      }),
      { numRuns: 500 },
    );
  });

  it("(2b) a datagram cut with consistent lengths drops exactly when a needed header is cut", () => {
    fc.assert(
      fc.property(arbSpec, fc.nat(), (s, k0) => {
        const total = s.segs.reduce((n, g) => n + g.bytes.length, 0) + s.payload.length;
        const keep = k0 % (total + 1);
        const { frame } = buildSpec(s, keep);
        const { rc, info: i } = parse(frame);
        expect(rc).toBe(expectedForKeep(s, keep));
        if (rc === 0) expect([i.nexthdr, i.sport, i.dport]).toEqual([s.proto, s.sport, s.dport]);
      }),
      { numRuns: 1000 },
    );
  });

  it("(3) never reads or writes outside the packet", () => {
    fc.assert(
      fc.property(arbSpec, fc.nat(), fc.uint8Array({ minLength: TAIL, maxLength: TAIL }),
        fc.uint8Array({ minLength: TAIL, maxLength: TAIL }), (s, k0, tailA, tailB) => {
          const { frame } = buildSpec(s);
          const k = k0 % (frame.length + 1);
          const bytes = frame.slice(0, k);

          const a = parse(bytes, tailA);
          const data = region + REGION - TAIL - bytes.length;
          // nothing outside the packet or the PacketInfo changed, and the packet itself is untouched
          for (let j = 0; j < data - region; j++) if (read8(region + j) !== CANARY(j)) throw new Error(`canary ${j}`);
          expect(bytesAt(data, bytes.length)).toEqual(bytes);
          expect(bytesAt(data + bytes.length, TAIL)).toEqual(Array.from(tailA));
          expect(bytesAt(infoArea, GUARD).every((x) => x === 0x5a)).toBe(true);
          expect(bytesAt(info + L.PACKET_INFO_SIZE, GUARD).every((x) => x === 0x5a)).toBe(true);

          const b = parse(bytes, tailB);
          expect(b.rc).toBe(a.rc);
          expect(b.info).toEqual(a.info);
        }),
      { numRuns: 500 },
    );
  });
});
