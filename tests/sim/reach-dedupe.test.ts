// reach runs each half of a verdict (egress at the source, ingress at the destination) once per entry list
// and way of naming the peer, and combines halves of different pairs (sim/analysis/reach.ts). On random
// clusters and policies — allow and deny rules, both directions, several ports, host-networked pods —
// every matrix must equal the one got by running every pair through the datapath whole.
import fc from "fast-check";
import { describe, expect, it } from "vitest";
import { parseManifestText } from "../../sim/manifests.ts";
import { loadFrom } from "../../sim/load.ts";
import { reachMatrix } from "../../sim/analysis/reach.ts";
import { Simulation } from "../../sim/simulator.ts";

const APPS = ["a", "b", "c"];
const TIERS = ["x", "y"];

interface Rule {
  subject: string;
  peer: string | null;
  port: number | null;
  direction: "ingress" | "egress";
  deny: boolean;
}

function manifests(pods: { app: string; tier: string; host: boolean }[], rules: Rule[]): string {
  const docs: unknown[] = [
    { apiVersion: "v1", kind: "Node", metadata: { name: "n1" } },
    { apiVersion: "v1", kind: "Node", metadata: { name: "n2" } },
  ];
  pods.forEach((p, i) =>
    docs.push({
      apiVersion: "v1",
      kind: "Pod",
      metadata: { name: `p${i}`, namespace: "default", labels: { app: p.app, tier: p.tier } },
      spec: { nodeName: i % 2 ? "n2" : "n1", hostNetwork: p.host || undefined, containers: [{ name: "c", image: "x" }] },
    }),
  );
  rules.forEach((r, i) => {
    const peer = r.peer === null ? {} : { matchLabels: { app: r.peer } };
    const ports = r.port === null ? {} : { toPorts: [{ ports: [{ port: String(r.port), protocol: "TCP" }] }] };
    const key = r.direction === "ingress" ? (r.deny ? "ingressDeny" : "ingress") : r.deny ? "egressDeny" : "egress";
    const sel = r.direction === "ingress" ? { fromEndpoints: [peer] } : { toEndpoints: [peer] };
    docs.push({ apiVersion: "cilium.io/v2", kind: "CiliumNetworkPolicy", metadata: { name: `r${i}`, namespace: "default" }, spec: { endpointSelector: { matchLabels: { app: r.subject } }, [key]: [{ ...sel, ...ports }] } });
  });
  return docs.map((d) => JSON.stringify(d)).join("\n---\n");
}

const pod = fc.record({ app: fc.constantFrom(...APPS), tier: fc.constantFrom(...TIERS), host: fc.constant(false) });
const rule = fc.record({
  subject: fc.constantFrom(...APPS),
  peer: fc.option(fc.constantFrom(...APPS), { nil: null }),
  port: fc.option(fc.constantFrom(80, 81), { nil: null }),
  direction: fc.constantFrom("ingress" as const, "egress" as const),
  deny: fc.boolean(),
});
const PROBES = [
  { port: 80, protocol: "TCP" as const },
  { port: 81, protocol: "TCP" as const },
  { port: 53, protocol: "UDP" as const },
  { port: 8, protocol: "ICMP" as const },
];

describe("reach deduplication", () => {
  it("equals running every pair whole, on random clusters and policies", async () => {
    await fc.assert(
      fc.asyncProperty(fc.array(pod, { minLength: 2, maxLength: 7 }), fc.array(rule, { maxLength: 4 }), fc.nat(6), async (pods, rules, hostAt) => {
        // At most one host-networked pod, at a random position.
        const ps = pods.map((p, i) => ({ ...p, host: pods.length > 2 && i === hostAt % pods.length }));
        const l = loadFrom(parseManifestText(manifests(ps, rules), "cluster.yaml"), {});
        const all = [...l.cluster.pods].sort((x, y) => (x.key < y.key ? -1 : 1));
        const sim = await Simulation.create(l.cluster, l.policy, { engine: "wasm" });
        const ref = await Simulation.create(l.cluster, l.policy, { engine: "wasm" });
        try {
          for (const pr of PROBES) expect(reachMatrix(sim, all, pr).matrix).toEqual(reachMatrix(ref, all, pr, { dedupe: false }).matrix);
        } finally {
          sim.close();
          ref.close();
        }
      }),
      { numRuns: 40 },
    );
  }, 240_000);
});
