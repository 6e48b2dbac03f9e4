/*
 * agent/reconcile.ts failure rules F1–F3 with injected map faults: a node (the WASM engine, whose maps the
 * reconcile writes through the same ByteMap contract as the kernel's) has a policy revoked or tightened
 * while the policy map refuses deletes, updates or additions. At no moment may a flow that the desired
 * state denies be allowed: a revoked allow is fenced with a deny (F1); when that is impossible the endpoint
 * is quarantined (F2) and released once its policy is in place (F3). With plain applyPlan (the code before
 * these rules) the revoked flow stayed allowed until the retry succeeded; the first test shows it.
 * The last block makes the kernel itself refuse the writes: the node is the kernel engine (the generated
 * programs, run with BPF_PROG_TEST_RUN) and its policy map is frozen (BPF_MAP_FREEZE: every update and
 * delete from user space fails with EPERM), so F1's fence fails too and F2 must quarantine.
 */
import { afterEach, beforeEach, describe, expect, it } from "vitest";
import { MAP_SPECS, type MapSpec } from "../../host/codecs.gen.ts";
import type { Datapath } from "../../host/datapath.ts";
import { hex, MANAGED_MAPS, type ManagedMap, type MapContents } from "../../agent/desired.ts";
import { applyPlan, planReconcile, readContents, reconcileFailClosed, type ByteMap } from "../../agent/reconcile.ts";
import { createWasmDatapath } from "../../sim/engines.ts";
import { addPolicy, C, POD_A, POD_B, send, standardNode, TCP, type PolicyRule } from "../conformance/fixture.ts";
import { kernelSuite } from "../../datapath/preflight.ts";
import { KernelDatapath } from "../../datapath/kernel-engine.ts";
import type { BpfMapHandle } from "../../datapath/bpf-map.ts";
import { TEST_CAPACITIES } from "../conformance/backends.ts";
import { AgentMetrics } from "../../agent/metrics.ts";

interface Faults {
  update?: boolean;
  delete?: boolean;
  /** Only new keys are refused (a full map: E2BIG). */
  add?: boolean;
}

/** A typed map of the engine as the byte-level map the reconcile writes, with injected faults. */
function byteMap<K, V>(dp: Datapath, spec: MapSpec<K, V>, faults: Faults): ByteMap {
  const h = dp.map(spec);
  return {
    entries: () => [...h.entries()].map(([k, v]) => [spec.key.encode(k), spec.value.encode(v)] as [Uint8Array, Uint8Array]),
    update(k, v) {
      const key = spec.key.decode(k);
      // Exact presence (an LPM lookup would find a covering prefix).
      const present = () => [...h.entries()].some(([e]) => hex(spec.key.encode(e)) === hex(k));
      if (faults.update || (faults.add && !present())) throw new Error(`update of map ${spec.bpfName}: injected fault`);
      h.update(key, spec.value.decode(v));
    },
    delete(k) {
      if (faults.delete) throw new Error(`delete from map ${spec.bpfName}: injected fault`);
      return h.delete(spec.key.decode(k));
    },
  };
}

const SPEC: Partial<Record<ManagedMap, MapSpec<unknown, unknown>>> = { Policy: MAP_SPECS.Policy as MapSpec<unknown, unknown>, Endpoints: MAP_SPECS.Endpoints as MapSpec<unknown, unknown> };

const ALLOW_80: PolicyRule = { epId: POD_A.epId, egress: true, identity: POD_B.identity, proto: TCP, port: 80 };
const ALLOW_443: PolicyRule = { epId: POD_A.epId, egress: true, identity: POD_B.identity, proto: TCP, port: 443 };
const INGRESS_B: PolicyRule = { epId: POD_B.epId, egress: false, identity: 0 };

let dp: Datapath;
let now = 10;
const syn = (dport: number) => send(dp, "fromEndpoint", { src: POD_A.ip, dst: POD_B.ip, proto: "TCP", sport: 40000 + now, dport, tcpFlags: 0x02 }, now++);
const toA = () => send(dp, "toEndpoint", { src: POD_B.ip, dst: POD_A.ip, proto: "TCP", sport: 41000 + now, dport: 8080, tcpFlags: 0x02 }, now++, POD_B.identity);

/** The maps' contents that the rules read (Policy, Endpoints) and the desired state with `rules`. */
function state(rules: PolicyRule[]) {
  const current = { Policy: readContents(byteMap(dp, MAP_SPECS.Policy, {})), Endpoints: readContents(byteMap(dp, MAP_SPECS.Endpoints, {})) };
  // The desired policy map: built on a scratch engine the way the node writes it.
  const scratch = createWasmDatapath();
  for (const r of rules) addPolicy(scratch, r);
  const desired = Object.fromEntries(MANAGED_MAPS.map((m) => [m, new Map()])) as Record<ManagedMap, MapContents>;
  desired.Policy = readContents(byteMap(scratch, MAP_SPECS.Policy, {}));
  desired.Endpoints = current.Endpoints;
  scratch.close();
  return { current, desired };
}

function targets(faults: Partial<Record<ManagedMap, Faults>>) {
  return (m: ManagedMap) => byteMap(dp, SPEC[m]!, faults[m] ?? {});
}

