/*
 * Native routing without a kernel: which remote nodes get a route (agent/routing.ts), that two agents
 * number identities alike whatever order they met the label sets in (agent/identities.ts, the multi-node
 * requirement), how a hash collision is resolved and reported, and `--routing-mode` checking in the CLI.
 */
import { execFileSync } from "node:child_process";
import { describe, expect, it } from "vitest";
import { computeDesired, type LocalEndpoint, type Numbering } from "../../agent/desired.ts";
import { labelHashIdentity, MAX_CLUSTER_IDENTITY, MIN_CLUSTER_IDENTITY, StableIdentities, StableNumbers } from "../../agent/identities.ts";
import { remoteNodeRoutes, tunnelNodeRoutes } from "../../agent/routing.ts";
import { routeTarget } from "../../datapath/node-routes.ts";
import { parseManifestText } from "../../sim/manifests.ts";
import { BIN } from "./e2e-helpers.ts";

const self = { name: "node-1", ip: "192.168.57.11", podCIDR: "10.244.1.0/24" };
const nodeYaml = (name: string, cidr?: string, ip?: string) =>
  `apiVersion: v1\nkind: Node\nmetadata: {name: ${name}}\n${cidr ? `spec: {podCIDR: ${JSON.stringify(cidr)}}\n` : ""}${ip ? `status: {addresses: [{type: InternalIP, address: ${ip}}]}\n` : ""}---\n`;
const objects = (yaml: string) => parseManifestText(yaml, "nodes.yaml");

describe("tunnelNodeRoutes", () => {
  it("routes every other node's IPv4 pod CIDR through the tunnel device, from the node's address at the pods' MTU; none for IPv6", () => {
    const dual = { ...self, podCIDRv6: "fd00:10:244:1::/64", ip6: "fd00:57::11" };
    const yaml = nodeYaml("node-2", "10.244.2.0/24", "192.168.57.12") + nodeYaml("node-4", undefined, "192.168.57.14");
    const r = tunnelNodeRoutes(objects(yaml), dual, "ciliate_vxlan", 1450);
    expect(r.routes).toEqual([{ cidr: "10.244.2.0/24", via: "", dev: "ciliate_vxlan", src: "192.168.57.11", mtu: 1450, node: "node-2" }]);
    // The same checks as native routing, and no IPv6 complaints (tunnel mode installs no IPv6 route).
    expect(r.problems).toEqual(["node node-4: no route, spec.podCIDR is missing"]);
    expect(routeTarget(r.routes[0]!)).toBe("dev ciliate_vxlan src 192.168.57.11 mtu 1450");
    expect(routeTarget({ cidr: "10.244.2.0/24", via: "192.168.57.12", node: "node-2" })).toBe("192.168.57.12");
  });
});

describe("remoteNodeRoutes", () => {
  it("routes every other declared node's pod CIDR via its InternalIP, never this node's own", () => {
    const r = remoteNodeRoutes(objects(nodeYaml("node-1", "10.244.1.0/24", "192.168.57.11") + nodeYaml("node-3", "10.244.3.0/24", "192.168.57.13") + nodeYaml("node-2", "10.244.2.0/24", "192.168.57.12")), self);
    expect(r).toEqual({
      routes: [
        { cidr: "10.244.2.0/24", via: "192.168.57.12", node: "node-2" },
        { cidr: "10.244.3.0/24", via: "192.168.57.13", node: "node-3" },
      ],
      problems: [],
    });
  });

  it("gives no route, with a reason, to a node missing a pod CIDR or address, or clashing with another", () => {
    const r = remoteNodeRoutes(
      objects(
        nodeYaml("a-nocidr", undefined, "192.168.57.20") +
          nodeYaml("b-noip", "10.244.5.0/24") +
          nodeYaml("c-mine", "10.244.1.128/25", "192.168.57.21") +
          nodeYaml("d-selfip", "10.244.6.0/24", "192.168.57.11") +
          nodeYaml("e-ok", "10.244.7.0/24", "192.168.57.22") +
          nodeYaml("f-overlap", "10.244.0.0/16", "192.168.57.23"),
      ),
      self,
    );
    expect(r.routes).toEqual([{ cidr: "10.244.7.0/24", via: "192.168.57.22", node: "e-ok" }]);
    expect(r.problems).toEqual([
      "node a-nocidr: no route, spec.podCIDR is missing",
      "node b-noip: no route, status.addresses has no IPv4 InternalIP",
      "node c-mine: no route, its pod CIDR 10.244.1.128/25 overlaps this node's 10.244.1.0/24",
      "node d-selfip: no route, its InternalIP 192.168.57.11 is this node's",
      "node f-overlap: no route, its pod CIDR 10.244.0.0/16 overlaps this node's 10.244.1.0/24",
    ]);
  });
});

const pod = (name: string, app: string, nodeName?: string, ip?: string) =>
  `apiVersion: v1\nkind: Pod\nmetadata: {name: ${name}, namespace: default, labels: {app: ${app}}}\nspec: {${nodeName ? `nodeName: ${nodeName}, ` : ""}containers: [{name: c, image: x}]}\n${ip ? `status: {podIP: ${ip}}\n` : ""}---\n`;
