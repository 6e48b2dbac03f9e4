/*
 * The host firewall on every engine (core/host-firewall.ts H1–H8; core/pipeline.ts fromNetwork 3a and
 * toNetwork 4): host policies, written as the Policy entries of the host endpoint (ConfigValue.hostEpId),
 * judge packets for the node at its device's ingress and the node's own packets at its egress, with
 * conntrack so that the replies of allowed connections pass in the other direction. Cilium:
 * bpf/lib/host_firewall.h ipv4_host_policy_ingress / ipv4_host_policy_egress, bpf/bpf_host.c.
 */
import { describe, expect, it } from "vitest";
import { backends } from "./backends.ts";
import { addPolicy, addService, allowAll, C, decoded, ipcacheKey, POD_A, send, standardNode, TCP, UDP, WORLD_IP } from "./fixture.ts";
import { MAP_SPECS } from "../../host/codecs.gen.ts";
import type { Datapath, RunResult } from "../../host/datapath.ts";
import { buildFrame, TCP_FLAGS, type FrameSpec } from "../../sim/packets.ts";
import { addrBytes16 } from "../../host/ip.ts";
import { tcReturnCode, type KernelRunResult } from "../../datapath/kernel-engine.ts";
import { flowOf } from "../../host/trace-flow.ts";

const NODE_IP = "192.168.57.11";
const NODE_IP_NUM = 0xc0a8390b;
const OTHER_NODE = "192.168.57.12";
const NODE_V6 = "fd00:57::11";
const HOST_EP = 321;
/** Pods on the other node, reached through the tunnel. */
const REMOTE_POD = "10.244.2.10";
const REMOTE_POD_ID = 4100;
const OTHER_POD = "10.244.2.11";
const OTHER_POD_ID = 4101;

function metricsOf(dp: Datapath): Map<string, number> {
  const m = new Map<string, number>();
  for (const [k, v] of dp.map(MAP_SPECS.Metrics).entries()) if (Number(v.packets)) m.set(`${k.reason}/${k.dir}`, Number(v.packets));
  return m;
}

/** The standard node plus its own address (host), another node (remote-node), and the host firewall
 * on (or off) for host endpoint HOST_EP; pods allow everything. */
function hostNode(dp: Datapath, opts: { on?: boolean; masquerade?: boolean } = {}): void {
  standardNode(dp);
  const cfg = dp.map(MAP_SPECS.Config).lookup(0)!;
  let flags = cfg.flags;
  if (opts.on !== false) flags |= C.CONFIG_F_HOST_FIREWALL;
  if (opts.masquerade) flags |= C.CONFIG_F_MASQUERADE;
  dp.map(MAP_SPECS.Config).update(0, { ...cfg, flags: flags >>> 0, hostEpId: HOST_EP, nodeIpv4: NODE_IP_NUM });
  dp.map(MAP_SPECS.Ipcache).update(ipcacheKey(NODE_IP), { secIdentity: C.ID_HOST });
  dp.map(MAP_SPECS.Ipcache).update(ipcacheKey(NODE_V6), { secIdentity: C.ID_HOST });
  dp.map(MAP_SPECS.Ipcache).update(ipcacheKey("::/0"), { secIdentity: C.ID_WORLD });
  dp.map(MAP_SPECS.Ipcache).update(ipcacheKey(OTHER_NODE), { secIdentity: C.ID_REMOTE_NODE });
  allowAll(dp, POD_A.epId);
}

const tcp = (src: string, dst: string, sport: number, dport: number, flags: number = TCP_FLAGS.SYN): FrameSpec =>
  ({ src, dst, proto: "TCP", sport, dport, tcpFlags: flags });

function run(dp: Datapath, entry: "fromNetwork" | "toNetwork", spec: FrameSpec, now = 100): RunResult {
  const r = send(dp, entry, spec, now);
  if ("retval" in r) expect((r as KernelRunResult).retval, "tc return code").toBe(tcReturnCode(r.verdict, 0));
  return r;
}

const conntrackCount = (dp: Datapath) => dp.map(MAP_SPECS.Conntrack).count();

