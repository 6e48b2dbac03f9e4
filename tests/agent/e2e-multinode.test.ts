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
import { eventually, tool, toolAsync } from "./e2e-helpers.ts";
import { MultiNodeCluster } from "./multinode-harness.ts";
import { CLUSTER_IP, drops as scenarioDrops, hasPython, ping as podPing, populate } from "./multinode-scenario.ts";

const suite = kernelSuite("agent-e2e-multinode", ["root", "libbpf", "bpffs", "iproute2"]);
const c = new MultiNodeCluster({ nodes: 3, routingMode: "native" });
const ip = (pod: string) => c.pod(pod).ip;
const ns = (pod: string) => c.pod(pod).ns;

const drops = (i: number) => scenarioDrops(c, i);

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
    for (const s of ["server", "server3"]) {
      expect(tool(ns("client"), "tcp", ip(s), 8080), c.logs()).toEqual({ ok: true, reply: s });
      expect(tool(ns("client"), "udp", ip(s), 5353)).toEqual({ ok: true, reply: s });
    }
    // other is allowed out by its egress policy, but the server's node refuses its identity.
    expect(tool(ns("other"), "tcp", ip("server"), 8080).ok).toBe(false);
    expect(tool(ns("other"), "udp", ip("server"), 5353).ok).toBe(false);
    expect(drops(2)).toMatch(/ciliate_drop_count_total\{reason="POLICY_DENIED",direction="INGRESS"\} [1-9]/);
    // The sender's node let it through (egress allowed), so the drop is the receiving node's verdict.
    expect(drops(1)).not.toMatch(/POLICY_DENIED/);
  }, 60_000);

  it("denies by egress policy at the sending node: other (node-1) → stranger (node-3)", () => {
    expect(tool(ns("other"), "tcp", ip("stranger"), 8080).ok).toBe(false);
    expect(drops(1)).toMatch(/ciliate_drop_count_total\{reason="POLICY_DENIED",direction="EGRESS"\} [1-9]/);
    // Without an ingress policy on stranger, client reaches it across nodes.
    expect(tool(ns("client"), "tcp", ip("stranger"), 8080)).toEqual({ ok: true, reply: "stranger" });
  }, 30_000);

  it.skipIf(!hasPython)("ICMP echo across nodes: client → server answered, other → server dropped", () => {
    const ping = (from: string, host: string) => podPing(ns(from), host);
    expect(ping("client", ip("server"))).toEqual({ sent: 2, received: 2 });
    expect(ping("client", ip("server3"))).toEqual({ sent: 2, received: 2 });
    expect(ping("other", ip("server"))).toEqual({ sent: 2, received: 0 });
  }, 30_000);

  it("balances a ClusterIP over backends on the two other nodes, replies reverse-NATed; other stays denied", () => {
    const r = tool(ns("client"), "loop", CLUSTER_IP, 80, 3000, 20) as { ok: number; fail: number; replies: Record<string, number> };
    expect(r.fail, JSON.stringify(r)).toBe(0);
    expect(Object.keys(r.replies).sort()).toEqual(["server", "server3"]);
    expect(tool(ns("other"), "tcp", CLUSTER_IP, 80).ok).toBe(false);
  }, 30_000);

  it("keeps connections across nodes while the server's node agent restarts", async () => {
    const held = [toolAsync(ns("client"), "hold", ip("server"), 8080, 5000), toolAsync(ns("client"), "hold", CLUSTER_IP, 80, 5000)];
    await new Promise((r) => setTimeout(r, 700));
    await c.stopAgent(2);
    await new Promise((r) => setTimeout(r, 800));
    await c.startAgent(2);
    for (const h of await Promise.all(held)) {
      expect(h.error, JSON.stringify(h)).toBeNull();
      expect(h.recv).toBe(h.sent);
      expect(h.sent as number).toBeGreaterThan(30);
    }
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
