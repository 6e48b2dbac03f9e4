// Unit tests per rule kind: each compiles a small cluster and checks verdicts through the explanation
// API (which uses the datapath-semantics lookup on the compiled entries) and, where it matters, the
// entries themselves.
import { describe, expect, it } from "vitest";
import { encodeEntries, explainFlow, PolicyBudgetError } from "./index.ts";
import { compileYaml, podsYaml, verdict } from "./test-helpers.ts";

const base = podsYaml(
  [
    { ns: "x", name: "a", labels: { app: "a", tier: "fe" }, ports: [{ name: "http", port: 8080 }] },
    { ns: "x", name: "b", labels: { app: "b", tier: "be" }, ports: [{ name: "http", port: 9090 }] },
    { ns: "y", name: "a", labels: { app: "a" }, ports: [{ name: "http", port: 7070 }] },
    { ns: "y", name: "c", labels: { app: "c", env: "prod" } },
  ],
  { x: { team: "blue" }, y: { team: "red" } },
);

const cnp = (ns: string, name: string, spec: string, kind = "CiliumNetworkPolicy") =>
  `\n---\napiVersion: cilium.io/v2\nkind: ${kind}\nmetadata: {name: ${name}${ns ? `, namespace: ${ns}` : ""}}\n${spec}`;

describe("enforcement", () => {
  it("no policy: everything allowed, allow-all entries in both directions", () => {
    const { compiled } = compileYaml(base);
    expect(verdict(compiled, "x/a", "y/c", "TCP", 80)).toBe("allowed");
    const ep = compiled.endpoints.get("x/a")!;
    expect(ep.enforced).toEqual({ ingress: false, egress: false });
    const e = explainFlow(compiled, { from: { pod: "x/a" }, to: { pod: "y/c" }, protocol: "TCP", port: 80 });
    expect(e.ingress.reason).toMatch(/no policy selects this endpoint in ingress: allowed/);
  });
  it("selected but nothing allows: default deny (133) with explanation", () => {
    const { compiled } = compileYaml(base + cnp("x", "deny-all", "spec:\n  endpointSelector: {}\n  ingress: [{}]"));
    const e = explainFlow(compiled, { from: { pod: "y/c" }, to: { pod: "x/a" }, protocol: "TCP", port: 80 });
    expect(e.verdict).toBe("denied");
    expect(e.ingress.dropReason).toBe(133);
    expect(e.ingress.reason).toMatch(/nothing allows this: default deny/);
    // egress of x/a untouched
    expect(verdict(compiled, "x/a", "y/c", "TCP", 80)).toBe("allowed");
  });
  it("mode always: enforced without rules; mode never: ignores rules", () => {
    const always = compileYaml(base, { policyEnforcement: "always" }).compiled;
    expect(verdict(always, "x/a", "x/b", "TCP", 80)).toBe("denied");
    const never = compileYaml(base + cnp("x", "deny-all", "spec:\n  endpointSelector: {}\n  ingress: [{}]"), { policyEnforcement: "never" }).compiled;
    expect(verdict(never, "y/c", "x/a", "TCP", 80)).toBe("allowed");
  });
  it("host (localhost) ingress is allowed by default even under default deny", () => {
    const { compiled } = compileYaml(base + cnp("x", "deny-all", "spec:\n  endpointSelector: {}\n  ingress: [{}]"));
    expect(verdict(compiled, { entity: "host" }, "x/a", "TCP", 80)).toBe("allowed");
    const off = compileYaml(base + cnp("x", "deny-all", "spec:\n  endpointSelector: {}\n  ingress: [{}]"), { allowLocalhost: false }).compiled;
    expect(verdict(off, { entity: "host" }, "x/a", "TCP", 80)).toBe("denied");
  });
  it("enableDefaultDeny false: enforced, unmatched traffic allowed, deny rules still apply", () => {
    const { compiled } = compileYaml(
      base + cnp("x", "p", "spec:\n  endpointSelector: {matchLabels: {app: a}}\n  enableDefaultDeny: {ingress: false}\n  ingressDeny: [{fromEndpoints: [{matchLabels: {app: b}}]}]"),
    );
    expect(compiled.endpoints.get("x/a")!.enforced.ingress).toBe(true);
    expect(verdict(compiled, "y/c", "x/a", "TCP", 80)).toBe("allowed");
    expect(verdict(compiled, "x/b", "x/a", "TCP", 80)).toBe("denied");
  });
});

