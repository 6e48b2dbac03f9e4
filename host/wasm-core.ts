/*
 * Loads the WASM build of core/ as a Datapath. The simulator runs packets through it; a node uses a small
 * instance of it to build Maglev tables with core's own algorithm (so the table a node writes is the one
 * the simulator predicts, on every engine). Each call gives an independent instance with its own memory.
 */
import { existsSync, readFileSync } from "node:fs";
import { AbiDatapath, type AbiDatapathOptions, type CoreAbi } from "./abi-datapath.ts";
import { DatapathError } from "./datapath.ts";
import { repoPath } from "./paths.ts";

export const WASM_PATH = repoPath("build/wasm/core.wasm");

let wasmModule: WebAssembly.Module | undefined;

export function notBuilt(what: string, path: string): DatapathError {
  return new DatapathError("ENGINE_NOT_BUILT", `the ${what} build of core is missing (${path})`, "run `npm run build`");
}

/** A fresh WASM instance of core. Throws DatapathError ENGINE_NOT_BUILT when the build is missing. */
export function createWasmDatapath(opts?: AbiDatapathOptions): AbiDatapath {
  if (!wasmModule) {
    if (!existsSync(WASM_PATH)) throw notBuilt("WASM", WASM_PATH);
    wasmModule = new WebAssembly.Module(readFileSync(WASM_PATH));
  }
  const instance = new WebAssembly.Instance(wasmModule, {
    env: {
      abort(_msg: number, _file: number, line: number, col: number) {
        throw new DatapathError("ENGINE_ABORT", `core aborted at line ${line}:${col} (a bug in core/)`);
      },
    },
  });
  const exports = instance.exports as unknown as CoreAbi & { memory: WebAssembly.Memory; _initialize?: () => void };
  exports._initialize?.();
  return new AbiDatapath("wasm", exports, () => exports.memory.buffer, opts);
}

/** Builds a Maglev lookup table: backend ids in slot order (core/maglev.ts maglevBuild). */
export type MaglevBuilder = (backends: { id: number; hashString: string }[], tableSize: number, seed: number) => Uint32Array;

let tableInstance: AbiDatapath | undefined;

/** core's Maglev in a shared WASM instance with tiny maps (it only builds tables). */
export const wasmMaglevBuilder: MaglevBuilder = (backends, tableSize, seed) => {
  tableInstance ??= createWasmDatapath({ capacities: Object.fromEntries(["ipcache", "lxc", "policy", "lb_services", "lb_backends", "lb_reverse_nat", "lb_maglev", "lb_affinity", "ct", "snat", "metrics", "events"].map((n) => [n, 64])) });
  return tableInstance.maglevTable(backends, tableSize, seed);
};
