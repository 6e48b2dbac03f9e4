// Kafka rule validation and matching as cilium/proxy defines them (pkg/policy/api/kafka, proxylib/kafka/kafkalib),
// and the listener they produce through compilePolicy + explainFlow.
import { describe, expect, it } from "vitest";
import { buildRules, explainFlow, parseManifests } from "../index.ts";
import { compileYaml, podsYaml } from "../test-helpers.ts";
import { checkKafkaRule, kafkaRuleApiKeys, kafkaRuleMatches, type KafkaRequest } from "./kafka.ts";

const req = (apiKey: number, topics: string[], extra: Partial<KafkaRequest> = {}): KafkaRequest => ({ apiKey, apiVersion: 2, clientID: "c1", topics, ...extra });
const problems = (raw: unknown) => checkKafkaRule(raw).problems.map((p) => p.detail);

describe("checkKafkaRule (Sanitize + CRD schema)", () => {
  it("accepts the documented fields", () => expect(problems({ role: "produce", topic: "deathstar-plans", clientID: "x", apiVersion: "3" })).toEqual([]));
  it("role and apiKey are mutually exclusive", () => expect(problems({ role: "produce", apiKey: "produce" })[0]).toMatch(/cannot set both role/));
  it("role is produce or consume (lower case, the CRD enum)", () => {
    expect(problems({ role: "admin" })[0]).toMatch(/invalid Kafka role/);
    expect(problems({ role: "Produce" })[0]).toMatch(/invalid Kafka role/);
  });
  it("apiKey names a known key, case-insensitively", () => {
    expect(problems({ apiKey: "FETCH" })).toEqual([]);
    expect(problems({ apiKey: "fetchall" })[0]).toMatch(/invalid Kafka apiKey/);
  });
  it("apiVersion is a string holding an int16 >= 0", () => {
    expect(problems({ apiVersion: "-1" })[0]).toMatch(/invalid Kafka apiVersion/);
    expect(problems({ apiVersion: "40000" })[0]).toMatch(/invalid Kafka apiVersion/);
    expect(problems({ apiVersion: 2 })[0]).toMatch(/must be a string/);
  });
  it("topic: at most 255 characters of [a-zA-Z0-9._-]", () => {
    expect(problems({ topic: "a".repeat(255) })).toEqual([]);
    expect(problems({ topic: "a".repeat(256) })[0]).toMatch(/maximum length of 255/);
    expect(problems({ topic: "bad topic" })[0]).toMatch(/invalid Kafka topic/);
  });
  it("unknown fields are refused (no silent widening)", () => expect(problems({ topics: ["a"] })[0]).toMatch(/unknown Kafka rule field "topics"/));
});

describe("kafkaRuleMatches", () => {
  it("role produce expands to produce, metadata, apiversions", () => {
    expect(kafkaRuleApiKeys({ role: "produce" })).toEqual([0, 3, 18]);
    expect(kafkaRuleApiKeys({ role: "consume" })).toContain(1);
    expect(kafkaRuleApiKeys({})).toEqual([]);
  });
  it("api key, version and client id constrain", () => {
    expect(kafkaRuleMatches({ apiKey: "produce" }, req(0, ["t"]), new Set(["t"]))).toBe(true);
    expect(kafkaRuleMatches({ apiKey: "produce" }, req(1, ["t"]), new Set(["t"]))).toBe(false);
    expect(kafkaRuleMatches({ apiVersion: "2" }, req(0, []), new Set())).toBe(true);
    expect(kafkaRuleMatches({ apiVersion: "3" }, req(0, []), new Set())).toBe(false);
    expect(kafkaRuleMatches({ clientID: "c2" }, req(0, []), new Set())).toBe(false);
  });
  it("a topic rule matches only when it consumes the last unmatched topic", () => {
    const left = new Set(["a", "b"]);
    expect(kafkaRuleMatches({ topic: "a" }, req(0, ["a", "b"]), left)).toBe(false);
    expect(kafkaRuleMatches({ topic: "b" }, req(0, ["a", "b"]), left)).toBe(true);
  });
  it("a topic rule does not constrain kinds without topics, and a Metadata request for all topics needs a topic-less rule", () => {
    expect(kafkaRuleMatches({ topic: "a" }, req(18, []), new Set())).toBe(true);
    expect(kafkaRuleMatches({ topic: "a" }, req(3, []), new Set())).toBe(false);
  });
});

