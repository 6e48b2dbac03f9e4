import { describe, expect, it } from "vitest";
import { mkdtempSync, mkdirSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { tmpdir } from "node:os";
import { clusterFromManifests, loadManifests, parseCiliateObjects, parseManifests } from "./manifest-loader.ts";

describe("manifest loader", () => {
  it("multi-document YAML, kind: List, JSON; an unknown kind is refused, naming it", () => {
    const y = `apiVersion: v1
kind: List
items:
- apiVersion: v1
  kind: Namespace
  metadata: {name: x}
- apiVersion: v1
  kind: ConfigMap
  metadata: {name: cm, namespace: x}
---
{"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "p", "namespace": "x"}}
`;
    const r = parseManifests(y, "a.yaml");
    expect(r.objects.map((o) => o.kind)).toEqual(["Namespace", "Pod"]);
    expect(r.warnings).toEqual([]);
    expect(r.errors).toHaveLength(1);
    expect(r.errors[0].code).toBe("unknown-kind");
    expect(r.errors[0].line).toBe(8);
    expect(r.errors[0].path).toBe("kind");
    expect(r.errors[0].message).toBe("a.yaml: document 0, line 8: ConfigMap x/cm kind: ciliate does not read kind ConfigMap (apiVersion v1); remove it; from a cluster, export only the kinds ciliate reads (docs/scenarios.md)");
  });
  it("a misspelt kind gets a did-you-mean; a ciliate kind under another apiVersion is told the right one", () => {
    const r = parseManifests("apiVersion: apps/v1\nkind: Deploymnet\nmetadata: {name: d}\n---\napiVersion: v1\nkind: Traffic\nmetadata: {name: t}\n", "k.yaml");
    expect(r.errors.map((e) => e.message)).toEqual([
      "k.yaml: document 0, line 2: Deploymnet default/d kind: ciliate does not read kind Deploymnet (apiVersion apps/v1); did you mean Deployment?",
      'k.yaml: document 1, line 5: Traffic default/t apiVersion: Traffic needs apiVersion ciliate.dev/v1alpha1, not "v1"',
    ]);
  });
  it("syntax errors name file, document and line", () => {
    const r = parseManifests("apiVersion: v1\nkind: Pod\n---\nkind: [unclosed\n", "b.yaml");
    const e = r.errors.find((x) => x.code === "yaml-syntax")!;
    expect(e.doc).toBe(1);
    expect(e.file).toBe("b.yaml");
    expect(e.line).toBeGreaterThanOrEqual(4);
  });
  it("missing name is an error with its path", () => {
    const r = parseManifests("apiVersion: v1\nkind: Pod\nmetadata:\n  namespace: x\n", "c.yaml");
    expect(r.errors[0].code).toBe("missing-name");
    expect(r.errors[0].path).toBe("metadata.name");
  });
  it("loads directories recursively in sorted order", () => {
    const d = mkdtempSync(join(tmpdir(), "ciliate-policy-"));
    mkdirSync(join(d, "sub"));
    writeFileSync(join(d, "b.yaml"), "apiVersion: v1\nkind: Namespace\nmetadata: {name: b}\n");
    writeFileSync(join(d, "a.json"), '{"apiVersion":"v1","kind":"Namespace","metadata":{"name":"a"}}');
    writeFileSync(join(d, "sub", "c.yml"), "apiVersion: v1\nkind: Namespace\nmetadata: {name: c}\n");
    writeFileSync(join(d, "notes.txt"), "ignored");
    const r = loadManifests([d]);
    expect(r.objects.map((o) => o.metadata.name)).toEqual(["a", "b", "c"]);
    expect(loadManifests([join(d, "missing")]).errors[0].code).toBe("file-not-found");
  });
  it("workloads expand to pods from template and replicas", () => {
    const y = `apiVersion: v1
kind: Node
metadata: {name: n2}
---
apiVersion: v1
kind: Node
metadata: {name: n1}
---
apiVersion: apps/v1
kind: Deployment
metadata: {name: web, namespace: x}
spec:
  replicas: 3
  selector: {matchLabels: {app: web}}
  template:
    metadata: {labels: {app: web}}
    spec: {serviceAccountName: websa, containers: [{name: c, ports: [{name: http, containerPort: 80}]}]}
---
apiVersion: apps/v1
kind: StatefulSet
metadata: {name: db, namespace: x}
spec: {replicas: 2, selector: {matchLabels: {app: db}}, template: {metadata: {labels: {app: db}}, spec: {containers: [{name: c}]}}}
---
apiVersion: apps/v1
kind: DaemonSet
metadata: {name: agent, namespace: kube-system}
spec: {selector: {matchLabels: {app: agent}}, template: {metadata: {labels: {app: agent}}, spec: {hostNetwork: true, containers: [{name: c}]}}}
`;
    const c = clusterFromManifests(parseManifests(y).objects);
    expect(c.pods.map((p) => `${p.namespace}/${p.name}`)).toEqual(["x/web-0", "x/web-1", "x/web-2", "x/db-0", "x/db-1", "kube-system/agent-n1", "kube-system/agent-n2"]);
    expect(c.pods[0]).toMatchObject({ labels: { app: "web" }, serviceAccount: "websa", containerPorts: [{ name: "http", port: 80, protocol: "TCP" }] });
    expect(c.pods[5].hostNetwork).toBe(true);
    expect(c.namespaces.map((n) => n.name).sort()).toEqual(["kube-system", "x"]);
  });
  it("ciliate kinds: Traffic, Expectation, Config", () => {
    const y = `apiVersion: ciliate.dev/v1alpha1
kind: Traffic
metadata: {name: t}
spec:
  flows:
  - {from: {pod: x/a}, to: {service: x/web}, port: 80, protocol: TCP, http: {method: GET, path: /}}
  - {from: {entity: world}, to: {ip: 10.0.0.1}, protocol: ICMP, icmp: {type: 8}, count: 3}
---
apiVersion: ciliate.dev/v1alpha1
kind: Expectation
metadata: {name: e}
spec: {from: {pod: x/a}, to: {cidr: 1.2.3.0/24}, port: 443, protocol: TCP, verdict: denied}
---
apiVersion: ciliate.dev/v1alpha1
kind: Config
metadata: {name: cfg}
spec: {clusterName: prod, policyEnforcement: always}
---
apiVersion: ciliate.dev/v1alpha1
kind: Expectation
metadata: {name: broken}
spec: {from: {pod: x/a, ip: 1.1.1.1}, to: {pod: x/b}, port: 99999, verdict: maybe}
`;
    const parsed = parseManifests(y, "s.yaml");
    // The broken Expectation breaks its schema: refused at load, one problem per field, each with its path.
    expect(parsed.errors.map((e) => [e.code, e.path])).toEqual([
      ["invalid-value", "spec.from"],
      ["invalid-value", "spec.port"],
      ["invalid-value", "spec.verdict"],
    ]);
    const objs = parsed.objects;
    const r = parseCiliateObjects(objs);
    expect(r.traffic[0].flows).toHaveLength(2);
    expect(r.traffic[0].flows[1]).toMatchObject({ protocol: "ICMP", icmp: { type: 8 }, count: 3 });
    expect(r.expectations).toEqual([expect.objectContaining({ name: "e", verdict: "denied", port: 443 })]);
    expect(r.config).toMatchObject({ clusterName: "prod", policyEnforcement: "always" });
    expect(r.errors).toEqual([]);
    expect(clusterFromManifests(objs)).toMatchObject({ clusterName: "prod", policyEnforcement: "always" });
  });
});
