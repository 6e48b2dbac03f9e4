/*
 * Helpers shared by the agent's end-to-end tests (e2e.test.ts, e2e-overflow.test.ts): commands with a
 * timeout, atomic manifest writes, bounded traffic with tests/agent/pod-tool.cjs inside a namespace, CNI
 * calls through the real `ciliate cni`, starting and stopping `ciliate agent` in a node namespace, and
 * scraping its metrics. Nothing here holds state: each test file keeps its own names, pins and processes.
 */
import { spawn, execFileSync, type ChildProcess } from "node:child_process";
import { renameSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { fileURLToPath } from "node:url";
import { expect } from "vitest";
import { callApi } from "../../agent/api.ts";

export const ROOT = fileURLToPath(new URL("../..", import.meta.url));
export const BIN = join(ROOT, "bin/ciliate.js");
export const TOOL = join(ROOT, "tests/agent/pod-tool.cjs");

/** Runs a command (20 s at most) and returns its stdout; throws with its stderr unless `allowFail`. */
export function sh(cmd: string, args: string[], allowFail = false): string {
  try {
    return execFileSync(cmd, args, { encoding: "utf8", stdio: ["ignore", "pipe", "pipe"], timeout: 20_000 });
  } catch (e) {
    if (allowFail) return "";
    throw new Error(`${cmd} ${args.join(" ")}: ${(e as { stderr?: string }).stderr ?? (e as Error).message}`);
  }
}

/** Manifest writes are atomic (write, then rename), as a careful operator's would be. */
export function writeFileAtomic(path: string, text: string): void {
  writeFileSync(`${path}.tmp`, text);
  renameSync(`${path}.tmp`, path);
}

/** Runs pod-tool in a namespace and parses its JSON line. */
export function tool(ns: string, ...args: (string | number)[]): Record<string, unknown> {
  const out = sh("ip", ["netns", "exec", ns, process.execPath, TOOL, ...args.map(String)]);
  return JSON.parse(out.trim().split("\n").pop()!);
}

/** pod-tool in the background (killed after 60 s). */
export function toolAsync(ns: string, ...args: (string | number)[]): Promise<Record<string, unknown>> {
  return new Promise((resolve, reject) => {
    const p = spawn("ip", ["netns", "exec", ns, process.execPath, TOOL, ...args.map(String)], { stdio: ["ignore", "pipe", "pipe"] });
    let out = "";
    p.stdout.on("data", (d) => (out += d));
    const t = setTimeout(() => p.kill("SIGKILL"), 60_000);
    p.on("exit", () => {
      clearTimeout(t);
      try {
        resolve(JSON.parse(out.trim().split("\n").pop()!));
      } catch {
        reject(new Error(`pod-tool ${args.join(" ")} printed ${JSON.stringify(out)}`));
      }
    });
  });
}

/** pod-tool's server in a namespace: TCP on `ports` (default 8080) and UDP 5353 answer `name`, for `ms`. */
export function serve(ns: string, name: string, ms: number, ports?: number[]): ChildProcess {
  const args = [TOOL, "serve", name, String(ms), ...(ports ? [ports.join(",")] : [])];
  return spawn("ip", ["netns", "exec", ns, process.execPath, ...args], { stdio: "ignore" });
}

/** `ciliate cni` with a CNI environment; the parsed result or error and the exit code. */
export function cni(
  socket: string,
  command: string,
  c: { containerId: string; netns: string; pod: string; namespace?: string },
  extra: Record<string, string> = {},
): { code: number; out: Record<string, unknown> } {
  const conf = JSON.stringify({ cniVersion: "1.0.0", name: "ciliate", type: "ciliate-cni", socket });
  const env = {
    ...process.env,
    CNI_COMMAND: command,
    CNI_CONTAINERID: c.containerId,
    CNI_NETNS: c.netns,
    CNI_IFNAME: "eth0",
    CNI_ARGS: `IgnoreUnknown=1;K8S_POD_NAMESPACE=${c.namespace ?? "default"};K8S_POD_NAME=${c.pod}`,
    CNI_PATH: "/opt/cni/bin",
    ...extra,
  };
  try {
    const out = execFileSync(process.execPath, [BIN, "cni"], { input: conf, env, encoding: "utf8", timeout: 60_000 });
    return { code: 0, out: out.trim() ? JSON.parse(out) : {} };
  } catch (e) {
    const err = e as { status: number; stdout: string };
    return { code: err.status, out: err.stdout?.trim() ? JSON.parse(err.stdout) : {} };
  }
}

/**
 * Starts `ciliate agent <args>` inside the node namespace (nsenter keeps this process's bpffs) and waits
 * until its API answers (30 s at most). Its stdout and stderr go to `onOutput`.
 */
export async function startAgent(nodeNs: string, socket: string, args: string[], onOutput: (s: string) => void): Promise<ChildProcess> {
  let log = "";
  const agent = spawn("nsenter", [`--net=/var/run/netns/${nodeNs}`, process.execPath, BIN, "agent", ...args], { stdio: ["ignore", "pipe", "pipe"] });
  const out = (d: Buffer) => {
    log += d;
    onOutput(String(d));
  };
  agent.stdout!.on("data", out);
  agent.stderr!.on("data", out);
  const deadline = Date.now() + 30_000;
  while (Date.now() < deadline) {
    if (agent.exitCode !== null) throw new Error(`agent exited ${agent.exitCode}: ${log}`);
    try {
      const r = await callApi(socket, "GET", "/v1/healthz", undefined, 1000);
      if (r.status === 200) return agent;
    } catch {
      // not up yet
    }
    await new Promise((r) => setTimeout(r, 200));
  }
  agent.kill("SIGKILL");
  throw new Error(`agent did not come up: ${log}`);
}

/** SIGTERM, then SIGKILL after 10 s; resolves when the process has exited. */
export async function stopProcess(p: ChildProcess | undefined): Promise<void> {
  if (!p || p.exitCode !== null || p.signalCode !== null) return;
  await new Promise<void>((resolve) => {
    const t = setTimeout(() => p.kill("SIGKILL"), 10_000);
    p.once("exit", () => {
      clearTimeout(t);
      resolve();
    });
    p.kill("SIGTERM");
  });
}

/** The agent's /metrics, fetched from inside the node namespace. */
export function scrapeMetrics(nodeNs: string, addr: string): string {
  return sh("ip", ["netns", "exec", nodeNs, process.execPath, "-e", `fetch("http://${addr}/metrics").then(r=>r.text()).then(t=>process.stdout.write(t))`]);
}

/** Waits until `fn` holds (polling every 200 ms), then asserts it. */
export async function eventually(fn: () => boolean, ms = 10_000, message?: () => string): Promise<void> {
  const end = Date.now() + ms;
  while (Date.now() < end) {
    if (fn()) return;
    await new Promise((r) => setTimeout(r, 200));
  }
  expect(fn(), message?.()).toBe(true);
}
