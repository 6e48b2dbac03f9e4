/*
 * Preflight: which kernel-side prerequisites are present on this machine — privileges (root or CAP_BPF +
 * CAP_SYS_ADMIN, CAP_NET_ADMIN for tc/XDP), libbpf.so.1, clang (to build BPF objects), a mounted bpffs (to
 * pin maps) and kernel BTF (/sys/kernel/btf/vmlinux). `ciliate` prints it for `--engine kernel`, and kernel
 * test suites use kernelSuite(): outside CI a missing prerequisite skips the suite with a printed reason;
 * with CI=true it fails (throws), because CI must run the kernel suites, never skip them.
 */
import { spawnSync } from "node:child_process";
import { existsSync, mkdirSync, readFileSync, statfsSync } from "node:fs";
import { BpfError, BpfErrorCode } from "./errors.ts";
import { libbpfAvailable } from "./libbpf.ts";

export const BPFFS_PATH = "/sys/fs/bpf";
const BPF_FS_MAGIC = 0xcafe4a11;
const CAP_NET_ADMIN = 12n;
const CAP_SYS_ADMIN = 21n;
const CAP_BPF = 39n;

export type Prerequisite = "root" | "libbpf" | "clang" | "bpffs" | "btf" | "iproute2";

export interface PrerequisiteStatus {
  name: Prerequisite;
  ok: boolean;
  detail: string;
  /** What to do when it is missing. */
  hint?: string;
}

export interface PreflightReport {
  ok: boolean;
  checks: PrerequisiteStatus[];
  /** One line naming what is missing ("" when ok). */
  missing: string;
}

function effectiveCaps(): bigint {
  try {
    const m = /^CapEff:\s*([0-9a-f]+)$/m.exec(readFileSync("/proc/self/status", "utf8"));
    return m ? BigInt(`0x${m[1]}`) : 0n;
  } catch {
    return 0n;
  }
}

function has(caps: bigint, cap: bigint): boolean {
  return ((caps >> cap) & 1n) === 1n;
}

/** True when bpffs is mounted at `path`. */
export function bpffsMounted(path = BPFFS_PATH): boolean {
  try {
    return statfsSync(path).type === BPF_FS_MAGIC;
  } catch {
    return false;
  }
}

/**
 * Mounts bpffs at /sys/fs/bpf when it is not mounted (needs root). Returns true when it is mounted
 * afterwards; never throws.
 */
export function ensureBpffs(path = BPFFS_PATH): boolean {
  if (bpffsMounted(path)) return true;
  try {
    mkdirSync(path, { recursive: true });
  } catch {
    return false;
  }
  spawnSync("mount", ["-t", "bpf", "bpf", path], { stdio: "ignore" });
  return bpffsMounted(path);
}

function tool(cmd: string, args: string[]): string | undefined {
  const r = spawnSync(cmd, args, { encoding: "utf8", timeout: 10_000 });
  return r.status === 0 ? (r.stdout || r.stderr).split("\n")[0] : undefined;
}

const ALL: Prerequisite[] = ["root", "libbpf", "clang", "bpffs", "btf", "iproute2"];

/** Checks the given prerequisites (default: all). Mounts bpffs first when running as root. */
export function preflight(needs: Prerequisite[] = ALL): PreflightReport {
  const checks: PrerequisiteStatus[] = [];
  const caps = effectiveCaps();
  const isRoot = process.getuid?.() === 0;
  for (const name of needs) {
    switch (name) {
      case "root": {
        const bpf = has(caps, CAP_BPF) || has(caps, CAP_SYS_ADMIN);
        const ok = bpf && has(caps, CAP_SYS_ADMIN) && has(caps, CAP_NET_ADMIN);
        checks.push({
          name,
          ok,
          detail: `uid ${process.getuid?.() ?? "?"}, CAP_BPF ${has(caps, CAP_BPF)}, CAP_SYS_ADMIN ${has(caps, CAP_SYS_ADMIN)}, CAP_NET_ADMIN ${has(caps, CAP_NET_ADMIN)}`,
          hint: "run as root (sudo) or grant CAP_BPF, CAP_SYS_ADMIN and CAP_NET_ADMIN",
        });
        break;
      }
      case "libbpf": {
        const ok = libbpfAvailable();
        checks.push({ name, ok, detail: ok ? "libbpf.so.1 loads" : "libbpf.so.1 not found", hint: "apt-get install libbpf1 (or libbpf-dev)" });
        break;
      }
      case "clang": {
        const v = tool("clang", ["--version"]);
        checks.push({ name, ok: !!v, detail: v ?? "clang not on PATH", hint: "apt-get install clang llvm" });
        break;
      }
      case "bpffs": {
        const ok = isRoot ? ensureBpffs() : bpffsMounted();
        checks.push({ name, ok, detail: ok ? `bpffs mounted at ${BPFFS_PATH}` : `no bpffs at ${BPFFS_PATH}`, hint: "mount -t bpf bpf /sys/fs/bpf" });
        break;
      }
      case "btf": {
        const ok = existsSync("/sys/kernel/btf/vmlinux");
        checks.push({ name, ok, detail: ok ? "/sys/kernel/btf/vmlinux present" : "no kernel BTF", hint: "use a kernel built with CONFIG_DEBUG_INFO_BTF=y" });
        break;
      }
      case "iproute2": {
        const v = tool("ip", ["-V"]);
        checks.push({ name, ok: !!v, detail: v ?? "ip not on PATH", hint: "apt-get install iproute2" });
        break;
      }
    }
  }
  const bad = checks.filter((c) => !c.ok);
  return { ok: bad.length === 0, checks, missing: bad.map((c) => `${c.name} (${c.detail}; ${c.hint})`).join("; ") };
}

export interface KernelSuiteStatus {
  skip: boolean;
  reason?: string;
}

/**
 * For kernel test files: `const k = kernelSuite("libbpf"); describe.skipIf(k.skip)(…)`. Returns
 * {skip: false} when every prerequisite is present; otherwise, outside CI, prints the reason and returns
 * {skip: true, reason}; with CI=true throws BpfError BPF_PREFLIGHT_FAILED so the suite fails.
 */
export function kernelSuite(name: string, needs: Prerequisite[] = ALL): KernelSuiteStatus {
  const report = preflight(needs);
  if (report.ok) return { skip: false };
  const reason = `kernel suite "${name}" needs: ${report.missing}`;
  if (process.env.CI === "true" || process.env.CI === "1") {
    throw new BpfError(BpfErrorCode.PreflightFailed, `${reason} — CI must run kernel suites, not skip them`, "run CI as root with .ci/run");
  }
  console.warn(`[skip] ${reason}`);
  return { skip: true, reason };
}
