// Identity allocation in kvstore mode against a real etcd (Debian's etcd-server, started by the test on
// loopback): two allocators in separate processes as two nodes — racing for the same label sets, syncing
// through the watch, one killed with SIGKILL (its lease expires, its references go, gc releases what
// nobody uses), graceful restarts keeping numbers, and etcd stopped and restarted under them.
import { spawn, type ChildProcess } from "node:child_process";
import { createInterface } from "node:readline";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { KvstoreAllocator } from "../../agent/identity-kvstore.ts";
import { clusterIdOf } from "../../host/identity-scopes.ts";
import { EtcdServer, hasEtcd } from "../helpers/etcd.ts";
import { skipUnless } from "../helpers/tools.ts";

const skip = skipUnless(hasEtcd(), "etcd (Debian etcd-server)");
const LEASE_TTL = 3;

class Node {
  private seq = 0;
  private readonly waiting = new Map<number, (v: Record<string, unknown>) => void>();
  readonly ready: Promise<void>;
  stderr = "";
  constructor(
    readonly name: string,
    readonly proc: ChildProcess,
  ) {
    let ready!: () => void;
    this.ready = new Promise((r) => (ready = r));
    proc.stderr!.on("data", (b: Buffer) => (this.stderr += b.toString()));
    createInterface({ input: proc.stdout! }).on("line", (l) => {
      const m = JSON.parse(l) as Record<string, unknown>;
      if (m.ready) return ready();
      this.waiting.get(m.seq as number)?.(m);
    });
  }
  static async start(etcd: EtcdServer, name: string, clusterId = 0): Promise<Node> {
    const p = spawn(process.execPath, ["--import", "tsx", "tests/agent/identity-allocator-proc.ts", etcd.endpoint, name, String(LEASE_TTL), String(clusterId)], { stdio: ["pipe", "pipe", "pipe"] });
    const n = new Node(name, p);
    await Promise.race([n.ready, new Promise((_, rej) => setTimeout(() => rej(new Error(`${name} did not start: ${n.stderr}`)), 20000))]);
    return n;
  }
  call(op: string, args: Record<string, unknown> = {}): Promise<Record<string, unknown>> {
    const seq = ++this.seq;
    return new Promise((resolve) => {
      this.waiting.set(seq, resolve);
      this.proc.stdin!.write(`${JSON.stringify({ op, seq, ...args })}\n`);
    });
  }
  async allocate(key: string, preferred?: number): Promise<number> {
    const r = await this.call("allocate", { key, preferred });
    if (r.error) throw new Error(r.error as string);
    return r.id as number;
  }
  async lookup(key: string): Promise<number | null> {
    return (await this.call("lookup", { key })).id as number | null;
  }
  kill(): void {
    this.proc.kill("SIGKILL");
  }
}

async function until<T>(what: string, fn: () => Promise<T | undefined | null | false>, ms = 15000): Promise<T> {
  const deadline = Date.now() + ms;
  for (;;) {
    const v = await fn();
    if (v !== undefined && v !== null && v !== false) return v;
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 100));
  }
}

const key = (app: string) => `k8s:app=${app};k8s:io.kubernetes.pod.namespace=default;`;

