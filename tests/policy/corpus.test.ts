// The corpus: public policy manifests nobody here wrote (tests/policy/corpus/: Cilium's examples, the Kubernetes
// documentation, a NetworkPolicy recipes collection; origin and license in each
// file's first line). Every one loads with a known outcome — applied (enforced), applied with a warning
// that names what is not enforced, or refused with a message that names the unsupported feature — and
// no field of an applied policy is silently ignored: a field ciliate does not enforce must be named by a
// warning or a problem.
import { readdirSync, readFileSync } from "node:fs";
import { join } from "node:path";
import { describe, expect, it } from "vitest";
import { buildRules } from "../../policy/index.ts";
import { parseManifests } from "../../policy/manifest-loader.ts";

const ROOT = new URL("./corpus/", import.meta.url).pathname;

/** `agent`: the agent options the file needs (Cilium's enable-node-selector-labels for node selectors,
 * enable-extended-ip-protocols for VRRP/IGMP); tests/policy/nodes.test.ts and extended-protocols.test.ts
 * check that the same files are refused without them. */
type Expect = ({ outcome: "applied" } | { outcome: "warned" | "refused"; names: RegExp }) & { agent?: { nodeSelectorLabels?: boolean; extendedIPProtocols?: boolean } };

// Kafka rules, DNS rules and serverNames (TLS SNI) are enforced by their proxies (policy/l7/); toFQDNs by
// the FQDN cache. An applied policy's every field is checked below, so none is ignored without a word.
const EXPECTED: Record<string, Expect> = {
  "kubernetes/networkpolicy.yaml": { outcome: "applied" },
  "kubernetes/networkpolicy-multiport-egress.yaml": { outcome: "applied" },
  "kubernetes/network-policy-default-deny-all.yaml": { outcome: "applied" },
  "kubernetes/network-policy-allow-all-egress-deny-all-ingress.yaml": { outcome: "applied" },
  "kubernetes/network-policy-allow-all-ingress.yaml": { outcome: "applied" },
  "kubernetes/network-policy-allow-all-egress.yaml": { outcome: "applied" },
  "kubernetes/network-policy-default-deny-egress.yaml": { outcome: "applied" },
  "kubernetes/network-policy-default-deny-ingress.yaml": { outcome: "applied" },
  "kubernetes/nginx-policy.yaml": { outcome: "applied" },
  "cilium/getting-started_l3-l4-policy.yaml": { outcome: "applied" },
  "cilium/getting-started_l7-policy.yaml": { outcome: "applied" },
  // A top-level `description` is not part of the CRD: `kubectl apply` refuses it as an unknown field.
  "cilium/getting-started_kafka.yaml": { outcome: "refused", names: /unknown field "description"/ },
  "cilium/l7_kafka_kafka.yaml": { outcome: "refused", names: /unknown field "description"/ },
  "cilium/l3_requires_requires.yaml": { outcome: "refused", names: /unknown field "description"/ },
  "cilium/kubernetes_clusterwide_wildcard-from-endpoints.yaml": { outcome: "refused", names: /unknown field "description"/ },
  // toFQDNs and DNS rules are enforced by the DNS proxy and the FQDN cache (docs/l7.md).
  "cilium/getting-started_dns-matchname.yaml": { outcome: "applied" },
  "cilium/l3_fqdn_fqdn.yaml": { outcome: "applied" },
  "cilium/l7_dns_dns.yaml": { outcome: "applied" },
  "cilium/l4_envoy_listener_redirect.yaml": { outcome: "refused", names: /[Ll]istener/ },
  "cilium/l3_simple_l3.yaml": { outcome: "applied" },
  "cilium/l3_simple_l3_egress.yaml": { outcome: "applied" },
  "cilium/l3_cidr_cidr.yaml": { outcome: "applied" },
  "cilium/l3_entities_world.yaml": { outcome: "applied" },
  "cilium/l3_entities_from_world_deny.yaml": { outcome: "applied" },
  "cilium/l3_entities_nodes.yaml": { outcome: "applied" },
  // `apiversion` (lower case) is not `apiVersion`.
  "cilium/l3_entities_from_nodes.yaml": { outcome: "refused", names: /apiVersion is required.*found "apiversion"/ },
  // fromNodes needs enable-node-selector-labels (Config nodeSelectorLabels); without it Cilium refuses the
  // policy, which tests/policy/nodes.test.ts checks.
  "cilium/l3_entities_customnodes.yaml": { outcome: "applied", agent: { nodeSelectorLabels: true } },
  "cilium/l3_service_service.yaml": { outcome: "applied" },
  "cilium/l3_service_service-labels.yaml": { outcome: "applied" },
  // matchExpressions operators are case-sensitive (In, not in).
  "cilium/l3_match-expressions_or-statement.yaml": { outcome: "refused", names: /Unsupported value "in"/ },
  "cilium/l4_icmp.yaml": { outcome: "applied" },
  "cilium/l4_from_init.yaml": { outcome: "applied" },
  // `rules.HTTP` (capitalised) is not `rules.http`: refused, so the port is never left open.
  "cilium/l7_http_http.yaml": { outcome: "refused", names: /unknown field "HTTP"/ },
  "cilium/host_demo-host-policy.yaml": { outcome: "warned", names: /nodeSelector.*not enforced/ },
  "cilium/host_allow-extended-protocols.yaml": { outcome: "warned", names: /nodeSelector.*not enforced/, agent: { extendedIPProtocols: true } },
  "cilium/kubernetes_namespace_namespace-labels-policy.yaml": { outcome: "applied" },
  "cilium/kubernetes_serviceaccount_serviceaccount-policy.yaml": { outcome: "applied" },
  "cilium/auth_auth.yaml": { outcome: "refused", names: /unknown field "auth"/ },
  // `egress:` with no value is null, dropped by the API server; Cilium's CRD then wants some section.
  "cilium/l3_egress-default-deny_egress-default-deny.yaml": { outcome: "refused", names: /one of ingress, ingressDeny, egress, egressDeny is required/ },
  "cilium/l3_egress-deny_egress-deny.yaml": { outcome: "applied" },
  "cilium/l4_cidr_l4_combined.yaml": { outcome: "applied" },
  // The example's peer is mis-indented: `role` is a sibling of an empty matchLabels, not a label.
  "cilium/l4_l3_l4_combined.yaml": { outcome: "refused", names: /fromEndpoints\[0\]\.role: unknown field "role"/ },
  "cilium/l4_l4_port_range.yaml": { outcome: "applied" },
  "cilium/l4_l4_sni.yaml": { outcome: "applied" },
  "cilium/l4_multi_rule.yaml": { outcome: "applied" },
  "cilium/l4_l4.yaml": { outcome: "applied" },
  // `reserved.init` is Cilium's reserved:init (pkg/labels ParseSource).
  "cilium/l4_init.yaml": { outcome: "applied" },
  "cilium/l4_wildcard_port_listener.yaml": { outcome: "refused", names: /listener.*not supported/ },
  "cilium/l7_http_l7_multi.yaml": { outcome: "applied" },
  "cilium/l7_http_simple_l7.yaml": { outcome: "refused", names: /unknown field "description"/ },
  "cilium/l7_dns_dns-visibility.yaml": { outcome: "applied" },
  "cilium/l7_kafka_kafka-role.yaml": { outcome: "applied" },
  "cilium/l3_entities_apiserver.yaml": { outcome: "applied" },
  "cilium/l3_entities_host.yaml": { outcome: "applied" },
  "cilium/l3_fqdn_fqdn-cascade.yaml": { outcome: "applied" },
  "cilium/l3_match-expressions_and-statement.yaml": { outcome: "refused", names: /Unsupported value "in"/ },
  "cilium/l3_requires_endpoints.yaml": { outcome: "applied" },
  "cilium/kubernetes_namespace_kubedns-policy.yaml": { outcome: "applied" },
  "cilium/kubernetes_namespace_isolate-namespaces.yaml": { outcome: "applied" },
  "cilium/kubernetes_clusterwide_health.yaml": { outcome: "applied" },
  "cilium/kubernetes_clusterwide_clusterscope-policy.yaml": { outcome: "applied" },
  "cilium/host_lock-down-ingress.yaml": { outcome: "refused", names: /unknown field "description"/ },
  "cilium/getting-started_dns-pattern.yaml": { outcome: "applied" },
  "cilium/getting-started_dns-port.yaml": { outcome: "applied" },
  // A popular NetworkPolicy recipes collection (the first YAML block of each recipe).
  "recipes/07-allow-traffic-from-some-pods-in-another-namespace.yaml": { outcome: "applied" },
  "recipes/09-allow-traffic-only-to-a-port.yaml": { outcome: "applied" },
  "recipes/14-deny-external-egress-traffic.yaml": { outcome: "applied" },
};

