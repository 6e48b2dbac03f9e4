/*
 * Masquerading (BPF SNAT) on every engine (core/nat.ts M1–M6, P1–P4; core/pipeline.ts toNetwork and
 * fromNetwork outcome 2a): a pod's packet leaving the cluster through the node's device leaves with the
 * node's address and an allocated port, its reply is restored to the pod, colliding flows get different
 * ports, and traffic inside the cluster, to the exclusion CIDR, from the node itself or answering a
 * connection the outside opened is left alone. Cilium: bpf/lib/nat.h snat_v4_needs_masquerade,
 * snat_v4_new_mapping, snat_v4_rev_nat; bpf/bpf_host.c cil_to_netdev.
 */
import { describe, expect, it } from "vitest";
import { backends } from "./backends.ts";
import { allowAll, C, decoded, ipcacheKey, POD_A, POD_B, REMOTE_POD, send, standardNode, TCP, WORLD_IP } from "./fixture.ts";
import { MAP_SPECS } from "../../host/codecs.gen.ts";
import type { Datapath, RunResult } from "../../host/datapath.ts";
import { addrBytes16, formatAddr } from "../../host/ip.ts";
import { buildFrame, TCP_FLAGS, type FrameSpec } from "../../sim/packets.ts";
import { tcReturnCode, type KernelRunResult } from "../../datapath/kernel-engine.ts";

const NODE_IP = "192.168.57.11";
const NODE_IP_NUM = 0xc0a8390b;

