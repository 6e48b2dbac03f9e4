// Cluster Mesh in the cluster model (node/cluster.ts CLUSTER_ANNOTATION): another cluster's pods are peers
// keyed cluster/ns/name with that cluster's name in their identity, global services merge the shared
// backends of every cluster (G1) and honour service.cilium.io/affinity with failover (G2).
import { describe, expect, it } from "vitest";
import { buildCluster, CLUSTER_ANNOTATION } from "../../node/cluster.ts";
import { loadFrom } from "../../sim/load.ts";
import { parseManifests, compilePolicy, buildRules, type ManifestObject } from "../../policy/index.ts";

const other = (c: string) => `annotations: {${JSON.stringify(CLUSTER_ANNOTATION)}: ${c}}`;
const base = (affinity: string, remoteReady = true) => `
apiVersion: ciliate.dev/v1alpha1
kind: Config
metadata: {name: c}
spec: {clusterName: east}
---
apiVersion: v1
kind: Pod
metadata: {name: web, namespace: shop, labels: {app: web}}
spec: {nodeName: node-1, containers: [{name: c, image: i}]}
---
apiVersion: v1
kind: Pod
metadata: {name: client, namespace: shop, labels: {app: client}}
spec: {nodeName: node-1, containers: [{name: c, image: i}]}
---
apiVersion: v1
kind: Service
metadata: {name: web, namespace: shop, annotations: {service.cilium.io/global: "true", service.cilium.io/affinity: ${affinity}}}
spec: {selector: {app: web}, ports: [{name: http, port: 80, targetPort: 8080}]}
---
apiVersion: v1
kind: Namespace
metadata: {name: shop, labels: {team: blue}, ${other("west")}}
---
apiVersion: v1
kind: Node
metadata: {name: node-1, ${other("west")}}
spec: {podCIDR: 10.245.1.0/24}
status: {addresses: [{type: InternalIP, address: 192.168.57.11}]}
---
apiVersion: v1
kind: Pod
metadata: {name: web, namespace: shop, labels: {app: web}, ${other("west")}}
spec: {nodeName: node-1, containers: [{name: c, image: i}]}
status: {podIP: 10.245.1.10${remoteReady ? "" : ", conditions: [{type: Ready, status: \"False\"}]"}}
---
apiVersion: v1
kind: Service
metadata: {name: web, namespace: shop, annotations: {service.cilium.io/global: "true", ${CLUSTER_ANNOTATION}: west}}
spec: {selector: {app: web}, ports: [{name: http, port: 80, targetPort: 9090}]}
`;
const objs = (text: string): ManifestObject[] => {
  const r = parseManifests(text, "mesh.yaml");
  if (r.errors.length) throw r.errors[0];
  return r.objects;
};

describe("Cluster Mesh model", () => {
  it("keeps the other cluster's pod apart, with its cluster and namespace labels in its identity", () => {
    const c = buildCluster(objs(base("none")));
    expect(c.pods.map((p) => p.key).sort()).toEqual(["shop/client", "shop/web", "west/shop/web"]);
    const remote = c.pods.find((p) => p.key === "west/shop/web")!;
    expect(remote.node).toBe("west/node-1");
    expect(c.nodes.map((n) => n.name)).toEqual(["node-1", "west/node-1"]);
    const policy = compilePolicy(c.model, buildRules([], c.config.clusterName).rules);
    const id = policy.identities.podIdentity.get("west/shop/web")!;
    const labels = policy.identities.byId.get(id)!.labels.map((l) => `${l.key}=${l.value}`);
    expect(labels).toContain("io.cilium.k8s.policy.cluster=west");
    expect(labels).toContain("io.cilium.k8s.namespace.labels.team=blue");
    expect(policy.identities.podIdentity.get("shop/web")).not.toBe(id);
  });

  it("merges both clusters' backends of a global service (affinity none), on each cluster's target port", () => {
    const svc = buildCluster(objs(base("none"))).services.find((s) => s.key === "shop/web")!;
    expect(svc.global).toEqual({ shared: true, affinity: "none" });
    expect(svc.ports[0]!.backends.map((b) => `${b.ip}:${b.port}${b.cluster ? `@${b.cluster}` : ""}`).sort()).toEqual(["10.244.0.11:8080", "10.245.1.10:9090@west"].sort());
  });

  it("affinity local keeps the local backend, remote the other cluster's; each fails over when its side has none", () => {
    const backends = (aff: string, ready = true) => buildCluster(objs(base(aff, ready))).services.find((s) => s.key === "shop/web")!.ports[0]!.backends.map((b) => b.ip);
    expect(backends("local")).toEqual(["10.244.0.11"]);
    expect(backends("remote")).toEqual(["10.245.1.10"]);
    expect(backends("remote", false)).toEqual(["10.244.0.11"]);
  });

  it("a non-global service never takes the other cluster's pods; a bad annotation is one clear error", () => {
    const text = base("none").replace('service.cilium.io/global: "true", service.cilium.io/affinity: none', 'x: "y"');
    expect(buildCluster(objs(text)).services.find((s) => s.key === "shop/web")!.ports[0]!.backends.map((b) => b.ip)).toEqual(["10.244.0.11"]);
    expect(() => buildCluster(objs(base("nearest")))).toThrow(/service.cilium.io\/affinity.*expected local, remote or none, got "nearest"/);
    expect(() => buildCluster(objs(base("none").replace(`${CLUSTER_ANNOTATION}: west}}\nspec: {selector`, `${CLUSTER_ANNOTATION}: West}}\nspec: {selector`)))).toThrow(/invalid cluster name "West"/);
  });

  it("a single-cluster scenario refuses objects of an undeclared cluster with one line", () => {
    expect(() => loadFrom(objs(base("none")), {})).toThrow(/Namespace shop metadata.annotations.ciliate.dev\/cluster: west is not a cluster of the scenario \(east\); declare each cluster with a Config/);
  });
});
