/*
 * Building and reading Ethernet frames for the simulator, the conformance and differential suites and the
 * benchmarks: IPv4/IPv6 with TCP, UDP, SCTP, ICMP and ICMPv6 (and VRRP v3 / IGMPv2 messages, which have no
 * ports), with correct checksums, and the inverse
 * (decode a frame into the fields flows show). Written independently of core/ on purpose: tests use it to
 * check what core does to packets.
 */

import { formatAddr, isIpv6, parseIpv4, parseIpv6 } from "../host/ip.ts";
import { PROTO_NAMES, PROTO_NUMBERS, type L4Proto } from "../host/protocols.ts";


export interface FrameSpec {
  src: string;
  dst: string;
  proto: L4Proto;
  sport?: number;
  dport?: number;
  /** TCP flags byte (SYN 0x02, ACK 0x10, FIN 0x01, RST 0x04, PSH 0x08). */
  tcpFlags?: number;
  icmpType?: number;
  icmpCode?: number;
  /** ICMP echo identifier (and sequence 1). */
  icmpId?: number;
  payload?: Uint8Array;
  ttl?: number;
  srcMac?: Uint8Array;
  dstMac?: Uint8Array;
  /** For ICMP errors: the packet (from its IP header on) to embed after the ICMP header. */
  embedded?: Uint8Array;
}

export const TCP_FLAGS = { FIN: 0x01, SYN: 0x02, RST: 0x04, PSH: 0x08, ACK: 0x10 } as const;

/* ------------------------------------------------------------------------------------------------ */
/* Addresses. */

/* ------------------------------------------------------------------------------------------------ */
/* Checksums (RFC 1071), independent of core/csum.ts. */

export function onesSum(bytes: Uint8Array, init = 0): number {
  let s = init;
  for (let i = 0; i + 1 < bytes.length; i += 2) s += (bytes[i]! << 8) | bytes[i + 1]!;
  if (bytes.length % 2) s += bytes[bytes.length - 1]! << 8;
  while (s > 0xffff) s = (s & 0xffff) + (s >>> 16);
  return s;
}

export function internetChecksum(bytes: Uint8Array, init = 0): number {
  return ~onesSum(bytes, init) & 0xffff;
}

function pseudoHeaderSum(src: Uint8Array, dst: Uint8Array, proto: number, len: number): number {
  if (src.length === 4) {
    const p = new Uint8Array(12);
    p.set(src, 0);
    p.set(dst, 4);
    p[9] = proto;
    p[10] = len >> 8;
    p[11] = len & 0xff;
    return onesSum(p);
  }
  const p = new Uint8Array(40);
  p.set(src, 0);
  p.set(dst, 16);
  p[34] = len >> 8;
  p[35] = len & 0xff;
  p[39] = proto;
  return onesSum(p);
}

/* ------------------------------------------------------------------------------------------------ */
/* Building. */

const DEFAULT_SRC_MAC = Uint8Array.of(0x02, 0, 0, 0, 0, 1);
const DEFAULT_DST_MAC = Uint8Array.of(0x02, 0, 0, 0, 0, 2);

