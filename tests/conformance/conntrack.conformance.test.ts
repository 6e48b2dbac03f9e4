/*
 * Connection tracking on every engine, under a fake clock (Cilium bpf/lib/conntrack.h, with the timeout
 * defines the agent's bpf-ct-timeout-* flags set): SYN-only entries live CT_SYN_TIMEOUT, established ones
 * CT_CONNECTION_LIFETIME_TCP, closing ones CT_CLOSE_TIMEOUT, non-TCP CT_CONNECTION_LIFETIME_NONTCP; an
 * expired entry is a new flow again.
 */
import { describe, expect, it } from "vitest";
import { backends } from "./backends.ts";
import { allowAll, C, POD_A, POD_B, send, standardNode, TIMEOUTS } from "./fixture.ts";
import { TCP_FLAGS } from "../../sim/packets.ts";
import { MAP_SPECS } from "../../host/codecs.gen.ts";
import type { Datapath } from "../../host/datapath.ts";

const fwd = (flags: number) => ({ src: POD_A.ip, dst: POD_B.ip, proto: "TCP" as const, sport: 41000, dport: 80, tcpFlags: flags });
const rev = (flags: number) => ({ src: POD_B.ip, dst: POD_A.ip, proto: "TCP" as const, sport: 80, dport: 41000, tcpFlags: flags });

/** The egress (TUPLE_F_OUT) entry of A's flow. */
function outEntry(dp: Datapath) {
  for (const [k, v] of dp.map(MAP_SPECS.Conntrack).entries()) {
    if ((k.flags & (C.TUPLE_F_IN | C.TUPLE_F_SERVICE)) === 0 && k.dport === 80 && k.sport === 41000) return v;
  }
  return undefined;
}

for (const backend of backends) {
  describe(`conntrack [${backend.name}]`, () => {
    it("walks a TCP connection through its lifetimes", async () => {
      const dp = await backend.create();
      standardNode(dp);
      allowAll(dp, POD_A.epId);
      allowAll(dp, POD_B.epId);

      expect(send(dp, "fromEndpoint", fwd(TCP_FLAGS.SYN), 100).trace.ctState).toBe(C.CT_NEW);
      expect(outEntry(dp)!.lifetime).toBe(100 + TIMEOUTS.syn);

      const synAck = send(dp, "toEndpoint", rev(TCP_FLAGS.SYN | TCP_FLAGS.ACK), 101, POD_B.identity);
      expect(synAck.trace.ctState).toBe(C.CT_REPLY);

      const ack = send(dp, "fromEndpoint", fwd(TCP_FLAGS.ACK), 102);
      expect(ack.trace.ctState).toBe(C.CT_ESTABLISHED);
      expect(outEntry(dp)!.lifetime).toBe(102 + TIMEOUTS.tcp);
      // SYN, the SYN-ACK reply (seen at A's ingress) and the ACK all count on A's egress entry.
      expect(outEntry(dp)!.packets).toBe(3n);

      send(dp, "fromEndpoint", fwd(TCP_FLAGS.FIN | TCP_FLAGS.ACK), 200);
      const e1 = outEntry(dp)!;
      expect(e1.flags & C.CT_F_TX_CLOSING).toBe(C.CT_F_TX_CLOSING);
      expect(e1.lifetime).toBe(200 + TIMEOUTS.tcp);

      send(dp, "toEndpoint", rev(TCP_FLAGS.FIN | TCP_FLAGS.ACK), 201, POD_B.identity);
      const e2 = outEntry(dp)!;
      expect(e2.flags & C.CT_F_RX_CLOSING).toBe(C.CT_F_RX_CLOSING);
      expect(e2.lifetime).toBe(201 + TIMEOUTS.close);

      // After the close timeout the same tuple is a new connection.
      expect(send(dp, "fromEndpoint", fwd(TCP_FLAGS.SYN), 201 + TIMEOUTS.close + 1).trace.ctState).toBe(C.CT_NEW);
    });

    it("expires a SYN-only entry after the SYN timeout", async () => {
      const dp = await backend.create();
      standardNode(dp);
      allowAll(dp, POD_A.epId);
      send(dp, "fromEndpoint", fwd(TCP_FLAGS.SYN), 10);
      expect(send(dp, "fromEndpoint", fwd(TCP_FLAGS.SYN), 10 + TIMEOUTS.syn - 1).trace.ctState).toBe(C.CT_ESTABLISHED);
      expect(send(dp, "fromEndpoint", fwd(TCP_FLAGS.SYN), 10 + TIMEOUTS.syn - 1 + TIMEOUTS.syn + 1).trace.ctState).toBe(C.CT_NEW);
    });

    it("tracks UDP with the non-TCP lifetime and ICMP echo by identifier", async () => {
      const dp = await backend.create();
      standardNode(dp);
      allowAll(dp, POD_A.epId);
      allowAll(dp, POD_B.epId);
      const udp = { src: POD_A.ip, dst: POD_B.ip, proto: "UDP" as const, sport: 5353, dport: 53 };
      send(dp, "fromEndpoint", udp, 50);
      const reply = send(dp, "toEndpoint", { ...udp, src: POD_B.ip, dst: POD_A.ip, sport: 53, dport: 5353 }, 51, POD_B.identity);
      expect(reply.trace.ctState).toBe(C.CT_REPLY);
      const udpEntry = [...dp.map(MAP_SPECS.Conntrack).entries()].find(([k]) => k.nexthdr === C.IPPROTO_UDP && k.flags === C.TUPLE_F_OUT)!;
      expect(udpEntry[1].lifetime).toBe(51 + TIMEOUTS.any);

      const echo = { src: POD_A.ip, dst: POD_B.ip, proto: "ICMP" as const, icmpType: 8, icmpId: 77 };
      expect(send(dp, "fromEndpoint", echo, 60).trace.ctState).toBe(C.CT_NEW);
      const echoReply = send(dp, "toEndpoint", { ...echo, src: POD_B.ip, dst: POD_A.ip, icmpType: 0 }, 60, POD_B.identity);
      expect(echoReply.trace.ctState).toBe(C.CT_REPLY);
      const otherId = send(dp, "toEndpoint", { ...echo, src: POD_B.ip, dst: POD_A.ip, icmpType: 0, icmpId: 78 }, 60, POD_B.identity);
      expect(otherId.trace.ctState).toBe(C.CT_NEW);
    });

    it("treats an ICMP error about a tracked flow as related", async () => {
      const dp = await backend.create();
      standardNode(dp);
      allowAll(dp, POD_A.epId);
      const udp = { src: POD_A.ip, dst: POD_B.ip, proto: "UDP" as const, sport: 6000, dport: 9999 };
      send(dp, "fromEndpoint", udp, 5);
      const { buildIpPacket } = await import("../../sim/packets.ts");
      const original = buildIpPacket(udp).subarray(0, 28);
      const unreachable = send(
        dp,
        "toEndpoint",
        { src: POD_B.ip, dst: POD_A.ip, proto: "ICMP", icmpType: 3, icmpCode: 3, embedded: original },
        6,
        POD_B.identity,
      );
      expect(unreachable.trace.ctState).toBe(C.CT_RELATED);
      expect(unreachable.verdict).toBe(C.CTX_ACT_OK);
    });
  });
}
