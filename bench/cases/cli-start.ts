/*
 * CLI start: the wall time of the `ciliate` command as a user runs it (node bin/ciliate.js, a child
 * process each time), for `ciliate --help` and for `ciliate trace` of one Star Wars flow, against the
 * targets of issue #11 item 5 (150 ms and 400 ms) and against a bare `node -e ''` start on the same machine
 * in the same minutes. The three commands run in turn, N rounds, so load from other processes falls on all
 * of them alike; the load average is in the notes, since on a shared machine the absolute times are only
 * as good as the idle they were taken in. Needs `npm run build` (build/cli/); without it bin/ciliate.js
 * runs the TypeScript sources, which is reported as skipped rather than timed.
 */
import { spawnSync } from "node:child_process";
import { existsSync } from "node:fs";
import { loadavg } from "node:os";
import { join, resolve } from "node:path";
import { summarize, type Benchmark, type BenchResult, type Row } from "../harness.ts";

const ROOT = resolve(import.meta.dirname, "../..");
const HELP_TARGET_MS = 150;
const TRACE_TARGET_MS = 400;
const TRACE = ["trace", "-f", "scenarios/starwars", "--from", "default/tiefighter", "--to", "default/deathstar-0", "--port", "80"];

/** Wall milliseconds of one run of node with these arguments; a failed run is an error, not a sample. */
function timeRun(args: string[]): number {
  const t0 = process.hrtime.bigint();
  const r = spawnSync(process.execPath, args, { cwd: ROOT, encoding: "utf8", stdio: ["ignore", "pipe", "pipe"] });
  const ms = Number(process.hrtime.bigint() - t0) / 1e6;
  if (r.status !== 0) throw new Error(`node ${args.join(" ")} exited ${r.status}: ${r.stderr.trim().split("\n")[0]}`);
  return ms;
}

export const cliStartBenchmark: Benchmark = {
  name: "cli-start",
  title: "CLI start: `ciliate --help` and `ciliate trace` wall time against the 150/400 ms targets",
  steps: (quick) => (quick ? 5 : 15),
  async run(ctx) {
    const result: BenchResult = { name: "cli-start", title: this.title, rows: [], ratios: [], skipped: [], charts: [], notes: [] };
    if (!existsSync(join(ROOT, "build/cli/ciliate.mjs"))) {
      result.skipped.push({ what: "every measurement", reason: "build/cli/ciliate.mjs is not built (npm run build): bin/ciliate.js would run the TypeScript sources" });
      return result;
    }
    const rounds = ctx.tiny ? 1 : ctx.quick ? 5 : 15;
    const commands: [string, string[]][] = [
      ["node -e ''", ["-e", ""]],
      ["ciliate --help", ["bin/ciliate.js", "--help"]],
      ["ciliate trace (Star Wars, tiefighter → deathstar-0:80)", ["bin/ciliate.js", ...TRACE]],
    ];
    // One untimed run each: the files are in the page cache for every timed one, as for a user's second run.
    for (const [, args] of commands) timeRun(args);
    const load0 = loadavg();
    const samples = commands.map(() => [] as number[]);
    for (let i = 0; i < rounds; i++) {
      commands.forEach(([, args], k) => samples[k]!.push(timeRun(args)));
      ctx.tick(`round ${i + 1}`);
    }
    const load1 = loadavg();
    const rows: Row[] = commands.map(([name], k) => ({ name, params: { rounds }, unit: "ms", stat: summarize(samples[k]!) }));
    result.rows.push(...rows);
    const [bare, help, trace] = rows as [Row, Row, Row];
    result.ratios.push(
      { name: `ciliate --help ÷ target ${HELP_TARGET_MS} ms`, value: help.stat.median / HELP_TARGET_MS, numerator: help.name, denominator: `${HELP_TARGET_MS} ms` },
      { name: `ciliate trace ÷ target ${TRACE_TARGET_MS} ms`, value: trace.stat.median / TRACE_TARGET_MS, numerator: trace.name, denominator: `${TRACE_TARGET_MS} ms` },
      { name: "ciliate --help ÷ node -e ''", value: help.stat.median / bare.stat.median, numerator: help.name, denominator: bare.name },
      { name: "ciliate trace ÷ node -e ''", value: trace.stat.median / bare.stat.median, numerator: trace.name, denominator: bare.name },
    );
    const fmt = (l: number[]) => l.map((x) => x.toFixed(2)).join(" ");
    result.notes.push(
      `Load average (1, 5, 15 min) before: ${fmt(load0)}; after: ${fmt(load1)} on ${ctx.quick ? "a quick run" : "a full run"}. On a busy machine every row grows; the ratios to \`node -e ''\` say how much of a start is ciliate's own.`,
      "A ratio to a target below 1 meets it. Medians of child processes started one after another, each command in turn.",
    );
    return result;
  },
};
