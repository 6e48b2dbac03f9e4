/*
 * ICMP errors about translated flows on every engine: an error about a masqueraded flow arriving at the
 * node (core/nat.ts E1–E3, fromNetwork outcome 2a) and an error about a load-balanced flow arriving at the
 * client (core/lb.ts lbRevNatIcmpError, toEndpoint outcome 4) reach the pod as errors about the packet
 * the pod sent — its own address and port inside, the service frontend as the destination — with every
 * checksum valid, and the pod's conntrack takes them as related to its flow (CT_RELATED). This is what
 * makes path MTU discovery work through masquerading and services. Cilium: bpf/lib/nat.h
 * snat_v4_rev_nat_handle_icmp_error; RFC 5508 section 4.2.
 */
import { describe, expect, it } from "vitest";
import { backends } from "./backends.ts";
import { addService, allowAll, C, decoded, POD_A, POD_B, send, standardNode, UDP, VIP, WORLD_IP } from "./fixture.ts";
import { MAP_SPECS } from "../../host/codecs.gen.ts";
import type { Datapath, RunResult } from "../../host/datapath.ts";
import { formatAddr } from "../../host/ip.ts";
import { buildFrame, onesSum, TCP_FLAGS, type FrameSpec } from "../../sim/packets.ts";

const NODE_IP = "192.168.57.11";
const NODE_IP_NUM = 0xc0a8390b;
const ROUTER = "198.51.100.1";

async function node(backend: (typeof backends)[number]): Promise<Datapath> {
  const dp = await backend.create();
  standardNode(dp);
  allowAll(dp, POD_A.epId);
  allowAll(dp, POD_B.epId);
  const cfg = dp.map(MAP_SPECS.Config).lookup(0)!;
  dp.map(MAP_SPECS.Config).update(0, { ...cfg, flags: (cfg.flags | C.CONFIG_F_MASQUERADE) >>> 0, nodeIpv4: NODE_IP_NUM });
  return dp;
}

/** A pod's packet through fromEndpoint and the device (toNetwork): what left the node. */
function leave(dp: Datapath, spec: FrameSpec, now = 100): Uint8Array {
  const e = send(dp, "fromEndpoint", spec, now);
  expect(e.verdict).toBe(C.CTX_ACT_OK);
  const r = dp.run("toNetwork", e.output, { now });
  expect(r.verdict).toBe(C.CTX_ACT_OK);
  return r.output;
}

/** An ICMP error from `from` to `to` about `frame` (its IP header and first 8 L4 bytes, as routers send). */
function errorAbout(frame: Uint8Array, from: string, to: string, type = 3, code = 4): FrameSpec {
  return { src: from, dst: to, proto: "ICMP", icmpType: type, icmpCode: code, embedded: frame.slice(14, 14 + 20 + 8) };
}

/** The embedded packet of an ICMPv4 error frame: addresses, ports (or echo identifier), header checksum. */
function inner(r: RunResult): { src: string; dst: string; sport: number; dport: number; checksumOk: boolean } {
  const ip = r.output.subarray(14 + 20 + 8);
  const l4 = ip.subarray(20);
  const icmp = ip[9] === C.IPPROTO_ICMP;
  return {
    src: formatAddr(ip.subarray(12, 16), 4),
    dst: formatAddr(ip.subarray(16, 20), 4),
    sport: icmp ? (l4[4]! << 8) | l4[5]! : (l4[0]! << 8) | l4[1]!,
    dport: icmp ? 0 : (l4[2]! << 8) | l4[3]!,
    checksumOk: onesSum(ip.subarray(0, 20)) === 0xffff,
  };
}

