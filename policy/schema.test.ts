// Schema validation as the API server does it: strict fields, types, enums, apiVersions, and Kubernetes
// name/label rules; every problem with its field path and line; the other objects are still read.
import { describe, expect, it } from "vitest";
import { dns1035Label, dns1123Label, dns1123Subdomain, labelKey, labelValue } from "./k8s-names.ts";
import { parseManifests } from "./manifest-loader.ts";
import { existsSync } from "node:fs";
import { join } from "node:path";
import { builtinSchemas, loadValidatorModule, PRECOMPILED_DIR, registerSchema, schemaApiVersions, schemaFilesHash, schemaKey, validateAgainstSchema } from "./schema.ts";

const load = (y: string) => parseManifests(y, "s.yaml");

describe("schema validation (kubectl apply --validate=strict)", () => {
  it("refuses unknown fields, wrong types and enum values with path and line, and reads the rest", () => {
    const l = load(`apiVersion: cilium.io/v2
kind: CiliumNetworkPolicy
metadata: {name: bad, namespace: x}
spec:
  endpointSelector: {}
  ingress:
  - fromEndpoint: [{}]
    toPorts:
    - ports: [{port: 80, protocol: TCPX}]
---
apiVersion: v1
kind: Pod
metadata: {name: ok, namespace: x}
`);
    expect(l.objects.map((o) => o.metadata.name)).toEqual(["ok"]);
    expect(l.refused).toEqual(["CiliumNetworkPolicy x/bad"]);
    expect(l.errors.map((e) => [e.code, e.path, e.line])).toEqual([
      ["unknown-field", "spec.ingress[0].fromEndpoint", 7],
      ["invalid-type", "spec.ingress[0].toPorts[0].ports[0].port", 9],
      ["invalid-value", "spec.ingress[0].toPorts[0].ports[0].protocol", 9],
    ]);
    expect(l.errors[0]!.message).toBe('s.yaml: document 0, line 7: CiliumNetworkPolicy x/bad spec.ingress[0].fromEndpoint: unknown field "fromEndpoint"');
  });

  it("refuses apiVersions the kind is not served under (cilium.io/v1, extensions/v1beta1)", () => {
    const l = load(`apiVersion: cilium.io/v1
kind: CiliumNetworkPolicy
metadata: {name: a}
spec: {endpointSelector: {}, ingress: [{}]}
---
apiVersion: extensions/v1beta1
kind: NetworkPolicy
metadata: {name: b}
spec: {podSelector: {}}
`);
    expect(l.errors.map((e) => [e.code, e.path])).toEqual([
      ["unsupported-api-version", "apiVersion"],
      ["unsupported-api-version", "apiVersion"],
    ]);
    expect(l.errors[1]!.detail).toMatch(/use networking\.k8s\.io\/v1/);
  });

  it("drops null fields first, as the API server does (creationTimestamp: null, fromEndpoints: null)", () => {
    const l = load(`apiVersion: cilium.io/v2
kind: CiliumNetworkPolicy
metadata: {name: a, creationTimestamp: null}
spec:
  endpointSelector: {}
  ingress: [{fromEndpoints: null, toPorts: [{ports: [{port: "80"}]}]}]
`);
    expect(l.errors).toEqual([]);
  });

  it("a rule needs endpointSelector or nodeSelector, not both, and at least one section (Cilium's CRD)", () => {
    const both = load("apiVersion: cilium.io/v2\nkind: CiliumClusterwideNetworkPolicy\nmetadata: {name: a}\nspec: {endpointSelector: {}, nodeSelector: {}, ingress: [{}]}\n");
    expect(both.errors.map((e) => e.detail)).toEqual(["only one of endpointSelector, nodeSelector may be set"]);
    const none = load("apiVersion: cilium.io/v2\nkind: CiliumClusterwideNetworkPolicy\nmetadata: {name: a}\nspec: {endpointSelector: {}}\n");
    expect(none.errors.map((e) => e.detail)).toEqual(["one of ingress, ingressDeny, egress, egressDeny is required"]);
  });

  it("Kubernetes kinds: wrong types and required fields (Pod, Deployment)", () => {
    const l = load(`apiVersion: v1
kind: Pod
metadata: {name: a}
spec: {containers: [{name: c, ports: [{containerPort: "80"}]}], foo: 1}
---
apiVersion: apps/v1
kind: Deployment
metadata: {name: d}
spec: {template: {spec: {containers: [{name: c}]}}}
`);
    expect(l.errors.map((e) => [e.object, e.code, e.path])).toEqual([
      ["Pod default/a", "unknown-field", "spec.foo"],
      ["Pod default/a", "invalid-type", "spec.containers[0].ports[0].containerPort"],
      ["Deployment default/d", "missing-field", "spec.selector"],
    ]);
  });

  it("names and labels as the API server checks them (pod foo+bar, label values)", () => {
    const l = load(`apiVersion: v1
kind: Pod
metadata: {name: foo+bar, labels: {app: "a b", "-x": y}}
---
apiVersion: v1
kind: Service
metadata: {name: 1svc}
`);
    expect(l.errors.map((e) => [e.object, e.code, e.path])).toEqual([
      ["Pod default/foo+bar", "invalid-name", "metadata.name"],
      ["Pod default/foo+bar", "invalid-name", "metadata.labels.app"],
      ["Pod default/foo+bar", "invalid-name", "metadata.labels.-x"],
      ["Service default/1svc", "invalid-name", "metadata.name"],
    ]);
  });

  it("name rules", () => {
    expect(dns1123Label("a-b")).toBeUndefined();
    expect(dns1123Label("A")).toBeDefined();
    expect(dns1123Label("a".repeat(64))).toBeDefined();
    expect(dns1123Subdomain("a.b-c")).toBeUndefined();
    expect(dns1123Subdomain("a..b")).toBeDefined();
    expect(dns1035Label("9a")).toBeDefined();
    expect(labelKey("app.kubernetes.io/name")).toBeUndefined();
    expect(labelKey("a/b/c")).toBeDefined();
    expect(labelKey("UPPER/x")).toBeDefined();
    expect(labelValue("")).toBeUndefined();
    expect(labelValue("v1.2_3")).toBeUndefined();
    expect(labelValue("x".repeat(64))).toBeDefined();
  });

  it("a precompiled validator (npm run build, one module per kind) finds the problems a validator compiled at run time finds", { timeout: 120_000 }, (t) => {
    const files = [schemaKey("cilium.io/v2", "CiliumNetworkPolicy"), schemaKey("v1", "Pod")].map((k) => join(import.meta.dirname, "..", PRECOMPILED_DIR, `${k}.cjs`));
    if (!files.every((f) => existsSync(f))) {
      console.log("skipped: no precompiled validators (npm run build)");
      return t.skip();
    }
    // Built from these schemas, so validateAgainstSchema uses them.
    for (const f of files) expect(loadValidatorModule(f).exports.schemaHash).toBe(schemaFilesHash());
    const bad = [
      { apiVersion: "cilium.io/v2", kind: "CiliumNetworkPolicy", metadata: { name: "b", namespace: "x" }, spec: { endpointSelector: {}, nodeSelector: {}, ingress: [{ fromEndpoint: [{}], toPorts: [{ ports: [{ port: 80, protocol: "TCPX" }], rules: { http: [{ methd: "GET" }] } }] }] } },
      { apiVersion: "cilium.io/v2", kind: "CiliumNetworkPolicy", metadata: { name: "c", namespace: "x" }, spec: { endpointSelector: { matchLabels: { a: 1 } } } },
    ];
    const pod = { apiVersion: "v1", kind: "Pod", metadata: { name: "p", namespace: "x", labels: { a: 1 } }, spec: { containers: [{ name: "c", image: 3, ports: [{ containerPort: "x" }] }], hostNetwork: "yes" } };
    const precompiled = [...bad, pod].map((o) => validateAgainstSchema(o));
    expect(precompiled.every((p) => p!.length > 0)).toBe(true);
    // The same schemas registered again are compiled here, at run time (a registered kind is not a built-in one).
    for (const k of builtinSchemas().kinds.filter((k) => k.kind === "CiliumNetworkPolicy" || k.kind === "Pod")) registerSchema(k.apiVersion, k.kind, k.schema);
    expect([...bad, pod].map((o) => validateAgainstSchema(o))).toEqual(precompiled);
  });

  it("other kinds register their own schema (ciliate's kinds)", () => {
    expect(validateAgainstSchema({ apiVersion: "example.dev/v1", kind: "Widget" })).toBeUndefined();
    registerSchema("example.dev/v1", "Widget", { type: "object", properties: { apiVersion: {}, kind: {}, metadata: {}, size: { type: "integer" } }, additionalProperties: false });
    expect(schemaApiVersions("Widget")).toEqual(["example.dev/v1"]);
    expect(validateAgainstSchema({ apiVersion: "example.dev/v1", kind: "Widget", size: 1 })).toEqual([]);
    expect(validateAgainstSchema({ apiVersion: "example.dev/v1", kind: "Widget", size: "x", colour: 1 })!.map((p) => p.code).sort()).toEqual(["invalid-type", "unknown-field"]);
  });
});
