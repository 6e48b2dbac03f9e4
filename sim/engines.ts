/*
 * Loads a build of core/ as a Datapath: the WASM module (default engine) or the JavaScript bundle. Each
 * call gives an independent instance with its own memory and maps, as each simulated node needs. The
 * kernel engine lives in datapath/ (the simulator never imports it; cli/ composes the two).
 */
import { existsSync } from "node:fs";
import { pathToFileURL } from "node:url";
import { AbiDatapath, type AbiDatapathOptions, type CoreAbi } from "../host/abi-datapath.ts";
import { repoPath } from "../host/paths.ts";
import { createWasmDatapath, notBuilt, WASM_PATH } from "../host/wasm-core.ts";

export const JS_PATH = repoPath("build/js/core.js");
export { createWasmDatapath, WASM_PATH };

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
