/*
 * L7 redirects on every engine: a flow policy sends to a proxy is redirected only while the node's proxy
 * listens on that port (ProxyListeners), and is otherwise dropped with DROP_PROXY_LOOKUP_FAILED (178) —
 * never forwarded un-inspected, in either direction, for new and established flows and for the replies
 * that belong to the proxy's connections. The ingress proxy's own connection (MARK_MAGIC_FROM_INGRESS_PROXY)
 * is not redirected again, and its replies go back to the proxy (Cilium bpf_lxc.c: proxy_redirect in CT).
 */
import { describe, expect, it } from "vitest";
import { backends } from "./backends.ts";
import { addPolicy, addService, allowAll, proxyListening, C, POD_A, POD_B, send, standardNode, TCP, VIP } from "./fixture.ts";
import { MAP_SPECS } from "../../host/codecs.gen.ts";
import { buildFrame, TCP_FLAGS, type FrameSpec } from "../../sim/packets.ts";
import { TraceRecordCodec } from "../../host/codecs.gen.ts";
import { KernelDatapath } from "../../datapath/kernel-engine.ts";
import { testRun } from "../../datapath/test-run.ts";

const SYN = { src: POD_A.ip, dst: POD_B.ip, proto: "TCP" as const, sport: 40000, dport: 80, tcpFlags: TCP_FLAGS.SYN };
const ACK = { ...SYN, tcpFlags: TCP_FLAGS.ACK };
const SYN_ACK = { src: POD_B.ip, dst: POD_A.ip, proto: "TCP" as const, sport: 80, dport: 40000, tcpFlags: TCP_FLAGS.SYN | TCP_FLAGS.ACK };
const PORT = 10001;

function forwardedAndDropped(dp: Parameters<typeof standardNode>[0]) {
  const m = new Map<string, number>();
  for (const [k, v] of dp.map(MAP_SPECS.Metrics).entries()) m.set(`${k.reason}/${k.dir}`, Number(v.packets));
  return m;
}

