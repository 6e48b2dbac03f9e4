// Every problem reported, the rest applied: a refused object is listed on stderr with every problem, the
// command still runs with everything valid, and the exit status is 2 (bad input). Warnings are printed
// on stderr, counted in -o json, and are errors with --strict.
import { mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterAll, describe, expect, it } from "vitest";
import { ciliate } from "./run.ts";

const dir = mkdtempSync(join(tmpdir(), "ciliate-refused-"));
afterAll(() => rmSync(dir, { recursive: true, force: true }));
const file = (name: string, text: string) => {
  const p = join(dir, name);
  writeFileSync(p, text);
  return p;
};
// Two refused policies (one by the schema, one by Cilium's sanitize rules), each with two problems.
const bad = file(
  "bad.yaml",
  `apiVersion: cilium.io/v2
kind: CiliumNetworkPolicy
metadata: {name: typo, namespace: default}
spec:
  endpointSelector: {}
  ingress: [{fromEndpoint: [{}], toPorts: [{ports: [{port: 80}]}]}]
---
apiVersion: cilium.io/v2
kind: CiliumNetworkPolicy
metadata: {name: sanitize, namespace: default}
spec:
  endpointSelector: {}
  ingress: [{fromCIDR: [10.0.0.300/8], toPorts: [{ports: [{port: "99999"}]}]}]
`,
);
const warned = file(
  "warned.yaml",
  `apiVersion: cilium.io/v2
kind: CiliumClusterwideNetworkPolicy
metadata: {name: host-fw}
spec:
  nodeSelector: {}
  ingress: [{fromEntities: [cluster]}]
`,
);

describe("refused objects are all reported, the rest applies", () => {
  it("reach prints the matrix of the valid policies, lists every problem, exits 2", () => {
    const r = ciliate("reach", "-f", "scenarios/starwars", "-f", bad, "--port", "80/TCP", "-o", "json");
    expect(r.code).toBe(2);
    const out = JSON.parse(r.stdout);
    // The starwars policy still applies: the X-wing cannot reach the Death Star.
    expect(out.probes[0].matrix["default/xwing"]["default/deathstar-0"]).toBe(false);
    expect(out.probes[0].matrix["default/tiefighter"]["default/deathstar-0"]).toBe(true);
    expect(out.diagnostics.refused).toEqual(["CiliumNetworkPolicy default/typo", "CiliumNetworkPolicy default/sanitize"]);
    expect(out.diagnostics.errors).toBe(4);
    const lines = r.stderr.trim().split("\n");
    expect(lines).toHaveLength(4);
    expect(lines[0]).toMatch(/bad\.yaml: document 0, line 6: CiliumNetworkPolicy default\/typo spec\.ingress\[0\]\.fromEndpoint: unknown field "fromEndpoint"/);
    expect(lines[1]).toMatch(/CiliumNetworkPolicy default\/typo spec\.ingress\[0\]\.toPorts\[0\]\.ports\[0\]\.port: must be of type string/);
    expect(lines[2]).toMatch(/bad\.yaml: document 1, line \d+: CiliumNetworkPolicy default\/sanitize spec\.ingress\[0\]\.fromCIDR\[0\]: unable to parse CIDR: ParseAddr\("10\.0\.0\.300\/8"\): IPv4 field has value >255/);
    expect(lines[3]).toMatch(/CiliumNetworkPolicy default\/sanitize spec\.ingress\[0\]\.toPorts\[0\]\.ports\[0\]\.port: Unable to parse port: strconv\.ParseUint: parsing "99999": value out of range/);
  });

  it("warnings go to stderr in every command and are counted in -o json; exit 0", () => {
    const r = ciliate("reach", "-f", "scenarios/starwars", "-f", warned, "--port", "80/TCP", "-o", "json");
    expect(r.code).toBe(0);
    expect(r.stderr).toMatch(/^ciliate: warning: .*CiliumClusterwideNetworkPolicy host-fw spec\.nodeSelector: .*not enforced/m);
    expect(JSON.parse(r.stdout).diagnostics).toMatchObject({ errors: 0, warnings: 1 });
    const s = ciliate("simulate", "-f", "scenarios/starwars", "-f", warned);
    expect(s.code).toBe(0);
    expect(s.stderr).toMatch(/warning: .*host-fw/);
  });

  it("check, trace and whatif print the warning on stderr and count it in -o json too", () => {
    const runs = {
      check: ciliate("check", "-f", "scenarios/starwars", "-f", warned, "-o", "json"),
      trace: ciliate("trace", "-f", "scenarios/starwars", "-f", warned, "--from", "default/tiefighter", "--to", "svc:default/deathstar", "--port", "80", "-o", "json"),
      whatif: ciliate("whatif", "-f", "scenarios/starwars", "-f", warned, "--delete", "CiliumClusterwideNetworkPolicy/host-fw", "--port", "80/TCP", "-o", "json"),
    };
    for (const [cmd, r] of Object.entries(runs)) {
      expect(r.stderr, cmd).toMatch(/^ciliate: warning: .*CiliumClusterwideNetworkPolicy host-fw spec\.nodeSelector: .*not enforced/m);
      expect(JSON.parse(r.stdout).diagnostics, cmd).toMatchObject({ errors: 0, warnings: 1 });
    }
  });

  it("--strict turns warnings into errors: the policy is refused and the exit status is 2", () => {
    const r = ciliate("reach", "--strict", "-f", "scenarios/starwars", "-f", warned, "--port", "80/TCP", "-o", "json");
    expect(r.code).toBe(2);
    expect(r.stderr).not.toMatch(/warning:/);
    expect(r.stderr).toMatch(/^ciliate: .*host-fw spec\.nodeSelector/m);
    expect(JSON.parse(r.stdout).diagnostics).toMatchObject({ errors: 1, warnings: 0, refused: ["CiliumClusterwideNetworkPolicy host-fw"] });
  });
});
