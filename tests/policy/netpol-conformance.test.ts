// The Kubernetes network-policy conformance model (test/e2e/network/netpol in kubernetes/kubernetes):
// namespaces x, y, z labelled kubernetes.io/metadata.name; pods a, b, c in each, labelled pod: <name>,
// serving 80 and 81 over TCP, UDP and SCTP (named serve-<port>-<proto>). A representative set of the
// upstream policies, each with its truth table derived by hand from the Kubernetes documentation
// (written as a predicate over (from, to, port, protocol); self-traffic is excluded as upstream does).
// The verdict is end to end: egress at the source and ingress at the destination.
import { describe, expect, it } from "vitest";
import { buildRules, clusterFromManifests, compilePolicy, explainFlow, parseManifests } from "../../policy/index.ts";

const NSS = ["x", "y", "z"];
const PODS = ["a", "b", "c"];
const PROTOS = ["TCP", "UDP", "SCTP"] as const;
type Proto = (typeof PROTOS)[number];
const PORTS = [80, 81];

function modelYaml(): string {
  const docs: unknown[] = [];
  NSS.forEach((ns) => docs.push({ apiVersion: "v1", kind: "Namespace", metadata: { name: ns, labels: { "kubernetes.io/metadata.name": ns } } }));
  NSS.forEach((ns, i) =>
    PODS.forEach((p, j) =>
      docs.push({
        apiVersion: "v1",
        kind: "Pod",
        metadata: { name: p, namespace: ns, labels: { pod: p } },
        spec: {
          containers: PORTS.flatMap((port) =>
            PROTOS.map((proto) => ({ name: `c${port}-${proto.toLowerCase()}`, ports: [{ name: `serve-${port}-${proto.toLowerCase()}`, containerPort: port, protocol: proto }] })),
          ),
        },
        status: { podIP: `10.244.${i}.${j + 10}` },
      }),
    ),
  );
  return docs.map((d) => JSON.stringify(d)).join("\n---\n");
}

function np(ns: string, name: string, spec: Record<string, unknown>): string {
  return JSON.stringify({ apiVersion: "networking.k8s.io/v1", kind: "NetworkPolicy", metadata: { name, namespace: ns }, spec });
}

type Expect = (from: string, to: string, port: number, proto: Proto) => boolean;

function check(policies: string[], expected: Expect) {
  const load = parseManifests([modelYaml(), ...policies].join("\n---\n"), "conformance.yaml");
  expect(load.errors).toEqual([]);
  const cluster = clusterFromManifests(load.objects);
  const rules = buildRules(load.objects);
  expect(rules.problems.map(String)).toEqual([]);
  const c = compilePolicy(cluster, rules.rules);
  const wrong: string[] = [];
  const all = NSS.flatMap((ns) => PODS.map((p) => `${ns}/${p}`));
  for (const port of PORTS)
    for (const proto of PROTOS)
      for (const from of all)
        for (const to of all) {
          if (from === to) continue;
          const got = explainFlow(c, { from: { pod: from }, to: { pod: to }, protocol: proto, port }).verdict === "allowed";
          if (got !== expected(from, to, port, proto)) wrong.push(`${from} -> ${to} ${port}/${proto}: expected ${expected(from, to, port, proto) ? "allowed" : "denied"}`);
        }
  expect(wrong).toEqual([]);
  return c;
}

const ns = (p: string) => p.split("/")[0];
const pod = (p: string) => p.split("/")[1];