for (const backend of backends) {
  describe(`host firewall [${backend.name}]`, () => {
    it("H1: off, a packet for the node passes untracked whatever the host endpoint's entries say", async () => {
      const dp = await backend.create();
      hostNode(dp, { on: false });
      addPolicy(dp, { epId: HOST_EP, egress: false, identity: 0, deny: true });
      const r = run(dp, "fromNetwork", tcp(WORLD_IP, NODE_IP, 40000, 22));
      expect(r.verdict).toBe(C.CTX_ACT_OK);
      expect(conntrackCount(dp)).toBe(0);
      expect(run(dp, "toNetwork", tcp(NODE_IP, WORLD_IP, 40000, 443)).verdict).toBe(C.CTX_ACT_OK);
      expect(conntrackCount(dp)).toBe(0);
    });

    it("H2/H6/H8: no host policy (allow-all entries) — the node's traffic passes and is tracked", async () => {
      const dp = await backend.create();
      hostNode(dp);
      allowAll(dp, HOST_EP);
      const r = run(dp, "fromNetwork", tcp(WORLD_IP, NODE_IP, 40000, 22));
      expect(r.verdict).toBe(C.CTX_ACT_OK);
      expect(r.trace.epId).toBe(HOST_EP);
      expect(r.trace.srcIdentity).toBe(C.ID_WORLD);
      expect(r.trace.dstIdentity).toBe(C.ID_HOST);
      expect(r.trace.ctState).toBe(C.CT_NEW);
      expect(r.trace.traceFlags & C.TRACE_F_INGRESS_CHECKED).toBe(C.TRACE_F_INGRESS_CHECKED);
      expect(r.trace.ingressMatchType).toBe(C.POLICY_MATCH_ALL);
      expect(conntrackCount(dp)).toBe(1);
      const e = run(dp, "toNetwork", tcp(NODE_IP, WORLD_IP, 40001, 443));
      expect(e.verdict).toBe(C.CTX_ACT_OK);
      expect(e.trace.traceFlags & C.TRACE_F_EGRESS_CHECKED).toBe(C.TRACE_F_EGRESS_CHECKED);
      expect(conntrackCount(dp)).toBe(2);
    });

    it("H6: ingress default deny — only the allowed port from the world; the match and cookie are recorded", async () => {
      const dp = await backend.create();
      hostNode(dp);
      addPolicy(dp, { epId: HOST_EP, egress: true, identity: 0 });
      addPolicy(dp, { epId: HOST_EP, egress: false, identity: C.ID_WORLD, proto: TCP, port: 22, cookie: 7 });
      const ok = run(dp, "fromNetwork", tcp(WORLD_IP, NODE_IP, 40000, 22));
      expect(ok.verdict).toBe(C.CTX_ACT_OK);
      expect(ok.trace.ingressCookie).toBe(7);
      expect(ok.trace.ingressMatchType).toBe(C.POLICY_MATCH_L3_L4);
      const no = run(dp, "fromNetwork", tcp(WORLD_IP, NODE_IP, 40000, 80));
      expect(no.verdict).toBe(C.CTX_ACT_DROP);
      expect(no.dropReason).toBe(C.DROP_POLICY);
      expect(no.trace.epId).toBe(HOST_EP);
      expect(no.trace.obsPoint).toBe(C.TRACE_FROM_NETWORK);
      // Another node (remote-node) is not the world: not allowed by the world's entry.
      expect(run(dp, "fromNetwork", tcp(OTHER_NODE, NODE_IP, 40000, 22)).dropReason).toBe(C.DROP_POLICY);
      // UDP is judged too, and ICMP by its type.
      expect(run(dp, "fromNetwork", { src: WORLD_IP, dst: NODE_IP, proto: "UDP", sport: 5000, dport: 53 }).dropReason).toBe(C.DROP_POLICY);
      expect(run(dp, "fromNetwork", { src: WORLD_IP, dst: NODE_IP, proto: "ICMP", icmpType: 8, icmpId: 1 }).dropReason).toBe(C.DROP_POLICY);
    });

    it("H6: fromEntities remote-node allows other nodes on every port; a deny entry wins over an allow", async () => {
      const dp = await backend.create();
      hostNode(dp);
      addPolicy(dp, { epId: HOST_EP, egress: true, identity: 0 });
      addPolicy(dp, { epId: HOST_EP, egress: false, identity: C.ID_REMOTE_NODE });
      addPolicy(dp, { epId: HOST_EP, egress: false, identity: C.ID_REMOTE_NODE, proto: TCP, port: 2379, deny: true });
      expect(run(dp, "fromNetwork", tcp(OTHER_NODE, NODE_IP, 40000, 10250)).verdict).toBe(C.CTX_ACT_OK);
      expect(run(dp, "fromNetwork", { src: OTHER_NODE, dst: NODE_IP, proto: "UDP", sport: 8472, dport: 8472 }).verdict).toBe(C.CTX_ACT_OK);
      const denied = run(dp, "fromNetwork", tcp(OTHER_NODE, NODE_IP, 40000, 2379));
      expect(denied.dropReason).toBe(C.DROP_POLICY_DENY);
      expect(run(dp, "fromNetwork", tcp(WORLD_IP, NODE_IP, 40000, 10250)).dropReason).toBe(C.DROP_POLICY);
    });

    it("H5: replies of allowed connections pass both ways while both directions are default deny", async () => {
      const dp = await backend.create();
      hostNode(dp);
      addPolicy(dp, { epId: HOST_EP, egress: false, identity: C.ID_WORLD, proto: TCP, port: 22 });
      addPolicy(dp, { epId: HOST_EP, egress: true, identity: C.ID_WORLD, proto: TCP, port: 443 });
      // Inbound ssh: the node's SYN-ACK leaves though egress allows only 443.
      expect(run(dp, "fromNetwork", tcp(WORLD_IP, NODE_IP, 40000, 22)).verdict).toBe(C.CTX_ACT_OK);
      const synAck = run(dp, "toNetwork", tcp(NODE_IP, WORLD_IP, 22, 40000, TCP_FLAGS.SYN | TCP_FLAGS.ACK), 101);
      expect(synAck.verdict).toBe(C.CTX_ACT_OK);
      expect(synAck.trace.ctState).toBe(C.CT_REPLY);
      expect(synAck.trace.traceFlags & C.TRACE_F_REPLY).toBe(C.TRACE_F_REPLY);
      // Outbound https: its reply comes in though ingress allows only 22.
      expect(run(dp, "toNetwork", tcp(NODE_IP, WORLD_IP, 45000, 443)).verdict).toBe(C.CTX_ACT_OK);
      const back = run(dp, "fromNetwork", tcp(WORLD_IP, NODE_IP, 443, 45000, TCP_FLAGS.SYN | TCP_FLAGS.ACK), 101);
      expect(back.verdict).toBe(C.CTX_ACT_OK);
      expect(back.trace.ctState).toBe(C.CT_REPLY);
      // Not allowed, not a reply: dropped at the device's egress.
      const out = run(dp, "toNetwork", tcp(NODE_IP, WORLD_IP, 45001, 80));
      expect(out.verdict).toBe(C.CTX_ACT_DROP);
      expect(out.dropReason).toBe(C.DROP_POLICY);
      expect(out.trace.hook).toBe(C.HOOK_TO_NETWORK);
      expect(out.trace.epId).toBe(HOST_EP);
      // An ICMP error about the allowed flow is related and passes.
      const embedded = buildFrame(tcp(NODE_IP, WORLD_IP, 45000, 443)).subarray(14);
      const err = run(dp, "fromNetwork", { src: WORLD_IP, dst: NODE_IP, proto: "ICMP", icmpType: 3, icmpCode: 1, embedded }, 102);
      expect(err.verdict).toBe(C.CTX_ACT_OK);
    });

    it("H2/H3: pods' traffic is not the host's — forwarded to a pod, or masqueraded on the way out", async () => {
      const dp = await backend.create();
      hostNode(dp, { masquerade: true });
      addPolicy(dp, { epId: HOST_EP, egress: false, identity: 0, deny: true });
      addPolicy(dp, { epId: HOST_EP, egress: true, identity: 0, deny: true });
      expect(run(dp, "fromNetwork", tcp(WORLD_IP, POD_A.ip, 40000, 80)).verdict).toBe(C.CTX_ACT_OK);
      const e = send(dp, "fromEndpoint", tcp(POD_A.ip, WORLD_IP, 40000, 80), 100);
      expect(e.verdict).toBe(C.CTX_ACT_OK);
      const out = dp.run("toNetwork", e.output, { now: 100 });
      expect(out.verdict).toBe(C.CTX_ACT_OK);
      expect(decoded(out).src).toBe(NODE_IP);
      // Its reply, to the node's address, is restored to the pod before the host firewall could see it.
      const back = run(dp, "fromNetwork", tcp(WORLD_IP, NODE_IP, 80, decoded(out).sport, TCP_FLAGS.SYN | TCP_FLAGS.ACK), 101);
      expect(back.verdict).toBe(C.CTX_ACT_OK);
      expect(decoded(back).dst).toBe(POD_A.ip);
    });

    it("H3: a NodePort reply rev-NATed to the node's frontend leaves; the node's own packet from another port does not", async () => {
      const dp = await backend.create();
      hostNode(dp);
      addPolicy(dp, { epId: HOST_EP, egress: true, identity: 0, deny: true });
      addService(dp, { vip: NODE_IP, port: 30080, revNat: 9, backends: [{ id: 1, ip: POD_A.ip, port: 8080 }] });
      const svc = dp.map(MAP_SPECS.Services);
      const key = { addr: addrBytes16(NODE_IP), dport: 30080, proto: TCP, scope: 0, family: C.FAMILY_IPV4, backendSlot: 0 };
      svc.update(key, { ...svc.lookup(key)!, flags: C.SVC_F_ROUTABLE });
      expect(run(dp, "toNetwork", tcp(NODE_IP, WORLD_IP, 30080, 40000, TCP_FLAGS.SYN | TCP_FLAGS.ACK)).verdict).toBe(C.CTX_ACT_OK);
      expect(run(dp, "toNetwork", tcp(NODE_IP, WORLD_IP, 30081, 40000)).dropReason).toBe(C.DROP_POLICY_DENY);
      expect(run(dp, "toNetwork", { src: NODE_IP, dst: WORLD_IP, proto: "UDP", sport: 30080, dport: 53 }).dropReason).toBe(C.DROP_POLICY_DENY);
    });

    it("H3: the overlay's encapsulated packets leave a default-deny host; arriving ones are judged as remote-node", async () => {
      const dp = await backend.create();
      hostNode(dp);
      const cfg = dp.map(MAP_SPECS.Config).lookup(0)!;
      dp.map(MAP_SPECS.Config).update(0, { ...cfg, tunnelProtocol: C.TUNNEL_PROTO_VXLAN });
      addPolicy(dp, { epId: HOST_EP, egress: true, identity: 0, deny: true });
      const vxlan = (src: string, dst: string, dport: number): FrameSpec => ({ src, dst, proto: "UDP", sport: 51000, dport });
      expect(run(dp, "toNetwork", vxlan(NODE_IP, OTHER_NODE, C.TUNNEL_PORT_VXLAN)).verdict).toBe(C.CTX_ACT_OK);
      expect(run(dp, "toNetwork", vxlan(NODE_IP, OTHER_NODE, C.TUNNEL_PORT_GENEVE)).dropReason).toBe(C.DROP_POLICY_DENY);
      // Ingress has no entry at all: default deny, also for the tunnel port, until remote-node is allowed.
      expect(run(dp, "fromNetwork", vxlan(OTHER_NODE, NODE_IP, C.TUNNEL_PORT_VXLAN)).dropReason).toBe(C.DROP_POLICY);
      addPolicy(dp, { epId: HOST_EP, egress: false, identity: C.ID_REMOTE_NODE, proto: UDP, port: C.TUNNEL_PORT_VXLAN });
      expect(run(dp, "fromNetwork", vxlan(OTHER_NODE, NODE_IP, C.TUNNEL_PORT_VXLAN), 101).verdict).toBe(C.CTX_ACT_OK);
    });

    it("H4: IPv6 neighbour discovery passes a default-deny host; other ICMPv6 does not", async () => {
      const dp = await backend.create();
      hostNode(dp);
      addPolicy(dp, { epId: HOST_EP, egress: true, identity: 0 });
      addPolicy(dp, { epId: HOST_EP, egress: false, identity: C.ID_WORLD, proto: UDP, port: 1 });
      expect(run(dp, "fromNetwork", { src: "2001:db8::9", dst: NODE_V6, proto: "ICMPv6", icmpType: 135 }).verdict).toBe(C.CTX_ACT_OK);
      expect(run(dp, "fromNetwork", { src: "2001:db8::9", dst: NODE_V6, proto: "ICMPv6", icmpType: 128, icmpId: 3 }).dropReason).toBe(C.DROP_POLICY);
      expect(run(dp, "fromNetwork", tcp("2001:db8::9", NODE_V6, 40000, 22)).dropReason).toBe(C.DROP_POLICY);
    });

    it("H6/H7: audit mode lets a host-policy drop through; a redirect verdict drops (no host proxy)", async () => {
      const dp = await backend.create();
      hostNode(dp);
      addPolicy(dp, { epId: HOST_EP, egress: false, identity: C.ID_WORLD, proto: TCP, port: 80, proxyPort: 10001 });
      expect(run(dp, "fromNetwork", tcp(WORLD_IP, NODE_IP, 40000, 80)).dropReason).toBe(C.DROP_PROXY_LOOKUP_FAILED);
      const cfg = dp.map(MAP_SPECS.Config).lookup(0)!;
      dp.map(MAP_SPECS.Config).update(0, { ...cfg, flags: (cfg.flags | C.CONFIG_F_POLICY_AUDIT) >>> 0 });
      const r = run(dp, "fromNetwork", tcp(WORLD_IP, NODE_IP, 40000, 23));
      expect(r.verdict).toBe(C.CTX_ACT_OK);
      expect(r.trace.traceFlags & C.TRACE_F_AUDITED).toBe(C.TRACE_F_AUDITED);
    });

    it("H9: an ingress host-firewall drop is counted as INGRESS (as Cilium's), stays fromNetwork's record, and its flow is INGRESS", async () => {
      const dp = await backend.create();
      hostNode(dp);
      addPolicy(dp, { epId: HOST_EP, egress: true, identity: 0 });
      addPolicy(dp, { epId: HOST_EP, egress: false, identity: C.ID_WORLD, proto: TCP, port: 22 });
      const no = run(dp, "fromNetwork", tcp(WORLD_IP, NODE_IP, 40000, 80));
      expect(no.dropReason).toBe(C.DROP_POLICY);
      expect(no.trace.hook).toBe(C.HOOK_FROM_NETWORK);
      expect(no.trace.obsPoint).toBe(C.TRACE_FROM_NETWORK);
      const names = { podByIp: new Map(), identityLabels: new Map(), nodeName: "node-1" };
      expect(flowOf(no.trace, names).traffic_direction).toBe("INGRESS");
      // What else fromNetwork counts stays SERVICE: the allowed SSH packet.
      expect(run(dp, "fromNetwork", tcp(WORLD_IP, NODE_IP, 40001, 22)).verdict).toBe(C.CTX_ACT_OK);
      const m = metricsOf(dp);
      expect(m.get(`${C.DROP_POLICY}/${C.METRIC_DIR_INGRESS}`)).toBe(1);
      expect(m.get(`${C.DROP_POLICY}/${C.METRIC_DIR_SERVICE}`)).toBeUndefined();
      expect(m.get(`0/${C.METRIC_DIR_SERVICE}`)).toBe(1);
      // Egress drops stay EGRESS.
      addPolicy(dp, { epId: HOST_EP, egress: true, identity: 0, deny: true });
      expect(run(dp, "toNetwork", tcp(NODE_IP, WORLD_IP, 40002, 443)).dropReason).toBe(C.DROP_POLICY_DENY);
      expect(metricsOf(dp).get(`${C.DROP_POLICY_DENY}/${C.METRIC_DIR_EGRESS}`)).toBe(1);
    });

    it("H10: through the tunnel to the node's address — judged by the host's ingress policy on the source's ipcache identity, then up the stack", async () => {
      const dp = await backend.create();
      hostNode(dp);
      const cfg = dp.map(MAP_SPECS.Config).lookup(0)!;
      dp.map(MAP_SPECS.Config).update(0, { ...cfg, tunnelProtocol: C.TUNNEL_PROTO_VXLAN, tunnelIfindex: 7 });
      dp.map(MAP_SPECS.Ipcache).update(ipcacheKey(REMOTE_POD), { secIdentity: REMOTE_POD_ID, tunnelEndpoint: addrBytes16(OTHER_NODE), flags: C.IPCACHE_F_HAS_TUNNEL_EP });
      dp.map(MAP_SPECS.Ipcache).update(ipcacheKey(OTHER_POD), { secIdentity: OTHER_POD_ID, tunnelEndpoint: addrBytes16(OTHER_NODE), flags: C.IPCACHE_F_HAS_TUNNEL_EP });
      addPolicy(dp, { epId: HOST_EP, egress: true, identity: 0 });
      addPolicy(dp, { epId: HOST_EP, egress: false, identity: REMOTE_POD_ID, proto: TCP, port: 8080, cookie: 9 });
      const over = (spec: FrameSpec, tunnelId: number, now = 100) => dp.run("fromOverlay", buildFrame(spec), { now, tunnel: { remote: OTHER_NODE, tunnelId } });
      const ok = over(tcp(REMOTE_POD, NODE_IP, 41000, 8080), REMOTE_POD_ID);
      expect(ok.verdict).toBe(C.CTX_ACT_OK);
      expect(ok.trace.epId).toBe(HOST_EP);
      expect(ok.trace.srcIdentity).toBe(REMOTE_POD_ID);
      expect(ok.trace.dstIdentity).toBe(C.ID_HOST);
      expect(ok.trace.ingressCookie).toBe(9);
      expect(ok.trace.obsPoint).toBe(C.TRACE_TO_HOST);
      expect(ok.trace.ctState).toBe(C.CT_NEW);
      // The node's answer leaves as the reply of that connection, whatever egress says.
      addPolicy(dp, { epId: HOST_EP, egress: true, identity: 0, deny: true });
      expect(run(dp, "toNetwork", tcp(NODE_IP, REMOTE_POD, 8080, 41000, TCP_FLAGS.SYN | TCP_FLAGS.ACK)).verdict).toBe(C.CTX_ACT_OK);
      // Another pod of that node, another port; and the identity is the source's ipcache entry's, not the
      // tunnel id's (as Cilium's host firewall looks the source up again).
      expect(over(tcp(OTHER_POD, NODE_IP, 41001, 8080), OTHER_POD_ID).dropReason).toBe(C.DROP_POLICY);
      expect(over(tcp(REMOTE_POD, NODE_IP, 41002, 9000), REMOTE_POD_ID).dropReason).toBe(C.DROP_POLICY);
      const spoofed = over(tcp(OTHER_POD, NODE_IP, 41003, 8080), REMOTE_POD_ID);
      expect(spoofed.dropReason).toBe(C.DROP_POLICY);
      expect(spoofed.trace.srcIdentity).toBe(OTHER_POD_ID);
      expect(metricsOf(dp).get(`${C.DROP_POLICY}/${C.METRIC_DIR_INGRESS}`)).toBe(3);
      // Not the node's address and not a local pod: still 151.
      expect(over(tcp(REMOTE_POD, "10.244.7.7", 41004, 8080), REMOTE_POD_ID).dropReason).toBe(C.DROP_UNROUTABLE);
    });

    it("H10: with the host firewall off, a packet through the tunnel for the node's address goes up its stack untracked", async () => {
      const dp = await backend.create();
      hostNode(dp, { on: false });
      addPolicy(dp, { epId: HOST_EP, egress: false, identity: 0, deny: true });
      const r = dp.run("fromOverlay", buildFrame(tcp(REMOTE_POD, NODE_IP, 41000, 8080)), { now: 100, tunnel: { remote: OTHER_NODE, tunnelId: REMOTE_POD_ID } });
      expect(r.verdict).toBe(C.CTX_ACT_OK);
      expect(r.trace.dstIdentity).toBe(C.ID_HOST);
      expect(conntrackCount(dp)).toBe(0);
    });
  });
}
