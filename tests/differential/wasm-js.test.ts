/*
 * The WASM and JavaScript builds of core/ are the same source compiled two ways; portable-arithmetic
 * mistakes (a missing u32() wrap, a signed shift) make them disagree. Random node state and random packet
 * sequences must give identical verdicts, reasons, output bytes, traces and map side effects.
 */
import { describe, expect, it } from "vitest";
import fc from "fast-check";
import { createJsDatapath, createWasmDatapath } from "../../sim/engines.ts";
import { concretize, installState, nodeStateArb, sideEffects, SMALL_CAPACITIES, stepsArb } from "./arbitraries.ts";
import type { TunnelKey } from "../../host/datapath.ts";
import { maglevHashString } from "../../host/maglev.ts";

const RUNS = Number(process.env.DIFF_RUNS ?? 100);

describe("wasm and js builds agree", () => {
  it(`on random maps and packets (${RUNS} runs)`, async () => {
    await fc.assert(
      fc.asyncProperty(nodeStateArb, stepsArb, async (state, steps) => {
        const wasm = createWasmDatapath({ capacities: SMALL_CAPACITIES });
        const js = await createJsDatapath({ capacities: SMALL_CAPACITIES });
        const table = (dp: typeof wasm) => (ids: number[]) =>
          dp.maglevTable(ids.map((id) => ({ id, hashString: maglevHashString({ addr: `10.0.0.${id}`, port: 80, protocol: "TCP" }) })), 251, 0x1234);
        installState(wasm, state, table(wasm));
        installState(js, state, table(js));
        let prevIn: Uint8Array | undefined;
        let prevOut: Uint8Array | undefined;
        let prevTunnel: TunnelKey | undefined;
        for (const s of steps) {
          const c = concretize(s, prevIn, prevOut, prevTunnel);
          if (!c) continue;
          const a = wasm.run(c.entry, c.packet, { now: s.now, srcIdentity: s.srcIdentity, tunnel: c.tunnel });
          const b = js.run(c.entry, c.packet, { now: s.now, srcIdentity: s.srcIdentity, tunnel: c.tunnel });
          prevIn = c.packet;
          prevOut = a.verdict !== 2 ? a.output : undefined;
          prevTunnel = a.tunnel;
          expect(b.tunnel).toEqual(a.tunnel);
          expect(b.verdict).toBe(a.verdict);
          expect(b.dropReason).toBe(a.dropReason);
          expect(Array.from(b.output)).toEqual(Array.from(a.output));
          expect(b.trace).toEqual(a.trace);
        }
        expect(sideEffects(js)).toEqual(sideEffects(wasm));
      }),
      { numRuns: RUNS },
    );
  });

  it("build identical Maglev tables", async () => {
    const wasm = createWasmDatapath();
    const js = await createJsDatapath();
    const backends = Array.from({ length: 10 }, (_, i) => ({ id: i + 1, hashString: maglevHashString({ addr: `10.1.0.${i + 1}`, port: 8080, protocol: "TCP" }) }));
    expect(Array.from(js.maglevTable(backends, 1021, 0xabcdef))).toEqual(Array.from(wasm.maglevTable(backends, 1021, 0xabcdef)));
  });
});
