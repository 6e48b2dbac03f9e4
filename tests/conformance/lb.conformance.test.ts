/*
 * Service load balancing on every engine (Cilium bpf/lib/lb.h): ClusterIP DNAT with checksums that an
 * independent routine verifies, reverse NAT of replies, backend choice as a pure function of the flow,
 * terminating backends, session affinity and services without backends.
 */
import { describe, expect, it } from "vitest";
import { backends } from "./backends.ts";
import { addService, allowAll, C, decoded, POD_A, POD_B, send, standardNode, VIP, addEndpoint, type Svc } from "./fixture.ts";
import { TCP_FLAGS } from "../../sim/packets.ts";
import { MAP_SPECS } from "../../host/codecs.gen.ts";

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
    // (An old flow that is still live is another connection on the same port: see "two connections on one
    // source port" below, which moves the new one to another port instead.)
    for (const [what, close] of [["reset by the client", TCP_FLAGS.RST | TCP_FLAGS.ACK], ["closed with FIN", TCP_FLAGS.FIN | TCP_FLAGS.ACK]] as const) {
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

    // Two connections on one source port at the same time (issue #15; core/nat.ts T1–T7): Linux hands out
    // source ports per destination 4-tuple, so a pod can use port P towards two ClusterIPs, or towards a
    // ClusterIP and its backend directly, at once. After DNAT both are {A:P → B:8080}; the later connection
    // is moved to another source port and its replies get P back. Before the fix the second SYN overwrote
    // the first connection's entry and the first connection's replies came back from the wrong address.
    describe("two connections on one source port", () => {
      const P = 48000;
      const ONE: Svc = { vip: VIP, port: 80, revNat: 7, backends: [TWO.backends[0]!] };
      const OTHER: Svc = { vip: "10.96.0.11", port: 81, revNat: 8, backends: [TWO.backends[0]!] };
      const out = (dst: string, dport: number, tcpFlags: number, proto: "TCP" | "UDP" = "TCP") =>
        ({ src: POD_A.ip, dst, proto, sport: P, dport, tcpFlags, payload: new Uint8Array([1, 2, 3]) });
      const back = (dport: number, tcpFlags: number, proto: "TCP" | "UDP" = "TCP") =>
        ({ src: POD_B.ip, dst: POD_A.ip, proto, sport: 8080, dport, tcpFlags, payload: new Uint8Array([4, 5]) });
      const ok = { l3ChecksumOk: true, l4ChecksumOk: true };

      /** Sends `spec` from pod A; returns the source port it left with (checked: to B:8080, checksums valid). */
      function leave(dp: Awaited<ReturnType<typeof node>>, spec: ReturnType<typeof out>, now: number, ct: number): number {
        const r = send(dp, "fromEndpoint", spec, now);
        expect(r.verdict).toBe(C.CTX_ACT_OK);
        expect(r.trace.ctState).toBe(ct);
        const d = decoded(r);
        expect(d).toMatchObject({ src: POD_A.ip, dst: POD_B.ip, dport: 8080, ...ok });
        return d.sport;
      }
      /** Sends a reply from B to pod A's port `dport`; returns where it arrives from and at. */
      function reply(dp: Awaited<ReturnType<typeof node>>, spec: ReturnType<typeof back>, now: number) {
        const r = send(dp, "toEndpoint", spec, now, 2000);
        expect(r.verdict).toBe(C.CTX_ACT_OK);
        expect(r.trace.ctState).toBe(C.CT_REPLY);
        const d = decoded(r);
        expect(d).toMatchObject({ dst: POD_A.ip, ...ok });
        return { from: `${d.src}:${d.sport}`, to: d.dport };
      }

      it("gives each of two ClusterIPs with one backend its own replies", async () => {
        const dp = await node(backend);
        addService(dp, ONE);
        addService(dp, OTHER);
        expect(leave(dp, out(VIP, 80, TCP_FLAGS.SYN), 1, C.CT_NEW)).toBe(P);
        expect(reply(dp, back(P, TCP_FLAGS.SYN | TCP_FLAGS.ACK), 1)).toEqual({ from: `${VIP}:80`, to: P });
        expect(leave(dp, out(VIP, 80, TCP_FLAGS.ACK), 2, C.CT_ESTABLISHED)).toBe(P);
        // The second connection, same pod port, while the first is open: moved to another port.
        const moved = leave(dp, out(OTHER.vip, 81, TCP_FLAGS.SYN), 3, C.CT_NEW);
        expect(moved).not.toBe(P);
        expect(moved).toBeGreaterThan(32767);
        expect(reply(dp, back(moved, TCP_FLAGS.SYN | TCP_FLAGS.ACK), 3)).toEqual({ from: `${OTHER.vip}:81`, to: P });
        // Both keep going, each on its own tuple, each with its own replies.
        expect(leave(dp, out(OTHER.vip, 81, TCP_FLAGS.ACK), 4, C.CT_ESTABLISHED)).toBe(moved);
        expect(leave(dp, out(VIP, 80, TCP_FLAGS.ACK | TCP_FLAGS.PSH), 4, C.CT_ESTABLISHED)).toBe(P);
        expect(reply(dp, back(P, TCP_FLAGS.ACK), 5)).toEqual({ from: `${VIP}:80`, to: P });
        expect(reply(dp, back(moved, TCP_FLAGS.ACK), 5)).toEqual({ from: `${OTHER.vip}:81`, to: P });
        expect(leave(dp, out(OTHER.vip, 81, TCP_FLAGS.FIN | TCP_FLAGS.ACK), 6, C.CT_ESTABLISHED)).toBe(moved);
      });

      it("keeps a direct connection and a ClusterIP connection on one port apart, in either order", async () => {
        for (const directFirst of [true, false]) {
          const dp = await node(backend);
          addService(dp, ONE);
          const direct = () => out(POD_B.ip, 8080, TCP_FLAGS.SYN);
          const first = directFirst ? direct() : out(VIP, 80, TCP_FLAGS.SYN);
          const second = directFirst ? out(VIP, 80, TCP_FLAGS.SYN) : direct();
          expect(leave(dp, first, 1, C.CT_NEW)).toBe(P);
          const moved = leave(dp, second, 2, C.CT_NEW);
          expect(moved).not.toBe(P);
          const firstFrom = directFirst ? `${POD_B.ip}:8080` : `${VIP}:80`;
          const secondFrom = directFirst ? `${VIP}:80` : `${POD_B.ip}:8080`;
          expect(reply(dp, back(P, TCP_FLAGS.SYN | TCP_FLAGS.ACK), 2)).toEqual({ from: firstFrom, to: P });
          expect(reply(dp, back(moved, TCP_FLAGS.SYN | TCP_FLAGS.ACK), 2)).toEqual({ from: secondFrom, to: P });
          expect(leave(dp, { ...first, tcpFlags: TCP_FLAGS.ACK }, 3, C.CT_ESTABLISHED)).toBe(P);
          expect(leave(dp, { ...second, tcpFlags: TCP_FLAGS.ACK }, 3, C.CT_ESTABLISHED)).toBe(moved);
          dp.close();
        }
      });

      it("moves UDP flows too, with valid UDP checksums", async () => {
        const dp = await node(backend);
        addService(dp, { ...ONE, proto: C.IPPROTO_UDP });
        addService(dp, { ...OTHER, proto: C.IPPROTO_UDP });
        expect(leave(dp, out(VIP, 80, 0, "UDP"), 1, C.CT_NEW)).toBe(P);
        const moved = leave(dp, out(OTHER.vip, 81, 0, "UDP"), 1, C.CT_NEW);
        expect(moved).not.toBe(P);
        expect(leave(dp, out(OTHER.vip, 81, 0, "UDP"), 2, C.CT_ESTABLISHED)).toBe(moved);
        expect(leave(dp, out(VIP, 80, 0, "UDP"), 2, C.CT_ESTABLISHED)).toBe(P);
        expect(reply(dp, back(moved, 0, "UDP"), 2)).toEqual({ from: `${OTHER.vip}:81`, to: P });
        expect(reply(dp, back(P, 0, "UDP"), 2)).toEqual({ from: `${VIP}:80`, to: P });
      });

      it("conntrack GC removes a moved connection's port mapping with its entry (wasm/js)", async () => {
        const dp = await node(backend);
        if (!("ctGc" in dp)) return; // the kernel engine's maps are reclaimed by LRU, as Cilium's without GC
        addService(dp, ONE);
        addService(dp, OTHER);
        leave(dp, out(VIP, 80, TCP_FLAGS.SYN), 1, C.CT_NEW);
        leave(dp, out(VIP, 80, TCP_FLAGS.ACK), 1, C.CT_ESTABLISHED); // past the SYN: the long TCP lifetime
        const moved = leave(dp, out(OTHER.vip, 81, TCP_FLAGS.SYN), 1, C.CT_NEW); // SYN timeout only
        const mappings = () => [...dp.map(MAP_SPECS.Snat).entries()].map(([k, v]) => `${k.sport}>${k.dport}:${v.toPort}`);
        expect(mappings()).toEqual([`${P}>81:${moved}`]);
        const gc = (dp as unknown as { ctGc(now: number): number }).ctGc;
        expect(gc.call(dp, 1000)).toBe(1);
        expect(mappings()).toEqual([]);
        // The first connection is untouched, its replies still its own.
        expect(reply(dp, back(P, TCP_FLAGS.ACK), 1000)).toEqual({ from: `${VIP}:80`, to: P });
      });

      it("drops a new connection with DROP_NAT_NO_MAPPING when no source port is free", async () => {
        const dp = await node(backend);
        // A range of two ports: 65534 and 65535.
        const cfg = dp.map(MAP_SPECS.Config).lookup(0)!;
        dp.map(MAP_SPECS.Config).update(0, { ...cfg, nodePortMax: 65533 });
        const svcs = [80, 81, 82, 83].map((port, i): Svc => ({ vip: `10.96.0.${20 + i}`, port, revNat: 20 + i, backends: [TWO.backends[0]!] }));
        for (const s of svcs) addService(dp, s);
        const ports = svcs.slice(0, 3).map((s) => leave(dp, out(s.vip, s.port, TCP_FLAGS.SYN), 1, C.CT_NEW));
        expect(ports[0]).toBe(P);
        expect(new Set(ports.slice(1))).toEqual(new Set([65534, 65535]));
        const r = send(dp, "fromEndpoint", out(svcs[3]!.vip, 83, TCP_FLAGS.SYN), 1);
        expect(r.verdict).toBe(C.CTX_ACT_DROP);
        expect(r.dropReason).toBe(C.DROP_NAT_NO_MAPPING);
      });
    });

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
