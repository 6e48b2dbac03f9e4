// One test per validation error: each policy must be refused with the expected code and a line number,
// while a valid policy in the same input is still applied. A problem is found either by the schema
// (policy/schema.ts, as the API server would refuse the object) or by Cilium's sanitize rules (buildRules);
// `codes` reports both, as a run does.
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

function loadAndBuild(yaml: string, file = "v.yaml") {
  const l = parseManifests(yaml, file);
  const r = buildRules(l.objects);
  return { ...r, refused: [...l.refused, ...r.refused], problems: [...l.errors, ...r.problems] };
}

function codes(yaml: string) {
  const r = loadAndBuild(yaml);
  expect(r.applied).toContain("CiliumNetworkPolicy x/good");
  return r;
}

const cases: [string, string, string][] = [
  ["endpointSelector with nodeSelector", "spec:\n  endpointSelector: {}\n  nodeSelector: {}\n", "invalid-value"],
  ["neither selector", "spec:\n  ingress: [{}]\n", "missing-field"],
  ["invalid CIDR", "spec:\n  endpointSelector: {}\n  ingress: [{fromCIDR: [10.0.0.300/8]}]\n", "invalid-cidr"],
  ["except outside its CIDR", "spec:\n  endpointSelector: {}\n  egress: [{toCIDRSet: [{cidr: 10.0.0.0/8, except: [192.168.0.0/16]}]}]\n", "except-outside-cidr"],
  ["port out of range", "spec:\n  endpointSelector: {}\n  ingress: [{toPorts: [{ports: [{port: '70000'}]}]}]\n", "port-out-of-range"],
  [
    "more than 40 ports",
    "spec:\n  endpointSelector: {}\n  ingress: [{toPorts: [{ports: [" + Array.from({ length: 41 }, (_, i) => `{port: '${i + 1}'}`).join(",") + "]}]}]\n",
    "invalid-value",
  ],
  ["L7 on a deny rule", "spec:\n  endpointSelector: {}\n  ingressDeny: [{toPorts: [{ports: [{port: '80'}], rules: {http: [{}]}}]}]\n", "unknown-field"],
  ["two L7 kinds", "spec:\n  endpointSelector: {}\n  ingress: [{toPorts: [{ports: [{port: '80'}], rules: {http: [{}], kafka: [{topic: t}]}}]}]\n", "invalid-value"],
  ["HTTP regex that does not compile", "spec:\n  endpointSelector: {}\n  ingress: [{toPorts: [{ports: [{port: '80'}], rules: {http: [{path: '/a(['}]}}]}]\n", "invalid-http-regex"],
  ["unknown entity", "spec:\n  endpointSelector: {}\n  ingress: [{fromEntities: [galaxy]}]\n", "invalid-value"],
  ["In without values", "spec:\n  endpointSelector: {matchExpressions: [{key: app, operator: In}]}\n  ingress: [{}]\n", "selector-values-required"],
  ["NotIn without values", "spec:\n  endpointSelector: {matchExpressions: [{key: app, operator: NotIn, values: []}]}\n  ingress: [{}]\n", "selector-values-required"],
  ["Exists with values", "spec:\n  endpointSelector: {matchExpressions: [{key: app, operator: Exists, values: [a]}]}\n  ingress: [{}]\n", "selector-values-forbidden"],
  ["unknown operator", "spec:\n  endpointSelector: {matchExpressions: [{key: app, operator: Near}]}\n  ingress: [{}]\n", "invalid-value"],
  ["ICMP type out of range", "spec:\n  endpointSelector: {}\n  ingress: [{icmps: [{fields: [{type: 300}]}]}]\n", "icmp-type-out-of-range"],
  ["unknown ICMP type name", "spec:\n  endpointSelector: {}\n  ingress: [{icmps: [{fields: [{family: IPv6, type: Bogus}]}]}]\n", "invalid-value"],
  ["unknown protocol", "spec:\n  endpointSelector: {}\n  ingress: [{toPorts: [{ports: [{port: '80', protocol: QUIC}]}]}]\n", "invalid-value"],
  ["invalid DNS pattern", "spec:\n  endpointSelector: {}\n  egress: [{toPorts: [{ports: [{port: '53'}], rules: {dns: [{matchPattern: 'a b'}]}}]}]\n", "invalid-value"],
  ["invalid kafka role", "spec:\n  endpointSelector: {}\n  egress: [{toPorts: [{ports: [{port: '9092'}], rules: {kafka: [{role: write}]}}]}]\n", "invalid-value"],
  ["DNS matchName with a wildcard", "spec:\n  endpointSelector: {}\n  egress: [{toPorts: [{ports: [{port: '53'}], rules: {dns: [{matchName: '*.io'}]}}]}]\n", "invalid-value"],
  ["DNS matchName and matchPattern together", "spec:\n  endpointSelector: {}\n  egress: [{toPorts: [{ports: [{port: '53'}], rules: {dns: [{matchName: a.io, matchPattern: '*.io'}]}}]}]\n", "invalid-value"],
  ["toFQDNs pattern with a space", "spec:\n  endpointSelector: {}\n  egress: [{toFQDNs: [{matchPattern: 'a b'}]}]\n", "invalid-value"],
  ["toFQDNs combined with toEndpoints", "spec:\n  endpointSelector: {}\n  egress: [{toEndpoints: [{}], toFQDNs: [{matchName: a.io}]}]\n", "combined-l3"],
  ["toFQDNs in egressDeny", "spec:\n  endpointSelector: {}\n  egressDeny: [{toFQDNs: [{matchName: a.io}]}]\n", "unknown-field"],
  ["nodeSelector in a namespaced policy", "spec:\n  nodeSelector: {}\n  ingress: [{}]\n", "node-selector-namespaced"],
  ["no spec", "", "rule-missing"],
  ["an unknown field (strict field validation)", "spec:\n  endpointSelector: {}\n  ingress: [{fromEndpoint: [{}]}]\n", "unknown-field"],
  ["a field of the wrong type", "spec:\n  endpointSelector: {}\n  ingress: [{toPorts: [{ports: [{port: 80}]}]}]\n", "invalid-type"],
];

