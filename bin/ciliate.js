#!/usr/bin/env node
// The `ciliate` command. The sources are TypeScript; tsx compiles them on the fly, so a fresh clone only
// needs `npm ci` and `npm run build` (for the WASM/JS builds of core) before this works.
import { register } from "tsx/esm/api";

register();
await import("../cli/main.ts");
