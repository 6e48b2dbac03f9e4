// `ciliate trace` names the deciding policy-map entry and the rule behind it, per direction and for L7.
import { describe, expect, it } from "vitest";
import { ciliate, json } from "./run.ts";

const base = ["trace", "-f", "scenarios/starwars", "--to", "svc:default/deathstar", "--port", "80", "-o", "json"];

describe("trace on starwars", () => {
  it("xwing: denied at the Death Star's ingress, no entry matched, egress allowed by allow-all", () => {
    const t = json(ciliate(...base, "--from", "default/xwing"));
    expect(t.verdict).toBe("denied");
    expect(t.egress.verdict).toBe("allowed");
    expect(t.egress.rules[0]).toMatchObject({ kind: "derived", element: "allow-any-egress" });
    expect(t.ingress).toMatchObject({ verdict: "denied", dropReason: 133, entry: null, endpoint: expect.stringMatching(/^default\/deathstar-\d$/) });
    expect(t.service).toMatchObject({ namespace: "default", name: "deathstar", kind: "ClusterIP" });
    expect(t.backend.pod).toMatch(/^default\/deathstar-\d$/);
    expect(t.source.identity).not.toBe(t.destination.identity);
    expect(t.l7).toBeUndefined();
  });

  it("tiefighter PUT /v1/exhaust-port: L3/L4 allowed by rule1 ingress[0], L7 denied with 403", () => {
    const t = json(ciliate(...base, "--from", "default/tiefighter", "--http-method", "PUT", "--http-path", "/v1/exhaust-port"));
    expect(t.verdict).toBe("denied");
    expect(t.ingress.verdict).toBe("allowed");
    expect(t.ingress.entry).toMatchObject({ direction: "ingress", protocol: 6, port: 80, portPrefix: 16, deny: false, identity: t.source.identity });
    expect(t.ingress.entry.proxyPort).toBeGreaterThan(0);
    expect(t.ingress.rules).toEqual([expect.objectContaining({ kind: "CiliumNetworkPolicy", namespace: "default", name: "rule1", ruleIndex: 0, element: "ingress[0]" })]);
    expect(t.l7).toMatchObject({ verdict: "denied", status: 403, direction: "ingress" });
  });

  it("tiefighter POST /v1/request-landing: allowed, and L7 names the matching HTTP rule", () => {
    const t = json(ciliate(...base, "--from", "default/tiefighter", "--http-method", "POST", "--http-path", "/v1/request-landing"));
    expect([t.verdict, t.egress.verdict, t.ingress.verdict, t.l7.verdict]).toEqual(["allowed", "allowed", "allowed", "allowed"]);
    expect(t.l7.rule).toMatchObject({ name: "rule1", httpIndex: 0, http: { method: "POST", path: "/v1/request-landing" } });
  });

  it("text output walks the packets and names the rule", () => {
    const r = ciliate("trace", "-f", "scenarios/k8s-netpol", "--from", "y/c", "--to", "x/a", "--port", "80");
    expect(r.code).toBe(0);
    expect(r.stdout).toMatch(/Egress: +DENIED — Policy denied/);
    expect(r.stdout).toMatch(/Ingress: +ALLOWED \(not reached; this is what ingress would decide\)/);
    expect(r.stdout).toMatch(/rule: NetworkPolicy x\/allow-y-to-a-on-80 rule 0 ingress\[0\]/);
  });

  it("names the ends as --from/--to take them", () => {
    const svc = ciliate("trace", "-f", "scenarios/starwars", "--from", "default/xwing", "--to", "svc:default/deathstar", "--port", "80");
    expect(svc.stdout.split("\n")[0]).toBe("Flow:        default/xwing -> svc:default/deathstar 80/TCP");
    const world = ciliate("trace", "-f", "scenarios/starwars", "--from", "entity:world", "--to", "svc:default/deathstar", "--port", "80");
    expect(world.stdout.split("\n")[0]).toBe("Flow:        entity:world -> svc:default/deathstar 80/TCP");
  });
});