describe("validation refuses what Cilium refuses", () => {
  for (const [name, spec, code] of cases)
    it(name, () => {
      const r = codes(cnp(spec));
      expect(r.refused).toEqual(["CiliumNetworkPolicy x/bad"]);
      expect(r.problems.map((p) => p.code)).toContain(code);
      const p = r.problems.find((x) => x.code === code)!;
      expect(p.file).toBe("v.yaml");
      expect(p.doc).toBe(0);
      expect(p.line).toBeGreaterThan(0);
      expect(r.rules.every((x) => x.origin.name === "good")).toBe(true);
    });

  it("reports every problem, not just the first, with field paths", () => {
    const r = codes(cnp("spec:\n  endpointSelector: {}\n  ingress:\n  - fromCIDRSet: [{cidr: 10.0.0.0/8, except: [11.0.0.0/8]}]\n  - fromCIDR: [nope]\n    toPorts: [{ports: [{port: '99999'}]}]\n"));
    expect(r.problems.map((p) => p.code).sort()).toEqual(["except-outside-cidr", "invalid-cidr", "port-out-of-range"]);
    const cidr = r.problems.find((p) => p.code === "invalid-cidr")!;
    expect(cidr.path).toBe("spec.ingress[1].fromCIDR[0]");
    expect(cidr.line).toBe(10);
    expect(cidr.message).toMatch(/v\.yaml: document 0, line 10: CiliumNetworkPolicy x\/bad spec\.ingress\[1\]\.fromCIDR\[0\]/);
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
    const r = loadAndBuild(y, "np.yaml");
    expect(r.refused).toEqual(["NetworkPolicy x/np"]);
    expect(r.problems.map((p) => p.code).sort()).toEqual(["except-outside-cidr", "invalid-end-port", "invalid-policy-type"]);
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
    const r = loadAndBuild(y, "w.yaml");
    expect(r.problems).toEqual([]);
    expect(r.applied).toEqual(["CiliumClusterwideNetworkPolicy host", "CiliumNetworkPolicy x/dns"]);
    expect(r.warnings.map((w) => w.code).sort()).toEqual(["host-policy-not-enforced"]);
  });
});