for (const backend of backends) {
  describe(`L7 redirect [${backend.name}]`, () => {
    it("egress: no proxy listening → 178, nothing tracked; listening → REDIRECT; stops listening → 178 again", async () => {
      const dp = await backend.create();
      standardNode(dp);
      addPolicy(dp, { epId: POD_A.epId, egress: true, identity: POD_B.identity, proto: TCP, port: 80, proxyPort: PORT });
      const down = send(dp, "fromEndpoint", SYN, 10);
      expect(down.verdict).toBe(C.CTX_ACT_DROP);
      expect(down.dropReason).toBe(C.DROP_PROXY_LOOKUP_FAILED);
      expect(down.trace.proxyPort).toBe(PORT);
      expect(dp.map(MAP_SPECS.Conntrack).count()).toBe(0);
      expect(forwardedAndDropped(dp).get(`${C.DROP_PROXY_LOOKUP_FAILED}/${C.METRIC_DIR_EGRESS}`)).toBe(1);

      proxyListening(dp, PORT);
      const up = send(dp, "fromEndpoint", SYN, 11);
      expect(up.verdict).toBe(C.CTX_ACT_REDIRECT);
      expect(up.trace.proxyPort).toBe(PORT);
      expect(up.trace.obsPoint).toBe(C.TRACE_TO_PROXY);

      // The proxy goes away mid-connection: the established flow's next packet is dropped too.
      dp.map(MAP_SPECS.ProxyListeners).delete(PORT);
      const later = send(dp, "fromEndpoint", ACK, 12);
      expect(later.trace.ctState).toBe(C.CT_ESTABLISHED);
      expect(later.verdict).toBe(C.CTX_ACT_DROP);
      expect(later.dropReason).toBe(C.DROP_PROXY_LOOKUP_FAILED);
      dp.close();
    });

    it("ingress: no proxy listening → 178 at to-endpoint; listening → REDIRECT", async () => {
      const dp = await backend.create();
      standardNode(dp);
      allowAll(dp, POD_A.epId);
      addPolicy(dp, { epId: POD_B.epId, egress: false, identity: POD_A.identity, proto: TCP, port: 80, proxyPort: PORT });
      expect(send(dp, "fromEndpoint", SYN, 10).verdict).toBe(C.CTX_ACT_OK);
      const down = send(dp, "toEndpoint", SYN, 10, POD_A.identity);
      expect(down.verdict).toBe(C.CTX_ACT_DROP);
      expect(down.dropReason).toBe(C.DROP_PROXY_LOOKUP_FAILED);
      expect(forwardedAndDropped(dp).get(`${C.DROP_PROXY_LOOKUP_FAILED}/${C.METRIC_DIR_INGRESS}`)).toBe(1);
      proxyListening(dp, PORT, false);
      const up = send(dp, "toEndpoint", SYN, 11, POD_A.identity);
      expect(up.verdict).toBe(C.CTX_ACT_REDIRECT);
      expect(up.trace.proxyPort).toBe(PORT);
      dp.close();
    });

    it("the ingress proxy's upstream connection is not redirected again; the server's replies go back to the proxy", async () => {
      const dp = await backend.create();
      standardNode(dp);
      allowAll(dp, POD_A.epId);
      addPolicy(dp, { epId: POD_B.epId, egress: false, identity: POD_A.identity, proto: TCP, port: 80, proxyPort: PORT });
      proxyListening(dp, PORT, false);
      expect(send(dp, "fromEndpoint", SYN, 10).verdict).toBe(C.CTX_ACT_OK);
      expect(send(dp, "toEndpoint", SYN, 10, POD_A.identity).verdict).toBe(C.CTX_ACT_REDIRECT);
      // The proxy connects to B with the client's address and port, marked as the ingress proxy's.
      const upstream = send(dp, "toEndpoint", SYN, 11, C.MARK_MAGIC_FROM_INGRESS_PROXY);
      expect(upstream.verdict).toBe(C.CTX_ACT_OK);
      expect(upstream.trace.srcIdentity).toBe(POD_A.identity);
      // B answers: the reply belongs to the proxy's upstream connection.
      const reply = send(dp, "fromEndpoint", SYN_ACK, 11);
      expect(reply.trace.ctState).toBe(C.CT_REPLY);
      expect(reply.verdict).toBe(C.CTX_ACT_REDIRECT);
      expect(reply.trace.proxyPort).toBe(PORT);
      // Proxy down: the reply is dropped, not delivered to A behind the proxy's back.
      dp.map(MAP_SPECS.ProxyListeners).delete(PORT);
      const lost = send(dp, "fromEndpoint", SYN_ACK, 12);
      expect(lost.verdict).toBe(C.CTX_ACT_DROP);
      expect(lost.dropReason).toBe(C.DROP_PROXY_LOOKUP_FAILED);
      // Another sender's mark is not the proxy's: an unmarked packet on the flow is redirected as usual.
      proxyListening(dp, PORT, false);
      expect(send(dp, "toEndpoint", ACK, 13, 0).verdict).toBe(C.CTX_ACT_REDIRECT);
      dp.close();
    });

    it("egress proxy: its replies to the client are delivered, the server's replies go to the proxy", async () => {
      const dp = await backend.create();
      standardNode(dp);
      allowAll(dp, POD_B.epId);
      addPolicy(dp, { epId: POD_A.epId, egress: true, identity: POD_B.identity, proto: TCP, port: 80, proxyPort: PORT });
      proxyListening(dp, PORT);
      expect(send(dp, "fromEndpoint", SYN, 10).verdict).toBe(C.CTX_ACT_REDIRECT);
      // The proxy answers the client (from its accepted socket, marked).
      const fromProxy = send(dp, "toEndpoint", SYN_ACK, 10, C.MARK_MAGIC_FROM_EGRESS_PROXY);
      expect(fromProxy.trace.ctState).toBe(C.CT_REPLY);
      expect(fromProxy.verdict).toBe(C.CTX_ACT_OK);
      // The server's answer to the proxy's upstream connection (same addresses, unmarked) goes to the proxy.
      const fromServer = send(dp, "toEndpoint", SYN_ACK, 10, 0);
      expect(fromServer.verdict).toBe(C.CTX_ACT_REDIRECT);
      expect(fromServer.trace.proxyPort).toBe(PORT);
      dp.close();
    });

    it("egress L7 to a service: the backend's replies reach the proxy untranslated; the proxy's answers are reverse-NATed", async () => {
      const dp = await backend.create();
      standardNode(dp);
      allowAll(dp, POD_B.epId);
      addService(dp, { vip: VIP, port: 80, revNat: 9, backends: [{ id: 1, ip: POD_B.ip, port: 8080 }] });
      addPolicy(dp, { epId: POD_A.epId, egress: true, identity: POD_B.identity, proto: TCP, port: 8080, proxyPort: PORT });
      proxyListening(dp, PORT);
      const out = send(dp, "fromEndpoint", { ...SYN, dst: VIP }, 10);
      expect(out.verdict).toBe(C.CTX_ACT_REDIRECT);
      expect(out.trace.traceFlags & C.TRACE_F_DNAT).toBeTruthy();
      const backendReply = { src: POD_B.ip, dst: POD_A.ip, proto: "TCP" as const, sport: 8080, dport: 40000, tcpFlags: TCP_FLAGS.SYN | TCP_FLAGS.ACK };
      // The proxy connected to the backend itself: its reply goes to the proxy as the backend's.
      const toProxy = send(dp, "toEndpoint", backendReply, 10, 0);
      expect(toProxy.verdict).toBe(C.CTX_ACT_REDIRECT);
      expect(toProxy.trace.traceFlags & C.TRACE_F_REV_NAT).toBe(0);
      // The proxy's own answer to the client is translated back to the service, as the client expects.
      const toClient = send(dp, "toEndpoint", backendReply, 10, C.MARK_MAGIC_FROM_EGRESS_PROXY);
      expect(toClient.verdict).toBe(C.CTX_ACT_OK);
      expect(toClient.trace.traceFlags & C.TRACE_F_REV_NAT).toBeTruthy();
      dp.close();
    });
  });
}

