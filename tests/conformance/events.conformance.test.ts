/*
 * Flow events on every engine: with CONFIG_F_EVENTS the datapath writes a copy of the trace record into the
 * Events ring buffer for drops and for new flows' policy verdicts (Hubble's drop and policy-verdict events),
 * and nothing for established traffic; without the flag, nothing.
 */
import { describe, expect, it } from "vitest";
import { backends } from "./backends.ts";
import { addPolicy, allowAll, C, configure, POD_A, POD_B, send, standardNode, TCP } from "./fixture.ts";
import { TCP_FLAGS } from "../../sim/packets.ts";
import type { Datapath } from "../../host/datapath.ts";
import { MAP_SPECS, type TraceRecord } from "../../host/codecs.gen.ts";
import { createWasmDatapath } from "../../sim/engines.ts";

const events = (dp: Datapath) => (dp as unknown as { events(): TraceRecord[] }).events();
const syn = { src: POD_A.ip, dst: POD_B.ip, proto: "TCP" as const, sport: 41234, dport: 80, tcpFlags: TCP_FLAGS.SYN };

for (const backend of backends) {
  describe(`flow events [${backend.name}]`, () => {
    it("reports drops and new-flow verdicts, not established packets", async () => {
      const dp = await backend.create();
      standardNode(dp);
      configure(dp, C.CONFIG_F_EVENTS | C.CONFIG_F_ENABLE_ICMP_RULE);
      addPolicy(dp, { epId: POD_A.epId, egress: true, identity: POD_B.identity, proto: TCP, port: 80, cookie: 5 });
      allowAll(dp, POD_B.epId);
      events(dp);
      send(dp, "fromEndpoint", syn, 10);
      send(dp, "fromEndpoint", { ...syn, tcpFlags: TCP_FLAGS.ACK }, 11);
      send(dp, "fromEndpoint", { ...syn, dport: 22 }, 12);
      const ev = events(dp);
      expect(ev.map((e) => [e.hook, e.verdict, e.dropReason, e.ctState])).toEqual([
        [C.HOOK_FROM_ENDPOINT, C.CTX_ACT_OK, 0, C.CT_NEW],
        [C.HOOK_FROM_ENDPOINT, C.CTX_ACT_DROP, C.DROP_POLICY, C.CT_NEW],
      ]);
      expect(ev[0]).toMatchObject({ egressCookie: 5, sport: 41234, newDport: 80, nexthdr: C.IPPROTO_TCP, tcpFlags: TCP_FLAGS.SYN, srcIdentity: POD_A.identity, dstIdentity: POD_B.identity });
      expect(Array.from(ev[0]!.saddr.subarray(0, 4))).toEqual([10, 244, 0, 10]);
      expect(events(dp)).toEqual([]);
    });

    it("samples about 1 in traceSampleRate forwarded packets, the same packets on every engine", async () => {
      const run = async (dp: Datapath) => {
        standardNode(dp);
        configure(dp, C.CONFIG_F_EVENTS | C.CONFIG_F_ENABLE_ICMP_RULE);
        dp.map(MAP_SPECS.Config).update(0, { ...dp.map(MAP_SPECS.Config).lookup(0)!, traceSampleRate: 8 });
        allowAll(dp, POD_A.epId);
        for (let p = 0; p < 400; p++) send(dp, "fromEndpoint", { ...syn, sport: 20000 + p }, 10);
        events(dp);
        for (let p = 0; p < 400; p++) send(dp, "fromEndpoint", { ...syn, sport: 20000 + p, tcpFlags: TCP_FLAGS.ACK }, 11);
        return events(dp).map((e) => e.sport);
      };
      const sampled = await run(await backend.create());
      expect(sampled.length).toBeGreaterThan(400 / 8 / 3);
      expect(sampled.length).toBeLessThan((400 / 8) * 3);
      expect(sampled).toEqual(await run(createWasmDatapath()));
    });

    it("is silent without CONFIG_F_EVENTS", async () => {
      const dp = await backend.create();
      standardNode(dp);
      events(dp);
      send(dp, "fromEndpoint", syn, 10);
      expect(events(dp)).toEqual([]);
    });
  });
}
