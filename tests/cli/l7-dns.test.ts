// DNS and toFQDNs through the CLI: trace --dns-* verdicts naming the DNS rule and the toFQDNs selector,
// simulate's Hubble-style DNS flows, TTL expiry on the virtual clock, and one-line errors for bad input.
import { mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { describe, expect, it } from "vitest";
import { ciliate, json } from "./run.ts";

const dns = ["trace", "-f", "scenarios/fqdn", "--from", "default/mediabot", "--to", "svc:kube-system/kube-dns", "-o", "json"];

describe("trace: DNS", () => {
  it("an allowed query names the DNS rule and what was learned; a refused one is REFUSED by the proxy", () => {
    const ok = json(ciliate(...dns, "--dns-query", "docs.cilium.io", "--dns-answer", "104.198.14.52"));
    expect([ok.verdict, ok.egress.verdict, ok.l7.protocol, ok.l7.verdict, ok.l7.rcode]).toEqual(["allowed", "allowed", "dns", "allowed", 0]);
    expect(ok.l7.rule).toMatchObject({ name: "fqdn", element: "egress[0]", dnsIndex: 1, dns: { matchPattern: "*.cilium.io" } });
    expect(ok.l7.learned).toEqual(["104.198.14.52"]);
    const no = json(ciliate(...dns, "--dns-query", "www.google.com"));
    expect([no.verdict, no.egress.verdict, no.l7.verdict, no.l7.rcode]).toEqual(["denied", "allowed", "denied", 5]);
    expect(no.l7.reason).toMatch(/no DNS rule allows www\.google\.com\.: REFUSED/);
  });
  it("a flow to an address the Traffic's DNS flows learned is allowed by the toFQDNs selector", () => {
    const t = json(ciliate("trace", "-f", "scenarios/fqdn", "--from", "default/mediabot", "--to", "140.82.112.5", "--port", "443", "-o", "json"));
    expect(t.verdict).toBe("allowed");
    expect(t.egress.rules).toEqual([expect.objectContaining({ name: "fqdn", element: "egress[1]", peer: "toFQDNs matchName: api.github.com" })]);
    expect(t.destination.identity).toBeGreaterThanOrEqual(1 << 24);
  });
  it("bytes that are not a DNS query, sent to the DNS proxy's port, are denied as the node's proxy drops them", () => {
    const t = json(ciliate(...dns, "--protocol", "UDP", "--port", "53"));
    expect([t.verdict, t.egress.verdict, t.l7.protocol, t.l7.verdict]).toEqual(["denied", "allowed", "dns", "denied"]);
    expect(t.l7.reason).toMatch(/not a DNS query/);
  });
  it("bad DNS flags are one-line errors with exit 2", () => {
    const r = ciliate(...dns, "--dns-query", "bad name!");
    expect(r.code).toBe(2);
    expect(r.stderr).toMatch(/--dns-query/);
    expect(ciliate(...dns, "--dns-query", "a.io", "--dns-answer", "not-an-ip").code).toBe(2);
    expect(ciliate(...dns, "--dns-answer", "1.2.3.4").code).toBe(2);
  });
});

describe("simulate: DNS flows", () => {
  it("prints dns-request / dns-response as Hubble does and expires the learned allow with the virtual clock", () => {
    const r = ciliate("simulate", "-f", "scenarios/fqdn");
    expect(r.code).toBe(0);
    expect(r.stdout).toMatch(/dns-request proxy FORWARDED \(DNS Query api\.github\.com\. A\)/);
    expect(r.stdout).toMatch(/dns-response proxy FORWARDED \(DNS Answer "140\.82\.112\.5" TTL: 60 \(Proxy api\.github\.com\. A\)\)/);
    expect(r.stdout).toMatch(/dns-request proxy DROPPED \(DNS Query www\.google\.com\. A\)/);
    expect(r.stdout).toMatch(/# github-https: ALLOWED/);
    expect(r.stdout).toMatch(/# github-neighbour: DENIED/);
    expect(r.stdout).toMatch(/# github-after-ttl: DENIED/);
    const lines = ciliate("simulate", "-f", "scenarios/fqdn", "-o", "json", "--flow", "resolve-google").stdout.trim().split("\n").map((l) => JSON.parse(l).flow);
    expect(lines.find((f) => f.Type === "L7")).toMatchObject({ verdict: "DROPPED", l7: { type: "REQUEST", dns: { query: "www.google.com.", rcode: 5, qtypes: ["A"] } } });
  });
  it("--tofqdns-min-ttl keeps a learned allow past its TTL, as the agent's flag does; a bad value is a one-line error", { timeout: 60_000 }, () => {
    const r = ciliate("simulate", "-f", "scenarios/fqdn", "--tofqdns-min-ttl", "120");
    expect(r.code).toBe(0);
    expect(r.stdout).toMatch(/# github-after-ttl: ALLOWED/);
    expect(ciliate("simulate", "-f", "scenarios/fqdn", "--tofqdns-min-ttl", "61").stdout).toMatch(/# github-after-ttl: DENIED/);
    expect(ciliate("simulate", "-f", "scenarios/fqdn", "--tofqdns-min-ttl", "62").stdout).toMatch(/# github-after-ttl: ALLOWED/);
    const bad = ciliate("check", "-f", "scenarios/fqdn", "--tofqdns-min-ttl", "-5");
    expect(bad.code).toBe(2);
    expect(bad.stderr.trim().split("\n")).toHaveLength(1);
    expect(bad.stderr).toMatch(/^ciliate: invalid --tofqdns-min-ttl "-5"/);
    // The agent reads the same global option (and refuses a bad value before anything loads).
    const agent = ciliate("agent", "--node-ip", "192.0.2.1", "--pod-cidr", "10.244.1.0/24", "--tofqdns-min-ttl", "1.5");
    expect([agent.code, agent.stderr.trim()]).toEqual([2, expect.stringMatching(/^ciliate: invalid --tofqdns-min-ttl "1\.5"/)]);
  });
  it("a bad dns field is a one-line error naming file, line and field", () => {
    const dir = mkdtempSync(join(tmpdir(), "ciliate-dns-"));
    try {
      writeFileSync(
        join(dir, "t.yaml"),
        "apiVersion: ciliate.dev/v1alpha1\nkind: Traffic\nmetadata: {name: t}\nspec:\n  flows:\n  - from: {pod: default/mediabot}\n    to: {service: kube-system/kube-dns}\n    dns: {query: a.io, answers: [nope]}\n",
      );
      const r = ciliate("simulate", "-f", "scenarios/fqdn/cluster.yaml", "-f", join(dir, "t.yaml"));
      expect(r.code).toBe(2);
      expect(r.stderr).toMatch(/t\.yaml: document 0, line \d+: .*dns\.answers\[0\]: invalid IP address "nope"/);
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });
});
