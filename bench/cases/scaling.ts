/*
 * Benchmark 2: per-packet cost as the maps grow — policy entries 10 → 100,000, services 10 → 100,000,
 * ipcache prefixes 10 → 500,000 — on wasm and the kernel, as curves. The probe for policy and ipcache is
 * the packet policy denies (ipcache lookups plus the full policy lookup, no conntrack entry created, so it
 * can be repeated); the probe for services is a new SYN to a ClusterIP (service lookup, Maglev pick, CT
 * create), a fresh frame per run. Cilium's claim is O(1) per packet for hash maps and O(prefix length) for
 * LPM tries (anchor A8 in docs/benchmarks.md), against iptables' O(rules) (A9).
 * The js engine is left out of the curves (it runs the same core at ~10–20× wasm's cost, see the
 * datapath benchmark) to keep the full run within its time budget.
 */
import { createWasmDatapath } from "../../sim/engines.ts";
import { KernelDatapath, KERNEL_OBJECT } from "../../datapath/kernel-engine.ts";
import type { Datapath } from "../../host/datapath.ts";
import { measure, type Benchmark, type BenchResult, type Row } from "../harness.ts";
import { abiTimer, kernelTimer, kernelUnavailable, pinned, type PacketTimer } from "../fixtures/engines.ts";
import { benchNode, buildFrame, C, fillIpcache, fillPolicy, fillServices, frames, NOW, setMaglevBuilder } from "../fixtures/node.ts";
import type { AbiDatapath } from "../../host/abi-datapath.ts";

type Dim = "policy" | "services" | "ipcache";

const FULL: Record<Dim, number[]> = {
  policy: [10, 100, 1_000, 10_000, 100_000],
  services: [10, 100, 1_000, 10_000, 100_000],
  ipcache: [10, 100, 1_000, 10_000, 100_000, 500_000],
};
const QUICK: Record<Dim, number[]> = { policy: [10, 100], services: [10, 100], ipcache: [10, 100] };
const TINY: Record<Dim, number[]> = { policy: [10], services: [10], ipcache: [10] };

const LABEL: Record<Dim, string> = { policy: "policy entries", services: "services", ipcache: "ipcache prefixes" };

function capacities(dim: Dim, n: number): Record<string, number> {
  const c: Record<string, number> = { ct: 262_144 };
  if (dim === "policy") c.policy = Math.max(65_536, n + 1024);
  if (dim === "services") {
    c.lb_services = Math.max(65_536, 3 * n + 1024);
    c.lb_reverse_nat = Math.max(65_536, n + 1024);
  }
  if (dim === "ipcache") c.ipcache = Math.max(65_536, n + 1024);
  return c;
}

function fill(dp: Datapath, dim: Dim, n: number): void {
  if (dim === "policy") fillPolicy(dp, n);
  else if (dim === "services") fillServices(dp, n);
  else fillIpcache(dp, n);
}