describe("peers", () => {
  it("fromEndpoints is defaulted to the policy namespace", () => {
    const { compiled } = compileYaml(base + cnp("x", "p", "spec:\n  endpointSelector: {matchLabels: {app: b}}\n  ingress: [{fromEndpoints: [{matchLabels: {app: a}}]}]"));
    expect(verdict(compiled, "x/a", "x/b", "TCP", 80)).toBe("allowed");
    expect(verdict(compiled, "y/a", "x/b", "TCP", 80)).toBe("denied");
  });
  it("a peer naming the namespace label crosses namespaces", () => {
    const { compiled } = compileYaml(
      base + cnp("x", "p", "spec:\n  endpointSelector: {matchLabels: {app: b}}\n  ingress: [{fromEndpoints: [{matchLabels: {app: a, k8s:io.kubernetes.pod.namespace: y}}]}]"),
    );
    expect(verdict(compiled, "y/a", "x/b", "TCP", 80)).toBe("allowed");
    expect(verdict(compiled, "x/a", "x/b", "TCP", 80)).toBe("denied");
  });
  it("namespace labels via io.cilium.k8s.namespace.labels", () => {
    const { compiled } = compileYaml(
      base + cnp("x", "p", "spec:\n  endpointSelector: {matchLabels: {app: b}}\n  ingress: [{fromEndpoints: [{matchLabels: {io.cilium.k8s.namespace.labels.team: red, io.kubernetes.pod.namespace: y}}]}]"),
    );
    expect(verdict(compiled, "y/c", "x/b", "TCP", 80)).toBe("allowed");
    expect(verdict(compiled, "x/a", "x/b", "TCP", 80)).toBe("denied");
  });
  it("CCNP: subject across namespaces; {} peer = every pod, not world", () => {
    const { compiled } = compileYaml(base + cnp("", "cc", "spec:\n  endpointSelector: {matchLabels: {app: a}}\n  ingress: [{fromEndpoints: [{}]}]", "CiliumClusterwideNetworkPolicy"));
    expect(verdict(compiled, "y/c", "x/a", "TCP", 80)).toBe("allowed");
    expect(verdict(compiled, "x/b", "y/a", "TCP", 80)).toBe("allowed");
    expect(verdict(compiled, { ip: "8.8.8.8" }, "x/a", "TCP", 80)).toBe("denied");
    expect(verdict(compiled, { entity: "remote-node" }, "x/a", "TCP", 80)).toBe("denied");
  });
  it("matchExpressions In/NotIn/Exists/DoesNotExist and source prefixes", () => {
    const mk = (expr: string) =>
      compileYaml(base + cnp("", "cc", `spec:\n  endpointSelector: {matchLabels: {k8s:app: c}}\n  ingress: [{fromEndpoints: [{matchExpressions: [${expr}]}]}]`, "CiliumClusterwideNetworkPolicy")).compiled;
    const inC = mk("{key: app, operator: In, values: [a, b]}");
    expect([verdict(inC, "x/a", "y/c", "TCP", 1), verdict(inC, "x/b", "y/c", "TCP", 1)]).toEqual(["allowed", "allowed"]);
    const notIn = mk("{key: k8s:app, operator: NotIn, values: [a]}");
    expect([verdict(notIn, "x/a", "y/c", "TCP", 1), verdict(notIn, "x/b", "y/c", "TCP", 1)]).toEqual(["denied", "allowed"]);
    const exists = mk("{key: tier, operator: Exists}");
    expect([verdict(exists, "x/a", "y/c", "TCP", 1), verdict(exists, "y/a", "y/c", "TCP", 1)]).toEqual(["allowed", "denied"]);
    const dne = mk("{key: any:tier, operator: DoesNotExist}");
    expect([verdict(dne, "x/a", "y/c", "TCP", 1), verdict(dne, "y/a", "y/c", "TCP", 1)]).toEqual(["denied", "allowed"]);
    const reserved = mk("{key: reserved:host, operator: Exists}");
    expect(verdict(reserved, { entity: "host" }, "y/c", "TCP", 1)).toBe("allowed");
  });
  it("fromRequires ANDs with every peer of every rule selecting the endpoint, and alone allows nothing", () => {
    const { compiled } = compileYaml(
      base +
        cnp("", "cc", "spec:\n  endpointSelector: {matchLabels: {app: c}}\n  ingress: [{fromEndpoints: [{matchLabels: {app: a}}]}]", "CiliumClusterwideNetworkPolicy") +
        cnp("y", "req", "spec:\n  endpointSelector: {}\n  ingress: [{fromRequires: [{matchLabels: {k8s:io.kubernetes.pod.namespace: x}}]}]"),
    );
    expect(verdict(compiled, "x/a", "y/c", "TCP", 80)).toBe("allowed");
    expect(verdict(compiled, "y/a", "y/c", "TCP", 80)).toBe("denied");
    expect(verdict(compiled, "x/b", "y/c", "TCP", 80)).toBe("denied");
    // y/a is selected only by the requires-only policy: default deny, nothing allowed.
    expect(verdict(compiled, "x/a", "y/a", "TCP", 80)).toBe("denied");
  });
  it("entities: world, cluster, host, all, none, remote-node, kube-apiserver", () => {
    const mk = (e: string) => compileYaml(base + cnp("x", "p", `spec:\n  endpointSelector: {matchLabels: {app: a}}\n  ingress: [{fromEntities: [${e}]}]`)).compiled;
    const world = mk("world");
    expect([verdict(world, { ip: "1.1.1.1" }, "x/a", "TCP", 1), verdict(world, "x/b", "x/a", "TCP", 1)]).toEqual(["allowed", "denied"]);
    const cluster = mk("cluster");
    expect([verdict(cluster, "y/c", "x/a", "TCP", 1), verdict(cluster, { entity: "remote-node" }, "x/a", "TCP", 1), verdict(cluster, { ip: "1.1.1.1" }, "x/a", "TCP", 1)]).toEqual([
      "allowed",
      "allowed",
      "denied",
    ]);
    const all = mk("all");
    expect(verdict(all, { ip: "1.1.1.1" }, "x/a", "TCP", 1)).toBe("allowed");
    const none = mk("none");
    expect(verdict(none, "x/b", "x/a", "TCP", 1)).toBe("denied");
    const rn = mk("remote-node");
    expect([verdict(rn, { entity: "remote-node" }, "x/a", "TCP", 1), verdict(rn, { entity: "kube-apiserver" }, "x/a", "TCP", 1)]).toEqual(["allowed", "allowed"]);
    const api = mk("kube-apiserver");
    expect([verdict(api, { entity: "remote-node" }, "x/a", "TCP", 1), verdict(api, { entity: "kube-apiserver" }, "x/a", "TCP", 1)]).toEqual(["denied", "allowed"]);
  });
  it("CIDR with except allocates CIDR identities and never selects pods", () => {
    const pods = podsYaml([
      { ns: "x", name: "a", labels: { app: "a" }, ip: "10.244.0.5" },
      { ns: "x", name: "b", labels: { app: "b" }, ip: "10.244.0.6" },
    ]);
    const { compiled } = compileYaml(pods + cnp("x", "p", "spec:\n  endpointSelector: {matchLabels: {app: a}}\n  ingress: [{fromCIDRSet: [{cidr: 10.0.0.0/8, except: [10.1.0.0/16]}]}]"));
    expect(compiled.cidrIdentities).toEqual([
      { prefix: "10.0.0.0/8", identity: (1 << 24) | 1 },
      { prefix: "10.1.0.0/16", identity: (1 << 24) | 2 },
    ]);
    expect(verdict(compiled, { ip: "10.9.9.9" }, "x/a", "TCP", 80)).toBe("allowed");
    expect(verdict(compiled, { ip: "10.1.2.3" }, "x/a", "TCP", 80)).toBe("denied");
    expect(verdict(compiled, { ip: "11.0.0.1" }, "x/a", "TCP", 80)).toBe("denied");
    expect(verdict(compiled, { ip: "10.244.0.6" }, "x/a", "TCP", 80)).toBe("denied");
  });
  it("toServices: selector services become their pods; selector-less services their endpoint IPs", () => {
    const y =
      base +
      `\n---\napiVersion: v1\nkind: Service\nmetadata: {name: svc-b, namespace: x}\nspec: {selector: {app: b}, ports: [{port: 80}]}` +
      `\n---\napiVersion: v1\nkind: Service\nmetadata: {name: ext, namespace: x}\nspec: {ports: [{port: 443}]}` +
      `\n---\napiVersion: discovery.k8s.io/v1\nkind: EndpointSlice\nmetadata: {name: ext-1, namespace: x, labels: {kubernetes.io/service-name: ext}}\naddressType: IPv4\nendpoints: [{addresses: [192.0.2.10]}]` +
      cnp("x", "p", "spec:\n  endpointSelector: {matchLabels: {app: a}}\n  egress: [{toServices: [{k8sService: {serviceName: svc-b}}, {k8sService: {serviceName: ext, namespace: x}}]}]");
    const { compiled } = compileYaml(y);
    expect(verdict(compiled, "x/a", "x/b", "TCP", 9090)).toBe("allowed");
    expect(verdict(compiled, "x/a", "y/c", "TCP", 9090)).toBe("denied");
    expect(verdict(compiled, "x/a", { ip: "192.0.2.10" }, "TCP", 443)).toBe("allowed");
    expect(verdict(compiled, "x/a", { ip: "192.0.2.11" }, "TCP", 443)).toBe("denied");
  });
});

