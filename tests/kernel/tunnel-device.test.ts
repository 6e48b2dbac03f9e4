/*
 * datapath/tunnel-device.ts on a real kernel: the collect-metadata VXLAN device is created in a fresh
 * namespace with the port and MTU asked for, in external mode, replaced when created again, takes
 * from_overlay at its tc ingress, and is removed. Geneve goes through the same call; where the kernel has
 * no geneve module the failure must name it (this machine's case). Needs root and iproute2: skipped with a
 * reason outside CI, failing in CI. The namespace is removed in afterAll, even on failure.
 */
import { execFileSync } from "node:child_process";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { kernelSuite } from "../../datapath/preflight.ts";
import { createTunnelDevice, deleteTunnelDevice } from "../../datapath/tunnel-device.ts";
import { BpfError } from "../../datapath/errors.ts";
import { BpfObject } from "../../datapath/bpf-object.ts";
import { attachTc } from "../../datapath/tc.ts";
import { KERNEL_OBJECT } from "../../datapath/kernel-engine.ts";
import { podMtu } from "../../host/tunnel.ts";

const suite = kernelSuite("tunnel device", ["root", "iproute2", "libbpf", "bpffs"]);
const NS = `cil-tun-${process.pid}-${Math.random().toString(36).slice(2, 7)}`;

function details(name: string): any {
  return JSON.parse(execFileSync("ip", ["-n", NS, "-d", "-j", "link", "show", "dev", name], { encoding: "utf8" }))[0];
}

describe.skipIf(suite.skip)("tunnel device (root)", () => {
  beforeAll(() => {
    execFileSync("ip", ["netns", "add", NS]);
  });
  afterAll(() => {
    try {
      execFileSync("ip", ["netns", "del", NS], { stdio: "ignore" });
    } catch {
      /* already gone */
    }
  });

  it("creates an external VXLAN device with the port and MTU asked for, and replaces it", () => {
    const dev = createTunnelDevice({ netns: NS, mtu: 1500 });
    expect(dev).toMatchObject({ name: "cilium_vxlan", protocol: "vxlan", port: 8472 });
    const d = details("cilium_vxlan");
    expect(d.ifindex).toBe(dev.ifindex);
    expect(d.mtu).toBe(1500);
    expect(d.linkinfo.info_kind).toBe("vxlan");
    expect(d.linkinfo.info_data.external).toBe(true);
    expect(d.linkinfo.info_data.port).toBe(8472);
    expect(d.flags).toContain("UP");
    // Pods behind it get the device MTU minus the overhead.
    expect(podMtu(d.mtu)).toBe(1450);
    const again = createTunnelDevice({ netns: NS, port: 4789, name: "cilium_vxlan" });
    expect(details("cilium_vxlan").linkinfo.info_data.port).toBe(4789);
    expect(again.ifindex).not.toBe(dev.ifindex);
  });

  it("takes from_overlay at its tc ingress", () => {
    const obj = BpfObject.load(KERNEL_OBJECT, { pinRoot: null });
    try {
      const a = attachTc(obj.program("from_overlay"), { ifname: "cilium_vxlan", netns: NS, direction: "ingress" });
      expect(a.progId).toBeGreaterThan(0);
      a.detach();
    } finally {
      obj.close();
    }
  });

  it("removes the device, and refuses bad specs with a message naming the field", () => {
    expect(deleteTunnelDevice("cilium_vxlan", NS)).toBe(true);
    expect(deleteTunnelDevice("cilium_vxlan", NS)).toBe(false);
    expect(() => createTunnelDevice({ netns: NS, name: "a-name-that-is-too-long" })).toThrow(/tunnel device name/);
    expect(() => createTunnelDevice({ netns: NS, port: 70000 })).toThrow(/tunnel port 70000/);
    expect(() => createTunnelDevice({ netns: NS, mtu: 100 })).toThrow(/MTU 100/);
  });

  it("Geneve goes through the same call (or fails naming geneve where the kernel lacks the module)", () => {
    let dev;
    try {
      dev = createTunnelDevice({ netns: NS, protocol: "geneve" });
    } catch (e) {
      expect(e).toBeInstanceOf(BpfError);
      expect((e as BpfError).message).toMatch(/type geneve external dstport 6081/);
      return;
    }
    expect(details(dev.name).linkinfo.info_kind).toBe("geneve");
    expect(deleteTunnelDevice(dev.name, NS)).toBe(true);
  });
});
