/*
 * The overlay on every engine (core/overlay.ts O1–O4): a packet from a local pod to a pod on another node
 * leaves with the tunnel key {that node's tunnel endpoint, the sender's identity}; a packet arriving
 * through the tunnel device is judged on the identity in its key. The kernel engine observes the key with
 * bpf_skb_get_tunnel_key after the program ran, and gives the received key with bpf_skb_set_tunnel_key
 * before it runs (bpf/programs/test_harness.bpf.c), so the comparison is of what the kernel holds.
 * VXLAN and Geneve share one code path; both protocols run every encapsulation case.
 */
import { describe, expect, it } from "vitest";
import { backends } from "./backends.ts";
import { addPolicy, allowAll, C, configure, ipcacheKey, POD_A, POD_B, REMOTE_POD, send, standardNode, TCP, WORLD_IP } from "./fixture.ts";
import { MAP_SPECS } from "../../host/codecs.gen.ts";
import type { Datapath, RunResult } from "../../host/datapath.ts";
import { addrBytes16, formatAddr } from "../../host/ip.ts";
import { buildFrame, TCP_FLAGS } from "../../sim/packets.ts";
import { tcReturnCode, type KernelRunResult } from "../../datapath/kernel-engine.ts";

const NODE_B = "192.168.56.22";
const NODE_B6 = "fd00::22";
const TUNNEL_IFINDEX = 1;

function overlayNode(dp: Datapath, protocol: number): void {
  standardNode(dp);
  const cfg = dp.map(MAP_SPECS.Config).lookup(0)!;
  dp.map(MAP_SPECS.Config).update(0, { ...cfg, tunnelProtocol: protocol, tunnelIfindex: TUNNEL_IFINDEX });
  dp.map(MAP_SPECS.Ipcache).update(ipcacheKey("10.244.1.0/24"), { secIdentity: REMOTE_POD.identity, tunnelEndpoint: addrBytes16(NODE_B), flags: C.IPCACHE_F_HAS_TUNNEL_EP });
}

const syn = (src: string, dst: string, sport = 40000) => ({ src, dst, proto: "TCP" as const, sport, dport: 80, tcpFlags: TCP_FLAGS.SYN });

function expectRetval(r: RunResult): void {
  if ("retval" in r) expect((r as KernelRunResult).retval, "tc return code").toBe(tcReturnCode(r.verdict, TUNNEL_IFINDEX));
}

function peerOf(r: RunResult): string {
  return formatAddr(r.trace.tunnelPeer, r.trace.tunnelFamily === C.FAMILY_IPV6 ? 6 : 4);
}

