/*
 * Differential test of the C seams and of generated code against core running as JavaScript: the
 * checksum seams (bpf_l3/l4_csum_replace with core's host-order arguments), packet loads/stores/copies
 * including out-of-range offsets (read 0, write nothing), and the generated csum/bytes functions. The
 * kernel side runs tests/fixtures/codegen/seams-prog.bpf.c with BPF_PROG_TEST_RUN (bpftool prog run);
 * the JavaScript side runs the same operations through core/pkt.ts, core/csum.ts and core/bytes.ts. The
 * output packets must be identical, byte for byte. Needs root and bpftool.
 */
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import fc from "fast-check";
import { execFileSync } from "node:child_process";
import { mkdirSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { randomBytes } from "node:crypto";
import { generateCoreHeader } from "../../codegen/functions.ts";
import { FIXTURES, ROOT, canLoadBpf, clang, model, tempDir } from "./helpers.ts";
import { skipUnless } from "../helpers/tools.ts";

/* Core runs here as JavaScript (vitest aliases core's ./env to core/runtime/env.portable.ts). Core is imported
 * dynamically so that the root `tsc -p tsconfig.json` does not type-check AssemblyScript sources under
 * Node's module rules; these are the signatures used. */
type Fn = (...args: number[]) => number;
type FnB = (...args: number[]) => boolean;
interface Core {
  read8: Fn; write8: (p: number, v: number) => void; write32: (p: number, v: number) => void;
  pktL3CsumReplace: Fn; pktL4CsumReplace: Fn; pktLoad8: Fn; pktLoad16: Fn; pktLoad32: Fn;
  pktStore8: Fn; pktStore16: Fn; pktStore32: Fn; pktCopyIn: FnB; pktCopyOut: FnB;
  csumReplace16: Fn; csumReplace32: Fn; bswap16: Fn; bswap32: Fn;
}
async function loadCore(): Promise<Core> {
  const mod = async (rel: string): Promise<Record<string, unknown>> => import(/* @vite-ignore */ new URL(rel, import.meta.url).href);
  return { ...(await mod("../../core/runtime/env.portable.ts")), ...(await mod("../../core/pkt.ts")), ...(await mod("../../core/csum.ts")), ...(await mod("../../core/bytes.ts")) } as unknown as Core;
}
let core: Core;

const DESC = 2048;
const DATA = 4096;
const BUF = 3072;

/** Runs the seams program's operation on core in JavaScript and returns the output packet. */
function runJs(input: Uint8Array): Uint8Array {
  const { read8, write8, write32, pktL3CsumReplace, pktL4CsumReplace, pktLoad8, pktLoad16, pktLoad32, pktStore8, pktStore16, pktStore32,
    pktCopyIn, pktCopyOut, csumReplace16, csumReplace32, bswap16, bswap32 } = core;
  for (let i = 0; i < input.length; i++) write8(DATA + i, input[i]);
  write32(DESC, DATA);
  write32(DESC + 4, input.length);
  const pkt = DESC;
  const op = pktLoad8(pkt, 14);
  const from = pktLoad32(pkt, 20);
  const to = pktLoad32(pkt, 24);
  const flags = pktLoad32(pkt, 28);
  let r = 0;
  for (let i = 0; i < 16; i++) write8(BUF + i, 0);
  switch (op) {
    case 0: r = pktL3CsumReplace(pkt, 16, from, to, flags) >>> 0; break;
    case 1: r = pktL4CsumReplace(pkt, 16, from, to, flags) >>> 0; break;
    case 2: r = csumReplace32(pktLoad16(pkt, 16), from, to); break;
    case 3: r = csumReplace16(pktLoad16(pkt, 16), from, to); break;
    case 4: r = (pktLoad32(pkt, from & 0x7f) ^ pktLoad16(pkt, to & 0x7f) ^ pktLoad8(pkt, flags & 0x7f)) >>> 0; break;
    case 5:
      pktStore16(pkt, from & 0x7f, to);
      pktStore8(pkt, (from >>> 8) & 0x7f, to);
      pktStore32(pkt, (from >>> 16) & 0x7f, to);
      break;
    case 6:
      r = pktCopyOut(pkt, from & 0x7f, BUF, 8) ? 1 : 0;
      if (r) r = pktCopyIn(pkt, to & 0x7f, BUF, 8) ? 3 : 2;
      break;
    case 7: r = (bswap32(from) ^ bswap16(to)) >>> 0; break;
  }
  pktStore32(pkt, 32, r);
  const out = new Uint8Array(input.length);
  for (let i = 0; i < input.length; i++) out[i] = read8(DATA + i);
  return out;
}

/** Runs the seams program loaded at `pin` on `input` with bpftool (BPF_PROG_TEST_RUN); `dir` holds the files. */
function runKernel(dir: string, pin: string, input: Uint8Array): Uint8Array {
  const inFile = join(dir, "in.bin");
  const outFile = join(dir, "out.bin");
  writeFileSync(inFile, input);
  rmSync(outFile, { force: true });
  execFileSync("bpftool", ["prog", "run", "pinned", `${pin}/seams_test`, "data_in", inFile, "data_out", outFile], { stdio: "ignore" });
  return new Uint8Array(readFileSync(outFile));
}

const packet = fc
  .record({
    op: fc.integer({ min: 0, max: 7 }),
    csum: fc.oneof(fc.constantFrom(0, 0xffff), fc.integer({ min: 0, max: 0xffff })),
    from: fc.oneof(fc.integer({ min: 0, max: 0xffffffff }), fc.integer({ min: 0, max: 0xffff })),
    to: fc.oneof(fc.integer({ min: 0, max: 0xffffffff }), fc.integer({ min: 0, max: 0xffff })),
    flags: fc.oneof(fc.constantFrom(2, 4, 0x12, 0x14, 0x22, 0x24, 0x32, 0x34), fc.integer({ min: 0, max: 0xffffffff })),
    len: fc.integer({ min: 36, max: 80 }),
    fill: fc.integer({ min: 0, max: 255 }),
  })
  .map(({ op, csum, from, to, flags, len, fill }) => {
    const b = new Uint8Array(len).map((_, i) => (i * 7 + fill) & 0xff);
    const dv = new DataView(b.buffer);
    b[14] = op;
    dv.setUint16(16, csum);
    dv.setUint32(20, from);
    dv.setUint32(24, to);
    // Core's checksum contract: size 2 or 4, plus CSUM_F_PSEUDO_HDR (0x10) / CSUM_F_MARK_MANGLED_0 (0x20)
    // for L4. Other flag bits (BPF_F_MARK_ENFORCE, BPF_F_IPV6, …) are not part of it.
    const size = flags & 4 ? 4 : 2;
    if (op === 0) dv.setUint32(28, size);
    else if (op === 1) dv.setUint32(28, size | (flags & 0x30));
    else dv.setUint32(28, flags);
    return b;
  });

// The tc seams (the kernel's checksum helpers) and the XDP seams (core/csum.ts's arithmetic in C).
const BUILDS = [
  { name: "tc", type: "tc", defines: [] as string[] },
  { name: "xdp", type: "xdp", defines: ["-DCILIATE_PKT_XDP"] },
];

describe.skipIf(skipUnless(canLoadBpf(), "root, bpffs and bpftool (loading BPF programs)")).each(BUILDS)("C seams and generated code agree with core in JavaScript ($name, kernel, root)", (build) => {
  let dir = "";
  let pin = "";
  const run = (input: Uint8Array) => runKernel(dir, pin, input);
  beforeAll(async () => {
    core = await loadCore();
    dir = tempDir("ciliate-seams-");
    mkdirSync(join(dir, "gen"));
    const header = generateCoreHeader(ROOT, model, { roots: [{ file: "core/csum.ts" }, { file: "core/bytes.ts" }] });
    writeFileSync(join(dir, "gen", "core.h"), header);
    const obj = join(dir, "seams.o");
    clang(join(ROOT, FIXTURES, "seams-prog.bpf.c"), obj, ["-include", join(ROOT, FIXTURES, "no-pin.h"), "-I", dir, ...build.defines]);
    pin = `/sys/fs/bpf/ciliate-test-${randomBytes(6).toString("hex")}`;
    execFileSync("bpftool", ["prog", "loadall", obj, pin, "type", build.type], { stdio: "ignore" });
  });

  afterAll(() => {
    if (pin) rmSync(pin, { recursive: true, force: true });
  });

  it("the kernel really ran the program (result written into the packet)", () => {
    const b = new Uint8Array(40);
    b[14] = 7;
    new DataView(b.buffer).setUint32(20, 0x11223344);
    const out = run(b);
    expect(new DataView(out.buffer).getUint32(32)).toBe(0x44332211);
  });

  it("produces the same packet as core/pkt.ts, core/csum.ts, core/bytes.ts for random operations", () => {
    fc.assert(
      fc.property(packet, (input) => {
        expect(Array.from(run(input))).toEqual(Array.from(runJs(input)));
      }),
      {
        numRuns: 150,
        // Found by CI: bpf_l3_csum_replace with size 2 writes a zero sum as 0xffff (csum_replace2).
        examples: [[Uint8Array.from([0, 7, 14, 21, 28, 35, 42, 49, 56, 63, 70, 77, 84, 91, 0, 105, 255, 255, 126, 133, 255, 255, 255, 255, 0, 0, 0, 0, 0, 0, 0, 2, 224, 231, 238, 245])]],
      },
    );
  });
});