/** The standard node with masquerading on (and, optionally, an exclusion CIDR). */
function masqNode(dp: Datapath, opts: { on?: boolean; exclude?: [number, number] } = {}): void {
  standardNode(dp);
  const cfg = dp.map(MAP_SPECS.Config).lookup(0)!;
  dp.map(MAP_SPECS.Config).update(0, {
    ...cfg,
    flags: opts.on === false ? cfg.flags : cfg.flags | C.CONFIG_F_MASQUERADE,
    nodeIpv4: NODE_IP_NUM,
    snatExclusionIpv4: opts.exclude?.[0] ?? 0,
    snatExclusionPrefixLen: opts.exclude?.[1] ?? 0,
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

/** ICMP echo identifier of an IPv4 frame (no options). */
const echoId = (f: Uint8Array): number => (f[14 + 20 + 4]! << 8) | f[14 + 20 + 5]!;

for (const backend of backends) {
  describe(`masquerade [${backend.name}]`, () => {
    it("M1–M5/P2: a pod's TCP to the world leaves as the node, keeping an in-range port; the reply is restored (2a) and is the flow's reply at the pod", async () => {
      const dp = await backend.create();
      masqNode(dp);
      const r = leave(dp, tcp(POD_A.ip, WORLD_IP, 40000));
      expect(r.verdict).toBe(C.CTX_ACT_OK);
      const out = decoded(r);
      expect([out.src, out.sport, out.dst, out.dport]).toEqual([NODE_IP, 40000, WORLD_IP, 80]);
      expect(out.l3ChecksumOk && out.l4ChecksumOk).toBe(true);
      expect(r.trace.traceFlags & C.TRACE_F_SNAT).toBe(C.TRACE_F_SNAT);
      expect(r.trace.hook).toBe(C.HOOK_TO_NETWORK);
      expect(r.trace.obsPoint).toBe(C.TRACE_TO_NETWORK);
      expect(r.trace.srcIdentity).toBe(POD_A.identity);
      expect(r.trace.dstIdentity).toBe(C.ID_WORLD);
      expect(dp.map(MAP_SPECS.Snat).count()).toBe(2);

      const back = send(dp, "fromNetwork", tcp(WORLD_IP, NODE_IP, 80, 40000, TCP_FLAGS.SYN | TCP_FLAGS.ACK), 101);
      expect(back.verdict).toBe(C.CTX_ACT_OK);
      const b = decoded(back);
      expect([b.src, b.sport, b.dst, b.dport]).toEqual([WORLD_IP, 80, POD_A.ip, 40000]);
      expect(b.l3ChecksumOk && b.l4ChecksumOk).toBe(true);
      expect(back.trace.traceFlags & (C.TRACE_F_SNAT | C.TRACE_F_REPLY)).toBe(C.TRACE_F_SNAT | C.TRACE_F_REPLY);
      expect(back.trace.obsPoint).toBe(C.TRACE_TO_ENDPOINT);
      // The pod's conntrack entry (made by fromEndpoint on the untranslated tuple) takes the restored reply.
      const at = dp.run("toEndpoint", back.output, { now: 101 });
      expect(at.verdict).toBe(C.CTX_ACT_OK);
      expect(at.trace.ctState).toBe(C.CT_REPLY);
      // The next packet of the flow reuses the mapping.
      const again = leave(dp, tcp(POD_A.ip, WORLD_IP, 40000, 80, TCP_FLAGS.ACK), 102);
      expect(decoded(again).sport).toBe(40000);
      expect(dp.map(MAP_SPECS.Snat).count()).toBe(2);
    });

    it("P1/P3: a port below the range gets a port in [nodePortMax + 1, 65535], the same for the same packet and maps", async () => {
      const dp = await backend.create();
      masqNode(dp);
      const a = decoded(leave(dp, { src: POD_A.ip, dst: WORLD_IP, proto: "UDP", sport: 1234, dport: 53 }));
      expect(a.src).toBe(NODE_IP);
      expect(a.sport).toBeGreaterThanOrEqual(32768);
      const back = send(dp, "fromNetwork", { src: WORLD_IP, dst: NODE_IP, proto: "UDP", sport: 53, dport: a.sport }, 101);
      const b = decoded(back);
      expect([b.dst, b.dport]).toEqual([POD_A.ip, 1234]);
      expect(b.l4ChecksumOk).toBe(true);
      // A fresh node allocates the same port for the same packet (a pure hash, no random draw).
      const dp2 = await backend.create(1);
      masqNode(dp2);
      expect(decoded(leave(dp2, { src: POD_A.ip, dst: WORLD_IP, proto: "UDP", sport: 1234, dport: 53 })).sport).toBe(a.sport);
    });

    it("P4: two pods with the same port to the same server get different node ports, and each reply finds its pod", async () => {
      const dp = await backend.create();
      masqNode(dp);
      const a = decoded(leave(dp, tcp(POD_A.ip, WORLD_IP, 40000)));
      const b = decoded(leave(dp, tcp(POD_B.ip, WORLD_IP, 40000)));
      expect(a.sport).toBe(40000);
      expect(b.sport).toBe(40001); // the kept port collides; the next candidate is free
      for (const [port, pod] of [[a.sport, POD_A.ip], [b.sport, POD_B.ip]] as const) {
        const r = decoded(send(dp, "fromNetwork", tcp(WORLD_IP, NODE_IP, 80, port, TCP_FLAGS.SYN | TCP_FLAGS.ACK), 101));
        expect([r.dst, r.dport]).toEqual([pod, 40000]);
      }
      // Another server: the same port is free again (the reply key holds the server).
      expect(decoded(leave(dp, tcp(POD_B.ip, "198.51.100.9", 40000))).sport).toBe(40000);
    });

    it("P4: no free port among SNAT_COLLISION_RETRIES candidates drops with NAT_NO_MAPPING", async () => {
      const dp = await backend.create();
      masqNode(dp);
      const taken = { toAddr: addrBytes16("10.244.0.99"), toPort: 1, family: C.FAMILY_IPV4, created: 1 };
      for (let i = 0; i < 32; i++) {
        dp.map(MAP_SPECS.Snat).update(
          { daddr: addrBytes16(NODE_IP), saddr: addrBytes16(WORLD_IP), dport: 40000 + i, sport: 80, nexthdr: TCP, flags: C.TUPLE_F_IN, family: C.FAMILY_IPV4 },
          taken,
        );
      }
      const r = leave(dp, tcp(POD_A.ip, WORLD_IP, 40000));
      expect(r.verdict).toBe(C.CTX_ACT_DROP);
      expect(r.dropReason).toBe(C.DROP_NAT_NO_MAPPING);
      // One more free port is enough.
      dp.map(MAP_SPECS.Snat).delete({ daddr: addrBytes16(NODE_IP), saddr: addrBytes16(WORLD_IP), dport: 40031, sport: 80, nexthdr: TCP, flags: C.TUPLE_F_IN, family: C.FAMILY_IPV4 });
      expect(decoded(leave(dp, tcp(POD_A.ip, WORLD_IP, 40000), 101)).sport).toBe(40031);
    });

    it("ICMP echo: the identifier is allocated like a port and the echo reply restored", async () => {
      const dp = await backend.create();
      masqNode(dp);
      const req: FrameSpec = { src: POD_A.ip, dst: WORLD_IP, proto: "ICMP", icmpType: 8, icmpId: 7 };
      const r = leave(dp, req);
      const out = decoded(r);
      expect(out.src).toBe(NODE_IP);
      expect(out.l4ChecksumOk && out.l3ChecksumOk).toBe(true);
      const id = echoId(r.output);
      expect(id).toBeGreaterThanOrEqual(32768);
      const back = send(dp, "fromNetwork", { src: WORLD_IP, dst: NODE_IP, proto: "ICMP", icmpType: 0, icmpId: id }, 101);
      expect(back.verdict).toBe(C.CTX_ACT_OK);
      expect(decoded(back).dst).toBe(POD_A.ip);
      expect(decoded(back).l4ChecksumOk).toBe(true);
      expect(echoId(back.output)).toBe(7);
      expect(dp.run("toEndpoint", back.output, { now: 101 }).trace.ctState).toBe(C.CT_REPLY);
    });

    it("M5: a CIDR identity (node-local scope) is outside the cluster and is masqueraded", async () => {
      const dp = await backend.create();
      masqNode(dp);
      dp.map(MAP_SPECS.Ipcache).update(ipcacheKey("198.51.100.0/24"), { secIdentity: (1 << 24) | 5 });
      expect(decoded(leave(dp, tcp(POD_A.ip, "198.51.100.7", 40000))).src).toBe(NODE_IP);
    });

    it("M1–M6: what is left alone", async () => {
      const cases: [string, (dp: Datapath) => FrameSpec][] = [
        // M1: masquerading off.
        ["off", (d) => { masqNode(d, { on: false }); return tcp(POD_A.ip, WORLD_IP, 40000); }],
        // M4: the destination is inside ipv4-native-routing-cidr.
        ["excluded CIDR", (d) => { masqNode(d, { exclude: [0xcb007100, 24] }); return tcp(POD_A.ip, WORLD_IP, 40000); }],
        // M5: a pod on another node, a remote node.
        ["remote pod", (d) => { masqNode(d); return tcp(POD_A.ip, REMOTE_POD.ip, 40000); }],
        ["remote node", (d) => {
          masqNode(d);
          d.map(MAP_SPECS.Ipcache).update(ipcacheKey("192.168.57.12/32"), { secIdentity: C.ID_REMOTE_NODE });
          return tcp(POD_A.ip, "192.168.57.12", 40000);
        }],
        // M2: an echo reply, a protocol without ports.
        ["echo reply", (d) => { masqNode(d); return { src: POD_A.ip, dst: WORLD_IP, proto: "ICMP", icmpType: 0, icmpId: 7 }; }],
      ];
      for (const [name, setup] of cases) {
        const d = await backend.create();
        const spec = setup(d);
        const frame = buildFrame(spec);
        const r = d.run("toNetwork", frame, { now: 100 });
        expect(r.verdict, name).toBe(C.CTX_ACT_OK);
        expect(r.output, name).toEqual(frame);
        expect(r.trace.traceFlags & C.TRACE_F_SNAT, name).toBe(0);
        expect(d.map(MAP_SPECS.Snat).count(), name).toBe(0);
      }
      // M3/H3: the node's own traffic from another address, or from a port below the SNAT range.
      const dp = await backend.create();
      masqNode(dp);
      for (const own of [buildFrame(tcp("192.168.57.50", WORLD_IP, 40000)), buildFrame(tcp(NODE_IP, WORLD_IP, 22, 5555, TCP_FLAGS.ACK))]) {
        expect(dp.run("toNetwork", own, { now: 100 }).output).toEqual(own);
      }
      // M6: the pod answers a connection the world opened (toEndpoint tracked it as TUPLE_F_IN).
      expect(send(dp, "toEndpoint", tcp(WORLD_IP, POD_A.ip, 5555, 8080), 100).verdict).toBe(C.CTX_ACT_OK);
      const answer = buildFrame(tcp(POD_A.ip, WORLD_IP, 8080, 5555, TCP_FLAGS.SYN | TCP_FLAGS.ACK));
      const ar = dp.run("toNetwork", answer, { now: 101 });
      expect(ar.output).toEqual(answer);
      expect(dp.map(MAP_SPECS.Snat).count()).toBe(0);
      // Not IP (ARP) and a later fragment whose first fragment was not seen (core/frag.ts F3) pass
      // untouched: the device also carries the node's traffic.
      const arp = new Uint8Array(42);
      arp[12] = 0x08; arp[13] = 0x06;
      expect(dp.run("toNetwork", arp, { now: 100 }).verdict).toBe(C.CTX_ACT_OK);
      const frag = buildFrame({ src: POD_A.ip, dst: WORLD_IP, proto: "UDP", sport: 40000, dport: 53, payload: new Uint8Array(16) });
      frag[14 + 7] = 3; // fragment offset 24 bytes: no L4 header
      const fr = dp.run("toNetwork", frag, { now: 100 });
      expect([fr.verdict, fr.output]).toEqual([C.CTX_ACT_OK, frag]);
      expect(dp.map(MAP_SPECS.Snat).count()).toBe(0);
      // A malformed IPv4 header (total length beyond the frame) is dropped as invalid (1a).
      const cut = buildFrame(tcp(POD_A.ip, WORLD_IP, 40000)).slice(0, 40);
      const cr = dp.run("toNetwork", cut, { now: 100 });
      expect([cr.verdict, cr.dropReason]).toEqual([C.CTX_ACT_DROP, C.DROP_INVALID]);
    });

    it("conntrack GC removes the SNAT mapping of a flow whose entry expired, and keeps the live flows' (wasm/js)", async () => {
      const dp = await backend.create();
      if (!("ctGc" in dp)) return; // the kernel engine's maps are reclaimed by LRU, as Cilium's without GC
      masqNode(dp);
      leave(dp, { src: POD_A.ip, dst: WORLD_IP, proto: "UDP", sport: 1234, dport: 53 }, 100); // lifetime 160
      leave(dp, tcp(POD_B.ip, WORLD_IP, 40000, 80, TCP_FLAGS.ACK), 100); // TCP past the SYN: lifetime 8100
      expect(dp.map(MAP_SPECS.Snat).count()).toBe(4);
      const gc = (dp as unknown as { ctGc(now: number): number }).ctGc;
      expect(gc.call(dp, 200)).toBe(1);
      const left = [...dp.map(MAP_SPECS.Snat).entries()].map(([k]) => [formatAddr(k.saddr, 4), formatAddr(k.daddr, 4)].join(">")).sort();
      expect(left).toEqual([`${POD_B.ip}>${WORLD_IP}`, `${WORLD_IP}>${NODE_IP}`]);
    });

    it("a reply for no mapping is not for a pod: fromNetwork hands it to the stack untouched", async () => {
      const dp = await backend.create();
      masqNode(dp);
      const frame = buildFrame(tcp(WORLD_IP, NODE_IP, 80, 40000, TCP_FLAGS.SYN | TCP_FLAGS.ACK));
      const r = dp.run("fromNetwork", frame, { now: 100 });
      expect(r.verdict).toBe(C.CTX_ACT_OK);
      expect(r.output).toEqual(frame);
      expect(formatAddr(r.trace.newDaddr, 4)).toBe(NODE_IP);
    });
  });
}

for (const backend of backends) {
  describe(`masquerade and the node's own connections [${backend.name}]`, () => {
    it("H1: a node socket's port is recorded as an identity mapping and never given to a pod's flow to the same peer", async () => {
      const dp = await backend.create();
      masqNode(dp);
      const own = buildFrame(tcp(NODE_IP, WORLD_IP, 40000));
      const r = dp.run("toNetwork", own, { now: 100 });
      expect([r.verdict, r.output]).toEqual([C.CTX_ACT_OK, own]);
      expect(r.trace.traceFlags & C.TRACE_F_SNAT).toBe(C.TRACE_F_SNAT);
      expect(dp.map(MAP_SPECS.Snat).count()).toBe(2);
      // A pod keeping the same port to the same server gets the next one.
      expect(decoded(leave(dp, tcp(POD_A.ip, WORLD_IP, 40000))).sport).toBe(40001);
      // H4: the server's answers to each reach their own socket: the node's unchanged, the pod's restored.
      const toNode = buildFrame(tcp(WORLD_IP, NODE_IP, 80, 40000, TCP_FLAGS.SYN | TCP_FLAGS.ACK));
      const n = dp.run("fromNetwork", toNode, { now: 101 });
      expect([n.verdict, n.output, n.trace.obsPoint]).toEqual([C.CTX_ACT_OK, toNode, C.TRACE_TO_NETWORK]);
      const p = send(dp, "fromNetwork", tcp(WORLD_IP, NODE_IP, 80, 40001, TCP_FLAGS.SYN | TCP_FLAGS.ACK), 101);
      expect([decoded(p).dst, decoded(p).dport]).toEqual([POD_A.ip, 40000]);
      // The node's next packets keep using their mapping.
      expect(dp.run("toNetwork", buildFrame(tcp(NODE_IP, WORLD_IP, 40000, 80, TCP_FLAGS.ACK)), { now: 102 }).output).toEqual(buildFrame(tcp(NODE_IP, WORLD_IP, 40000, 80, TCP_FLAGS.ACK)));
    });

    it("H2: a node socket picking a port a pod's flow already holds is itself moved to another port, and its replies restored", async () => {
      const dp = await backend.create();
      masqNode(dp);
      expect(decoded(leave(dp, tcp(POD_A.ip, WORLD_IP, 40000))).sport).toBe(40000);
      const r = dp.run("toNetwork", buildFrame(tcp(NODE_IP, WORLD_IP, 40000)), { now: 100 });
      const d = decoded(r);
      expect([d.src, d.sport, d.l4ChecksumOk]).toEqual([NODE_IP, 40001, true]);
      const back = send(dp, "fromNetwork", tcp(WORLD_IP, NODE_IP, 80, 40001, TCP_FLAGS.SYN | TCP_FLAGS.ACK), 101);
      expect([decoded(back).dst, decoded(back).dport, back.trace.obsPoint]).toEqual([NODE_IP, 40000, C.TRACE_TO_NETWORK]);
      // The pod's replies still reach the pod.
      const p = send(dp, "fromNetwork", tcp(WORLD_IP, NODE_IP, 80, 40000, TCP_FLAGS.SYN | TCP_FLAGS.ACK), 101);
      expect(decoded(p).dst).toBe(POD_A.ip);
    });

    it("H5: a NodePort flow SNATed by fromNetwork for a backend outside the cluster is not translated again at the device", async () => {
      const dp = await backend.create();
      masqNode(dp);
      const svc = { addr: addrBytes16("192.168.57.11"), dport: 30080, proto: TCP, scope: 0, family: C.FAMILY_IPV4 };
      dp.map(MAP_SPECS.Services).update({ ...svc, backendSlot: 0 }, { backendId: 0, count: 1, qcount: 0, revNatIndex: 5, flags: C.SVC_F_ROUTABLE });
      dp.map(MAP_SPECS.Services).update({ ...svc, backendSlot: 1 }, { backendId: 3, revNatIndex: 5 });
      dp.map(MAP_SPECS.Backends).update({ backendId: 3 }, { addr: addrBytes16("198.51.100.9"), port: 8080, proto: TCP, state: 0, family: C.FAMILY_IPV4 });
      dp.map(MAP_SPECS.RevNat).update({ revNatIndex: 5 }, { addr: addrBytes16("192.168.57.11"), port: 30080, family: C.FAMILY_IPV4 });
      const fwd = send(dp, "fromNetwork", tcp(WORLD_IP, NODE_IP, 45000, 30080), 100);
      expect(fwd.trace.traceFlags & C.TRACE_F_SNAT).toBe(C.TRACE_F_SNAT);
      const out = dp.run("toNetwork", fwd.output, { now: 100 });
      expect(out.output).toEqual(fwd.output);
      expect(out.trace.traceFlags & C.TRACE_F_SNAT).toBe(0);
      expect(dp.map(MAP_SPECS.Snat).count()).toBe(2);
    });
  });
}