for (const backend of backends) {
  for (const [proto, protoName] of [[C.TUNNEL_PROTO_VXLAN, "vxlan"], [C.TUNNEL_PROTO_GENEVE, "geneve"]] as const) {
    describe(`overlay encapsulation, ${protoName} [${backend.name}]`, () => {
      it("O1/O2: a pod on another node is reached through its node's tunnel endpoint with the sender's identity", async () => {
        const dp = await backend.create();
        overlayNode(dp, proto);
        allowAll(dp, POD_A.epId);
        const r = send(dp, "fromEndpoint", syn(POD_A.ip, REMOTE_POD.ip), 100);
        expect(r.verdict).toBe(C.CTX_ACT_TUNNEL);
        expect(r.tunnel).toEqual({ remote: NODE_B, tunnelId: POD_A.identity });
        expect(r.trace.obsPoint).toBe(C.TRACE_TO_OVERLAY);
        expect(r.trace.tunnelId).toBe(POD_A.identity);
        expect(peerOf(r)).toBe(NODE_B);
        expect(r.output).toEqual(buildFrame(syn(POD_A.ip, REMOTE_POD.ip)));
        expectRetval(r);
      });

      it("O1: local pods and the world are not encapsulated", async () => {
        const dp = await backend.create();
        overlayNode(dp, proto);
        allowAll(dp, POD_A.epId);
        for (const dst of [POD_B.ip, WORLD_IP]) {
          const r = send(dp, "fromEndpoint", syn(POD_A.ip, dst), 100);
          expect(r.verdict, dst).toBe(C.CTX_ACT_OK);
          expect(r.tunnel, dst).toBeUndefined();
          expect(r.trace.tunnelFamily, dst).toBe(0);
        }
      });

      it("O1: an entry marked skip-tunnel is routed natively", async () => {
        const dp = await backend.create();
        overlayNode(dp, proto);
        allowAll(dp, POD_A.epId);
        dp.map(MAP_SPECS.Ipcache).update(ipcacheKey("10.244.1.0/24"), { secIdentity: REMOTE_POD.identity, tunnelEndpoint: addrBytes16(NODE_B), flags: C.IPCACHE_F_HAS_TUNNEL_EP | C.IPCACHE_F_SKIP_TUNNEL });
        const r = send(dp, "fromEndpoint", syn(POD_A.ip, REMOTE_POD.ip), 100);
        expect(r.verdict).toBe(C.CTX_ACT_OK);
        expect(r.tunnel).toBeUndefined();
      });

      it("an IPv6 tunnel endpoint", async () => {
        const dp = await backend.create();
        overlayNode(dp, proto);
        allowAll(dp, POD_A.epId);
        dp.map(MAP_SPECS.Ipcache).update(ipcacheKey("10.244.1.0/24"), { secIdentity: REMOTE_POD.identity, tunnelEndpoint: addrBytes16(NODE_B6), flags: C.IPCACHE_F_HAS_TUNNEL_EP | C.IPCACHE_F_IPV6_TUNNEL_EP });
        const r = send(dp, "fromEndpoint", syn(POD_A.ip, REMOTE_POD.ip), 100);
        expect(r.verdict).toBe(C.CTX_ACT_TUNNEL);
        expect(r.tunnel).toEqual({ remote: NODE_B6, tunnelId: POD_A.identity });
        expect(peerOf(r)).toBe(NODE_B6);
      });

      it("O3: an entry claiming a tunnel endpoint without an address is dropped (160)", async () => {
        const dp = await backend.create();
        overlayNode(dp, proto);
        allowAll(dp, POD_A.epId);
        dp.map(MAP_SPECS.Ipcache).update(ipcacheKey("10.244.1.0/24"), { secIdentity: REMOTE_POD.identity, flags: C.IPCACHE_F_HAS_TUNNEL_EP });
        const r = send(dp, "fromEndpoint", syn(POD_A.ip, REMOTE_POD.ip), 100);
        expect(r.verdict).toBe(C.CTX_ACT_DROP);
        expect(r.dropReason).toBe(C.DROP_NO_TUNNEL_ENDPOINT);
        expect(r.tunnel).toBeUndefined();
        expectRetval(r);
      });

      it("O2: an identity wider than the VNI is refused (171)", async () => {
        const dp = await backend.create();
        overlayNode(dp, proto);
        const wide = { ip: "10.244.0.30", epId: 3, identity: 0x1000001 };
        dp.map(MAP_SPECS.Endpoints).update({ addr: addrBytes16(wide.ip), family: C.FAMILY_IPV4 }, { epId: wide.epId, secIdentity: wide.identity, ifindex: 103 });
        allowAll(dp, wide.epId);
        const r = send(dp, "fromEndpoint", syn(wide.ip, REMOTE_POD.ip), 100);
        expect(r.dropReason).toBe(C.DROP_INVALID_IDENTITY);
        expect(r.tunnel).toBeUndefined();
      });

      it("egress policy decides before the tunnel: a denied packet is never encapsulated", async () => {
        const dp = await backend.create();
        overlayNode(dp, proto);
        const r = send(dp, "fromEndpoint", syn(POD_A.ip, REMOTE_POD.ip), 100);
        expect(r.dropReason).toBe(C.DROP_POLICY);
        expect(r.tunnel).toBeUndefined();
      });

      it("the reply of a flow that came through the tunnel goes back through it", async () => {
        const dp = await backend.create();
        overlayNode(dp, proto);
        addPolicy(dp, { epId: POD_A.epId, egress: false, identity: REMOTE_POD.identity, proto: TCP, port: 80 });
        const inbound = dp.run("fromOverlay", buildFrame(syn(REMOTE_POD.ip, POD_A.ip, 41000)), { now: 100, tunnel: { remote: NODE_B, tunnelId: REMOTE_POD.identity } });
        expect(inbound.verdict).toBe(C.CTX_ACT_OK);
        const reply = { src: POD_A.ip, dst: REMOTE_POD.ip, proto: "TCP" as const, sport: 80, dport: 41000, tcpFlags: TCP_FLAGS.SYN | TCP_FLAGS.ACK };
        const r = send(dp, "fromEndpoint", reply, 101);
        expect(r.verdict).toBe(C.CTX_ACT_TUNNEL);
        expect(r.trace.ctState).toBe(C.CT_REPLY);
        expect(r.tunnel).toEqual({ remote: NODE_B, tunnelId: POD_A.identity });
      });

      it("with the overlay off, remote pods are forwarded unencapsulated (native routing)", async () => {
        const dp = await backend.create();
        overlayNode(dp, C.TUNNEL_PROTO_NONE);
        allowAll(dp, POD_A.epId);
        const r = send(dp, "fromEndpoint", syn(POD_A.ip, REMOTE_POD.ip), 100);
        expect(r.verdict).toBe(C.CTX_ACT_OK);
        expect(r.tunnel).toBeUndefined();
      });
    });
  }

  describe(`overlay decapsulation [${backend.name}]`, () => {
    const fromB = (tunnelId: number | undefined, dst = POD_A.ip) => ({
      now: 100,
      ...(tunnelId === undefined ? {} : { tunnel: { remote: NODE_B, tunnelId } }),
      frame: buildFrame(syn(REMOTE_POD.ip, dst)),
    });
    const run = (dp: Datapath, x: ReturnType<typeof fromB>) => dp.run("fromOverlay", x.frame, { now: x.now, tunnel: "tunnel" in x ? x.tunnel : undefined });

    it("O4: ingress policy is enforced on the identity the tunnel key carries", async () => {
      const dp = await backend.create();
      overlayNode(dp, C.TUNNEL_PROTO_VXLAN);
      addPolicy(dp, { epId: POD_A.epId, egress: false, identity: REMOTE_POD.identity, proto: TCP, port: 80, cookie: 7 });
      const ok = run(dp, fromB(REMOTE_POD.identity));
      expect(ok.verdict).toBe(C.CTX_ACT_OK);
      expect(ok.trace.srcIdentity).toBe(REMOTE_POD.identity);
      expect(ok.trace.ingressCookie).toBe(7);
      expect(ok.trace.tunnelId).toBe(REMOTE_POD.identity);
      expect(peerOf(ok)).toBe(NODE_B);
      expectRetval(ok);
      // The same inner packet carrying another identity is judged on that identity, not on its address.
      const other = run(dp, { ...fromB(4242), frame: buildFrame(syn(REMOTE_POD.ip, POD_A.ip, 40001)) });
      expect(other.verdict).toBe(C.CTX_ACT_DROP);
      expect(other.dropReason).toBe(C.DROP_POLICY);
      expect(other.trace.srcIdentity).toBe(4242);
      expectRetval(other);
    });

    it("O4: a packet without tunnel metadata is dropped (147)", async () => {
      const dp = await backend.create();
      overlayNode(dp, C.TUNNEL_PROTO_VXLAN);
      allowAll(dp, POD_A.epId);
      const r = run(dp, fromB(undefined));
      expect(r.dropReason).toBe(C.DROP_NO_TUNNEL_KEY);
      expect(r.trace.tunnelFamily).toBe(0);
    });

    it("O4: tunnel id 0 and reserved:host are invalid identities (171)", async () => {
      const dp = await backend.create();
      overlayNode(dp, C.TUNNEL_PROTO_VXLAN);
      allowAll(dp, POD_A.epId);
      for (const id of [0, C.ID_HOST]) {
        const r = run(dp, fromB(id));
        expect(r.dropReason, `id ${id}`).toBe(C.DROP_INVALID_IDENTITY);
        expect(r.trace.tunnelFamily, `id ${id}`).toBe(C.FAMILY_IPV4);
      }
    });

    it("a decapsulated packet for a pod that is not on this node is dropped (151)", async () => {
      const dp = await backend.create();
      configure(dp);
      const r = run(dp, fromB(REMOTE_POD.identity, "10.244.0.99"));
      expect(r.dropReason).toBe(C.DROP_UNROUTABLE);
    });
  });
}

