/*
 * End to end over three nodes in native routing (issue #13 item 2): three node namespaces on an underlay
 * bridge, each running its own `ciliate agent --routing-mode native` with its own bpffs pins and state,
 * pods joined by `ciliate cni` on every node (tests/agent/multinode-harness.ts). Checks that every node
 * routes the others' pod CIDRs via their node IPs and holds the same identity for every pod; real TCP, UDP
 * and ICMP between pods on different nodes, allowed and denied by ingress policy at the receiving node on
 * the identity its ipcache gives the sender, and denied by egress policy at the sender; a ClusterIP whose
 * backends are on the two other nodes; an agent restarted while connections across nodes run; a node that
 * leaves the manifests loses its route. Kernel suite: fails in CI when it cannot run, skips elsewhere.
 */
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { kernelSuite } from "../../datapath/index.ts";
import { eventually, tool } from "./e2e-helpers.ts";
import { MultiNodeCluster } from "./multinode-harness.ts";
import { checkClusterIp, checkEgressDeny, checkPing, checkPodToPod, checkRestartUnderLoad, hasPython, populate } from "./multinode-scenario.ts";

const suite = kernelSuite("agent-e2e-multinode", ["root", "libbpf", "bpffs", "iproute2"]);
const c = new MultiNodeCluster({ nodes: 3, routingMode: "native" });
const ip = (pod: string) => c.pod(pod).ip;
const ns = (pod: string) => c.pod(pod).ns;

describe.skipIf(suite.skip)("three nodes in native routing (ciliate agent per node, network namespaces)", () => {
  beforeAll(async () => {
    await c.setup();
    await populate(c);
  }, 240_000);

  afterAll(async () => {
    if (process.env.CILIATE_E2E_LOG) console.log(c.logs());
    await c.cleanup();
  }, 60_000);

  it("routes every remote pod CIDR via its node IP, and every node numbers every pod's identity alike", () => {
    for (const n of c.nodes) {
      const others = Object.fromEntries(c.nodes.filter((o) => o !== n).map((o) => [o.podCIDR, o.ip]));
      expect(c.routes(c.nodes.indexOf(n) + 1)).toEqual(others);
    }
    expect(c.disagreements()).toEqual([]);
    // Same labels, same identity, on different nodes; different labels, different identities.
    expect(c.endpointIdentity(2, ip("server"))).toBe(c.endpointIdentity(3, ip("server3")));
    expect(c.ipcache(1, ip("client"))!.identity).not.toBe(c.ipcache(1, ip("other"))!.identity);
    expect(c.ipcache(1, ip("server"))!.tunnelEndpoint).toBe(c.node(2).ip);
  });

  it("allows client (node-1) → server (node-2) and server3 (node-3) over TCP and UDP; ingress policy denies other", async () => {
    await new Promise((r) => setTimeout(r, 300)); // servers listening
    checkPodToPod(c);
  }, 60_000);

  it("denies by egress policy at the sending node: other (node-1) → stranger (node-3)", () => {
    checkEgressDeny(c);
  }, 30_000);

  it.skipIf(!hasPython)("ICMP echo across nodes: client → server answered, other → server dropped", () => {
    checkPing(c);
  }, 30_000);

  it("balances a ClusterIP over backends on the two other nodes, replies reverse-NATed; other stays denied", () => {
    checkClusterIp(c);
  }, 30_000);

  it("keeps connections across nodes while the server's node agent restarts", async () => {
    await checkRestartUnderLoad(c);
    expect(c.routes(2)).toEqual({ [c.node(1).podCIDR]: c.node(1).ip, [c.node(3).podCIDR]: c.node(3).ip });
    await c.converged();
    expect(tool(ns("client"), "tcp", ip("server"), 8080).ok).toBe(true);
    expect(tool(ns("other"), "tcp", ip("server"), 8080).ok).toBe(false);
  }, 60_000);

  it("a node that leaves the manifests loses its route; its pods are then unreachable", async () => {
    c.writeNodes([1, 2]);
    await eventually(() => !(c.node(3).podCIDR in c.routes(1)), 10_000, () => JSON.stringify(c.routes(1)));
    expect(c.routes(1)).toEqual({ [c.node(2).podCIDR]: c.node(2).ip });
    expect(tool(ns("client"), "tcp", ip("server3"), 8080).ok).toBe(false);
    c.writeNodes();
    await eventually(() => c.routes(1)[c.node(3).podCIDR] === c.node(3).ip, 10_000);
    await eventually(() => tool(ns("client"), "tcp", ip("server3"), 8080).ok === true, 10_000);
  }, 60_000);
});
