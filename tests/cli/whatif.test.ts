// `ciliate whatif` reports exactly the known changes of known edits of the Star Wars scenario.
import { mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { describe, expect, it } from "vitest";
import { ciliate, ciliateEnv, json } from "./run.ts";

describe("whatif on starwars", () => {
  it("deleting rule1 opens the Death Star to the X-wing and lets PUT /v1/exhaust-port through", () => {
    const out = json(ciliate("whatif", "-f", "scenarios/starwars", "--delete", "CiliumNetworkPolicy/default/rule1", "-o", "json"));
    expect(out.pairs.map((p: any) => [p.from, p.to, p.port, p.protocol, p.before, p.after])).toEqual([
      ["default/xwing", "default/deathstar-0", 80, "TCP", "denied", "allowed"],
      ["default/xwing", "default/deathstar-1", 80, "TCP", "denied", "allowed"],
    ]);
    expect(out.pairs[0].reasonBefore).toMatch(/ingress at default\/deathstar-0: Policy denied/);
    expect(out.pairs[0].reasonAfter).toMatch(/no policy selects default\/deathstar-0 in ingress/);
    expect(out.flows.map((f: any) => [f.name, f.before, f.after]).sort()).toEqual([
      ["tiefighter-exhaust-port", "denied", "allowed"],
      ["xwing-lands", "denied", "allowed"],
    ]);
    for (const f of out.flows) expect(f.backendBefore).toBe(f.backendAfter);
  });

  it("replacing the L7 policy by the L3/L4 one changes only the exhaust-port request", () => {
    const out = json(ciliate("whatif", "-f", "scenarios/starwars", "--apply", "scenarios/extras/starwars-l3-l4-policy.yaml", "-o", "json"));
    expect(out.pairs).toEqual([]);
    expect(out.flows).toHaveLength(1);
    expect(out.flows[0]).toMatchObject({ name: "tiefighter-exhaust-port", before: "denied", after: "allowed" });
    expect(out.flows[0].reasonBefore).toMatch(/403/);
  });

  it("deleting a pod reports its flows as absent afterwards, and no other flow changes because its ports shifted", () => {
    const out = json(ciliate("whatif", "-f", "scenarios/starwars", "--delete", "Pod/default/xwing", "-o", "json"));
    expect(out.pairs).toEqual([]);
    expect(out.flows.map((f: any) => [f.name, f.before, f.after, f.backendAfter])).toEqual([["xwing-lands", "denied", "absent", null]]);
    expect(out.flows[0].reasonAfter).toMatch(/unknown pod default\/xwing/);
  });

  it("prints one block per change, with nothing cut, and a one-line table with --wide", () => {
    const blocks = ciliate("whatif", "-f", "scenarios/starwars", "--delete", "CiliumNetworkPolicy/default/rule1");
    expect(blocks.stdout).toMatch(/^default\/xwing -> default\/deathstar-0 80\/TCP: denied -> allowed\n {2}before: ingress at default\/deathstar-0: Policy denied/m);
    expect(blocks.stdout).toMatch(/^flow xwing-lands: denied -> allowed\n/m);
    const wide = ciliate("whatif", "-f", "scenarios/starwars", "--delete", "CiliumNetworkPolicy/default/rule1", "--wide");
    const row = wide.stdout.split("\n").find((l: string) => l.includes("xwing-lands"))!;
    expect(row).toContain("no policy selects");
  });

  for (const width of [40, 72, 120])
    it(`blocks stay within ${width} columns and keep every name, backend and reason whole`, () => {
      const args = ["whatif", "-f", "scenarios/starwars", "--delete", "CiliumNetworkPolicy/default/rule1", "--delete", "Pod/default/tiefighter"];
      const text = ciliateEnv({ COLUMNS: String(width) }, ...args).stdout;
      for (const l of text.split("\n")) expect(l.length, l).toBeLessThanOrEqual(width);
      const out = json(ciliate(...args, "-o", "json"));
      expect(out.pairs.length + out.flows.length).toBeGreaterThan(2);
      const squash = (s: string) => s.replace(/\s/g, "");
      for (const c of [...out.pairs, ...out.flows])
        for (const v of [c.from, c.to, c.name, c.backendBefore, c.backendAfter, c.reasonBefore, c.reasonAfter]) if (v) expect(squash(text)).toContain(squash(v));
    });

  it("reports nothing for a no-op apply (the same policy again)", () => {
    const out = json(ciliate("whatif", "-f", "scenarios/starwars", "--apply", "scenarios/starwars/policy-l7.yaml", "-o", "json"));
    expect(out).toMatchObject({ pairs: [], flows: [], diagnostics: { errors: 0, refused: [] } });
  });

  it("a new pod that sorts first renumbers nothing, so no existing pair or flow changes", () => {
    const dir = mkdtempSync(join(tmpdir(), "ciliate-whatif-"));
    const pod = join(dir, "pod.yaml");
    writeFileSync(pod, "apiVersion: v1\nkind: Pod\nmetadata: { name: aaa-probe, namespace: default, labels: { org: alliance } }\nspec: { containers: [{ name: c, image: x }] }\n");
    const out = json(ciliate("whatif", "-f", "scenarios/starwars", "--apply", pod, "-o", "json"));
    rmSync(dir, { recursive: true, force: true });
    expect(out).toMatchObject({ pairs: [], flows: [], diagnostics: { errors: 0, refused: [] } });
  });
});
