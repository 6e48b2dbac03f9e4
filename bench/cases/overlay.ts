/*
 * Benchmark: per-packet cost of the overlay on wasm, js and the kernel, against the same packet without it
 * and against the empty tc program, in the same run. Four established-TCP cases (conntrack hit, policy
 * allows), each one frame repeated:
 *   native      — pod A → a pod on another node, overlay off (forwarded as is);
 *   encap       — the same packet with the overlay on: ipcache tunnel endpoint, tunnel key set
 *                 (bpf_skb_set_tunnel_key), redirect to the tunnel device;
 *   to-endpoint — the remote pod → A, identity carried in skb->mark (to_endpoint);
 *   decap       — the same packet through from_overlay, identity from the tunnel key.
 * Kernel rows run the programs the agent attaches (from_endpoint, to_endpoint), except decap: a test run
 * has no tunnel device to attach the key, so it runs harness_from_overlay, which sets the key
 * (bpf_skb_set_tunnel_key) before from_overlay's code — its row includes that helper call, which a real
 * device does in the kernel before the program.
 */
import { createJsDatapath, createWasmDatapath } from "../../sim/engines.ts";
import { KernelDatapath, KERNEL_OBJECT } from "../../datapath/kernel-engine.ts";
import type { Datapath, EntryPoint, TunnelKey } from "../../host/datapath.ts";
import type { AbiDatapath } from "../../host/abi-datapath.ts";
import { addrBytes16 } from "../../host/ip.ts";
import { measure, ratio, type Benchmark, type BenchResult, type Row, type Stat } from "../harness.ts";
import { abiTimer, bpfStats, kernelTimer, kernelUnavailable, loadEmptyProgram, pinned, type PacketTimer } from "../fixtures/engines.ts";
import { addPolicy, benchNode, buildFrame, C, frames, ipcacheKey, MAP_SPECS, NOW, POD_A, REMOTE_POD, setMaglevBuilder } from "../fixtures/node.ts";
import { TCP_FLAGS } from "../../sim/packets.ts";

const NODE_B = "192.168.56.22";
const KEY_IN: TunnelKey = { remote: NODE_B, tunnelId: REMOTE_POD.identity };

interface OverlayCase {
  key: "native" | "encap" | "to-endpoint" | "decap";
  label: string;
  entry: EntryPoint;
  overlay: boolean;
}

const CASES: OverlayCase[] = [
  { key: "native", label: "to a remote pod, overlay off", entry: "fromEndpoint", overlay: false },
  { key: "encap", label: "to a remote pod, encapsulated (VXLAN/Geneve)", entry: "fromEndpoint", overlay: true },
  { key: "to-endpoint", label: "from a remote pod, identity in the mark", entry: "toEndpoint", overlay: true },
  { key: "decap", label: "from a remote pod, identity from the tunnel key", entry: "fromOverlay", overlay: true },
];

function sizes(quick: boolean, tiny = false) {
  if (tiny) return { repeats: 1, same: 1_000, kernelRepeat: 1_000 };
  return quick ? { repeats: 3, same: 20_000, kernelRepeat: 100_000 } : { repeats: 7, same: 300_000, kernelRepeat: 1_000_000 };
}

function setOverlay(dp: Datapath, on: boolean): void {
  const cfg = dp.map(MAP_SPECS.Config).lookup(0)!;
  dp.map(MAP_SPECS.Config).update(0, { ...cfg, tunnelProtocol: on ? C.TUNNEL_PROTO_VXLAN : C.TUNNEL_PROTO_NONE, tunnelIfindex: 1 });
}

/** The standard bench node plus the remote pods' tunnel endpoint and an ingress rule for the remote pod;
 * opens both connections so every timed packet is established. Returns the two frames and checks notes. */
function prepare(dp: Datapath, notes: string[]): { out: Uint8Array; in: Uint8Array } {
  benchNode(dp);
  dp.map(MAP_SPECS.Ipcache).update(ipcacheKey("10.244.1.0/24"), { secIdentity: REMOTE_POD.identity, tunnelEndpoint: addrBytes16(NODE_B), flags: C.IPCACHE_F_HAS_TUNNEL_EP });
  addPolicy(dp, { epId: POD_A.epId, egress: false, identity: REMOTE_POD.identity, proto: C.IPPROTO_TCP, port: 80 });
  setOverlay(dp, true);
  const check = (what: string, ok: boolean, detail: string) => {
    if (!ok) notes.push(`${dp.engine}: UNEXPECTED outcome for ${what}: ${detail} — its timing does not measure the intended path`);
  };
  dp.run("fromEndpoint", buildFrame(frames.synRemote()), { now: NOW });
  const out = buildFrame(frames.ackRemote());
  const e = dp.run("fromEndpoint", out, { now: NOW });
  check("encap", e.verdict === C.CTX_ACT_TUNNEL && e.trace.ctState === C.CT_ESTABLISHED, `verdict ${e.verdict}, ct ${e.trace.ctState}`);
  const inSyn = buildFrame({ src: REMOTE_POD.ip, dst: POD_A.ip, proto: "TCP", sport: 42000, dport: 80, tcpFlags: TCP_FLAGS.SYN });
  dp.run("fromOverlay", inSyn, { now: NOW, tunnel: KEY_IN });
  const inAck = buildFrame({ src: REMOTE_POD.ip, dst: POD_A.ip, proto: "TCP", sport: 42000, dport: 80, tcpFlags: TCP_FLAGS.ACK });
  // Leaves KEY_IN where the timed runs read it (abiTunnelIn / the harness's slot).
  const d = dp.run("fromOverlay", inAck, { now: NOW, tunnel: KEY_IN });
  check("decap", d.verdict === C.CTX_ACT_OK && d.trace.ctState === C.CT_ESTABLISHED && d.trace.srcIdentity === REMOTE_POD.identity, `verdict ${d.verdict}, drop ${d.dropReason}`);
  const t = dp.run("toEndpoint", inAck, { now: NOW, srcIdentity: REMOTE_POD.identity });
  check("to-endpoint", t.verdict === C.CTX_ACT_OK, `verdict ${t.verdict}, drop ${t.dropReason}`);
  setOverlay(dp, false);
  const n = dp.run("fromEndpoint", out, { now: NOW });
  check("native", n.verdict === C.CTX_ACT_OK, `verdict ${n.verdict}`);
  return { out, in: inAck };
}

