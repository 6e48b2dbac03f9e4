/*
 * IPv4 fragments on every engine (core/frag.ts F1–F3, core/packet.ts rule 4): the fragments of a datagram
 * follow its first fragment — the same service backend and translation, the same policy verdict, the same
 * masquerade mapping — and a later fragment whose first fragment was not seen is dropped with
 * DROP_FRAG_NOT_FOUND (175). Cilium: bpf/lib/ipv4.h ipv4_handle_fragmentation, IPV4_FRAG_DATAGRAMS.
 */
import { describe, expect, it } from "vitest";
import { backends } from "./backends.ts";
import { addEndpoint, addPolicy, addService, allowAll, C, POD_A, POD_B, standardNode, UDP, VIP, WORLD_IP } from "./fixture.ts";
import { MAP_SPECS } from "../../host/codecs.gen.ts";
import type { Datapath, EntryPoint, RunResult } from "../../host/datapath.ts";
import { buildFrame, decodeFrame, fragmentFrame, reassembleFrames, type FrameSpec } from "../../sim/packets.ts";

const NODE_IP = "192.168.57.11";
const NODE_IP_NUM = 0xc0a8390b;
const BACKEND = { id: 1, ip: POD_B.ip, port: 5353 };

/** A UDP datagram of `size` payload bytes (a recognisable pattern), cut into fragments of at most 512
 * payload bytes with IP id `id`. */
function udpFragments(src: string, dst: string, sport: number, dport: number, size = 1400, id = 0x4242): { whole: Uint8Array; frags: Uint8Array[] } {
  const payload = Uint8Array.from({ length: size }, (_, i) => (i * 7 + 3) & 0xff);
  const whole = buildFrame({ src, dst, proto: "UDP", sport, dport, payload });
  return { whole, frags: fragmentFrame(whole, 512, id) };
}

function runAll(dp: Datapath, entry: EntryPoint, frames: Uint8Array[], now = 100): RunResult[] {
  return frames.map((f) => dp.run(entry, f, { now }));
}

/** The UDP payload of an untagged IPv4 frame without options. */
const udpPayload = (f: Uint8Array): Uint8Array => f.subarray(14 + 20 + 8);

async function node(backend: (typeof backends)[number], masquerade = false): Promise<Datapath> {
  const dp = await backend.create();
  standardNode(dp);
  allowAll(dp, POD_A.epId);
  allowAll(dp, POD_B.epId);
  if (masquerade) {
    const cfg = dp.map(MAP_SPECS.Config).lookup(0)!;
    dp.map(MAP_SPECS.Config).update(0, { ...cfg, flags: (cfg.flags | C.CONFIG_F_MASQUERADE) >>> 0, nodeIpv4: NODE_IP_NUM });
  }
  return dp;
}

