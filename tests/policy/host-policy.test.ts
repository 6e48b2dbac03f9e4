// Host policies (nodeSelector rules): what is warned about with the host firewall off and on, and how they
// compile into each node's host endpoint (policy/compile.ts hostEndpoints; Cilium pkg/policy/rule.go: a
// node selector selects only the host endpoint, an endpoint selector never does).
import { describe, expect, it } from "vitest";
import { buildCluster } from "../../node/cluster.ts";
import { buildRules } from "../../policy/index.ts";
import { parseManifests } from "../../policy/manifest-loader.ts";
import { compileClusterPolicy } from "../../sim/policy.ts";
import { ID_HOST, ID_REMOTE_NODE, ID_WORLD, IPPROTO_TCP } from "../../host/constants.gen.ts";

const SSH_ONLY = `apiVersion: cilium.io/v2
kind: CiliumClusterwideNetworkPolicy
metadata: {name: ssh}
spec:
  nodeSelector: {matchLabels: {node-access: ssh}}
  ingress: [{fromEntities: [world], toPorts: [{ports: [{port: "22", protocol: TCP}]}]}, {fromEntities: [remote-node]}]
`;
const CLUSTER_OPEN = SSH_ONLY.replace("{fromEntities: [remote-node]}", "{fromEntities: [cluster]}");
const codes = (yaml: string, hostFirewall: boolean) => buildRules(parseManifests(yaml, "p.yaml").objects, "default", { hostFirewall }).warnings.map((w) => w.code);

const CLUSTER = (fw: boolean, policy: string) => `apiVersion: ciliate.dev/v1alpha1
kind: Config
metadata: {name: c}
spec: {enableHostFirewall: ${fw}}
---
apiVersion: v1
kind: Node
metadata: {name: n1, labels: {node-access: ssh}}
spec: {podCIDR: 10.244.1.0/24}
status: {addresses: [{type: InternalIP, address: 192.168.56.41}]}
---
apiVersion: v1
kind: Node
metadata: {name: n2}
spec: {podCIDR: 10.244.2.0/24}
status: {addresses: [{type: InternalIP, address: 192.168.56.42}]}
---
apiVersion: v1
kind: Pod
metadata: {name: p, namespace: default, labels: {node-access: ssh}}
spec: {nodeName: n1, containers: [{name: c, image: x}]}
---
apiVersion: cilium.io/v2
kind: CiliumClusterwideNetworkPolicy
metadata: {name: all-pods}
spec:
  endpointSelector: {}
  ingress: [{fromEntities: [world]}]
---
${policy}`;

describe("host policies", () => {
  it("warn host-policy-not-enforced with the host firewall off; with it on, host-policy-local-pods unless every pod is allowed", () => {
    expect(codes(SSH_ONLY, false)).toEqual(["host-policy-not-enforced"]);
    expect(codes(SSH_ONLY, true)).toEqual(["host-policy-local-pods"]);
    expect(codes(CLUSTER_OPEN, true)).toEqual([]);
    expect(codes(CLUSTER_OPEN.replace("ingress:", "ingressDeny: [{fromEntities: [world], toPorts: [{ports: [{port: \"23\", protocol: TCP}]}]}]\n  ingress:"), true)).toEqual(["host-policy-local-pods"]);
  });

  it("compile into the selected node's host endpoint only; endpoint selectors never select a node, node selectors never a pod", () => {
    const cluster = buildCluster(parseManifests(CLUSTER(true, SSH_ONLY), "c.yaml").objects);
    const policy = compileClusterPolicy(cluster);
    const n1 = policy.hostEndpoints.get("n1")!;
    const n2 = policy.hostEndpoints.get("n2")!;
    expect(n1.identity).toBe(ID_HOST);
    expect(n1.enforced).toEqual({ ingress: true, egress: false });
    expect(n2.enforced).toEqual({ ingress: false, egress: false });
    const ingress = n1.entries.filter((e) => e.key.direction === "ingress");
    expect(ingress.some((e) => e.key.identity === ID_WORLD && e.key.protocol === IPPROTO_TCP && e.key.port === 22 && !e.deny)).toBe(true);
    expect(ingress.some((e) => e.key.identity === ID_REMOTE_NODE && e.key.protocol === 0)).toBe(true);
    expect(ingress.some((e) => e.key.identity === ID_WORLD && e.key.protocol === 0)).toBe(false);
    expect(ingress.flatMap((e) => e.provenance.map((p) => p.name))).toContain("ssh");
    // The pod carries the node's label but is selected by the endpoint selector only (world allowed on any port).
    const pod = policy.endpoints.get("default/p")!;
    expect(pod.entries.some((e) => e.provenance.some((p) => p.name === "ssh"))).toBe(false);
    expect(n1.entries.some((e) => e.provenance.some((p) => p.name === "all-pods"))).toBe(false);
  });
});
