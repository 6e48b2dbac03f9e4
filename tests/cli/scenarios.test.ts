// Every bundled scenario's expectations hold under `ciliate check`, and `ciliate simulate` prints the
// Star Wars demo as Cilium's getting-started guide shows it: the TIE fighter lands, the X-wing is dropped
// by policy, and PUT /v1/exhaust-port is refused by the L7 proxy with a 403.
import { readdirSync, readFileSync, mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { describe, expect, it } from "vitest";
import { ciliate, json, ROOT } from "./run.ts";

const scenarios = readdirSync(join(ROOT, "scenarios"), { withFileTypes: true })
  .filter((d) => d.isDirectory() && d.name !== "extras")
  .map((d) => d.name);

describe("bundled scenarios", () => {
  it("includes the four scenarios of issue #4", () => {
    expect(scenarios).toEqual(expect.arrayContaining(["starwars", "k8s-netpol", "lb", "multi-node"]));
  });

  for (const s of scenarios)
    it(`${s}: every Expectation passes`, () => {
      const r = ciliate("check", "-f", `scenarios/${s}`, "-o", "json");
      expect(r.stderr).toBe("");
      const out = json<{ results: { name: string; passed: boolean; reason: string }[]; passed: number; failed: number }>(r);
      expect(out.results.filter((x) => !x.passed)).toEqual([]);
      expect(out.failed).toBe(0);
      expect(out.passed).toBeGreaterThan(0);
      expect(r.code).toBe(0);
    });

  it("check exits 1 and writes JUnit XML when an expectation fails", () => {
    const dir = mkdtempSync(join(tmpdir(), "ciliate-check-"));
    const wrong = join(dir, "wrong.yaml");
    const junit = join(dir, "junit.xml");
    writeFileSync(
      wrong,
      "apiVersion: ciliate.dev/v1alpha1\nkind: Expectation\nmetadata: { name: xwing-lands-wrongly, namespace: default }\nspec: { from: { pod: default/xwing }, to: { service: default/deathstar }, port: 80, protocol: TCP, verdict: allowed }\n",
    );
    const r = ciliate("check", "-f", "scenarios/starwars", "-f", wrong, "-o", "json", "--junit", junit);
    expect(r.code).toBe(1);
    const out = json(r);
    expect(out.failed).toBe(1);
    expect(out.results.find((x: { name: string }) => x.name === "xwing-lands-wrongly")).toMatchObject({ expected: "allowed", actual: "denied", passed: false });
    const xml = readFileSync(junit, "utf8");
    expect(xml).toContain('failures="1"');
    expect(xml).toContain('<testcase classname="ciliate.expectations" name="xwing-lands-wrongly">');
    rmSync(dir, { recursive: true, force: true });
  });
});

describe("simulate starwars", () => {
  const r = ciliate("simulate", "-f", "scenarios/starwars");
  const lines = r.stdout.split("\n");
  it("exits 0", () => expect([r.code, r.stderr]).toEqual([0, ""]));
  it("the TIE fighter lands (HTTP POST forwarded by the proxy, delivered to the Death Star)", () => {
    expect(lines.some((l) => /default\/tiefighter:\d+ \(ID:\d+\) -> default\/deathstar-\d:80 \(ID:\d+\) http-request FORWARDED \(HTTP\/1\.1 POST http:\/\/deathstar\.default\.svc\.cluster\.local\/v1\/request-landing\)/.test(l))).toBe(true);
    expect(lines).toContain(lines.find((l) => l.startsWith("# tiefighter-lands: ALLOWED")));
  });
  it("the X-wing is dropped by policy at the Death Star's ingress", () => {
    expect(lines.some((l) => /default\/xwing:\d+ \(ID:\d+\) -> default\/deathstar-\d:80 \(ID:\d+\) policy-verdict:none INGRESS DENIED \(TCP Flags: SYN\)/.test(l))).toBe(true);
    expect(lines.some((l) => /default\/xwing:\d+ .* Policy denied DROPPED \(TCP Flags: SYN\)/.test(l))).toBe(true);
    expect(lines.some((l) => l.startsWith("# xwing-lands: DENIED"))).toBe(true);
  });
  it("PUT /v1/exhaust-port gets 403 from the L7 proxy", () => {
    expect(lines.some((l) => /http-request DROPPED \(HTTP\/1\.1 PUT http:\/\/deathstar\.default\.svc\.cluster\.local\/v1\/exhaust-port\)/.test(l))).toBe(true);
    expect(lines.some((l) => /http-response FORWARDED \(HTTP\/1\.1 403 /.test(l))).toBe(true);
    expect(lines.some((l) => l.startsWith("# tiefighter-exhaust-port: DENIED"))).toBe(true);
  });
  it("-o json prints one Hubble-style flow per line", () => {
    const j = ciliate("simulate", "-f", "scenarios/starwars", "-o", "json");
    const flows = j.stdout.trim().split("\n").map((l) => JSON.parse(l).flow);
    const drop = flows.find((f) => f.verdict === "DROPPED" && f.event_type.type === 1)!;
    expect(drop).toMatchObject({ drop_reason_desc: "POLICY_DENIED", traffic_direction: "INGRESS", is_reply: false, Type: "L3_L4" });
    expect(drop.source).toMatchObject({ namespace: "default", pod_name: "xwing" });
    expect(drop.source.labels).toContain("k8s:class=xwing");
    expect(drop.l4.TCP).toMatchObject({ destination_port: 80, flags: { SYN: true } });
    const l7 = flows.find((f) => f.l7?.type === "REQUEST" && f.verdict === "DROPPED")!;
    expect(l7.l7.http).toMatchObject({ method: "PUT", url: "http://deathstar.default.svc.cluster.local/v1/exhaust-port" });
    const allowed = flows.find((f) => f.event_type.type === 5 && f.traffic_direction === "INGRESS" && f.verdict !== "DROPPED")!;
    expect(allowed.ingress_allowed_by[0]).toMatchObject({ kind: "CiliumNetworkPolicy", name: "rule1", namespace: "default" });
    // proto3 JSON leaves out defaults, so a trace event's unknown traffic direction is absent.
    for (const f of flows) expect(Object.keys(f)).toEqual(expect.arrayContaining(["time", "verdict", "IP", "l4", "source", "destination", "Type", "is_reply"]));
  });
});
