/*
 * Service load balancing on every engine (Cilium bpf/lib/lb.h): ClusterIP DNAT with checksums that an
 * independent routine verifies, reverse NAT of replies, backend choice as a pure function of the flow,
 * terminating backends, session affinity and services without backends.
 */
import { describe, expect, it } from "vitest";
import { backends } from "./backends.ts";
import { addService, allowAll, C, decoded, POD_A, POD_B, send, standardNode, VIP, addEndpoint, type Svc } from "./fixture.ts";
import { TCP_FLAGS } from "../../sim/packets.ts";

const POD_C = { ip: "10.244.0.30", epId: 3, identity: 2000 };

const TWO: Svc = {
  vip: VIP,
  port: 80,
  revNat: 7,
  backends: [
    { id: 1, ip: POD_B.ip, port: 8080 },
    { id: 2, ip: POD_C.ip, port: 8080 },
  ],
};

async function node(backend: (typeof backends)[number], slot = 0) {
  const dp = await backend.create(slot);
  standardNode(dp);
  addEndpoint(dp, POD_C);
  for (const ep of [POD_A, POD_B, POD_C]) allowAll(dp, ep.epId);
  return dp;
}

const syn = (sport: number) => ({ src: POD_A.ip, dst: VIP, proto: "TCP" as const, sport, dport: 80, tcpFlags: TCP_FLAGS.SYN });

