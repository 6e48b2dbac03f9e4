// Node identities and fromNodes/toNodes, each test named after the upstream behaviour it mirrors: remote
// nodes' identities from their labels with enable-node-selector-labels (Config nodeSelectorLabels), the
// selector Cilium builds for fromNodes/toNodes, the ipcache the agent writes for node addresses, and the
// simulator agreeing with it. The scenario scenarios/node-selector checks the same end to end.
import { readFileSync } from "node:fs";
import { describe, expect, it } from "vitest";
import { StableIdentities } from "../../agent/identities.ts";
import { ID_HOST, ID_KUBE_APISERVER, ID_REMOTE_NODE } from "../../host/constants.gen.ts";
import { ipcacheKey } from "../../host/ipcache.ts";
import { REMOTE_NODE_IDENTITY_SCOPE, isRemoteNodeIdentity } from "../../host/identity-scopes.ts";
import { wasmMaglevBuilder } from "../../host/wasm-core.ts";
import { buildCluster } from "../../node/cluster.ts";
import { desiredMaps, positionalNumbering } from "../../node/desired.ts";
import { buildLbModel } from "../../node/services.ts";
import { buildRules, explainFlow, nodeIdentityOn, policyLookup, type CompiledPolicy } from "../../policy/index.ts";
import { parseManifests } from "../../policy/manifest-loader.ts";
import { compileClusterPolicy } from "../../sim/policy.ts";

const node = (name: string, ip: string, labels: Record<string, string>) =>
  `apiVersion: v1\nkind: Node\nmetadata: {name: ${name}, labels: ${JSON.stringify(labels)}}\nstatus: {addresses: [{type: InternalIP, address: ${ip}}]}`;
const config = (on: boolean) => `apiVersion: ciliate.dev/v1alpha1\nkind: Config\nmetadata: {name: c}\nspec: {nodeSelectorLabels: ${on}}`;
const NODES = [
  node("cp-1", "192.168.56.31", { "node-role.kubernetes.io/control-plane": "" }),
  node("worker-1", "192.168.56.32", { pool: "general" }),
  node("worker-2", "192.168.56.33", { pool: "general" }),
  node("worker-3", "192.168.56.34", { pool: "gpu" }),
];
const POD = `apiVersion: v1\nkind: Pod\nmetadata: {name: db, namespace: prod, labels: {app: db}}\nspec: {nodeName: worker-1, containers: [{name: c}]}`;
const cnp = (spec: string) => `apiVersion: cilium.io/v2\nkind: CiliumNetworkPolicy\nmetadata: {name: p, namespace: prod}\nspec:\n${spec}`;

function cluster(on: boolean, ...docs: string[]) {
  const l = parseManifests([config(on), ...NODES, POD, ...docs].join("\n---\n"), "nodes.yaml");
  if (l.errors.length) throw new Error(l.errors.map((e) => e.message).join("\n"));
  const c = buildCluster(l.objects);
  return { c, policy: compileClusterPolicy(c) };
}

/** The ingress verdict at prod/db for a remote identity on TCP/5432. */
function ingress(policy: CompiledPolicy, identity: number): boolean {
  return policyLookup(policy.endpoints.get("prod/db")!.entries, "ingress", identity, 6, 5432).verdict === "allowed";
}

const FROM_CP = cnp("  endpointSelector: {matchLabels: {app: db}}\n  ingress: [{fromNodes: [{matchLabels: {node-role.kubernetes.io/control-plane: ''}}]}]");

