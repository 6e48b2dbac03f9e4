/*
 * Benchmark: XDP NodePort / LoadBalancer forwarding rate on one core (issue #15 target: ≥ 5 Mpps in
 * live-frames mode). ciliate's from-network XDP program (the agent's --xdp-acceleration) DNATs a
 * LoadBalancer packet to a remote backend, SNATs it to the node and sends it back out with XDP_TX, as in
 * tests/kernel/xdp-acceleration.test.ts, inside a namespace this benchmark creates.
 *
 * The frames come from the frame source (bench/fixtures/frame-source.bpf.c): it restores the template on
 * every run and tail-calls the XDP program, so every repetition sees the original packet (the kernel reruns
 * a test on the same, already rewritten, buffer otherwise). Measured with BPF_PROG_TEST_RUN:
 *   - program rate: `repeat` runs on one CPU (no frame delivery), for a new flow per frame (random source
 *     port: conntrack and SNAT entries created) and for one established flow; the frame source alone is
 *     measured too, so its share is visible;
 *   - live frames (BPF_F_TEST_XDP_LIVE_FRAMES, Linux 5.18+): XDP_TX frames really leave through the veth.
 *     Where the kernel refuses live frames the benchmark records why instead.
 */
import { KernelDatapath, XDP_OBJECT, XDP_PASS, XDP_TX } from "../../datapath/kernel-engine.ts";
import { BPF_F_TEST_XDP_LIVE_FRAMES, testRun } from "../../datapath/test-run.ts";
import { ifindexOf, withNetns } from "../../datapath/netns.ts";
import { buildFrame, decodeFrame, TCP_FLAGS } from "../../sim/packets.ts";
import { summarize, type Benchmark, type BenchResult, type Row } from "../harness.ts";
import { isRoot, kernelUnavailable } from "../fixtures/engines.ts";
import { loadFrameSource, xdpCtx, type FrameSource } from "../fixtures/frame-source.ts";
import { addLoadBalancer, configure, MAP_SPECS } from "../fixtures/node.ts";
import { sh, tool } from "./iptables.ts";
import { benchSizes } from "./loadgen.ts";

const LB_IP = "198.51.100.10";
const NODE_IP = "192.0.2.1";
const BACKEND = { id: 7, ip: "192.0.2.2", port: 8080 };
const BACKEND_MAC = "02:00:00:00:00:02";
const CLIENT = "203.0.113.5";
const SIZES = { full: { repeat: 200_000, samples: 5 }, quick: { repeat: 20_000, samples: 3 }, tiny: { repeat: 1_000, samples: 1 } };

const ipNum = (ip: string) => ip.split(".").reduce((a, b) => ((a << 8) | Number(b)) >>> 0, 0);

function nodePortNode(): KernelDatapath {
  const dp = new KernelDatapath({ capacities: { ct: 1 << 19, snat: 1 << 19 }, xdp: true });
  configure(dp);
  addLoadBalancer(dp, { nodeIp: NODE_IP, lbIp: LB_IP, backend: BACKEND });
  return dp;
}

