/*
 * Benchmark: the per-packet cost of kube-proxy's iptables rules against ciliate's tc program as the number
 * of services grows, measured with a load generator that is not the bottleneck (issue #15, item 5).
 *
 * A C frame generator (bench/fixtures/frame-gen.c, compiled with clang here) sends raw frames with
 * sendmmsg(2) on an AF_PACKET socket into one end of a veth pair inside a network namespace this
 * benchmark creates; the other end receives them in the same system call. Every frame is a TCP SYN from
 * a pod address (10.250.0.1) with a random source port to a random ClusterIP among the N services (VIPs
 * serviceVip(0 … N−1), port 80), so every frame is a new flow and walks the service lookup. Three
 * namespaces, same generator, same frames:
 *   base      — no datapath: the stack's own cost (skb, IPv4 receive, routing decision), and the send;
 *   iptables  — N services as kube-proxy writes them (bench/cases/iptables.ts kubeProxyRules, loaded with
 *               iptables-legacy-restore): PREROUTING → KUBE-SERVICES → KUBE-SVC-* → KUBE-SEP-* DNAT;
 *   ciliate   — ciliate's from_endpoint program at tc ingress of the receiving veth (where Cilium attaches
 *               bpf_lxc's from-container on a pod's host-side veth), holding the same N services.
 * After the datapath's decision the frames meet a blackhole route (the backend 10.250.0.2 and the VIP
 * range), so every mode ends the same way and no conntrack entry is ever confirmed in the iptables mode.
 * The cost is the generator thread's CPU time per frame (CLOCK_THREAD_CPUTIME_ID): the kernel processes
 * a veth frame in the sender's softirq context, and with CONFIG_IRQ_TIME_ACCOUNTING off that time is
 * charged to the thread, so other jobs on the shared machine do not inflate it the way wall time does.
 * Each point checks that every frame reached IPv4 receive (/proc/net/snmp InReceives), that iptables
 * traversed its rules (the PREROUTING jump counter) and that ciliate wrote conntrack entries.
 * Bounded: each run stops at a frame count or a time cap; namespaces are deleted in `finally`.
 */
import { execFileSync } from "node:child_process";
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { dirname, join } from "node:path";
import { fileURLToPath } from "node:url";
import type { KernelDatapath } from "../../datapath/kernel-engine.ts";
import { attachTc, type TcAttachment } from "../../datapath/tc.ts";
import { buildFrame, TCP_FLAGS } from "../../sim/packets.ts";
import { summarize, type Benchmark, type BenchContext, type BenchResult, type Row } from "../harness.ts";
import { fillServices, MAP_SPECS } from "../fixtures/node.ts";
import { CLIENT, clientNode, kubeProxyRules, namespaceBenchSetup, SERVER, SERVER_PORT, sh } from "./iptables.ts";

export const FRAME_GEN_SRC = fileURLToPath(new URL("../fixtures/frame-gen.c", import.meta.url));
/** Services per point, rounds per mode, and each run's time and frame cap. */
const SIZES = {
  full: { Ns: [1_000, 10_000, 50_000, 100_000], rounds: 3, maxMs: 1500, maxFrames: 2_000_000 },
  quick: { Ns: [100, 1_000], rounds: 1, maxMs: 300, maxFrames: 2_000_000 },
  tiny: { Ns: [10, 100], rounds: 1, maxMs: 100, maxFrames: 2_000 },
};
const VIP_BASE = 0x0a640001; // serviceVip(0)
const MODES = ["base", "iptables", "ciliate"] as const;
type Mode = (typeof MODES)[number];

/** Compiles a C fixture with clang into dir; returns the binary's path. */
export function compileC(src: string, dir: string, name: string): string {
  const out = join(dir, name);
  execFileSync("clang", ["-O2", "-Wall", "-I", dirname(src), "-o", out, src], { stdio: "pipe" });
  return out;
}

export interface GenResult {
  sent: number;
  wallNs: number;
  cpuNs: number;
  sendErrors: number;
}