// Every field ciliate enforces (or that has no effect on traffic). Any other field in an applied policy
// must be named by a warning: nothing is silently ignored.
const ENFORCED_FIELDS = new Set(
  (
    "apiVersion kind metadata name namespace labels annotations spec specs description endpointSelector podSelector namespaceSelector matchLabels matchExpressions key operator values " +
    "ingress egress ingressDeny egressDeny fromEndpoints toEndpoints fromRequires toRequires fromCIDR toCIDR fromCIDRSet toCIDRSet cidr except fromEntities toEntities toServices k8sService k8sServiceSelector selector serviceName " +
    "toPorts ports port endPort protocol rules http method path host headers headerMatches value mismatch icmps fields family type enableDefaultDeny policyTypes from to ipBlock " +
    "kafka role apiKey apiVersion clientID topic serverNames fromNodes toNodes toFQDNs matchName matchPattern dns"
  ).split(" "),
);

function files(): string[] {
  return ["kubernetes", "cilium", "recipes"].flatMap((d) => readdirSync(join(ROOT, d)).map((f) => `${d}/${f}`)).sort();
}

function load(file: string, agent: Expect["agent"] = {}) {
  const text = readFileSync(join(ROOT, file), "utf8");
  const l = parseManifests(text, file);
  const r = buildRules(l.objects, "default", agent);
  return { text, objects: l.objects, problems: [...l.errors, ...r.problems], warnings: [...l.warnings, ...r.warnings], applied: r.applied };
}