describe("node identities (pkg/identity, pkg/node/manager nodeIdentityLabels)", () => {
  it("without enable-node-selector-labels every remote node is the reserved remote-node identity 6, the local node host (1)", () => {
    const { policy } = cluster(false);
    expect(policy.identities.nodeIdentity.size).toBe(0);
    expect(nodeIdentityOn(policy.identities, "worker-1", "cp-1")).toBe(ID_REMOTE_NODE);
    expect(nodeIdentityOn(policy.identities, "worker-1", "worker-1")).toBe(ID_HOST);
  });

  it("with enable-node-selector-labels remote nodes get IdentityScopeRemoteNode identities, one per distinct label set", () => {
    const { policy } = cluster(true);
    const ids = policy.identities.nodeIdentity;
    expect([...ids.keys()].sort()).toEqual(["cp-1", "worker-1", "worker-2", "worker-3"]);
    for (const id of ids.values()) {
      expect(id & 0xff000000).toBe(REMOTE_NODE_IDENTITY_SCOPE);
      expect(isRemoteNodeIdentity(id)).toBe(true);
    }
    expect(ids.get("worker-1")).toBe(ids.get("worker-2")); // same labels, same identity
    expect(new Set(ids.values()).size).toBe(3);
    const labels = policy.identities.byId.get(ids.get("cp-1")!)!.labels.map((l) => `${l.source}:${l.key}=${l.value}`);
    expect(labels).toEqual(["k8s:io.cilium.k8s.policy.cluster=default", "node:node-role.kubernetes.io/control-plane=", "reserved:remote-node="]);
    // The local node stays the host identity whatever its labels.
    expect(nodeIdentityOn(policy.identities, "cp-1", "cp-1")).toBe(ID_HOST);
  });

  it("numbering is deterministic: the same nodes in another order get the same numbers", () => {
    const a = cluster(true).policy.identities.nodeIdentity;
    const l = parseManifests([config(true), ...[...NODES].reverse(), POD].join("\n---\n"), "n.yaml");
    const b = compileClusterPolicy(buildCluster(l.objects)).identities.nodeIdentity;
    expect(Object.fromEntries([...b].sort())).toEqual(Object.fromEntries([...a].sort()));
  });

  it("the agent's stable numbering keeps the remote-node scope (IdentityScopeRemoteNode), never the CIDR scope", () => {
    const { policy } = cluster(true);
    const map = new StableIdentities().mapping(policy);
    for (const id of policy.identities.nodeIdentity.values()) expect(map(id) & 0xff000000).toBe(REMOTE_NODE_IDENTITY_SCOPE);
  });
});

describe("fromNodes/toNodes (pkg/k8s/apis/cilium.io/utils parseToCiliumIngressCommonRule, pkg/policy/api rule_validation.go)", () => {
  it('ErrFromToNodesRequiresNodeSelectorOption: without the option the policy is refused with Cilium\'s message', () => {
    const l = parseManifests(FROM_CP, "p.yaml");
    const r = buildRules(l.objects, "default");
    expect(r.refused).toEqual(["CiliumNetworkPolicy prod/p"]);
    expect(r.problems.map((p) => p.message).join("\n")).toMatch(/FromNodes\/ToNodes rules can only be applied when the "enable-node-selector-labels" flag is set/);
    expect(r.problems[0]!.hint).toMatch(/nodeSelectorLabels: true/);
    // The public example of Cilium's docs behaves the same.
    const corpus = parseManifests(readFileSync(new URL("./corpus/cilium/l3_entities_customnodes.yaml", import.meta.url), "utf8"), "c.yaml");
    expect(buildRules(corpus.objects).refused).toHaveLength(1);
    expect(buildRules(corpus.objects, "default", { nodeSelectorLabels: true }).applied).toHaveLength(1);
  });

  it("fromNodes selects remote nodes by their labels (unprefixed keys match the node: source)", () => {
    const { policy } = cluster(true, FROM_CP);
    const ids = policy.identities.nodeIdentity;
    expect(ingress(policy, ids.get("cp-1")!)).toBe(true);
    expect(ingress(policy, ids.get("worker-2")!)).toBe(false);
    expect(ingress(policy, ids.get("worker-3")!)).toBe(false);
    expect(ingress(policy, ID_REMOTE_NODE)).toBe(false);
  });

  it("a node: prefixed key selects the same nodes; a key of another source (k8s:) does not", () => {
    const sel = (k: string) => cluster(true, cnp(`  endpointSelector: {matchLabels: {app: db}}\n  ingress: [{fromNodes: [{matchLabels: {${k}: gpu}}]}]`)).policy;
    const p1 = sel("node:pool");
    expect(ingress(p1, p1.identities.nodeIdentity.get("worker-3")!)).toBe(true);
    const p2 = sel("k8s:pool");
    expect(ingress(p2, p2.identities.nodeIdentity.get("worker-3")!)).toBe(false);
  });

  it("fromNodes adds reserved:remote-node: an empty node selector selects every remote node, never the local host", () => {
    const { policy } = cluster(true, cnp("  endpointSelector: {matchLabels: {app: db}}\n  ingress: [{fromNodes: [{}]}]\n  enableDefaultDeny: {ingress: true}"));
    const entries = policy.endpoints.get("prod/db")!.entries.filter((e) => !e.provenance.some((p) => p.kind === "derived"));
    expect(entries.map((e) => e.key.identity).sort()).toEqual([...new Set(policy.identities.nodeIdentity.values())].sort());
  });

  it("addClusterFilterByDefault: a node selector is pinned to the policy's cluster unless it names one", () => {
    const other = cluster(true, cnp("  endpointSelector: {matchLabels: {app: db}}\n  ingress: [{fromNodes: [{matchLabels: {io.cilium.k8s.policy.cluster: elsewhere}}]}]")).policy;
    expect(ingress(other, other.identities.nodeIdentity.get("cp-1")!)).toBe(false);
  });

  it("explainFlow (the policy API) sees a node address as that node's remote-node identity", () => {
    const { policy } = cluster(true, FROM_CP);
    expect(explainFlow(policy, { from: { ip: "192.168.56.31" }, to: { pod: "prod/db" }, protocol: "TCP", port: 5432 }).verdict).toBe("allowed");
    expect(explainFlow(policy, { from: { ip: "192.168.56.33" }, to: { pod: "prod/db" }, protocol: "TCP", port: 5432 }).verdict).toBe("denied");
  });

  it("toNodes selects the destination node's identity at egress", () => {
    const { policy } = cluster(
      true,
      cnp("  endpointSelector: {matchLabels: {app: db}}\n  egress: [{toNodes: [{matchLabels: {pool: gpu}}], toPorts: [{ports: [{port: '443', protocol: TCP}]}]}]"),
    );
    const entries = policy.endpoints.get("prod/db")!.entries;
    const ids = policy.identities.nodeIdentity;
    expect(policyLookup(entries, "egress", ids.get("worker-3")!, 6, 443).verdict).toBe("allowed");
    expect(policyLookup(entries, "egress", ids.get("cp-1")!, 6, 443).verdict).toBe("denied");
    expect(policyLookup(entries, "egress", ids.get("worker-3")!, 6, 80).verdict).toBe("denied");
  });

  it("fromNodes cannot be combined with another L3 peer in one element (Combining FromNodes and FromEndpoints is not supported yet)", () => {
    const l = parseManifests(cnp("  endpointSelector: {}\n  ingress: [{fromEndpoints: [{}], fromNodes: [{}]}]"), "p.yaml");
    expect(buildRules(l.objects, "default", { nodeSelectorLabels: true }).problems.map((p) => p.message).join("\n")).toMatch(/Combining FromEndpoints and FromNodes is not supported yet/);
  });
});

