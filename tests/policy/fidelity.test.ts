// Regression tests for verdicts that differed from Cilium's, each named after the upstream behaviour it
// mirrors (issue #12 of this project).
import { describe, expect, it } from "vitest";
import { buildCluster } from "../../node/cluster.ts";
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

describe("named ports on egress resolve on the destination pod (Kubernetes NetworkPolicy semantics)", () => {
  const pods = podsYaml([
    { ns: "x", name: "client", labels: { app: "client" } },
    { ns: "x", name: "web", labels: { app: "web" }, ports: [{ name: "http", port: 80 }] },
    { ns: "x", name: "alt", labels: { app: "alt" }, ports: [{ name: "http", port: 81 }] },
  ]);
  const egress = (to: string) => cnp("x", "p", `spec:\n  endpointSelector: {matchLabels: {app: client}}\n  egress: [{${to}toPorts: [{ports: [{port: http, protocol: TCP}]}]}]`);

  it("a rule without peers: each pod is reachable only on the number it gives the name", () => {
    const { compiled } = compileYaml(pods + egress(""));
    expect(verdict(compiled, "x/client", "x/web", "TCP", 80)).toBe("allowed");
    expect(verdict(compiled, "x/client", "x/web", "TCP", 81)).toBe("denied");
    expect(verdict(compiled, "x/client", "x/alt", "TCP", 81)).toBe("allowed");
    expect(verdict(compiled, "x/client", "x/alt", "TCP", 80)).toBe("denied");
    expect(verdict(compiled, "x/client", { ip: "192.0.2.1" }, "TCP", 80)).toBe("denied");
  });

  it("pods of one identity that number the name differently: fail closed, with a warning", () => {
    const same = podsYaml([
      { ns: "x", name: "client", labels: { app: "client" } },
      { ns: "x", name: "w1", labels: { app: "web" }, ports: [{ name: "http", port: 80 }] },
      { ns: "x", name: "w2", labels: { app: "web" }, ports: [{ name: "http", port: 81 }] },
    ]);
    const { compiled } = compileYaml(same + egress("toEndpoints: [{matchLabels: {app: web}}], "));
    for (const [pod, port] of [["x/w1", 80], ["x/w1", 81], ["x/w2", 80], ["x/w2", 81]] as const) expect(verdict(compiled, "x/client", pod, "TCP", port)).toBe("denied");
    expect(compiled.warnings.map((w) => w.code)).toEqual(["named-port-ambiguous"]);
    expect(compiled.warnings[0]!.message).toMatch(/port name "http" is 80 or 81 on different pods of identity \d+; none of them is allowed/);
  });
});
