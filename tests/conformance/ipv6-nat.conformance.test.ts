/*
 * IPv6 masquerading and NodePort on every engine (core/nat.ts M1–M6, P1–P4, H1 with the node's IPv6
 * address; core/pipeline.ts toNetwork, fromNetwork outcomes 2, 2a, 7 and 8): a dual-stack pod's IPv6
 * packet leaving the cluster leaves with the node's IPv6 address (ConfigValue.nodeIpv6) and an allocated
 * port or ICMPv6 echo identifier, its reply is restored, colliding flows get different ports, the IPv6
 * exclusion CIDR (ipv6-native-routing-cidr) and the cluster are left alone; a NodePort on the node's IPv6
 * address is DNATed to a local backend, or to a backend on another node with SNAT to the node's IPv6
 * address, and the replies are reverse-translated. Cilium: bpf/lib/nat.h snat_v6_needs_masquerade,
 * snat_v6_nat, snat_v6_rev_nat; bpf/lib/nodeport.h nodeport_lb6.
 */
import { describe, expect, it } from "vitest";
import { backends } from "./backends.ts";
import { addEndpoint, allowAll, C, decoded, ipcacheKey, POD_A, POD_B, send, standardNode } from "./fixture.ts";
import { MAP_SPECS } from "../../host/codecs.gen.ts";
import type { Datapath, RunResult } from "../../host/datapath.ts";
import { addrBytes16, formatAddr } from "../../host/ip.ts";
import { buildFrame, TCP_FLAGS, type FrameSpec } from "../../sim/packets.ts";
import { tcReturnCode, type KernelRunResult } from "../../datapath/kernel-engine.ts";

const NODE_IP = "192.168.57.11";
const NODE_IP6 = "fd00:57::11";
/** Dual-stack pods: the IPv6 addresses of pods A and B (same endpoint ids and identities). */
const POD_A6 = { ...POD_A, ip: "fd00::10" };
const POD_B6 = { ...POD_B, ip: "fd00::20" };
/** A pod on another node (fd00:1::/64) and a node. */
const REMOTE_POD6 = { ip: "fd00:1::5", identity: 3000 };
const REMOTE_NODE6 = "fd00:57::12";
const WORLD6 = "2001:db8::7";
const CLIENT6 = "2001:db8::99";
const TCP = C.IPPROTO_TCP;

/** The standard node, dual-stack, with masquerading on (unless `on` is false), the node's IPv6 address
 * (unless `node6` is false) and an optional IPv6 exclusion CIDR. */
function node6(dp: Datapath, opts: { on?: boolean; node6?: boolean; exclude6?: [string, number] } = {}): void {
  standardNode(dp);
  addEndpoint(dp, POD_A6);
  addEndpoint(dp, POD_B6);
  dp.map(MAP_SPECS.Ipcache).update(ipcacheKey("fd00:1::/64"), { secIdentity: REMOTE_POD6.identity });
  dp.map(MAP_SPECS.Ipcache).update(ipcacheKey(`${REMOTE_NODE6}/128`), { secIdentity: C.ID_REMOTE_NODE });
  dp.map(MAP_SPECS.Ipcache).update(ipcacheKey("::/0"), { secIdentity: C.ID_WORLD });
  const cfg = dp.map(MAP_SPECS.Config).lookup(0)!;
  dp.map(MAP_SPECS.Config).update(0, {
    ...cfg,
    flags: opts.on === false ? cfg.flags : cfg.flags | C.CONFIG_F_MASQUERADE,
    nodeIpv4: 0xc0a8390b,
    nodeIpv6: opts.node6 === false ? new Uint8Array(16) : addrBytes16(NODE_IP6),
    snatExclusionIpv6: opts.exclude6 ? addrBytes16(opts.exclude6[0]) : new Uint8Array(16),
    snatExclusionIpv6PrefixLen: opts.exclude6?.[1] ?? 0,
  });
  allowAll(dp, POD_A.epId);
  allowAll(dp, POD_B.epId);
}

