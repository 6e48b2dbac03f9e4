// Bad input: one clear line on stderr naming what and where, exit 2, never a stack trace, and never
// "internal error" (which is for bugs only). Each file in fixtures/bad-input/ is one such input; its first
// line, `# expect: REGEX`, is what the error line must say (file, document, line, object, field).
import { mkdtempSync, readdirSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterAll, describe, expect, it } from "vitest";
import { ciliate, ROOT } from "./run.ts";

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
  ["ICMPv6 between IPv4 pods", ["trace", "-f", "scenarios/k8s-netpol", "--from", "x/b", "--to", "y/a", "--protocol", "ICMPv6", "--icmp-type", "128"], /^ciliate: --from\/--to: ICMPv6 is carried by IPv6 only, and this flow's addresses are IPv4 .*: not applicable/],
  ["a missing file", ["check", "-f", join(dir, "missing.yaml")], /missing\.yaml: no such file or directory/],
  ["invalid YAML", ["simulate", "-f", yaml], /invalid\.yaml: document 0, line \d+: invalid YAML/],
  ["an unknown engine", ["simulate", "-f", "scenarios/starwars", "--engine", "gpu"], /argument 'gpu' is invalid/],
  ["a --delete of nothing", ["whatif", "-f", "scenarios/starwars", "--delete", "CiliumNetworkPolicy/default/nope"], /no such object/],
  ["an unknown command", ["fly"], /unknown command 'fly'/],
  ["an unknown option", ["simulate", "-f", "scenarios/starwars", "--bogus"], /^ciliate: unknown option '--bogus' \(run ciliate --help, or ciliate COMMAND --help, for usage\)$/],
  ["an option without its value", ["trace", "-f", "scenarios/starwars", "--from"], /^ciliate: option '--from <ref>' argument missing \(run ciliate --help/],
  ["a directory where a file is expected", ["check", "-f", "scenarios/starwars", "--junit", "scenarios"], /--junit scenarios: cannot write the report: is a directory/],
  ["a report under a file", ["check", "-f", "scenarios/starwars", "--junit", "scenarios/starwars/cluster.yaml/r.xml"], /--junit scenarios\/starwars\/cluster\.yaml\/r\.xml: cannot write the report: a parent is not a directory/],
];

const FIXTURES = join(ROOT, "tests/cli/fixtures/bad-input");
const fixtures = readdirSync(FIXTURES)
  .filter((f) => f.endsWith(".yaml"))
  .sort()
  .map((f) => {
    const path = join("tests/cli/fixtures/bad-input", f);
    const head = /^# expect: (.*)$/m.exec(readFileSync(join(FIXTURES, f), "utf8"));
    if (!head) throw new Error(`${path}: the first line must be "# expect: REGEX"`);
    return { path, re: new RegExp(head[1]!) };
  });

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

  it("covers every message of issue #18 with a fixture", () => {
    expect(fixtures.length).toBeGreaterThanOrEqual(16);
  });

  // Every bad-input fixture, through `simulate` (the whole loader) and `check`: the problem is reported
  // first, once, on one line naming the file; whatever else is printed is whole lines of ours.
  for (const { path, re } of fixtures)
    it(`fixture ${path}`, () => {
      for (const cmd of ["simulate", "check"]) {
        const r = ciliate(cmd, "-f", path);
        expect(r.code, r.stderr).toBe(2);
        expect(r.stderr).not.toContain("internal error");
        expect(r.stderr).not.toMatch(/^\s+at /m);
        const lines = r.stderr.split("\n").filter(Boolean);
        for (const l of lines) expect(l).toMatch(/^ciliate: /);
        expect(lines.filter((l) => l.includes(path)), r.stderr).toHaveLength(1);
        expect(lines[0]).toMatch(new RegExp(`^ciliate: ${path.replace(/[.*+?^${}()|[\]\\/]/g, "\\$&")}: document \\d+, line [1-9]\\d*: `));
        expect(lines[0]).toMatch(re);
      }
    });

  it("several bad files: one complete line per problem", () => {
    const a = fixtures.find((f) => f.path.endsWith("traffic-wrong-type.yaml"))!;
    const b = fixtures.find((f) => f.path.endsWith("config-unknown-field.yaml"))!;
    const r = ciliate("simulate", "-f", a.path, "-f", b.path);
    expect(r.code).toBe(2);
    const lines = r.stderr.split("\n").filter(Boolean);
    for (const l of lines) expect(l).toMatch(/^ciliate: /);
    const problems = lines.filter((l) => l.includes("fixtures/bad-input"));
    expect(problems).toHaveLength(2);
    for (const l of problems) expect(l).toMatch(/^ciliate: tests\/cli\/fixtures\/bad-input\/[a-z-]+\.yaml: document \d+, line \d+: /);
  });

  it("--help exits 0 and shows examples", () => {
    const r = ciliate("trace", "--help");
    expect(r.code).toBe(0);
    expect(r.stdout).toContain("Examples:");
  });
});
