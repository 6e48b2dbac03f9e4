/*
 * The host firewall end to end (issue #13 item 4): three nodes in native routing, each running
 * `ciliate agent --enable-host-firewall --device eth0` (tests/agent/multinode-harness.ts), and an "outside"
 * host on the same underlay. A CiliumClusterwideNetworkPolicy with a nodeSelector guards node-1 only:
 *   ingress  TCP 8080 from node-2 (fromNodes, by its label: Config nodeSelectorLabels) and from pods
 *            app=client (fromEndpoints; a remote pod's identity comes from node-1's ipcache, by its address);
 *            nothing else — not node-3, not another pod, not the outside, not another port;
 *   egress   anything to the cluster, and TCP 9000 to the outside; not TCP 9001 to the outside.
 * node-2 and node-3 are selected by no host policy and stay open. The agents' verdicts are asserted with real
 * connections from the other nodes' hosts, from pods on other nodes, from the outside and from node-1
 * itself (replies of its own connections pass its default-deny ingress), and `ciliate check` on the same
 * manifests must give every case the verdict the nodes gave (the simulator's promise).
 * Kernel suite: fails in CI when it cannot run, skips elsewhere.
 */
import { readdirSync, readFileSync } from "node:fs";
import { join } from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { kernelSuite, tcQuery } from "../../datapath/index.ts";
import { eventually, expectCheckAgrees, tool } from "./e2e-helpers.ts";
import { MultiNodeCluster } from "./multinode-harness.ts";
import { drops } from "./multinode-scenario.ts";

const suite = kernelSuite("agent-e2e-host-firewall", ["root", "libbpf", "bpffs", "iproute2"]);
const OUTSIDE_IP = "192.168.57.100";

const CONFIG = `apiVersion: ciliate.dev/v1alpha1
kind: Config
metadata: {name: cluster}
spec: {enableHostFirewall: true, nodeSelectorLabels: true}
`;

const HOST_POLICY = `apiVersion: cilium.io/v2
kind: CiliumClusterwideNetworkPolicy
metadata: {name: guard-node-1}
spec:
  nodeSelector: {matchLabels: {guard: "yes"}}
  ingress:
  - fromNodes: [{matchLabels: {role: peer}}]
    toPorts: [{ports: [{port: "8080", protocol: TCP}]}]
  - fromEndpoints: [{matchLabels: {app: client}}]
    toPorts: [{ports: [{port: "8080", protocol: TCP}]}]
  egress:
  - toEntities: [cluster]
  - toCIDR: [${OUTSIDE_IP}/32]
    toPorts: [{ports: [{port: "9000", protocol: TCP}]}]
`;

/** The nodes with labels: node-1 guarded, node-2 the peer node-1 lets in, node-3 neither. */
function nodesYaml(c: MultiNodeCluster): string {
  const labels = ["{guard: \"yes\"}", "{role: peer}", "{}"];
  return c.nodes.map((n, i) => `apiVersion: v1
kind: Node
metadata: {name: ${n.name}, labels: ${labels[i]}}
spec: {podCIDR: ${n.podCIDR}}
status: {addresses: [{type: InternalIP, address: ${n.ip}}]}
`).join("---\n");
}

