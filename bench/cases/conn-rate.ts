/*
 * Benchmark: new TCP connections per second to a ClusterIP among N services, through kube-proxy's iptables
 * rules against ciliate's tc programs, with a C epoll client and server (bench/fixtures/conn-rate.c,
 * compiled with clang here) instead of the Node.js pair of bench/cases/iptables.ts, which tops out near
 * 1,000 connections/s for both datapaths (issue #15, item 5).
 *
 * Two independent client/server namespace pairs (bench/cases/iptables.ts clientServerPair), one per mode,
 * so the ciliate client namespace never loads an iptables table (and so never turns netfilter conntrack
 * on):
 *   iptables — N services as kube-proxy writes them, in the client namespace (nat OUTPUT → KUBE-SERVICES);
 *   ciliate  — from_endpoint at tc egress and to_endpoint at tc ingress of the client's veth, the same N
 *              services in its maps (written in batches).
 * The client keeps a fixed number of connections in flight to random VIPs among the N; each connection
 * reads the server's "ok" and the server's close, then resets (no TIME_WAIT). Rounds alternate the two
 * modes; each is bounded in connections and time; namespaces and servers go in `finally`.
 */
import type { ChildProcess } from "node:child_process";
import { mkdtempSync, readFileSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { fileURLToPath } from "node:url";
import { attachTc, type TcAttachment } from "../../datapath/tc.ts";
import { summarize, type Benchmark, type Row } from "../harness.ts";
import { MAP_SPECS } from "../fixtures/node.ts";
import { clientServerPair, kubeProxyRules, SERVER_PORT, sh, startServer } from "./iptables.ts";
import { benchSizes, ciliateServiceNode, compileC, kubeServicesJumps, startNamespaceBench } from "./loadgen.ts";

export const CONN_RATE_SRC = fileURLToPath(new URL("../fixtures/conn-rate.c", import.meta.url));
/** Services per point, rounds per mode, and each round's time and connection cap. */
const SIZES = {
  full: { Ns: [1_000, 10_000], rounds: 5, maxMs: 3000, count: 200_000 },
  quick: { Ns: [1_000], rounds: 1, maxMs: 1000, count: 200_000 },
  tiny: { Ns: [10], rounds: 1, maxMs: 300, count: 200 },
};
const VIP_BASE = 0x0a640001; // serviceVip(0)
const MODES = ["iptables", "ciliate"] as const;
type Mode = (typeof MODES)[number];

interface ClientResult {
  done: number;
  errors: number;
  elapsedNs: number;
  cpuNs: number;
  p50Us: number;
  p99Us: number;
}



/** User + system CPU time of a process so far, in ns (/proc/PID/stat utime + stime, in clock ticks). */
function processCpuNs(pid: number, ticksPerSecond: number): number {
  const stat = readFileSync(`/proc/${pid}/stat`, "utf8");
  const f = stat.slice(stat.lastIndexOf(")") + 2).split(" ");
  return ((Number(f[11]) + Number(f[12])) / ticksPerSecond) * 1e9;
}

export const connRateBenchmark: Benchmark = {
  name: "conn-rate",
  title: "Connection rate with a C epoll client: iptables vs ciliate",
  steps: (quick) => benchSizes({ quick }, SIZES).Ns.length,
  async run(ctx) {
    const { Ns, rounds, maxMs, count } = benchSizes(ctx, SIZES);
    const concurrency = 32;
    const { result, ipt: IPT, skip } = startNamespaceBench(ctx, this, Ns.length, "the C connection-rate comparison (namespaces, iptables rules, tc programs, traffic)");
    if (skip) return result;
    const tag = `${process.pid % 100000}`;
    const ns = { iptables: { c: `cr-ic-${tag}`, s: `cr-is-${tag}`, dev: `cri${tag}` }, ciliate: { c: `cr-cc-${tag}`, s: `cr-cs-${tag}`, dev: `crc${tag}` } };
    const dir = mkdtempSync(join(tmpdir(), "ciliate-bench-cr-"));
    const servers: ChildProcess[] = [];
    const created: string[] = [];
    const rowsBy = new Map<string, Row[]>();
    try {
      const bin = compileC(CONN_RATE_SRC, dir, "conn-rate");
      const ticks = Number(sh("getconf", ["CLK_TCK"]).trim()) || 100;
      for (const m of MODES) {
        created.push(ns[m].c, ns[m].s);
        clientServerPair(ns[m].c, ns[m].s, `${ns[m].dev}c`, `${ns[m].dev}s`);
        servers.push(await startServer(ns[m].s, [bin, "server", String(SERVER_PORT)]));
      }
      for (const n of Ns) {
        sh("ip", ["netns", "exec", ns.iptables.c, IPT, "-t", "nat", "-F"]);
        sh("ip", ["netns", "exec", ns.iptables.c, IPT, "-t", "nat", "-X"]);
        sh("ip", ["netns", "exec", ns.iptables.c, `${IPT}-restore`], kubeProxyRules(n));
        const kdp = ciliateServiceNode(n);
        const attachments: TcAttachment[] = [];
        const rate: Record<Mode, number[]> = { iptables: [], ciliate: [] };
        const cpu: Record<Mode, number[]> = { iptables: [], ciliate: [] };
        const p50: Record<Mode, number[]> = { iptables: [], ciliate: [] };
        const p99: Record<Mode, number[]> = { iptables: [], ciliate: [] };
        const tot: Record<Mode, { done: number; errors: number }> = { iptables: { done: 0, errors: 0 }, ciliate: { done: 0, errors: 0 } };
        let jumps = 0;
        let ct = 0;
        try {
          attachments.push(attachTc(kdp.programFd("fromEndpoint", true), { ifname: `${ns.ciliate.dev}c`, netns: ns.ciliate.c, direction: "egress" }));
          attachments.push(attachTc(kdp.programFd("toEndpoint"), { ifname: `${ns.ciliate.dev}c`, netns: ns.ciliate.c, direction: "ingress" }));
          const j0 = kubeServicesJumps(IPT, ns.iptables.c, "OUTPUT");
          for (let r = 0; r < rounds; r++) {
            for (const m of MODES) {
              const server = servers[MODES.indexOf(m)]!.pid!;
              const s0 = processCpuNs(server, ticks);
              const out = sh("ip", ["netns", "exec", ns[m].c, bin, "client", String(n), String(VIP_BASE), "80", String(concurrency), String(count), String(maxMs)]);
              const c = JSON.parse(out.trim()) as ClientResult;
              rate[m].push(c.done / (c.elapsedNs / 1e9));
              if (c.done > 0) cpu[m].push((c.cpuNs + processCpuNs(server, ticks) - s0) / c.done);
              p50[m].push(c.p50Us);
              p99[m].push(c.p99Us);
              tot[m].done += c.done;
              tot[m].errors += c.errors;
            }
          }
          jumps = kubeServicesJumps(IPT, ns.iptables.c, "OUTPUT") - j0;
          ct = kdp.map(MAP_SPECS.Conntrack).count();
        } finally {
          for (const a of attachments) a.detach();
          kdp.close();
        }
        const seen: Record<Mode, number> = { iptables: jumps, ciliate: ct };
        for (const m of MODES) {
          const row: Row = { name: `${m}: new connections per second (C client)`, params: { mode: m, N: n, connections: tot[m].done, errors: tot[m].errors, seen: seen[m], "p50 µs": summarize(p50[m]).median, "p99 µs": summarize(p99[m]).median }, unit: "conn/s", stat: summarize(rate[m]) };
          result.rows.push(row);
          rowsBy.set(m, [...(rowsBy.get(m) ?? []), row]);
          if (cpu[m].length) {
            const c: Row = { name: `${m}: CPU per connection (client + server processes)`, params: { mode: m, N: n }, unit: "µs", stat: summarize(cpu[m].map((x) => x / 1000)) };
            result.rows.push(c);
            rowsBy.set(`${m}/cpu`, [...(rowsBy.get(`${m}/cpu`) ?? []), c]);
          }
          if (tot[m].errors) result.notes.push(`${m} N=${n}: ${tot[m].errors} connections failed or got no reply within 2 s`);
        }
        ctx.tick(`N=${n}`);
      }
    } catch (e) {
      result.skipped.push({ what: "the rest of the C connection-rate comparison", reason: `failed: ${(e as Error).message.split("\n")[0]}` });
    } finally {
      for (const s of servers) s.kill();
      for (const name of created) {
        try {
          sh("ip", ["netns", "del", name]);
        } catch {
          /* already gone */
        }
      }
      rmSync(dir, { recursive: true, force: true });
    }
    const ipt = rowsBy.get("iptables") ?? [];
    const cil = new Map((rowsBy.get("ciliate") ?? []).map((r) => [r.params.N, r]));
    for (const r of ipt) {
      const c = cil.get(r.params.N);
      if (c) result.ratios.push({ name: `N=${r.params.N}: ciliate ÷ iptables connections/s (C client)`, value: c.stat.median / r.stat.median, numerator: c.name, denominator: r.name, anchor: "issue #15 target: ≥ 2× at 10k services; A11: Cilium ahead of iptables beyond ~20k services" });
    }
    const cilCpu = new Map((rowsBy.get("ciliate/cpu") ?? []).map((r) => [r.params.N, r]));
    for (const r of rowsBy.get("iptables/cpu") ?? []) {
      const c = cilCpu.get(r.params.N);
      if (c) result.ratios.push({ name: `N=${r.params.N}: iptables ÷ ciliate CPU per connection (= ciliate ÷ iptables connections per CPU-second)`, value: r.stat.median / c.stat.median, numerator: r.name, denominator: c.name, anchor: "issue #15 target: connection rate ≥ 2× iptables at 10k services" });
    }
    const pts = (m: Mode) => (rowsBy.get(m) ?? []).map((r) => [Number(r.params.N), r.stat.median] as [number, number]);
    result.charts.push({ title: "New connections per second vs services (C epoll client)", xLabel: "services N (log scale)", yLabel: "connections/s (median)", logX: true, series: MODES.map((m) => ({ name: m, points: pts(m) })).filter((s) => s.points.length) });
    result.notes.push(
      `Each point: ${rounds} round(s) per mode, ${concurrency} connections in flight, each round up to ${maxMs} ms or ${count} connections; connections/s is the median over rounds, p50/p99 the median of the rounds' percentiles (connect() to the first byte of the reply). seen = proof the datapath handled the traffic: iptables, packets through the nat OUTPUT → KUBE-SERVICES jump (one per new connection); ciliate, entries in its conntrack map.`,
      "Client and server are single-threaded C processes on the same 2-vCPU machine as the datapath; each connection costs a SYN, SYN-ACK, ACK, the reply, the server's FIN and the client's RST through the veth. On a veth the kernel handles a packet in the softirq of the process that sends it, and without CONFIG_IRQ_TIME_ACCOUNTING that time is charged to the process: the client's and server's CPU time per connection therefore covers both datapaths' work and is far less sensitive to other jobs on a shared machine than connections per wall-clock second.",
    );
    return result;
  },
};