function l4Header(spec: FrameSpec, src: Uint8Array, dst: Uint8Array): Uint8Array {
  const payload = spec.payload ?? new Uint8Array(0);
  const proto = PROTO_NUMBERS[spec.proto];
  let h: Uint8Array;
  switch (spec.proto) {
    case "TCP": {
      h = new Uint8Array(20 + payload.length);
      const dv = new DataView(h.buffer);
      dv.setUint16(0, spec.sport ?? 0);
      dv.setUint16(2, spec.dport ?? 0);
      dv.setUint32(4, 1000);
      dv.setUint32(8, (spec.tcpFlags ?? TCP_FLAGS.SYN) & TCP_FLAGS.ACK ? 2000 : 0);
      h[12] = 5 << 4;
      h[13] = spec.tcpFlags ?? TCP_FLAGS.SYN;
      dv.setUint16(14, 64240);
      h.set(payload, 20);
      dv.setUint16(16, internetChecksum(h, pseudoHeaderSum(src, dst, proto, h.length)));
      return h;
    }
    case "UDP": {
      h = new Uint8Array(8 + payload.length);
      const dv = new DataView(h.buffer);
      dv.setUint16(0, spec.sport ?? 0);
      dv.setUint16(2, spec.dport ?? 0);
      dv.setUint16(4, h.length);
      h.set(payload, 8);
      let c = internetChecksum(h, pseudoHeaderSum(src, dst, proto, h.length));
      if (c === 0) c = 0xffff;
      dv.setUint16(6, c);
      return h;
    }
    case "SCTP": {
      // Common header only (+ payload); SCTP's CRC32c is left zero: core never rewrites it.
      h = new Uint8Array(12 + payload.length);
      const dv = new DataView(h.buffer);
      dv.setUint16(0, spec.sport ?? 0);
      dv.setUint16(2, spec.dport ?? 0);
      dv.setUint32(4, 0x11223344);
      h.set(payload, 12);
      return h;
    }
    case "ICMP":
    case "ICMPv6": {
      const body = spec.embedded ?? payload;
      h = new Uint8Array(8 + body.length);
      const dv = new DataView(h.buffer);
      h[0] = spec.icmpType ?? (spec.proto === "ICMP" ? 8 : 128);
      h[1] = spec.icmpCode ?? 0;
      if (!spec.embedded) {
        dv.setUint16(4, spec.icmpId ?? 0);
        dv.setUint16(6, 1);
      }
      h.set(body, 8);
      const init = spec.proto === "ICMPv6" ? pseudoHeaderSum(src, dst, proto, h.length) : 0;
      dv.setUint16(2, internetChecksum(h, init));
      return h;
    }
    case "VRRP": {
      // RFC 5798 advertisement: version 3, type 1, virtual router id, priority 100, no addresses, 1 s.
      h = new Uint8Array(8 + payload.length);
      const dv = new DataView(h.buffer);
      h[0] = 0x31;
      h[1] = (spec.dport ?? 1) & 0xff || 1;
      h[2] = 100;
      dv.setUint16(4, 100);
      h.set(payload, 8);
      dv.setUint16(6, internetChecksum(h, pseudoHeaderSum(src, dst, proto, h.length)));
      return h;
    }
    case "IGMP": {
      // RFC 2236 membership report (0x16) for the group in the destination address.
      h = new Uint8Array(8);
      const dv = new DataView(h.buffer);
      h[0] = 0x16;
      h.set(dst.subarray(0, 4), 4);
      dv.setUint16(2, internetChecksum(h));
      return h;
    }
  }
}

/** The IP packet (no Ethernet header). */
export function buildIpPacket(spec: FrameSpec): Uint8Array {
  const v6 = isIpv6(spec.src);
  if (v6 !== isIpv6(spec.dst)) throw new Error(`address families differ: ${spec.src} → ${spec.dst}`);
  const src = v6 ? parseIpv6(spec.src) : parseIpv4(spec.src);
  const dst = v6 ? parseIpv6(spec.dst) : parseIpv4(spec.dst);
  const l4 = l4Header(spec, src, dst);
  const proto = PROTO_NUMBERS[spec.proto];
  if (!v6) {
    const ip = new Uint8Array(20 + l4.length);
    const dv = new DataView(ip.buffer);
    ip[0] = 0x45;
    dv.setUint16(2, ip.length);
    dv.setUint16(4, 0x1234);
    dv.setUint16(6, 0x4000); // DF
    ip[8] = spec.ttl ?? 64;
    ip[9] = proto;
    ip.set(src, 12);
    ip.set(dst, 16);
    dv.setUint16(10, internetChecksum(ip.subarray(0, 20)));
    ip.set(l4, 20);
    return ip;
  }
  const ip = new Uint8Array(40 + l4.length);
  const dv = new DataView(ip.buffer);
  ip[0] = 0x60;
  dv.setUint16(4, l4.length);
  ip[6] = proto;
  ip[7] = spec.ttl ?? 64;
  ip.set(src, 8);
  ip.set(dst, 24);
  ip.set(l4, 40);
  return ip;
}

/** An Ethernet frame carrying the packet described by `spec`. */
export function buildFrame(spec: FrameSpec): Uint8Array {
  const ip = buildIpPacket(spec);
  const f = new Uint8Array(14 + ip.length);
  f.set(spec.dstMac ?? DEFAULT_DST_MAC, 0);
  f.set(spec.srcMac ?? DEFAULT_SRC_MAC, 6);
  const et = isIpv6(spec.src) ? 0x86dd : 0x0800;
  f[12] = et >> 8;
  f[13] = et & 0xff;
  f.set(ip, 14);
  return f;
}

/* ------------------------------------------------------------------------------------------------ */
/* Reading. */

