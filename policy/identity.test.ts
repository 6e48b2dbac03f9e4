import { describe, expect, it } from "vitest";
import { allocateIdentities, identityOfIp, LOCAL_IDENTITY_SCOPE, MIN_CLUSTER_IDENTITY } from "./identity.ts";
import { identityLabels, LabelFilter, labelString } from "./labels.ts";
import type { ClusterModel } from "./types.ts";

const cluster: ClusterModel = {
  clusterName: "c1",
  policyEnforcement: "default",
  namespaces: [{ name: "x", labels: { team: "blue", "kubernetes.io/metadata.name": "x" } }],
  pods: [
    { namespace: "x", name: "b-1", labels: { app: "b", "pod-template-hash": "123" }, containerPorts: [] },
    { namespace: "x", name: "b-2", labels: { app: "b", "pod-template-hash": "456" }, containerPorts: [] },
    { namespace: "x", name: "a", labels: { app: "a" }, containerPorts: [], ips: ["10.244.0.9"] },
    { namespace: "x", name: "h", labels: {}, hostNetwork: true, containerPorts: [] },
  ],
  services: [],
};

describe("labels", () => {
  it("default filter drops pod-template-hash and kubernetes.io keys but keeps namespace labels", () => {
    const ls = identityLabels(cluster.pods[0], cluster.namespaces[0], "c1").map(labelString);
    expect(ls).toEqual([
      "k8s:app=b",
      "k8s:io.cilium.k8s.namespace.labels.kubernetes.io/metadata.name=x",
      "k8s:io.cilium.k8s.namespace.labels.team=blue",
      "k8s:io.cilium.k8s.policy.cluster=c1",
      "k8s:io.cilium.k8s.policy.serviceaccount=default",
      "k8s:io.kubernetes.pod.namespace=x",
    ]);
  });
  it("filter: include beats a shorter exclude; user include switches to allow-list mode", () => {
    const f = new LabelFilter();
    expect(f.accepts({ source: "k8s", key: "app.kubernetes.io/name", value: "x" })).toBe(true);
    expect(f.accepts({ source: "k8s", key: "kubernetes.io/hostname", value: "x" })).toBe(false);
    expect(f.accepts({ source: "k8s", key: "controller-revision-hash", value: "x" })).toBe(false);
    const user = new LabelFilter(["k8s:app"]);
    expect(user.accepts({ source: "k8s", key: "app", value: "x" })).toBe(true);
    expect(user.accepts({ source: "k8s", key: "tier", value: "x" })).toBe(false);
    expect(user.accepts({ source: "reserved", key: "host", value: "" })).toBe(true);
  });
});

describe("identities", () => {
  it("reserved 1-10, clusters from 256 by sorted label set, CIDR with the local scope bit", () => {
    const t = allocateIdentities(cluster, ["192.168.0.0/16", "10.0.0.0/8", "0.0.0.0/0", "10.0.0.0/8"]);
    expect(t.all.slice(0, 10).map((i) => i.id)).toEqual([1, 2, 3, 4, 5, 6, 7, 8, 9, 10]);
    // b-1 and b-2 differ only in an excluded label: one identity.
    expect(t.podIdentity.get("x/b-1")).toBe(t.podIdentity.get("x/b-2"));
    expect(t.podIdentity.get("x/a")).toBe(MIN_CLUSTER_IDENTITY); // k8s:app=a sorts before k8s:app=b
    expect(t.podIdentity.get("x/b-1")).toBe(MIN_CLUSTER_IDENTITY + 1);
    expect(t.podIdentity.get("x/h")).toBe(1);
    expect(t.cidrs.map((c) => [c.cidr.text, c.identity])).toEqual([
      ["10.0.0.0/8", LOCAL_IDENTITY_SCOPE | 1],
      ["192.168.0.0/16", LOCAL_IDENTITY_SCOPE | 2],
    ]);
    expect(identityOfIp(t, cluster, "10.244.0.9")).toBe(MIN_CLUSTER_IDENTITY);
    expect(identityOfIp(t, cluster, "10.1.1.1")).toBe(LOCAL_IDENTITY_SCOPE | 1);
    expect(identityOfIp(t, cluster, "8.8.8.8")).toBe(2);
    expect(identityOfIp({ ...t, dualStack: true }, cluster, "2001:db8::1")).toBe(10);
  });
  it("order of pods does not change the numbers", () => {
    const a = allocateIdentities(cluster, []);
    const b = allocateIdentities({ ...cluster, pods: [...cluster.pods].reverse() }, []);
    expect([...a.podIdentity].sort()).toEqual([...b.podIdentity].sort());
  });
});