// An attached program runs without an armed Trace record, and without flow events core builds no record
// for packets it forwards or drops; a redirect's record is still written, because the program finds the
// proxy socket from it (bpf/include/ciliate_proxy.h).
const kernel = backends.find((b) => b.name === "kernel");
describe.skipIf(!kernel)("L7 redirect [kernel, unarmed record, events off]", () => {
  it("a redirect writes its record (addresses, ports, proxy port, reply flag); a forwarded packet leaves it untouched", async () => {
    const dp = (await kernel!.create()) as KernelDatapath;
    standardNode(dp);
    addPolicy(dp, { epId: POD_A.epId, egress: true, identity: POD_B.identity, proto: TCP, port: 80, proxyPort: PORT });
    addPolicy(dp, { epId: POD_B.epId, egress: false, identity: POD_A.identity, proto: TCP, port: 80 });
    proxyListening(dp, PORT);
    const trace = dp.map(MAP_SPECS.Trace);
    const unarmed = (entry: "fromEndpoint" | "toEndpoint", spec: FrameSpec, mark = 0) => {
      trace.update(0, TraceRecordCodec.zero());
      const r = testRun(dp.programFd(entry), { data: buildFrame(spec), ctx: { mark } });
      return { retval: r.retval, rec: trace.lookup(0)! };
    };
    const syn = unarmed("fromEndpoint", SYN);
    // On loopback no proxy socket can take it: dropped, never passed (ciliate_tc_action).
    expect(syn.retval).toBe(2);
    expect(syn.rec.verdict).toBe(C.CTX_ACT_REDIRECT);
    expect(syn.rec.proxyPort).toBe(PORT);
    expect(syn.rec.family).toBe(C.FAMILY_IPV4);
    expect(syn.rec.nexthdr).toBe(TCP);
    expect([...syn.rec.saddr.slice(0, 4)]).toEqual([10, 244, 0, 10]);
    expect([...syn.rec.newDaddr.slice(0, 4)]).toEqual([10, 244, 0, 20]);
    expect(syn.rec.sport).toBe(40000);
    expect(syn.rec.newDport).toBe(80);
    expect(syn.rec.hook).toBe(C.HOOK_FROM_ENDPOINT);
    expect(syn.rec.traceFlags & C.TRACE_F_REPLY).toBe(0);

    // B's reply belongs to the egress proxy's connection: redirected back to it, marked as a reply.
    const reply = unarmed("toEndpoint", SYN_ACK, POD_B.identity);
    expect(reply.rec.verdict).toBe(C.CTX_ACT_REDIRECT);
    expect(reply.rec.proxyPort).toBe(PORT);
    expect(reply.rec.traceFlags & C.TRACE_F_REPLY).toBeTruthy();
    expect(reply.rec.hook).toBe(C.HOOK_TO_ENDPOINT);

    // A forwarded packet: no trace work at all.
    const fwd = unarmed("toEndpoint", SYN, POD_A.identity);
    expect(fwd.retval).toBe(0);
    expect(fwd.rec).toEqual(TraceRecordCodec.zero());
    dp.close();
  });
});
