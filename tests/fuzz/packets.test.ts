/*
 * Packet fuzzing in every CI run: FUZZ_FRAMES hostile frames (default 100,000) through WASM and the kernel
 * with zero differences and zero faults (tests/fuzz/packet-fuzz.ts says what is compared). The seed is
 * printed; FUZZ_SEED=<seed> [FUZZ_EPOCH=<n>] replays a run or one epoch of it. `npm run test:fuzz -- --long`
 * runs ten million frames. FUZZ_RESULT=<file> writes the cumulative result (frames, compared, events, seed,
 * duration, outcomes) after every epoch, so a long run stopped for time still records what it finished;
 * FUZZ_DEADLINE=<epoch ms> stops it after the epoch running at that time (`npm run test:fuzz -- --long
 * --minutes M --result FILE`).
 */
import { appendFileSync, mkdirSync, renameSync, writeFileSync } from "node:fs";
import { availableParallelism, loadavg } from "node:os";
import { dirname } from "node:path";
import { afterAll, describe, expect, it } from "vitest";
import { kernelSuite } from "../../datapath/preflight.ts";
import { PacketFuzzer, type PacketFuzzReport } from "./packet-fuzz.ts";

const FRAMES = Number(process.env.FUZZ_FRAMES ?? 100_000);
const SEED = process.env.FUZZ_SEED ? Number(process.env.FUZZ_SEED) : (Date.now() ^ (process.pid << 8)) >>> 0;
const EPOCH = process.env.FUZZ_EPOCH === undefined ? undefined : Number(process.env.FUZZ_EPOCH);
// Long runs also log their progress to this file as they go (vitest shows a test's output only at its end).
const PROGRESS_FILE = process.env.FUZZ_PROGRESS_FILE;
const RESULT_FILE = process.env.FUZZ_RESULT;
const DEADLINE = process.env.FUZZ_DEADLINE ? Number(process.env.FUZZ_DEADLINE) : undefined;

/** The cumulative result of a run so far, for FUZZ_RESULT. */
function writeResult(status: string, started: number, r: PacketFuzzReport): void {
  if (!RESULT_FILE) return;
  mkdirSync(dirname(RESULT_FILE), { recursive: true });
  const secs = (Date.now() - started) / 1000;
  const out = {
    suite: "tests/fuzz/packets.test.ts",
    status,
    seed: SEED,
    replay: `FUZZ_SEED=${SEED} FUZZ_EPOCH=<epoch> npm run test:fuzz tests/fuzz/packets.test.ts`,
    framesRequested: FRAMES,
    frames: r.frames,
    compared: r.compared,
    refusedByKernel: r.refusedByKernel,
    events: r.events,
    epochs: r.epochs,
    differences: 0,
    durationSeconds: Math.round(secs),
    framesPerSecond: Math.round(r.frames / Math.max(1, secs)),
    outcomes: Object.fromEntries([...r.outcomes].sort((a, b) => b[1] - a[1])),
    host: { cpus: availableParallelism(), loadAverage: loadavg().map((x) => Number(x.toFixed(1))) },
    finishedAt: new Date().toISOString(),
  };
  writeFileSync(`${RESULT_FILE}.tmp`, JSON.stringify(out, null, 2) + "\n");
  renameSync(`${RESULT_FILE}.tmp`, RESULT_FILE);
}
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
      deadline: DEADLINE,
      progress: (done, r) => {
        writeResult(done >= FRAMES ? "complete" : "running", started, r);
        if (Date.now() - last > 30_000) {
          last = Date.now();
          const line = `packet fuzz seed ${SEED}: ${done} frames without a difference (${r.compared} compared, ${r.events} events), ${Math.round(done / ((last - started) / 1000))}/s`;
          console.log(line);
          if (PROGRESS_FILE) appendFileSync(PROGRESS_FILE, `${new Date().toISOString()} ${line}\n`);
        }
      },
    });
    const secs = (Date.now() - started) / 1000;
    writeResult(report.frames >= FRAMES ? "complete" : "stopped at the deadline", started, report);
    console.log(`packet fuzz seed ${SEED}: ${report.frames} frames in ${secs.toFixed(1)} s, ${report.compared} compared, ${report.refusedByKernel} refused by the kernel (all WASM drops as invalid), ${report.events} events compared, ${report.epochs} epochs`);
    console.log(`outcomes: ${[...report.outcomes].sort((a, b) => b[1] - a[1]).map(([o, n]) => `${o}: ${n}`).join(", ")}`);
    // Not vacuous: the kernel ran every compared frame, and the frames reached the parser's refusals as
    // well as the policy, conntrack and forwarding paths behind it.
    expect(report.kernelRuns).toBe(report.compared);
    expect(report.compared + report.refusedByKernel).toBe(report.frames);
    if (DEADLINE === undefined && EPOCH === undefined) expect(report.frames).toBe(FRAMES);
    if (EPOCH === undefined && report.frames >= 20_000) {
      for (const o of ["fromEndpoint ok", "toEndpoint ok", "fromEndpoint drop 134", "fromEndpoint drop 139", "fromEndpoint drop 175", "toEndpoint drop 156", "toEndpoint drop 135", "fromEndpoint drop 133"]) {
        expect(report.outcomes.get(o) ?? 0, `outcome "${o}" reached`).toBeGreaterThan(0);
      }
      expect(report.events).toBeGreaterThan(0);
    }
  }, Math.max(300_000, FRAMES * 5));
});
