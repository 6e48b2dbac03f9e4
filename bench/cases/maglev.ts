/*
 * Benchmark 5: Maglev. Table build time for M = 16381 and 65521 with 10, 100 and 1,000 backends (core's
 * maglevBuild in WASM, and the same core as JavaScript); balance (max ÷ mean slots per backend);
 * disruption after removing 1 % and 10 % of the backends (fraction of slots whose backend changed, and
 * the part of it beyond the unavoidable — the slots the removed backends owned); and agreement: the WASM
 * table against the JS build, and
 * against what the kernel map holds after the WASM table is written into it and read back, bit for bit.
 * Cilium's guidance: M > 100·N keeps imbalance and reassignment within about 1 % (anchor A17 of
 * docs/benchmarks.md: Cilium's "Kubernetes Without kube-proxy" guide).
 */
import { createJsDatapath, createWasmDatapath } from "../../sim/engines.ts";
import { KernelDatapath, KERNEL_OBJECT } from "../../datapath/kernel-engine.ts";
import { MAGLEV_DEFAULT_SEED } from "../../host/maglev.ts";
import { measure, type Benchmark, type BenchResult, type Row } from "../harness.ts";
import { kernelUnavailable } from "../fixtures/engines.ts";
import { maglevBackends, MAP_SPECS, SEED_MURMUR, type Backend } from "../fixtures/node.ts";

const FULL = { ms: [16381, 65521], ns: [10, 100, 1000] };
const QUICK = { ms: [16381], ns: [10] };

export function backendsOf(n: number): Backend[] {
  return Array.from({ length: n }, (_, i) => ({ id: i + 1, ip: `10.${1 + (i >> 16)}.${(i >> 8) & 255}.${i & 255}`, port: 8080 }));
}

/** max ÷ mean slots per backend. */
export function balance(table: Uint32Array, n: number): number {
  const counts = new Map<number, number>();
  for (const id of table) counts.set(id, (counts.get(id) ?? 0) + 1);
  return Math.max(...counts.values()) / (table.length / n);
}

/** Fraction of slots that changed, and the part beyond the slots owned by removed backends. */
export function disruption(before: Uint32Array, after: Uint32Array, removed: Set<number>): { changed: number; excess: number } {
  let changed = 0;
  let forced = 0;
  for (let i = 0; i < before.length; i++) {
    if (before[i] !== after[i]) changed++;
    if (removed.has(before[i]!)) forced++;
  }
  return { changed: changed / before.length, excess: (changed - forced) / before.length };
}

function same(a: ArrayLike<number>, b: ArrayLike<number>): boolean {
  if (a.length !== b.length) return false;
  for (let i = 0; i < a.length; i++) if (a[i] !== b[i]) return false;
  return true;
}

