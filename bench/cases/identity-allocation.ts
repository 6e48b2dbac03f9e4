/*
 * Benchmark: cluster-wide identity allocation in etcd (agent/identity-kvstore.ts) for 1,000 endpoints, on a
 * real etcd (Debian's etcd-server, started on loopback with a temporary data directory). Two allocators
 * play two nodes: node-1 allocates one identity per endpoint — every endpoint with its own label set (the
 * worst case: each is a new master key under its lock), and again with 50 label sets shared by the
 * endpoints (the common case: most allocations find the number) — with `concurrency` allocations in
 * flight; node-2 only watches. Rows: allocations per second on node-1, and convergence — the time from
 * the start of the burst until node-2's watched cache names every one of the numbers (node-2 usually sees
 * each number before node-1's allocate call returns). Without etcd the benchmark says so in `skipped`.
 */
import { KvstoreAllocator } from "../../agent/identity-kvstore.ts";
import { EtcdServer, hasEtcd } from "../../tests/helpers/etcd.ts";
import { summarize, type Benchmark, type BenchResult, type Row } from "../harness.ts";

const key = (i: number) => `k8s:app=bench-${i};k8s:io.kubernetes.pod.namespace=bench;`;

interface Run {
  perSecond: number;
  convergeMs: number;
}

async function burst(etcd: EtcdServer, endpoints: number, labelSets: number, concurrency: number, round: number): Promise<Run> {
  const prefix = `bench/${process.pid}/${round}`;
  const node1 = new KvstoreAllocator({ endpoints: [etcd.endpoint], nodeName: "node-1", leaseTtl: 30, prefix });
  const node2 = new KvstoreAllocator({ endpoints: [etcd.endpoint], nodeName: "node-2", leaseTtl: 30, prefix });
  await Promise.all([node1.start(), node2.start()]);
  try {
    const seen = new Map<string, number>();
    const wanted = new Set(Array.from({ length: Math.min(endpoints, labelSets) }, (_, i) => key(i)));
    let converged!: () => void;
    const all = new Promise<void>((r) => (converged = r));
    const check = () => {
      for (const k of wanted) if (!seen.has(k) && node2.lookup(k) !== undefined) seen.set(k, performance.now());
      if (seen.size === wanted.size) converged();
    };
    node2.onChange(check);
    const t0 = performance.now();
    let next = 0;
    // Each node-1 endpoint allocates its label set's identity; a label set it already holds is a local hit.
    await Promise.all(
      Array.from({ length: concurrency }, async () => {
        for (let i = next++; i < endpoints; i = next++) {
          const k = key(i % labelSets);
          await node1.allocate(k);
        }
      }),
    );
    const t1 = performance.now();
    check();
    await Promise.race([all, new Promise((_, rej) => setTimeout(() => rej(new Error(`node-2 saw ${seen.size} of ${wanted.size} identities after 60 s`)), 60_000))]);
    const t2 = Math.max(...seen.values());
    return { perSecond: endpoints / ((t1 - t0) / 1000), convergeMs: t2 - t0 };
  } finally {
    await Promise.all([node1.close(), node2.close()]);
  }
}

export const identityAllocationBenchmark: Benchmark = {
  name: "identity-allocation",
  title: "Identity allocation in etcd: rate and convergence for 1,000 endpoints",
  steps: () => 2,
  async run(ctx) {
    const result: BenchResult = { name: "identity-allocation", title: this.title, rows: [], ratios: [], skipped: [], charts: [], notes: [] };
    if (!hasEtcd()) {
      result.skipped.push({ what: "everything", reason: "etcd (Debian etcd-server) is not installed" });
      ctx.tick("unique");
      ctx.tick("shared");
      return result;
    }
    const endpoints = ctx.tiny ? 50 : 1000;
    const repeats = ctx.tiny ? 1 : ctx.quick ? 2 : 5;
    const concurrency = 16;
    const etcd = await EtcdServer.start();
    let round = 0;
    try {
      for (const [label, labelSets] of [
        ["one label set per endpoint", endpoints],
        ["50 label sets shared", 50],
      ] as const) {
        const runs: Run[] = [];
        for (let r = 0; r < repeats; r++) runs.push(await burst(etcd, endpoints, labelSets, concurrency, round++));
        const params = { endpoints, labelSets, concurrency, nodes: 2 };
        const rows: Row[] = [
          { name: `allocation rate, ${label}`, params, unit: "endpoints/s", stat: summarize(runs.map((x) => x.perSecond)) },
          { name: `convergence on the other node, ${label}`, params, unit: "ms", stat: summarize(runs.map((x) => x.convergeMs)) },
        ];
        result.rows.push(...rows);
        ctx.tick(label);
      }
      result.notes.push("etcd 3 (Debian etcd-server) on loopback, one member, data on the local disk; both nodes in one process (node-2 only watches). Allocation of a new label set takes the key's lock, reads its references, creates the master key in a transaction and writes this node's reference under its lease (Cilium's kvstore allocator); a label set this node already references costs nothing.");
    } finally {
      await etcd.destroy();
    }
    return result;
  },
};