export const xdpNodePortBenchmark: Benchmark = {
  name: "xdp-nodeport",
  title: "XDP NodePort forward: packets per second on one core",
  steps: () => 1,
  async run(ctx) {
    const { repeat, samples } = benchSizes(ctx, SIZES);
    const result: BenchResult = { name: "xdp-nodeport", title: this.title, rows: [], ratios: [], skipped: [], charts: [], notes: [] };
    const why = !isRoot() ? "not running as root (namespaces and BPF_PROG_TEST_RUN need CAP_NET_ADMIN/CAP_SYS_ADMIN)" : !tool("ip") ? "ip (iproute2) not installed" : kernelUnavailable(XDP_OBJECT);
    if (why) {
      result.skipped.push({ what: "the XDP NodePort forwarding rate", reason: why });
      ctx.tick("skipped");
      return result;
    }
    const ns = `xnp-${process.pid % 100000}`;
    let dp: KernelDatapath | undefined;
    let src: FrameSource | undefined;
    try {
      sh("ip", ["netns", "add", ns]);
      sh("ip", ["-n", ns, "link", "add", "xa", "type", "veth", "peer", "name", "xb"]);
      sh("ip", ["-n", ns, "addr", "add", `${NODE_IP}/24`, "dev", "xa"]);
      for (const d of ["xa", "xb", "lo"]) sh("ip", ["-n", ns, "link", "set", d, "up"]);
      sh("ip", ["-n", ns, "neigh", "replace", BACKEND.ip, "lladdr", BACKEND_MAC, "dev", "xa", "nud", "permanent"]);
      const ifindex = ifindexOf("xa", ns);
      const mac = (JSON.parse(sh("ip", ["-n", ns, "-j", "link", "show", "xa"])) as { address: string }[])[0]!.address;
      const template = buildFrame({ src: CLIENT, dst: LB_IP, proto: "TCP", sport: 40000, dport: 80, tcpFlags: TCP_FLAGS.SYN, srcMac: new Uint8Array([2, 0, 0, 0, 0, 9]), dstMac: new Uint8Array(mac.split(":").map((h) => parseInt(h, 16))) });
      dp = nodePortNode();
      src = loadFrameSource();
      const xdpFd = dp.programFd("fromNetwork");
      const ctxBytes = xdpCtx(ifindex, template.length);
      const run = (r: number, flags = 0) => withNetns(ns, () => testRun(src!.fd, { data: template, ctx: ctxBytes, repeat: r, flags }));

      // The chain works: one run through the frame source gives XDP_TX with the backend as destination.
      src.configure({ template, n: 1, dstBase: ipNum(LB_IP), varySport: true });
      src.chain(xdpFd);
      const one = run(1);
      const out = decodeFrame(one.data);
      if (one.retval !== XDP_TX || out?.dst !== BACKEND.ip || out.src !== NODE_IP) throw new Error(`the NodePort frame was not forwarded (XDP action ${one.retval}, ${out?.src} → ${out?.dst})`);

      const measureCase = (name: string, varySport: boolean, chained: boolean, reps: number, expect: number) => {
        src!.configure({ template, n: 1, dstBase: ipNum(LB_IP), varySport });
        src!.chain(chained ? xdpFd : undefined);
        const ns_: number[] = [];
        let last = 0;
        for (let i = 0; i < samples; i++) {
          const r = run(reps);
          ns_.push(r.duration);
          last = r.retval;
        }
        if (last !== expect) result.notes.push(`${name}: the last frame got XDP action ${last}, not ${expect} — the figure mixes in another path`);
        const stat = summarize(ns_);
        const row: Row = { name, params: { repeat: reps, "last XDP action": last, Mpps: (1000 / stat.median).toFixed(2) }, unit: "ns", stat };
        result.rows.push(row);
        return row;
      };
      const est = measureCase("XDP NodePort forward, one established flow (program only)", false, true, repeat, XDP_TX);
      // New flows each take a SNAT port towards the one backend: stay well inside the NodePort SNAT port range.
      const fresh = measureCase("XDP NodePort forward, new flow per frame (program only)", true, true, Math.min(repeat, Math.floor(20_000 / samples)), XDP_TX);
      const alone = measureCase("frame source alone (template restore + random port), XDP_PASS", true, false, repeat, XDP_PASS);
      result.notes.push(`Program-only rows include the frame source's own ${alone.stat.median.toFixed(0)} ns per frame; SNAT entries after the runs: ${dp.map(MAP_SPECS.Snat).count()}, conntrack entries: ${dp.map(MAP_SPECS.Conntrack).count()}.`);

      // Live frames: XDP_TX frames leave through the veth.
      src.configure({ template, n: 1, dstBase: ipNum(LB_IP), varySport: false });
      src.chain(xdpFd);
      try {
        const lv: number[] = [];
        for (let i = 0; i < samples; i++) lv.push(withNetns(ns, () => testRun(src!.fd, { data: template, ctx: ctxBytes, repeat, flags: BPF_F_TEST_XDP_LIVE_FRAMES, batchSize: 64 })).duration);
        const stat = summarize(lv);
        result.rows.push({ name: "XDP NodePort forward, one established flow, live frames (XDP_TX out of the veth)", params: { repeat, Mpps: (1000 / stat.median).toFixed(2) }, unit: "ns", stat });
      } catch (e) {
        result.skipped.push({ what: "live frames (BPF_F_TEST_XDP_LIVE_FRAMES)", reason: `the kernel refused the test run: ${(e as Error).message.split("\n")[0]}` });
      }
    } catch (e) {
      result.skipped.push({ what: "the rest of the XDP NodePort benchmark", reason: `failed: ${(e as Error).message.split("\n")[0]}` });
    } finally {
      src?.close();
      dp?.close();
      try {
        sh("ip", ["netns", "del", ns]);
      } catch {
        /* not created */
      }
      ctx.tick("xdp-nodeport");
    }
    return result;
  },
};
