/*
 * The engines the conformance suite runs on. wasm and js always; kernel when the kernel engine is
 * available (root, clang, libbpf, bpffs) — in CI (CI=true) a missing kernel prerequisite fails the suite
 * instead of skipping it (datapath/preflight.ts decides).
 */
import type { Datapath } from "../../core/host/datapath.ts";
import { createJsDatapath, createWasmDatapath } from "../../sim/engines.ts";

export interface Backend {
  name: string;
  create(): Promise<Datapath>;
}

export const backends: Backend[] = [
  { name: "wasm", create: async () => createWasmDatapath() },
  { name: "js", create: () => createJsDatapath() },
];
