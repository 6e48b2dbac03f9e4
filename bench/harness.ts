/*
 * The benchmark harness: runs measurement functions repeatedly, keeps the median with min and max, and
 * records the machine each result came from. Benchmarks are comparisons taken in the same run (ratios),
 * so a noisy CI machine still gives meaningful numbers. No test asserts a time; tests only run the quick
 * path on tiny sizes to prove it works.
 */
import { execFileSync } from "node:child_process";
import { cpus, release } from "node:os";
import { existsSync, readFileSync } from "node:fs";

export interface Stat {
  median: number;
  min: number;
  max: number;
  runs: number;
}

export interface Row {
  /** What was measured, e.g. "wasm established TCP". */
  name: string;
  /** Free-form parameters (sizes, engine). */
  params: Record<string, string | number>;
  unit: string;
  stat: Stat;
}

export interface Ratio {
  name: string;
  /** numerator ÷ denominator, from medians of the same run. */
  value: number;
  numerator: string;
  denominator: string;
  /** The published anchor this compares with, if any, by its id (A1 …) in docs/benchmarks.md. */
  anchor?: string;
}

export interface Skip {
  what: string;
  reason: string;
}

export interface BenchResult {
  name: string;
  title: string;
  rows: Row[];
  ratios: Ratio[];
  skipped: Skip[];
  /** Series for charts: x values and one y series per line. */
  charts: Chart[];
  notes: string[];
}

export interface Chart {
  title: string;
  xLabel: string;
  yLabel: string;
  logX?: boolean;
  series: { name: string; points: [number, number][] }[];
}

export interface MachineInfo {
  cpuModel: string;
  cores: number;
  kernel: string;
  node: string;
  clang: string;
  jit: string;
  date: string;
}

export function machineInfo(): MachineInfo {
  let clang = "not installed";
  try {
    clang = execFileSync("clang", ["--version"], { encoding: "utf8" }).split("\n")[0]!.trim();
  } catch {
    /* clang is optional for the non-kernel benchmarks */
  }
  let jit = "unknown";
  const jitPath = "/proc/sys/net/core/bpf_jit_enable";
  if (existsSync(jitPath)) jit = readFileSync(jitPath, "utf8").trim() === "0" ? "off" : "on";
  return {
    cpuModel: cpus()[0]?.model ?? "unknown",
    cores: cpus().length,
    kernel: release(),
    node: process.version,
    clang,
    jit,
    date: new Date().toISOString(),
  };
}

export function summarize(samples: number[]): Stat {
  if (samples.length === 0) throw new Error("no samples");
  const s = [...samples].sort((a, b) => a - b);
  const mid = s.length >> 1;
  const median = s.length % 2 ? s[mid]! : (s[mid - 1]! + s[mid]!) / 2;
  return { median, min: s[0]!, max: s[s.length - 1]!, runs: s.length };
}

/** Runs `fn` `repeats` times (after one warm-up) and summarizes what it returns (e.g. ns per op). */
export async function measure(repeats: number, fn: () => number | Promise<number>): Promise<Stat> {
  await fn();
  const samples: number[] = [];
  for (let i = 0; i < repeats; i++) samples.push(await fn());
  return summarize(samples);
}

/** Nanoseconds per iteration of `body` over `iterations` calls, timed as one block. */
export function nsPerOp(iterations: number, body: (i: number) => void): number {
  const t0 = process.hrtime.bigint();
  for (let i = 0; i < iterations; i++) body(i);
  return Number(process.hrtime.bigint() - t0) / iterations;
}

export function ratio(name: string, num: Row, den: Row, anchor?: string): Ratio {
  return { name, value: num.stat.median / den.stat.median, numerator: num.name, denominator: den.name, anchor };
}

export interface BenchContext {
  quick: boolean;
  /** Smoke-test sizes (tests/bench/smoke.test.ts): the quick code path with the smallest inputs. Implies quick. */
  tiny?: boolean;
  /** Called after each unit of work so long runs can show progress. */
  tick(label: string): void;
}

export interface Benchmark {
  name: string;
  title: string;
  /** Units of work, for the progress bar. */
  steps(quick: boolean): number;
  run(ctx: BenchContext): Promise<BenchResult>;
}
