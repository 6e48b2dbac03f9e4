// Entry file of the JavaScript build (scripts/build-js-core.mjs): the portable numeric globals first,
// then exactly what the WASM module exports, plus the memory accessor the WASM module has built in.
import "assemblyscript/std/portable/index.js";
export * from "./abi";
export { jsMemory } from "./env.portable";
