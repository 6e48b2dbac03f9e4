// Batch map operations (RawMap.updateBatch / deleteBatch) on the kernel's own maps, and per-CPU maps
// (the Metrics array): what fills and reconciles rely on. Needs root and the kernel build; skips outside
// CI with a printed reason, fails in CI (datapath/preflight.ts).
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { KernelDatapath } from "./kernel-engine.ts";
import { kernelSuite } from "./preflight.ts";
import { MAP_SPECS, type IpcacheKey, type IpcacheValue, type MetricsKey, type MetricsValue, type RevNatKey, type RevNatValue, type ServiceKey, type ServiceValue } from "../host/codecs.gen.ts";
import * as C from "../host/constants.gen.ts";
import type { BpfMapHandle } from "./bpf-map.ts";

const k = kernelSuite("bpf map batches", ["root", "libbpf", "bpffs", "clang"]);

function v4(i: number): Uint8Array {
  const a = new Uint8Array(16);
  a.set([10, (i >> 16) & 255, (i >> 8) & 255, i & 255]);
  return a;
}

describe.skipIf(k.skip)("batch map operations", () => {
  let dp: KernelDatapath;
  beforeAll(() => {
    dp = new KernelDatapath({ capacities: { lb_services: 4096, ipcache: 4096 } });
  });
  afterAll(() => dp?.close());

  it("writes a hash map in order with one batch and reads every entry back", () => {
    const svc = dp.map(MAP_SPECS.Services) as BpfMapHandle<ServiceKey, ServiceValue>;
    const n = 3000;
    const keys = Array.from({ length: n }, (_, i) => MAP_SPECS.Services.key.encode({ addr: v4(i), dport: 80, proto: 6, family: C.FAMILY_IPV4 }));
    // Key 0 twice: the later value must win, as it would entry by entry.
    keys.push(keys[0]!);
    const values = Array.from({ length: n + 1 }, (_, i) => MAP_SPECS.Services.value.encode({ count: 1, revNatIndex: i }));
    expect(svc.raw.updateBatch(keys, values)).toBe(n + 1);
    expect(svc.raw.count()).toBe(n);
    expect(svc.lookup(MAP_SPECS.Services.key.decode(keys[0]!))!.revNatIndex).toBe(n);
    expect(svc.lookup(MAP_SPECS.Services.key.decode(keys[1234]!))!.revNatIndex).toBe(1234);
    // Delete half, with absent keys among them: absent ones are skipped, the rest deleted.
    const gone = keys.slice(0, n / 2);
    const absent = [MAP_SPECS.Services.key.encode({ addr: v4(99999), dport: 80, proto: 6, family: C.FAMILY_IPV4 })];
    expect(svc.raw.deleteBatch([...gone.slice(0, 10), ...absent, ...gone.slice(10)])).toBe(n / 2);
    expect(svc.raw.count()).toBe(n / 2);
    expect(svc.raw.deleteBatch(keys.slice(n / 2, n))).toBe(n / 2);
    expect(svc.raw.count()).toBe(0);
  });

  it("reads every entry of hash and per-CPU array maps in batches", () => {
    const svc = dp.map(MAP_SPECS.Services) as BpfMapHandle<ServiceKey, ServiceValue>;
    const keys = Array.from({ length: 2500 }, (_, i) => MAP_SPECS.Services.key.encode({ addr: v4(i), dport: 443, proto: 6, family: C.FAMILY_IPV4 }));
    svc.raw.updateBatch(keys, keys.map((_, i) => MAP_SPECS.Services.value.encode({ count: 2, revNatIndex: i })));
    const seen = [...svc.entries()].map(([, v]) => v.revNatIndex).sort((a, b) => a - b);
    expect(seen).toEqual(keys.map((_, i) => i));
    expect(svc.raw.deleteBatch(keys)).toBe(2500);
    const metrics = [...dp.map(MAP_SPECS.Metrics).entries()];
    expect(metrics.length).toBe(MAP_SPECS.Metrics.maxEntries);
    expect(metrics.map(([k]) => k.reason | (k.dir << 8))).toEqual(metrics.map((_, i) => i));
  });

  it("reports the entry the kernel refuses (map full) and still writes the others", () => {
    const small = new KernelDatapath({ capacities: { lb_reverse_nat: 4 } });
    try {
      const m = small.map(MAP_SPECS.RevNat) as BpfMapHandle<RevNatKey, RevNatValue>;
      const keys = Array.from({ length: 6 }, (_, i) => MAP_SPECS.RevNat.key.encode({ revNatIndex: i + 1 }));
      const values = keys.map(() => MAP_SPECS.RevNat.value.encode({}));
      const errors: [number, string][] = [];
      expect(m.raw.updateBatch(keys, values, 0, (i, e) => errors.push([i, (e as { code?: string }).code ?? e.message]))).toBe(4);
      expect(errors).toEqual([[4, "BPF_MAP_FULL"], [5, "BPF_MAP_FULL"]]);
      expect(() => m.raw.updateBatch(keys.slice(5), values.slice(5))).toThrow(expect.objectContaining({ code: "BPF_MAP_FULL" }));
    } finally {
      small.close();
    }
  });

  it("fills an LPM trie (ipcache) the same way, and longest-prefix lookups see the entries", () => {
    const ip = dp.map(MAP_SPECS.Ipcache) as BpfMapHandle<IpcacheKey, IpcacheValue>;
    const keys: Uint8Array[] = [];
    const values: Uint8Array[] = [];
    for (let i = 0; i < 1000; i++) {
      keys.push(MAP_SPECS.Ipcache.key.encode({ prefixlen: 32 + 32, family: C.FAMILY_IPV4, addr: v4(i) }));
      values.push(MAP_SPECS.Ipcache.value.encode({ secIdentity: 5000 + i }));
    }
    keys.push(MAP_SPECS.Ipcache.key.encode({ prefixlen: 32 + 8, family: C.FAMILY_IPV4, addr: v4(0) }));
    values.push(MAP_SPECS.Ipcache.value.encode({ secIdentity: 7 }));
    expect(ip.raw.updateBatch(keys, values)).toBe(1001);
    const lookup = (i: number) => ip.lookup({ prefixlen: 32 + 32, family: C.FAMILY_IPV4, addr: v4(i) })?.secIdentity;
    expect(lookup(999)).toBe(5999);
    expect(lookup(5000)).toBe(7);
    expect(ip.raw.deleteBatch(keys)).toBe(1001);
    expect(ip.raw.count()).toBe(0);
  });

  it("per-CPU Metrics array: a typed read is the sum over CPUs, a typed write reads back as written", () => {
    const m = dp.map(MAP_SPECS.Metrics) as BpfMapHandle<MetricsKey, MetricsValue>;
    expect(m.raw.isPerCpu).toBe(true);
    const key = { reason: C.DROP_POLICY, dir: C.METRIC_DIR_EGRESS };
    // Raw per-CPU write: one slot per possible CPU, each 16 bytes.
    const slots = m.raw.cpus;
    const all = new Uint8Array(slots * 16);
    const dv = new DataView(all.buffer);
    for (let c = 0; c < slots; c++) {
      dv.setBigUint64(c * 16, BigInt(c + 1), true);
      dv.setBigUint64(c * 16 + 8, 100n, true);
    }
    m.raw.update(MAP_SPECS.Metrics.key.encode(key), all);
    const sum = BigInt((slots * (slots + 1)) / 2);
    expect(m.lookup(key)).toEqual({ packets: sum, bytes: 100n * BigInt(slots) });
    m.update(key, { packets: 3n, bytes: 4n });
    expect(m.lookup(key)).toEqual({ packets: 3n, bytes: 4n });
    expect(m.raw.lookupPerCpu(MAP_SPECS.Metrics.key.encode(key))!.length).toBe(slots);
  });
});
