// A real etcd for tests: Debian's etcd-server on loopback, with a temporary data directory and ports
// nobody else on the machine uses, started, stopped and restarted by the test (same data, same ports).
// Optionally inside a network namespace (its loopback), for agents that run in one.
import { spawn, spawnSync, type ChildProcess } from "node:child_process";
import { mkdtempSync, rmSync } from "node:fs";
import { createServer } from "node:net";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { fileURLToPath } from "node:url";

const DUMP = fileURLToPath(new URL("./etcd-dump.mjs", import.meta.url));

export function hasEtcd(): boolean {
  return spawnSync("etcd", ["--version"], { stdio: "ignore" }).status === 0;
}

/** A TCP port free on 127.0.0.1 right now (the kernel picks it). */
export function freePort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const s = createServer();
    s.once("error", reject);
    s.listen(0, "127.0.0.1", () => {
      const port = (s.address() as { port: number }).port;
      s.close(() => resolve(port));
    });
  });
}

export class EtcdServer {
  private proc?: ChildProcess;
  readonly dataDir = mkdtempSync(join(tmpdir(), `ciliate-etcd-${process.pid}-`));
  log = "";

  private constructor(
    readonly clientPort: number,
    readonly peerPort: number,
    readonly netns?: string,
    readonly host = "127.0.0.1",
  ) {}

  /** In `netns` (default: this one) on `host` (default loopback; an address of that namespace). */
  static async start(netns?: string, host?: string): Promise<EtcdServer> {
    const e = new EtcdServer(await freePort(), await freePort(), netns, host);
    await e.resume();
    return e;
  }

  get endpoint(): string {
    return `http://${this.host}:${this.clientPort}`;
  }

  /** Starts etcd (again) on the same data directory and ports; resolves when it answers /health. */
  async resume(): Promise<void> {
    const name = `ciliate-test-${process.pid}`;
    const argv = [
        `--name=${name}`,
        `--data-dir=${this.dataDir}`,
        `--listen-client-urls=${this.endpoint}`,
        `--advertise-client-urls=${this.endpoint}`,
        `--listen-peer-urls=http://127.0.0.1:${this.peerPort}`,
        `--initial-advertise-peer-urls=http://127.0.0.1:${this.peerPort}`,
        `--initial-cluster=${name}=http://127.0.0.1:${this.peerPort}`,
        "--initial-cluster-state=new",
        "--log-level=error",
    ];
    this.proc = this.netns ? spawn("ip", ["netns", "exec", this.netns, "etcd", ...argv], { stdio: ["ignore", "ignore", "pipe"] }) : spawn("etcd", argv, { stdio: ["ignore", "ignore", "pipe"] });
    this.proc.stderr!.on("data", (b: Buffer) => (this.log = (this.log + b.toString()).slice(-4000)));
    const deadline = Date.now() + 15000;
    while (Date.now() < deadline) {
      if (this.proc.exitCode !== null) throw new Error(`etcd exited ${this.proc.exitCode}: ${this.log}`);
      if (this.netns) {
        const probe = `fetch("${this.endpoint}/health").then((r) => r.json()).then((j) => process.exit(j.health === "true" ? 0 : 1), () => process.exit(1))`;
        if (spawnSync("ip", ["netns", "exec", this.netns, process.execPath, "-e", probe], { stdio: "ignore" }).status === 0) return;
      } else {
        try {
          const r = await fetch(`${this.endpoint}/health`);
          if (r.ok && ((await r.json()) as { health: string }).health === "true") return;
        } catch {
          /* not up yet */
        }
      }
      await new Promise((r) => setTimeout(r, 100));
    }
    throw new Error(`etcd did not become healthy: ${this.log}`);
  }

  /** Stops etcd (SIGTERM) and waits for it to exit; the data stays. */
  async stop(): Promise<void> {
    const p = this.proc;
    if (!p || p.exitCode !== null) return;
    await new Promise<void>((resolve) => {
      p.once("exit", () => resolve());
      p.kill("SIGTERM");
    });
    this.proc = undefined;
  }

  /** Every key under `prefix` → its value, read with the etcd3 client (inside the namespace when there is one). */
  getPrefix(prefix: string): Record<string, string> {
    const args = [DUMP, this.endpoint, prefix];
    const r = this.netns ? spawnSync("ip", ["netns", "exec", this.netns, process.execPath, ...args], { encoding: "utf8" }) : spawnSync(process.execPath, args, { encoding: "utf8" });
    if (r.status !== 0) throw new Error(`reading etcd: ${r.stderr}`);
    return JSON.parse(r.stdout) as Record<string, string>;
  }

  async destroy(): Promise<void> {
    await this.stop();
    rmSync(this.dataDir, { recursive: true, force: true });
  }
}