describe("ports", () => {
  it("toPorts without protocol means TCP, UDP and SCTP; endPort ranges", () => {
    const { compiled } = compileYaml(base + cnp("x", "p", "spec:\n  endpointSelector: {matchLabels: {app: a}}\n  ingress: [{toPorts: [{ports: [{port: '8000', endPort: 8010}]}]}]"));
    for (const proto of ["TCP", "UDP", "SCTP"] as const) {
      expect(verdict(compiled, "y/c", "x/a", proto, 8000)).toBe("allowed");
      expect(verdict(compiled, "y/c", "x/a", proto, 8010)).toBe("allowed");
      expect(verdict(compiled, "y/c", "x/a", proto, 8011)).toBe("denied");
    }
    expect(verdict(compiled, "y/c", "x/a", "ICMP", 8)).toBe("denied");
  });
  it("named ports resolve per destination pod (ingress: own ports; egress: each peer's ports)", () => {
    const ing = compileYaml(base + cnp("", "cc", "spec:\n  endpointSelector: {matchLabels: {app: a}}\n  ingress: [{toPorts: [{ports: [{port: http, protocol: TCP}]}]}]", "CiliumClusterwideNetworkPolicy")).compiled;
    expect(verdict(ing, "y/c", "x/a", "TCP", 8080)).toBe("allowed");
    expect(verdict(ing, "y/c", "x/a", "TCP", 7070)).toBe("denied");
    expect(verdict(ing, "y/c", "y/a", "TCP", 7070)).toBe("allowed");
    const eg = compileYaml(base + cnp("y", "p", "spec:\n  endpointSelector: {matchLabels: {app: c}}\n  egress: [{toEndpoints: [{matchLabels: {k8s:io.kubernetes.pod.namespace: x}}], toPorts: [{ports: [{port: http}]}]}]")).compiled;
    expect(verdict(eg, "y/c", "x/a", "TCP", 8080)).toBe("allowed");
    expect(verdict(eg, "y/c", "x/a", "TCP", 9090)).toBe("denied");
    expect(verdict(eg, "y/c", "x/b", "TCP", 9090)).toBe("allowed");
  });
  it("icmps: numbers and names, IPv4 and IPv6", () => {
    const { compiled } = compileYaml(
      base + cnp("x", "p", "spec:\n  endpointSelector: {matchLabels: {app: a}}\n  ingress: [{icmps: [{fields: [{type: EchoRequest}, {family: IPv6, type: 128}]}]}]"),
    );
    expect(verdict(compiled, "y/c", "x/a", "ICMP", 8)).toBe("allowed");
    expect(verdict(compiled, "y/c", "x/a", "ICMP", 0)).toBe("denied");
    expect(verdict(compiled, "y/c", "x/a", "ICMPv6", 128)).toBe("allowed");
    expect(verdict(compiled, "y/c", "x/a", "TCP", 8)).toBe("denied");
  });
});

