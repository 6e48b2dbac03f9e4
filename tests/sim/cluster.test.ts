// The simulator's cluster model (sim/cluster.ts): workload expansion, deterministic IPAM and its pinning
// for whatif, service frontends and backends (EndpointSlices, selectors, terminating, named ports), and
// the bad-input errors users see.
import { describe, expect, it } from "vitest";
import { parseManifestText } from "../../sim/manifests.ts";
import { allocationOf, buildCluster } from "../../node/cluster.ts";
import { SimError } from "../../node/errors.ts";

const doc = (s: string) => parseManifestText(s, "test.yaml");

const BASE = `
apiVersion: v1
kind: Node
metadata: { name: n1 }
spec: { podCIDR: 10.1.0.0/24 }
---
apiVersion: v1
kind: Node
metadata: { name: n2 }
---
apiVersion: apps/v1
kind: Deployment
metadata: { name: web, namespace: shop }
spec:
  replicas: 2
  selector: { matchLabels: { app: web } }
  template:
    metadata: { labels: { app: web } }
    spec:
      nodeName: n2
      containers: [{ name: w, image: x, ports: [{ name: http, containerPort: 8080 }] }]
---
apiVersion: v1
kind: Pod
metadata: { name: old, namespace: shop, labels: { app: web }, deletionTimestamp: "2026-01-01T00:00:00Z" }
spec: { nodeName: n1, containers: [{ name: w, image: x, ports: [{ name: http, containerPort: 8080 }] }] }
---
apiVersion: v1
kind: Service
metadata: { name: web, namespace: shop }
spec:
  type: NodePort
  selector: { app: web }
  sessionAffinity: ClientIP
  ports: [{ port: 80, targetPort: http }]
`;

describe("buildCluster", () => {
  it("expands workloads and allocates addresses deterministically", () => {
    const a = buildCluster(doc(BASE));
    const b = buildCluster(doc(BASE));
    expect(a.pods.map((p) => [p.key, p.ip, p.node])).toEqual(b.pods.map((p) => [p.key, p.ip, p.node]));
    expect(a.pods.map((p) => p.key)).toEqual(["shop/old", "shop/web-0", "shop/web-1"]);
    expect(a.nodes.map((n) => [n.name, n.ip, n.podCIDR])).toEqual([
      ["n1", "192.168.56.11", "10.1.0.0/24"],
      ["n2", "192.168.56.12", "10.244.0.0/24"],
    ]);
    expect(a.pods.find((p) => p.key === "shop/web-0")!.ip).toBe("10.244.0.10");
    const svc = a.services[0]!;
    expect(svc.clusterIP).toBe("10.96.0.10");
    expect(svc.affinityTimeout).toBe(10800);
    expect(svc.ports[0]!.nodePort).toBe(30000);
    expect(svc.ports[0]!.backends.map((x) => [x.ip, x.port, x.state])).toEqual([
      ["10.244.0.10", 8080, "active"],
      ["10.244.0.11", 8080, "active"],
      ["10.1.0.10", 8080, "terminating"],
    ]);
  });

  it("keeps every address when pinned, even when a new pod sorts first", () => {
    const a = buildCluster(doc(BASE));
    const extra = `${BASE}
---
apiVersion: v1
kind: Pod
metadata: { name: aaa, namespace: shop }
spec: { nodeName: n2, containers: [{ name: c, image: x }] }
`;
    const unpinned = buildCluster(doc(extra));
    expect(unpinned.pods.find((p) => p.key === "shop/web-0")!.ip).not.toBe("10.244.0.10");
    const pinned = buildCluster(doc(extra), { pinned: allocationOf(a) });
    for (const p of a.pods) expect(pinned.pods.find((q) => q.key === p.key)!.ip).toBe(p.ip);
    expect(pinned.pods.find((p) => p.key === "shop/aaa")!.ip).toBe("10.244.0.12");
  });

  it("takes backends from EndpointSlices when given", () => {
    const c = buildCluster(
      doc(`
apiVersion: v1
kind: Service
metadata: { name: ext, namespace: default }
spec: { clusterIP: 10.96.5.5, ports: [{ name: https, port: 443 }] }
---
apiVersion: discovery.k8s.io/v1
kind: EndpointSlice
metadata: { name: ext-1, namespace: default, labels: { kubernetes.io/service-name: ext } }
addressType: IPv4
ports: [{ name: https, port: 8443, protocol: TCP }]
endpoints:
  - addresses: [192.0.2.1]
    conditions: { ready: true }
  - addresses: [192.0.2.2]
    conditions: { ready: false, serving: true, terminating: true }
  - addresses: [192.0.2.3]
    conditions: { ready: false }
`),
    );
    expect(c.services[0]!.ports[0]!.backends.map((b) => [b.ip, b.port, b.state])).toEqual([
      ["192.0.2.1", 8443, "active"],
      ["192.0.2.2", 8443, "terminating"],
    ]);
  });

  it("gives hostNetwork pods their node's address", () => {
    const c = buildCluster(doc(`${BASE}
---
apiVersion: v1
kind: Pod
metadata: { name: h, namespace: kube-system }
spec: { nodeName: n1, hostNetwork: true, containers: [{ name: c, image: x }] }
`));
    const h = c.pods.find((p) => p.key === "kube-system/h")!;
    expect([h.ip, h.hostNetwork]).toEqual(["192.168.56.11", true]);
  });

  const bad: [string, string, RegExp][] = [
    ["duplicate pod IPs", "apiVersion: v1\nkind: Pod\nmetadata: {name: a}\nstatus: {podIP: 10.0.0.1}\n---\napiVersion: v1\nkind: Pod\nmetadata: {name: b}\nstatus: {podIP: 10.0.0.1}\n", /test\.yaml: document 1, line \d+: Pod default\/b status\.podIP: .*already used by pod default\/a/],
    ["an undeclared named targetPort", "apiVersion: v1\nkind: Pod\nmetadata: {name: a, labels: {x: y}}\n---\napiVersion: v1\nkind: Service\nmetadata: {name: s}\nspec: {selector: {x: y}, ports: [{port: 80, targetPort: web}]}\n", /Service default\/s spec\.ports\[0\]\.targetPort: targetPort "web"/],
    ["a malformed port", "apiVersion: v1\nkind: Service\nmetadata: {name: s}\nspec: {ports: [{port: 99999}]}\n", /spec\.ports\[0\]\.port: invalid port 99999/],
    ["an unknown node", "apiVersion: v1\nkind: Pod\nmetadata: {name: a}\nspec: {nodeName: nowhere, containers: [{name: c}]}\n", /node nowhere is not declared/],
    ["a Traffic reference to nothing", "apiVersion: ciliate.dev/v1alpha1\nkind: Traffic\nmetadata: {name: t}\nspec: {flows: [{from: {pad: x}, to: {pod: a/b}, port: 80}]}\n", /Traffic default\/t spec\.flows\[0\]\.from\.pad: unknown field "pad" \(did you mean "pod"\?\)/],
  ];
  for (const [what, text, re] of bad)
    it(`refuses ${what} with one line naming file and field`, () => {
      let err: unknown;
      try {
        buildCluster(doc(text));
      } catch (e) {
        err = e;
      }
      expect(err).toBeInstanceOf(SimError);
      expect((err as Error).message).toMatch(re);
      expect((err as Error).message).not.toContain("\n");
    });

  it("refuses invalid YAML with file and line", () => {
    expect(() => doc("a: [\n  b: c\n")).toThrow(/test\.yaml: document 0, line \d+: invalid YAML/);
  });
});
