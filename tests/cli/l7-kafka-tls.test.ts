// Kafka and TLS SNI through the CLI: trace flags and `-o json` l7 verdicts naming the deciding rule,
// simulate's Hubble-style L7 flows, and clear errors for bad flags.
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { describe, expect, it } from "vitest";
import { ciliate, json, ROOT } from "./run.ts";

const kafka = ["trace", "-f", "scenarios/kafka", "--to", "svc:kafka/kafka", "--port", "9092", "-o", "json"];

describe("trace: Kafka", () => {
  it("HQ producing the plans: allowed, l7 names kafka[0] of ingress[0]", () => {
    const t = json(ciliate(...kafka, "--from", "kafka/empire-hq", "--kafka-role", "produce", "--kafka-topic", "deathstar-plans"));
    expect([t.verdict, t.l7.verdict, t.l7.protocol, t.l7.errorCode]).toEqual(["allowed", "allowed", "kafka", 0]);
    expect(t.l7.rule).toMatchObject({ name: "secure-empire-kafka", element: "ingress[0]", index: 0, kafka: { role: "produce", topic: "deathstar-plans" } });
  });
  it("an outpost fetching the plans: denied by the proxy with error code 29, L3/L4 allowed", () => {
    const t = json(ciliate(...kafka, "--from", "kafka/empire-outpost-9999", "--kafka-api-key", "fetch", "--kafka-topic", "deathstar-plans"));
    expect([t.verdict, t.ingress.verdict, t.l7.verdict, t.l7.errorCode]).toEqual(["denied", "allowed", "denied", 29]);
    expect(t.l7.reason).toMatch(/TOPIC_AUTHORIZATION_FAILED/);
  });
  it("clientID and apiVersion flags reach the rules", () => {
    const as = (id: string) => json(ciliate(...kafka, "--from", "kafka/empire-backup", "--kafka-api-key", "1", "--kafka-api-version", "4", "--kafka-client-id", id, "--kafka-topic", "deathstar-plans")).verdict;
    expect([as("empire-backup"), as("intruder")]).toEqual(["allowed", "denied"]);
  });
  it("an HTTP request to the Kafka proxy is refused (it cannot parse it)", () => {
    const t = json(ciliate(...kafka, "--from", "kafka/empire-hq", "--http-method", "GET", "--http-path", "/"));
    expect([t.verdict, t.l7.protocol, t.l7.verdict]).toEqual(["denied", "kafka", "denied"]);
    expect(t.l7.reason).toMatch(/kafka proxy on port \d+ cannot parse a http request/);
  });
  it("bad flags are one-line errors with exit 2", () => {
    const r = ciliate(...kafka, "--from", "kafka/empire-hq", "--kafka-api-key", "teleport");
    expect(r.code).toBe(2);
    expect(r.stderr).toMatch(/unknown --kafka-api-key "teleport"/);
    expect(r.stderr.trim().split("\n").length).toBeLessThanOrEqual(2);
    const both = ciliate(...kafka, "--from", "kafka/empire-hq", "--kafka-role", "produce", "--http-method", "GET");
    expect(both.code).toBe(2);
  });
});

describe("trace: TLS SNI", () => {
  const tls = ["trace", "-f", "scenarios/kafka", "--from", "kafka/empire-outpost-8888", "--to", "198.51.100.20", "--port", "443", "-o", "json"];
  it("a listed name is allowed at the egress TLS proxy; another is refused", () => {
    const ok = json(ciliate(...tls, "--tls-sni", "api.empire.example"));
    expect([ok.verdict, ok.l7.protocol, ok.l7.direction, ok.l7.rule.serverName]).toEqual(["allowed", "tls", "egress", "api.empire.example"]);
    const no = json(ciliate(...tls, "--tls-sni", "rebels.example"));
    // L3/L4 allows the redirect; the proxy refuses the connection.
    expect([no.verdict, no.egress.verdict, no.l7.verdict]).toEqual(["denied", "allowed", "denied"]);
  });
});

describe("simulate: L7 flows as Hubble shows them", () => {
  const r = ciliate("simulate", "-f", "scenarios/kafka", "-o", "json");
  const flows = r.stdout
    .trim()
    .split("\n")
    .map((l) => JSON.parse(l))
    // ciliate's own facts (the Traffic document's name, the TLS server name) sit beside Hubble's flow.
    .map((j) => ({ ...j.flow, flow_name: j.ciliate?.flow_name, tls: j.ciliate?.tls }))
    .filter((f) => f?.Type === "L7");
  it("Kafka requests and responses carry l7.kafka and Cilium's summary", () => {
    expect(r.code).toBe(0);
    const req = flows.find((f) => f.flow_name === "outpost-reads-deathstar-plans" && f.l7.type === "REQUEST");
    expect(req).toMatchObject({ verdict: "DROPPED", l7: { kafka: { api_key: "fetch", api_version: 11, topic: "deathstar-plans" } } });
    const resp = flows.find((f) => f.flow_name === "outpost-reads-deathstar-plans" && f.l7.type === "RESPONSE");
    expect(resp.l7.kafka.error_code).toBe(29);
    expect(resp.Summary).toBe("Kafka response fetch correlation id 1 topic 'deathstar-plans' return code 29");
  });
  it("TLS: the ClientHello's server name, forwarded or dropped", () => {
    const t = flows.filter((f) => f.tls).map((f) => `${f.flow_name} ${f.verdict} ${f.tls.server_name}`);
    expect(t).toEqual(["outpost-calls-empire-api FORWARDED api.empire.example", "outpost-calls-rebels DROPPED rebels.example"]);
  });
});

describe("whatif: a Kafka rule change", () => {
  it("letting outposts consume the plans changes exactly the outpost's fetch of the plans, with both L7 reasons", () => {
    const dir = mkdtempSync(join(tmpdir(), "ciliate-kafka-whatif-"));
    try {
      const policy = readFileSync(join(ROOT, "scenarios/kafka/policy.yaml"), "utf8").split("\n---\n")[0]!;
      const opened = policy.replace("                - role: consume\n                  topic: empire-announce", "                - role: consume\n                  topic: empire-announce\n                - role: consume\n                  topic: deathstar-plans");
      expect(opened).not.toBe(policy);
      writeFileSync(join(dir, "open.yaml"), opened);
      const out = json(ciliate("whatif", "-f", "scenarios/kafka", "--apply", join(dir, "open.yaml"), "-o", "json"));
      expect(out.pairs).toEqual([]);
      expect(out.flows.map((f: { name: string; before: string; after: string }) => `${f.name} ${f.before}->${f.after}`)).toEqual(["outpost-reads-deathstar-plans denied->allowed"]);
      expect(out.flows[0].reasonBefore).toMatch(/L7 kafka ingress proxy: denied \(no Kafka rule allows fetch v11 topic deathstar-plans/);
      expect(out.flows[0].reasonAfter).toMatch(/L7 kafka ingress proxy: allowed \(fetch v11 topic deathstar-plans matches kafka\[1\]\)/);
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });
});
