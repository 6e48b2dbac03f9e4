/*
 * Path MTU discovery through masquerading and through a service (issue #13 item 5, ICMP errors): one node
 * running `ciliate agent --enable-bpf-masquerade` (tests/agent/multinode-harness.ts) and, beyond a router
 * on the underlay, a far host whose link is smaller:
 *
 *   pod (MTU 1500) ─ node-1 eth0 192.168.57.11 ═ underlay ═ router eth0 192.168.57.254
 *                                                           router eth1 198.51.100.1 (MTU 1200) ─ far 198.51.100.2
 *
 * The far host's own interface keeps 1500, so it offers an MSS of 1460 and the pod sends full 1500-byte
 * segments with DF set (Linux's default). The router cannot forward them and answers ICMP "fragmentation
 * needed" (MTU 1200) to the address the segment came from — the node's, after masquerading — about the
 * node's address and port. node-1's from_network puts the pod's address and port back into the error and
 * as its destination (core/nat.ts E1–E3); for a ClusterIP whose backend is the far host, the pod's
 * to_endpoint also puts the service address back inside it (core/lb.ts lbRevNatIcmpError). Only then does
 * the pod's stack match the error to its socket and lower the path MTU, so the transfer completes and
 * `ip route get` in the pod shows the learned MTU for that destination. Without the translation the error
 * would reach the node's stack (or a socket-less tuple) and the pod's large segments would be lost forever:
 * forwarding ignores a learned path MTU (net.ipv4.ip_forward_use_pmtu is 0).
 * Kernel suite: fails in CI when it cannot run, skips elsewhere.
 */
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { kernelSuite } from "../../datapath/index.ts";
import { eventually, sh, tool } from "./e2e-helpers.ts";
import { MultiNodeCluster } from "./multinode-harness.ts";

const suite = kernelSuite("agent-e2e-pmtu", ["root", "libbpf", "bpffs", "iproute2"]);
const ROUTER_IP = "192.168.57.254";
const FAR_IP = "198.51.100.2";
const SMALL_MTU = 1200;
const PORT = 9000;
const SVC_IP = "10.96.0.70";
const BYTES = 100_000;
/** A ClusterIP without selector whose backend (an EndpointSlice) is the far host. */
const SERVICE = `apiVersion: v1
kind: Service
metadata: {name: far, namespace: default}
spec:
  clusterIP: ${SVC_IP}
  ports: [{name: bulk, port: 80, targetPort: ${PORT}, protocol: TCP}]
---
apiVersion: discovery.k8s.io/v1
kind: EndpointSlice
metadata: {name: far-1, namespace: default, labels: {kubernetes.io/service-name: far}}
addressType: IPv4
ports: [{name: bulk, port: ${PORT}, protocol: TCP}]
endpoints:
  - addresses: [${FAR_IP}]
    conditions: {ready: true}
`;

let router = "";
let far = "";
const c = new MultiNodeCluster({
  nodes: 1,
  routingMode: "native",
  prefix: "cpm",
  agentArgs: ["--enable-bpf-masquerade", "--ipv4-native-routing-cidr", "10.244.0.0/16"],
  beforeAgents: async (cl) => {
    cl.writeManifest("service.yaml", SERVICE);
    router = cl.addOutside("rtr", ROUTER_IP);
    far = cl.extraNamespace("far");
    sh("ip", ["link", "add", "eth1", "netns", router, "type", "veth", "peer", "name", "eth0", "netns", far]);
    // Only the router's side is small: the far host offers MSS 1460, so the pod's segments are too large.
    sh("ip", ["-n", router, "link", "set", "eth1", "mtu", String(SMALL_MTU)]);
    sh("ip", ["-n", router, "addr", "add", "198.51.100.1/24", "dev", "eth1"]);
    sh("ip", ["-n", router, "link", "set", "eth1", "up"]);
    sh("ip", ["netns", "exec", router, "sysctl", "-qw", "net.ipv4.ip_forward=1"]);
    sh("ip", ["-n", far, "addr", "add", `${FAR_IP}/24`, "dev", "eth0"]);
    sh("ip", ["-n", far, "link", "set", "eth0", "up"]);
    sh("ip", ["-n", far, "route", "add", "default", "via", "198.51.100.1"]);
    sh("ip", ["-n", cl.node(1).ns, "route", "add", "198.51.100.0/24", "via", ROUTER_IP]);
  },
});

/** The router's count of ICMP destination-unreachable messages it sent (fragmentation needed among them). */
function routerUnreachables(): number {
  const lines = sh("ip", ["netns", "exec", router, "cat", "/proc/net/snmp"]).split("\n").filter((l) => l.startsWith("Icmp:"));
  const [names, values] = [lines[0]!.split(/\s+/), lines[1]!.split(/\s+/)];
  return Number(values[names.indexOf("OutDestUnreachs")]);
}

/** The path MTU the pod's stack has learned for `dst` ("" when it uses the device's). */
function learnedMtu(pod: string, dst: string): string {
  return /\bmtu (\d+)/.exec(sh("ip", ["-n", c.pod(pod).ns, "route", "get", dst]))?.[1] ?? "";
}

describe.skipIf(suite.skip)("path MTU discovery through masquerading and a service, past a router with a smaller MTU", () => {
  beforeAll(async () => {
    await c.setup();
    c.addPod(1, "client", { app: "client" });
    c.addPod(1, "viasvc", { app: "client" });
    c.background(far, "sink-serve", 240_000, PORT);
    await c.converged();
    await eventually(() => tool(far, "tcp-bulk", "127.0.0.1", PORT, 10).received === 10, 30_000);
  }, 240_000);

  afterAll(() => c.cleanup(), 60_000);

  it("the pod starts with the device MTU, the router's far link is smaller, and small traffic passes", () => {
    expect(learnedMtu("client", FAR_IP)).toBe("");
    expect(sh("ip", ["-n", router, "link", "show", "eth1"])).toContain(`mtu ${SMALL_MTU}`);
    expect(tool(c.pod("client").ns, "tcp-bulk", FAR_IP, PORT, 500)).toEqual({ ok: true, received: 500 });
  }, 30_000);

  it("through masquerading: the fragmentation-needed error reaches the pod, which lowers its path MTU and completes the transfer", () => {
    const before = routerUnreachables();
    expect(tool(c.pod("client").ns, "tcp-bulk", FAR_IP, PORT, BYTES), c.logs()).toEqual({ ok: true, received: BYTES });
    expect(routerUnreachables()).toBeGreaterThan(before);
    expect(learnedMtu("client", FAR_IP)).toBe(String(SMALL_MTU));
  }, 30_000);

  it("through a ClusterIP whose backend is beyond the router: the error names the service again, and the pod learns the MTU for it", () => {
    const before = routerUnreachables();
    expect(learnedMtu("viasvc", SVC_IP)).toBe("");
    expect(tool(c.pod("viasvc").ns, "tcp-bulk", SVC_IP, 80, BYTES), c.logs()).toEqual({ ok: true, received: BYTES });
    expect(routerUnreachables()).toBeGreaterThan(before);
    // The pod's stack matched the error to its connection to the service address, not the backend's.
    expect(learnedMtu("viasvc", SVC_IP)).toBe(String(SMALL_MTU));
    expect(learnedMtu("viasvc", FAR_IP)).toBe("");
  }, 30_000);
});
