/*
 * Helpers shared by the agent's end-to-end tests (e2e*.test.ts, chaos.test.ts): commands with a
 * timeout, atomic manifest writes, bounded traffic with tests/agent/pod-tool.cjs inside a namespace, CNI
 * calls through the real `ciliate cni`, starting and stopping `ciliate agent` in a node namespace, and
 * scraping its metrics and flows. E2eNode bundles the usual set-up of one suite — a node namespace, pod
 * namespaces joined by CNI, a bpffs pin root, a state directory, the agent — under names unique to the
 * process, and removes all of it in tearDown.
 */
import { spawn, spawnSync, execFileSync, type ChildProcess } from "node:child_process";
import { mkdirSync, mkdtempSync, renameSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { fileURLToPath } from "node:url";
import { expect } from "vitest";
import { callApi } from "../../agent/api.ts";
import { removePinRoot } from "../../datapath/index.ts";

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
  return toolWithin(60_000, ns, ...args);
}

/** pod-tool in the background, killed after `limitMs` (for runs longer than toolAsync's minute). */
export function toolWithin(limitMs: number, ns: string, ...args: (string | number)[]): Promise<Record<string, unknown>> {
  return new Promise((resolve, reject) => {
    const p = spawn("ip", ["netns", "exec", ns, process.execPath, TOOL, ...args.map(String)], { stdio: ["ignore", "pipe", "pipe"] });
    let out = "";
    p.stdout.on("data", (d) => (out += d));
    const t = setTimeout(() => p.kill("SIGKILL"), limitMs);
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

type CniCall = { containerId: string; netns: string; pod: string; namespace?: string };

/** `ciliate cni` with a CNI environment; the parsed result or error and the exit code. */
export function cni(socket: string, command: string, c: CniCall, extra: Record<string, string> = {}): { code: number; out: Record<string, unknown> } {
  const { conf, env } = cniInput(socket, command, c, extra);
  try {
    const out = execFileSync(process.execPath, [BIN, "cni"], { input: conf, env, encoding: "utf8", timeout: 60_000 });
    return { code: 0, out: out.trim() ? JSON.parse(out) : {} };
  } catch (e) {
    const err = e as { status: number; stdout: string };
    return { code: err.status, out: err.stdout?.trim() ? JSON.parse(err.stdout) : {} };
  }
}

/** cni() without blocking this process, so several CNI calls (on several nodes) can run at once. */
export function cniAsync(socket: string, command: string, c: CniCall): Promise<{ code: number; out: Record<string, unknown> }> {
  const { conf, env } = cniInput(socket, command, c, {});
  return new Promise((resolve) => {
    const p = spawn(process.execPath, [BIN, "cni"], { env, stdio: ["pipe", "pipe", "ignore"] });
    let out = "";
    p.stdout.on("data", (d) => (out += d));
    const t = setTimeout(() => p.kill("SIGKILL"), 60_000);
    p.on("exit", (code) => {
      clearTimeout(t);
      resolve({ code: code ?? -1, out: out.trim() ? JSON.parse(out) : {} });
    });
    p.stdin.end(conf);
  });
}

function cniInput(socket: string, command: string, c: CniCall, extra: Record<string, string>) {
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
  return { conf, env };
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

/**
 * The node's verdict for every case against the simulator's: writes the manifests and the Expectations
 * (one per case, named as in `node`, in the order the node ran them) into `dir`/scenario, runs `ciliate
 * check` on them and asserts each Expectation's actual verdict is the node's, in that order.
 */
export function expectCheckAgrees(dir: string, files: Record<string, string>, expectations: string, node: Map<string, "allowed" | "denied">): void {
  const scenario = join(dir, "scenario");
  mkdirSync(scenario, { recursive: true });
  for (const [name, text] of Object.entries({ ...files, "expectations.yaml": expectations })) writeFileSync(join(scenario, name), text);
  const r = spawnSync(process.execPath, [BIN, "check", "-f", scenario, "-o", "json"], { encoding: "utf8", timeout: 60_000 });
  const results = (JSON.parse(r.stdout) as { results: { name: string; actual: string; passed: boolean; reason: string }[] }).results;
  expect(results.map((x) => x.name)).toEqual([...node.keys()]);
  for (const x of results) expect(`${x.name}: ${x.actual}`, x.reason).toBe(`${x.name}: ${node.get(x.name)}`);
  expect(r.status, r.stdout).toBe(0);
}

/** A Pod manifest (labels `app: <name>` unless given), for the agent's -f directory. */
export function podYaml(name: string, namespace = "default", labels = `app: ${name}`): string {
  return `apiVersion: v1
kind: Pod
metadata: {name: ${name}, namespace: ${namespace}, labels: {${labels}}}
spec: {containers: [{name: c, image: x}]}
`;
}

export interface E2eNodeOptions {
  /** Names start with it: namespaces `<prefix>-<tag>-<name>`, the pin root, the state directory. */
  prefix: string;
  nodeIp: string;
  podCidr: string;
  /** The agent's --metrics-addr inside the node namespace (omitted: no metrics endpoint). */
  metricsAddr?: string;
  /** Pods: a namespace each, joined to the node by `ciliate cni` in addPods(). */
  pods: { name: string; namespace?: string }[];
  /** More namespaces that are not pods (an external client, …). */
  others?: string[];
  /** Flags added to every agent start. */
  agentFlags?: string[];
}

/** One node of network namespaces with `ciliate agent` (see the file's opening comment). */
export class E2eNode {
  readonly tag = `${process.pid % 10000}${Math.floor(Math.random() * 1000)}`;
  readonly pin: string;
  readonly nodeNs: string;
  dir = "";
  manifests = "";
  socket = "";
  agent: ChildProcess | undefined;
  /** Everything every agent of this node printed. */
  log = "";
  readonly podIp = new Map<string, string>();
  /** Servers and other processes to kill in tearDown. */
  readonly children: ChildProcess[] = [];

  constructor(readonly o: E2eNodeOptions) {
    this.pin = `/sys/fs/bpf/ciliate-test-${o.prefix}-${process.pid}-${Math.floor(Math.random() * 1e6)}`;
    this.nodeNs = this.ns("node");
  }

  /** The namespace of pod (or other) `name`. */
  ns(name: string): string {
    return `${this.o.prefix}-${this.tag}-${name}`;
  }

  private allNamespaces(): string[] {
    return ["node", ...this.o.pods.map((p) => p.name), ...(this.o.others ?? [])].map((n) => this.ns(n));
  }

  /** The state directory with `files` as manifests, and every namespace (the node's loopback up). */
  setUp(files: Record<string, string>): void {
    this.dir = mkdtempSync(join(tmpdir(), `ciliate-${this.o.prefix}-`));
    this.manifests = join(this.dir, "manifests");
    mkdirSync(this.manifests);
    this.socket = join(this.dir, "state", "agent.sock");
    for (const [file, text] of Object.entries(files)) this.write(file, text);
    for (const n of this.allNamespaces()) sh("ip", ["netns", "add", n]);
    sh("ip", ["-n", this.nodeNs, "link", "set", "lo", "up"]);
  }

  /** Writes a manifest atomically. */
  write(file: string, text: string): void {
    writeFileAtomic(join(this.manifests, file), text);
  }

  agentArgs(extra: string[] = []): string[] {
    return ["-f", this.manifests, "--node-name", "node-1", "--node-ip", this.o.nodeIp, "--pod-cidr", this.o.podCidr, "--bpffs", this.pin, "--state-dir", join(this.dir, "state"),
      "--socket", this.socket, ...(this.o.metricsAddr ? ["--metrics-addr", this.o.metricsAddr] : []), "--resync-interval", "100", ...(this.o.agentFlags ?? []), ...extra];
  }

  /** Starts the agent (replacing a previous, exited one) and waits for its API. */
  async startAgent(extra: string[] = []): Promise<ChildProcess> {
    this.agent = await startAgent(this.nodeNs, this.socket, this.agentArgs(extra), (d) => (this.log += d));
    return this.agent;
  }

  /** SIGKILL: the agent gets no chance to clean up. Resolves once it has exited. */
  async killAgent(): Promise<void> {
    const p = this.agent;
    if (!p || p.exitCode !== null || p.signalCode !== null) return;
    await new Promise<void>((resolve) => {
      p.once("exit", () => resolve());
      p.kill("SIGKILL");
    });
  }

  /** CNI ADD for every pod; records their addresses. */
  addPods(): void {
    for (const p of this.o.pods) {
      const r = cni(this.socket, "ADD", { containerId: `${this.o.prefix}-${this.tag}-${p.name}`, netns: `/var/run/netns/${this.ns(p.name)}`, pod: p.name, namespace: p.namespace });
      expect(r.code, JSON.stringify(r.out)).toBe(0);
      this.podIp.set(p.name, (r.out.ips as { address: string }[])[0]!.address.split("/")[0]!);
    }
  }

  metrics(): string {
    return scrapeMetrics(this.nodeNs, this.o.metricsAddr!);
  }

  /** `ciliate observe … -o json` (pass the filters): the lines, each {flow, node_name, time, ciliate?}. */
  observeLines(...args: string[]): { flow: Record<string, unknown>; ciliate?: Record<string, unknown> }[] {
    return execFileSync(process.execPath, [BIN, "observe", "--socket", this.socket, ...args, "-o", "json"], { encoding: "utf8", timeout: 30_000 })
      .trim()
      .split("\n")
      .filter(Boolean)
      .map((l) => JSON.parse(l) as { flow: Record<string, unknown>; ciliate?: Record<string, unknown> });
  }

  /** `ciliate observe … -o json` (pass the filters): the flows. */
  observe(...args: string[]): Record<string, unknown>[] {
    return this.observeLines(...args).map((l) => l.flow);
  }

  /** Kills the children, stops the agent, removes namespaces, pins and state (CILIATE_E2E_KEEP=1 keeps them). */
  async tearDown(): Promise<void> {
    if (process.env.CILIATE_E2E_KEEP === "1") {
      console.log(`CILIATE_E2E_KEEP=1: left namespaces ${this.ns("*")}, pins ${this.pin}, state ${this.dir}\n${this.log}`);
      return;
    }
    try {
      for (const c of this.children) c.kill("SIGKILL");
      await stopProcess(this.agent);
    } finally {
      for (const n of this.allNamespaces()) sh("ip", ["netns", "del", n], true);
      removePinRoot(this.pin);
      if (this.dir) rmSync(this.dir, { recursive: true, force: true });
      if (process.env.CILIATE_E2E_LOG) console.log(this.log);
    }
  }
}
