// Cilium's Sanitize functions (cilium/cilium pkg/policy/api rule_validation.go, icmp.go, selector.go, http.go)
// and the Kubernetes API server's NetworkPolicy validation (kubernetes/kubernetes
// pkg/apis/networking/validation), each test named after the upstream behaviour it mirrors: what they
// accept is applied with the meaning they give it, what they refuse is refused with their message.
import { describe, expect, it } from "vitest";
import { buildRules, explainFlow, INIT_ENDPOINT, parseManifests, policyLookup } from "../../policy/index.ts";
import { goParseUint, isSvcName } from "../../policy/cilium-port.ts";
import { compileYaml, podsYaml, verdict } from "../../policy/test-helpers.ts";

const pods = podsYaml([
  { ns: "x", name: "client", labels: { app: "client" } },
  { ns: "x", name: "web", labels: { app: "web" }, ports: [{ name: "http", port: 8080 }] },
]);
const cnp = (spec: string) => `\n---\napiVersion: cilium.io/v2\nkind: CiliumNetworkPolicy\nmetadata: {name: p, namespace: x}\nspec:\n  endpointSelector: {matchLabels: {app: web}}\n${spec}`;
const ingressPort = (port: string) => cnp(`  ingress: [{toPorts: [{ports: [{port: '${port}', protocol: TCP}]}]}]`);

/** Every problem of a manifest text (schema, names, sanitize), as a run reports them. */
function problems(yaml: string): { code: string; detail: string }[] {
  const l = parseManifests(yaml, "t.yaml");
  const r = buildRules(l.objects);
  return [...l.errors, ...r.problems].map((p) => ({ code: p.code, detail: p.detail }));
}

describe("PortProtocol.sanitize: ports as Cilium parses them (pkg/policy/api/rule_validation.go)", () => {
  it("pkg/iana IsSvcName: a port name is case-insensitive, so `HTTP` is the container port named http", () => {
    const { compiled } = compileYaml(pods + ingressPort("HTTP"));
    expect(verdict(compiled, "x/client", "x/web", "TCP", 8080)).toBe("allowed");
    expect(verdict(compiled, "x/client", "x/web", "TCP", 80)).toBe("denied");
  });

  it("strconv.ParseUint(port, 0, 16): a leading 0 is octal, so '010' is port 8", () => {
    const { compiled } = compileYaml(pods + ingressPort("010"));
    expect(verdict(compiled, "x/client", "x/web", "TCP", 8)).toBe("allowed");
    expect(verdict(compiled, "x/client", "x/web", "TCP", 10)).toBe("denied");
  });

  it("strconv.ParseUint(port, 0, 16): underscores between digits are allowed, so '8_080' is port 8080", () => {
    const { compiled } = compileYaml(pods + ingressPort("8_080"));
    expect(verdict(compiled, "x/client", "x/web", "TCP", 8080)).toBe("allowed");
  });

  it("refused with Go's ParseUint error: an invalid octal number, a number out of range, a 16-character name", () => {
    for (const [port, detail] of [
      ["08", 'Unable to parse port: strconv.ParseUint: parsing "08": invalid syntax'],
      ["70000", 'Unable to parse port: strconv.ParseUint: parsing "70000": value out of range'],
      ["averyveryverylong", 'Unable to parse port: strconv.ParseUint: parsing "averyveryverylong": invalid syntax'],
      ["1__0", 'Unable to parse port: strconv.ParseUint: parsing "1__0": invalid syntax'],
    ])
      expect(problems(pods + ingressPort(port)), port).toEqual([{ code: port === "70000" ? "port-out-of-range" : "invalid-port", detail }]);
  });

  it("PortRangeToMaskedPorts: an endPort below its port is accepted and allows the port alone (warned)", () => {
    const { compiled, rules } = compileYaml(pods + cnp("  ingress: [{toPorts: [{ports: [{port: '80', endPort: 79, protocol: TCP}]}]}]"));
    expect(rules.problems).toEqual([]);
    expect(rules.warnings.map((w) => w.detail)).toEqual(["endPort 79 is below port 80: only port 80 is allowed, as Cilium reads it"]);
    expect(verdict(compiled, "x/client", "x/web", "TCP", 80)).toBe("allowed");
    expect(verdict(compiled, "x/client", "x/web", "TCP", 79)).toBe("denied");
  });

  it("goParseUint and isSvcName agree with Go on fixed cases", () => {
    expect([goParseUint("0"), goParseUint("65535"), goParseUint("0x1F"), goParseUint("0o17"), goParseUint("0b101"), goParseUint("0_7"), goParseUint("0x_1f")]).toEqual([0, 65535, 31, 15, 5, 7, 31]);
    for (const bad of ["", "-1", "+1", "1_", "_1", "65536", "0x", "09", "1e3"]) expect(goParseUint(bad), bad).toHaveProperty("error");
    expect(["http", "HTTP", "h-2", "8080x", "a".repeat(15)].map(isSvcName)).toEqual([true, true, true, true, true]);
    expect(["8080", "-http", "http-", "h--2", "a".repeat(16), "h_2", ""].map(isSvcName)).toEqual([false, false, false, false, false, false, false]);
  });
});

