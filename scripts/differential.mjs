// `npm run test:differential -- --runs N [--seed S] [--path P]`: the wasm-vs-kernel differential suite
// with N random cases (default 5000, what CI runs), replaying a failure with the seed and path fast-check
// printed.
import { spawnSync } from "node:child_process";
import { parseArgs } from "node:util";

const { values } = parseArgs({ options: { runs: { type: "string" }, seed: { type: "string" }, path: { type: "string" } } });
const env = { ...process.env, DIFF_KERNEL_RUNS: values.runs ?? "5000" };
if (values.seed) env.DIFF_SEED = values.seed;
if (values.path) env.DIFF_PATH = values.path;
const r = spawnSync("npx", ["vitest", "run", "tests/differential/kernel.test.ts", "--testTimeout", "0"], { stdio: "inherit", env });
process.exit(r.status ?? 1);