// Dual stack over an IPv4 underlay (issue #13 item 6): an IPv6 pod packet takes the same path as an IPv4
// one — the ipcache entry of the remote pod's IPv6 address names its node's IPv4 address, the sender's
// identity goes in the VNI, and the receiving node judges the inner IPv6 packet on that identity.
const POD_A6 = { ip: "fd00:10:244::a", epId: POD_A.epId, identity: POD_A.identity };
const REMOTE_POD6 = "fd00:10:244:1::5";

function overlayNode6(dp: Datapath): void {
  overlayNode(dp, C.TUNNEL_PROTO_VXLAN);
  dp.map(MAP_SPECS.Endpoints).update({ addr: addrBytes16(POD_A6.ip), family: C.FAMILY_IPV6 }, { epId: POD_A6.epId, secIdentity: POD_A6.identity, ifindex: 100 + POD_A6.epId });
  dp.map(MAP_SPECS.Ipcache).update(ipcacheKey(POD_A6.ip), { secIdentity: POD_A6.identity });
  dp.map(MAP_SPECS.Ipcache).update(ipcacheKey(`${REMOTE_POD6}/128`), { secIdentity: REMOTE_POD.identity, tunnelEndpoint: addrBytes16(NODE_B), flags: C.IPCACHE_F_HAS_TUNNEL_EP });
}