describe("ValidateNetworkPolicyPort: NetworkPolicy ports as the API server validates them", () => {
  const np = (ports: string) =>
    `apiVersion: networking.k8s.io/v1\nkind: NetworkPolicy\nmetadata: {name: np, namespace: x}\nspec:\n  podSelector: {}\n  ingress: [{ports: [${ports}]}]\n`;
  it("a string port is a port name: '80' is refused (IsValidPortName), as kubectl apply refuses it", () => {
    expect(problems(np("{port: '80'}"))).toEqual([{ code: "invalid-port", detail: 'Invalid value: "80": must contain at least one letter (a-z)' }]);
  });
  it("an integer port is 1-65535 (IsValidPortNum): 0 is refused", () => {
    expect(problems(np("{port: 0}"))).toEqual([{ code: "invalid-port", detail: "Invalid value: 0: must be between 1 and 65535, inclusive" }]);
  });
  it("endPort: at least port, only with an integer port, never without a port", () => {
    expect(problems(np("{port: 80, endPort: 79}"))).toEqual([{ code: "invalid-end-port", detail: "Invalid value: 80: must be greater than or equal to `port`" }]);
    expect(problems(np("{port: http, endPort: 90}"))).toEqual([{ code: "invalid-end-port", detail: "Invalid value: 90: may not be specified when `port` is non-numeric" }]);
    expect(problems(np("{endPort: 90}"))).toEqual([{ code: "invalid-end-port", detail: "Invalid value: 90: may not be specified when `port` is not specified" }]);
  });
  it("port names: every IsValidPortName problem is listed", () => {
    expect(problems(np("{port: -Web--}")).map((p) => p.detail)).toEqual([
      'Invalid value: "-Web--": must contain only alpha-numeric characters (a-z, 0-9), and hyphens (-)',
      'Invalid value: "-Web--": must not contain consecutive hyphens (-)',
      'Invalid value: "-Web--": must not begin or end with a hyphen (-)',
    ]);
  });
  it("ValidateNetworkPolicySpec: policyTypes are Ingress or Egress, at most two", () => {
    const np = (types: string) => `apiVersion: networking.k8s.io/v1\nkind: NetworkPolicy\nmetadata: {name: np, namespace: x}\nspec:\n  podSelector: {}\n  policyTypes: ${types}\n`;
    expect(problems(np("[Ingress, Sideways]")).map((p) => p.detail)).toEqual(['Unsupported value: "Sideways": supported values: "Ingress", "Egress"']);
    expect(problems(np("[Ingress, Egress, Ingress]")).map((p) => p.detail)).toEqual(['Invalid value: ["Ingress","Egress","Ingress"]: may not specify more than two policyTypes']);
  });

  it("a valid range still applies (80-90)", () => {
    const { compiled } = compileYaml(pods + "\n---\n" + np("{port: 80, endPort: 90}"));
    expect(verdict(compiled, "x/client", "x/web", "TCP", 85)).toBe("allowed");
    expect(verdict(compiled, "x/client", "x/web", "TCP", 91)).toBe("denied");
  });
});