for (const backend of backends) {
  describe(`IPv4 fragments [${backend.name}]`, () => {
    it("F2/F3: a UDP datagram to a ClusterIP service: every fragment is DNATed to the first fragment's backend, and the datagram arrives whole with a valid checksum", async () => {
      const dp = await node(backend);
      addService(dp, { vip: VIP, port: 53, revNat: 7, backends: [BACKEND], proto: UDP });
      const { whole, frags } = udpFragments(POD_A.ip, VIP, 40000, 53);
      expect(frags.length).toBe(3);
      const out = runAll(dp, "fromEndpoint", frags);
      expect(out.map((r) => [r.verdict, r.dropReason])).toEqual(frags.map(() => [C.CTX_ACT_OK, 0]));
      for (const r of out) {
        const d = decodeFrame(r.output)!;
        expect([d.dst, d.l3ChecksumOk]).toEqual([BACKEND.ip, true]);
        expect(r.trace.backendId).toBe(BACKEND.id);
      }
      const joined = reassembleFrames(out.map((r) => r.output))!;
      const d = decodeFrame(joined)!;
      expect([d.src, d.sport, d.dst, d.dport, d.l4ChecksumOk]).toEqual([POD_A.ip, 40000, BACKEND.ip, 5353, true]);
      expect(udpPayload(joined)).toEqual(udpPayload(whole));
      // One datagram, one entry: the first fragment's ports under {saddr, daddr, id, UDP}.
      const entries = [...dp.map(MAP_SPECS.FragDatagrams).entries()];
      expect(entries.length).toBe(1);
      expect(entries[0]![1]).toMatchObject({ sport: 40000, dport: 53 });
      // The backend's pod takes every fragment as the tracked flow.
      const at = runAll(dp, "toEndpoint", out.map((r) => r.output), 101);
      expect(at.map((r) => r.verdict)).toEqual(frags.map(() => C.CTX_ACT_OK));
    });

    it("F3: later fragments follow the first fragment's policy verdict, allowed or denied", async () => {
      const dp = await backend.create();
      standardNode(dp);
      addEndpoint(dp, POD_A);
      addPolicy(dp, { epId: POD_A.epId, egress: true, identity: 0, proto: UDP, port: 53 });
      const allowed = runAll(dp, "fromEndpoint", udpFragments(POD_A.ip, WORLD_IP, 40000, 53, 1400, 1).frags);
      expect(allowed.map((r) => r.verdict)).toEqual([C.CTX_ACT_OK, C.CTX_ACT_OK, C.CTX_ACT_OK]);
      const denied = runAll(dp, "fromEndpoint", udpFragments(POD_A.ip, WORLD_IP, 40000, 54, 1400, 2).frags);
      expect(denied.map((r) => [r.verdict, r.dropReason])).toEqual([[C.CTX_ACT_DROP, C.DROP_POLICY], [C.CTX_ACT_DROP, C.DROP_POLICY], [C.CTX_ACT_DROP, C.DROP_POLICY]]);
      // A later fragment reports the datagram's ports in its trace (what a flow shows).
      expect([denied[2]!.trace.sport, denied[2]!.trace.origDport]).toEqual([40000, 54]);
    });

    it("F3: a later fragment whose first fragment was not seen is dropped with 175 (fromEndpoint, toEndpoint, fromNetwork); the device's toNetwork passes it untouched", async () => {
      const dp = await node(backend, true);
      const { frags } = udpFragments(POD_A.ip, WORLD_IP, 40000, 53);
      for (const entry of ["fromEndpoint", "toEndpoint", "fromNetwork"] as const) {
        const spec: [string, string] = entry === "fromEndpoint" ? [POD_A.ip, WORLD_IP] : entry === "toEndpoint" ? [WORLD_IP, POD_A.ip] : [WORLD_IP, NODE_IP];
        const later = udpFragments(spec[0], spec[1], 53, 40000).frags[1]!;
        const r = dp.run(entry, later, { now: 100 });
        expect([r.verdict, r.dropReason], entry).toEqual([C.CTX_ACT_DROP, C.DROP_FRAG_NOT_FOUND]);
      }
      const r = dp.run("toNetwork", frags[2]!, { now: 100 });
      expect([r.verdict, r.output]).toEqual([C.CTX_ACT_OK, frags[2]]);
      // Out of order: a later fragment before its first is dropped; once the first is seen, the rest pass.
      expect(dp.run("fromEndpoint", frags[1]!, { now: 100 }).dropReason).toBe(C.DROP_FRAG_NOT_FOUND);
      expect(runAll(dp, "fromEndpoint", [frags[0]!, frags[2]!, frags[1]!]).map((x) => x.verdict)).toEqual([C.CTX_ACT_OK, C.CTX_ACT_OK, C.CTX_ACT_OK]);
      // A different IP id is a different datagram.
      expect(dp.run("fromEndpoint", udpFragments(POD_A.ip, WORLD_IP, 40000, 53, 1400, 0x4343).frags[1]!, { now: 100 }).dropReason).toBe(C.DROP_FRAG_NOT_FOUND);
    });

    it("masquerade: a pod's fragmented datagram leaves as the node with one mapping, and the world's fragmented reply is restored to the pod", async () => {
      const dp = await node(backend, true);
      const { whole, frags } = udpFragments(POD_A.ip, WORLD_IP, 1234, 53);
      const left = frags.map((f) => {
        const e = dp.run("fromEndpoint", f, { now: 100 });
        expect(e.verdict).toBe(C.CTX_ACT_OK);
        const r = dp.run("toNetwork", e.output, { now: 100 });
        expect(r.verdict).toBe(C.CTX_ACT_OK);
        expect(r.trace.traceFlags & C.TRACE_F_SNAT).toBe(C.TRACE_F_SNAT);
        return r.output;
      });
      const joined = reassembleFrames(left)!;
      const d = decodeFrame(joined)!;
      expect(d.src).toBe(NODE_IP);
      expect(d.sport).toBeGreaterThanOrEqual(32768);
      expect(d.l4ChecksumOk && d.l3ChecksumOk).toBe(true);
      expect(udpPayload(joined)).toEqual(udpPayload(whole));
      expect(dp.map(MAP_SPECS.Snat).count()).toBe(2);

      const reply = udpFragments(WORLD_IP, NODE_IP, 53, d.sport, 1000, 0x0707);
      const back = runAll(dp, "fromNetwork", reply.frags, 101);
      expect(back.map((r) => r.verdict)).toEqual(reply.frags.map(() => C.CTX_ACT_OK));
      const b = decodeFrame(reassembleFrames(back.map((r) => r.output))!)!;
      expect([b.dst, b.dport, b.l4ChecksumOk]).toEqual([POD_A.ip, 1234, true]);
      const at = runAll(dp, "toEndpoint", back.map((r) => r.output), 101);
      expect(at.map((r) => r.trace.ctState)).toEqual(reply.frags.map(() => C.CT_REPLY));
    });

    it("ICMP: a large echo request's fragments follow the first one's ICMP type through an ICMP-only policy", async () => {
      const dp = await backend.create();
      standardNode(dp);
      addEndpoint(dp, POD_A);
      addPolicy(dp, { epId: POD_A.epId, egress: true, identity: 0, proto: C.IPPROTO_ICMP, port: 8 });
      const echo: FrameSpec = { src: POD_A.ip, dst: WORLD_IP, proto: "ICMP", icmpType: 8, icmpId: 9, payload: new Uint8Array(3000) };
      const frags = fragmentFrame(buildFrame(echo), 1480, 77);
      expect(frags.length).toBe(3);
      expect(runAll(dp, "fromEndpoint", frags).map((r) => [r.verdict, r.trace.icmpType])).toEqual(frags.map(() => [C.CTX_ACT_OK, 8]));
    });
  });
}