export const maglevBenchmark: Benchmark = {
  name: "maglev",
  title: "Maglev: table build, balance, disruption, agreement",
  steps: (quick) => (quick ? QUICK : FULL).ms.length * (quick ? QUICK : FULL).ns.length,
  async run(ctx) {
    const { ms, ns } = ctx.tiny ? { ms: [251], ns: [10] } : ctx.quick ? QUICK : FULL;
    const repeats = ctx.tiny ? 1 : ctx.quick ? 3 : 7;
    const result: BenchResult = { name: "maglev", title: this.title, rows: [], ratios: [], skipped: [], charts: [], notes: [] };
    const wasm = createWasmDatapath();
    const js = await createJsDatapath();
    const kernelWhy = kernelUnavailable(KERNEL_OBJECT);
    if (kernelWhy) result.skipped.push({ what: "kernel map read-back comparison", reason: kernelWhy });
    const kdp = kernelWhy ? undefined : new KernelDatapath({ capacities: { lb_maglev: 65_536 } });
    const buildSeries = new Map<string, [number, number][]>();
    const agreement: string[] = [];
    let allAgree = true;
    try {
      for (const m of ms) {
        for (const n of ns) {
          const be = backendsOf(n);
          const mb = maglevBackends(be);
          const tw = await measure(repeats, () => {
            const t0 = process.hrtime.bigint();
            wasm.maglevTable(mb, m, SEED_MURMUR);
            return Number(process.hrtime.bigint() - t0) / 1e6;
          });
          const tj = await measure(ctx.quick ? 1 : 3, () => {
            const t0 = process.hrtime.bigint();
            js.maglevTable(mb, m, SEED_MURMUR);
            return Number(process.hrtime.bigint() - t0) / 1e6;
          });
          const table = wasm.maglevTable(mb, m, SEED_MURMUR);
          const params = { M: m, backends: n };
          const bal = balance(table, n);
          result.rows.push({ name: "wasm build", params: { ...params, balance: bal.toFixed(4) }, unit: "ms", stat: tw });
          result.rows.push({ name: "js build", params: { ...params }, unit: "ms", stat: tj });
          result.ratios.push({ name: `build M=${m}, N=${n}: wasm ÷ js`, value: tw.median / tj.median, numerator: "wasm build", denominator: "js build", anchor: "A6: WASM ties or beats JS (≈ 0.6–1.0)" });
          for (const eng of ["wasm", "js"]) {
            const k = `${eng} M=${m}`;
            buildSeries.set(k, [...(buildSeries.get(k) ?? []), [n, (eng === "wasm" ? tw : tj).median]]);
          }
          for (const pct of [1, 10]) {
            const k = Math.max(1, Math.round((n * pct) / 100));
            // Remove every (n/k)-th backend, deterministic.
            const removed = new Set<number>();
            for (let i = 0; i < k; i++) removed.add(be[Math.floor((i * n) / k)]!.id);
            const after = wasm.maglevTable(mb.filter((b) => !removed.has(b.id)), m, SEED_MURMUR);
            const d = disruption(table, after, removed);
            const stat = { median: d.changed * 100, min: d.changed * 100, max: d.changed * 100, runs: 1 };
            result.rows.push({ name: `disruption, remove ${pct} % (${k} of ${n})`, params: { ...params, "excess %": (d.excess * 100).toFixed(3) }, unit: "% slots changed", stat } as Row);
          }
          // Agreement.
          const jt = js.maglevTable(mb, m, SEED_MURMUR);
          const okJs = same(table, jt);
          let okKernel: boolean | undefined;
          if (kdp) {
            const map = kdp.map(MAP_SPECS.Maglev);
            for (let slot = 0; slot < m; slot++) map.update({ revNatIndex: 1, slot }, { backendId: table[slot]! });
            const back = new Uint32Array(m);
            for (let slot = 0; slot < m; slot++) back[slot] = map.lookup({ revNatIndex: 1, slot })?.backendId ?? 0xffffffff;
            okKernel = same(table, back);
            for (let slot = 0; slot < m; slot++) map.delete({ revNatIndex: 1, slot });
          }
          allAgree &&= okJs && okKernel !== false;
          agreement.push(`M=${m}, N=${n}: wasm = js ${okJs ? "yes" : "NO"}; wasm = kernel map read-back ${okKernel === undefined ? "not run" : okKernel ? "yes" : "NO"} (balance ${bal.toFixed(4)})`);
          ctx.tick(`M=${m} N=${n}`);
        }
      }
    } finally {
      kdp?.close();
      wasm.close();
      js.close();
    }
    result.notes.push(`Bit-for-bit agreement (${allAgree ? "all tables identical" : "MISMATCH FOUND"}):`, ...agreement.map((a) => `  ${a}`));
    result.notes.push("Balance is max ÷ mean slots per backend (1.0 is perfect). Disruption: % of the M slots whose backend changed after removing backends; 'excess %' is the part beyond the slots the removed backends owned (0 would be a perfect consistent hash). With 10 backends, 1 % rounds up to one backend (10 %).");
    const series = [...buildSeries.entries()].map(([name, points]) => ({ name, points }));
    result.charts.push({ title: "Maglev table build time", xLabel: "backends (log scale)", yLabel: "ms (median)", logX: true, series });
    return result;
  },
};