function keys(v: unknown, out: Set<string>): Set<string> {
  if (Array.isArray(v)) v.forEach((x) => keys(x, out));
  else if (v && typeof v === "object")
    for (const [k, x] of Object.entries(v)) {
      out.add(k);
      // Label maps hold user keys, not fields.
      if (k !== "matchLabels" && k !== "labels" && k !== "annotations") keys(x, out);
    }
  return out;
}

describe("policy corpus: every public manifest loads with a known, loud outcome", () => {
  it("every corpus file has an expectation and names its origin and license in its first line", () => {
    expect(files()).toEqual(Object.keys(EXPECTED).sort());
    for (const f of files()) expect(readFileSync(join(ROOT, f), "utf8").split("\n")[0]).toMatch(/^# Origin: .+; license: .+/);
  });

  for (const [file, exp] of Object.entries(EXPECTED))
    it(file, () => {
      const r = load(file, exp.agent);
      const outcome = r.problems.length ? "refused" : r.warnings.length ? "warned" : "applied";
      expect(outcome, [...r.problems, ...r.warnings].map((p) => p.message).join("\n")).toBe(exp.outcome);
      if (exp.outcome === "refused") expect(r.problems.map((p) => p.message).join("\n")).toMatch(exp.names);
      if (exp.outcome === "warned") expect(r.warnings.map((p) => p.message).join("\n")).toMatch(exp.names);
      if (outcome !== "refused") {
        expect(r.applied.length).toBeGreaterThan(0);
        const said = r.warnings.map((w) => w.message).join("\n");
        for (const k of keys(r.objects.map((o) => o.raw), new Set())) if (!ENFORCED_FIELDS.has(k)) expect(said, `field "${k}" of ${file} is neither enforced nor warned about`).toContain(k);
      }
    });
});
