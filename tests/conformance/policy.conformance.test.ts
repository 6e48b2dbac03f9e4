/*
 * Policy verdicts through the real entry points, on every engine. The precedence table follows Cilium's
 * __policy_can_access (bpf/lib/policy.h, 1.17/1.18): (1) an identity-specific deny wins,
 * (2) an identity-0 deny wins, (3) otherwise the higher proxy priority, then the longer protocol/port prefix,
 * (4) ties go to the identity-specific entry; no entry → 133; deny → 181.
 */
import { describe, expect, it } from "vitest";
import { backends } from "./backends.ts";
import { addPolicy, allowAll, proxyListening, C, POD_A, POD_B, REMOTE_POD, WORLD_IP, send, standardNode, TCP, UDP, ICMP, type PolicyRule } from "./fixture.ts";
import { TCP_FLAGS } from "../../sim/packets.ts";

const SYN = { src: POD_A.ip, dst: POD_B.ip, proto: "TCP" as const, sport: 40000, dport: 80, tcpFlags: TCP_FLAGS.SYN };
const A_EG = { epId: POD_A.epId, egress: true };

interface Case {
  name: string;
  rules: Omit<PolicyRule, "epId" | "egress">[];
  verdict: number;
  reason: number;
  matchType: number;
  cookie?: number;
  proxyPort?: number;
}

const B = POD_B.identity;
const cases: Case[] = [
  { name: "no entry: default deny (133)", rules: [], verdict: C.CTX_ACT_DROP, reason: C.DROP_POLICY, matchType: 0 },
  { name: "L3-only allow", rules: [{ identity: B, cookie: 11 }], verdict: C.CTX_ACT_OK, reason: 0, matchType: C.POLICY_MATCH_L3_ONLY, cookie: 11 },
  { name: "L3 + protocol allow", rules: [{ identity: B, proto: TCP, cookie: 12 }], verdict: C.CTX_ACT_OK, reason: 0, matchType: C.POLICY_MATCH_L3_PROTO, cookie: 12 },
  { name: "L3/L4 exact allow", rules: [{ identity: B, proto: TCP, port: 80, cookie: 13 }], verdict: C.CTX_ACT_OK, reason: 0, matchType: C.POLICY_MATCH_L3_L4, cookie: 13 },
  { name: "L4-only allow (any identity)", rules: [{ identity: 0, proto: TCP, port: 80, cookie: 14 }], verdict: C.CTX_ACT_OK, reason: 0, matchType: C.POLICY_MATCH_L4_ONLY, cookie: 14 },
  { name: "allow-all entry", rules: [{ identity: 0, cookie: 15 }], verdict: C.CTX_ACT_OK, reason: 0, matchType: C.POLICY_MATCH_ALL, cookie: 15 },
  { name: "protocol-only allow", rules: [{ identity: 0, proto: TCP, cookie: 16 }], verdict: C.CTX_ACT_OK, reason: 0, matchType: C.POLICY_MATCH_PROTO_ONLY, cookie: 16 },
  { name: "wrong port: default deny", rules: [{ identity: B, proto: TCP, port: 81 }], verdict: C.CTX_ACT_DROP, reason: C.DROP_POLICY, matchType: 0 },
  { name: "wrong protocol: default deny", rules: [{ identity: B, proto: UDP, port: 80 }], verdict: C.CTX_ACT_DROP, reason: C.DROP_POLICY, matchType: 0 },
  { name: "other identity: default deny", rules: [{ identity: REMOTE_POD.identity }], verdict: C.CTX_ACT_DROP, reason: C.DROP_POLICY, matchType: 0 },
  {
    name: "(1) identity deny beats wildcard allow",
    rules: [{ identity: B, deny: true, cookie: 21 }, { identity: 0, proto: TCP, port: 80, cookie: 22 }],
    verdict: C.CTX_ACT_DROP, reason: C.DROP_POLICY_DENY, matchType: C.POLICY_MATCH_L3_ONLY, cookie: 21,
  },
  {
    name: "(2) wildcard deny beats more specific identity allow",
    rules: [{ identity: B, proto: TCP, port: 80, cookie: 23 }, { identity: 0, proto: TCP, deny: true, cookie: 24 }],
    verdict: C.CTX_ACT_DROP, reason: C.DROP_POLICY_DENY, matchType: C.POLICY_MATCH_PROTO_ONLY, cookie: 24,
  },
  {
    name: "(3) longer wildcard prefix beats shorter identity prefix",
    rules: [{ identity: B, proto: TCP, cookie: 25 }, { identity: 0, proto: TCP, port: 80, proxyPort: 10001, cookie: 26 }],
    verdict: C.CTX_ACT_REDIRECT, reason: 0, matchType: C.POLICY_MATCH_L4_ONLY, cookie: 26, proxyPort: 10001,
  },
  {
    name: "(3) higher proxy priority beats longer prefix",
    rules: [{ identity: B, proto: TCP, port: 80, cookie: 27 }, { identity: 0, proto: TCP, proxyPort: 10002, proxyPriority: 1, cookie: 28 }],
    verdict: C.CTX_ACT_REDIRECT, reason: 0, matchType: C.POLICY_MATCH_PROTO_ONLY, cookie: 28, proxyPort: 10002,
  },
  {
    name: "(4) tie goes to the identity-specific entry",
    rules: [{ identity: B, proto: TCP, port: 80, cookie: 29 }, { identity: 0, proto: TCP, port: 80, proxyPort: 10003, cookie: 30 }],
    verdict: C.CTX_ACT_OK, reason: 0, matchType: C.POLICY_MATCH_L3_L4, cookie: 29,
  },
  {
    name: "longest port prefix within one identity",
    rules: [{ identity: B, proto: TCP, port: 64, portBits: 10, deny: false, proxyPort: 10004, cookie: 31 }, { identity: B, proto: TCP, port: 80, cookie: 32 }],
    verdict: C.CTX_ACT_OK, reason: 0, matchType: C.POLICY_MATCH_L3_L4, cookie: 32,
  },
];

