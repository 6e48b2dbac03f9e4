// whatif probes only the pairs with an endpoint whose policy class changed (sim/analysis/whatif.ts). After
// random sequences of policy changes — added, deleted, re-ported, re-targeted — the narrowed answer must
// equal the full recomputation over every pair, and a change that touches nothing must report nothing.
import fc from "fast-check";
import { describe, expect, it } from "vitest";
import { parseManifestText } from "../../sim/manifests.ts";
import { loadFrom, type Loaded } from "../../sim/load.ts";
import { computeWhatif, WhatifSession } from "../../sim/analysis/whatif.ts";
import { Simulation } from "../../sim/simulator.ts";
import { allocationOf } from "../../node/cluster.ts";

const APPS = ["a", "b", "c", "d"];
const PODS = 8;

interface Rule {
  name: string;
  subject: string;
  peer: string;
  port: number;
  direction: "ingress" | "egress";
  /** An HTTP rule on the port (ingress): each selected endpoint gets its own proxy port, so pods of one
   * identity differ in their entries and in the explanations. */
  http?: boolean;
  /** A namespace without pods implies a new namespace: the session builds that version from scratch. */
  namespace?: string;
}

function manifests(rules: Rule[], opts: { hostPod?: boolean; relabel?: boolean } = {}): string {
  const docs: unknown[] = [
    { apiVersion: "v1", kind: "Node", metadata: { name: "n1" } },
    { apiVersion: "v1", kind: "Node", metadata: { name: "n2" } },
  ];
  for (let i = 0; i < PODS; i++)
    docs.push({ apiVersion: "v1", kind: "Pod", metadata: { name: `p${i}`, namespace: "default", labels: { app: APPS[(i + (opts.relabel && i === 0 ? 1 : 0)) % APPS.length] } }, spec: { nodeName: i % 2 ? "n2" : "n1", containers: [{ name: "c", image: "x" }] } });
  if (opts.hostPod) docs.push({ apiVersion: "v1", kind: "Pod", metadata: { name: "agent", namespace: "default", labels: { app: "a" } }, spec: { nodeName: "n2", hostNetwork: true, containers: [{ name: "c", image: "x" }] } });
  for (const r of rules) {
    const peer = { matchLabels: { app: r.peer } };
    const ports = [{ ports: [{ port: String(r.port), protocol: "TCP" }], ...(r.http && r.direction === "ingress" ? { rules: { http: [{ method: "GET" }] } } : {}) }];
    docs.push({
      apiVersion: "cilium.io/v2",
      kind: "CiliumNetworkPolicy",
      metadata: { name: r.name, namespace: r.namespace ?? "default" },
      spec: { endpointSelector: { matchLabels: { app: r.subject } }, ...(r.direction === "ingress" ? { ingress: [{ fromEndpoints: [peer], toPorts: ports }] } : { egress: [{ toEndpoints: [peer], toPorts: ports }] }) },
    });
  }
  return docs.map((d) => JSON.stringify(d)).join("\n---\n");
}

const rule = (name: string) =>
  fc.record({ name: fc.constant(name), subject: fc.constantFrom(...APPS), peer: fc.constantFrom(...APPS), port: fc.constantFrom(80, 81), direction: fc.constantFrom("ingress" as const, "egress" as const), http: fc.boolean() });

/** One edit of the rule list: add a rule, delete one, or replace one. */
const edit = fc.oneof(
  fc.record({ op: fc.constant("add" as const), rule: rule("new") }),
  fc.record({ op: fc.constant("delete" as const), at: fc.nat() }),
  fc.record({ op: fc.constant("replace" as const), at: fc.nat(), rule: rule("x") }),
);

const simulate = (l: Loaded) => Simulation.create(l.cluster, l.policy, { engine: "wasm" });
const PROBES = [
  { port: 80, protocol: "TCP" as const },
  { port: 81, protocol: "TCP" as const },
];