// Cilium's sanitize rules (cilium/cilium pkg/policy/api/rule_validation.go), each with Cilium's message,
// for objects the CRD schema accepts.
const sanitize: [string, string, string, string][] = [
  ["EgressRule.sanitize: toFQDNs with another L3 peer", "spec:\n  endpointSelector: {}\n  egress: [{toEndpoints: [{}], toFQDNs: [{matchName: a.io}]}]\n", "combined-l3", "Combining ToEndpoints and ToFQDNs is not supported yet"],
  ["combining two kinds of L3 peer", "spec:\n  endpointSelector: {}\n  ingress: [{fromEndpoints: [{}], fromCIDR: [10.0.0.0/8]}]\n", "combined-l3", "Combining FromEndpoints and FromCIDR is not supported yet"],
  ["toServices with toPorts", "spec:\n  endpointSelector: {}\n  egress: [{toServices: [{k8sService: {serviceName: s}}], toPorts: [{ports: [{port: '80'}]}]}]\n", "services-with-ports", "Combining ToServices and ToPorts is not supported yet"],
  ["icmps with toPorts", "spec:\n  endpointSelector: {}\n  ingress: [{icmps: [{fields: [{type: 8}]}], toPorts: [{ports: [{port: '80'}]}]}]\n", "icmps-with-ports", "The ICMPs block may only be present without ToPorts. Define a separate rule to use ToPorts."],
  ["DNS rules on ingress", "spec:\n  endpointSelector: {}\n  ingress: [{toPorts: [{ports: [{port: '53', protocol: UDP}], rules: {dns: [{matchPattern: '*'}]}}]}]\n", "l7-dns-on-ingress", "L7 protocol DNS is not supported on ingress yet"],
  ["L7 rules on UDP", "spec:\n  endpointSelector: {}\n  ingress: [{toPorts: [{ports: [{port: '80', protocol: UDP}], rules: {http: [{}]}}]}]\n", "l7-not-tcp", "L7 rules can only apply to TCP (not UDP) except for DNS rules"],
  ["L7 rules without a protocol (ANY)", "spec:\n  endpointSelector: {}\n  ingress: [{toPorts: [{ports: [{port: '80'}], rules: {http: [{}]}}]}]\n", "l7-not-tcp", "L7 rules can only apply to TCP (not ANY) except for DNS rules"],
  ["L7 rules on port 0", "spec:\n  endpointSelector: {}\n  ingress: [{toPorts: [{ports: [{port: '0', protocol: TCP}], rules: {http: [{}]}}]}]\n", "l7-port-zero", "L7 rules can not be used when a port is 0"],
  ["DNS rules without ports", "spec:\n  endpointSelector: {}\n  egress: [{toPorts: [{rules: {dns: [{matchPattern: '*'}]}}]}]\n", "dns-port-required", "Port 53 must be specified for DNS rules"],
  ["DNS rules on a port range", "spec:\n  endpointSelector: {}\n  egress: [{toPorts: [{ports: [{port: '53', endPort: 54, protocol: UDP}], rules: {dns: [{matchPattern: '*'}]}}]}]\n", "dns-port-range", "DNS rules do not support port ranges"],
  ["a listener on ingress", "spec:\n  endpointSelector: {}\n  ingress: [{toPorts: [{ports: [{port: '80', protocol: TCP}], listener: {envoyConfig: {kind: CiliumEnvoyConfig, name: e}, name: l}}]}]\n", "listener-on-ingress", "Listener is not allowed on ingress (l)"],
  ["a listener with L7 rules", "spec:\n  endpointSelector: {}\n  egress: [{toPorts: [{ports: [{port: '80', protocol: TCP}], listener: {envoyConfig: {kind: CiliumEnvoyConfig, name: e}, name: l}, rules: {http: [{}]}}]}]\n", "listener-with-l7", "Listener is not allowed with L7 rules (l)"],
  ["serverNames with L7 rules without TLS termination", "spec:\n  endpointSelector: {}\n  egress: [{toPorts: [{ports: [{port: '443', protocol: TCP}], serverNames: [a.example], rules: {http: [{}]}}]}]\n", "server-names-with-l7", "ServerNames are not allowed with L7 rules without TLS termination"],
  ["L7 rules in a host policy", "spec:\n  nodeSelector: {}\n  ingress: [{toPorts: [{ports: [{port: '80', protocol: TCP}], rules: {http: [{}]}}]}]\n", "host-policy-l7", "host policies do not support L7 rules yet"],
  ["both selectors", "", "selector-conflict", "rule cannot have both EndpointSelector and NodeSelector"],
];

