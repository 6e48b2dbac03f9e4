// Regression tests for verdicts that differed from Cilium's, each named after the upstream behaviour it
// mirrors (issue #12 of this project).
import { describe, expect, it } from "vitest";
import { buildCluster } from "../../sim/cluster.ts";
import { compileClusterPolicy } from "../../sim/policy.ts";
import { explainFlow } from "../../policy/explain.ts";
import { parseManifests } from "../../policy/manifest-loader.ts";
import { compileYaml, podsYaml, verdict } from "../../policy/test-helpers.ts";

const base = podsYaml(
  [
    { ns: "x", name: "a", labels: { app: "a" } },
    { ns: "x", name: "b", labels: { app: "b" } },
    { ns: "y", name: "c", labels: { app: "c" } },
  ],
  { x: { team: "blue" }, y: { team: "red" } },
);
const cnp = (ns: string, name: string, spec: string) => `\n---\napiVersion: cilium.io/v2\nkind: CiliumNetworkPolicy\nmetadata: {name: ${name}, namespace: ${ns}}\n${spec}`;

describe("verdicts as Cilium gives them", () => {
  it("cilium/cilium PR #30650: a peer selected by namespace labels is not pinned to the policy's namespace", () => {
    const { compiled } = compileYaml(base + cnp("x", "p", "spec:\n  endpointSelector: {matchLabels: {app: a}}\n  ingress: [{fromEndpoints: [{matchLabels: {io.cilium.k8s.namespace.labels.team: red}}]}]"));
    expect(verdict(compiled, "y/c", "x/a", "TCP", 80)).toBe("allowed");
    expect(verdict(compiled, "x/b", "x/a", "TCP", 80)).toBe("denied");
  });

  it("API server null pruning: `fromEndpoints: null` with toPorts allows every peer on that port", () => {
    const { compiled } = compileYaml(base + cnp("x", "p", "spec:\n  endpointSelector: {matchLabels: {app: a}}\n  ingress: [{fromEndpoints: null, toPorts: [{ports: [{port: '80', protocol: TCP}]}]}]"));
    expect(verdict(compiled, "y/c", "x/a", "TCP", 80)).toBe("allowed");
    expect(verdict(compiled, "y/c", "x/a", "TCP", 81)).toBe("denied");
  });

  it("pkg/policy/api/service.go: `toServices: [{}]` is accepted and selects nothing (with a warning)", () => {
    const { compiled, rules } = compileYaml(base + cnp("x", "p", "spec:\n  endpointSelector: {matchLabels: {app: a}}\n  egress: [{toServices: [{}]}]"));
    expect(rules.refused).toEqual([]);
    expect(rules.warnings.map((w) => w.code)).toEqual(["service-selects-nothing"]);
    expect(verdict(compiled, "x/a", "x/b", "TCP", 80)).toBe("denied");
  });

  it("pkg/policy/api/service.go k8sServiceSelector: the simulator's service model keeps metadata.labels, so the selector matches", () => {
    const y =
      base +
      "\n---\napiVersion: v1\nkind: Service\nmetadata: {name: svc-b, namespace: x, labels: {exposed: 'yes'}}\nspec: {selector: {app: b}, ports: [{port: 80}]}" +
      cnp("x", "p", "spec:\n  endpointSelector: {matchLabels: {app: a}}\n  egress: [{toServices: [{k8sServiceSelector: {selector: {matchLabels: {exposed: 'yes'}}}}]}]");
    const l = parseManifests(y, "svc.yaml");
    expect(l.errors).toEqual([]);
    const cluster = buildCluster(l.objects, {});
    expect(cluster.model.services.find((s) => s.name === "svc-b")?.labels).toEqual({ exposed: "yes" });
    const compiled = compileClusterPolicy(cluster);
    expect(explainFlow(compiled, { from: { pod: "x/a" }, to: { pod: "x/b" }, protocol: "TCP", port: 80 }).verdict).toBe("allowed");
    expect(explainFlow(compiled, { from: { pod: "x/a" }, to: { pod: "y/c" }, protocol: "TCP", port: 80 }).verdict).toBe("denied");
  });
});
