import { defineConfig } from "vitest/config";
import { fileURLToPath } from "node:url";

// core/ imports its environment seam as "./env" (AssemblyScript implementation). Tests that import core
// sources directly get the portable JavaScript implementation instead, exactly as the JS build does.
const portableEnv = fileURLToPath(new URL("./core/runtime/env.portable.ts", import.meta.url));

export default defineConfig({
  resolve: {
    alias: [{ find: /^(\.\.?\/)+env$/, replacement: portableEnv }],
  },
  test: {
    setupFiles: ["./tests/setup/portable.ts", "./tests/setup/fast-check.ts"],
    include: ["**/*.test.ts"],
    exclude: ["node_modules/**", "build/**"],
    testTimeout: 60_000,
    hookTimeout: 120_000,
    pool: "forks",
  },
});
