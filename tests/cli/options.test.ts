// Cluster-wide settings: --policy-enforcement and the Config document change the verdicts as Cilium's
// enforcement modes do (pkg/policy/repository.go computePolicyEnforcementAndRules), and command-line options
// override the Config document.
import { mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterAll, describe, expect, it } from "vitest";
import { ciliate, json } from "./run.ts";

const dir = mkdtempSync(join(tmpdir(), "ciliate-opts-"));
afterAll(() => rmSync(dir, { recursive: true, force: true }));
const always = join(dir, "config.yaml");
writeFileSync(always, "apiVersion: ciliate.dev/v1alpha1\nkind: Config\nmetadata: { name: cluster }\nspec: { policyEnforcement: always }\n");

describe("policy enforcement mode", () => {
  it("never: nothing is enforced, so every 'denied' expectation of k8s-netpol fails", () => {
    const r = ciliate("check", "-f", "scenarios/k8s-netpol", "--policy-enforcement", "never", "-o", "json");
    expect(r.code).toBe(1);
    const out = json(r);
    for (const x of out.results) expect(x.actual).toBe("allowed");
    expect(out.failed).toBe(out.results.filter((x: { expected: string }) => x.expected === "denied").length);
  });

  it("always (Config document): the TIE fighter's egress is default-deny, so it cannot land", () => {
    const r = ciliate("trace", "-f", "scenarios/starwars", "-f", always, "--from", "default/tiefighter", "--to", "svc:default/deathstar", "--port", "80", "-o", "json");
    const t = json(r);
    expect(t.egress).toMatchObject({ verdict: "denied", dropReason: 133 });
  });

  it("the command line overrides the Config document", () => {
    const r = ciliate("trace", "-f", "scenarios/starwars", "-f", always, "--policy-enforcement", "default", "--from", "default/tiefighter", "--to", "svc:default/deathstar", "--port", "80", "-o", "json");
    expect(json(r).verdict).toBe("allowed");
  });
});