let outside = "";
const c = new MultiNodeCluster({
  nodes: 3,
  routingMode: "native",
  prefix: "chf",
  agentArgs: ["--enable-host-firewall"],
  beforeAgents: async (cl) => {
    cl.writeManifest("nodes.yaml", nodesYaml(cl));
    cl.writeManifest("config.yaml", CONFIG);
    cl.writeManifest("host-policy.yaml", HOST_POLICY);
    outside = cl.addOutside("out", OUTSIDE_IP);
  },
});
const nodeNs = (i: number) => c.node(i).ns;
const nodeIp = (i: number) => c.node(i).ip;
/** One TCP connection from a namespace: the server's answer, or "denied (<error>)". */
const tcp = (ns: string, host: string, port: number) => {
  const r = tool(ns, "tcp", host, port);
  return r.ok ? String(r.reply) : `denied (${String(r.error)})`;
};
/** Node i's POLICY_DENIED drops, all directions. */
function policyDrops(i: number): number {
  return c.metrics(i).split("\n").filter((l) => l.startsWith('ciliate_drop_count_total{reason="POLICY_DENIED"')).reduce((n, l) => n + Number(l.split(" ").pop()), 0);
}
/** Every case the nodes decided, in order, for `ciliate check`. */
const verdicts = new Map<string, "allowed" | "denied">();
const expectations: string[] = [];
function record(name: string, from: string, to: string, port: number, verdict: "allowed" | "denied"): void {
  verdicts.set(name, verdict);
  expectations.push(`apiVersion: ciliate.dev/v1alpha1
kind: Expectation
metadata: {name: ${name}, namespace: default}
spec: {from: ${from}, to: ${to}, port: ${port}, protocol: TCP, verdict: ${verdict}}
`);
}

