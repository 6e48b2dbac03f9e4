/*
 * fromHost on every engine (core/pipeline.ts fromHost, core/overlay.ts O5–O6): what the node's stack routes
 * into the tunnel device — its own connections, its L7 proxy's upstream connections (bound to the client's
 * address), NodePort flows forwarded to a backend on another node — leaves with the tunnel key {the
 * destination's node, the source address's identity}, the node's own identity sent as remote-node; what
 * names no tunnel endpoint is dropped (160), never sent unencapsulated; a packet fromEndpoint already
 * encapsulated passes. The kernel engine reads the key the program set with bpf_skb_get_tunnel_key and
 * gives a key set beforehand with bpf_skb_set_tunnel_key (bpf/programs/test_harness.bpf.c harness_from_host).
 */
import { describe, expect, it } from "vitest";
import { backends } from "./backends.ts";
import { C, configure, ipcacheKey, POD_A, POD_B, REMOTE_POD, send, standardNode, WORLD_IP, allowAll } from "./fixture.ts";
import { MAP_SPECS } from "../../host/codecs.gen.ts";
import type { Datapath, RunResult } from "../../host/datapath.ts";
import { addrBytes16 } from "../../host/ip.ts";
import { buildFrame, TCP_FLAGS, type FrameSpec } from "../../sim/packets.ts";
import type { KernelRunResult } from "../../datapath/kernel-engine.ts";

const NODE_IP = "192.168.57.11";
const NODE_IP_NUM = 0xc0a8390b;
const NODE_B = "192.168.56.22";
// The test run's device is the loopback (ifindex 1): named as the tunnel device, from_host lets an
// encapsulated packet continue on it (TC_ACT_OK) instead of redirecting it.
const TUNNEL_IFINDEX = 1;

function hostNode(dp: Datapath, protocol: number = C.TUNNEL_PROTO_VXLAN): void {
  standardNode(dp);
  const cfg = dp.map(MAP_SPECS.Config).lookup(0)!;
  dp.map(MAP_SPECS.Config).update(0, { ...cfg, tunnelProtocol: protocol, tunnelIfindex: TUNNEL_IFINDEX, nodeIpv4: NODE_IP_NUM });
  dp.map(MAP_SPECS.Ipcache).update(ipcacheKey("10.244.1.0/24"), { secIdentity: REMOTE_POD.identity, tunnelEndpoint: addrBytes16(NODE_B), flags: C.IPCACHE_F_HAS_TUNNEL_EP });
  // The node's own address is the host; another node's address is remote-node without a tunnel endpoint.
  dp.map(MAP_SPECS.Ipcache).update(ipcacheKey(NODE_IP), { secIdentity: C.ID_HOST });
  dp.map(MAP_SPECS.Ipcache).update(ipcacheKey(NODE_B), { secIdentity: C.ID_REMOTE_NODE });
}

const syn = (src: string, dst: string, sport = 40000, dport = 80): FrameSpec => ({ src, dst, proto: "TCP", sport, dport, tcpFlags: TCP_FLAGS.SYN });

function expectRetval(r: RunResult, want: number): void {
  if ("retval" in r) expect((r as KernelRunResult).retval, "tc return code").toBe(want);
}

function egressDrops(dp: Datapath, reason: number): number {
  let n = 0;
  for (const [k, v] of dp.map(MAP_SPECS.Metrics).entries()) if (k.reason === reason && k.dir === C.METRIC_DIR_EGRESS) n += Number(v.packets);
  return n;
}

