/*
 * The node's device on every engine: from-network hands frames that are not IPv4/IPv6 (ARP above all) to the
 * node's stack untouched, so the nodes of a cluster can resolve each other through the device that carries
 * their pods' traffic (Cilium's bpf_host passes ARP at the native device). A pod's interface still drops
 * them (DROP_UNKNOWN_L3): pods resolve their gateway through a permanent neighbour entry.
 */
import { describe, expect, it } from "vitest";
import { backends } from "./backends.ts";
import { C, standardNode } from "./fixture.ts";

/** An ARP request (who-has 192.168.57.12 tell 192.168.57.11), Ethernet broadcast. */
const ARP = Uint8Array.from([
  0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x02, 0, 0, 0, 0, 0x11, 0x08, 0x06,
  0x00, 0x01, 0x08, 0x00, 6, 4, 0x00, 0x01, 0x02, 0, 0, 0, 0, 0x11, 192, 168, 57, 11,
  0, 0, 0, 0, 0, 0, 192, 168, 57, 12,
]);

for (const backend of backends) {
  describe(`node device [${backend.name}]`, () => {
    it("from-network passes ARP to the stack unchanged; from-endpoint drops it (UNKNOWN_L3)", async () => {
      const dp = await backend.create();
      standardNode(dp);
      const net = dp.run("fromNetwork", ARP, { now: 1, srcIdentity: 0 });
      expect(net.verdict).toBe(C.CTX_ACT_OK);
      expect(net.dropReason).toBe(0);
      expect([...net.output.subarray(0, ARP.length)]).toEqual([...ARP]);
      const ep = dp.run("fromEndpoint", ARP, { now: 1, srcIdentity: 0 });
      expect(ep.verdict).toBe(C.CTX_ACT_DROP);
      expect(ep.dropReason).toBe(C.DROP_UNKNOWN_L3);
    });
  });
}