for (const backend of backends) {
  describe(`ICMP errors about translated flows [${backend.name}]`, () => {
    it("E1–E3: fragmentation needed about a masqueraded UDP flow reaches the pod about its own packet, as related traffic", async () => {
      const dp = await node(backend);
      const out = leave(dp, { src: POD_A.ip, dst: WORLD_IP, proto: "UDP", sport: 1234, dport: 53 });
      const natPort = decoded({ output: out } as RunResult).sport;
      expect(natPort).not.toBe(1234);
      for (const from of [ROUTER, WORLD_IP]) {
        const r = send(dp, "fromNetwork", errorAbout(out, from, NODE_IP), 101);
        expect(r.verdict).toBe(C.CTX_ACT_OK);
        expect(r.trace.traceFlags & C.TRACE_F_SNAT).toBe(C.TRACE_F_SNAT);
        expect(r.trace.obsPoint).toBe(C.TRACE_TO_ENDPOINT);
        const d = decoded(r);
        expect([d.src, d.dst, d.icmpType, d.icmpCode]).toEqual([from, POD_A.ip, 3, 4]);
        expect(d.l3ChecksumOk && d.l4ChecksumOk, "outer and ICMP checksums").toBe(true);
        expect(inner(r)).toEqual({ src: POD_A.ip, dst: WORLD_IP, sport: 1234, dport: 53, checksumOk: true });
        const at = dp.run("toEndpoint", r.output, { now: 101 });
        expect([at.verdict, at.trace.ctState]).toEqual([C.CTX_ACT_OK, C.CT_RELATED]);
      }
    });

    it("E1–E3: port unreachable about a masqueraded TCP flow and time exceeded about a masqueraded echo request", async () => {
      const dp = await node(backend);
      const tcp = leave(dp, { src: POD_A.ip, dst: WORLD_IP, proto: "TCP", sport: 80, dport: 443, tcpFlags: TCP_FLAGS.SYN });
      const r = send(dp, "fromNetwork", errorAbout(tcp, WORLD_IP, NODE_IP, 3, 3), 101);
      expect(decoded(r).dst).toBe(POD_A.ip);
      expect(decoded(r).l4ChecksumOk).toBe(true);
      expect(inner(r)).toMatchObject({ src: POD_A.ip, sport: 80, dport: 443, checksumOk: true });
      expect(dp.run("toEndpoint", r.output, { now: 101 }).trace.ctState).toBe(C.CT_RELATED);

      const echo = leave(dp, { src: POD_B.ip, dst: WORLD_IP, proto: "ICMP", icmpType: 8, icmpId: 7 });
      const te = send(dp, "fromNetwork", errorAbout(echo, ROUTER, NODE_IP, 11, 0), 101);
      expect(decoded(te).dst).toBe(POD_B.ip);
      expect(decoded(te).l4ChecksumOk).toBe(true);
      expect(inner(te)).toMatchObject({ src: POD_B.ip, dst: WORLD_IP, sport: 7, checksumOk: true });
      expect(dp.run("toEndpoint", te.output, { now: 101 }).trace.ctState).toBe(C.CT_RELATED);
    });

    it("E1/E2: an error about no mapping, or not addressed to the embedded source, goes to the node's stack untouched", async () => {
      const dp = await node(backend);
      const out = leave(dp, { src: POD_A.ip, dst: WORLD_IP, proto: "UDP", sport: 1234, dport: 53 });
      // Another port: no mapping.
      const other = out.slice();
      other[14 + 20] ^= 0x01;
      for (const spec of [errorAbout(other, ROUTER, NODE_IP), errorAbout(out, ROUTER, "192.168.57.99")]) {
        const frame = buildFrame(spec);
        const r = dp.run("fromNetwork", frame, { now: 101 });
        expect(r.verdict).toBe(C.CTX_ACT_OK);
        expect(r.output).toEqual(frame);
        expect(r.trace.traceFlags & C.TRACE_F_SNAT).toBe(0);
      }
    });

    it("service: an error about a load-balanced flow reaches the client about the frontend, from the frontend when the backend sent it", async () => {
      const dp = await node(backend);
      const BACKEND = { id: 1, ip: WORLD_IP, port: 5353 };
      addService(dp, { vip: VIP, port: 53, revNat: 9, backends: [BACKEND], proto: UDP });
      // The client's packet went to the backend (and was masqueraded on the way out).
      const sent = send(dp, "fromEndpoint", { src: POD_A.ip, dst: VIP, proto: "UDP", sport: 40000, dport: 53 }, 100);
      expect(decoded(sent).dst).toBe(WORLD_IP);
      // A router on the way or the backend itself answers, about the packet as it travelled.
      for (const [from, outerSrc] of [[ROUTER, ROUTER], [WORLD_IP, VIP]] as const) {
        const r = send(dp, "toEndpoint", errorAbout(sent.output, from, POD_A.ip, 3, from === ROUTER ? 4 : 3), 101);
        expect([r.verdict, r.trace.ctState]).toEqual([C.CTX_ACT_OK, C.CT_RELATED]);
        expect(r.trace.traceFlags & C.TRACE_F_REV_NAT).toBe(C.TRACE_F_REV_NAT);
        expect(r.trace.revNatIndex).toBe(9);
        const d = decoded(r);
        expect([d.src, d.dst]).toEqual([outerSrc, POD_A.ip]);
        expect(d.l3ChecksumOk && d.l4ChecksumOk).toBe(true);
        expect(inner(r)).toEqual({ src: POD_A.ip, dst: VIP, sport: 40000, dport: 53, checksumOk: true });
      }
      // Through masquerading: the node's reverse SNAT first, then the client's reverse NAT.
      const out = dp.run("toNetwork", sent.output, { now: 100 }).output;
      const back = send(dp, "fromNetwork", errorAbout(out, WORLD_IP, NODE_IP, 3, 3), 102);
      expect(decoded(back).dst).toBe(POD_A.ip);
      const at = dp.run("toEndpoint", back.output, { now: 102 });
      expect([at.verdict, at.trace.ctState]).toEqual([C.CTX_ACT_OK, C.CT_RELATED]);
      expect([decoded(at).src, decoded(at).l4ChecksumOk]).toEqual([VIP, true]);
      expect(inner(at)).toEqual({ src: POD_A.ip, dst: VIP, sport: 40000, dport: 53, checksumOk: true });
    });
  });
}