describe("deny", () => {
  it("a matching deny wins over any allow (181), and prunes covered allows", () => {
    const { compiled } = compileYaml(
      base +
        cnp("x", "allow", "spec:\n  endpointSelector: {matchLabels: {app: a}}\n  ingress: [{fromEntities: [all], toPorts: [{ports: [{port: '80', protocol: TCP}]}]}]") +
        cnp("x", "deny", "spec:\n  endpointSelector: {matchLabels: {app: a}}\n  ingressDeny: [{fromEndpoints: [{matchLabels: {app: b}}]}]"),
    );
    const e = explainFlow(compiled, { from: { pod: "x/b" }, to: { pod: "x/a" }, protocol: "TCP", port: 80 });
    expect(e.ingress.dropReason).toBe(181);
    expect(e.ingress.rules[0].name).toBe("deny");
    expect(verdict(compiled, "y/c", "x/a", "TCP", 80)).toBe("allowed");
  });
  it("egressDeny with ports", () => {
    const { compiled } = compileYaml(
      base + cnp("x", "p", "spec:\n  endpointSelector: {matchLabels: {app: a}}\n  egress: [{toEntities: [all]}]\n  egressDeny: [{toEntities: [world], toPorts: [{ports: [{port: '53', protocol: UDP}]}]}]"),
    );
    expect(verdict(compiled, "x/a", { ip: "8.8.8.8" }, "UDP", 53)).toBe("denied");
    expect(verdict(compiled, "x/a", { ip: "8.8.8.8" }, "TCP", 53)).toBe("allowed");
    expect(verdict(compiled, "x/a", "x/b", "UDP", 53)).toBe("allowed");
  });
});

