/*
 * Kernel suite for datapath/ (the libbpf driver): builds the test-only fixtures in tests/fixtures/bpf/ with
 * clang, loads them, drives maps through the typed handles (BackendKeyCodec / BackendCodec), runs packets
 * with BPF_PROG_TEST_RUN, checks that a verifier rejection carries the verifier log, pins and reuses maps
 * under a unique bpffs directory, and attaches tc/XDP programs to a veth pair inside network namespaces
 * created here. Needs root, libbpf, clang, bpffs, BTF and iproute2: skipped with a printed reason outside
 * CI, failing in CI (datapath/preflight.ts). Everything created is removed in afterAll, even on failure.
 */
import { spawnSync } from "node:child_process";
import { chmodSync, existsSync, mkdtempSync, readdirSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { fileURLToPath } from "node:url";
import fc from "fast-check";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { MAP_SPECS, u32Codec, type Codec } from "../../host/codecs.gen.ts";
import { DatapathError } from "../../host/datapath.ts";
import {
  adHocSpec,
  attachTc,
  attachXdp,
  BPF_EXIST,
  BPF_NOEXIST,
  BpfError,
  BpfErrorCode,
  BpfObject,
  destroyClsact,
  kernelSuite,
  mapInfo,
  openPinnedMap,
  RawMap,
  removePinRoot,
  tcQuery,
  testRun,
  xdpQuery,
  type TcAttachment,
  type XdpAttachment,
} from "../../datapath/index.ts";

const suite = kernelSuite("libbpf");
const ROOT = fileURLToPath(new URL("../..", import.meta.url));
const FIXTURES = join(ROOT, "tests/fixtures/bpf");
const TAG = `${process.pid}-${Math.random().toString(36).slice(2, 8)}`;
const PIN_ROOT = `/sys/fs/bpf/ciliate-test-${TAG}`;
const PIN_ROOT_2 = `/sys/fs/bpf/ciliate-test-${TAG}-b`;
const NS_A = `cil-${TAG}-a`;
const NS_B = `cil-${TAG}-b`;
const TC_ACT_OK = 0;
const TC_ACT_SHOT = 2;
const SCHED_CLS = 3;
const XDP = 6;

/** Every map of bpf/gen/layout.h shrunk to 64 entries, so loading the fixture stays cheap. */
const SMALL: Record<string, number> = {};
for (const spec of Object.values(MAP_SPECS)) if (spec.maxEntries > 1) SMALL[spec.bpfName] = 64;

const u64Codec: Codec<bigint> = {
  name: "u64",
  size: 8,
  encode(v, out = new Uint8Array(8), o = 0) {
    new DataView(out.buffer, out.byteOffset).setBigUint64(o, BigInt((v as bigint | undefined) ?? 0n), true);
    return out;
  },
  decode(b, o = 0) {
    return new DataView(b.buffer, b.byteOffset).getBigUint64(o, true);
  },
  zero() {
    return 0n;
  },
};
const HITS = adHocSpec("fixture_hits", u32Codec, u64Codec);

let tmp = "";
const objects: BpfObject[] = [];
let fixture: BpfObject;

function build(name: string): string {
  return build2(tmp, name);
}

function build2(dir: string, name: string): string {
  const out = join(dir, `${name}.bpf.o`);
  const r = spawnSync(
    "clang",
    ["-O2", "-g", "-target", "bpf", "-Wall", "-Werror", "-I/usr/include/x86_64-linux-gnu", "-I", join(ROOT, "bpf"), "-c", join(FIXTURES, `${name}.bpf.c`), "-o", out],
    { encoding: "utf8" },
  );
  if (r.status !== 0) throw new Error(`clang failed for ${name}: ${r.stderr}`);
  return out;
}

function load(name: string, opts: Parameters<typeof BpfObject.load>[1] = {}): BpfObject {
  const o = BpfObject.load(join(tmp, `${name}.bpf.o`), { pinRoot: PIN_ROOT, maxEntries: SMALL, ...opts });
  objects.push(o);
  return o;
}

function expectBpfError(fn: () => unknown, code: string): BpfError {
  try {
    fn();
  } catch (e) {
    expect(e).toBeInstanceOf(DatapathError);
    expect(e).toBeInstanceOf(BpfError);
    expect((e as BpfError).code, (e as Error).message).toBe(code);
    return e as BpfError;
  }
  throw new Error(`expected a BpfError ${code}, nothing was thrown`);
}

function ipv4(s: string): number[] {
  return s.split(".").map(Number);
}

/** Ethernet + IPv4 + 8 bytes of UDP, destination `dst`. */
function packet(dst: string, etherType = 0x0800): Uint8Array {
  const p = new Uint8Array(14 + 20 + 8);
  p.set([0x02, 0, 0, 0, 0, 0x02, 0x02, 0, 0, 0, 0, 0x01], 0);
  p[12] = etherType >> 8;
  p[13] = etherType & 0xff;
  p.set([0x45, 0, 0, 28, 0, 0, 0, 0, 64, 17, 0, 0], 14);
  p.set(ipv4("10.1.0.1"), 26);
  p.set(ipv4(dst), 30);
  p.set([0x30, 0x39, 0, 80, 0, 8, 0, 0], 34);
  return p;
}

function backendId(dst: string): number {
  return ipv4(dst).reduce((a, b) => a * 256 + b, 0);
}

function hits(o: BpfObject): bigint[] {
  const m = o.typedMap(HITS);
  return [0, 1, 2, 3].map((i) => m.lookup(i) ?? -1n);
}

function sleep(ms: number): void {
  Atomics.wait(new Int32Array(new SharedArrayBuffer(4)), 0, 0, ms);
}

/** Polls until `fn` returns true (softirq delivery of veth traffic is asynchronous); at most ~3 s. */
function eventually(fn: () => boolean): boolean {
  for (let i = 0; i < 150; i++) {
    if (fn()) return true;
    sleep(20);
  }
  return fn();
}

function sh(cmd: string, args: string[], allowFail = false): string {
  const r = spawnSync(cmd, args, { encoding: "utf8", timeout: 30_000 });
  if (r.status !== 0 && !allowFail) throw new Error(`${cmd} ${args.join(" ")} failed: ${r.stderr}`);
  return r.stdout;
}

describe.skipIf(suite.skip)("datapath libbpf driver (kernel)", () => {
  beforeAll(() => {
    tmp = mkdtempSync(join(tmpdir(), "ciliate-libbpf-"));
    build("fixture");
    build("verifier-reject");
    fixture = load("fixture");
  });

  afterAll(() => {
    for (const o of objects) o.close();
    for (const ns of [NS_A, NS_B]) sh("ip", ["netns", "del", ns], true);
    for (const dir of [PIN_ROOT, PIN_ROOT_2]) {
      try {
        removePinRoot(dir);
      } catch (e) {
        console.warn(`cleanup of ${dir}: ${(e as Error).message}`);
      }
    }
    if (tmp) rmSync(tmp, { recursive: true, force: true });
  });

  describe("objects", () => {
    it("finds programs and maps by name, with their kernel types", () => {
      expect(fixture.programNames()).toEqual(["fixture_tc", "fixture_xdp"]);
      expect(fixture.program("fixture_tc").type).toBe(SCHED_CLS);
      expect(fixture.program("fixture_xdp").type).toBe(XDP);
      expect(fixture.program("fixture_tc").fd).toBeGreaterThan(0);
      expect(fixture.mapNames()).toContain("ciliate_lb_backends_v1");
      const info = fixture.map("ciliate_lb_backends_v1").info;
      expect(info).toMatchObject({ type: 1, keySize: MAP_SPECS.Backends.key.size, valueSize: MAP_SPECS.Backends.value.size, maxEntries: 64 });
      expect(info.name).toBe("ciliate_lb_back"); // the kernel keeps 15 characters
      expectBpfError(() => fixture.program("nope"), BpfErrorCode.NotFound);
      expectBpfError(() => fixture.map("nope"), BpfErrorCode.NotFound);
    });

    it("applies max_entries overrides and refuses them after load", () => {
      const o = load("fixture", { pinRoot: null, maxEntries: { ...SMALL, ciliate_lb_backends_v1: 7 } });
      expect(o.map("ciliate_lb_backends_v1").info.maxEntries).toBe(7);
      expectBpfError(() => o.setMaxEntries("ciliate_lb_backends_v1", 9), BpfErrorCode.BadArgument);
    });

    it("skips programs and maps on request", () => {
      const o = load("fixture", { pinRoot: null, skipPrograms: ["fixture_xdp"], skipMaps: ["ciliate_config_v2"] });
      expect(o.program("fixture_tc").fd).toBeGreaterThan(0);
      expectBpfError(() => o.program("fixture_xdp"), BpfErrorCode.NotFound);
      expectBpfError(() => o.map("ciliate_config_v2"), BpfErrorCode.NotFound);
      // a map that a loaded program uses cannot be skipped
      expectBpfError(() => load("fixture", { pinRoot: null, skipMaps: ["fixture_hits"] }), BpfErrorCode.LoadFailed);
    });

    it("fails to open a missing file or a non-ELF file with BPF_OPEN_FAILED", () => {
      expectBpfError(() => BpfObject.open(join(tmp, "missing.bpf.o")), BpfErrorCode.OpenFailed);
      const junk = join(tmp, "junk.bpf.o");
      writeFileSync(junk, "not an ELF file");
      const e = expectBpfError(() => BpfObject.open(junk, { pinRoot: null }), BpfErrorCode.OpenFailed);
      expect(e.errno).toBeGreaterThan(0);
      expect(e.hint).toBeTruthy();
    });

    it("reports a verifier rejection as BPF_LOAD_FAILED carrying the verifier log", () => {
      const e = expectBpfError(() => load("verifier-reject", { pinRoot: null, maxEntries: {} }), BpfErrorCode.LoadFailed);
      expect(e.verifierLog).toMatch(/invalid access to packet/);
      expect(e.message).toMatch(/verifier log/);
      expect(e.message).toMatch(/invalid access to packet/);
      expect(e.errnoName).toBe("EACCES");
      expect(e.hint).toMatch(/verifier/);
    });

    it("keeps the verifier log of a successful load when logLevel is 1", () => {
      const o = load("fixture", { pinRoot: null, logLevel: 1 });
      expect(o.verifierLog).toMatch(/processed \d+ insns/);
    });

    it("refuses use after close with BPF_CLOSED", () => {
      const o = BpfObject.load(join(tmp, "fixture.bpf.o"), { pinRoot: null, maxEntries: SMALL });
      const m = o.map("fixture_hits");
      o.close();
      o.close(); // safe twice
      expectBpfError(() => m.lookup(new Uint8Array(4)), BpfErrorCode.Closed);
      expectBpfError(() => o.program("fixture_tc"), BpfErrorCode.Closed);
    });
  });

  describe("typed map handles", () => {
    it("update / lookup / delete / entries / count through BackendKeyCodec and BackendCodec", () => {
      const o = load("fixture", { pinRoot: null });
      const backends = o.typedMap(MAP_SPECS.Backends);
      expect(backends.count()).toBe(0);
      const addr = new Uint8Array(16);
      addr.set([10, 0, 0, 5]);
      backends.update({ backendId: 1 }, { addr, port: 8080, proto: 6, state: 0, clusterId: 3, zone: 9, family: 4 });
      backends.update({ backendId: 2 }, { port: 53, proto: 17, family: 4 });
      expect(backends.lookup({ backendId: 1 })).toEqual({ addr, port: 8080, proto: 6, state: 0, clusterId: 3, zone: 9, family: 4 });
      // the kernel stores the port in network order, exactly as the codec wrote it
      const raw = o.map("ciliate_lb_backends_v1").lookup(u32Codec.encode(1))!;
      expect([raw[16], raw[17]]).toEqual([8080 >> 8, 8080 & 0xff]);
      expect(backends.lookup({ backendId: 3 })).toBeUndefined();
      expect(new Map([...backends.entries()].map(([k, v]) => [k.backendId, v.port]))).toEqual(new Map([[1, 8080], [2, 53]]));
      expect(backends.count()).toBe(2);
      expect(backends.delete({ backendId: 2 })).toBe(true);
      expect(backends.delete({ backendId: 2 })).toBe(false);
      expect(backends.count()).toBe(1);
    });

    it("maps kernel errors to stable codes (exists, not found, full, out of range, layout)", () => {
      const o = load("fixture", { pinRoot: null, maxEntries: { ...SMALL, ciliate_lb_backends_v1: 4 } });
      const backends = o.typedMap(MAP_SPECS.Backends);
      backends.update({ backendId: 1 }, { port: 1 });
      expectBpfError(() => backends.update({ backendId: 1 }, { port: 2 }, BPF_NOEXIST), BpfErrorCode.KeyExists);
      expectBpfError(() => backends.update({ backendId: 9 }, { port: 2 }, BPF_EXIST), BpfErrorCode.KeyNotFound);
      backends.update({ backendId: 1 }, { port: 3 }, BPF_EXIST);
      expect(backends.lookup({ backendId: 1 })?.port).toBe(3);
      for (let i = 2; i <= 4; i++) backends.update({ backendId: i }, { port: i });
      const full = expectBpfError(() => backends.update({ backendId: 5 }, { port: 5 }), BpfErrorCode.MapFull);
      expect(full.errnoName).toBe("E2BIG");
      expect(full.hint).toMatch(/max_entries/);
      const hitsMap = o.typedMap(HITS);
      expectBpfError(() => hitsMap.update(4, 1n), BpfErrorCode.KeyOutOfRange);
      expectBpfError(() => hitsMap.delete(0), BpfErrorCode.MapOpFailed);
      expect(hitsMap.count()).toBe(4); // every array index exists
      expectBpfError(() => o.typedMap(adHocSpec("fixture_hits", u32Codec, MAP_SPECS.Backends.value)), BpfErrorCode.LayoutMismatch);
      expectBpfError(() => o.map("fixture_hits").lookup(new Uint8Array(3)), BpfErrorCode.BadArgument);
    });

    it("round-trips arbitrary backends through the kernel map exactly as through the codec", () => {
      const o = load("fixture", { pinRoot: null });
      const backends = o.typedMap(MAP_SPECS.Backends);
      const arbBackend = fc.record({
        addr: fc.uint8Array({ minLength: 16, maxLength: 16 }),
        port: fc.integer({ min: 0, max: 0xffff }),
        proto: fc.integer({ min: 0, max: 255 }),
        state: fc.integer({ min: 0, max: 255 }),
        clusterId: fc.integer({ min: 0, max: 0xffff }),
        zone: fc.integer({ min: 0, max: 255 }),
        family: fc.integer({ min: 0, max: 255 }),
      });
      fc.assert(
        fc.property(fc.integer({ min: 0, max: 0xffffffff }), arbBackend, (id, be) => {
          backends.update({ backendId: id }, be);
          const got = backends.lookup({ backendId: id });
          const entries = [...backends.entries()];
          backends.delete({ backendId: id });
          return JSON.stringify(got) === JSON.stringify(be) && entries.length === 1 && entries[0]![0].backendId === id;
        }),
        { numRuns: 60 },
      );
    });
  });

  describe("BPF_PROG_TEST_RUN", () => {
    it("runs a packet: hit → TC_ACT_OK, one byte rewritten, mark moved, hit counted", () => {
      const backends = fixture.typedMap(MAP_SPECS.Backends);
      backends.update({ backendId: backendId("10.0.0.5") }, { zone: 0x77, state: 0, port: 80, family: 4 });
      const before = hits(fixture);
      const input = packet("10.0.0.5");
      const r = testRun(fixture.program("fixture_tc"), { data: input, ctx: { mark: 0x12, cb: [1, 2, 3, 4, 5] } });
      expect(r.retval).toBe(TC_ACT_OK);
      const expected = input.slice();
      expected[11] = 0x77;
      expect(r.data).toEqual(expected);
      expect(r.ctx?.mark).toBe(0x1277);
      expect(r.ctx?.cb).toEqual([1, 2, 3, 4, 5]);
      expect(hits(fixture)).toEqual([before[0]! + 1n, before[1], before[2], before[3]]);
      backends.delete({ backendId: backendId("10.0.0.5") });
    });

    it("runs a packet: miss → TC_ACT_SHOT, non-active backend → TC_ACT_SHOT, ARP → TC_ACT_OK", () => {
      const backends = fixture.typedMap(MAP_SPECS.Backends);
      backends.update({ backendId: backendId("10.0.0.6") }, { zone: 1, state: 1 });
      const before = hits(fixture);
      const prog = fixture.program("fixture_tc");
      const miss = testRun(prog, { data: packet("10.0.0.99") });
      expect(miss.retval).toBe(TC_ACT_SHOT);
      expect(miss.data).toEqual(packet("10.0.0.99"));
      expect(testRun(prog, { data: packet("10.0.0.6") }).retval).toBe(TC_ACT_SHOT);
      expect(testRun(prog, { data: packet("10.0.0.6", 0x0806) }).retval).toBe(TC_ACT_OK);
      expect(hits(fixture)).toEqual([before[0]! + 1n, before[1]! + 1n, before[2]! + 1n, before[3]]);
      backends.delete({ backendId: backendId("10.0.0.6") });
    });

    it("repeats a run and reports the kernel's average duration", () => {
      const before = hits(fixture);
      const r = testRun(fixture.program("fixture_tc"), { data: packet("10.0.0.77"), repeat: 1000 });
      expect(r.retval).toBe(TC_ACT_SHOT);
      expect(r.duration).toBeGreaterThan(0);
      expect(hits(fixture)[1]).toBe(before[1]! + 1000n);
    });

    it("runs an XDP program with a raw context-free call", () => {
      const before = hits(fixture);
      const r = testRun(fixture.program("fixture_xdp"), { data: packet("10.0.0.1") });
      expect(r.retval).toBe(2); // XDP_PASS
      expect(hits(fixture)[3]).toBe(before[3]! + 1n);
    });

    it("fails with BPF_TEST_RUN_FAILED on a too-short packet or a forbidden ctx field", () => {
      const prog = fixture.program("fixture_tc");
      const short = expectBpfError(() => testRun(prog, { data: new Uint8Array(10) }), BpfErrorCode.TestRunFailed);
      expect(short.errnoName).toBe("EINVAL");
      const ctx = new Uint8Array(192);
      ctx[0] = 1; // __sk_buff.len is not an accepted input
      expectBpfError(() => testRun(prog, { data: packet("10.0.0.5"), ctx }), BpfErrorCode.TestRunFailed);
      expectBpfError(() => testRun(prog, { data: packet("10.0.0.5"), repeat: 0 }), BpfErrorCode.BadArgument);
      const small = expectBpfError(() => testRun(prog, { data: packet("10.0.0.5"), dataOutSize: 20 }), BpfErrorCode.TestRunFailed);
      expect(small.errnoName).toBe("ENOSPC");
    });
  });

  describe("pinning", () => {
    it("pins LIBBPF_PIN_BY_NAME maps under pinRoot and a second load reuses them", () => {
      const a = load("fixture", { pinRoot: PIN_ROOT_2 });
      expect(readdirSync(PIN_ROOT_2)).toEqual(expect.arrayContaining(["ciliate_lb_backends_v1", "fixture_hits"]));
      expect(a.pinPath("fixture_hits")).toBe(`${PIN_ROOT_2}/fixture_hits`);
      a.typedMap(MAP_SPECS.Backends).update({ backendId: 42 }, { port: 4242 });
      const b = load("fixture", { pinRoot: PIN_ROOT_2 });
      expect(b.map("ciliate_lb_backends_v1").info.id).toBe(a.map("ciliate_lb_backends_v1").info.id);
      expect(b.typedMap(MAP_SPECS.Backends).lookup({ backendId: 42 })?.port).toBe(4242);
      // a program of b updates the shared counters that a reads
      const before = hits(a);
      testRun(b.program("fixture_tc"), { data: packet("10.9.9.9") });
      expect(hits(a)[1]).toBe(before[1]! + 1n);
      // the pin outlives both objects and opens by path
      const byPath = openPinnedMap(`${PIN_ROOT_2}/ciliate_lb_backends_v1`, MAP_SPECS.Backends);
      expect(byPath.lookup({ backendId: 42 })?.port).toBe(4242);
      expect(mapInfo(byPath.raw.fd).id).toBe(a.map("ciliate_lb_backends_v1").info.id);
      byPath.raw.close();
    });

    it("refuses to reuse an incompatible pinned map with BPF_PIN_FAILED", () => {
      load("fixture", { pinRoot: PIN_ROOT_2 }); // ensure the pins exist
      const e = expectBpfError(() => load("fixture", { pinRoot: PIN_ROOT_2, maxEntries: { ...SMALL, ciliate_lb_backends_v1: 65 } }), BpfErrorCode.PinFailed);
      expect(e.libbpfLog?.join("\n")).toMatch(/pinned map/);
    });

    it("unpins maps, opens missing pins with BPF_PIN_FAILED, and refuses to remove non-bpffs dirs", () => {
      const dir = `${PIN_ROOT}-c`;
      const o = BpfObject.load(join(tmp, "fixture.bpf.o"), { pinRoot: dir, maxEntries: SMALL });
      try {
        expect(existsSync(`${dir}/fixture_hits`)).toBe(true);
        o.unpinMaps();
        expect(existsSync(`${dir}/fixture_hits`)).toBe(false);
        expectBpfError(() => RawMap.fromPin(`${dir}/fixture_hits`), BpfErrorCode.PinFailed);
      } finally {
        o.close();
        removePinRoot(dir);
      }
      expect(existsSync(dir)).toBe(false);
      expectBpfError(() => removePinRoot(tmp), BpfErrorCode.NoBpffs);
      expectBpfError(() => load("fixture", { pinRoot: join(tmp, "pins") }), BpfErrorCode.NoBpffs);
    });
  });

  describe("tc and XDP attachment in network namespaces", () => {
    const A_IP = "10.213.0.1";
    const B_IP = "10.213.0.2";

    function mac(ns: string, dev: string): string {
      return JSON.parse(sh("ip", ["-n", ns, "-j", "link", "show", dev]))[0].address;
    }

    /** Sends `n` UDP datagrams from inside `ns` to `dst` (a short node process run by ip netns exec). */
    function sendUdp(ns: string, dst: string, n: number): void {
      const js = `const s=require('dgram').createSocket('udp4');let i=0;const go=()=>{if(i++>=${n})return s.close();s.send('x',9999,'${dst}',go)};go();`;
      sh("ip", ["netns", "exec", ns, process.execPath, "-e", js]);
    }

    beforeAll(() => {
      sh("ip", ["netns", "add", NS_A]);
      sh("ip", ["netns", "add", NS_B]);
      sh("ip", ["link", "add", "va", "netns", NS_A, "type", "veth", "peer", "name", "vb", "netns", NS_B]);
      sh("ip", ["-n", NS_A, "addr", "add", `${A_IP}/24`, "dev", "va"]);
      sh("ip", ["-n", NS_B, "addr", "add", `${B_IP}/24`, "dev", "vb"]);
      sh("ip", ["-n", NS_A, "link", "set", "va", "up"]);
      sh("ip", ["-n", NS_B, "link", "set", "vb", "up"]);
      sh("ip", ["-n", NS_A, "neigh", "replace", B_IP, "lladdr", mac(NS_B, "vb"), "dev", "va"]);
      sh("ip", ["-n", NS_B, "neigh", "replace", A_IP, "lladdr", mac(NS_A, "va"), "dev", "vb"]);
    });

    it("attaches a tc program on ingress of a veth in a netns, sees its verdicts, and detaches", () => {
      const backends = fixture.typedMap(MAP_SPECS.Backends);
      let tc: TcAttachment | undefined;
      try {
        tc = attachTc(fixture.program("fixture_tc"), { netns: NS_B, ifname: "vb", direction: "ingress" });
        expect(tc.progId).toBeGreaterThan(0);
        expect(tcQuery({ netns: NS_B, ifname: "vb", direction: "ingress" })).toBe(tc.progId);
        expect(tcQuery({ netns: NS_B, ifname: "vb", direction: "egress" })).toBeUndefined();
        const dup = expectBpfError(() => attachTc(fixture.program("fixture_tc"), { netns: NS_B, ifname: "vb", direction: "ingress" }), BpfErrorCode.AttachFailed);
        expect(dup.errnoName).toBe("EEXIST");
        expect(dup.hint).toMatch(/replace/);
        expect(dup.libbpfLog?.join("\n")).toMatch(/Kernel error message/);
        const again = attachTc(fixture.program("fixture_tc"), { netns: NS_B, ifname: "vb", direction: "ingress", replace: true });
        expect(again.progId).toBe(tc.progId);

        backends.update({ backendId: backendId(B_IP) }, { zone: 5, state: 0 });
        let before = hits(fixture);
        sendUdp(NS_A, B_IP, 3);
        eventually(() => hits(fixture)[0]! >= before[0]! + 3n);
        expect(hits(fixture)[0]).toBe(before[0]! + 3n);

        backends.delete({ backendId: backendId(B_IP) });
        before = hits(fixture);
        sendUdp(NS_A, B_IP, 2);
        eventually(() => hits(fixture)[1]! >= before[1]! + 2n);
        expect(hits(fixture)[1]).toBe(before[1]! + 2n);

        expect(tc.detach()).toBe(true);
        expect(tc.detach()).toBe(false);
        expect(tcQuery({ netns: NS_B, ifname: "vb", direction: "ingress" })).toBeUndefined();
        before = hits(fixture);
        sendUdp(NS_A, B_IP, 2);
        sleep(200);
        expect(hits(fixture)).toEqual(before);
      } finally {
        tc?.detach();
        destroyClsact({ netns: NS_B, ifname: "vb" });
      }
      expect(destroyClsact({ netns: NS_B, ifname: "vb" })).toBe(false);
    });

    it("attaches XDP (generic mode) to a veth in a netns and detaches it", () => {
      let xdp: XdpAttachment | undefined;
      try {
        xdp = attachXdp(fixture.program("fixture_xdp"), { netns: NS_A, ifname: "va", mode: "skb" });
        expect(xdpQuery({ netns: NS_A, ifname: "va", mode: "skb" })).toBeGreaterThan(0);
        expectBpfError(() => attachXdp(fixture.program("fixture_xdp"), { netns: NS_A, ifname: "va", mode: "skb" }), BpfErrorCode.AttachFailed);
        const before = hits(fixture);
        sendUdp(NS_B, A_IP, 2);
        eventually(() => hits(fixture)[3]! >= before[3]! + 2n);
        expect(hits(fixture)[3]).toBeGreaterThanOrEqual(before[3]! + 2n);
        expect(xdp.detach()).toBe(true);
        expect(xdpQuery({ netns: NS_A, ifname: "va", mode: "skb" })).toBe(0);
      } finally {
        xdp?.detach();
      }
    });

    it("reports unknown interfaces and namespaces as BPF_NETNS_FAILED", () => {
      expectBpfError(() => attachTc(fixture.program("fixture_tc"), { netns: NS_B, ifname: "nope0", direction: "ingress" }), BpfErrorCode.NetnsFailed);
      expectBpfError(() => attachTc(fixture.program("fixture_tc"), { netns: `${NS_B}-missing`, ifname: "vb", direction: "ingress" }), BpfErrorCode.NetnsFailed);
      // the thread is back in its own namespace: the root namespace has no "vb"
      expectBpfError(() => attachTc(fixture.program("fixture_tc"), { ifname: "vb", direction: "egress" }), BpfErrorCode.NetnsFailed);
    });
  });
});

const HAS_SETPRIV = spawnSync("setpriv", ["--version"], { stdio: "ignore" }).status === 0;

/** Runs a TypeScript snippet as user nobody without capabilities; returns its stdout. */
function runUnprivileged(dir: string, code: string, env: Record<string, string> = {}): string {
  const file = join(dir, `unpriv-${Math.random().toString(36).slice(2)}.ts`);
  writeFileSync(file, code, { mode: 0o644 });
  const r = spawnSync(
    "setpriv",
    ["--reuid=65534", "--regid=65534", "--clear-groups", "--inh-caps=-all", "--bounding-set=-all", process.execPath, "--import", "tsx", file],
    { encoding: "utf8", cwd: ROOT, env: { ...process.env, CI: "", ...env }, timeout: 60_000 },
  );
  return r.stdout;
}

describe.skipIf(suite.skip || !HAS_SETPRIV)("datapath without privileges (needs root to drop them with setpriv)", () => {
  let dir = "";
  beforeAll(() => {
    dir = mkdtempSync(join(tmpdir(), "ciliate-unpriv-"));
    chmodSync(dir, 0o755);
    build2(dir, "fixture");
  });
  afterAll(() => rmSync(dir, { recursive: true, force: true }));

  it("kernelSuite skips with a reason outside CI and fails (throws) with CI=true", () => {
    const code = `import { kernelSuite } from ${JSON.stringify(join(ROOT, "datapath/preflight.ts"))};
try { console.log(JSON.stringify(kernelSuite("x"))); } catch (e) { console.log(JSON.stringify({ thrown: e.code })); }`;
    const outside = JSON.parse(runUnprivileged(dir, code).trim().split("\n").pop()!);
    expect(outside.skip).toBe(true);
    expect(outside.reason).toMatch(/root/);
    const inCi = JSON.parse(runUnprivileged(dir, code, { CI: "true" }).trim().split("\n").pop()!);
    expect(inCi).toEqual({ thrown: BpfErrorCode.PreflightFailed });
  });

  it("an unprivileged load fails with BPF_NOT_PERMITTED and a root hint", () => {
    const code = `import { BpfObject } from ${JSON.stringify(join(ROOT, "datapath/index.ts"))};
try { BpfObject.load(${JSON.stringify(join(dir, "fixture.bpf.o"))}, { pinRoot: null }); console.log(JSON.stringify({ loaded: true })); }
catch (e) { console.log(JSON.stringify({ code: e.code, hint: e.hint })); }`;
    const out = JSON.parse(runUnprivileged(dir, code).trim().split("\n").pop()!);
    expect(out.code).toBe(BpfErrorCode.NotPermitted);
    expect(out.hint).toMatch(/root/);
  });
});

describe("kernelSuite preflight helper", () => {
  it("returns skip:false here or explains why it skips", () => {
    expect(suite.skip ? typeof suite.reason : "ok").toBe(suite.skip ? "string" : "ok");
  });
});