const starwars =
  podsYaml([
    { ns: "kafka", name: "kafka-broker", labels: { app: "kafka" } },
    { ns: "kafka", name: "empire-hq", labels: { app: "empire-hq" } },
    { ns: "kafka", name: "outpost", labels: { app: "empire-outpost" } },
    { ns: "kafka", name: "backup", labels: { app: "empire-backup" } },
  ]) +
  `\n---\napiVersion: cilium.io/v2\nkind: CiliumNetworkPolicy\nmetadata: {name: secure-empire-kafka, namespace: kafka}
spec:
  endpointSelector: {matchLabels: {app: kafka}}
  ingress:
  - fromEndpoints: [{matchLabels: {app: empire-hq}}]
    toPorts: [{ports: [{port: '9092', protocol: TCP}], rules: {kafka: [{role: produce, topic: deathstar-plans}, {role: produce, topic: empire-announce}]}}]
  - fromEndpoints: [{matchLabels: {app: empire-outpost}}]
    toPorts: [{ports: [{port: '9092', protocol: TCP}], rules: {kafka: [{role: consume, topic: empire-announce}]}}]
  - fromEndpoints: [{matchLabels: {app: empire-backup}}]
    toPorts: [{ports: [{port: '9092', protocol: TCP}], rules: {kafka: [{apiKey: fetch, clientID: backup}]}}]
`;

describe("Kafka listener through compilePolicy and explainFlow", () => {
  const { compiled } = compileYaml(starwars);
  const k = (from: string, apiKey: number, topics: string[], clientID = "") =>
    explainFlow(compiled, { from: { pod: from }, to: { pod: "kafka/kafka-broker" }, protocol: "TCP", port: 9092, kafka: { apiKey, apiVersion: 7, clientID, topics } });
  it("the port is a redirect to a kafka listener (not an L4 allow)", () => {
    const l = [...compiled.proxies.values()];
    expect(l.map((x) => [x.protocol, x.port, x.direction])).toEqual([["kafka", 9092, "ingress"]]);
    expect(k("kafka/empire-hq", 0, ["deathstar-plans"]).ingress.lookup!.proxyPort).toBe(l[0].proxyPort);
  });
  it("empire-hq produces to deathstar-plans; outpost cannot", () => {
    const ok = k("kafka/empire-hq", 0, ["deathstar-plans"]);
    expect(ok.verdict).toBe("allowed");
    expect(ok.ingress.l7).toMatchObject({ protocol: "kafka", allowed: true, errorCode: 0, rule: { index: 0, kafka: { role: "produce", topic: "deathstar-plans" } } });
    const bad = k("kafka/outpost", 0, ["deathstar-plans"]);
    expect(bad.verdict).toBe("denied");
    expect(bad.ingress.l7).toMatchObject({ allowed: false, errorCode: 29 });
    expect(bad.ingress.dropReason).toBe(0);
  });
  it("outpost consumes empire-announce but not deathstar-plans; a two-topic fetch needs both", () => {
    expect(k("kafka/outpost", 1, ["empire-announce"]).verdict).toBe("allowed");
    expect(k("kafka/outpost", 1, ["deathstar-plans"]).verdict).toBe("denied");
    expect(k("kafka/empire-hq", 0, ["deathstar-plans", "empire-announce"]).verdict).toBe("allowed");
    expect(k("kafka/empire-hq", 0, ["deathstar-plans", "other"]).ingress.l7!.reason).toMatch(/topic other not allowed/);
  });
  it("clientID is matched exactly", () => {
    expect(k("kafka/backup", 1, ["x"], "backup").verdict).toBe("allowed");
    expect(k("kafka/backup", 1, ["x"], "other").verdict).toBe("denied");
  });
  it("an HTTP request at the Kafka proxy is refused", () => {
    const e = explainFlow(compiled, { from: { pod: "kafka/empire-hq" }, to: { pod: "kafka/kafka-broker" }, protocol: "TCP", port: 9092, http: { method: "GET", path: "/" } });
    expect(e.verdict).toBe("denied");
    expect(e.ingress.reason).toMatch(/kafka proxy on port \d+ cannot parse a http request/);
  });
});

