// `npm run test:fuzz [-- --long] [--frames N] [--runs N] [--seed S] [--epoch E] [files…]`: the fuzz suites
// of tests/fuzz/. Without options, the CI sizes (100,000 frames; a few hundred cases per input fuzzer).
// --long: ten million frames through WASM and the kernel, and 20x the input-fuzzing cases. --seed/--epoch
// replay a packet-fuzz failure (the failure message prints both). --minutes M stops the packet fuzzer after
// the epoch running at M minutes; --result FILE writes its cumulative result after every epoch (with
// --long, by default bench/results/fuzz/packet-fuzz-long-<seed>.json). Run long runs under `nice -n 19`.
import { spawnSync } from "node:child_process";
import { parseArgs } from "node:util";

const { values, positionals } = parseArgs({
  allowPositionals: true,
  options: { long: { type: "boolean" }, frames: { type: "string" }, runs: { type: "string" }, seed: { type: "string" }, epoch: { type: "string" }, minutes: { type: "string" }, result: { type: "string" } },
});
const env = { ...process.env };
env.FUZZ_FRAMES = values.frames ?? (values.long ? "10000000" : env.FUZZ_FRAMES ?? "100000");
if (values.runs ?? values.long) env.FUZZ_RUNS = values.runs ?? "5000";
for (const [name, v] of Object.entries({ frames: values.frames, runs: values.runs, minutes: values.minutes, seed: values.seed, epoch: values.epoch })) {
  if (v !== undefined && !/^[0-9]+$/.test(v)) {
    console.error(`fuzz: --${name} must be a non-negative integer, got "${v}"`);
    process.exit(2);
  }
}
if (values.long && !values.seed) values.seed = String((Date.now() ^ (process.pid << 8)) >>> 0);
if (values.seed) env.FUZZ_SEED = values.seed;
if (values.minutes) env.FUZZ_DEADLINE = String(Date.now() + Number(values.minutes) * 60_000);
if (values.result ?? values.long) env.FUZZ_RESULT = values.result ?? `bench/results/fuzz/packet-fuzz-long-${values.seed}.json`;
if (values.epoch) env.FUZZ_EPOCH = values.epoch;
const files = positionals.length ? positionals : ["tests/fuzz/"];
const r = spawnSync("npx", ["vitest", "run", ...files, "--testTimeout", "0"], { stdio: "inherit", env });
process.exit(r.status ?? 1);
