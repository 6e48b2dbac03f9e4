/*
 * Packet fuzzing in every CI run: FUZZ_FRAMES hostile frames (default 100,000) through WASM and the kernel
 * with zero differences and zero faults (tests/fuzz/packet-fuzz.ts says what is compared). The seed is
 * printed; FUZZ_SEED=<seed> [FUZZ_EPOCH=<n>] replays a run or one epoch of it. `npm run test:fuzz -- --long`
 * runs ten million frames.
 */
import { appendFileSync } from "node:fs";
import { afterAll, describe, expect, it } from "vitest";
import { kernelSuite } from "../../datapath/preflight.ts";
import { PacketFuzzer } from "./packet-fuzz.ts";

const FRAMES = Number(process.env.FUZZ_FRAMES ?? 100_000);
const SEED = process.env.FUZZ_SEED ? Number(process.env.FUZZ_SEED) : (Date.now() ^ (process.pid << 8)) >>> 0;
const EPOCH = process.env.FUZZ_EPOCH === undefined ? undefined : Number(process.env.FUZZ_EPOCH);
// Long runs also log their progress to this file as they go (vitest shows a test's output only at its end).
const PROGRESS_FILE = process.env.FUZZ_PROGRESS_FILE;
const k = kernelSuite("packet fuzzing wasm vs kernel", ["root", "libbpf", "bpffs", "clang"]);

describe.skipIf(k.skip)("packet fuzzing: wasm and kernel agree on hostile frames", () => {
  let fuzzer: PacketFuzzer | undefined;
  afterAll(() => fuzzer?.close());

  it(`${FRAMES} frames, seed ${SEED}`, () => {
    fuzzer = new PacketFuzzer();
    const started = Date.now();
    let last = started;
    const report = fuzzer.run({
      seed: SEED,
      frames: FRAMES,
      onlyEpoch: EPOCH,
      progress: (done, r) => {
        if (Date.now() - last > 30_000) {
          last = Date.now();
          const line = `packet fuzz seed ${SEED}: ${done} frames without a difference (${r.compared} compared, ${r.events} events), ${Math.round(done / ((last - started) / 1000))}/s`;
          console.log(line);
          if (PROGRESS_FILE) appendFileSync(PROGRESS_FILE, `${new Date().toISOString()} ${line}\n`);
        }
      },
    });
    const secs = (Date.now() - started) / 1000;
    console.log(`packet fuzz seed ${SEED}: ${report.frames} frames in ${secs.toFixed(1)} s, ${report.compared} compared, ${report.refusedByKernel} refused by the kernel (all WASM drops as invalid), ${report.events} events compared, ${report.epochs} epochs`);
    console.log(`outcomes: ${[...report.outcomes].sort((a, b) => b[1] - a[1]).map(([o, n]) => `${o}: ${n}`).join(", ")}`);
    // Not vacuous: the kernel ran every compared frame, and the frames reached the parser's refusals as
    // well as the policy, conntrack and forwarding paths behind it.
    expect(report.kernelRuns).toBe(report.compared);
    expect(report.compared + report.refusedByKernel).toBe(report.frames);
    if (EPOCH === undefined && FRAMES >= 20_000) {
      for (const o of ["fromEndpoint ok", "toEndpoint ok", "fromEndpoint drop 134", "fromEndpoint drop 139", "fromEndpoint drop 175", "toEndpoint drop 156", "toEndpoint drop 135", "fromEndpoint drop 133"]) {
        expect(report.outcomes.get(o) ?? 0, `outcome "${o}" reached`).toBeGreaterThan(0);
      }
      expect(report.events).toBeGreaterThan(0);
    }
  }, Math.max(300_000, FRAMES * 5));
});