describe("CIDR.sanitize and CIDRRule.sanitize: CIDRs as Cilium parses them (Go net/netip)", () => {
  const egress = (rule: string) => cnp(`  egress: [{${rule}}]`);
  it("CIDR.sanitize: a bare address in toCIDR is a host prefix", () => {
    const { compiled } = compileYaml(pods + egress("toCIDR: [192.0.2.1]"));
    expect(verdict(compiled, "x/web", { ip: "192.0.2.1" }, "TCP", 80)).toBe("allowed");
    expect(verdict(compiled, "x/web", { ip: "192.0.2.2" }, "TCP", 80)).toBe("denied");
  });

  it("CIDRRule.sanitize: toCIDRSet needs a prefix (netip.ParsePrefix: no '/')", () => {
    expect(problems(pods + egress("toCIDRSet: [{cidr: 192.0.2.1}]"))).toEqual([{ code: "invalid-cidr", detail: `Unable to parse CIDRRule "192.0.2.1": netip.ParsePrefix("192.0.2.1"): no '/'` }]);
  });

  it("netip refuses what a looser parser would read: an octet with a leading zero, a prefix length with one, an octet over 255", () => {
    expect(problems(pods + egress("toCIDR: [010.0.0.0/8]"))).toEqual([{ code: "invalid-cidr", detail: `unable to parse CIDR: ParseAddr("010.0.0.0/8"): IPv4 field has octet with leading zero` }]);
    expect(problems(pods + egress("toCIDRSet: [{cidr: 10.0.0.0/08}]"))).toEqual([{ code: "invalid-cidr", detail: `Unable to parse CIDRRule "10.0.0.0/08": netip.ParsePrefix("10.0.0.0/08"): bad bits after slash: "08"` }]);
    expect(problems(pods + egress("toCIDR: [10.0.0.300/8]"))).toEqual([{ code: "invalid-cidr", detail: `unable to parse CIDR: ParseAddr("10.0.0.300/8"): IPv4 field has value >255` }]);
    expect(problems(pods + egress("toCIDRSet: [{cidr: 10.0.0.0/33}]"))).toEqual([{ code: "invalid-cidr", detail: `Unable to parse CIDRRule "10.0.0.0/33": netip.ParsePrefix("10.0.0.0/33"): prefix length out of range` }]);
  });

  it("Prefix.Contains(except.Addr()): an except is valid when its address is inside, even when it is wider; then nothing of the CIDR is left", () => {
    const wide = compileYaml(pods + egress("toCIDRSet: [{cidr: 192.0.2.0/24, except: [192.0.2.0/16]}]"));
    expect(wide.rules.problems).toEqual([]);
    expect(verdict(wide.compiled, "x/web", { ip: "192.0.2.1" }, "TCP", 80)).toBe("denied");
    const narrow = compileYaml(pods + egress("toCIDRSet: [{cidr: 192.0.2.0/24, except: [192.0.2.128/25]}]"));
    expect(verdict(narrow.compiled, "x/web", { ip: "192.0.2.1" }, "TCP", 80)).toBe("allowed");
    expect(verdict(narrow.compiled, "x/web", { ip: "192.0.2.200" }, "TCP", 80)).toBe("denied");
  });

  it("an except whose address lies outside is refused with the strings as written", () => {
    expect(problems(pods + egress("toCIDRSet: [{cidr: 10.0.0.0/8, except: [192.168.0.1/16]}]"))).toEqual([
      { code: "except-outside-cidr", detail: "allow CIDR prefix 10.0.0.0/8 does not contain exclude CIDR prefix 192.168.0.1/16" },
    ]);
  });

  it("ValidateIPBlock (NetworkPolicy): the cidr is a prefix, an except a strict subset of it", () => {
    const np = (block: string) => `apiVersion: networking.k8s.io/v1\nkind: NetworkPolicy\nmetadata: {name: np, namespace: x}\nspec:\n  podSelector: {}\n  ingress: [{from: [{ipBlock: ${block}}]}]\n`;
    expect(problems(np("{cidr: 10.0.0.1}"))).toEqual([{ code: "invalid-cidr", detail: 'Invalid value: "10.0.0.1": must be a valid CIDR value, (e.g. 10.9.8.0/24 or 2001:db8::/64)' }]);
    expect(problems(np("{cidr: 10.0.0.0/8, except: [10.0.0.0/8]}"))).toEqual([{ code: "except-outside-cidr", detail: 'Invalid value: "10.0.0.0/8": must be a strict subset of `cidr`' }]);
    expect(problems(np("{cidr: 10.0.0.0/8, except: [10.1.0.0/16]}"))).toEqual([]);
  });
});