export const scalingBenchmark: Benchmark = {
  name: "scaling",
  title: "Per-packet cost as maps grow",
  steps: (quick) => Object.values(quick ? QUICK : FULL).reduce((n, l) => n + l.length, 0) * 2,
  async run(ctx) {
    const sizes = ctx.tiny ? TINY : ctx.quick ? QUICK : FULL;
    const repeats = ctx.tiny ? 1 : ctx.quick ? 3 : 5;
    const sameCount = ctx.tiny ? 1_000 : ctx.quick ? 20_000 : 200_000;
    const kernelRepeat = ctx.tiny ? 1_000 : ctx.quick ? 100_000 : 500_000;
    const fresh = ctx.tiny ? 20 : ctx.quick ? 200 : 1_000;
    const result: BenchResult = { name: "scaling", title: this.title, rows: [], ratios: [], skipped: [], charts: [], notes: [] };
    const kernelWhy = kernelUnavailable(KERNEL_OBJECT);
    if (kernelWhy) result.skipped.push({ what: "kernel curves", reason: kernelWhy });
    const helper = createWasmDatapath();
    setMaglevBuilder(helper);
    const rowsBy = new Map<string, Row[]>();
    const { note } = await pinned(1, async () => {
      for (const dim of Object.keys(sizes) as Dim[]) {
        for (const n of sizes[dim]) {
          for (const engine of ["wasm", "kernel"] as const) {
            if (engine === "kernel" && kernelWhy) {
              ctx.tick(`${dim} ${n} kernel skipped`);
              continue;
            }
            let dp: Datapath | undefined;
            try {
              dp = engine === "wasm" ? createWasmDatapath({ capacities: capacities(dim, n) }) : new KernelDatapath({ capacities: capacities(dim, n), plainPrograms: true });
              benchNode(dp);
              const t0 = process.hrtime.bigint();
              fill(dp, dim, n);
              const fillMs = Number(process.hrtime.bigint() - t0) / 1e6;
              const timer: PacketTimer = engine === "wasm" ? abiTimer(dp as AbiDatapath) : kernelTimer((e) => (dp as KernelDatapath).programFd(e, true));
              let stat;
              if (dim === "services") {
                const check = dp.run("fromEndpoint", buildFrame(frames.synService(1023)), { now: NOW });
                if (check.verdict !== C.CTX_ACT_OK || check.trace.backendId === 0) result.notes.push(`${engine} services=${n}: UNEXPECTED outcome of the SYN probe (verdict ${check.verdict}, drop ${check.dropReason})`);
                let sample = 0;
                stat = await measure(repeats, () => {
                  const fs = Array.from({ length: fresh }, (_, i) => buildFrame(frames.synService(1024 + (sample + 1) * fresh + i)));
                  sample++;
                  return timer.time("fromEndpoint", fs, "fresh", fs.length, 0, NOW);
                });
              } else {
                const f = buildFrame(frames.denied());
                const check = dp.run("fromEndpoint", f, { now: NOW });
                if (check.dropReason !== C.DROP_POLICY) result.notes.push(`${engine} ${dim}=${n}: UNEXPECTED outcome of the denied probe (verdict ${check.verdict}, drop ${check.dropReason})`);
                stat = await measure(repeats, () => timer.time("fromEndpoint", [f], "same", engine === "kernel" ? kernelRepeat : sameCount, 0, NOW));
              }
              const row: Row = { name: `${engine}: ${dim === "services" ? "SYN to ClusterIP" : "denied packet"}`, params: { engine, dimension: dim, n, fillMs: Math.round(fillMs) }, unit: "ns/pkt", stat };
              result.rows.push(row);
              const k = `${dim}/${engine}`;
              rowsBy.set(k, [...(rowsBy.get(k) ?? []), row]);
            } catch (e) {
              result.skipped.push({ what: `${engine} ${dim}=${n}`, reason: (e as Error).message });
            } finally {
              dp?.close();
            }
            ctx.tick(`${dim} ${n} ${engine}`);
          }
        }
      }
    });
    helper.close();
    result.notes.push(note);
    result.notes.push("fillMs: time to write the N entries through the engine's map API (kernel: ipcache and service fills as bpf_map_update_batch calls, policy one bpf_map_update_elem per entry; wasm/js: one update per entry). Kernel 'services' rows are kernel-timed repeat=1 runs on fresh SYN frames and include the per-call floor (see the datapath benchmark's empty-program rows).");
    for (const dim of Object.keys(sizes) as Dim[]) {
      const series = (["wasm", "kernel"] as const)
        .map((eng) => ({ name: eng, points: (rowsBy.get(`${dim}/${eng}`) ?? []).map((r) => [Number(r.params.n), r.stat.median] as [number, number]) }))
        .filter((s) => s.points.length);
      if (series.length) result.charts.push({ title: `Per-packet cost vs ${LABEL[dim]}`, xLabel: `${LABEL[dim]} (log scale)`, yLabel: "ns per packet (median)", logX: true, series });
      // Growth over the whole range: cost at the largest N ÷ cost at the smallest.
      for (const eng of ["wasm", "kernel"]) {
        const rs = rowsBy.get(`${dim}/${eng}`) ?? [];
        if (rs.length >= 2) {
          const a = rs[0]!;
          const b = rs[rs.length - 1]!;
          result.ratios.push({ name: `${dim}: ${eng} cost at N=${b.params.n} ÷ N=${a.params.n}`, value: b.stat.median / a.stat.median, numerator: `N=${b.params.n}`, denominator: `N=${a.params.n}`, anchor: "O(1) hash / O(prefix) LPM ⇒ ≈1×; iptables grows linearly (A9: 90–230 cycles per rule)" });
        }
      }
    }
    return result;
  },
};