describe.skipIf(suite.skip)("host firewall on three nodes: a nodeSelector policy guards node-1 at its device", () => {
  beforeAll(async () => {
    await c.setup();
    c.addPod(2, "client", { app: "client" });
    c.addPod(3, "other", { app: "other" });
    await c.converged();
    // Servers on every node's host (TCP 8080, 9000) and the outside (TCP 9000, 9001), listening before use.
    for (let i = 1; i <= 3; i++) c.background(nodeNs(i), "serve", `node-${i}`, 240_000, "8080,9000");
    c.background(outside, "serve", "outside", 240_000, "9000,9001");
    for (const [ns, port] of [[nodeNs(1), 8080], [nodeNs(2), 8080], [nodeNs(3), 8080], [outside, 9001]] as const)
      await eventually(() => tool(ns, "tcp", "127.0.0.1", port).ok === true, 30_000);
  }, 300_000);

  afterAll(() => c.cleanup(), 60_000);

  it("every agent attaches to_network at its device's egress for the host firewall and says so", () => {
    for (let i = 1; i <= 3; i++) {
      expect(c.node(i).log).toContain("host firewall: host policies enforced at eth0");
      expect(tcQuery({ ifname: "eth0", netns: nodeNs(i), direction: "egress" })).toBeGreaterThan(0);
    }
  });

  it("node-1 lets node-2's host and a client pod (on node-2) in on TCP 8080", async () => {
    // The first allowed answer also shows that node-1's host policy is programmed.
    await eventually(() => tcp(nodeNs(2), nodeIp(1), 8080) === "node-1", 30_000, () => c.logs());
    record("node-2-host-to-node-1-8080", `{ip: ${nodeIp(2)}}`, `{ip: ${nodeIp(1)}}`, 8080, "allowed");
    // The pod's packet leaves node-2 with the pod's address (no masquerading inside the cluster); node-1
    // finds the pod's identity in its ipcache.
    await eventually(() => tcp(c.pod("client").ns, nodeIp(1), 8080) === "node-1", 30_000, () => c.logs());
    record("client-pod-to-node-1-8080", "{pod: default/client}", `{ip: ${nodeIp(1)}}`, 8080, "allowed");
  }, 90_000);

  it("node-1 refuses node-3's host, another pod, the outside, and node-2 on another port", () => {
    const before = policyDrops(1);
    expect(tcp(nodeNs(3), nodeIp(1), 8080)).toMatch(/^denied/);
    record("node-3-host-to-node-1-8080", `{ip: ${nodeIp(3)}}`, `{ip: ${nodeIp(1)}}`, 8080, "denied");
    expect(tcp(c.pod("other").ns, nodeIp(1), 8080)).toMatch(/^denied/);
    record("other-pod-to-node-1-8080", "{pod: default/other}", `{ip: ${nodeIp(1)}}`, 8080, "denied");
    expect(tcp(outside, nodeIp(1), 8080)).toMatch(/^denied/);
    record("outside-to-node-1-8080", `{ip: ${OUTSIDE_IP}}`, `{ip: ${nodeIp(1)}}`, 8080, "denied");
    expect(tcp(nodeNs(2), nodeIp(1), 9000)).toMatch(/^denied/);
    record("node-2-host-to-node-1-9000", `{ip: ${nodeIp(2)}}`, `{ip: ${nodeIp(1)}}`, 9000, "denied");
    // The drops are node-1's (at from_network, counted under the direction INGRESS as Cilium's host
    // firewall counts them: core/host-firewall.ts H9); each refused SYN is retransmitted, so at least one per case.
    expect(policyDrops(1) - before, drops(c, 1)).toBeGreaterThanOrEqual(4);
    expect(drops(c, 1)).toMatch(/ciliate_drop_count_total\{reason="POLICY_DENIED",direction="INGRESS"\} [1-9]/);
    expect(drops(c, 1)).not.toMatch(/reason="POLICY_DENIED",direction="SERVICE"/);
    expect(policyDrops(2) + policyDrops(3), drops(c, 2) + drops(c, 3)).toBe(0);
  }, 90_000);

  it("the nodes no host policy selects stay open, to everyone", () => {
    expect(tcp(outside, nodeIp(2), 8080)).toBe("node-2");
    record("outside-to-node-2-8080", `{ip: ${OUTSIDE_IP}}`, `{ip: ${nodeIp(2)}}`, 8080, "allowed");
    expect(tcp(nodeNs(3), nodeIp(2), 9000)).toBe("node-2");
    record("node-3-host-to-node-2-9000", `{ip: ${nodeIp(3)}}`, `{ip: ${nodeIp(2)}}`, 9000, "allowed");
    expect(tcp(c.pod("other").ns, nodeIp(2), 8080)).toBe("node-2");
    record("other-pod-to-node-2-8080", "{pod: default/other}", `{ip: ${nodeIp(2)}}`, 8080, "allowed");
  }, 60_000);

  it("node-1's own connections: allowed ones get their replies through its default-deny ingress; a denied egress port never leaves", () => {
    // Nothing lets the outside or node-3 into node-1, yet the replies of node-1's own connections pass.
    expect(tcp(nodeNs(1), OUTSIDE_IP, 9000)).toBe("outside");
    record("node-1-host-to-outside-9000", `{ip: ${nodeIp(1)}}`, `{ip: ${OUTSIDE_IP}}`, 9000, "allowed");
    expect(tcp(nodeNs(1), nodeIp(3), 8080)).toBe("node-3");
    record("node-1-host-to-node-3-8080", `{ip: ${nodeIp(1)}}`, `{ip: ${nodeIp(3)}}`, 8080, "allowed");
    // Egress: the outside only on 9000.
    expect(tcp(nodeNs(1), OUTSIDE_IP, 9001)).toMatch(/^denied/);
    record("node-1-host-to-outside-9001", `{ip: ${nodeIp(1)}}`, `{ip: ${OUTSIDE_IP}}`, 9001, "denied");
    expect(drops(c, 1)).toMatch(/ciliate_drop_count_total\{reason="POLICY_DENIED",direction="EGRESS"\} [1-9]/);
    expect(policyDrops(2) + policyDrops(3), drops(c, 2) + drops(c, 3)).toBe(0);
    // The outside serves 9001: node-2 (no host policy) reaches it.
    expect(tcp(nodeNs(2), OUTSIDE_IP, 9001)).toBe("outside");
    record("node-2-host-to-outside-9001", `{ip: ${nodeIp(2)}}`, `{ip: ${OUTSIDE_IP}}`, 9001, "allowed");
  }, 60_000);

  it("ciliate check on the same manifests gives every case the verdict the nodes gave", () => {
    expect(verdicts.size).toBe(13);
    const files = Object.fromEntries(readdirSync(c.manifests).map((f) => [f, readFileSync(join(c.manifests, f), "utf8")]));
    expectCheckAgrees(c.dir, files, expectations.join("---\n"), verdicts);
  }, 60_000);
});
