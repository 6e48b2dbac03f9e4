// `npm run test:differential -- --runs N [--seed S] [--sequences K] [--path G --sequence J]`: the wasm-vs-kernel
// differential suite with N random cases (default 5000, what CI runs), K packet sequences (cases) on each
// installed node state (default 8); `--path G --sequence J` replays case J of group G alone (the seed, group
// and sequence a failure prints, with the same K).
// `npm run test:differential:long -- [--cases N] [--seed S] [--chunk C] [--sequences K] [--minutes M] [--result FILE]`:
// the long run of the tc programs — N cases (default 1,000,000) in chunks of C (default 10,000, a multiple of
// K; chunk k has seed S+k), stopping after M minutes if given; the cumulative result is written after every
// chunk to FILE (default bench/results/differential/differential-long-<seed>.json). Run it under `nice`.
import { spawnSync } from "node:child_process";
import { parseArgs } from "node:util";

const { values } = parseArgs({
  options: {
    runs: { type: "string" }, seed: { type: "string" }, path: { type: "string" }, sequences: { type: "string" }, sequence: { type: "string" },
    long: { type: "boolean" }, cases: { type: "string" }, chunk: { type: "string" }, minutes: { type: "string" }, result: { type: "string" },
  },
});
const fail = (message) => {
  console.error(`differential: ${message}`);
  process.exit(2);
};
const positive = (name, v) => {
  if (v !== undefined && !/^[1-9][0-9]*$/.test(v)) fail(`--${name} must be a positive integer, got "${v}"`);
  return v;
};
const env = { ...process.env };
if (values.seed !== undefined && !/^-?[0-9]+$/.test(values.seed)) fail(`--seed must be an integer, got "${values.seed}"`);
env.DIFF_SEQUENCES = positive("sequences", values.sequences) ?? env.DIFF_SEQUENCES ?? "8";
const sequences = Number(env.DIFF_SEQUENCES);
if (values.long) {
  if (values.path !== undefined || values.sequence !== undefined) fail("--path and --sequence replay one case: use them without --long");
  const seed = values.seed ?? String((Date.now() ^ (process.pid << 10)) | 0);
  env.DIFF_LONG = "1";
  env.DIFF_SEED = seed;
  env.DIFF_KERNEL_RUNS = positive("cases", values.cases) ?? "1000000";
  env.DIFF_CHUNK = positive("chunk", values.chunk) ?? "10000";
  if (Number(env.DIFF_CHUNK) % sequences !== 0) fail(`--chunk (${env.DIFF_CHUNK}) must be a multiple of --sequences (${sequences}), so that every chunk is whole node states`);
  if (positive("minutes", values.minutes)) env.DIFF_DEADLINE = String(Date.now() + Number(values.minutes) * 60_000);
  env.DIFF_RESULT = values.result ?? `bench/results/differential/differential-long-${seed}.json`;
  console.log(`differential long run: seed ${seed}, ${env.DIFF_KERNEL_RUNS} cases, ${sequences} packet sequences a node state, result in ${env.DIFF_RESULT}`);
} else {
  if (values.sequence !== undefined) {
    if (!/^[0-9]+$/.test(values.sequence) || Number(values.sequence) >= sequences) fail(`--sequence must be one of 0..${sequences - 1} (--sequences ${sequences}), got "${values.sequence}"`);
    if (values.path === undefined || values.seed === undefined) fail("--sequence replays one case: give its --seed and --path (the group) too");
    env.DIFF_SEQUENCE = values.sequence;
  }
  // A replayed group is one fast-check run.
  env.DIFF_KERNEL_RUNS = positive("runs", values.runs) ?? (values.path !== undefined ? String(sequences) : "5000");
  if (values.seed) env.DIFF_SEED = values.seed;
  if (values.path) env.DIFF_PATH = values.path;
}
const r = spawnSync("npx", ["vitest", "run", "tests/differential/kernel.test.ts", "--testTimeout", "0"], { stdio: "inherit", env });
process.exit(r.status ?? 1);
