// Builds the kernel datapath: regenerates bpf/gen/ from core/ when core/ or codegen/ changed (codegen in
// strict mode: a construct outside the datapath subset fails the build with file:line:col), then compiles
// bpf/programs/*.bpf.c with clang into build/bpf/*.o:
//   build/bpf/ciliate.bpf.o        from_endpoint + to_endpoint + from_network, one set of maps (what the
//                                  agent and the kernel Datapath engine load)
//   build/bpf/<program>.bpf.o      each program alone
//   build/bpf/test_harness.bpf.o   ciliate.bpf.o plus the BPF_PROG_TEST_RUN harness around the tunnel
//                                  key (the kernel Datapath engine; never attached)
// Usage: node scripts/build-bpf.mjs [--force]   (npm run build:bpf). CILIATE_CODEGEN_STRICT=0 builds with the
// lenient fallback header while core/pipeline.ts cannot be translated yet (programs then drop everything).
import { execFileSync } from "node:child_process";
import { existsSync, mkdirSync, readdirSync, statSync, writeFileSync } from "node:fs";
import { dirname, join, resolve } from "node:path";
import { fileURLToPath } from "node:url";

const root = resolve(dirname(fileURLToPath(import.meta.url)), "..");
const force = process.argv.includes("--force");
const out = join(root, "build/bpf");
const CFLAGS = ["-O2", "-g", "-target", "bpf", "-Wall", "-Werror", "-I", join(root, "bpf"), "-I/usr/include/x86_64-linux-gnu"];

/** Newest modification time of the files under `dir` whose names match `re`. */
function newest(dir, re) {
  let t = 0;
  if (!existsSync(dir)) return t;
  for (const e of readdirSync(dir, { withFileTypes: true })) {
    const p = join(dir, e.name);
    if (e.isDirectory()) t = Math.max(t, newest(p, re));
    else if (re.test(e.name)) t = Math.max(t, statSync(p).mtimeMs);
  }
  return t;
}

const mtime = (p) => (existsSync(p) ? statSync(p).mtimeMs : 0);

// Without clang there is no kernel build: the WASM/JS engines still work. CI must have it.
try {
  execFileSync("clang", ["--version"], { stdio: "ignore" });
} catch {
  const msg = "build-bpf: clang is not installed; skipping the kernel build (apt-get install clang llvm libbpf-dev)";
  if (process.env.CI === "true" || process.env.CI === "1") {
    console.error(`${msg} — CI needs it`);
    process.exit(1);
  }
  console.warn(msg);
  process.exit(0);
}

mkdirSync(out, { recursive: true });
const stamp = join(out, ".gen-stamp");
const sources = Math.max(newest(join(root, "core"), /\.ts$/), newest(join(root, "codegen"), /\.ts$/));
if (force || sources > mtime(stamp) || !existsSync(join(root, "bpf/gen/core.h"))) {
  console.log("build-bpf: core/ changed, regenerating bpf/gen/ (npm run gen, strict)");
  try {
    execFileSync(process.execPath, ["--import", "tsx", join(root, "codegen/main.ts")], {
      cwd: root,
      stdio: "inherit",
      env: { ...process.env, CILIATE_CODEGEN_STRICT: process.env.CILIATE_CODEGEN_STRICT ?? "1" },
    });
  } catch (e) {
    console.error("build-bpf: code generation failed (message above)");
    process.exit(e.status ?? 1);
  }
  writeFileSync(stamp, `${new Date().toISOString()}\n`);
}

const inputs = newest(join(root, "bpf"), /\.(h|c)$/);
for (const prog of ["ciliate", "from_endpoint", "to_endpoint", "from_network", "from_network_xdp", "from_overlay", "to_network", "from_host", "test_harness"]) {
  const src = join(root, "bpf/programs", `${prog}.bpf.c`);
  const obj = join(out, `${prog}.bpf.o`);
  if (!force && mtime(obj) > inputs) continue;
  console.log(`build-bpf: clang ${prog}.bpf.c -> build/bpf/${prog}.bpf.o`);
  try {
    execFileSync("clang", [...CFLAGS, "-c", src, "-o", obj], { cwd: root, stdio: "inherit" });
  } catch (e) {
    console.error(`build-bpf: clang failed for bpf/programs/${prog}.bpf.c`);
    process.exit(e.status ?? 1);
  }
}
