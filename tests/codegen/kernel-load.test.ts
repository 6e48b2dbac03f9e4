/*
 * The kernel's verifier accepts the generated code: the golden fixture program and build/bpf's
 * ciliate.bpf.o (all four entry programs) are built (maps not pinned, see
 * tests/fixtures/codegen/no-pin.h), loaded with `bpftool prog loadall` into a fresh
 * /sys/fs/bpf/ciliate-test-<random> directory, and the pins are removed afterwards; from_endpoint is run
 * once with BPF_PROG_TEST_RUN to show the kernel really executes the generated pipeline. Needs root and
 * bpftool.
 * (The datapath/ engine's libbpf loader will replace bpftool here.)
 */
import { describe, expect, it } from "vitest";
import { execFileSync } from "node:child_process";
import { mkdirSync, readdirSync, rmSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { randomBytes } from "node:crypto";
import { generateAll } from "../../codegen/outputs.ts";
import { TraceRecordCodec } from "../../host/codecs.gen.ts";
import * as C from "../../host/constants.gen.ts";
import { FIXTURES, ROOT, canLoadBpf, clang, tempDir } from "./helpers.ts";
import { skipUnless } from "../helpers/tools.ts";

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

describe.skipIf(skipUnless(canLoadBpf(), "root, bpffs and bpftool (loading BPF programs)"))("generated programs load into the kernel (skipped only without root/bpftool)", () => {
  it("loads the golden fixture program", () => {
    const dir = tempDir("ciliate-load-");
    const obj = join(dir, "sample.o");
    clang(join(ROOT, FIXTURES, "golden/sample-prog.bpf.c"), obj, [...NO_PIN, "-I", join(ROOT, FIXTURES, "golden")]);
    expect(loadAll(obj)).toEqual(["sample_count", "sample_decide"]);
  });

  it("loads ciliate.bpf.o (from_endpoint, to_endpoint, from_network, from_overlay, to_network, from_host) and runs from_endpoint", () => {
    const dir = tempDir("ciliate-load-");
    mkdirSync(join(dir, "gen"));
    for (const [rel, text] of generateAll(ROOT)) {
      if (rel.startsWith("bpf/gen/")) writeFileSync(join(dir, "gen", rel.slice("bpf/gen/".length)), text);
    }
    const obj = join(dir, "ciliate.bpf.o");
    clang(join(ROOT, "bpf/programs/ciliate.bpf.c"), obj, [...NO_PIN, "-I", dir]);
    const pin = `/sys/fs/bpf/ciliate-test-${randomBytes(6).toString("hex")}`;
    try {
      execFileSync("bpftool", ["prog", "loadall", obj, pin, "type", "tc", "pinmaps", `${pin}/maps`], { stdio: ["ignore", "pipe", "pipe"] });
      expect(readdirSync(pin).filter((f) => f !== "maps").sort()).toEqual(["from_endpoint", "from_host", "from_network", "from_overlay", "to_endpoint", "to_network"]);
      // An IPv4/TCP SYN from an address that is no local endpoint (the maps are empty): the generated
      // pipeline must run, drop it (TC_ACT_SHOT) and say why in the Trace map.
      const pkt = Buffer.concat([
        Buffer.from("020202020202040404040404" + "0800", "hex"),
        Buffer.from("4500002800004000400600000a0000010a000002", "hex"),
        Buffer.from("04d200500000000000000000500203e800000000", "hex"),
      ]);
      const inFile = join(dir, "pkt.bin");
      writeFileSync(inFile, pkt);
      // Arm the Trace record (verdict = TRACE_VERDICT_ARMED), as hosts that read it do before a run.
      const armed = new Uint8Array(TraceRecordCodec.size);
      new DataView(armed.buffer).setUint32(0, C.TRACE_VERDICT_ARMED, true);
      execFileSync("bpftool", ["map", "update", "pinned", `${pin}/maps/ciliate_trace_v1`, "key", "0", "0", "0", "0", "value", ...Array.from(armed, String)], { stdio: ["ignore", "pipe", "pipe"] });
      const run = execFileSync("bpftool", ["prog", "run", "pinned", `${pin}/from_endpoint`, "data_in", inFile], { encoding: "utf8" });
      expect(run).toMatch(/Return value: 2\b/);
      const dump = JSON.parse(execFileSync("bpftool", ["-j", "map", "dump", "pinned", `${pin}/maps/ciliate_trace_v1`], { encoding: "utf8" })) as { value: string[] }[];
      const value = Uint8Array.from(dump[0].value.map((x) => Number(x)));
      const dv = new DataView(value.buffer);
      expect(dv.getUint32(0, true)).toBe(2); // TraceRecord.verdict = CTX_ACT_DROP
      expect(dv.getUint32(4, true)).not.toBe(0); // TraceRecord.dropReason
    } catch (e) {
      const err = e as { stderr?: Buffer | string; message: string };
      throw new Error(`${err.message}\n${String(err.stderr ?? "").slice(-6000)}`);
    } finally {
      rmSync(pin, { recursive: true, force: true });
    }
  });
});