for (const backend of backends) {
  describe(`load balancing [${backend.name}]`, () => {
    it("DNATs a ClusterIP flow to a backend with valid checksums, and reverse-NATs the reply", async () => {
      const dp = await node(backend);
      addService(dp, TWO);
      const out = send(dp, "fromEndpoint", syn(42000), 1);
      expect(out.verdict).toBe(C.CTX_ACT_OK);
      const d = decoded(out);
      const chosen = TWO.backends.find((b) => b.ip === d.dst)!;
      expect(chosen).toBeDefined();
      expect(d.dport).toBe(8080);
      expect(d.l3ChecksumOk).toBe(true);
      expect(d.l4ChecksumOk).toBe(true);
      expect(out.trace.backendId).toBe(chosen.id);
      expect(out.trace.revNatIndex).toBe(7);
      expect(out.trace.traceFlags & C.TRACE_F_DNAT).toBe(C.TRACE_F_DNAT);

      const reply = send(dp, "toEndpoint", { src: chosen.ip, dst: POD_A.ip, proto: "TCP", sport: 8080, dport: 42000, tcpFlags: TCP_FLAGS.SYN | TCP_FLAGS.ACK }, 1, 2000);
      expect(reply.trace.ctState).toBe(C.CT_REPLY);
      const r = decoded(reply);
      expect(r).toMatchObject({ src: VIP, sport: 80, dst: POD_A.ip, dport: 42000, l3ChecksumOk: true, l4ChecksumOk: true });
    });

    it("chooses backends as a pure function of the flow, and keeps a flow on its backend", async () => {
      const a = await node(backend);
      const b = await node(backend, 1);
      addService(a, TWO);
      addService(b, TWO);
      const seen = new Set<number>();
      for (let p = 43000; p < 43040; p++) {
        const x = send(a, "fromEndpoint", syn(p), 1).trace.backendId;
        expect(send(b, "fromEndpoint", syn(p), 1).trace.backendId).toBe(x);
        expect(send(a, "fromEndpoint", { ...syn(p), tcpFlags: TCP_FLAGS.ACK }, 2).trace.backendId).toBe(x);
        seen.add(x);
      }
      expect(seen).toEqual(new Set([1, 2]));
    });

    it("sends no new flows to a terminating backend but keeps its existing ones", async () => {
      const dp = await node(backend);
      addService(dp, TWO);
      // Find a flow that lands on backend 2, then mark backend 2 terminating.
      let port = 44000;
      while (send(dp, "fromEndpoint", syn(port), 1).trace.backendId !== 2) port++;
      addService(dp, { ...TWO, backends: [TWO.backends[0]!, { ...TWO.backends[1]!, state: C.BE_STATE_TERMINATING }] });
      expect(send(dp, "fromEndpoint", { ...syn(port), tcpFlags: TCP_FLAGS.ACK }, 2).trace.backendId).toBe(2);
      for (let p = 45000; p < 45020; p++) expect(send(dp, "fromEndpoint", syn(p), 2).trace.backendId).toBe(1);
    });

    it("drops with 158 when a service has no active backend", async () => {
      const dp = await node(backend);
      addService(dp, { ...TWO, backends: [] });
      const res = send(dp, "fromEndpoint", syn(46000), 1);
      expect(res.verdict).toBe(C.CTX_ACT_DROP);
      expect(res.dropReason).toBe(C.DROP_NO_SERVICE);
    });

    // A client that reuses a source port towards another service with the same backend produces the same
    // translated tuple as its earlier connection: that entry carries the earlier service's reverse NAT. Cilium
    // re-creates such an entry (bpf/bpf_lxc.c handle_ipv4_from_lxc: "Did we end up at a stale non-service
    // entry? Recreate if so."; bpf/lib/conntrack.h __ct_lookup: a SYN on an entry closing on either side is
    // CT_NEW). Before the fix the SYN-ACK came back from the first service's address: the client has no
    // socket for it, so the connection got no reply (issue #15, the conn-rate benchmark's lost connections).
    for (const [what, close] of [["reset by the client", TCP_FLAGS.RST | TCP_FLAGS.ACK], ["never closed", 0]] as const) {
      it(`re-creates the entry of a reused source port towards another service (old flow ${what})`, async () => {
        const dp = await node(backend);
        const ONE: Svc = { vip: VIP, port: 80, revNat: 7, backends: [TWO.backends[0]!] };
        const OTHER: Svc = { vip: "10.96.0.11", port: 81, revNat: 8, backends: [TWO.backends[0]!] };
        addService(dp, ONE);
        addService(dp, OTHER);
        const from = (dst: string, dport: number, tcpFlags: number) => ({ src: POD_A.ip, dst, proto: "TCP" as const, sport: 48000, dport, tcpFlags });
        const back = (tcpFlags: number) => ({ src: POD_B.ip, dst: POD_A.ip, proto: "TCP" as const, sport: 8080, dport: 48000, tcpFlags });
        expect(send(dp, "fromEndpoint", from(VIP, 80, TCP_FLAGS.SYN), 1).verdict).toBe(C.CTX_ACT_OK);
        expect(decoded(send(dp, "toEndpoint", back(TCP_FLAGS.SYN | TCP_FLAGS.ACK), 1, 2000))).toMatchObject({ src: VIP, sport: 80 });
        send(dp, "fromEndpoint", from(VIP, 80, TCP_FLAGS.ACK), 1);
        if (close !== 0) send(dp, "fromEndpoint", from(VIP, 80, close), 2);

        const again = send(dp, "fromEndpoint", from(OTHER.vip, 81, TCP_FLAGS.SYN), 3);
        expect(again.verdict).toBe(C.CTX_ACT_OK);
        expect(decoded(again)).toMatchObject({ dst: POD_B.ip, dport: 8080 });
        expect(again.trace.ctState).toBe(C.CT_NEW);
        expect(again.trace.revNatIndex).toBe(8);
        const reply = send(dp, "toEndpoint", back(TCP_FLAGS.SYN | TCP_FLAGS.ACK), 3, 2000);
        expect(reply.trace.ctState).toBe(C.CT_REPLY);
        expect(decoded(reply)).toMatchObject({ src: OTHER.vip, sport: 81, dst: POD_A.ip, dport: 48000, l3ChecksumOk: true, l4ChecksumOk: true });
      });
    }

    it("pins a client to one backend with session affinity until the timeout", async () => {
      // With affinity the flow hash ignores the source port (as Cilium's does), so one client maps to one
      // backend by hash too. Affinity shows when the backend set changes: within the timeout a client stays
      // on its backend; afterwards it gets what a node without history would choose.
      const THREE: Svc = { ...TWO, affinityTimeout: 100, backends: [...TWO.backends, { id: 3, ip: POD_B.ip, port: 9090 }] };
      const clients = Array.from({ length: 12 }, (_, i) => ({ ip: `10.244.0.${100 + i}`, epId: 10 + i, identity: 1000 }));
      const fresh = await node(backend, 1);
      for (const c of clients) {
        addEndpoint(fresh, c);
        allowAll(fresh, c.epId);
      }
      addService(fresh, THREE);
      const dp = await node(backend);
      for (const c of clients) {
        addEndpoint(dp, c);
        allowAll(dp, c.epId);
      }
      addService(dp, { ...TWO, affinityTimeout: 100 });
      const client = (c: (typeof clients)[number], sport: number) => ({ ...syn(sport), src: c.ip });
      const pinned = clients.map((c) => send(dp, "fromEndpoint", client(c, 47000), 10).trace.backendId);
      const freshChoice = clients.map((c) => send(fresh, "fromEndpoint", client(c, 47000), 10).trace.backendId);
      const i = clients.findIndex((_, k) => pinned[k] !== freshChoice[k]);
      expect(i, "some client's fresh choice differs from its pinned backend").toBeGreaterThanOrEqual(0);
      addService(dp, THREE);
      for (let p = 47001; p < 47010; p++) expect(send(dp, "fromEndpoint", client(clients[i]!, p), 50).trace.backendId).toBe(pinned[i]);
      // Affinity is refreshed by use: 50 + 100 is still within; 50 + 101 is not.
      expect(send(dp, "fromEndpoint", client(clients[i]!, 47011), 149).trace.backendId).toBe(pinned[i]);
      expect(send(dp, "fromEndpoint", client(clients[i]!, 47012), 149 + 101).trace.backendId).toBe(freshChoice[i]);
    });
  });
}