describe("Cilium's sanitize rules, with Cilium's messages", () => {
  for (const [name, spec, code, message] of sanitize)
    it(name, () => {
      const kind = code === "host-policy-l7" ? "CiliumClusterwideNetworkPolicy" : "CiliumNetworkPolicy";
      if (code === "selector-conflict") {
        // The CRD schema already refuses both selectors; the sanitize rule still guards rules built in code.
        const r = loadAndBuild(cnp("spec:\n  endpointSelector: {}\n  nodeSelector: {}\n  ingress: [{}]\n", "CiliumClusterwideNetworkPolicy"));
        expect(r.problems.map((p) => p.detail)).toContain("only one of endpointSelector, nodeSelector may be set");
        return;
      }
      const r = codes(cnp(spec, kind));
      const p = r.problems.find((x) => x.code === code);
      expect(p, JSON.stringify(r.problems.map((x) => x.message))).toBeDefined();
      expect(p!.detail).toBe(message);
      expect(r.refused).toEqual([kind === "CiliumNetworkPolicy" ? "CiliumNetworkPolicy x/bad" : "CiliumClusterwideNetworkPolicy bad"]);
    });

  it("some sanitize rules are already enforced by the CRD schema (empty server name, l7 without l7proto); a missing port is Cilium's own check", () => {
    for (const [spec, detail] of [
      ["spec:\n  endpointSelector: {}\n  egress: [{toPorts: [{ports: [{port: '443', protocol: TCP}], serverNames: ['']}]}]\n", /does not match the schema's pattern/],
      // Optional in the schema (VRRP and IGMP have no port); refused by Cilium's PortProtocol check unless
      // enable-extended-ip-protocols is on.
      ["spec:\n  endpointSelector: {}\n  ingress: [{toPorts: [{ports: [{protocol: TCP}]}]}]\n", /^Port must be specified$/],
      ["spec:\n  endpointSelector: {}\n  egress: [{toPorts: [{ports: [{port: '80', protocol: TCP}], rules: {l7: [{a: b}]}}]}]\n", /one of http, kafka, dns, l7proto is required/],
    ] as const) {
      const r = codes(cnp(spec));
      expect(r.refused).toEqual(["CiliumNetworkPolicy x/bad"]);
      expect(r.problems[0]!.detail).toMatch(detail);
    }
  });

  it("serverNames alone are TLS SNI rules, enforced by the TLS proxy: applied, not refused", () => {
    const r = codes(cnp("spec:\n  endpointSelector: {}\n  egress: [{toPorts: [{ports: [{port: '443', protocol: TCP}], serverNames: [a.example]}]}]\n"));
    expect(r.problems).toEqual([]);
    expect(r.refused).toEqual([]);
  });

  it("what ciliate cannot enforce is refused, never ignored: listener, TLS, serverNames with L7 rules, authentication", () => {
    for (const [spec, code] of [
      ["spec:\n  endpointSelector: {}\n  egress: [{toPorts: [{ports: [{port: '80', protocol: TCP}], listener: {envoyConfig: {kind: CiliumEnvoyConfig, name: e}, name: l}}]}]\n", "unsupported-listener"],
      ["spec:\n  endpointSelector: {}\n  egress: [{toPorts: [{ports: [{port: '443', protocol: TCP}], serverNames: [a.example], rules: {http: [{}]}}]}]\n", "server-names-with-l7"],
      ["spec:\n  endpointSelector: {}\n  egress: [{toPorts: [{ports: [{port: '443', protocol: TCP}], terminatingTLS: {secret: {name: s}}, rules: {http: [{}]}}]}]\n", "unsupported-tls"],
      ["spec:\n  endpointSelector: {}\n  ingress: [{fromEndpoints: [{}], authentication: {mode: required}}]\n", "unsupported-authentication"],
    ] as const) {
      const r = codes(cnp(spec));
      expect(r.problems.map((p) => p.code)).toContain(code);
    }
  });
});

describe("node selectors in rules", () => {
  it("fromNodes is refused with Cilium's message for the default agent configuration", () => {
    const r = codes(cnp("spec:\n  endpointSelector: {}\n  ingress: [{fromNodes: [{matchLabels: {role: worker}}]}]\n"));
    expect(r.problems.map((p) => p.detail)).toEqual(['FromNodes/ToNodes rules can only be applied when the "enable-node-selector-labels" flag is set']);
  });
});