describe("validation of rules and port rules", () => {
  const policy = (toPorts: string) => `apiVersion: cilium.io/v2\nkind: CiliumNetworkPolicy\nmetadata: {name: p, namespace: x}\nspec:\n  endpointSelector: {}\n  ingress: [{toPorts: [${toPorts}]}]\n`;
  // Every problem: the schema's (at load, policy/schema.ts) and Cilium's sanitize rules (buildRules).
  const problems = (toPorts: string) => {
    const l = parseManifests(policy(toPorts), "p.yaml");
    return [...l.errors, ...buildRules(l.objects).problems];
  };
  const codes = (toPorts: string) => problems(toPorts).map((p) => `${p.code} ${p.path}`);
  it("capitalised rule kinds are refused with a hint, never ignored", () => {
    const r = problems("{ports: [{port: '80'}], rules: {HTTP: [{method: GET}]}}");
    // Cilium's CRD also wants one of http, kafka, dns, l7proto once HTTP is not one of them.
    expect(r.map((p) => p.code).sort()).toEqual(["missing-field", "unknown-field"]);
    const unknown = r.find((p) => p.code === "unknown-field")!;
    expect(unknown.path).toBe("spec.ingress[0].toPorts[0].rules.HTTP");
    expect(unknown.hint).toBe("did you mean http?");
  });
  it("unknown HTTP rule fields and port rule fields are refused", () => {
    expect(codes("{ports: [{port: '80', protocol: TCP}], rules: {http: [{Method: GET}]}}")).toEqual(["unknown-field spec.ingress[0].toPorts[0].rules.http[0].Method"]);
    expect(codes("{ports: [{port: '80'}], serverName: [a.io]}")).toEqual(["unknown-field spec.ingress[0].toPorts[0].serverName"]);
  });
  it("Kafka problems name the field", () => expect(codes("{ports: [{port: '9092', protocol: TCP}], rules: {kafka: [{role: produce, apiKey: fetch}, {topic: 'a b'}]}}")).toEqual(["invalid-kafka-rule spec.ingress[0].toPorts[0].rules.kafka[0]", "invalid-kafka-rule spec.ingress[0].toPorts[0].rules.kafka[1].topic"]));
  it("HTTP and Kafka rules need protocol TCP and a port, as Cilium validates", () => {
    expect(codes("{ports: [{port: '9092'}], rules: {kafka: [{topic: t}]}}")).toEqual(["l7-not-tcp spec.ingress[0].toPorts[0].ports[0].protocol"]);
    expect(codes("{ports: [{port: '80', protocol: UDP}], rules: {http: [{}]}}")).toEqual(["l7-not-tcp spec.ingress[0].toPorts[0].ports[0].protocol"]);
    expect(codes("{ports: [{port: '0', protocol: TCP}], rules: {http: [{}]}}")).toEqual(["l7-port-zero spec.ingress[0].toPorts[0].rules"]);
  });
  it("Kafka rules are enforced, not a warning", () => {
    const r = buildRules(parseManifests(policy("{ports: [{port: '9092', protocol: TCP}], rules: {kafka: [{topic: t}]}}"), "p.yaml").objects);
    expect(r.warnings).toEqual([]);
  });
  it("serverNames with L7 rules needs TLS interception: refused; terminatingTLS refused", () => {
    expect(codes("{ports: [{port: '443', protocol: TCP}], serverNames: [a.io], rules: {http: [{}]}}")).toEqual(["server-names-with-l7 spec.ingress[0].toPorts[0].serverNames"]);
    expect(codes("{ports: [{port: '443'}], terminatingTLS: {secret: {name: s}}}")).toEqual(["unsupported-tls spec.ingress[0].toPorts[0].terminatingTLS"]);
    expect(codes("{ports: [{port: '443'}], serverNames: ['bad name']}")).toEqual(["invalid-value spec.ingress[0].toPorts[0].serverNames[0]"]); // the CRD's pattern
  });
});

describe("one L7 kind per port", () => {
  it("HTTP and Kafka rules on the same endpoint port are refused with both policies named", () => {
    const y =
      podsYaml([{ ns: "x", name: "a", labels: { app: "a" } }]) +
      `\n---\napiVersion: cilium.io/v2\nkind: CiliumNetworkPolicy\nmetadata: {name: web, namespace: x}\nspec:\n  endpointSelector: {}\n  ingress: [{toPorts: [{ports: [{port: '8080', protocol: TCP}], rules: {http: [{method: GET}]}}]}]` +
      `\n---\napiVersion: cilium.io/v2\nkind: CiliumNetworkPolicy\nmetadata: {name: kf, namespace: x}\nspec:\n  endpointSelector: {}\n  ingress: [{toPorts: [{ports: [{port: '8080', protocol: TCP}], rules: {kafka: [{topic: t}]}}]}]`;
    const { compiled } = compileYaml(y);
    expect(compiled.errors.map((e) => e.code)).toEqual(["l7-kind-conflict"]);
    expect(compiled.errors[0].message).toMatch(/endpoint x\/a: ingress port 8080\/TCP has rules of more than one L7 kind: http from CiliumNetworkPolicy x\/web ingress\[0\]; kafka from CiliumNetworkPolicy x\/kf ingress\[0\]/);
  });
});
