/*
 * The generated C compiles with the project's kernel flags (clang -O2 -g -target bpf -Wall -Werror): the
 * golden fixture wrapped in a program, the real bpf/gen/core.h with the three thin programs (each alone
 * and all in ciliate.bpf.c) and with the XDP from-network program, and core/pipeline.ts translates in
 * strict mode.
 */
import { describe, expect, it } from "vitest";
import { mkdirSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { generateAll } from "../../codegen/outputs.ts";
import { emitCoreHeader } from "../../codegen/functions.ts";
import { FIXTURES, ROOT, clang, hasTool, model, tempDir } from "./helpers.ts";
import { skipUnless } from "../helpers/tools.ts";

const haveClang = !skipUnless(hasTool("clang"), "clang");

describe.skipIf(!haveClang)("generated C compiles with clang -Werror (skipped only when clang is not installed)", () => {
  it("compiles the golden fixture header inside a tc program", () => {
    const dir = tempDir("ciliate-golden-");
    clang(join(ROOT, FIXTURES, "golden/sample-prog.bpf.c"), join(dir, "sample.o"), ["-I", join(ROOT, FIXTURES, "golden")]);
  });

  it("compiles the freshly generated bpf/gen/*.h with every program", () => {
    const dir = tempDir("ciliate-gen-");
    mkdirSync(join(dir, "gen"));
    for (const [rel, text] of generateAll(ROOT)) {
      if (rel.startsWith("bpf/gen/")) writeFileSync(join(dir, "gen", rel.slice("bpf/gen/".length)), text);
    }
    // All three programs in one object, one program alone (each source must also build by itself), and
    // the XDP build of from-network (core's seams over struct xdp_md).
    for (const prog of ["ciliate", "to_endpoint", "from_network_xdp"]) {
      clang(join(ROOT, "bpf/programs", `${prog}.bpf.c`), join(dir, `${prog}.o`), ["-I", dir]);
    }
  });
});

describe("core/pipeline.ts translates", () => {
  it("generates bpf/gen/core.h from the pipeline entry points in strict mode", () => {
    const old = process.env.CILIATE_CODEGEN_STRICT;
    process.env.CILIATE_CODEGEN_STRICT = "1";
    try {
      const text = emitCoreHeader(ROOT, model, () => {});
      expect(text).toContain("#define CILIATE_CORE_HAS_PIPELINE 1");
      for (const f of ["ciliate_from_endpoint(", "ciliate_to_endpoint(", "ciliate_from_network(", "ciliate_to_network("]) expect(text).toContain(f);
    } finally {
      if (old === undefined) delete process.env.CILIATE_CODEGEN_STRICT;
      else process.env.CILIATE_CODEGEN_STRICT = old;
    }
  });
});
