// `npm run test:differential -- --runs N [--seed S] [--path P]`: the wasm-vs-kernel differential suite
// with N random cases (default 5000, what CI runs), replaying a failure with the seed and path fast-check
// printed.
// `npm run test:differential:long -- [--cases N] [--seed S] [--chunk C] [--minutes M] [--result FILE]`: the
// long run of the tc programs — N cases (default 1,000,000) in chunks of C (default 10,000; chunk k has seed
// S+k), stopping after M minutes if given; the cumulative result is written after every chunk to FILE
// (default bench/results/differential/differential-long-<seed>.json). Run it under `nice -n 19`.
import { spawnSync } from "node:child_process";
import { parseArgs } from "node:util";

const { values } = parseArgs({
  options: {
    runs: { type: "string" }, seed: { type: "string" }, path: { type: "string" },
    long: { type: "boolean" }, cases: { type: "string" }, chunk: { type: "string" }, minutes: { type: "string" }, result: { type: "string" },
  },
});
const positive = (name, v) => {
  if (v !== undefined && !/^[1-9][0-9]*$/.test(v)) {
    console.error(`differential: --${name} must be a positive integer, got "${v}"`);
    process.exit(2);
  }
  return v;
};
const env = { ...process.env };
if (values.seed !== undefined && !/^-?[0-9]+$/.test(values.seed)) {
  console.error(`differential: --seed must be an integer, got "${values.seed}"`);
  process.exit(2);
}
if (values.long) {
  const seed = values.seed ?? String((Date.now() ^ (process.pid << 10)) | 0);
  env.DIFF_LONG = "1";
  env.DIFF_SEED = seed;
  env.DIFF_KERNEL_RUNS = positive("cases", values.cases) ?? "1000000";
  env.DIFF_CHUNK = positive("chunk", values.chunk) ?? "10000";
  if (positive("minutes", values.minutes)) env.DIFF_DEADLINE = String(Date.now() + Number(values.minutes) * 60_000);
  env.DIFF_RESULT = values.result ?? `bench/results/differential/differential-long-${seed}.json`;
  console.log(`differential long run: seed ${seed}, ${env.DIFF_KERNEL_RUNS} cases, result in ${env.DIFF_RESULT}`);
} else {
  env.DIFF_KERNEL_RUNS = positive("runs", values.runs) ?? "5000";
  if (values.seed) env.DIFF_SEED = values.seed;
  if (values.path) env.DIFF_PATH = values.path;
}
const r = spawnSync("npx", ["vitest", "run", "tests/differential/kernel.test.ts", "--testTimeout", "0"], { stdio: "inherit", env });
process.exit(r.status ?? 1);
