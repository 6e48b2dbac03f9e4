/*
 * Benchmark 4: the control plane. On synthetic clusters generated in memory (Nodes, Pods, Namespaces and
 * CiliumNetworkPolicies as manifest text, parsed by the same loader as `ciliate -f`):
 *   - policy compile time and memory for (pods, policies) from (100, 10) to (10,000, 1,000): manifests →
 *     cluster model → compiled per-endpoint policy-map entries (sim/policy.ts compileClusterPolicy);
 *   - reach over all pairs of 1,000 pods: the `ciliate reach` code path (sim/analysis/reach.ts
 *     reachMatrix on a Simulation), every probe port the policies mention;
 *   - whatif latency (p50, p99) after one rule change on a 1,000-pod cluster: the `ciliate whatif` code
 *     path (sim/analysis/whatif.ts computeWhatif) with the "before" state loaded once, the changed state
 *     loaded and compiled inside the timed region.
 * Anchors (perf-anchors §6, §7.4, §7.5): Antrea 10k pods / 10k NPs ≈ 2 s, 170 MB; Cilium endpoint
 * regeneration < 0.6 s (250 rules, 10k pods); suggested targets: all-pairs for 1k pods × 500 policies < 1 s,
 * incremental what-if < 100 ms.
 */
import { setFlagsFromString } from "node:v8";
import { runInNewContext } from "node:vm";
import { parseManifestText } from "../../sim/manifests.ts";
import { buildCluster } from "../../node/cluster.ts";
import { compileClusterPolicy } from "../../sim/policy.ts";
import { loadFrom, type Loaded } from "../../sim/load.ts";
import { policyProbes } from "../../sim/analysis/probes.ts";
import { reachMatrix } from "../../sim/analysis/reach.ts";
import { computeWhatif } from "../../sim/analysis/whatif.ts";
import { Simulation } from "../../sim/simulator.ts";
import { measure, summarize, type Benchmark, type BenchResult, type Row } from "../harness.ts";

const PODS_PER_NODE = 200;
const NAMESPACES = 10;

/** Manifest text of a synthetic cluster: `pods` pods over ⌈pods/200⌉ nodes and 10 namespaces, ~20 pods
 * per app label (each app lives in one namespace), and `policies` CiliumNetworkPolicies each letting one app
 * receive from another app of its namespace on one port. */
export function syntheticCluster(pods: number, policies: number, opts: { changedPort?: number } = {}): string {
  const apps = Math.max(NAMESPACES, Math.ceil(pods / 20 / NAMESPACES) * NAMESPACES);
  const docs: unknown[] = [];
  const nodes = Math.max(1, Math.ceil(pods / PODS_PER_NODE));
  for (let n = 0; n < nodes; n++) docs.push({ apiVersion: "v1", kind: "Node", metadata: { name: `node-${n}` }, spec: { podCIDR: `10.${128 + (n >> 8)}.${n & 255}.0/24` } });
  for (let s = 0; s < NAMESPACES; s++) docs.push({ apiVersion: "v1", kind: "Namespace", metadata: { name: `ns-${s}` } });
  for (let i = 0; i < pods; i++) {
    docs.push({
      apiVersion: "v1",
      kind: "Pod",
      metadata: { name: `pod-${i}`, namespace: `ns-${i % NAMESPACES}`, labels: { app: `app-${i % apps}`, tier: i % 3 === 0 ? "front" : "back" } },
      spec: { nodeName: `node-${Math.floor(i / PODS_PER_NODE)}`, containers: [{ name: "c", image: "x", ports: [{ containerPort: 80 }] }] },
    });
  }
  for (let j = 0; j < policies; j++) {
    const port = j === 0 && opts.changedPort ? opts.changedPort : 80 + (j % 5);
    docs.push({
      apiVersion: "cilium.io/v2",
      kind: "CiliumNetworkPolicy",
      metadata: { name: `policy-${j}`, namespace: `ns-${j % NAMESPACES}` },
      spec: {
        endpointSelector: { matchLabels: { app: `app-${j % apps}` } },
        ingress: [{ fromEndpoints: [{ matchLabels: { app: `app-${(j + NAMESPACES) % apps}` } }], toPorts: [{ ports: [{ port: String(port), protocol: "TCP" }] }] }],
      },
    });
  }
  return docs.map((d) => JSON.stringify(d)).join("\n---\n");
}

let gcFn: (() => void) | undefined;
function gc(): void {
  if (!gcFn) {
    setFlagsFromString("--expose-gc");
    gcFn = runInNewContext("gc") as () => void;
  }
  gcFn();
}

const FULL_COMPILE: [number, number][] = [
  [100, 10],
  [1_000, 100],
  [3_000, 300],
  [10_000, 1_000],
];
const QUICK_COMPILE: [number, number][] = [
  [20, 4],
  [50, 5],
];

