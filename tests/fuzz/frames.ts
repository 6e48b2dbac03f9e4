/*
 * Hostile frames for the packet fuzzer: random bytes, and valid frames mutated the ways real networks and
 * attackers mangle them — truncated headers, a wrong IHL, IPv4 options, fragments, bad IPv4 and L4
 * checksums, one to three VLAN tags, IPv6 extension-header chains (hop-by-hop, routing, fragment,
 * destination options, AH, ESP, "no next header"), inconsistent lengths, flipped bytes.
 *
 * Every frame is a pure function of (seed, index), with its own small PRNG, so a failure at frame i of a
 * ten-million-frame run replays alone: FUZZ_SEED=<seed> FUZZ_ONLY=<i>. fast-check is not used here on
 * purpose: its per-case overhead would dominate a run of millions of frames, and shrinking a frame is
 * rarely needed when the mutation log names what was done to it.
 */
import { buildFrame, internetChecksum, type FrameSpec } from "../../sim/packets.ts";
import type { L4Proto } from "../../host/protocols.ts";
import type { EntryPoint } from "../../host/datapath.ts";

/** mulberry32: small, fast, good enough to spread fuzz inputs; not for anything cryptographic. */
export function prng(seed: number): () => number {
  let a = seed >>> 0;
  return () => {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = a;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

export class Rand {
  readonly next: () => number;
  constructor(seed: number) {
    this.next = prng(seed);
  }
  int(n: number): number {
    return Math.floor(this.next() * n);
  }
  pick<T>(xs: readonly T[]): T {
    return xs[this.int(xs.length)]!;
  }
  chance(p: number): boolean {
    return this.next() < p;
  }
  bytes(n: number): Uint8Array {
    const b = new Uint8Array(n);
    for (let i = 0; i < n; i++) b[i] = this.int(256);
    return b;
  }
}

/** Addresses the fuzzed node knows (tests/differential/arbitraries.ts installs them). */
export interface FrameAddresses {
  local4: string[];
  remote4: string[];
  local6: string[];
  remote6: string[];
}

export interface FuzzFrame {
  entry: EntryPoint;
  frame: Uint8Array;
  /** What was done to the frame, for the failure message. */
  log: string[];
  now: number;
  srcIdentity: number;
}

const ENTRIES: EntryPoint[] = ["fromEndpoint", "fromEndpoint", "toEndpoint", "toEndpoint", "fromNetwork", "toNetwork"];
const PROTOS4: L4Proto[] = ["TCP", "TCP", "UDP", "SCTP", "ICMP"];
const PROTOS6: L4Proto[] = ["TCP", "TCP", "UDP", "SCTP", "ICMPv6"];
/** Next-header values of IPv6 extension headers (RFC 8200 §4; 50 ESP and 59 "no next header" end it). */
const EXT_HDRS = [0, 43, 44, 60, 51, 50, 59];

function baseSpec(r: Rand, entry: EntryPoint, a: FrameAddresses): FrameSpec {
  const v6 = r.chance(0.35);
  const local = v6 ? a.local6 : a.local4;
  const remote = v6 ? a.remote6 : a.remote4;
  // toNetwork: what leaves through the node's device, pods' packets above all (masquerading).
  const src = entry === "fromEndpoint" || entry === "toNetwork" ? r.pick(local) : r.pick(remote);
  const dst = entry === "toEndpoint" ? r.pick(local) : entry === "fromNetwork" ? r.pick([...local, ...remote]) : r.pick(remote);
  const proto = r.pick(v6 ? PROTOS6 : PROTOS4);
  return {
    src,
    dst,
    proto,
    sport: r.pick([40000, 40001, 53, 80, r.int(65536)]),
    dport: r.pick([80, 53, 443, 8080, 0, r.int(65536)]),
    tcpFlags: r.pick([0x02, 0x12, 0x10, 0x11, 0x04, 0x18, r.int(256)]),
    icmpType: r.pick(v6 ? [128, 129, 1, 2, 135, r.int(256)] : [8, 0, 3, 11, 13, r.int(256)]),
    icmpCode: r.pick([0, 4, r.int(256)]),
    icmpId: r.int(4),
    payload: r.bytes(r.pick([0, 0, 4, 24, 100])),
  };
}

function be16(f: Uint8Array, off: number, v: number): void {
  f[off] = (v >> 8) & 0xff;
  f[off + 1] = v & 0xff;
}

function splice(f: Uint8Array, at: number, insert: Uint8Array): Uint8Array {
  const out = new Uint8Array(f.length + insert.length);
  out.set(f.subarray(0, at), 0);
  out.set(insert, at);
  out.set(f.subarray(at), at + insert.length);
  return out;
}

/** Offset of the L3 header after any VLAN tags, and the ethertype found there. */
function l3(f: Uint8Array): { off: number; et: number } {
  let off = 12;
  while (off + 2 <= f.length) {
    const et = (f[off]! << 8) | f[off + 1]!;
    if (et !== 0x8100 && et !== 0x88a8) return { off: off + 2, et };
    off += 4;
  }
  return { off, et: -1 };
}

function fixIpv4Checksum(f: Uint8Array, off: number): void {
  const ihl = (f[off]! & 0xf) * 4;
  if (off + ihl > f.length || ihl < 20) return;
  be16(f, off + 10, 0);
  be16(f, off + 10, internetChecksum(f.subarray(off, off + ihl)));
}

type Mutation = (f: Uint8Array, r: Rand, log: string[]) => Uint8Array;

const mutations: Mutation[] = [
  // Truncation anywhere, including inside the Ethernet header.
  (f, r, log) => {
    const n = r.int(f.length + 1);
    log.push(`truncate to ${n}`);
    return f.slice(0, n);
  },
  // VLAN tags (802.1Q / 802.1ad), one to three: core steps over two and refuses a third.
  (f, r, log) => {
    if (f.length < 12) return f;
    const tags = 1 + r.int(3);
    for (let i = 0; i < tags; i++) {
      const tpid = r.pick([0x8100, 0x88a8]);
      const tag = Uint8Array.of(tpid >> 8, tpid & 0xff, r.int(256), r.int(256));
      f = splice(f, 12, tag);
    }
    log.push(`${tags} vlan tag(s)`);
    return f;
  },
  // IHL other than the header's real length.
  (f, r, log) => {
    const { off, et } = l3(f);
    if (et !== 0x0800 || off >= f.length) return f;
    const ihl = r.int(16);
    f[off] = (f[off]! & 0xf0) | ihl;
    log.push(`ihl ${ihl}`);
    return f;
  },
  // IPv4 options (NOP, EOL, record-route, router-alert, random), lengths and checksum kept consistent.
  (f, r, log) => {
    const { off, et } = l3(f);
    if (et !== 0x0800 || off + 20 > f.length) return f;
    const words = 1 + r.int(10);
    const opts = r.pick([
      () => new Uint8Array(words * 4).fill(1),
      () => new Uint8Array(words * 4),
      () => { const o = new Uint8Array(words * 4).fill(0); o[0] = 7; o[1] = Math.min(39, words * 4); o[2] = 4; return o; },
      () => { const o = new Uint8Array(words * 4).fill(1); o[0] = 148; o[1] = 4; return o; },
      () => r.bytes(words * 4),
    ])();
    const ihl = Math.min(15, 5 + words);
    const g = splice(f, off + 20, opts.subarray(0, (ihl - 5) * 4));
    g[off] = 0x40 | ihl;
    be16(g, off + 2, ((g[off + 2]! << 8) | g[off + 3]!) + (ihl - 5) * 4);
    fixIpv4Checksum(g, off);
    log.push(`ipv4 options ${(ihl - 5) * 4} bytes`);
    return g;
  },
  // Fragments: MF, an offset, or both (a first, middle or last fragment).
  (f, r, log) => {
    const { off, et } = l3(f);
    if (et === 0x0800 && off + 20 <= f.length) {
      const v = r.pick([0x2000, 0x0001, 0x2010, 0x1fff, r.int(65536)]);
      be16(f, off + 6, v);
      if (r.chance(0.7)) fixIpv4Checksum(f, off);
      log.push(`ipv4 frag field 0x${v.toString(16)}`);
    }
    return f;
  },
  // IPv4 header checksum or L4 checksum wrong.
  (f, r, log) => {
    const { off, et } = l3(f);
    const at = et === 0x0800 ? off + 10 : off + 40 + r.pick([6, 16, 2]);
    if (at + 1 < f.length) {
      f[at] = f[at]! ^ (1 + r.int(255));
      log.push(`checksum byte ${at} flipped`);
    }
    return f;
  },
  // IPv6 extension-header chains: up to six headers of random kinds and lengths.
  (f, r, log) => {
    const { off, et } = l3(f);
    if (et !== 0x86dd || off + 40 > f.length) return f;
    const n = 1 + r.int(6);
    let next = f[off + 6]!;
    let chain = new Uint8Array(0);
    const kinds: number[] = [];
    for (let i = 0; i < n; i++) {
      const kind = r.pick(EXT_HDRS);
      kinds.unshift(kind);
      // AH counts 4-byte units minus 2; the others 8-byte units minus 1.
      const units = r.int(3);
      const len = kind === 51 ? (units + 2) * 4 : (units + 1) * 8;
      const h = r.chance(0.2) ? r.bytes(len) : new Uint8Array(len);
      h[0] = next;
      h[1] = kind === 51 ? units : units;
      if (kind === 44 && r.chance(0.5)) be16(h, 2, r.int(65536));
      chain = Uint8Array.from([...h, ...chain]);
      next = kind;
    }
    const g = splice(f, off + 40, chain);
    g[off + 6] = next;
    if (!r.chance(0.1)) be16(g, off + 4, ((g[off + 4]! << 8) | g[off + 5]!) + chain.length);
    log.push(`ipv6 ext headers ${kinds.join(",")}`);
    return g;
  },
  // IPv4 total length / IPv6 payload length disagreeing with the frame.
  (f, r, log) => {
    const { off, et } = l3(f);
    const at = et === 0x0800 ? off + 2 : et === 0x86dd ? off + 4 : -1;
    if (at < 0 || at + 2 > f.length) return f;
    const v = r.pick([0, 1, 19, 20, 40, r.int(65536), ((f[at]! << 8) | f[at + 1]!) + 1 + r.int(8)]);
    be16(f, at, v);
    if (et === 0x0800 && r.chance(0.7)) fixIpv4Checksum(f, off);
    log.push(`length field ${v}`);
    return f;
  },
  // TCP data offset, or any single byte of L3/L4 set to a random value.
  (f, r, log) => {
    if (f.length === 0) return f;
    const i = r.int(f.length);
    f[i] = r.int(256);
    log.push(`byte ${i} = ${f[i]}`);
    return f;
  },
  // Ethertype replaced (ARP, IPv4 with IPv6 body, 802.3 length, random).
  (f, r, log) => {
    if (f.length < 14) return f;
    const et = r.pick([0x0806, 0x0800, 0x86dd, 0x0040, 0x8847, r.int(65536)]);
    be16(f, 12, et);
    log.push(`ethertype 0x${et.toString(16)}`);
    return f;
  },
  // IP version nibble wrong.
  (f, r, log) => {
    const { off } = l3(f);
    if (off >= f.length) return f;
    const v = r.int(16);
    f[off] = (v << 4) | (f[off]! & 0xf);
    log.push(`ip version ${v}`);
    return f;
  },
];

/** Frame `index` of the stream `seed`. */
export function fuzzFrame(seed: number, index: number, a: FrameAddresses): FuzzFrame {
  const r = new Rand((Math.imul(seed, 0x9e3779b1) ^ Math.imul(index + 1, 0x85ebca6b)) >>> 0);
  const entry = r.pick(ENTRIES);
  const log: string[] = [];
  let frame: Uint8Array;
  const kind = r.int(10);
  if (kind === 0) {
    frame = r.bytes(r.int(160));
    log.push("random bytes");
  } else if (kind === 1) {
    // Random bytes behind a plausible Ethernet header: reaches the IP parsers far more often.
    frame = r.bytes(14 + r.int(140));
    be16(frame, 12, r.pick([0x0800, 0x86dd, 0x8100]));
    if (frame.length > 14) frame[14] = r.pick([0x45, 0x46, 0x4f, 0x60, r.int(256)]);
    log.push("random ip");
  } else {
    frame = buildFrame(baseSpec(r, entry, a));
    const n = kind === 2 ? 0 : 1 + r.int(3);
    log.push(`valid${n ? ` + ${n} mutation(s)` : ""}`);
    for (let i = 0; i < n; i++) frame = r.pick(mutations)(frame, r, log);
  }
  return { entry, frame, log, now: 0, srcIdentity: r.pick([0, 0, 0, 1000, 3000, r.int(1 << 24)]) };
}
