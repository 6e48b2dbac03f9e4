// Bad input: one clear line on stderr naming what and where, exit 2, never a stack trace.
import { mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterAll, describe, expect, it } from "vitest";
import { ciliate } from "./run.ts";

const dir = mkdtempSync(join(tmpdir(), "ciliate-bad-"));
afterAll(() => rmSync(dir, { recursive: true, force: true }));
const file = (name: string, text: string) => {
  const p = join(dir, name);
  writeFileSync(p, text);
  return p;
};
const dup = file("dup.yaml", "apiVersion: v1\nkind: Pod\nmetadata: {name: a}\nstatus: {podIP: 10.244.0.50}\n---\napiVersion: v1\nkind: Pod\nmetadata: {name: b}\nstatus: {podIP: 10.244.0.50}\n");
const yaml = file("invalid.yaml", "apiVersion: v1\nkind: Pod\nmetadata: {name: a\n  bad: [\n");
const tport = file("tport.yaml", "apiVersion: v1\nkind: Pod\nmetadata: {name: a, labels: {app: a}}\nspec: {containers: [{name: c, image: x, ports: [{containerPort: 80}]}]}\n---\napiVersion: v1\nkind: Service\nmetadata: {name: s}\nspec: {selector: {app: a}, ports: [{port: 80, targetPort: web}]}\n");

const cases: [string, string[], RegExp][] = [
  ["an unknown pod in --from", ["trace", "-f", "scenarios/starwars", "--from", "default/nobody", "--to", "default/xwing", "--port", "80"], /unknown pod default\/nobody/],
  ["an unknown service in --to", ["trace", "-f", "scenarios/starwars", "--from", "default/xwing", "--to", "svc:default/nothing", "--port", "80"], /unknown service default\/nothing/],
  ["a malformed port", ["reach", "-f", "scenarios/starwars", "--port", "80/XYZ"], /malformed port "80\/XYZ"/],
  ["a malformed trace port", ["trace", "-f", "scenarios/starwars", "--from", "default/xwing", "--to", "default/tiefighter", "--port", "eighty"], /malformed --port "eighty"/],
  ["two pods with the same IP", ["simulate", "-f", dup], /dup\.yaml: document 1, line \d+: Pod default\/b status\.podIP: .*already used by pod default\/a/],
  ["a targetPort name no pod declares", ["simulate", "-f", tport], /tport\.yaml: document 1, line \d+: Service default\/s spec\.ports\[0\]\.targetPort/],
  ["a missing file", ["check", "-f", join(dir, "missing.yaml")], /missing\.yaml: no such file or directory/],
  ["invalid YAML", ["simulate", "-f", yaml], /invalid\.yaml: document 0, line \d+: invalid YAML/],
  ["an unknown engine", ["simulate", "-f", "scenarios/starwars", "--engine", "gpu"], /argument 'gpu' is invalid/],
  ["a --delete of nothing", ["whatif", "-f", "scenarios/starwars", "--delete", "CiliumNetworkPolicy/default/nope"], /no such object/],
  ["an unknown command", ["fly"], /unknown command 'fly'/],
];

describe("bad input exits 2 with one line", () => {
  for (const [what, args, re] of cases)
    it(what, () => {
      const r = ciliate(...args);
      expect(r.code).toBe(2);
      expect(r.stdout).toBe("");
      const first = r.stderr.split("\n")[0]!;
      expect(first).toMatch(/^ciliate: /);
      expect(first).toMatch(re);
      expect(r.stderr).not.toMatch(/^\s+at /m);
      expect(r.stderr).not.toContain("internal error");
    });

  it("--help exits 0 and shows examples", () => {
    const r = ciliate("trace", "--help");
    expect(r.code).toBe(0);
    expect(r.stdout).toContain("Examples:");
  });
});
