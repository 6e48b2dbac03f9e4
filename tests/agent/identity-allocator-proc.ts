// One KvstoreAllocator in a process of its own, driven by JSON lines on stdin ({"op":"allocate","key":…},
// release, lookup, entries, gc, close) and answering one JSON line per command on stdout; `ready` first.
// The e2e test runs two of these as two nodes and kills one with SIGKILL.
import { createInterface } from "node:readline";
import { KvstoreAllocator } from "../../agent/identity-kvstore.ts";

const [endpoint, nodeName, leaseTtl, clusterId] = process.argv.slice(2) as [string, string, string, string?];
const a = new KvstoreAllocator({ endpoints: [endpoint], nodeName, leaseTtl: Number(leaseTtl), clusterId: Number(clusterId ?? 0), log: (m) => process.stderr.write(`${m}\n`) });
const out = (o: unknown) => process.stdout.write(`${JSON.stringify(o)}\n`);
await a.start();
out({ ready: true });
for await (const line of createInterface({ input: process.stdin })) {
  const cmd = JSON.parse(line) as { op: string; key?: string; preferred?: number; seq: number };
  try {
    switch (cmd.op) {
      case "allocate":
        out({ seq: cmd.seq, id: await a.allocate(cmd.key!, cmd.preferred) });
        break;
      case "release":
        await a.release(cmd.key!);
        out({ seq: cmd.seq, ok: true });
        break;
      case "lookup":
        out({ seq: cmd.seq, id: a.lookup(cmd.key!) ?? null });
        break;
      case "entries":
        out({ seq: cmd.seq, entries: Object.fromEntries(a.entries()) });
        break;
      case "gc":
        out({ seq: cmd.seq, deleted: await a.gc() });
        break;
      case "close":
        await a.close();
        out({ seq: cmd.seq, ok: true });
        process.exit(0);
    }
  } catch (e) {
    out({ seq: cmd.seq, error: (e as Error).message });
  }
}