describe("whatif narrowed to changed policy classes", () => {
  it("explains each pair with its own endpoint's proxy port when pods of one identity differ only in it", async () => {
    // b's pods (p1, p5, both on n2) redirect port 80 to the L7 proxy, each on its own port; a new egress
    // rule of a denies a → b, so the before explanations of p0 → p1 and p0 → p5 differ only in that port.
    const rules: Rule[] = [{ name: "r0", subject: "b", peer: "a", port: 80, direction: "ingress", http: true }];
    const before = loadFrom(parseManifestText(manifests(rules), "before.yaml"), {});
    const after = loadFrom(parseManifestText(manifests([...rules, { name: "r1", subject: "a", peer: "c", port: 80, direction: "egress" }]), "after.yaml"), { pinned: allocationOf(before.cluster) });
    const narrow = await computeWhatif(before, after, simulate, PROBES);
    const full = await computeWhatif(before, after, simulate, PROBES, { full: true });
    expect(narrow.pairs).toEqual(full.pairs);
    const ports = narrow.pairs.filter((p) => p.from === "default/p0" && p.port === 80 && (p.to === "default/p1" || p.to === "default/p5")).map((p) => /L7 proxy on port (\d+)/.exec(p.reasonBefore)?.[1]);
    expect(ports).toHaveLength(2);
    expect(ports[0]).toBeDefined();
    expect(ports[0]).not.toBe(ports[1]);
  }, 120_000);

  it("equals the full recomputation after random sequences of policy changes", async () => {
    await fc.assert(
      fc.asyncProperty(fc.array(rule("r"), { minLength: 1, maxLength: 3 }), fc.array(edit, { minLength: 1, maxLength: 2 }), async (initial, edits) => {
        let rules = initial.map((r, i) => ({ ...r, name: `r${i}` }));
        let before = loadFrom(parseManifestText(manifests(rules), "before.yaml"), {});
        let serial = 0;
        for (const e of edits) {
          const next = [...rules];
          if (e.op === "add") next.push({ ...e.rule, name: `n${serial++}` });
          else if (next.length && e.op === "delete") next.splice(e.at % next.length, 1);
          else if (next.length && e.op === "replace") {
            const i = e.at % next.length;
            next[i] = { ...e.rule, name: next[i]!.name };
          }
          const after = loadFrom(parseManifestText(manifests(next), "after.yaml"), { pinned: allocationOf(before.cluster) });
          const narrow = await computeWhatif(before, after, simulate, PROBES);
          const full = await computeWhatif(before, after, simulate, PROBES, { full: true });
          expect(narrow.pairs).toEqual(full.pairs);
          expect(narrow.flows).toEqual(full.flows);
          if (JSON.stringify(next) === JSON.stringify(rules)) expect(narrow.pairs).toEqual([]);
          rules = next;
          before = after;
        }
      }),
      { numRuns: 6 },
    );
  }, 300_000);

  it("one session answers several edits in a row, each equal to the full recomputation", async () => {
    await fc.assert(
      // A warmed session (one edit rehearsed while opening) must answer as a cold one.
      fc.asyncProperty(fc.array(rule("r"), { minLength: 1, maxLength: 3 }), fc.array(fc.array(rule("e"), { maxLength: 3 }), { minLength: 2, maxLength: 3 }), fc.boolean(), async (initial, versions, warm) => {
        const rules = initial.map((r, i) => ({ ...r, name: `r${i}` }));
        const before = loadFrom(parseManifestText(manifests(rules, { hostPod: true }), "before.yaml"), {});
        const session = await WhatifSession.open(before, simulate, { warm });
        try {
          for (const v of versions) {
            const next = v.map((r, i) => ({ ...r, name: `r${i}` }));
            const after = loadFrom(parseManifestText(manifests(next, { hostPod: true }), "after.yaml"), { pinned: allocationOf(before.cluster) });
            const delta = await session.compare(after, PROBES);
            const full = await computeWhatif(before, after, simulate, PROBES, { full: true });
            expect(delta.pairs).toEqual(full.pairs);
          }
        } finally {
          session.close();
        }
      }),
      { numRuns: 5 },
    );
  }, 300_000);

  it("one session compiles each edit incrementally: the same version and answer as a fresh load, edit after edit", async () => {
    const version = fc.record({
      rules: fc.array(rule("e"), { maxLength: 3 }),
      relabel: fc.boolean(),
      elsewhere: fc.boolean(),
    });
    await fc.assert(
      fc.asyncProperty(fc.array(rule("r"), { minLength: 1, maxLength: 3 }), fc.array(version, { minLength: 3, maxLength: 5 }), async (initial, versions) => {
        const rules = initial.map((r, i) => ({ ...r, name: `r${i}` }));
        const before = loadFrom(parseManifestText(manifests(rules, { hostPod: true }), "before.yaml"), {});
        const session = await WhatifSession.open(before, simulate);
        try {
          for (const v of versions) {
            // Mostly policy edits (the incremental compile), now and then a pod relabelled or a policy in a
            // namespace of its own (built from scratch): the session must tell them apart.
            const next: Rule[] = v.rules.map((r, i) => ({ ...r, name: `r${i}`, ...(v.elsewhere && i === 0 ? { namespace: "elsewhere" } : {}) }));
            const objects = parseManifestText(manifests(next, { hostPod: true, relabel: v.relabel && v.elsewhere && next.length > 0 }), "after.yaml");
            const after = session.load(objects);
            const fresh = loadFrom(objects, { pinned: allocationOf(before.cluster) });
            expect(after.policy).toEqual(fresh.policy);
            expect(after.cluster).toEqual(fresh.cluster);
            // A policy-only edit takes the incremental path (the session's cluster model kept).
            if (v.elsewhere && next.length) expect(after.cluster.model).not.toBe(before.cluster.model);
            else expect(after.cluster.model).toBe(before.cluster.model);
            const delta = await session.compare(after, PROBES);
            const full = await computeWhatif(before, fresh, simulate, PROBES, { full: true });
            expect(delta.pairs).toEqual(full.pairs);
            expect(delta.flows).toEqual(full.flows);
          }
        } finally {
          session.close();
        }
      }),
      { numRuns: 5 },
    );
  }, 300_000);
});