describe("entities keep their meaning with node identities (pkg/policy/api/entity.go)", () => {
  it("fromEntities: [remote-node] selects the reserved remote-node identities and every remote-node-scoped one", () => {
    for (const on of [false, true]) {
      const { policy } = cluster(on, cnp("  endpointSelector: {matchLabels: {app: db}}\n  ingress: [{fromEntities: [remote-node]}]"));
      expect(ingress(policy, ID_REMOTE_NODE)).toBe(true);
      expect(ingress(policy, ID_KUBE_APISERVER)).toBe(true);
      for (const id of policy.identities.nodeIdentity.values()) expect(ingress(policy, id)).toBe(true);
    }
  });

  it("fromEntities: [host] selects only the local host (1), not remote nodes", () => {
    const { policy } = cluster(true, cnp("  endpointSelector: {matchLabels: {app: db}}\n  ingress: [{fromEntities: [host]}]"));
    expect(ingress(policy, ID_HOST)).toBe(true);
    for (const id of policy.identities.nodeIdentity.values()) expect(ingress(policy, id)).toBe(false);
  });

  it("fromEntities: [cluster] includes remote nodes' identities (they carry the cluster label)", () => {
    const { policy } = cluster(true, cnp("  endpointSelector: {matchLabels: {app: db}}\n  ingress: [{fromEntities: [cluster]}]"));
    for (const id of policy.identities.nodeIdentity.values()) expect(ingress(policy, id)).toBe(true);
  });
});

describe("the ipcache the agent writes and the simulator reads (node/desired.ts)", () => {
  it("node addresses map to host on their own node and to the node's identity elsewhere; the simulator agrees", async () => {
    const { Simulation } = await import("../../sim/simulator.ts");
    for (const on of [false, true]) {
      const { c, policy } = cluster(on);
      const lb = buildLbModel(c);
      const sim = await Simulation.create(c, policy, { engine: "js" });
      for (const viewer of c.nodes) {
        const d = desiredMaps(c, policy, lb, viewer.name, positionalNumbering(c, viewer.name, lb), wasmMaglevBuilder);
        for (const n of c.nodes) {
          const want = viewer.name === n.name ? ID_HOST : on ? policy.identities.nodeIdentity.get(n.name)! : ID_REMOTE_NODE;
          const k = JSON.stringify(ipcacheKey(n.ip));
          const written = d.Ipcache.filter((e) => JSON.stringify(e.key) === k).map((e) => e.value.secIdentity);
          expect(written).toEqual([want]);
          expect(sim.identityOfIp(n.ip, viewer.name)).toBe(want);
        }
      }
    }
  });
});