export const overlayBenchmark: Benchmark = {
  name: "overlay",
  title: "Per-packet cost of encapsulation and decapsulation",
  steps: () => 4 * 4,
  async run(ctx) {
    const s = sizes(ctx.quick, ctx.tiny);
    const result: BenchResult = { name: "overlay", title: this.title, rows: [], ratios: [], skipped: [], charts: [], notes: [] };
    const rows = new Map<string, Row>();
    const add = (engine: string, c: OverlayCase, stat: Stat, extra: Record<string, string | number> = {}) => {
      const row: Row = { name: `${engine}: ${c.label}`, params: { engine, case: c.key, ...extra }, unit: "ns/pkt", stat };
      rows.set(`${engine}/${c.key}`, row);
      result.rows.push(row);
    };
    const timeAll = async (engine: string, dp: Datapath, timer: PacketTimer, count: number, f: { out: Uint8Array; in: Uint8Array }, extra: Record<string, string | number> = {}) => {
      for (const c of CASES) {
        setOverlay(dp, c.overlay);
        const frame = c.entry === "fromEndpoint" ? f.out : f.in;
        add(engine, c, await measure(s.repeats, () => timer.time(c.entry, [frame], "same", count, REMOTE_POD.identity, NOW)), extra);
        ctx.tick(`${engine} ${c.key}`);
      }
    };
    const { note } = await pinned(1, async () => {
      const wasm = createWasmDatapath({ capacities: { ct: 4096, snat: 1024 } });
      const js = await createJsDatapath({ capacities: { ct: 4096, snat: 1024 } });
      setMaglevBuilder(wasm);
      for (const [name, dp] of [["wasm", wasm], ["js", js]] as const) {
        const f = prepare(dp, result.notes);
        await timeAll(name, dp, abiTimer(dp as AbiDatapath), s.same, f);
      }
      js.close();
      const why = kernelUnavailable(KERNEL_OBJECT);
      if (why) {
        result.skipped.push({ what: "kernel and empty-program rows (and every ratio that needs them)", reason: why });
        for (let i = 0; i < 8; i++) ctx.tick("kernel skipped");
        wasm.close();
        return;
      }
      const stats = bpfStats();
      result.notes.push(`kernel.bpf_stats_enabled = ${stats}${stats === "0" ? " (off, as required)" : " — stats add ~20 ns per run; kernel rows are inflated"}`);
      const kdp = new KernelDatapath({ capacities: { ct: 4096, snat: 1024 }, plainPrograms: true });
      const empty = loadEmptyProgram();
      try {
        const f = prepare(kdp, result.notes);
        // The agent's programs, except from_overlay: only the harness can give it a key under test-run.
        await timeAll("kernel", kdp, kernelTimer((e) => kdp.programFd(e, e !== "fromOverlay")), s.kernelRepeat, f, { repeat: s.kernelRepeat });
        const et = kernelTimer(() => empty.fd);
        for (const c of CASES) {
          add("empty", c, await measure(s.repeats, () => et.time(c.entry, [c.entry === "fromEndpoint" ? f.out : f.in], "same", s.kernelRepeat, 0, NOW)), { repeat: s.kernelRepeat });
          ctx.tick(`empty ${c.key}`);
        }
      } finally {
        empty.close();
        kdp.close();
        wasm.close();
      }
    });
    result.notes.push(note);
    result.notes.push("Every case is an established TCP packet (conntrack hit, policy allows), one frame repeated. The kernel decap row runs harness_from_overlay: it includes one bpf_skb_set_tunnel_key call that a receiving tunnel device makes before the program in production.");
    const g = (k: string) => rows.get(k);
    for (const eng of ["wasm", "js", "kernel"]) {
      const [n, e, t, d] = CASES.map((c) => g(`${eng}/${c.key}`));
      if (n && e) result.ratios.push(ratio(`${eng}: encap ÷ native`, e, n, "the overlay's cost when sending: one ipcache lookup and the tunnel key"));
      if (t && d) result.ratios.push(ratio(`${eng}: decap ÷ identity in the mark`, d, t, "the overlay's cost when receiving: reading the tunnel key"));
    }
    for (const c of CASES) {
      const k = g(`kernel/${c.key}`);
      const em = g(`empty/${c.key}`);
      if (k && em) result.ratios.push(ratio(`${c.key}: kernel ÷ empty program`, k, em, "the floor: BPF_PROG_TEST_RUN of an empty tc program"));
    }
    const series = ["wasm", "js", "kernel", "empty"]
      .map((eng) => ({ name: eng, points: CASES.map((c, i) => [i + 1, g(`${eng}/${c.key}`)?.stat.median] as [number, number | undefined]).filter((p): p is [number, number] => p[1] !== undefined) }))
      .filter((x) => x.points.length);
    result.charts.push({ title: "Overlay per-packet cost", xLabel: "case (1 native, 2 encap, 3 identity in mark, 4 decap)", yLabel: "ns per packet (median)", series });
    return result;
  },
};
