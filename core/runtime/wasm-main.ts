// Entry file of the WASM build (asconfig.json): the module's exports are exactly core/runtime/abi.ts.
export * from "./abi";
