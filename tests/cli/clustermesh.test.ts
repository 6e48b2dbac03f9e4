// `ciliate simulate|check|trace|reach` on a multi-cluster scenario (sim/mesh.ts, docs/scenarios.md "Several
// clusters"): the bundled scenarios/clustermesh (the topology of tests/agent/e2e-clustermesh.test.ts) with
// endpoints shown cluster/namespace/name, exit codes, and bad input as one line naming the file and field.
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterAll, describe, expect, it } from "vitest";
import { ciliate, json } from "./run.ts";

const DIR = "scenarios/clustermesh";
const tmp = mkdtempSync(join(tmpdir(), "ciliate-mesh-"));
afterAll(() => rmSync(tmp, { recursive: true, force: true }));

/** The scenario with one file edited. */
function edited(file: string, edit: (s: string) => string): string {
  const d = mkdtempSync(join(tmp, "s-"));
  for (const f of ["east.yaml", "west.yaml", "policy.yaml", "traffic.yaml", "expectations.yaml"]) {
    const text = readFileSync(join(DIR, f), "utf8");
    writeFileSync(join(d, f), f === file ? edit(text) : text);
  }
  return d;
}

// Every case runs the CLI several times: generous timeouts for a loaded machine.
const SLOW = 300_000;

describe("ciliate on a two-cluster scenario", () => {
  it("check: every Expectation passes, exit 0", () => {
    const r = ciliate("check", "-f", DIR, "-o", "json");
    expect(r.code).toBe(0);
    const j = json<{ results: { name: string; actual: string; passed: boolean }[]; failed: number }>(r);
    expect(j.failed).toBe(0);
    expect(Object.fromEntries(j.results.map((x) => [x.name, x.actual]))).toEqual({
      "east-client-reaches-west-web": "allowed",
      "west-client-denied-by-cluster-label": "denied",
      "east-web-open-to-west": "allowed",
      "api-fails-over-to-west": "allowed",
    });
  }, SLOW);

  it("check: a wrong expectation fails with exit 1", () => {
    const d = edited("expectations.yaml", (s) => s.replace("to: { pod: west/default/wweb }, port: 8080, protocol: TCP, verdict: allowed", "to: { pod: west/default/wweb }, port: 8080, protocol: TCP, verdict: denied"));
    expect(ciliate("check", "-f", d).code).toBe(1);
  }, SLOW);

  it("simulate: endpoints shown cluster/namespace/name, Hubble's cluster_name in JSON", () => {
    const r = ciliate("simulate", "-f", DIR, "--flow", "west-client-to-west-web");
    expect(r.code).toBe(0);
    expect(r.stdout).toMatch(/\[west\/node-4\]: west\/default\/wclient:\d+ \(ID:131073\) -> west\/default\/wweb:8080 \(ID:131074\) policy-verdict:none INGRESS DENIED/);
    expect(r.stdout).toMatch(/# west-client-to-west-web: DENIED/);
    const lines = ciliate("simulate", "-f", DIR, "-o", "json", "--flow", "east-client-to-west-web").stdout.trim().split("\n").map((l) => JSON.parse(l));
    const verdict = lines.find((l) => l.flow?.event_type?.type === 5 && l.flow.traffic_direction === "INGRESS").flow;
    expect(verdict.source).toMatchObject({ cluster_name: "east", namespace: "default", pod_name: "eclient", identity: 65537 });
    expect(verdict.destination).toMatchObject({ cluster_name: "west", pod_name: "wweb" });
    expect(verdict.verdict).toBe("FORWARDED");
  }, SLOW);

  it("trace: the flow crosses clusters; the other cluster's node and policy decide the ingress", () => {
    const r = ciliate("trace", "-f", DIR, "--from", "east/default/eclient", "--to", "west/default/wweb", "--port", "8080", "-o", "json");
    expect(r.code).toBe(0);
    const j = json(r);
    expect(j.verdict).toBe("allowed");
    expect(j.source).toMatchObject({ pod: "east/default/eclient", identity: 65537 });
    expect(j.destination).toMatchObject({ pod: "west/default/wweb", node: "west/node-4" });
    expect(j.ingress).toMatchObject({ verdict: "allowed", node: "west/node-4", endpoint: "west/default/wweb" });
    expect(j.ingress.rules.map((x: { name: string }) => x.name)).toEqual(["web-from-east"]);
    expect(j.ingress.entry).toMatchObject({ identity: 65537, direction: "ingress" });
    const denied = json(ciliate("trace", "-f", DIR, "--from", "west/default/wclient", "--to", "west/default/wweb", "--port", "8080", "-o", "json"));
    expect(denied.verdict).toBe("denied");
    // The global service from east: a backend in either cluster; api fails over to west.
    const api = json(ciliate("trace", "-f", DIR, "--from", "east/default/eclient", "--to", "svc:east/default/api", "--port", "80", "-o", "json"));
    expect(api.backend.pod).toBe("west/default/wapi");
  }, SLOW);

  it("reach: every cluster's pods, named cluster/namespace/name; only east's client reaches west's web", () => {
    const r = ciliate("reach", "-f", DIR, "--port", "8080/TCP", "-o", "json");
    expect(r.code).toBe(0);
    const m = json(r).probes[0].matrix as Record<string, Record<string, boolean>>;
    const pods = ["east/default/eapi", "east/default/eclient", "east/default/eweb", "west/default/wapi", "west/default/wclient", "west/default/wweb"];
    expect(Object.keys(m)).toEqual(pods);
    for (const from of pods) {
      expect(Object.keys(m[from]!)).toEqual(pods);
      // west's web admits app=client of cluster east only; nothing else selects any pod.
      for (const to of pods.filter((p) => p !== "west/default/wweb")) expect(m[from]![to], `${from} -> ${to}`).toBe(true);
      expect(m[from]!["west/default/wweb"], `${from} -> west/default/wweb`).toBe(from === "east/default/eclient");
    }
    const w = ciliate("whatif", "-f", DIR, "--delete", "CiliumNetworkPolicy/default/web-from-east");
    expect(w.code).toBe(2);
    expect(w.stderr.trim().split("\n")).toHaveLength(1);
  }, SLOW);

  it("bad input: one line naming the file and field, exit 2", () => {
    const cases: [string, (s: string) => string, RegExp][] = [
      ["west.yaml", (s) => s.replace("clusterId: 2", "clusterId: 1"), /west\.yaml: document \d+: Config west spec\.clusterId: clusterId 1 of cluster west is already cluster east's/],
      ["west.yaml", (s) => s.replace("clusterId: 2", "clusterId: 300"), /west\.yaml: document \d+: Config west spec\.clusterId: invalid clusterId 300 \(an integer 1-255/],
      ["policy.yaml", (s) => s.replace("ciliate.dev/cluster: west", "ciliate.dev/cluster: north"), /policy\.yaml: document \d+: CiliumNetworkPolicy web-from-east metadata\.annotations\.ciliate\.dev\/cluster: unknown cluster "north"/],
    ];
    for (const [file, edit, want] of cases) {
      const r = ciliate("check", "-f", edited(file, edit));
      expect(r.code, r.stderr).toBe(2);
      expect(r.stderr.trim().split("\n")).toHaveLength(1);
      expect(r.stderr).toMatch(want);
    }
    const unknownRef = ciliate("trace", "-f", DIR, "--from", "north/default/eclient", "--to", "west/default/wweb", "--port", "8080");
    expect(unknownRef.code).toBe(2);
    expect(unknownRef.stderr).toMatch(/--from: unknown cluster "north"/);
    const otherSvc = ciliate("trace", "-f", DIR, "--from", "east/default/eclient", "--to", "svc:west/default/web", "--port", "80");
    expect(otherSvc.code).toBe(2);
    expect(otherSvc.stderr).toMatch(/service west\/default\/web is cluster west's/);
  }, SLOW);
});