export interface DecodedFrame {
  family: 4 | 6;
  src: string;
  dst: string;
  proto: number;
  protoName: L4Proto | string;
  sport: number;
  dport: number;
  tcpFlags: number;
  icmpType: number;
  icmpCode: number;
  /** IPv4 header checksum is valid (always true for IPv6). */
  l3ChecksumOk: boolean;
  /** TCP/UDP/ICMP checksum is valid (UDP checksum 0 counts as valid; SCTP is not checked). */
  l4ChecksumOk: boolean;
}

/** Decodes an untagged Ethernet frame built by buildFrame (or rewritten by core). Returns undefined for
 * anything else. */
export function decodeFrame(f: Uint8Array): DecodedFrame | undefined {
  if (f.length < 14) return undefined;
  const et = (f[12]! << 8) | f[13]!;
  const ip = f.subarray(14);
  let family: 4 | 6;
  let src: Uint8Array;
  let dst: Uint8Array;
  let proto: number;
  let l4: Uint8Array;
  let l3ChecksumOk = true;
  if (et === 0x0800 && ip.length >= 20) {
    family = 4;
    const ihl = (ip[0]! & 0xf) * 4;
    const total = (ip[2]! << 8) | ip[3]!;
    src = ip.subarray(12, 16);
    dst = ip.subarray(16, 20);
    proto = ip[9]!;
    l3ChecksumOk = onesSum(ip.subarray(0, ihl)) === 0xffff;
    l4 = ip.subarray(ihl, Math.min(total, ip.length));
  } else if (et === 0x86dd && ip.length >= 40) {
    family = 6;
    src = ip.subarray(8, 24);
    dst = ip.subarray(24, 40);
    proto = ip[6]!;
    const plen = (ip[4]! << 8) | ip[5]!;
    l4 = ip.subarray(40, Math.min(40 + plen, ip.length));
  } else return undefined;
  const dv = new DataView(l4.buffer, l4.byteOffset, l4.byteLength);
  const out: DecodedFrame = {
    family,
    src: formatAddr(src, family),
    dst: formatAddr(dst, family),
    proto,
    protoName: PROTO_NAMES[proto] ?? String(proto),
    sport: 0,
    dport: 0,
    tcpFlags: 0,
    icmpType: 0,
    icmpCode: 0,
    l3ChecksumOk,
    l4ChecksumOk: true,
  };
  const pseudo = () => pseudoHeaderSum(src, dst, proto, l4.length);
  if ((proto === 6 && l4.length >= 20) || (proto === 17 && l4.length >= 8) || (proto === 132 && l4.length >= 12)) {
    out.sport = dv.getUint16(0);
    out.dport = dv.getUint16(2);
    if (proto === 6) {
      out.tcpFlags = l4[13]!;
      out.l4ChecksumOk = onesSum(l4, pseudo()) === 0xffff;
    } else if (proto === 17) {
      out.l4ChecksumOk = dv.getUint16(6) === 0 || onesSum(l4, pseudo()) === 0xffff;
    }
  } else if ((proto === 1 || proto === 58) && l4.length >= 8) {
    out.icmpType = l4[0]!;
    out.icmpCode = l4[1]!;
    out.l4ChecksumOk = onesSum(l4, proto === 58 ? pseudo() : 0) === 0xffff;
  }
  return out;
}

/** The ICMPv4 error types that embed the datagram they are about (RFC 792): destination unreachable,
 * time exceeded, parameter problem. */
export const ICMP_ERROR_TYPES: readonly number[] = [3, 11, 12];

/** What an ICMPv4 error frame is about: its type and code, and the embedded datagram's addresses,
 * protocol and ports (for an embedded ICMP echo, its identifier as `sport`). Undefined for any other frame
 * or an error embedding less than an IPv4 header and 8 bytes. */
export function icmpErrorInner(f: Uint8Array): { type: number; code: number; src: string; dst: string; proto: number; sport: number; dport: number } | undefined {
  const d = decodeFrame(f);
  if (!d || d.family !== 4 || d.proto !== 1 || !ICMP_ERROR_TYPES.includes(d.icmpType)) return undefined;
  const ip = f.subarray(14);
  const inner = ip.subarray((ip[0]! & 0xf) * 4 + 8);
  if (inner.length < 20 || inner[0]! >> 4 !== 4) return undefined;
  const ihl = (inner[0]! & 0xf) * 4;
  const l4 = inner.subarray(ihl);
  if (l4.length < 8) return undefined;
  const proto = inner[9]!;
  const u16 = (o: number) => (l4[o]! << 8) | l4[o + 1]!;
  const ports = proto === 6 || proto === 17 || proto === 132;
  return {
    type: d.icmpType,
    code: d.icmpCode,
    src: formatAddr(inner.subarray(12, 16), 4),
    dst: formatAddr(inner.subarray(16, 20), 4),
    proto,
    sport: ports ? u16(0) : proto === 1 ? u16(4) : 0,
    dport: ports ? u16(2) : 0,
  };
}

