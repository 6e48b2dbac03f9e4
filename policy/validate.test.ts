// One test per validation error: each policy must be refused with the expected code and a line number,
// while a valid policy in the same input is still applied.
import { describe, expect, it } from "vitest";
import { buildRules, parseManifests } from "./index.ts";

function cnp(spec: string, kind = "CiliumNetworkPolicy"): string {
  return `apiVersion: cilium.io/v2
kind: ${kind}
metadata:
  name: bad
  namespace: x
${spec}
---
apiVersion: cilium.io/v2
kind: CiliumNetworkPolicy
metadata: {name: good, namespace: x}
spec:
  endpointSelector: {}
  ingress: [{fromEndpoints: [{}]}]
`;
}

function codes(yaml: string) {
  const l = parseManifests(yaml, "v.yaml");
  expect(l.errors).toEqual([]);
  const r = buildRules(l.objects);
  expect(r.applied).toContain("CiliumNetworkPolicy/x/good");
  return r;
}

const cases: [string, string, string][] = [
  ["endpointSelector with nodeSelector", "spec:\n  endpointSelector: {}\n  nodeSelector: {}\n", "selector-conflict"],
  ["neither selector", "spec:\n  ingress: [{}]\n", "selector-missing"],
  ["invalid CIDR", "spec:\n  endpointSelector: {}\n  ingress: [{fromCIDR: [10.0.0.300/8]}]\n", "invalid-cidr"],
  ["except outside its CIDR", "spec:\n  endpointSelector: {}\n  egress: [{toCIDRSet: [{cidr: 10.0.0.0/8, except: [192.168.0.0/16]}]}]\n", "except-outside-cidr"],
  ["port out of range", "spec:\n  endpointSelector: {}\n  ingress: [{toPorts: [{ports: [{port: '70000'}]}]}]\n", "port-out-of-range"],
  ["endPort below port", "spec:\n  endpointSelector: {}\n  ingress: [{toPorts: [{ports: [{port: '80', endPort: 79}]}]}]\n", "endport-below-port"],
  [
    "more than 40 ports",
    "spec:\n  endpointSelector: {}\n  ingress: [{toPorts: [{ports: [" + Array.from({ length: 41 }, (_, i) => `{port: '${i + 1}'}`).join(",") + "]}]}]\n",
    "too-many-ports",
  ],
  ["L7 on a deny rule", "spec:\n  endpointSelector: {}\n  ingressDeny: [{toPorts: [{ports: [{port: '80'}], rules: {http: [{}]}}]}]\n", "l7-on-deny"],
  ["two L7 kinds", "spec:\n  endpointSelector: {}\n  ingress: [{toPorts: [{ports: [{port: '80'}], rules: {http: [{}], kafka: [{topic: t}]}}]}]\n", "multiple-l7-kinds"],
  ["HTTP regex that does not compile", "spec:\n  endpointSelector: {}\n  ingress: [{toPorts: [{ports: [{port: '80'}], rules: {http: [{path: '/a(['}]}}]}]\n", "invalid-http-regex"],
  ["unknown entity", "spec:\n  endpointSelector: {}\n  ingress: [{fromEntities: [galaxy]}]\n", "unknown-entity"],
  ["In without values", "spec:\n  endpointSelector: {matchExpressions: [{key: app, operator: In}]}\n  ingress: [{}]\n", "selector-values-required"],
  ["NotIn without values", "spec:\n  endpointSelector: {matchExpressions: [{key: app, operator: NotIn, values: []}]}\n  ingress: [{}]\n", "selector-values-required"],
  ["Exists with values", "spec:\n  endpointSelector: {matchExpressions: [{key: app, operator: Exists, values: [a]}]}\n  ingress: [{}]\n", "selector-values-forbidden"],
  ["unknown operator", "spec:\n  endpointSelector: {matchExpressions: [{key: app, operator: Near}]}\n  ingress: [{}]\n", "invalid-selector-operator"],
  ["ICMP type out of range", "spec:\n  endpointSelector: {}\n  ingress: [{icmps: [{fields: [{type: 300}]}]}]\n", "icmp-type-out-of-range"],
  ["unknown ICMP type name", "spec:\n  endpointSelector: {}\n  ingress: [{icmps: [{fields: [{family: IPv6, type: Bogus}]}]}]\n", "unknown-icmp-type"],
  ["unknown protocol", "spec:\n  endpointSelector: {}\n  ingress: [{toPorts: [{ports: [{port: '80', protocol: QUIC}]}]}]\n", "invalid-protocol"],
  ["invalid DNS pattern", "spec:\n  endpointSelector: {}\n  egress: [{toPorts: [{ports: [{port: '53'}], rules: {dns: [{matchPattern: 'a b'}]}}]}]\n", "invalid-dns-rule"],
  ["DNS matchName with a wildcard", "spec:\n  endpointSelector: {}\n  egress: [{toPorts: [{ports: [{port: '53'}], rules: {dns: [{matchName: '*.io'}]}}]}]\n", "invalid-dns-rule"],
  ["DNS matchName and matchPattern together", "spec:\n  endpointSelector: {}\n  egress: [{toPorts: [{ports: [{port: '53'}], rules: {dns: [{matchName: a.io, matchPattern: '*.io'}]}}]}]\n", "invalid-dns-rule"],
  ["DNS rules without ports", "spec:\n  endpointSelector: {}\n  egress: [{toPorts: [{rules: {dns: [{matchPattern: '*'}]}}]}]\n", "dns-port-missing"],
  ["DNS rules on ingress", "spec:\n  endpointSelector: {}\n  ingress: [{toPorts: [{ports: [{port: '53'}], rules: {dns: [{matchPattern: '*'}]}}]}]\n", "dns-on-ingress"],
  ["DNS rules on port 0", "spec:\n  endpointSelector: {}\n  egress: [{toPorts: [{ports: [{port: '0'}], rules: {dns: [{matchPattern: '*'}]}}]}]\n", "l7-port-zero"],
  ["toFQDNs pattern with a space", "spec:\n  endpointSelector: {}\n  egress: [{toFQDNs: [{matchPattern: 'a b'}]}]\n", "invalid-dns-rule"],
  ["toFQDNs combined with toEndpoints", "spec:\n  endpointSelector: {}\n  egress: [{toEndpoints: [{}], toFQDNs: [{matchName: a.io}]}]\n", "fqdn-combined"],
  ["toFQDNs in egressDeny", "spec:\n  endpointSelector: {}\n  egressDeny: [{toFQDNs: [{matchName: a.io}]}]\n", "fqdn-on-deny"],
  ["invalid kafka role", "spec:\n  endpointSelector: {}\n  egress: [{toPorts: [{ports: [{port: '9092'}], rules: {kafka: [{role: write}]}}]}]\n", "invalid-kafka-rule"],
  ["nodeSelector in a namespaced policy", "spec:\n  nodeSelector: {}\n  ingress: [{}]\n", "node-selector-namespaced"],
  ["no spec", "other: 1\n", "rule-missing"],
];