/** Runs the frame generator inside `netns` on `ifname`. */
export function runFrameGen(bin: string, netns: string, ifname: string, template: Uint8Array, o: { n: number; count: number; maxMs: number }): GenResult {
  const out = sh("ip", ["netns", "exec", netns, bin, ifname, Buffer.from(template).toString("hex"), String(o.n), String(VIP_BASE), String(o.count), String(o.maxMs)]);
  return JSON.parse(out.trim()) as GenResult;
}

/** IPv4 InReceives of a namespace (/proc/net/snmp). */
export function ipInReceives(netns: string): number {
  const lines = sh("ip", ["netns", "exec", netns, "cat", "/proc/net/snmp"]).split("\n").filter((l) => l.startsWith("Ip:"));
  const keys = lines[0]!.trim().split(/\s+/);
  const vals = lines[1]!.trim().split(/\s+/);
  return Number(vals[keys.indexOf("InReceives")]);
}

/** A namespace with a veth pair lg0 (receives, 10.250.0.254/24) ↔ lg1 (the generator sends here) and
 * blackhole routes for the backend and the VIP range. Returns lg0's MAC address. */
export function frameNamespace(ns: string): Uint8Array {
  sh("ip", ["netns", "add", ns]);
  sh("ip", ["-n", ns, "link", "add", "lg0", "type", "veth", "peer", "name", "lg1"]);
  sh("ip", ["-n", ns, "addr", "add", "10.250.0.254/24", "dev", "lg0"]);
  for (const d of ["lg0", "lg1", "lo"]) sh("ip", ["-n", ns, "link", "set", d, "up"]);
  sh("ip", ["-n", ns, "route", "add", "blackhole", `${SERVER.ip}/32`]);
  sh("ip", ["-n", ns, "route", "add", "blackhole", "10.100.0.0/14"]);
  const mac = (JSON.parse(sh("ip", ["-n", ns, "-j", "link", "show", "lg0"])) as { address: string }[])[0]!.address;
  return new Uint8Array(mac.split(":").map((h) => parseInt(h, 16)));
}

/** The client node of bench/cases/iptables.ts (the pod 10.250.0.1, allow-all) with N services → the
 * backend 10.250.0.2:8080, written in batches. */
export function ciliateServiceNode(n: number): KernelDatapath {
  const kdp = clientNode(n);
  fillServices(kdp, n, [{ id: 1, ip: SERVER.ip, port: SERVER_PORT }]);
  return kdp;
}

/** Packets through the `chain` → KUBE-SERVICES jump of the nat table in `ns` (iptables' own counter). */
export function kubeServicesJumps(ipt: string, ns: string, chain: "PREROUTING" | "OUTPUT"): number {
  const out = sh("ip", ["netns", "exec", ns, ipt, "-t", "nat", "-L", chain, "-v", "-x", "-n"]);
  const line = out.split("\n").find((l) => l.includes("KUBE-SERVICES"));
  return line ? Number(line.trim().split(/\s+/)[0]) : 0;
}

/** A result to fill, the iptables binary, and whether the namespace benchmark must skip (then the result
 * already says why and the progress steps are ticked). */
export function startNamespaceBench(ctx: BenchContext, b: { name: string; title: string }, steps: number, what: string): { result: BenchResult; ipt: string; skip: boolean } {
  const result: BenchResult = { name: b.name, title: b.title, rows: [], ratios: [], skipped: [], charts: [], notes: [] };
  const { ipt, why } = namespaceBenchSetup();
  if (why) {
    result.skipped.push({ what, reason: why });
    for (let i = 0; i < steps; i++) ctx.tick("skipped");
  }
  return { result, ipt, skip: why !== undefined };
}

/** The sizes a run uses: tiny for the smoke tests, quick, or full. */
export function benchSizes<T>(ctx: { quick: boolean; tiny?: boolean }, sizes: { full: T; quick: T; tiny: T }): T {
  return ctx.tiny ? sizes.tiny : ctx.quick ? sizes.quick : sizes.full;
}