describe("a failed policy operation never leaves the node open (reconcile rules F1–F3)", () => {
  beforeEach(() => {
    dp = createWasmDatapath();
    standardNode(dp);
    for (const r of [ALLOW_80, ALLOW_443, INGRESS_B]) addPolicy(dp, r);
    expect(syn(80).verdict).toBe(C.CTX_ACT_OK);
    expect(syn(443).verdict).toBe(C.CTX_ACT_OK);
  });

  it("without the rules (applyPlan alone) a revoked allow whose delete fails keeps allowing", () => {
    const { current, desired } = state([ALLOW_443, INGRESS_B]);
    const r = applyPlan(targets({ Policy: { delete: true } }), planReconcile(current, desired));
    expect(r.failed.map((f) => `${f.op.map} ${f.op.op}`)).toEqual(["Policy delete"]);
    expect(syn(80).verdict).toBe(C.CTX_ACT_OK); // the hole F1 closes
  });

  it("F1: a revoked allow whose delete fails is overwritten with a deny; the retry deletes the fence", () => {
    const quarantine = new Set<number>();
    const { current, desired } = state([ALLOW_443, INGRESS_B]);
    const r = reconcileFailClosed(targets({ Policy: { delete: true } }), current, desired, quarantine);
    expect(r.failed.map((f) => `${f.op.map} ${f.op.op}`)).toEqual(["Policy delete"]);
    expect(r.fenced).toBe(1);
    expect(r.failOpen).toEqual([]);
    const denied = syn(80);
    expect(denied.verdict).toBe(C.CTX_ACT_DROP);
    expect(denied.dropReason).toBe(C.DROP_POLICY_DENY);
    expect(syn(443).verdict, "only the revoked key is fenced").toBe(C.CTX_ACT_OK);
    expect(quarantine.size).toBe(0);

    // The fault is gone: the retry reaches the desired state exactly.
    const again = state([ALLOW_443, INGRESS_B]);
    const r2 = reconcileFailClosed(targets({}), again.current, again.desired, quarantine);
    expect(r2.failed).toEqual([]);
    expect(readContents(byteMap(dp, MAP_SPECS.Policy, {}))).toEqual(again.desired.Policy);
    expect(syn(80).dropReason).toBe(C.DROP_POLICY);
    expect(syn(443).verdict).toBe(C.CTX_ACT_OK);
  });

  it("F1: an allow whose update to a deny fails cannot stay an allow", () => {
    const quarantine = new Set<number>();
    const { current, desired } = state([{ ...ALLOW_80, deny: true }, ALLOW_443, INGRESS_B]);
    // The first write fails (a transient fault); the fence, written after, goes in.
    let calls = 0;
    const flaky = (m: ManagedMap): ByteMap => {
      const b = targets({})(m);
      return m === "Policy" ? { ...b, update: (k, v) => (calls++ === 0 ? (() => { throw new Error("ENOMEM (injected)"); })() : b.update(k, v)) } : b;
    };
    const r = reconcileFailClosed(flaky, current, desired, quarantine);
    expect(r.failed.map((f) => `${f.op.map} ${f.op.op}`)).toEqual(["Policy update"]);
    expect(r.fenced).toBe(1);
    expect(syn(80).dropReason).toBe(C.DROP_POLICY_DENY);
  });

  it("F2/F3: when the fence fails too, the endpoint is quarantined until its policy is in place", () => {
    const quarantine = new Set<number>();
    const { current, desired } = state([ALLOW_443, INGRESS_B]);
    const r = reconcileFailClosed(targets({ Policy: { delete: true, update: true } }), current, desired, quarantine);
    expect(r.fenced).toBe(0);
    expect(r.quarantined).toEqual([POD_A.epId]);
    expect(r.failOpen).toEqual([]);
    // Everything from and to the endpoint is dropped, the allowed flow too: closed, not open.
    expect(syn(80).dropReason).toBe(C.DROP_INVALID_SIP);
    expect(syn(443).dropReason).toBe(C.DROP_INVALID_SIP);
    expect(toA().dropReason).toBe(C.DROP_UNROUTABLE);

    // Still failing: a retry keeps it out (the endpoint is not written back before its policy).
    const s2 = state([ALLOW_443, INGRESS_B]);
    const r2 = reconcileFailClosed(targets({ Policy: { delete: true, update: true } }), s2.current, { ...s2.desired, Endpoints: current.Endpoints }, quarantine);
    expect(r2.released).toEqual([]);
    expect(syn(443).dropReason).toBe(C.DROP_INVALID_SIP);

    // The fault is gone: the policy goes in first, then the endpoint comes back.
    const s3 = state([ALLOW_443, INGRESS_B]);
    const r3 = reconcileFailClosed(targets({}), s3.current, { ...s3.desired, Endpoints: current.Endpoints }, quarantine);
    expect(r3.failed).toEqual([]);
    expect(r3.released).toEqual([POD_A.epId]);
    expect(quarantine.size).toBe(0);
    expect(syn(80).dropReason).toBe(C.DROP_POLICY);
    expect(syn(443).verdict).toBe(C.CTX_ACT_OK);
  });

  it("F2: a deny that cannot be added (a full map) quarantines the endpoint, since a shorter allow may cover it", () => {
    const quarantine = new Set<number>();
    // A deny for port 443 from every identity, under the identity-specific allow's L3 wildcard below.
    const wide: PolicyRule = { epId: POD_A.epId, egress: true, identity: 0 };
    dp.map(MAP_SPECS.Policy).delete({ prefixlen: C.POLICY_STATIC_PREFIX + 24, secLabel: POD_B.identity, epId: POD_A.epId, egress: 1, protocol: TCP, dport: 443 });
    addPolicy(dp, wide);
    const denyAll443: PolicyRule = { epId: POD_A.epId, egress: true, identity: 0, proto: TCP, port: 443, deny: true };
    const { current, desired } = state([ALLOW_80, wide, denyAll443, INGRESS_B]);
    expect(syn(443).verdict, "allowed by the wildcard before the change").toBe(C.CTX_ACT_OK);
    const r = reconcileFailClosed(targets({ Policy: { add: true } }), current, desired, quarantine);
    expect(r.failed.map((f) => `${f.op.map} ${f.op.op}`)).toEqual(["Policy add"]);
    expect(r.quarantined).toEqual([POD_A.epId]);
    expect(syn(443).dropReason).toBe(C.DROP_INVALID_SIP);

    const s2 = state([ALLOW_80, wide, denyAll443, INGRESS_B]);
    const r2 = reconcileFailClosed(targets({}), s2.current, { ...s2.desired, Endpoints: current.Endpoints }, quarantine);
    expect(r2.released).toEqual([POD_A.epId]);
    expect(syn(443).dropReason).toBe(C.DROP_POLICY_DENY);
    expect(syn(80).verdict).toBe(C.CTX_ACT_OK);
  });
});

