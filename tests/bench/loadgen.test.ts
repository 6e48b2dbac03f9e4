/*
 * Smoke tests of the C load generators on tiny sizes. Raw frames (bench/cases/loadgen.ts): the C generator
 * compiles and runs, every frame it sends reaches the receiving namespace's IPv4 input, the iptables
 * frames all traverse KUBE-SERVICES, ciliate's tc program writes conntrack entries, and the CPU cost per
 * frame is a positive finite number. Connection rate (bench/cases/conn-rate.ts): the C epoll client
 * completes connections through both datapaths, each one DNATed by the datapath under test. XDP NodePort
 * (bench/cases/xdp-nodeport.ts): the frame source's chain into ciliate's XDP program forwards (XDP_TX) on
 * every measured row. No assertion is about a time. Without root, clang, iptables or the
 * kernel build the benchmark must say what it skipped and why.
 */
import { describe, expect, it } from "vitest";
import { loadgenBenchmark } from "../../bench/cases/loadgen.ts";
import { connRateBenchmark } from "../../bench/cases/conn-rate.ts";
import { xdpNodePortBenchmark } from "../../bench/cases/xdp-nodeport.ts";

describe("raw-frame load generator", () => {
  it("sends frames that every datapath sees, and reports CPU per frame for each mode and N", { timeout: 180_000 }, async () => {
    const res = await loadgenBenchmark.run({ quick: true, tiny: true, tick: () => {} });
    if (res.rows.length === 0) {
      expect(res.skipped.length).toBeGreaterThan(0);
      for (const s of res.skipped) expect(s.reason.length).toBeGreaterThan(0);
      return;
    }
    expect(res.skipped).toEqual([]);
    const modes = new Set(res.rows.map((r) => r.params.mode));
    expect([...modes].sort()).toEqual(["base", "ciliate", "iptables"]);
    for (const r of res.rows) {
      const frames = Number(r.params.frames);
      expect(frames).toBeGreaterThan(0);
      // Every frame reached IPv4 receive in its namespace (none lost on the veth or the backlog).
      expect(Number(r.params.received)).toBe(frames);
      if (r.params.mode === "iptables") expect(Number(r.params.seen)).toBe(frames);
      if (r.params.mode === "ciliate") expect(Number(r.params.seen)).toBeGreaterThan(0);
      expect(Number.isFinite(r.stat.median)).toBe(true);
      expect(r.stat.median).toBeGreaterThan(0);
    }
    expect(res.ratios.some((x) => x.name.includes("iptables ÷ ciliate"))).toBe(true);
    expect(res.charts[0]!.series.map((s) => s.name)).toEqual(["no datapath", "iptables", "ciliate"]);
  });

  it("completes connections through iptables and through ciliate with the C epoll client", { timeout: 180_000 }, async () => {
    const res = await connRateBenchmark.run({ quick: true, tiny: true, tick: () => {} });
    if (res.rows.length === 0) {
      expect(res.skipped.length).toBeGreaterThan(0);
      for (const s of res.skipped) expect(s.reason.length).toBeGreaterThan(0);
      return;
    }
    expect(res.skipped).toEqual([]);
    const rates = res.rows.filter((r) => r.unit === "conn/s");
    expect(rates.map((r) => r.params.mode)).toEqual(["iptables", "ciliate"]);
    // CPU per connection (client + server processes) is measured for both modes.
    const cpu = res.rows.filter((r) => r.unit === "µs");
    expect(cpu.map((r) => r.params.mode)).toEqual(["iptables", "ciliate"]);
    for (const r of cpu) expect(r.stat.median).toBeGreaterThan(0);
    for (const r of rates) {
      const done = Number(r.params.connections);
      expect(done).toBeGreaterThan(0);
      expect(r.stat.median).toBeGreaterThan(0);
      // The VIPs are reachable only through the datapath under test: iptables counts a nat jump per new
      // connection, ciliate leaves conntrack entries.
      if (r.params.mode === "iptables") expect(Number(r.params.seen)).toBeGreaterThanOrEqual(done);
      else expect(Number(r.params.seen)).toBeGreaterThan(0);
    }
  });

  it("forwards NodePort frames through the frame source and ciliate's XDP program (XDP_TX)", { timeout: 120_000 }, async () => {
    const res = await xdpNodePortBenchmark.run({ quick: true, tiny: true, tick: () => {} });
    if (res.rows.length === 0) {
      expect(res.skipped.length).toBeGreaterThan(0);
      return;
    }
    const forward = res.rows.filter((r) => r.name.startsWith("XDP NodePort forward"));
    expect(forward.length).toBeGreaterThanOrEqual(2);
    for (const r of forward) {
      if (r.params["last XDP action"] !== undefined) expect(r.params["last XDP action"]).toBe(3);
      expect(Number(r.params.Mpps)).toBeGreaterThan(0);
    }
    // Live frames either ran or say why not.
    for (const s of res.skipped) expect(s.reason.length).toBeGreaterThan(0);
  });
});