for (const backend of backends) {
  describe(`fromHost: the node's traffic into the tunnel [${backend.name}]`, () => {
    for (const [proto, name] of [[C.TUNNEL_PROTO_VXLAN, "vxlan"], [C.TUNNEL_PROTO_GENEVE, "geneve"]] as const) {
      it(`O5 (${name}): the node's own connection to a pod on another node is encapsulated with remote-node as tunnel id`, async () => {
        const dp = await backend.create();
        hostNode(dp, proto);
        const frame = buildFrame(syn(NODE_IP, REMOTE_POD.ip));
        const r = dp.run("fromHost", frame, { now: 100 });
        expect(r.verdict).toBe(C.CTX_ACT_TUNNEL);
        expect(r.dropReason).toBe(0);
        expect(r.tunnel).toEqual({ remote: NODE_B, tunnelId: C.ID_REMOTE_NODE });
        expect(r.trace.hook).toBe(C.HOOK_FROM_HOST);
        expect(r.trace.obsPoint).toBe(C.TRACE_TO_OVERLAY);
        expect(r.trace.srcIdentity).toBe(C.ID_HOST);
        expect(r.trace.dstIdentity).toBe(REMOTE_POD.identity);
        expect(r.trace.tunnelId).toBe(C.ID_REMOTE_NODE);
        expect(r.output).toEqual(frame);
        expectRetval(r, 0);
      });
    }

    it("the L7 proxy's upstream connection (the client's address) carries the client's identity", async () => {
      const dp = await backend.create();
      hostNode(dp);
      // The proxy's sockets carry MARK_MAGIC_FROM_EGRESS_PROXY; the identity is the client address's.
      const r = dp.run("fromHost", buildFrame(syn(POD_A.ip, REMOTE_POD.ip, 41000, 8081)), { now: 100, srcIdentity: C.MARK_MAGIC_FROM_EGRESS_PROXY });
      expect(r.verdict).toBe(C.CTX_ACT_TUNNEL);
      expect(r.tunnel).toEqual({ remote: NODE_B, tunnelId: POD_A.identity });
      expect(r.trace.srcIdentity).toBe(POD_A.identity);
    });

    it("a NodePort flow fromNetwork DNATed and SNATed to a backend on another node is encapsulated by fromHost", async () => {
      const dp = await backend.create();
      hostNode(dp);
      const svc = { addr: addrBytes16(NODE_IP), dport: 30080, proto: C.IPPROTO_TCP, scope: 0, family: C.FAMILY_IPV4 };
      dp.map(MAP_SPECS.Services).update({ ...svc, backendSlot: 0 }, { backendId: 0, count: 1, qcount: 0, revNatIndex: 5, flags: C.SVC_F_ROUTABLE });
      dp.map(MAP_SPECS.Services).update({ ...svc, backendSlot: 1 }, { backendId: 3, revNatIndex: 5 });
      dp.map(MAP_SPECS.Backends).update({ backendId: 3 }, { addr: addrBytes16(REMOTE_POD.ip), port: 8080, proto: C.IPPROTO_TCP, state: 0, family: C.FAMILY_IPV4 });
      dp.map(MAP_SPECS.RevNat).update({ revNatIndex: 5 }, { addr: addrBytes16(NODE_IP), port: 30080, family: C.FAMILY_IPV4 });
      const fwd = send(dp, "fromNetwork", syn(WORLD_IP, NODE_IP, 45000, 30080), 100);
      expect(fwd.verdict).toBe(C.CTX_ACT_OK);
      expect(fwd.trace.traceFlags & C.TRACE_F_SNAT).toBe(C.TRACE_F_SNAT);
      const r = dp.run("fromHost", fwd.output, { now: 100 });
      expect(r.verdict).toBe(C.CTX_ACT_TUNNEL);
      expect(r.tunnel).toEqual({ remote: NODE_B, tunnelId: C.ID_REMOTE_NODE });
      expect(r.output).toEqual(fwd.output);
    });

    it("O6: a destination without a tunnel endpoint is dropped (160), never sent unencapsulated", async () => {
      const dp = await backend.create();
      hostNode(dp);
      for (const dst of [WORLD_IP, POD_B.ip, NODE_B]) {
        const r = dp.run("fromHost", buildFrame(syn(NODE_IP, dst)), { now: 100 });
        expect(r.verdict, dst).toBe(C.CTX_ACT_DROP);
        expect(r.dropReason, dst).toBe(C.DROP_NO_TUNNEL_ENDPOINT);
        expect(r.tunnel, dst).toBeUndefined();
        expect(r.trace.hook, dst).toBe(C.HOOK_FROM_HOST);
        expect(r.trace.obsPoint, dst).toBe(C.TRACE_FROM_HOST);
        expectRetval(r, 2);
      }
      expect(egressDrops(dp, C.DROP_NO_TUNNEL_ENDPOINT)).toBe(3);
    });

    it("O6: without an overlay configured nothing is encapsulated: dropped (160)", async () => {
      const dp = await backend.create();
      hostNode(dp, C.TUNNEL_PROTO_NONE);
      const r = dp.run("fromHost", buildFrame(syn(NODE_IP, REMOTE_POD.ip)), { now: 100 });
      expect(r.dropReason).toBe(C.DROP_NO_TUNNEL_ENDPOINT);
      expect(r.tunnel).toBeUndefined();
    });

    it("O3: an entry claiming a tunnel endpoint without an address is dropped (160)", async () => {
      const dp = await backend.create();
      hostNode(dp);
      dp.map(MAP_SPECS.Ipcache).update(ipcacheKey("10.244.1.0/24"), { secIdentity: REMOTE_POD.identity, flags: C.IPCACHE_F_HAS_TUNNEL_EP });
      const r = dp.run("fromHost", buildFrame(syn(NODE_IP, REMOTE_POD.ip)), { now: 100 });
      expect(r.dropReason).toBe(C.DROP_NO_TUNNEL_ENDPOINT);
      expect(r.tunnel).toBeUndefined();
    });

    it("O2: a source identity wider than the VNI (a node-local CIDR identity) is refused (171)", async () => {
      const dp = await backend.create();
      hostNode(dp);
      dp.map(MAP_SPECS.Ipcache).update(ipcacheKey("198.51.100.0/24"), { secIdentity: 0x1000001 });
      const r = dp.run("fromHost", buildFrame(syn("198.51.100.7", REMOTE_POD.ip)), { now: 100 });
      expect(r.dropReason).toBe(C.DROP_INVALID_IDENTITY);
      expect(r.tunnel).toBeUndefined();
    });

    it("a source the ipcache does not know goes as world", async () => {
      const dp = await backend.create();
      hostNode(dp);
      const r = dp.run("fromHost", buildFrame(syn(WORLD_IP, REMOTE_POD.ip)), { now: 100 });
      expect(r.verdict).toBe(C.CTX_ACT_TUNNEL);
      expect(r.tunnel).toEqual({ remote: NODE_B, tunnelId: C.ID_WORLD });
    });

    it("O6: a packet fromEndpoint already encapsulated passes untouched and uncounted", async () => {
      const dp = await backend.create();
      hostNode(dp);
      allowAll(dp, POD_A.epId);
      const frame = buildFrame(syn(POD_A.ip, REMOTE_POD.ip));
      const enc = dp.run("fromEndpoint", frame, { now: 100 });
      expect(enc.tunnel).toEqual({ remote: NODE_B, tunnelId: POD_A.identity });
      const before = [...dp.map(MAP_SPECS.Metrics).entries()].reduce((n, [, v]) => n + Number(v.packets), 0);
      const r = dp.run("fromHost", enc.output, { now: 100, tunnel: enc.tunnel });
      expect(r.verdict).toBe(C.CTX_ACT_OK);
      expect(r.tunnel).toBeUndefined();
      expect(r.output).toEqual(frame);
      expect([...dp.map(MAP_SPECS.Metrics).entries()].reduce((n, [, v]) => n + Number(v.packets), 0)).toBe(before);
      expectRetval(r, 0);
    });

    it("a frame that is not IP is dropped, not sent without a key", async () => {
      const dp = await backend.create();
      configure(dp);
      hostNode(dp);
      const arp = new Uint8Array(42);
      arp.fill(0xff, 0, 6);
      arp.set([0x02, 0, 0, 0, 0, 1], 6);
      arp.set([0x08, 0x06], 12);
      const r = dp.run("fromHost", arp, { now: 100 });
      expect(r.verdict).toBe(C.CTX_ACT_DROP);
      expect(r.dropReason).toBe(C.DROP_UNKNOWN_L3);
    });
  });
}