const kernel = kernelSuite("reconcile F1–F3 against a frozen kernel map", ["root", "libbpf", "bpffs", "clang"]);

describe.skipIf(kernel.skip)("the kernel refuses the policy writes (BPF_MAP_FREEZE on the policy map)", () => {
  let engine: KernelDatapath | undefined;
  afterEach(() => engine?.close());

  it("F2: the revoked allow cannot be deleted nor fenced, so the endpoint is quarantined; nothing revoked passes; the metric counts it", async () => {
    engine = new KernelDatapath({ capacities: TEST_CAPACITIES });
    dp = engine;
    standardNode(dp);
    for (const r of [ALLOW_80, ALLOW_443, INGRESS_B]) addPolicy(dp, r);
    expect(syn(80).verdict).toBe(C.CTX_ACT_OK);
    expect(syn(443).verdict).toBe(C.CTX_ACT_OK);

    (dp.map(MAP_SPECS.Policy) as BpfMapHandle<unknown, unknown>).raw.freeze();
    // The kernel, not a test double, refuses: a write from user space fails with EPERM.
    expect(() => addPolicy(dp, { ...ALLOW_80, port: 8080 })).toThrow(/EPERM/);

    const quarantine = new Set<number>();
    const { current, desired } = state([ALLOW_443, INGRESS_B]);
    const r = reconcileFailClosed(targets({}), current, desired, quarantine);
    expect(r.failed.map((f) => `${f.op.map} ${f.op.op}`)).toEqual(["Policy delete"]);
    expect(r.failed[0]!.error.message).toMatch(/EPERM/);
    expect(r.fenced, "the deny fence is a write to the frozen map too").toBe(0);
    expect(r.quarantined).toEqual([POD_A.epId]);
    expect(r.failOpen).toEqual([]);
    // The kernel programs drop everything from and to the endpoint: the revoked flow (80) and, closed
    // rather than open, the still-allowed one (443).
    expect(syn(80).dropReason).toBe(C.DROP_INVALID_SIP);
    expect(syn(443).dropReason).toBe(C.DROP_INVALID_SIP);
    expect(toA().dropReason).toBe(C.DROP_UNROUTABLE);

    // A freeze lasts for the map's life: every retry keeps the endpoint out, and no revoked flow passes.
    for (let i = 0; i < 2; i++) {
      const again = state([ALLOW_443, INGRESS_B]);
      const r2 = reconcileFailClosed(targets({}), again.current, { ...again.desired, Endpoints: current.Endpoints }, quarantine);
      expect(r2.released).toEqual([]);
      expect(r2.failOpen).toEqual([]);
      expect(syn(80).verdict).toBe(C.CTX_ACT_DROP);
    }

    // What the agent reports for this reconcile (agent/agent.ts passes its ApplyResult to the metrics).
    const metrics = new AgentMetrics({} as never);
    metrics.observeReconcile({ ok: false, reason: "policy change", durationMs: 1, applied: r } as never);
    const text = await metrics.registry.getSingleMetricAsString("ciliate_policy_fail_closed_total");
    expect(text).toMatch(/^ciliate_policy_fail_closed_total\{action="quarantine"\} 1$/m);
    expect(text).not.toMatch(/action="fail_open"\} [1-9]/);
  }, 120_000);
});
