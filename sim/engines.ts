/*
 * Loads a build of core/ as a Datapath: the WASM module (default engine) or the JavaScript bundle. Each
 * call gives an independent instance with its own memory and maps, as each simulated node needs. The
 * kernel engine lives in datapath/ (the simulator never imports it; cli/ composes the two).
 */
import { readFileSync, existsSync } from "node:fs";
import { fileURLToPath, pathToFileURL } from "node:url";
import { AbiDatapath, type AbiDatapathOptions, type CoreAbi } from "../host/abi-datapath.ts";
import { DatapathError } from "../host/datapath.ts";

const root = fileURLToPath(new URL("..", import.meta.url));
export const WASM_PATH = `${root}build/wasm/core.wasm`;
export const JS_PATH = `${root}build/js/core.js`;

let wasmModule: WebAssembly.Module | undefined;

function notBuilt(what: string, path: string): DatapathError {
  return new DatapathError("ENGINE_NOT_BUILT", `the ${what} build of core is missing (${path})`, "run `npm run build`");
}

/** A fresh WASM instance of core. */
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

let jsInstances = 0;

/** A fresh JavaScript instance of core (a separately evaluated copy of the bundle). */
export async function createJsDatapath(opts?: AbiDatapathOptions): Promise<AbiDatapath> {
  if (!existsSync(JS_PATH)) throw notBuilt("JavaScript", JS_PATH);
  const url = `${pathToFileURL(JS_PATH).href}?instance=${++jsInstances}`;
  const mod = (await import(url)) as CoreAbi & { jsMemory: () => ArrayBuffer };
  return new AbiDatapath("js", mod, () => mod.jsMemory(), opts);
}

export type SimEngineName = "wasm" | "js";

export async function createSimDatapath(engine: SimEngineName, opts?: AbiDatapathOptions): Promise<AbiDatapath> {
  return engine === "wasm" ? createWasmDatapath(opts) : createJsDatapath(opts);
}
