/*
 * The XDP build of from-network (the agent's --xdp-acceleration) forwards from the driver: a NodePort
 * packet for a remote backend is DNATed and SNATed by core and sent back out of the device it came in on
 * (XDP_TX) with the next hop's MAC addresses from the kernel's FIB, as Cilium's fib_redirect does. The
 * differential suite compares the XDP program with WASM on random traffic, but its test runs receive on
 * the loopback device, where no route leads back out; here the test run receives on a veth in a network
 * namespace this test creates, with a route and a permanent neighbour entry for the backend.
 */
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { spawnSync } from "node:child_process";
import { randomBytes } from "node:crypto";
import { kernelSuite } from "../../datapath/preflight.ts";
import { KernelDatapath, XDP_DROP, XDP_PASS, XDP_TX } from "../../datapath/kernel-engine.ts";
import { testRun } from "../../datapath/test-run.ts";
import { ifindexOf, withNetns } from "../../datapath/netns.ts";
import { MAP_SPECS } from "../../host/codecs.gen.ts";
import { buildFrame, decodeFrame, TCP_FLAGS } from "../../sim/packets.ts";
import { C, configure } from "../conformance/fixture.ts";
import { addrBytes16 } from "../../host/ip.ts";
import { TEST_CAPACITIES } from "../conformance/backends.ts";
import { addLoadBalancer } from "../../bench/fixtures/node.ts";

const suite = kernelSuite("xdp acceleration", ["root", "libbpf", "bpffs", "clang", "iproute2"]);
const NS = `cxdp-${process.pid}-${randomBytes(3).toString("hex")}`;
const LB_IP = "198.51.100.10";
const NODE_IP = "192.0.2.1";
const BACKEND = { id: 7, ip: "192.0.2.2", port: 8080 };
const BACKEND_MAC = "02:00:00:00:00:02";
const CLIENT = "203.0.113.5";

function sh(cmd: string, args: string[], allowFail = false): string {
  const r = spawnSync(cmd, args, { encoding: "utf8", timeout: 30_000 });
  if (r.status !== 0 && !allowFail) throw new Error(`${cmd} ${args.join(" ")} failed: ${r.stderr}`);
  return r.stdout;
}


/** struct xdp_md for a test run of a `len`-byte frame received on `ifindex`, rx queue 0 (the kernel wants
 * data_end = the frame's length and no metadata). */
function xdpCtx(ifindex: number, len: number): Uint8Array {
  const ctx = new Uint8Array(24);
  const dv = new DataView(ctx.buffer);
  dv.setUint32(4, len, true); // data_end
  dv.setUint32(12, ifindex, true); // ingress_ifindex
  return ctx;
}

describe.skipIf(suite.skip)("from-network at XDP", () => {
  let dp: KernelDatapath;
  let ifindex = 0;
  let devMac = "";

  beforeAll(() => {
    sh("ip", ["netns", "add", NS]);
    sh("ip", ["-n", NS, "link", "add", "xa", "type", "veth", "peer", "name", "xb"]);
    sh("ip", ["-n", NS, "addr", "add", `${NODE_IP}/24`, "dev", "xa"]);
    sh("ip", ["-n", NS, "link", "set", "xa", "up"]);
    sh("ip", ["-n", NS, "link", "set", "xb", "up"]);
    sh("ip", ["-n", NS, "neigh", "replace", BACKEND.ip, "lladdr", BACKEND_MAC, "dev", "xa", "nud", "permanent"]);
    ifindex = ifindexOf("xa", NS);
    devMac = JSON.parse(sh("ip", ["-n", NS, "-j", "link", "show", "xa"]))[0].address as string;
    dp = new KernelDatapath({ capacities: TEST_CAPACITIES, xdp: true });
    configure(dp);
    addLoadBalancer(dp, { nodeIp: NODE_IP, lbIp: LB_IP, backend: BACKEND });
  });

  afterAll(() => {
    dp?.close();
    sh("ip", ["netns", "del", NS], true);
  });

  const run = (frame: Uint8Array) =>
    withNetns(NS, () => testRun(dp.programFd("fromNetwork"), { data: frame, ctx: xdpCtx(ifindex, frame.length), dataOutSize: frame.length + 256 }));

  it("a LoadBalancer packet for a remote backend leaves by XDP_TX: DNAT, SNAT to the node, next hop's MACs", () => {
    const frame = buildFrame({ src: CLIENT, dst: LB_IP, proto: "TCP", sport: 40000, dport: 80, tcpFlags: TCP_FLAGS.SYN });
    const r = run(frame);
    expect(r.retval).toBe(XDP_TX);
    const out = decodeFrame(r.data)!;
    expect(out.dst).toBe(BACKEND.ip);
    expect(out.dport).toBe(BACKEND.port);
    expect(out.src).toBe(NODE_IP);
    const mac = (b: Uint8Array) => [...b].map((x) => x.toString(16).padStart(2, "0")).join(":");
    expect(mac(r.data.subarray(0, 6))).toBe(BACKEND_MAC);
    expect(mac(r.data.subarray(6, 12))).toBe(devMac);
    // The flow is tracked and SNATed in the shared maps, as with the tc program.
    expect(dp.map(MAP_SPECS.Snat).count()).toBeGreaterThan(0);
  });

  it("a packet for the node's own stack passes; a ClusterIP reached from outside is dropped at the driver", () => {
    const other = buildFrame({ src: CLIENT, dst: NODE_IP, proto: "TCP", sport: 40001, dport: 22, tcpFlags: TCP_FLAGS.SYN });
    expect(run(other).retval).toBe(XDP_PASS);
    const key = { addr: addrBytes16("10.96.0.10"), dport: 80, proto: C.IPPROTO_TCP, scope: 0, family: C.FAMILY_IPV4 };
    dp.map(MAP_SPECS.Services).update({ ...key, backendSlot: 0 }, { backendId: C.LB_ALG_RANDOM << 24, count: 1, qcount: 0, revNatIndex: 4, flags: 0 });
    const cluster = buildFrame({ src: CLIENT, dst: "10.96.0.10", proto: "TCP", sport: 40002, dport: 80, tcpFlags: TCP_FLAGS.SYN });
    expect(run(cluster).retval).toBe(XDP_DROP);
  });
});