describe("EndpointSelector.sanitize and ValidateLabelSelector: selectors as Cilium and the API server check them", () => {
  const LABEL_VALUE =
    "a valid label must be an empty string or consist of alphanumeric characters, '-', '_' or '.', and must start and end with an alphanumeric character (e.g. 'MyValue',  or 'my_value',  or '12345', regex used for validation is '(([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9])?')";
  it("pkg/policy/api/selector.go sanitize: matchExpressions values are label values (AllowInvalidLabelValueInSelector: false)", () => {
    const y = pods + cnp("  ingress: [{fromEndpoints: [{matchExpressions: [{key: app, operator: In, values: ['a b']}]}]}]");
    expect(problems(y)).toEqual([{ code: "invalid-selector-value", detail: `invalid label selector: matchExpressions[0].values[0]: Invalid value: "a b": ${LABEL_VALUE}` }]);
  });

  it("pkg/policy/api/selector.go sanitize: keys are validated as extended keys (any.<key>), so a 60-character key is too long", () => {
    const key = "k".repeat(60);
    const y = pods + cnp(`  ingress: [{fromEndpoints: [{matchExpressions: [{key: ${key}, operator: Exists}]}]}]`);
    expect(problems(y)).toEqual([{ code: "invalid-selector-key", detail: `invalid label selector: matchExpressions[0].key: Invalid value: "any.${key}": name part must be no more than 63 characters` }]);
    // A source-prefixed key is validated as source.key: k8s:app is the valid name k8s.app.
    const ok = compileYaml(pods + cnp("  ingress: [{fromEndpoints: [{matchExpressions: [{key: 'k8s:app', operator: In, values: [client]}]}]}]"));
    expect(verdict(ok.compiled, "x/client", "x/web", "TCP", 80)).toBe("allowed");
  });

  it("ValidateLabelSelectorRequirement: In without values, Exists with values, in the API server's words", () => {
    const y = pods + cnp("  ingress: [{fromEndpoints: [{matchExpressions: [{key: app, operator: In}, {key: app, operator: Exists, values: [a]}]}]}]");
    expect(problems(y).map((p) => p.detail)).toEqual([
      "invalid label selector: matchExpressions[0].values: Required value: must be specified when `operator` is 'In' or 'NotIn'",
      "invalid label selector: matchExpressions[1].values: Forbidden: may not be specified when `operator` is 'Exists' or 'DoesNotExist'",
    ]);
  });

  it("NetworkPolicy selectors: ValidateLabelSelector without Cilium's wrapping (keys as written)", () => {
    const y = `apiVersion: networking.k8s.io/v1\nkind: NetworkPolicy\nmetadata: {name: np, namespace: x}\nspec:\n  podSelector: {matchExpressions: [{key: 'a/b/c', operator: In, values: ['-x']}]}\n`;
    expect(problems(y).map((p) => p.detail)).toEqual([
      `Invalid value: "a/b/c": a qualified name must consist of alphanumeric characters, '-', '_' or '.', and must start and end with an alphanumeric character (e.g. 'MyName',  or 'my.name',  or '123-abc', regex used for validation is '([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9]') with an optional DNS subdomain prefix and '/' (e.g. 'example.com/MyName')`,
      `Invalid value: "-x": ${LABEL_VALUE}`,
    ]);
  });
});

describe("object names as the API server words them (k8s.io/apimachinery IsDNS1123Subdomain)", () => {
  it("a pod named foo+bar is refused with the regex and example", () => {
    const l = parseManifests("apiVersion: v1\nkind: Pod\nmetadata: {name: foo+bar, namespace: x}\nspec: {containers: [{name: c}]}\n", "p.yaml");
    expect(l.errors.map((e) => e.detail)).toEqual([
      `Invalid value: "foo+bar": a lowercase RFC 1123 subdomain must consist of lower case alphanumeric characters, '-' or '.', and must start and end with an alphanumeric character (e.g. 'example.com', regex used for validation is '[a-z0-9]([-a-z0-9]*[a-z0-9])?(\\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*')`,
    ]);
  });
});

describe("ICMP fields and entities (pkg/policy/api/icmp.go, rule_validation.go)", () => {
  it("ICMPField.UnmarshalJSON: a type name of the other family is refused, naming the family as written", () => {
    expect(problems(pods + cnp("  ingress: [{icmps: [{fields: [{family: IPv6, type: Echo}]}]}]"))).toEqual([{ code: "unknown-icmp-type", detail: "ICMP type Echo not found in IPv6" }]);
  });
  it("the same name in its own family is applied: EchoRequest is 128 in IPv6", () => {
    const { compiled } = compileYaml(pods + cnp("  ingress: [{icmps: [{fields: [{family: IPv6, type: EchoRequest}]}]}]"));
    expect(verdict(compiled, "x/client", "x/web", "ICMPv6", 128)).toBe("allowed");
    expect(verdict(compiled, "x/client", "x/web", "ICMPv6", 129)).toBe("denied");
  });
});