describe.skipIf(skip)("identity allocation in etcd (kvstore mode)", () => {
  let etcd: EtcdServer;
  const nodes: Node[] = [];
  let observer: KvstoreAllocator;

  beforeAll(async () => {
    etcd = await EtcdServer.start();
    observer = new KvstoreAllocator({ endpoints: [etcd.endpoint], nodeName: "observer", leaseTtl: LEASE_TTL });
    await observer.start();
  }, 30000);
  afterAll(async () => {
    for (const n of nodes) n.kill();
    await observer?.close();
    await etcd?.destroy();
  });

  it("two nodes racing for the same label sets get one number per label set, distinct across label sets", async () => {
    const [a, b] = await Promise.all([Node.start(etcd, "node-a"), Node.start(etcd, "node-b")]);
    nodes.push(a, b);
    const apps = Array.from({ length: 12 }, (_, i) => `race-${i}`);
    const [ra, rb] = await Promise.all([Promise.all(apps.map((x) => a.allocate(key(x)))), Promise.all(apps.map((x) => b.allocate(key(x))))]);
    expect(ra).toEqual(rb);
    expect(new Set(ra).size).toBe(apps.length);
    for (const id of ra) expect(id).toBeGreaterThanOrEqual(256);
    // Both hold a reference on each.
    expect((await observer.holders(key("race-0"))).sort()).toEqual(["node-a", "node-b"]);
  }, 60000);

  it("a number allocated on one node reaches every node through the watch", async () => {
    const [a, b] = nodes as [Node, Node];
    const id = await a.allocate(key("only-a"));
    expect(await until("node-b to see only-a", async () => (await b.lookup(key("only-a"))) ?? undefined)).toBe(id);
    // node-b allocating it later takes the same number.
    expect(await b.allocate(key("only-a"))).toBe(id);
    await b.call("release", { key: key("only-a") });
  }, 30000);

  it("a node killed with SIGKILL loses its lease and its references; gc releases what nobody uses", async () => {
    const [a, b] = nodes as [Node, Node];
    const shared = await a.allocate(key("race-0"));
    const onlyA = await a.allocate(key("only-a"));
    expect(await observer.holders(key("only-a"))).toEqual(["node-a"]);
    a.kill();
    nodes.splice(0, 1);
    // Until the lease expires the reference is still there, and gc keeps the identity.
    expect(await observer.gc()).toEqual([]);
    await until("node-a's lease to expire", async () => (await observer.holders(key("only-a"))).length === 0, (LEASE_TTL + 10) * 1000);
    expect(await observer.holders(key("race-0"))).toEqual(["node-b"]);
    // Two passes: unused in the first is marked, deleted in the second (unless used again meanwhile).
    expect(await observer.gc()).toEqual([]);
    expect(await observer.gc()).toEqual([onlyA]);
    expect(await until("node-b to see only-a released", async () => (await b.lookup(key("only-a"))) === null)).toBe(true);
    // What node-b still references is kept.
    expect(await b.lookup(key("race-0"))).toBe(shared);
    expect(observer.lookup(key("race-0"))).toBe(shared);
  }, 60000);

  it("a restarted node gets the same numbers back", async () => {
    const b = nodes[0]!;
    const before = await b.allocate(key("restart-me"));
    await b.call("close");
    nodes.splice(0, 1);
    // The master key outlives the references until gc: the new process finds the same number.
    const b2 = await Node.start(etcd, "node-b");
    nodes.push(b2);
    expect(await b2.allocate(key("restart-me"))).toBe(before);
    expect(await b2.allocate(key("race-0"))).toBe(observer.lookup(key("race-0")));
    // After gc removed it, the node's remembered number is preferred again.
    await b2.call("release", { key: key("restart-me") });
    await observer.gc();
    expect(await observer.gc()).toContain(before);
    expect(await b2.allocate(key("restart-me"), before)).toBe(before);
  }, 60000);

  it("etcd stopped and started again: allocation resumes, existing identities are kept", async () => {
    const b = nodes[0]!;
    const before = Object.fromEntries(observer.entries());
    const held = await b.allocate(key("race-1"));
    await etcd.stop();
    const during = await b.call("allocate", { key: key("while-down") });
    expect(during.error).toBeTruthy();
    await etcd.resume();
    const id = await until("allocation after etcd returned", async () => {
      const r = await b.call("allocate", { key: key("while-down") });
      return r.error ? undefined : (r.id as number);
    }, 30000);
    expect(Object.values(before)).not.toContain(id);
    // Nothing was lost: every earlier identity is there with its number, and b's references survived.
    const after = await until("the watch to catch up", async () => {
      const e = (await b.call("entries")).entries as Record<string, string>;
      return e[String(id)] ? e : undefined;
    });
    for (const [n, k] of Object.entries(before)) expect(after[n]).toBe(k);
    expect(await b.allocate(key("race-1"))).toBe(held);
    expect(await observer.holders(key("race-1"))).toEqual(["node-b"]);
  }, 90000);

  it("cluster-scoped numbers carry the cluster id in bits 16-23", async () => {
    const c = await Node.start(etcd, "node-c", 7);
    nodes.push(c);
    const id = await c.allocate(key("in-cluster-7"));
    expect(clusterIdOf(id)).toBe(7);
    expect(id).toBe(7 << 16);
  }, 30000);
});
