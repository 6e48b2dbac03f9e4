/*
 * The test API server (tests/agent/fake-apiserver.cjs) as a child process on a free local port, for the
 * agent's Kubernetes-API tests that need no network namespace: its state file, a kubeconfig for it, a
 * list of a collection, and a polling wait.
 */
import { KubeConfig } from "@kubernetes/client-node";
import { spawn, type ChildProcess } from "node:child_process";
import { renameSync, writeFileSync } from "node:fs";
import { createServer } from "node:net";
import { join } from "node:path";
import { ROOT } from "./e2e-helpers.ts";

export async function freePort(): Promise<number> {
  const s = createServer();
  await new Promise<void>((r) => s.listen(0, "127.0.0.1", r));
  const p = (s.address() as { port: number }).port;
  await new Promise((r) => s.close(r));
  return p;
}

/** Polls `cond` every 50 ms until it holds; throws with `why()` after `ms`. */
export async function until(cond: () => boolean | Promise<boolean>, ms: number, why: () => string): Promise<void> {
  const end = Date.now() + ms;
  for (;;) {
    if (await cond()) return;
    if (Date.now() > end) throw new Error(`timed out: ${why()}`);
    await new Promise((r) => setTimeout(r, 50));
  }
}

export class FakeApi {
  port = 0;
  private child?: ChildProcess;

  constructor(readonly dir: string) {}

  get stateFile(): string {
    return join(this.dir, "apiserver.json");
  }

  /** STATE.json, atomically: {"writable": [paths], "<path>": [objects]}. */
  writeState(state: Record<string, unknown>): void {
    writeFileSync(`${this.stateFile}.tmp`, JSON.stringify(state));
    renameSync(`${this.stateFile}.tmp`, this.stateFile);
  }

  async start(probePath: string): Promise<void> {
    if (!this.port) this.port = await freePort();
    this.child = spawn(process.execPath, [join(ROOT, "tests/agent/fake-apiserver.cjs"), this.stateFile, String(this.port)], { stdio: "ignore" });
    await until(async () => (await fetch(`http://127.0.0.1:${this.port}${probePath}`).catch(() => undefined))?.status === 200, 10_000, () => "API server did not start");
  }

  async stop(): Promise<void> {
    const a = this.child;
    if (!a || a.exitCode !== null || a.signalCode !== null) return;
    const exited = new Promise((r) => a.once("exit", r));
    a.kill("SIGKILL");
    await exited;
  }

  kubeConfig(): KubeConfig {
    const kc = new KubeConfig();
    kc.loadFromOptions({ clusters: [{ name: "c", server: `http://127.0.0.1:${this.port}`, skipTLSVerify: true }], users: [{ name: "u", token: "t" }], contexts: [{ name: "x", cluster: "c", user: "u" }], currentContext: "x" });
    return kc;
  }

  async list<T>(path: string): Promise<T[]> {
    return ((await (await fetch(`http://127.0.0.1:${this.port}${path}`)).json()) as { items: T[] }).items;
  }
}