export const controlPlaneBenchmark: Benchmark = {
  name: "control-plane",
  title: "Control plane: policy compile, reach, whatif",
  steps: (quick) => (quick ? QUICK_COMPILE : FULL_COMPILE).length + 2,
  async run(ctx) {
    const result: BenchResult = { name: "control-plane", title: this.title, rows: [], ratios: [], skipped: [], charts: [], notes: [] };
    const compileRows: Row[] = [];
    for (const [pods, policies] of ctx.tiny ? QUICK_COMPILE.slice(0, 1) : ctx.quick ? QUICK_COMPILE : FULL_COMPILE) {
      const objects = parseManifestText(syntheticCluster(pods, policies), `synthetic-${pods}-${policies}.yaml`);
      const repeats = ctx.tiny ? 1 : ctx.quick ? 2 : pods >= 10_000 ? 2 : 5;
      const mem: number[] = [];
      let entries = 0;
      const stat = await measure(repeats, () => {
        const cluster = buildCluster(objects);
        gc();
        const h0 = process.memoryUsage().heapUsed;
        const t0 = process.hrtime.bigint();
        const compiled = compileClusterPolicy(cluster);
        const ms = Number(process.hrtime.bigint() - t0) / 1e6;
        gc();
        mem.push((process.memoryUsage().heapUsed - h0) / 2 ** 20);
        entries = [...compiled.endpoints.values()].reduce((n, e) => n + e.entries.length, 0);
        return ms;
      });
      const row: Row = { name: "policy compile", params: { pods, policies, "policy-map entries": entries, "retained MiB": summarize(mem).median.toFixed(1) }, unit: "ms", stat };
      result.rows.push(row);
      compileRows.push(row);
      ctx.tick(`compile ${pods}/${policies}`);
    }
    result.charts.push({ title: "Policy compile time", xLabel: "pods (policies = pods / 10; log scale)", yLabel: "ms (median)", logX: true, series: [{ name: "compile", points: compileRows.map((r) => [Number(r.params.pods), r.stat.median]) }] });
    const big = compileRows[compileRows.length - 1]!;
    if (!ctx.quick) result.ratios.push({ name: `compile ${big.params.pods} pods / ${big.params.policies} policies vs Antrea 10k/10k`, value: big.stat.median / 2000, numerator: `${big.stat.median.toFixed(0)} ms`, denominator: "2000 ms (Antrea, §6)", anchor: "< 1 ⇒ faster than the Antrea figure (different policy count: 1k vs 10k)" });

    // Reach and whatif on a 1,000-pod cluster (quick: 40 pods).
    const pods = ctx.tiny ? 20 : ctx.quick ? 40 : 1_000;
    const policies = ctx.tiny ? 4 : ctx.quick ? 8 : 500;
    const before: Loaded = loadFrom(parseManifestText(syntheticCluster(pods, policies), "before.yaml"), {});
    const probes = policyProbes(before.policy);
    const podList = before.cluster.pods.filter((p) => !p.hostNetwork);
    const reachStat = await measure(ctx.tiny ? 1 : ctx.quick ? 2 : 3, async () => {
      const t0 = process.hrtime.bigint();
      const sim = await Simulation.create(before.cluster, before.policy, { engine: "wasm" });
      try {
        for (const pr of probes) reachMatrix(sim, podList, pr);
      } finally {
        sim.close();
      }
      return Number(process.hrtime.bigint() - t0) / 1e6;
    });
    const pairs = podList.length * podList.length * probes.length;
    const reachRow: Row = { name: "reach, all pairs", params: { pods: podList.length, policies, probes: probes.length, pairs, "pairs/s": Math.round(pairs / (reachStat.median / 1000)) }, unit: "ms", stat: reachStat };
    result.rows.push(reachRow);
    result.ratios.push({ name: `reach ${podList.length} pods ÷ 1 s target`, value: reachStat.median / 1000, numerator: `${reachStat.median.toFixed(0)} ms`, denominator: "1000 ms", anchor: "§6 target: all-pairs for 1k pods × 500 policies < 1 s (< 1 ⇒ met)" });
    result.notes.push("reach uses the CLI's policy-class deduplication (pods with the same identity and policy entries are probed through the datapath once); the simulation build (one WASM datapath per node, maps filled) is inside the timed region.");
    ctx.tick("reach");

    const afterObjects = parseManifestText(syntheticCluster(pods, policies, { changedPort: 8443 }), "after.yaml");
    const samples: number[] = [];
    let changed = 0;
    // Full size: each run takes tens of seconds on a 2-vCPU VM, so 4 runs and no warm-up (the first run is kept).
    const n = ctx.tiny ? 1 : ctx.quick ? 3 : 4;
    const warm = ctx.quick ? 1 : 0;
    for (let i = 0; i < n + warm; i++) {
      const t0 = process.hrtime.bigint();
      const after = loadFrom(afterObjects, {});
      const w = await computeWhatif(before, after, (l) => Simulation.create(l.cluster, l.policy, { engine: "wasm" }), []);
      const ms = Number(process.hrtime.bigint() - t0) / 1e6;
      changed = w.pairs.length;
      if (i >= warm) samples.push(ms);
    }
    samples.sort((a, b) => a - b);
    const p = (q: number) => samples[Math.min(samples.length - 1, Math.ceil(q * samples.length) - 1)]!;
    const st = summarize(samples);
    result.rows.push({ name: "whatif after one rule change (p50 = median)", params: { pods: podList.length, policies, "changed pairs": changed, p99: p(0.99).toFixed(0) }, unit: "ms", stat: st });
    result.ratios.push({ name: "whatif p50 ÷ 100 ms target", value: st.median / 100, numerator: `${st.median.toFixed(0)} ms`, denominator: "100 ms", anchor: "§6/§7.5: incremental what-if < 100 ms (NPV's motivation); < 1 ⇒ met" });
    result.ratios.push({ name: "whatif p99 ÷ 100 ms target", value: p(0.99) / 100, numerator: `${p(0.99).toFixed(0)} ms`, denominator: "100 ms", anchor: "§7.5" });
    result.notes.push(`whatif: policy-0's port changes 80 → 8443; the 'before' state is loaded once, the changed manifests are loaded and compiled, both simulations built and all-pairs recomputed inside the timed region (computeWhatif is not incremental). ${n} timed runs${warm ? " after one warm-up" : " (no warm-up)"}; p99 of ${n} samples is their maximum.`);
    ctx.tick("whatif");
    return result;
  },
};