describe("validation refuses what Cilium refuses", () => {
  for (const [name, spec, code] of cases)
    it(name, () => {
      const r = codes(cnp(spec));
      expect(r.refused).toEqual(["CiliumNetworkPolicy/x/bad"]);
      expect(r.problems.map((p) => p.code)).toContain(code);
      const p = r.problems.find((x) => x.code === code)!;
      expect(p.file).toBe("v.yaml");
      expect(p.doc).toBe(0);
      expect(p.line).toBeGreaterThan(0);
      expect(r.rules.every((x) => x.origin.name === "good")).toBe(true);
    });

  it("reports every problem, not just the first, with field paths", () => {
    const r = codes(cnp("spec:\n  endpointSelector: {}\n  ingress:\n  - fromEntities: [galaxy]\n  - fromCIDR: [nope]\n    toPorts: [{ports: [{port: '99999'}]}]\n"));
    expect(r.problems.map((p) => p.code).sort()).toEqual(["invalid-cidr", "port-out-of-range", "unknown-entity"]);
    const cidr = r.problems.find((p) => p.code === "invalid-cidr")!;
    expect(cidr.path).toBe("spec.ingress[1].fromCIDR[0]");
    expect(cidr.line).toBe(10);
    expect(cidr.message).toMatch(/v\.yaml: document 0, line 10: CiliumNetworkPolicy \S+ spec\.ingress\[1\]\.fromCIDR\[0\]/);
  });

  it("NetworkPolicy: bad ipBlock, bad port, bad policyType", () => {
    const y = `apiVersion: networking.k8s.io/v1
kind: NetworkPolicy
metadata: {name: np, namespace: x}
spec:
  podSelector: {}
  policyTypes: [Ingress, Sideways]
  ingress:
  - from: [{ipBlock: {cidr: 10.0.0.0/8, except: [11.0.0.0/8]}}]
    ports: [{port: 80, endPort: 70}]
`;
    const r = buildRules(parseManifests(y, "np.yaml").objects);
    expect(r.refused).toEqual(["NetworkPolicy/x/np"]);
    expect(r.problems.map((p) => p.code).sort()).toEqual(["endport-below-port", "except-outside-cidr", "invalid-policy-type"]);
  });
});

describe("accepted but not enforced", () => {
  it("nodeSelector rules are warnings and DNS rules are enforced; both policies are applied", () => {
    const y = `apiVersion: cilium.io/v2
kind: CiliumClusterwideNetworkPolicy
metadata: {name: host}
spec:
  nodeSelector: {}
  ingress: [{fromEntities: [cluster]}]
---
apiVersion: cilium.io/v2
kind: CiliumNetworkPolicy
metadata: {name: dns, namespace: x}
spec:
  endpointSelector: {}
  egress: [{toEntities: [cluster], toPorts: [{ports: [{port: '53', protocol: UDP}], rules: {dns: [{matchPattern: '*'}]}}]}]
`;
    const r = buildRules(parseManifests(y, "w.yaml").objects);
    expect(r.problems).toEqual([]);
    expect(r.applied).toEqual(["CiliumClusterwideNetworkPolicy/host", "CiliumNetworkPolicy/x/dns"]);
    expect(r.warnings.map((w) => w.code).sort()).toEqual(["host-policy-not-enforced"]);
  });
});