describe("Kubernetes network-policy conformance model", () => {
  it("no policies: everything reachable", () => check([], () => true));

  it("default-deny-ingress in x", () => check([np("x", "deny-ingress", { podSelector: {}, policyTypes: ["Ingress"] })], (_f, t) => ns(t) !== "x"));

  it("default-deny-egress in x", () => check([np("x", "deny-egress", { podSelector: {}, policyTypes: ["Egress"] })], (f) => ns(f) !== "x"));

  it("default-deny-all in x", () => check([np("x", "deny-all", { podSelector: {}, policyTypes: ["Ingress", "Egress"] })], (f, t) => ns(f) !== "x" && ns(t) !== "x"));

  it("allow ingress from the same namespace only", () =>
    check([np("x", "same-ns", { podSelector: {}, ingress: [{ from: [{ podSelector: {} }] }] })], (f, t) => ns(t) !== "x" || ns(f) === "x"));

  it("allow ingress to x/a from namespace y (namespaceSelector)", () =>
    check(
      [np("x", "from-y", { podSelector: { matchLabels: { pod: "a" } }, ingress: [{ from: [{ namespaceSelector: { matchLabels: { "kubernetes.io/metadata.name": "y" } } }] }] })],
      (f, t) => t !== "x/a" || ns(f) === "y",
    ));

  it("allow ingress to x/a from pod b in any namespace (namespaceSelector {} AND podSelector)", () =>
    check(
      [np("x", "from-b", { podSelector: { matchLabels: { pod: "a" } }, ingress: [{ from: [{ namespaceSelector: {}, podSelector: { matchLabels: { pod: "b" } } }] }] })],
      (f, t) => t !== "x/a" || pod(f) === "b",
    ));

  it("combined selector in one peer is AND; two peers are OR", () => {
    check(
      [
        np("x", "and", {
          podSelector: { matchLabels: { pod: "a" } },
          ingress: [{ from: [{ namespaceSelector: { matchExpressions: [{ key: "kubernetes.io/metadata.name", operator: "In", values: ["y"] }] }, podSelector: { matchLabels: { pod: "c" } } }] }],
        }),
      ],
      (f, t) => t !== "x/a" || f === "y/c",
    );
    check(
      [
        np("x", "or", {
          podSelector: { matchLabels: { pod: "a" } },
          ingress: [{ from: [{ namespaceSelector: { matchLabels: { "kubernetes.io/metadata.name": "y" } } }, { podSelector: { matchLabels: { pod: "c" } } }] }],
        }),
      ],
      (f, t) => t !== "x/a" || ns(f) === "y" || f === "x/c",
    );
  });

  it("podSelector only: peers in the policy namespace", () =>
    check([np("x", "from-b", { podSelector: { matchLabels: { pod: "a" } }, ingress: [{ from: [{ podSelector: { matchLabels: { pod: "b" } } }] }] })], (f, t) => t !== "x/a" || f === "x/b"));

  it("NotIn namespace selector", () =>
    check(
      [np("x", "not-z", { podSelector: { matchLabels: { pod: "a" } }, ingress: [{ from: [{ namespaceSelector: { matchExpressions: [{ key: "kubernetes.io/metadata.name", operator: "NotIn", values: ["z"] }] } }] }] })],
      (f, t) => t !== "x/a" || ns(f) !== "z",
    ));

  it("allow ingress on port 80 only (protocol defaults to TCP)", () =>
    check([np("x", "port-80", { podSelector: { matchLabels: { pod: "a" } }, ingress: [{ ports: [{ port: 80 }] }] })], (_f, t, port, proto) => t !== "x/a" || (port === 80 && proto === "TCP")));

  it("named port serve-81-udp", () =>
    check(
      [np("x", "named", { podSelector: { matchLabels: { pod: "a" } }, ingress: [{ ports: [{ port: "serve-81-udp", protocol: "UDP" }] }] })],
      (_f, t, port, proto) => t !== "x/a" || (port === 81 && proto === "UDP"),
    ));

  it("endPort range 80-81 over TCP", () =>
    check([np("x", "range", { podSelector: { matchLabels: { pod: "a" } }, ingress: [{ ports: [{ port: 80, endPort: 81, protocol: "TCP" }] }] })], (_f, t, _p, proto) => t !== "x/a" || proto === "TCP"));

  it("SCTP port 80 from namespace y", () =>
    check(
      [
        np("x", "sctp", {
          podSelector: { matchLabels: { pod: "a" } },
          ingress: [{ from: [{ namespaceSelector: { matchLabels: { "kubernetes.io/metadata.name": "y" } } }], ports: [{ port: 80, protocol: "SCTP" }] }],
        }),
      ],
      (f, t, port, proto) => t !== "x/a" || (ns(f) === "y" && port === 80 && proto === "SCTP"),
    ));

  it("empty ingress rule allows everything", () => check([np("x", "allow-all", { podSelector: {}, ingress: [{}] })], () => true));

  it("egress to namespace y only; without policyTypes both Ingress and Egress apply", () =>
    check(
      [np("x", "egress-y", { podSelector: { matchLabels: { pod: "a" } }, egress: [{ to: [{ namespaceSelector: { matchLabels: { "kubernetes.io/metadata.name": "y" } } }] }] })],
      (f, t) => t !== "x/a" && (f !== "x/a" || ns(t) === "y"),
    ));

  it("egress rules without policyTypes still isolate ingress (Ingress always implied)", () =>
    check(
      [np("x", "egress-y-ingress-deny", { podSelector: { matchLabels: { pod: "a" } }, ingress: [], egress: [{ to: [{ podSelector: {} }] }] })],
      (f, t) => t !== "x/a" && (f !== "x/a" || ns(t) === "x"),
    ));

  it("policyTypes Egress only leaves ingress open", () =>
    check([np("x", "eg", { podSelector: { matchLabels: { pod: "a" } }, policyTypes: ["Egress"], egress: [{ ports: [{ port: 81, protocol: "UDP" }] }] })], (f, _t, port, proto) =>
      f !== "x/a" || (port === 81 && proto === "UDP"),
    ));

  it("multiple policies are additive", () =>
    check(
      [
        np("x", "p1", { podSelector: { matchLabels: { pod: "a" } }, ingress: [{ from: [{ podSelector: { matchLabels: { pod: "b" } } }] }] }),
        np("x", "p2", { podSelector: { matchLabels: { pod: "a" } }, ingress: [{ from: [{ namespaceSelector: { matchLabels: { "kubernetes.io/metadata.name": "z" } } }], ports: [{ port: 81 }] }] }),
      ],
      (f, t, port, proto) => t !== "x/a" || f === "x/b" || (ns(f) === "z" && port === 81 && proto === "TCP"),
    ));

  it("ipBlock with except: selects external addresses, never pods", () => {
    const c = check(
      [np("x", "ipblock", { podSelector: { matchLabels: { pod: "a" } }, policyTypes: ["Egress"], egress: [{ to: [{ ipBlock: { cidr: "0.0.0.0/0", except: ["192.0.2.128/25"] } }] }] })],
      (f) => f !== "x/a",
    );
    const v = (ip: string) => explainFlow(c, { from: { pod: "x/a" }, to: { ip }, protocol: "TCP", port: 80 }).verdict;
    expect(v("192.0.2.1")).toBe("allowed");
    expect(v("192.0.2.200")).toBe("denied");
    expect(v("8.8.8.8")).toBe("allowed");
  });

  it("ingress from ipBlock does not admit pods, admits external sources", () => {
    const c = check([np("x", "ipblock-in", { podSelector: { matchLabels: { pod: "a" } }, ingress: [{ from: [{ ipBlock: { cidr: "10.0.0.0/8" } }] }] })], (_f, t) => t !== "x/a");
    expect(explainFlow(c, { from: { ip: "10.9.9.9" }, to: { pod: "x/a" }, protocol: "TCP", port: 80 }).verdict).toBe("allowed");
  });
});