for (const backend of backends) {
  describe(`policy precedence [${backend.name}]`, () => {
    for (const c of cases) {
      it(c.name, async () => {
        const dp = await backend.create();
        standardNode(dp);
        for (const r of c.rules) addPolicy(dp, { ...A_EG, ...r });
        // The proxy is up; without it a redirect is a drop (proxy.conformance.test.ts).
        for (const r of c.rules) if (r.proxyPort) proxyListening(dp, r.proxyPort);
        const res = send(dp, "fromEndpoint", SYN, 100);
        expect(res.verdict).toBe(c.verdict);
        expect(res.dropReason).toBe(c.reason);
        expect(res.trace.egressMatchType).toBe(c.matchType);
        expect(res.trace.srcIdentity).toBe(POD_A.identity);
        expect(res.trace.dstIdentity).toBe(POD_B.identity);
        if (c.cookie !== undefined) expect(res.trace.egressCookie).toBe(c.cookie);
        if (c.proxyPort !== undefined) expect(res.trace.proxyPort).toBe(c.proxyPort);
        dp.close();
      });
    }

    it("port ranges stored as prefixes match exactly their ports (16–31 as one /12 block)", async () => {
      const dp = await backend.create();
      standardNode(dp);
      addPolicy(dp, { ...A_EG, identity: B, proto: TCP, port: 16, portBits: 12 });
      const verdicts = [15, 16, 23, 31, 32].map((p) => send(dp, "fromEndpoint", { ...SYN, sport: 40000 + p, dport: p }, 1).verdict);
      expect(verdicts).toEqual([C.CTX_ACT_DROP, C.CTX_ACT_OK, C.CTX_ACT_OK, C.CTX_ACT_OK, C.CTX_ACT_DROP]);
    });

    it("ingress policy uses the source identity carried with the packet, or the ipcache", async () => {
      const dp = await backend.create();
      standardNode(dp);
      addPolicy(dp, { epId: POD_B.epId, egress: false, identity: REMOTE_POD.identity, proto: TCP, port: 80 });
      const fromRemote = { ...SYN, src: REMOTE_POD.ip };
      expect(send(dp, "toEndpoint", fromRemote, 1).verdict).toBe(C.CTX_ACT_OK);
      const carried = send(dp, "toEndpoint", { ...fromRemote, sport: 40001 }, 1, 4242);
      expect(carried.verdict).toBe(C.CTX_ACT_DROP);
      expect(carried.trace.srcIdentity).toBe(4242);
      const world = send(dp, "toEndpoint", { ...SYN, src: WORLD_IP }, 1);
      expect(world.trace.srcIdentity).toBe(C.ID_WORLD);
      expect(world.dropReason).toBe(C.DROP_POLICY);
    });

    it("ICMP rules match the ICMP type in the port field", async () => {
      const dp = await backend.create();
      standardNode(dp);
      addPolicy(dp, { ...A_EG, identity: B, proto: ICMP, port: 8 });
      const echo = send(dp, "fromEndpoint", { src: POD_A.ip, dst: POD_B.ip, proto: "ICMP", icmpType: 8, icmpId: 9 }, 1);
      expect(echo.verdict).toBe(C.CTX_ACT_OK);
      const ts = send(dp, "fromEndpoint", { src: POD_A.ip, dst: POD_B.ip, proto: "ICMP", icmpType: 13, icmpId: 9 }, 1);
      expect(ts.dropReason).toBe(C.DROP_POLICY);
    });

    it("replies skip policy; a new flow the other way does not", async () => {
      const dp = await backend.create();
      standardNode(dp);
      addPolicy(dp, { ...A_EG, identity: B, proto: TCP, port: 80 });
      allowAll(dp, POD_B.epId);
      expect(send(dp, "fromEndpoint", SYN, 1).verdict).toBe(C.CTX_ACT_OK);
      // B's ingress (same node) and B's reply leaving B.
      expect(send(dp, "toEndpoint", SYN, 1, POD_A.identity).verdict).toBe(C.CTX_ACT_OK);
      const synAck = { src: POD_B.ip, dst: POD_A.ip, proto: "TCP" as const, sport: 80, dport: 40000, tcpFlags: TCP_FLAGS.SYN | TCP_FLAGS.ACK };
      const out = send(dp, "fromEndpoint", synAck, 1);
      expect(out.verdict).toBe(C.CTX_ACT_OK);
      expect(out.trace.ctState).toBe(C.CT_REPLY);
      // A has no ingress entry at all, yet the reply is delivered.
      const back = send(dp, "toEndpoint", synAck, 1, POD_B.identity);
      expect(back.verdict).toBe(C.CTX_ACT_OK);
      expect(back.trace.ctState).toBe(C.CT_REPLY);
      // A new connection from B to A is checked by A's (empty) ingress policy.
      const reverse = send(dp, "toEndpoint", { ...synAck, sport: 5555, dport: 22, tcpFlags: TCP_FLAGS.SYN }, 2, POD_B.identity);
      expect(reverse.dropReason).toBe(C.DROP_POLICY);
    });

    it("audit mode turns a policy drop into an audited allow", async () => {
      const dp = await backend.create();
      standardNode(dp);
      const { configure } = await import("./fixture.ts");
      configure(dp, C.CONFIG_F_POLICY_AUDIT | C.CONFIG_F_ENABLE_ICMP_RULE);
      const res = send(dp, "fromEndpoint", SYN, 1);
      expect(res.verdict).toBe(C.CTX_ACT_OK);
      expect(res.trace.traceFlags & C.TRACE_F_AUDITED).toBe(C.TRACE_F_AUDITED);
    });
  });
}