export const loadgenBenchmark: Benchmark = {
  name: "loadgen",
  title: "Raw-frame load generator: per-packet cost of iptables vs ciliate as services grow",
  steps: (quick) => benchSizes({ quick }, SIZES).Ns.length,
  async run(ctx) {
    const { Ns, rounds, maxMs, maxFrames } = benchSizes(ctx, SIZES);
    const { result, ipt: IPT, skip } = startNamespaceBench(ctx, this, Ns.length, "the raw-frame per-packet comparison (generator, namespaces, iptables rules, tc program)");
    if (skip) return result;
    const tag = `${process.pid % 100000}`;
    const nsOf: Record<Mode, string> = { base: `lg-base-${tag}`, iptables: `lg-ipt-${tag}`, ciliate: `lg-cil-${tag}` };
    const dir = mkdtempSync(join(tmpdir(), "ciliate-bench-lg-"));
    const rowsBy = new Map<string, Row[]>();
    const created: string[] = [];
    try {
      const bin = compileC(FRAME_GEN_SRC, dir, "frame-gen");
      const templates = {} as Record<Mode, Uint8Array>;
      for (const m of MODES) {
        created.push(nsOf[m]);
        const dstMac = frameNamespace(nsOf[m]);
        templates[m] = buildFrame({ src: CLIENT.ip, dst: "10.100.0.1", proto: "TCP", sport: 40000, dport: 80, tcpFlags: TCP_FLAGS.SYN, srcMac: new Uint8Array([2, 0, 0, 0, 0, 1]), dstMac });
      }
      result.notes.push(`iptables: ${sh(IPT, ["--version"]).trim()}; frames: ${templates.base.length}-byte TCP SYNs, random source port, random VIP among the N`);
      for (const n of Ns) {
        sh("ip", ["netns", "exec", nsOf.iptables, IPT, "-t", "nat", "-F"]);
        sh("ip", ["netns", "exec", nsOf.iptables, IPT, "-t", "nat", "-X"]);
        sh("ip", ["netns", "exec", nsOf.iptables, `${IPT}-restore`], kubeProxyRules(n));
        const kdp = ciliateServiceNode(n);
        const attachments: TcAttachment[] = [];
        const cpu: Record<Mode, number[]> = { base: [], iptables: [], ciliate: [] };
        const wall: Record<Mode, number[]> = { base: [], iptables: [], ciliate: [] };
        const sent: Record<Mode, number> = { base: 0, iptables: 0, ciliate: 0 };
        const received: Record<Mode, number> = { base: 0, iptables: 0, ciliate: 0 };
        /** Proof the datapath saw the frames: KUBE-SERVICES jumps (iptables), conntrack entries (ciliate). */
        const seen: Record<Mode, number> = { base: 0, iptables: 0, ciliate: 0 };
        try {
          attachments.push(attachTc(kdp.programFd("fromEndpoint", true), { ifname: "lg0", netns: nsOf.ciliate, direction: "ingress" }));
          const ipt0 = kubeServicesJumps(IPT, nsOf.iptables, "PREROUTING");
          // Rounds alternate the modes, so a change in the shared machine's load hits all three.
          for (let r = 0; r < rounds; r++) {
            for (const m of MODES) {
              const before = ipInReceives(nsOf[m]);
              const g = runFrameGen(bin, nsOf[m], "lg1", templates[m], { n, count: maxFrames, maxMs });
              received[m] += ipInReceives(nsOf[m]) - before;
              sent[m] += g.sent;
              cpu[m].push(g.cpuNs / g.sent);
              wall[m].push(g.wallNs / g.sent);
            }
          }
          seen.iptables = kubeServicesJumps(IPT, nsOf.iptables, "PREROUTING") - ipt0;
          seen.ciliate = kdp.map(MAP_SPECS.Conntrack).count();
          if (seen.iptables < sent.iptables) result.notes.push(`N=${n}: only ${seen.iptables} of ${sent.iptables} iptables frames traversed KUBE-SERVICES`);
          if (seen.ciliate === 0) result.notes.push(`N=${n}: ciliate wrote no conntrack entries — the tc program did not see the frames`);
        } finally {
          for (const a of attachments) a.detach();
          kdp.close();
        }
        for (const m of MODES) {
          const row: Row = { name: `${m}: CPU per frame`, params: { mode: m, N: n, frames: sent[m], received: received[m], seen: seen[m], "wall ns/frame": summarize(wall[m]).median.toFixed(0) }, unit: "ns", stat: summarize(cpu[m]) };
          result.rows.push(row);
          rowsBy.set(m, [...(rowsBy.get(m) ?? []), row]);
        }
        ctx.tick(`N=${n}`);
      }
    } catch (e) {
      result.skipped.push({ what: "the rest of the raw-frame comparison", reason: `failed: ${(e as Error).message.split("\n")[0]}` });
    } finally {
      for (const ns of created) {
        try {
          sh("ip", ["netns", "del", ns]);
        } catch {
          /* already gone */
        }
      }
      rmSync(dir, { recursive: true, force: true });
    }
    const at = (m: Mode) => new Map((rowsBy.get(m) ?? []).map((r) => [Number(r.params.N), r]));
    const base = at("base");
    const cil = at("ciliate");
    for (const r of rowsBy.get("iptables") ?? []) {
      const n = Number(r.params.N);
      const c = cil.get(n);
      const b = base.get(n);
      if (!c || !b) continue;
      result.ratios.push({ name: `N=${n}: iptables ÷ ciliate, CPU per frame`, value: r.stat.median / c.stat.median, numerator: r.name, denominator: c.name, anchor: "issue #15 target: ≥ 5× at 10k services and growing with N; A9: 90–230 cycles per traversed rule" });
      const over = c.stat.median - b.stat.median;
      if (over > 0) result.ratios.push({ name: `N=${n}: iptables ÷ ciliate, CPU per frame above the no-datapath base`, value: (r.stat.median - b.stat.median) / over, numerator: r.name, denominator: c.name });
    }
    const grow = (m: Mode) => {
      const rs = rowsBy.get(m) ?? [];
      if (rs.length >= 2) result.ratios.push({ name: `${m}: CPU per frame at N=${rs[rs.length - 1]!.params.N} ÷ N=${rs[0]!.params.N}`, value: rs[rs.length - 1]!.stat.median / rs[0]!.stat.median, numerator: m, denominator: m, anchor: "iptables grows linearly with the rules traversed (A9); a hash lookup stays flat" });
    };
    grow("iptables");
    grow("ciliate");
    const pts = (m: Mode) => (rowsBy.get(m) ?? []).map((r) => [Number(r.params.N), r.stat.median] as [number, number]);
    result.charts.push({ title: "CPU per frame vs services (raw frames)", xLabel: "services N (log scale)", yLabel: "ns per frame (median)", logX: true, series: MODES.map((m) => ({ name: m === "base" ? "no datapath" : m, points: pts(m) })).filter((s) => s.points.length) });
    result.notes.push(
      "Columns: frames sent; received = frames that reached IPv4 receive in the namespace (/proc/net/snmp InReceives); seen = proof the datapath handled them (iptables: packets through the PREROUTING → KUBE-SERVICES jump; ciliate: entries in its conntrack map, two per new flow up to the map's LRU capacity).",
      `Each point: ${rounds} round(s) per mode, each sending for up to ${maxMs} ms (at most ${maxFrames} frames); CPU per frame is the generator thread's CPU time ÷ frames, which includes sending (sendmmsg, 64 frames per call), the veth hop and the receive path of the namespace up to the blackhole route. "wall ns/frame" is shown for reference; on a shared machine it also counts other jobs' time.`,
    );
    return result;
  },
};