describe("PortRuleHTTP.Sanitize: HTTP regexes are Go regexps (RE2), checked and matched as Cilium and Envoy do", () => {
  const http = (rule: string) => pods + cnp(`  ingress: [{toPorts: [{ports: [{port: '8080', protocol: TCP}], rules: {http: [${rule}]}}]}]`);
  const request = (compiled: ReturnType<typeof compileYaml>["compiled"], method: string, path: string) =>
    explainFlow(compiled, { from: { pod: "x/client" }, to: { pod: "x/web" }, protocol: "TCP", port: 8080, http: { method, path } }).verdict;

  it("regexp.Compile accepts Perl flags: `(?i)get` is valid and matches any case", () => {
    const { compiled } = compileYaml(http("{method: '(?i)get', path: '/public/.*'}"));
    expect(request(compiled, "GET", "/public/a")).toBe("allowed");
    expect(request(compiled, "get", "/public/a")).toBe("allowed");
    expect(request(compiled, "POST", "/public/a")).toBe("denied");
    // Envoy's safe_regex is a full match: /public/.* does not match a path that only contains it.
    expect(request(compiled, "GET", "/x/public/a")).toBe("denied");
  });

  it("regexp.Compile refuses what RE2 does not have, with Go's error: lookahead, backreference, an unclosed group", () => {
    for (const [path, detail] of [
      ["/(?=a)", "error parsing regexp: invalid or unsupported Perl syntax: `(?=`"],
      ["/(a)\\\\1", "error parsing regexp: invalid escape sequence: `\\1`"],
      ["/(a", "error parsing regexp: missing closing ): `/(a`"],
    ])
      expect(problems(http(`{path: "${path}"}`)), path).toEqual([{ code: "invalid-http-regex", detail }]);
  });
});

describe("reserved:init in policies (pkg/k8s/apis/cilium.io/utils parseToCiliumRule, pkg/labels ParseSource)", () => {
  const ccnp = (key: string) =>
    `\n---\napiVersion: cilium.io/v2\nkind: CiliumClusterwideNetworkPolicy\nmetadata: {name: init}\nspec:\n  endpointSelector: {matchLabels: {"${key}": ""}}\n  egress: [{toEntities: [all], toPorts: [{ports: [{port: "53", protocol: UDP}]}]}]`;
  // The init endpoint's own egress to the world (identity 2) over UDP (17).
  const initEgress = (compiled: ReturnType<typeof compileYaml>["compiled"], port: number) => policyLookup(compiled.endpoints.get(INIT_ENDPOINT)!.entries, "egress", 2, 17, port).verdict;

  it("LabelSourceReservedKeyPrefix: `reserved.init` (Cilium's examples/policies/l4/init.yaml) and `$init` select the init endpoint like `reserved:init`", () => {
    for (const key of ["reserved:init", "reserved.init", "$init"]) {
      const { compiled, rules } = compileYaml(pods + ccnp(key), { policyEnforcement: "default" });
      expect(rules.rules[0]!.subjectText, key).toContain("reserved:init");
      expect(initEgress(compiled, 53), key).toBe("allowed");
      expect(initEgress(compiled, 54), key).toBe("denied");
    }
  });

  it("Cilium 1.15+: a CiliumNetworkPolicy selecting reserved:init is pinned to its namespace, so it selects nothing — with the validator's warning", () => {
    const y = pods + `\n---\napiVersion: cilium.io/v2\nkind: CiliumNetworkPolicy\nmetadata: {name: init, namespace: x}\nspec:\n  endpointSelector: {matchLabels: {"reserved:init": ""}}\n  egress: [{toEntities: [all], toPorts: [{ports: [{port: "53", protocol: UDP}]}]}]`;
    const { compiled, rules } = compileYaml(y);
    expect(rules.warnings.map((w) => [w.code, w.detail])).toEqual([["init-in-namespaced-policy", "CiliumNetworkPolicy incorrectly matches reserved:init label; it selects no endpoint"]]);
    // Default mode: the init endpoint is enforced both ways and nothing selects it, so its DNS is denied.
    expect(initEgress(compiled, 53)).toBe("denied");
  });
});