describe("L7 HTTP", () => {
  const y =
    base +
    cnp(
      "x",
      "l7",
      "spec:\n  endpointSelector: {matchLabels: {app: a}}\n  ingress:\n  - fromEndpoints: [{matchLabels: {app: b}}]\n    toPorts: [{ports: [{port: '8080', protocol: TCP}], rules: {http: [{method: GET, path: /public/.*}, {method: POST, path: /api, headers: ['X-Token: s3cret']}]}}]\n  - fromEndpoints: [{matchLabels: {tier: fe}}]\n    toPorts: [{ports: [{port: '8080', protocol: TCP}]}]",
    );
  it("a port with HTTP rules is a proxy redirect; denied requests get 403", () => {
    const { compiled } = compileYaml(y);
    const ok = explainFlow(compiled, { from: { pod: "x/b" }, to: { pod: "x/a" }, protocol: "TCP", port: 8080, http: { method: "GET", path: "/public/x" } });
    expect(ok.verdict).toBe("allowed");
    expect(ok.ingress.lookup!.proxyPort).toBe(10000);
    expect(ok.ingress.l7!.rule!.index).toBe(0);
    const bad = explainFlow(compiled, { from: { pod: "x/b" }, to: { pod: "x/a" }, protocol: "TCP", port: 8080, http: { method: "GET", path: "/publicity" } });
    expect(bad.verdict).toBe("denied");
    expect(bad.ingress.l7!.status).toBe(403);
    expect(bad.ingress.dropReason).toBe(0);
    const hdr = (h: Record<string, string>) => explainFlow(compiled, { from: { pod: "x/b" }, to: { pod: "x/a" }, protocol: "TCP", port: 8080, http: { method: "POST", path: "/api", headers: h } }).verdict;
    expect(hdr({ "x-token": "s3cret" })).toBe("allowed");
    expect(hdr({ "x-token": "nope" })).toBe("denied");
  });
  it("peers without L7 rules on a redirected port are redirected with allow-all HTTP", () => {
    const { compiled } = compileYaml(y);
    // x/a itself has tier fe: every request allowed through the proxy.
    const e = explainFlow(compiled, { from: { pod: "x/a" }, to: { pod: "x/a" }, protocol: "TCP", port: 8080, http: { method: "DELETE", path: "/x" } });
    expect(e.ingress.lookup!.proxyPort).toBe(10000);
    expect(e.verdict).toBe("allowed");
  });
});

