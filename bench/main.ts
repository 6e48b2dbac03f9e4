/*
 * `npm run bench` (full) and `npm run bench -- --quick` (small sizes, under three minutes): runs every
 * benchmark in bench/cases/, shows a progress bar, and writes bench/results/ (or --out DIR).
 * `--only NAME[,NAME…]` runs only those benchmarks (e.g. `--only l7-proxy,dns-proxy`: the proxies' overhead
 * per HTTP request and per DNS query in one run).
 */
import { Command } from "commander";
import cliProgress from "cli-progress";
import { resolve } from "node:path";
import { machineInfo, type Benchmark } from "./harness.ts";
import { writeResult } from "./report.ts";
import { benchmarks } from "./cases/index.ts";

export async function runBenchmarks(
  opts: { quick: boolean; tiny?: boolean; only?: string; out: string; progress: boolean; log?: (line: string) => void },
  list: Benchmark[] = benchmarks,
): Promise<string[]> {
  const log = opts.log ?? ((line: string) => process.stderr.write(`\n${line}\n`));
  const wanted = opts.only?.split(",").map((n) => n.trim());
  const unknown = wanted?.filter((n) => !list.some((b) => b.name === n));
  if (unknown?.length) throw new Error(`no benchmark named ${unknown.join(", ")} (have: ${list.map((b) => b.name).join(", ")})`);
  const chosen = wanted ? list.filter((b) => wanted.includes(b.name)) : list;
  const machine = machineInfo();
  const quick = opts.quick || opts.tiny === true;
  const total = chosen.reduce((n, b) => n + b.steps(quick), 0);
  const bar = opts.progress ? new cliProgress.SingleBar({ format: "{bar} {percentage}% | {value}/{total} | {label}", hideCursor: true }, cliProgress.Presets.shades_classic) : undefined;
  bar?.start(total, 0, { label: "" });
  const written: string[] = [];
  try {
    for (const b of chosen) {
      const result = await b.run({ quick, tiny: opts.tiny, tick: (label) => bar?.increment(1, { label: `${b.name}: ${label}` }) });
      writeResult(opts.out, result, machine);
      written.push(result.name);
      // Parts that could not run say so on the terminal too, not only in the result files.
      for (const s of result.skipped) log(`bench: ${b.name}: skipped ${s.what} — ${s.reason}`);
    }
  } finally {
    bar?.stop();
  }
  return written;
}

const isMain = import.meta.url === `file://${process.argv[1]}` || process.argv[1]?.endsWith("bench/main.ts");
if (isMain) {
  const program = new Command("bench")
    .option("--quick", "small sizes and few repetitions (a smoke run; under three minutes)", false)
    .option("--only <names>", "run only these benchmarks (comma-separated)")
    .option("--out <dir>", "where results go", "bench/results");
  program.parse();
  const o = program.opts<{ quick: boolean; only?: string; out: string }>();
  runBenchmarks({ ...o, out: resolve(o.out), progress: process.stdout.isTTY === true })
    .then((names) => console.log(`wrote ${names.map((n) => `${o.out}/${n}.{json,md}`).join(", ")}`))
    .catch((e: Error) => {
      console.error(`bench: ${e.message}`);
      process.exit(2);
    });
}
