/*
 * Where the kernel's per-packet cost goes: builds variants of the generated program with one part cut
 * out (a function's body replaced by a constant return, or one map call replaced by a constant), loads
 * each on the benchmark node and times the four packets of the datapath benchmark (bench/cases/datapath.ts)
 * with BPF_PROG_TEST_RUN, on the programs the agent attaches: the established and denied packets as
 * averages over one run of `--repeat` (same frame), the new SYN to the Maglev ClusterIP and the reply with
 * reverse NAT at repeat = 1 on `--fresh` frames each (as the benchmark times them: a SYN must find no
 * conntrack entry), each beside the empty program timed the same way. The difference to the unmodified
 * build is that part's cost; a cut that changes the packet's path says so in the verdict column. The
 * variants are for measuring only: they are built into a temporary directory and never used for
 * anything else.
 *
 *   npx tsx bench/profile-sections.ts [--repeat N] [--rounds N] [--fresh N] [--only name,name]
 */
import { execFileSync } from "node:child_process";
import { cpSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { KernelDatapath } from "../datapath/kernel-engine.ts";
import { repoPath } from "../host/paths.ts";
import { benchNode, NOW, setMaglevBuilder } from "./fixtures/node.ts";
import { createWasmDatapath } from "../sim/engines.ts";
import { kernelTimer, loadEmptyProgram } from "./fixtures/engines.ts";
import { CAPACITIES, CASES, prepareCases } from "./cases/datapath.ts";

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

/** Replaces `from` by `to` inside the body of the C function `fn` only (every occurrence). */
function within(core: string, fn: string, from: string, to: string): string {
  const start = core.search(new RegExp(`static __always_inline [^\\n]*\\b${fn}\\(`));
  if (start < 0) throw new Error(`profile-sections: function ${fn} not found in bpf/gen/core.h`);
  const end = core.indexOf("\n}\n", start);
  const body = core.slice(start, end);
  if (!body.includes(from)) throw new Error(`profile-sections: ${fn} has no ${from}`);
  return core.slice(0, start) + body.split(from).join(to) + core.slice(end);
}

const VARIANTS: Variant[] = [
  { name: "unmodified", patch: (core, prog) => ({ core, prog }) },
  { name: "trace record lookup cut", patch: (core, prog) => ({ core: cut(core, "ciliate_trace_begin", "0"), prog }) },
  { name: "conntrack lookups cut (answer ESTABLISHED)", patch: (core, prog) => ({ core: cut(core, "ciliate_ct_lookup_rev", "CILIATE_CT_ESTABLISHED"), prog }) },
  { name: "conntrack lookups cut (answer NEW)", patch: (core, prog) => ({ core: cut(core, "ciliate_ct_lookup_rev", "CILIATE_CT_NEW"), prog }) },
  { name: "conntrack create cut", patch: (core, prog) => ({ core: cut(core, "ciliate_ct_create", "0"), prog }) },
  { name: "service conntrack lookup cut", patch: (core, prog) => ({ core: within(core, "ciliate_lb_service_backend", "bpf_map_lookup_elem(&ciliate_ct_v1, tuple)", "0"), prog }) },
  { name: "service conntrack insert cut", patch: (core, prog) => ({ core: within(core, "ciliate_lb_service_backend", "bpf_map_update_elem(&ciliate_ct_v1, tuple, entry, CILIATE_BPF_ANY)", "0"), prog }) },
  { name: "Maglev lookup cut (backend 1)", patch: (core, prog) => ({ core: cut(core, "ciliate_maglev_lookup", "1"), prog }) },
  { name: "DNAT rewrite cut", patch: (core, prog) => ({ core: cut(core, "ciliate_lb_dnat", "0"), prog }) },
  { name: "reverse NAT rewrite cut", patch: (core, prog) => ({ core: cut(core, "ciliate_lb_rev_nat", "0"), prog }) },
  { name: "policy lookups cut (allow)", patch: (core, prog) => ({ core: cut(core, "ciliate_policy_can_access", "0"), prog }) },
  { name: "ipcache lookup cut", patch: (core, prog) => ({ core: cut(core, "ciliate_ipcache_identity", "world_id"), prog }) },
  { name: "service lookups cut (SYN then not a service)", patch: (core, prog) => ({ core: cut(core, "ciliate_lb_lookup_service", "0"), prog }) },
  { name: "metrics count cut", patch: (core, prog) => ({ core: core.replace(/(static __always_inline void ciliate_count\([^\n]*\)\n\{\n)/, "$1\treturn;\n"), prog }) },
  { name: "scratch zeroing cut", patch: (core, prog) => ({ core: within(core, "ciliate_scratch", "__builtin_memset(base + off, 0, size);", ""), prog }) },
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
  execFileSync("clang", ["-O2", "-g", "-target", "bpf", "-Wall", "-I", bpf, "-I/usr/include/x86_64-linux-gnu", "-c", join(bpf, "programs/test_harness.bpf.c"), "-o", obj], { stdio: "pipe" });
  return obj;
}

const repeat = arg("--repeat", 200_000);
const rounds = arg("--rounds", 5);
const fresh = arg("--fresh", 400);
const onlyArg = process.argv.indexOf("--only");
const only = onlyArg >= 0 ? new Set(process.argv[onlyArg + 1]!.split(",")) : undefined;
const empty = loadEmptyProgram();
setMaglevBuilder(createWasmDatapath({ capacities: CAPACITIES }));
const median = (xs: number[]) => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)]!;
const rows: string[] = [];
const ns = (x: number) => `${Math.round(x)} ns`;
for (const v of VARIANTS) {
  if (only && !only.has(v.name) && v.name !== "unmodified") continue;
  const dir = mkdtempSync(join(tmpdir(), "ciliate-profile-"));
  try {
    const dp = new KernelDatapath({ objectPath: build(dir, v), capacities: CAPACITIES, plainPrograms: true });
    try {
      benchNode(dp);
      const notes: string[] = [];
      // The benchmark's own frames and checks (a cut that changes a packet's path is reported as a note).
      let src: ReturnType<typeof prepareCases>;
      try {
        src = prepareCases(dp, { repeats: rounds, same: repeat, kernelRepeat: repeat, fresh }, notes);
      } catch (e) {
        rows.push(`| ${v.name} | ${CASES.map(() => "—").join(" | ")} | not measurable: ${(e as Error).message.split("\n")[0]} |`);
        continue;
      }
      const kt = kernelTimer((e) => dp.programFd(e, true));
      const et = kernelTimer(() => empty.fd);
      const cells: string[] = [];
      for (const c of CASES) {
        const s = src[c.key]!;
        const prog: number[] = [], floor: number[] = [];
        for (let i = 0; i < rounds; i++) {
          const fs = s.frames(i);
          const n = c.mode === "same" ? repeat : fs.length;
          prog.push(kt.time(c.entry, fs, c.mode, n, s.srcIdentity, NOW));
          // The floor with the same frames in the same mode (a fresh SYN frame is not consumed by it).
          floor.push(et.time(c.entry, fs, c.mode, n, s.srcIdentity, NOW));
        }
        cells.push(`${ns(median(prog))} / ${ns(median(floor))}`);
      }
      const verdicts = notes.length ? notes.map((n) => n.replace(/^kernel: /, "")).join("; ") : "all four on their intended path";
      rows.push(`| ${v.name} | ${cells.join(" | ")} | ${verdicts} |`);
    } finally {
      dp.close();
    }
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
}
empty.close();
console.log(`same-frame rows: one run of repeat ${repeat}; fresh-frame rows: ${fresh} frames at repeat 1, average; median of ${rounds} rounds\n`);
console.log(`| variant | ${CASES.map((c) => `${c.key} (program / empty)`).join(" | ")} | path check |\n|---|${CASES.map(() => "---:").join("|")}|---|`);
for (const r of rows) console.log(r);