/* ------------------------------------------------------------------------------------------------ */
/* IPv4 fragments (RFC 791), for the fragment tests and the differential suite. */

function setIpv4Checksum(ip: Uint8Array): void {
  const ihl = (ip[0]! & 0xf) * 4;
  ip[10] = 0;
  ip[11] = 0;
  const c = internetChecksum(ip.subarray(0, ihl));
  ip[10] = c >> 8;
  ip[11] = c & 0xff;
}

/** Splits an untagged IPv4 frame into fragments whose payloads hold at most `maxPayload` bytes (rounded
 * down to a multiple of 8), as the sender's stack or a router does: the same identification (`id` when
 * given), MF on all but the last, offsets in 8-byte units, DF cleared, header checksums recomputed. */
export function fragmentFrame(frame: Uint8Array, maxPayload: number, id?: number): Uint8Array[] {
  const ihl = (frame[14]! & 0xf) * 4;
  const total = (frame[16]! << 8) | frame[17]!;
  const payload = frame.subarray(14 + ihl, 14 + total);
  const step = Math.max(8, maxPayload - (maxPayload % 8));
  const out: Uint8Array[] = [];
  for (let off = 0; off < payload.length; off += step) {
    const chunk = payload.subarray(off, Math.min(off + step, payload.length));
    const f = new Uint8Array(14 + ihl + chunk.length);
    f.set(frame.subarray(0, 14 + ihl), 0);
    f.set(chunk, 14 + ihl);
    const ip = f.subarray(14);
    const len = ihl + chunk.length;
    ip[2] = len >> 8;
    ip[3] = len & 0xff;
    if (id !== undefined) {
      ip[4] = (id >> 8) & 0xff;
      ip[5] = id & 0xff;
    }
    const more = off + step < payload.length ? 0x2000 : 0;
    const fo = more | (off / 8);
    ip[6] = fo >> 8;
    ip[7] = fo & 0xff;
    setIpv4Checksum(ip);
    out.push(f);
  }
  return out;
}

/** The fragment fields of an untagged IPv4 frame that is a fragment (MF set or a non-zero offset):
 * identification, byte offset, more-fragments; undefined for a whole datagram or another frame. A later
 * fragment (offset > 0) has no L4 header: what decodeFrame reads as its ports is payload. */
export function ipv4FragmentOf(f: Uint8Array): { id: number; offset: number; more: boolean } | undefined {
  if (f.length < 34 || ((f[12]! << 8) | f[13]!) !== 0x0800) return undefined;
  const fo = (f[20]! << 8) | f[21]!;
  return fo & 0x3fff ? { id: (f[18]! << 8) | f[19]!, offset: (fo & 0x1fff) * 8, more: (fo & 0x2000) !== 0 } : undefined;
}

/** Joins the fragments of one IPv4 datagram (any order) back into one frame with the first fragment's
 * headers; undefined when a piece is missing. The inverse of fragmentFrame, for checking what arrives. */
export function reassembleFrames(frags: Uint8Array[]): Uint8Array | undefined {
  const pieces = frags.map((f) => {
    const ihl = (f[14]! & 0xf) * 4;
    const total = (f[16]! << 8) | f[17]!;
    const fo = (f[20]! << 8) | f[21]!;
    return { f, ihl, off: (fo & 0x1fff) * 8, more: (fo & 0x2000) !== 0, data: f.subarray(14 + ihl, 14 + total) };
  }).sort((a, b) => a.off - b.off);
  const first = pieces[0];
  if (!first || first.off !== 0) return undefined;
  let end = 0;
  for (const p of pieces) {
    if (p.off !== end) return undefined;
    end += p.data.length;
  }
  if (pieces[pieces.length - 1]!.more) return undefined;
  const out = new Uint8Array(14 + first.ihl + end);
  out.set(first.f.subarray(0, 14 + first.ihl), 0);
  for (const p of pieces) out.set(p.data, 14 + first.ihl + p.off);
  const ip = out.subarray(14);
  const len = first.ihl + end;
  ip[2] = len >> 8;
  ip[3] = len & 0xff;
  ip[6] = 0;
  ip[7] = 0;
  setIpv4Checksum(ip);
  return out;
}