describe("L7 and L3-only rules", () => {
  it("an L3-only allow is not restricted by another rule's HTTP rules on the same endpoint", () => {
    const { compiled } = compileYaml(
      base +
        cnp(
          "x",
          "l7",
          "spec:\n  endpointSelector: {matchLabels: {app: a}}\n  ingress:\n  - toPorts: [{ports: [{port: '8080', protocol: TCP}], rules: {http: [{method: GET}]}}]\n  - fromEndpoints: [{matchLabels: {app: b}}]",
        ),
    );
    const req = (from: string, method: string) => explainFlow(compiled, { from: { pod: from }, to: { pod: "x/a" }, protocol: "TCP", port: 8080, http: { method, path: "/" } });
    expect(req("y/c", "GET").verdict).toBe("allowed");
    expect(req("y/c", "POST").verdict).toBe("denied");
    const b = req("x/b", "POST");
    expect(b.verdict).toBe("allowed");
    expect(b.ingress.lookup!.proxyPort).toBe(10000);
  });
});

describe("map encoding and budget", () => {
  it("encodeEntries uses the core layout prefix lengths and flags", () => {
    const { compiled } = compileYaml(
      base + cnp("x", "p", "spec:\n  endpointSelector: {matchLabels: {app: a}}\n  ingress: [{toPorts: [{ports: [{port: '16', endPort: 31, protocol: TCP}]}]}]\n  ingressDeny: [{fromEntities: [world]}]"),
    );
    const enc = encodeEntries(7, compiled.endpoints.get("x/a")!.entries);
    const range = enc.find((e) => e.key.protocol === 6 && e.key.secLabel === 0)!;
    expect(range.key).toMatchObject({ prefixlen: 56 + 8 + 12, epId: 7, egress: 0, dport: 16 });
    expect(range.value).toMatchObject({ lpmPrefixLength: 20, flags: 0 });
    const deny = enc.find((e) => e.key.secLabel === 2 && e.key.egress === 0)!;
    expect(deny.key.prefixlen).toBe(56);
    expect(deny.value.flags).toBe(1);
    const egressAll = enc.find((e) => e.key.egress === 1)!;
    expect(egressAll.key).toMatchObject({ secLabel: 0, prefixlen: 56 });
    for (const e of enc) expect(compiled.provenance.get(e.value.cookie)).toBeDefined();
  });
  it("budget overflow names the endpoint and the policies", () => {
    const { compiled } = compileYaml(
      base + cnp("x", "wide", "spec:\n  endpointSelector: {matchLabels: {app: a}}\n  ingress: [{toPorts: [{ports: [{port: '1', endPort: 1000}]}]}]"),
      { policyMapMax: 20 },
    );
    expect(compiled.errors).toHaveLength(1);
    const err = compiled.errors[0] as PolicyBudgetError;
    expect(err.code).toBe("policy-map-overflow");
    expect(err.endpoint).toBe("x/a");
    expect(err.message).toMatch(/CiliumNetworkPolicy\/x\/wide/);
  });
  it("is deterministic: same manifests, same identities, cookies and proxy ports", () => {
    const a = compileYaml(base + cnp("x", "p", "spec:\n  endpointSelector: {}\n  ingress: [{fromCIDR: [10.0.0.0/8, 192.168.0.0/16]}]")).compiled;
    const b = compileYaml(base + cnp("x", "p", "spec:\n  endpointSelector: {}\n  ingress: [{fromCIDR: [192.168.0.0/16, 10.0.0.0/8]}]")).compiled;
    expect([...a.identities.podIdentity]).toEqual([...b.identities.podIdentity]);
    expect(a.cidrIdentities).toEqual(b.cidrIdentities);
    expect(JSON.stringify([...a.endpoints.values()].map((e) => e.entries.map((x) => [x.key, x.cookie])))).toBe(
      JSON.stringify([...b.endpoints.values()].map((e) => e.entries.map((x) => [x.key, x.cookie]))),
    );
  });
});