const fresh = (): Numbering => ({ identities: new StableIdentities(), backends: new StableNumbers(1, 0xffffffff), revNat: new StableNumbers(1, 0xffff) });
const nodes = nodeYaml("node-1", "10.244.1.0/24", "192.168.57.11") + nodeYaml("node-2", "10.244.2.0/24", "192.168.57.12");

describe("identities across nodes", () => {
  it("two agents that met the label sets in different orders give every pod the same identity", () => {
    const n1 = fresh();
    const n2 = fresh();
    const eps1: LocalEndpoint[] = [{ epId: 1, pod: "default/a", ip: "10.244.1.2", ifindex: 10 }];
    const eps2: LocalEndpoint[] = [{ epId: 1, pod: "default/b", ip: "10.244.2.2", ifindex: 10 }];
    const n2Node = { name: "node-2", ip: "192.168.57.12", podCIDR: "10.244.2.0/24" };
    // node-1 sees a alone first, node-2 sees b alone first; then both see both (and c, on a third node).
    computeDesired(objects(nodes + pod("a", "alpha", "node-1")), self, eps1, n1);
    computeDesired(objects(nodes + pod("b", "beta", "node-2")), n2Node, eps2, n2);
    const all = nodes + pod("a", "alpha", "node-1", "10.244.1.2") + pod("b", "beta", "node-2", "10.244.2.2") + pod("c", "gamma", "node-3", "10.244.3.3");
    const d1 = computeDesired(objects(all), self, eps1, n1);
    const d2 = computeDesired(objects(all), n2Node, eps2, n2);
    expect([...d2.podIdentity.keys()].sort()).toEqual(["default/a", "default/b", "default/c"]);
    for (const p of ["default/a", "default/b", "default/c"]) {
      expect(d1.podIdentity.get(p)).toBe(d2.podIdentity.get(p));
      expect(d1.podIdentity.get(p)).toBeGreaterThanOrEqual(MIN_CLUSTER_IDENTITY);
      expect(d1.podIdentity.get(p)).toBeLessThanOrEqual(MAX_CLUSTER_IDENTITY);
    }
    expect(new Set(d1.podIdentity.values()).size).toBe(3);
    // The ipcache entries of the two nodes agree too, except the tunnel endpoint (set for remote pods only).
    expect(d1.maps.Ipcache.size).toBe(d2.maps.Ipcache.size);
  });

  it("a collision probes to the next free number, is reported, and keeps the number already held", () => {
    const key = "cluster:k8s:app=x";
    const taken = labelHashIdentity(key);
    const ids = new StableIdentities({ byLabels: { "cluster:held-before": taken } });
    const policy = { identities: { all: [{ id: 300, labels: [{ source: "k8s", key: "app", value: "x" }] }] } } as unknown as Parameters<StableIdentities["mapping"]>[0];
    const map = ids.mapping(policy);
    expect(map(300)).toBe(taken === MAX_CLUSTER_IDENTITY ? MIN_CLUSTER_IDENTITY : taken + 1);
    expect(ids.collisions).toEqual([{ key: ids.collisions[0]!.key, holder: "cluster:held-before", id: map(300) }]);
    expect(ids.state().byLabels["cluster:held-before"]).toBe(taken);
  });
});

describe("ciliate agent --routing-mode", () => {
  const run = (mode: string, extra: string[] = []) => {
    try {
      execFileSync(process.execPath, [BIN, "agent", "--routing-mode", mode, "--node-ip", "192.168.57.11", "--pod-cidr", "10.244.1.0/24", ...extra], { encoding: "utf8", stdio: ["ignore", "pipe", "pipe"], timeout: 30_000 });
      return { code: 0, stderr: "" };
    } catch (e) {
      const err = e as { status: number; stderr: string };
      return { code: err.status, stderr: err.stderr };
    }
  };

  // A start that gets past the flags would program this machine's own namespace: only refusals run here
  // (tunnel mode itself is started in namespaces by e2e-multinode-tunnel.test.ts).
  it("refuses an unknown tunnel protocol and an unknown mode in one line", () => {
    const t = run("tunnel", ["--tunnel-protocol", "gre"]);
    expect(t.code).toBe(2);
    expect(t.stderr).toMatch(/--tunnel-protocol <protocol>' argument 'gre' is invalid/);
    expect(t.stderr).not.toMatch(/\n\s+at /); // no stack trace
    const u = run("bgp");
    expect(u.code).toBe(2);
    expect(u.stderr).toMatch(/invalid --routing-mode "bgp"/);
  });

  it("accepts tunnel as a mode, then refuses a tunnel without encapsulation (--tunnel-protocol disabled is the simulator's)", () => {
    const n = run("tunnel", ["--tunnel-protocol", "disabled"]);
    expect(n.code).toBe(2);
    expect(n.stderr).toMatch(/invalid --tunnel-protocol "disabled" for --routing-mode tunnel/);
    expect(n.stderr).not.toMatch(/not supported/);
    expect(n.stderr.trim().split("\n")).toHaveLength(1);
  });
});
