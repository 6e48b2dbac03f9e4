// Entry file of the WASM build (asconfig.json): the module's exports are exactly core/abi.ts.
export * from "./abi";
