// `npm run test:fuzz [-- --long] [--frames N] [--runs N] [--seed S] [--epoch E] [files…]`: the fuzz suites
// of tests/fuzz/. Without options, the CI sizes (100,000 frames; a few hundred cases per input fuzzer).
// --long: ten million frames through WASM and the kernel, and 20x the input-fuzzing cases. --seed/--epoch
// replay a packet-fuzz failure (the failure message prints both).
import { spawnSync } from "node:child_process";
import { parseArgs } from "node:util";

const { values, positionals } = parseArgs({
  allowPositionals: true,
  options: { long: { type: "boolean" }, frames: { type: "string" }, runs: { type: "string" }, seed: { type: "string" }, epoch: { type: "string" } },
});
const env = { ...process.env };
env.FUZZ_FRAMES = values.frames ?? (values.long ? "10000000" : env.FUZZ_FRAMES ?? "100000");
if (values.runs ?? values.long) env.FUZZ_RUNS = values.runs ?? "5000";
if (values.seed) env.FUZZ_SEED = values.seed;
if (values.epoch) env.FUZZ_EPOCH = values.epoch;
const files = positionals.length ? positionals : ["tests/fuzz/"];
const r = spawnSync("npx", ["vitest", "run", ...files, "--testTimeout", "0"], { stdio: "inherit", env });
process.exit(r.status ?? 1);
