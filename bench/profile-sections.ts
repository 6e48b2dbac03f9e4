/*
 * Where the kernel's per-packet cost goes: builds variants of the generated program with one part cut
 * out (a function's body replaced by a constant return), loads
 * each on the benchmark node and times the established and denied packets with BPF_PROG_TEST_RUN
 * (repeat). The difference to the unmodified build is that part's cost. The variants are for measuring
 * only: they are built into a temporary directory and never used for anything else.
 *
 *   npx tsx bench/profile-sections.ts [--repeat N] [--rounds N]
 */
import { execFileSync } from "node:child_process";
import { cpSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { KernelDatapath } from "../datapath/kernel-engine.ts";
import { testRun } from "../datapath/test-run.ts";
import { repoPath } from "../host/paths.ts";
import { benchNode, buildFrame, frames, NOW, setMaglevBuilder } from "./fixtures/node.ts";
import { createWasmDatapath } from "../sim/engines.ts";
import { loadEmptyProgram } from "./fixtures/engines.ts";
import { CAPACITIES } from "./cases/datapath.ts";

interface Variant {
  name: string;
  /** Rewrites bpf/gen/core.h and the program sources of the copy. */
  patch(core: string, prog: string): { core: string; prog: string };
}

/** Makes the C function `fn` return `ret` at once. */
function cut(core: string, fn: string, ret: string): string {
  const re = new RegExp(`(static __always_inline [^\\n]*\\b${fn}\\([^\\n]*\\)\\n\\{\\n)`);
  if (!re.test(core)) throw new Error(`profile-sections: function ${fn} not found in bpf/gen/core.h`);
  return core.replace(re, `$1\treturn ${ret};\n`);
}

const VARIANTS: Variant[] = [
  { name: "unmodified", patch: (core, prog) => ({ core, prog }) },
  { name: "trace record lookup cut", patch: (core, prog) => ({ core: cut(core, "ciliate_trace_begin", "0"), prog }) },
  { name: "conntrack lookups cut (established)", patch: (core, prog) => ({ core: cut(core, "ciliate_ct_lookup", "CILIATE_CT_ESTABLISHED"), prog }) },
  { name: "policy lookups cut (allow)", patch: (core, prog) => ({ core: cut(core, "ciliate_policy_can_access", "0"), prog }) },
  { name: "ipcache lookup cut", patch: (core, prog) => ({ core: cut(core, "ciliate_ipcache_identity", "world_id"), prog }) },
  { name: "service lookups cut", patch: (core, prog) => ({ core: cut(core, "ciliate_lb_lookup_service", "0"), prog }) },
  { name: "metrics count cut", patch: (core, prog) => ({ core: core.replace(/(static __always_inline void ciliate_count\([^\n]*\)\n\{\n)/, "$1\treturn;\n"), prog }) },
];

function arg(name: string, dflt: number): number {
  const i = process.argv.indexOf(name);
  return i >= 0 ? Number(process.argv[i + 1]) : dflt;
}

function build(dir: string, v: Variant): string {
  const bpf = join(dir, "bpf");
  cpSync(repoPath("bpf"), bpf, { recursive: true });
  const corePath = join(bpf, "gen/core.h");
  const progPath = join(bpf, "programs/from_endpoint.bpf.c");
  const out = v.patch(readFileSync(corePath, "utf8"), readFileSync(progPath, "utf8"));
  writeFileSync(corePath, out.core);
  writeFileSync(progPath, out.prog);
  const obj = join(dir, "ciliate.bpf.o");
  execFileSync("clang", ["-O2", "-g", "-target", "bpf", "-Wall", "-I", bpf, "-I/usr/include/x86_64-linux-gnu", "-c", join(bpf, "programs/ciliate.bpf.c"), "-o", obj], { stdio: "pipe" });
  return obj;
}

const repeat = arg("--repeat", 200_000);
const rounds = arg("--rounds", 5);
const empty = loadEmptyProgram();
setMaglevBuilder(createWasmDatapath({ capacities: CAPACITIES }));
const median = (xs: number[]) => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)]!;
const rows: string[] = [];
for (const v of VARIANTS) {
  const dir = mkdtempSync(join(tmpdir(), "ciliate-profile-"));
  try {
    const dp = new KernelDatapath({ objectPath: build(dir, v), capacities: CAPACITIES });
    try {
      benchNode(dp);
      const fd = dp.programFd("fromEndpoint");
      // A variant without a trace record cannot report core's verdict; the tc return code stands in.
      const run = (f: Uint8Array) => {
        try {
          const r = dp.run("fromEndpoint", f, { now: NOW, srcIdentity: 0 });
          return { verdict: String(r.verdict), dropReason: String(r.dropReason) };
        } catch {
          return { verdict: `tc ${testRun(fd, { data: f, ctx: { mark: 0 } }).retval}`, dropReason: "?" };
        }
      };
      run(buildFrame(frames.synRemote()));
      const ack = buildFrame(frames.ackRemote());
      const denied = buildFrame(frames.denied());
      const r = run(ack);
      const d = run(denied);
      const est: number[] = [], den: number[] = [], floor: number[] = [];
      for (let i = 0; i < rounds; i++) {
        est.push(testRun(fd, { data: ack, ctx: { mark: 0 }, repeat }).duration);
        den.push(testRun(fd, { data: denied, ctx: { mark: 0 }, repeat }).duration);
        floor.push(testRun(empty.fd, { data: ack, ctx: { mark: 0 }, repeat }).duration);
      }
      rows.push(`| ${v.name} | ${median(est)} ns (verdict ${r.verdict}) | ${median(den)} ns (verdict ${d.verdict}, drop ${d.dropReason}) | ${median(floor)} ns |`);
    } finally {
      dp.close();
    }
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
}
empty.close();
console.log(`repeat ${repeat}, median of ${rounds} rounds\n`);
console.log("| variant | established | denied | empty program |\n|---|---:|---:|---:|");
for (const r of rows) console.log(r);