const tcp = (src: string, dst: string, sport: number, dport = 80, flags: number = TCP_FLAGS.SYN): FrameSpec =>
  ({ src, dst, proto: "TCP", sport, dport, tcpFlags: flags });

function expectRetval(r: RunResult): void {
  if ("retval" in r) expect((r as KernelRunResult).retval, "tc return code").toBe(tcReturnCode(r.verdict, 0));
}

/** A pod's packet: fromEndpoint (policy, conntrack) then the device's toNetwork, as on a node. */
function leave(dp: Datapath, spec: FrameSpec, now = 100): RunResult {
  const e = send(dp, "fromEndpoint", spec, now);
  expect(e.verdict, "fromEndpoint").toBe(C.CTX_ACT_OK);
  const r = dp.run("toNetwork", e.output, { now });
  expectRetval(r);
  return r;
}

/** ICMPv6 echo identifier of an IPv6 frame (no extension headers). */
const echoId6 = (f: Uint8Array): number => (f[14 + 40 + 4]! << 8) | f[14 + 40 + 5]!;

/** The SNAT map's keys as "saddr>daddr family", sorted. */
const snatKeys = (dp: Datapath) => [...dp.map(MAP_SPECS.Snat).entries()].map(([k]) => `${formatAddr(k.saddr, k.family === C.FAMILY_IPV6 ? 6 : 4)}>${formatAddr(k.daddr, k.family === C.FAMILY_IPV6 ? 6 : 4)}`).sort();

/** A TCP NodePort on the node's IPv6 address :30080 (revNat 7) with one IPv6 backend at :8080. */
function nodePort6(dp: Datapath, backendIp: string): void {
  const key = { addr: addrBytes16(NODE_IP6), dport: 30080, proto: TCP, scope: 0, family: C.FAMILY_IPV6 };
  dp.map(MAP_SPECS.Services).update({ ...key, backendSlot: 0 }, { backendId: 0, count: 1, qcount: 0, revNatIndex: 7, flags: C.SVC_F_ROUTABLE | C.SVC_F_NODEPORT });
  dp.map(MAP_SPECS.Services).update({ ...key, backendSlot: 1 }, { backendId: 4, revNatIndex: 7 });
  dp.map(MAP_SPECS.Backends).update({ backendId: 4 }, { addr: addrBytes16(backendIp), port: 8080, proto: TCP, state: 0, family: C.FAMILY_IPV6 });
  dp.map(MAP_SPECS.RevNat).update({ revNatIndex: 7 }, { addr: addrBytes16(NODE_IP6), port: 30080, family: C.FAMILY_IPV6 });
}