for (const backend of backends) {
  describe(`overlay with IPv6 inner packets over an IPv4 underlay [${backend.name}]`, () => {
    it("O1/O2: an IPv6 packet to a pod on another node is encapsulated to its node's IPv4 address with the sender's identity", async () => {
      const dp = await backend.create();
      overlayNode6(dp);
      allowAll(dp, POD_A6.epId);
      const r = send(dp, "fromEndpoint", syn(POD_A6.ip, REMOTE_POD6), 100);
      expect(r.verdict).toBe(C.CTX_ACT_TUNNEL);
      expect(r.tunnel).toEqual({ remote: NODE_B, tunnelId: POD_A6.identity });
      expect(r.trace.tunnelFamily).toBe(C.FAMILY_IPV4);
      expect(r.trace.family).toBe(C.FAMILY_IPV6);
      expect(r.output).toEqual(buildFrame(syn(POD_A6.ip, REMOTE_POD6)));
      expectRetval(r);
    });

    it("O4: the inner IPv6 packet is judged on the carried identity; its reply goes back through the tunnel", async () => {
      const dp = await backend.create();
      overlayNode6(dp);
      addPolicy(dp, { epId: POD_A6.epId, egress: false, identity: REMOTE_POD.identity, proto: TCP, port: 80, cookie: 9 });
      const inbound = dp.run("fromOverlay", buildFrame(syn(REMOTE_POD6, POD_A6.ip, 41000)), { now: 100, tunnel: { remote: NODE_B, tunnelId: REMOTE_POD.identity } });
      expect(inbound.verdict).toBe(C.CTX_ACT_OK);
      expect(inbound.trace.srcIdentity).toBe(REMOTE_POD.identity);
      expect(inbound.trace.ingressCookie).toBe(9);
      const reply = { src: POD_A6.ip, dst: REMOTE_POD6, proto: "TCP" as const, sport: 80, dport: 41000, tcpFlags: TCP_FLAGS.SYN | TCP_FLAGS.ACK };
      const r = send(dp, "fromEndpoint", reply, 101);
      expect(r.verdict).toBe(C.CTX_ACT_TUNNEL);
      expect(r.trace.ctState).toBe(C.CT_REPLY);
      expect(r.tunnel).toEqual({ remote: NODE_B, tunnelId: POD_A6.identity });
      // The same inner packet carrying another identity is denied, whatever its source address.
      const other = dp.run("fromOverlay", buildFrame(syn(REMOTE_POD6, POD_A6.ip, 41001)), { now: 102, tunnel: { remote: NODE_B, tunnelId: 4242 } });
      expect(other.verdict).toBe(C.CTX_ACT_DROP);
      expect(other.dropReason).toBe(C.DROP_POLICY);
      expect(other.trace.srcIdentity).toBe(4242);
    });
  });
}
