/*
 * The engines the conformance suite runs on: wasm and js always; kernel when its prerequisites are there
 * (root, libbpf, clang, bpffs — datapath/preflight.ts). Outside CI a missing prerequisite skips the kernel
 * engine with a printed reason; with CI=true it fails the suite.
 *
 * Loading the generated object takes seconds (the verifier checks ~8k instructions per program), so the
 * kernel engine is loaded once per test file and reset (every map emptied) for each case.
 */
import { afterAll } from "vitest";
import type { Datapath } from "../../host/datapath.ts";
import { createJsDatapath, createWasmDatapath } from "../../sim/engines.ts";
import { kernelSuite } from "../../datapath/preflight.ts";
import { KernelDatapath } from "../../datapath/kernel-engine.ts";

export interface Backend {
  name: string;
  /** A fresh, empty node. Cases that need two independent nodes at once pass slot 0 and slot 1. */
  create(slot?: number): Promise<Datapath>;
}

/** Capacities small enough to load and reset quickly, large enough for every case. */
export const TEST_CAPACITIES: Record<string, number> = {
  ipcache: 1024, lxc: 1024, policy: 1024, lb_services: 1024, lb_backends: 1024, lb_reverse_nat: 1024,
  lb_maglev: 8192, lb_affinity: 1024, ct: 4096, snat: 1024, metrics: 1024, frag_datagrams: 1024,
};

const kernels: KernelDatapath[] = [];

/** A loaded kernel engine for `slot`, emptied; closing the returned handle leaves the object loaded for
 * the next case. */
export function sharedKernel(slot = 0): Datapath {
  kernels[slot] ??= new KernelDatapath({ capacities: TEST_CAPACITIES });
  const k = kernels[slot]!;
  k.reset();
  return Object.assign(Object.create(k) as KernelDatapath, { close() {} });
}

/** Program runs that executed in the kernel so far, over every slot. */
export function kernelRuns(): number {
  return kernels.reduce((n, k) => n + (k?.runs ?? 0), 0);
}

export const backends: Backend[] = [
  { name: "wasm", create: async () => createWasmDatapath() },
  { name: "js", create: () => createJsDatapath() },
];

if (!kernelSuite("conformance on the kernel engine", ["root", "libbpf", "bpffs", "clang"]).skip) {
  backends.push({ name: "kernel", create: async (slot = 0) => sharedKernel(slot) });
}

// A kernel case that passed without the kernel running would prove nothing.
afterAll(() => {
  if (kernels.length > 0 && kernelRuns() === 0) throw new Error("the kernel engine was loaded but no program ran");
});