for (const backend of backends) {
  describe(`IPv6 masquerade [${backend.name}]`, () => {
    it("M1–M5/P2: a pod's IPv6 TCP to the world leaves as the node's IPv6 address, keeping an in-range port; the reply is restored (2a) and is the flow's reply at the pod", async () => {
      const dp = await backend.create();
      node6(dp);
      const r = leave(dp, tcp(POD_A6.ip, WORLD6, 40000));
      expect(r.verdict).toBe(C.CTX_ACT_OK);
      const out = decoded(r);
      expect([out.src, out.sport, out.dst, out.dport]).toEqual([NODE_IP6, 40000, WORLD6, 80]);
      expect(out.l4ChecksumOk).toBe(true);
      expect(r.trace.traceFlags & C.TRACE_F_SNAT).toBe(C.TRACE_F_SNAT);
      expect(r.trace.hook).toBe(C.HOOK_TO_NETWORK);
      expect(r.trace.dstIdentity).toBe(C.ID_WORLD);
      expect(snatKeys(dp)).toEqual([`${WORLD6}>${NODE_IP6}`, `${POD_A6.ip}>${WORLD6}`]);
      for (const [, v] of dp.map(MAP_SPECS.Snat).entries()) expect(v.family).toBe(C.FAMILY_IPV6);

      const back = send(dp, "fromNetwork", tcp(WORLD6, NODE_IP6, 80, 40000, TCP_FLAGS.SYN | TCP_FLAGS.ACK), 101);
      expect(back.verdict).toBe(C.CTX_ACT_OK);
      const b = decoded(back);
      expect([b.src, b.sport, b.dst, b.dport]).toEqual([WORLD6, 80, POD_A6.ip, 40000]);
      expect(b.l4ChecksumOk).toBe(true);
      expect(back.trace.traceFlags & (C.TRACE_F_SNAT | C.TRACE_F_REPLY)).toBe(C.TRACE_F_SNAT | C.TRACE_F_REPLY);
      expect(back.trace.obsPoint).toBe(C.TRACE_TO_ENDPOINT);
      const at = dp.run("toEndpoint", back.output, { now: 101 });
      expect([at.verdict, at.trace.ctState]).toEqual([C.CTX_ACT_OK, C.CT_REPLY]);
      // The next packet reuses the mapping; the pod's IPv4 flow is masqueraded to the IPv4 address beside it.
      expect(decoded(leave(dp, tcp(POD_A6.ip, WORLD6, 40000, 80, TCP_FLAGS.ACK), 102)).sport).toBe(40000);
      expect(decoded(leave(dp, tcp(POD_A.ip, "203.0.113.7", 40000), 102)).src).toBe(NODE_IP);
      expect(dp.map(MAP_SPECS.Snat).count()).toBe(4);
    });

    it("P1/P3/P4: a port below the range gets a hashed port in range, the same on a fresh node; two pods colliding on one port get different ports and their own replies", async () => {
      const dp = await backend.create();
      node6(dp);
      const a = decoded(leave(dp, { src: POD_A6.ip, dst: WORLD6, proto: "UDP", sport: 1234, dport: 53 }));
      expect(a.src).toBe(NODE_IP6);
      expect(a.sport).toBeGreaterThanOrEqual(32768);
      expect(a.l4ChecksumOk).toBe(true);
      const back = decoded(send(dp, "fromNetwork", { src: WORLD6, dst: NODE_IP6, proto: "UDP", sport: 53, dport: a.sport }, 101));
      expect([back.dst, back.dport, back.l4ChecksumOk]).toEqual([POD_A6.ip, 1234, true]);
      const dp2 = await backend.create(1);
      node6(dp2);
      expect(decoded(leave(dp2, { src: POD_A6.ip, dst: WORLD6, proto: "UDP", sport: 1234, dport: 53 })).sport).toBe(a.sport);

      const x = decoded(leave(dp, tcp(POD_A6.ip, WORLD6, 40000)));
      const y = decoded(leave(dp, tcp(POD_B6.ip, WORLD6, 40000)));
      expect([x.sport, y.sport]).toEqual([40000, 40001]);
      for (const [port, pod] of [[x.sport, POD_A6.ip], [y.sport, POD_B6.ip]] as const) {
        const r = decoded(send(dp, "fromNetwork", tcp(WORLD6, NODE_IP6, 80, port, TCP_FLAGS.SYN | TCP_FLAGS.ACK), 101));
        expect([r.dst, r.dport]).toEqual([pod, 40000]);
      }
    });

    it("P4: no free port among SNAT_COLLISION_RETRIES candidates drops with NAT_NO_MAPPING; one freed is taken", async () => {
      const dp = await backend.create();
      node6(dp);
      const taken = { toAddr: addrBytes16("fd00::99"), toPort: 1, family: C.FAMILY_IPV6, created: 1 };
      const key = (port: number) => ({ daddr: addrBytes16(NODE_IP6), saddr: addrBytes16(WORLD6), dport: port, sport: 80, nexthdr: TCP, flags: C.TUPLE_F_IN, family: C.FAMILY_IPV6 });
      for (let i = 0; i < 32; i++) dp.map(MAP_SPECS.Snat).update(key(40000 + i), taken);
      const r = leave(dp, tcp(POD_A6.ip, WORLD6, 40000));
      expect([r.verdict, r.dropReason]).toEqual([C.CTX_ACT_DROP, C.DROP_NAT_NO_MAPPING]);
      dp.map(MAP_SPECS.Snat).delete(key(40031));
      expect(decoded(leave(dp, tcp(POD_A6.ip, WORLD6, 40000), 101)).sport).toBe(40031);
      // The same ports of the node's IPv4 address are another family's: free.
      expect(decoded(leave(dp, tcp(POD_A.ip, "203.0.113.7", 40000), 101)).sport).toBe(40000);
    });

    it("ICMPv6 echo: the identifier is allocated like a port, checksums stay valid and the echo reply is restored", async () => {
      const dp = await backend.create();
      node6(dp);
      const r = leave(dp, { src: POD_A6.ip, dst: WORLD6, proto: "ICMPv6", icmpType: 128, icmpId: 7 });
      const out = decoded(r);
      expect([out.src, out.l4ChecksumOk]).toEqual([NODE_IP6, true]);
      const id = echoId6(r.output);
      expect(id).toBeGreaterThanOrEqual(32768);
      const back = send(dp, "fromNetwork", { src: WORLD6, dst: NODE_IP6, proto: "ICMPv6", icmpType: 129, icmpId: id }, 101);
      expect(back.verdict).toBe(C.CTX_ACT_OK);
      expect([decoded(back).dst, decoded(back).l4ChecksumOk, echoId6(back.output)]).toEqual([POD_A6.ip, true, 7]);
      expect(dp.run("toEndpoint", back.output, { now: 101 }).trace.ctState).toBe(C.CT_REPLY);
    });

    it("M1–M6: what is left alone over IPv6", async () => {
      const cases: [string, (dp: Datapath) => FrameSpec][] = [
        // M1: masquerading off; on, but the node has no IPv6 address.
        ["off", (d) => { node6(d, { on: false }); return tcp(POD_A6.ip, WORLD6, 40000); }],
        ["no node IPv6 address", (d) => { node6(d, { node6: false }); return tcp(POD_A6.ip, WORLD6, 40000); }],
        // M4: the destination is inside ipv6-native-routing-cidr.
        ["excluded CIDR", (d) => { node6(d, { exclude6: ["2001:db8::", 32] }); return tcp(POD_A6.ip, WORLD6, 40000); }],
        ["excluded /128", (d) => { node6(d, { exclude6: [WORLD6, 128] }); return tcp(POD_A6.ip, WORLD6, 40000); }],
        // M5: a pod on another node, another node.
        ["remote pod", (d) => { node6(d); return tcp(POD_A6.ip, REMOTE_POD6.ip, 40000); }],
        ["remote node", (d) => { node6(d); return tcp(POD_A6.ip, REMOTE_NODE6, 40000); }],
        // M2: an echo reply.
        ["echo reply", (d) => { node6(d); return { src: POD_A6.ip, dst: WORLD6, proto: "ICMPv6", icmpType: 129, icmpId: 7 }; }],
        // M3: the node's traffic from another address, and from a port below the SNAT range (H3).
        ["other node address", (d) => { node6(d); return tcp("fd00:57::50", WORLD6, 40000); }],
        ["node port below range", (d) => { node6(d); return tcp(NODE_IP6, WORLD6, 22, 5555, TCP_FLAGS.ACK); }],
      ];
      for (const [name, setup] of cases) {
        const d = await backend.create();
        const frame = buildFrame(setup(d));
        const r = d.run("toNetwork", frame, { now: 100 });
        expect(r.verdict, name).toBe(C.CTX_ACT_OK);
        expect(r.output, name).toEqual(frame);
        expect(r.trace.traceFlags & C.TRACE_F_SNAT, name).toBe(0);
        expect(d.map(MAP_SPECS.Snat).count(), name).toBe(0);
      }
      // The exclusion CIDR of one family does not exclude the other: a /32 of 2001:db8:: leaves another
      // IPv6 prefix masqueraded.
      const dp = await backend.create();
      node6(dp, { exclude6: ["2001:db8::", 32] });
      expect(decoded(leave(dp, tcp(POD_A6.ip, "2001:db9::1", 40000))).src).toBe(NODE_IP6);
      // M6: the pod answers a connection the world opened.
      expect(send(dp, "toEndpoint", tcp(WORLD6, POD_A6.ip, 5555, 8080), 100).verdict).toBe(C.CTX_ACT_OK);
      const answer = buildFrame(tcp(POD_A6.ip, WORLD6, 8080, 5555, TCP_FLAGS.SYN | TCP_FLAGS.ACK));
      expect(dp.run("toNetwork", answer, { now: 101 }).output).toEqual(answer);
      expect(dp.map(MAP_SPECS.Snat).count()).toBe(2);
    });

    it("H1/H4: the node's own IPv6 socket keeps its port as an identity mapping, a pod's flow to the same peer gets the next", async () => {
      const dp = await backend.create();
      node6(dp);
      const own = buildFrame(tcp(NODE_IP6, WORLD6, 40000));
      const r = dp.run("toNetwork", own, { now: 100 });
      expect([r.verdict, r.output]).toEqual([C.CTX_ACT_OK, own]);
      expect(r.trace.traceFlags & C.TRACE_F_SNAT).toBe(C.TRACE_F_SNAT);
      expect(decoded(leave(dp, tcp(POD_A6.ip, WORLD6, 40000))).sport).toBe(40001);
      const toNode = buildFrame(tcp(WORLD6, NODE_IP6, 80, 40000, TCP_FLAGS.SYN | TCP_FLAGS.ACK));
      const n = dp.run("fromNetwork", toNode, { now: 101 });
      expect([n.verdict, n.output, n.trace.obsPoint]).toEqual([C.CTX_ACT_OK, toNode, C.TRACE_TO_NETWORK]);
    });

    it("conntrack GC removes an IPv6 flow's SNAT mapping with its expired entry (wasm/js)", async () => {
      const dp = await backend.create();
      if (!("ctGc" in dp)) return; // the kernel engine's maps are reclaimed by LRU, as Cilium's without GC
      node6(dp);
      leave(dp, { src: POD_A6.ip, dst: WORLD6, proto: "UDP", sport: 1234, dport: 53 }, 100); // lifetime 160
      leave(dp, tcp(POD_B6.ip, WORLD6, 40000, 80, TCP_FLAGS.ACK), 100); // lifetime 8100
      expect(dp.map(MAP_SPECS.Snat).count()).toBe(4);
      expect((dp as unknown as { ctGc(now: number): number }).ctGc(200)).toBe(1);
      expect(snatKeys(dp)).toEqual([`${WORLD6}>${NODE_IP6}`, `${POD_B6.ip}>${WORLD6}`]);
    });
  });

  describe(`IPv6 NodePort [${backend.name}]`, () => {
    it("7: an external IPv6 client reaches a NodePort on the node's IPv6 address, DNATed to a local backend; the backend's reply is reverse-NATed", async () => {
      const dp = await backend.create();
      node6(dp, { on: false });
      nodePort6(dp, POD_A6.ip);
      const r = send(dp, "fromNetwork", tcp(CLIENT6, NODE_IP6, 45000, 30080), 100);
      expect(r.verdict).toBe(C.CTX_ACT_OK);
      const d = decoded(r);
      expect([d.src, d.sport, d.dst, d.dport, d.l4ChecksumOk]).toEqual([CLIENT6, 45000, POD_A6.ip, 8080, true]);
      expect(r.trace.traceFlags & C.TRACE_F_DNAT).toBe(C.TRACE_F_DNAT);
      expect([r.trace.backendId, r.trace.revNatIndex, r.trace.obsPoint]).toEqual([4, 7, C.TRACE_TO_ENDPOINT]);
      expect(dp.run("toEndpoint", r.output, { now: 100 }).verdict).toBe(C.CTX_ACT_OK);
      // R2: the backend's answer leaves through its fromEndpoint as the frontend.
      const reply = send(dp, "fromEndpoint", tcp(POD_A6.ip, CLIENT6, 8080, 45000, TCP_FLAGS.SYN | TCP_FLAGS.ACK), 101);
      expect(reply.verdict).toBe(C.CTX_ACT_OK);
      const rd = decoded(reply);
      expect([rd.src, rd.sport, rd.dst, rd.dport, rd.l4ChecksumOk]).toEqual([NODE_IP6, 30080, CLIENT6, 45000, true]);
      expect(reply.trace.traceFlags & C.TRACE_F_REV_NAT).toBe(C.TRACE_F_REV_NAT);
      // The flow's next packet goes to the same backend.
      expect(decoded(send(dp, "fromNetwork", tcp(CLIENT6, NODE_IP6, 45000, 30080, TCP_FLAGS.ACK), 102)).dst).toBe(POD_A6.ip);
    });

    it("8: a NodePort backend on another node: DNAT and SNAT to the node's IPv6 address; the reply gets the client back and the frontend as source", async () => {
      const dp = await backend.create();
      node6(dp, { on: false });
      nodePort6(dp, REMOTE_POD6.ip);
      const r = send(dp, "fromNetwork", tcp(CLIENT6, NODE_IP6, 45000, 30080), 100);
      expect(r.verdict).toBe(C.CTX_ACT_OK);
      const d = decoded(r);
      expect([d.src, d.sport, d.dst, d.dport, d.l4ChecksumOk]).toEqual([NODE_IP6, 45000, REMOTE_POD6.ip, 8080, true]);
      expect(r.trace.traceFlags & (C.TRACE_F_DNAT | C.TRACE_F_SNAT)).toBe(C.TRACE_F_DNAT | C.TRACE_F_SNAT);
      expect(r.trace.obsPoint).toBe(C.TRACE_TO_NETWORK);
      expect(snatKeys(dp)).toEqual([`${CLIENT6}>${REMOTE_POD6.ip}`, `${REMOTE_POD6.ip}>${NODE_IP6}`]);
      // A second client on the same port is SNATed to another port.
      const r2 = decoded(send(dp, "fromNetwork", tcp("2001:db8::98", NODE_IP6, 45000, 30080), 100));
      expect([r2.src, r2.sport]).toEqual([NODE_IP6, 45001]);

      const back = send(dp, "fromNetwork", tcp(REMOTE_POD6.ip, NODE_IP6, 8080, 45000, TCP_FLAGS.SYN | TCP_FLAGS.ACK), 101);
      expect(back.verdict).toBe(C.CTX_ACT_OK);
      const b = decoded(back);
      expect([b.src, b.sport, b.dst, b.dport, b.l4ChecksumOk]).toEqual([NODE_IP6, 30080, CLIENT6, 45000, true]);
      expect(back.trace.traceFlags & (C.TRACE_F_SNAT | C.TRACE_F_REV_NAT)).toBe(C.TRACE_F_SNAT | C.TRACE_F_REV_NAT);
      expect(back.trace.obsPoint).toBe(C.TRACE_TO_NETWORK);
      // H5: with masquerading on, the SNATed NodePort packet is not translated again at the device.
      const cfg = dp.map(MAP_SPECS.Config).lookup(0)!;
      dp.map(MAP_SPECS.Config).update(0, { ...cfg, flags: cfg.flags | C.CONFIG_F_MASQUERADE });
      dp.map(MAP_SPECS.Ipcache).update(ipcacheKey("fd00:1::/64"), { secIdentity: C.ID_WORLD });
      const dev = dp.run("toNetwork", r.output, { now: 102 });
      expect([dev.verdict, dev.output, dev.trace.traceFlags & C.TRACE_F_SNAT]).toEqual([C.CTX_ACT_OK, r.output, 0]);
    });

    it("8: without a node IPv6 address a NodePort flow to a remote IPv6 backend is dropped (NO_CONFIG), never forwarded unSNATed", async () => {
      const dp = await backend.create();
      node6(dp, { on: false, node6: false });
      nodePort6(dp, REMOTE_POD6.ip);
      const r = send(dp, "fromNetwork", tcp(CLIENT6, NODE_IP6, 45000, 30080), 100);
      expect([r.verdict, r.dropReason]).toEqual([C.CTX_ACT_DROP, C.DROP_NO_CONFIG]);
      expect(dp.map(MAP_SPECS.Snat).count()).toBe(0);
    });
  });
}
