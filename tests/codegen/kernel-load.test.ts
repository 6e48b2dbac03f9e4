/*
 * The kernel's verifier accepts the generated code: the golden fixture program and build/bpf's
 * ciliate.bpf.o (all three entry programs) are built (maps not pinned, see
 * tests/fixtures/codegen/no-pin.h), loaded with `bpftool prog loadall` into a fresh
 * /sys/fs/bpf/ciliate-test-<random> directory, and the pins are removed afterwards. Needs root and bpftool.
 * (The datapath/ engine's libbpf loader will replace bpftool here.)
 */
import { describe, expect, it } from "vitest";
import { execFileSync } from "node:child_process";
import { mkdirSync, readdirSync, rmSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { randomBytes } from "node:crypto";
import { generateAll } from "../../codegen/outputs.ts";
import { FIXTURES, ROOT, canLoadBpf, clang, tempDir } from "./helpers.ts";

const NO_PIN = ["-include", join(ROOT, FIXTURES, "no-pin.h")];

function loadAll(obj: string): string[] {
  const pin = `/sys/fs/bpf/ciliate-test-${randomBytes(6).toString("hex")}`;
  try {
    const r = execFileSync("bpftool", ["prog", "loadall", obj, pin, "type", "tc"], { encoding: "utf8", stdio: ["ignore", "pipe", "pipe"] });
    void r;
    return readdirSync(pin).sort();
  } catch (e) {
    const err = e as { stderr?: string; message: string };
    throw new Error(`bpftool prog loadall ${obj} failed (verifier log below):\n${(err.stderr ?? err.message).slice(-6000)}`);
  } finally {
    rmSync(pin, { recursive: true, force: true });
  }
}

describe.skipIf(!canLoadBpf())("generated programs load into the kernel (skipped only without root/bpftool)", () => {
  it("loads the golden fixture program", () => {
    const dir = tempDir("ciliate-load-");
    const obj = join(dir, "sample.o");
    clang(join(ROOT, FIXTURES, "golden/sample-prog.bpf.c"), obj, [...NO_PIN, "-I", join(ROOT, FIXTURES, "golden")]);
    expect(loadAll(obj)).toEqual(["sample_count", "sample_decide"]);
  });

  it("loads ciliate.bpf.o (from_endpoint, to_endpoint, from_network)", () => {
    const dir = tempDir("ciliate-load-");
    mkdirSync(join(dir, "gen"));
    for (const [rel, text] of generateAll(ROOT)) {
      if (rel.startsWith("bpf/gen/")) writeFileSync(join(dir, "gen", rel.slice("bpf/gen/".length)), text);
    }
    const obj = join(dir, "ciliate.bpf.o");
    clang(join(ROOT, "bpf/programs/ciliate.bpf.c"), obj, [...NO_PIN, "-I", dir]);
    expect(loadAll(obj)).toEqual(["from_endpoint", "from_network", "to_endpoint"]);
  });
});
