/*
 * agent/crd-gc.ts: the garbage collection of CiliumNodes and CiliumEndpoints left by dead agents, and the
 * Lease election that picks the one agent doing it — the rules G1–G4 on fixed samples, then against the
 * test API server (tests/agent/fake-apiserver.cjs: Leases, CiliumNodes and CiliumEndpoints writable, the
 * Nodes and Pods collections from its state file, as the kubelets and the scheduler would write them):
 *   - agents racing for the lease: never two leaders at once, and a killed leader is replaced within the
 *     lease duration;
 *   - a killed agent (its store abandoned, its collector stopped) whose Node still exists keeps its objects
 *     through several passes, and restarted it finds and keeps them; its Node deleted, its CiliumNode and
 *     CiliumEndpoints go and the other node's view drops them within a bounded time (the node within
 *     2 × interval, its endpoints within 3 ×, plus a lease duration when the dead agent led).
 */
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { CrdGarbageCollector, gcPass, LEASE_PATH, LeaderElector, type GcInputs } from "../../agent/crd-gc.ts";
import { ciliumEndpointOf, ciliumNodeOf, CrdState, ENDPOINTS_PATH, NODES_PATH } from "../../agent/crd-state.ts";
import type { SharedEndpoint, SharedNode } from "../../agent/kvstore-state.ts";
import { FakeApi, until } from "./fake-api.ts";

const node = (i: number): SharedNode => ({ name: `node-${i}`, cluster: "c1", clusterId: 3, ip: `192.168.71.${i}`, podCIDR: `10.251.${i}.0/24` });
const ep = (i: number, pod: string, ip: string): SharedEndpoint => ({ ip, hostIp: node(i).ip, identity: 0x30000 + 256 + i, node: `node-${i}`, namespace: "shop", pod, labels: { app: pod }, namespaceLabels: {} });
const k8sNode = (name: string) => ({ apiVersion: "v1", kind: "Node", metadata: { name } });

describe("gcPass (G1–G4) on fixed samples", () => {
  const withRv = <T extends { metadata?: { resourceVersion?: string } }>(o: T, rv: string): T => ({ ...o, metadata: { ...o.metadata, resourceVersion: rv } });
  const cn1 = withRv(ciliumNodeOf(node(1)), "11");
  const cn2 = withRv(ciliumNodeOf(node(2)), "12");
  const cep1 = withRv(ciliumEndpointOf(ep(1, "web", "10.251.1.5"), "c1"), "21");
  const cep2 = withRv(ciliumEndpointOf(ep(2, "db", "10.251.2.5"), "c1"), "22");
  const owned = withRv(ciliumEndpointOf(ep(2, "api", "10.251.2.6"), "c1", "uid-api"), "23");

  it("G1/G3: an orphaned CiliumNode is marked, swept one interval later, its endpoints one pass after; a Node back unmarks", () => {
    const marks = new Map<string, number>();
    const inp = (nodes: string[], cns = [cn1, cn2]): GcInputs => ({ nodes: new Set(nodes), ciliumNodes: cns, endpoints: [cep1, cep2] });
    expect(gcPass(inp(["node-2"]), marks, 0, 1000)).toEqual({ nodes: [], endpoints: [] });
    expect([...marks.keys()]).toEqual(["node/node-1"]);
    // Not on the same pass again (a pass closer than half an interval is not a later pass).
    expect(gcPass(inp(["node-2"]), marks, 400, 1000)).toEqual({ nodes: [], endpoints: [] });
    // The Node back before the sweep: unmarked, and a later absence starts over.
    expect(gcPass(inp(["node-1", "node-2"]), marks, 1500, 1000)).toEqual({ nodes: [], endpoints: [] });
    expect(marks.size).toBe(0);
    gcPass(inp(["node-2"]), marks, 2000, 1000);
    // Swept; its endpoint's node is no longer live: the endpoint is marked in the same pass, swept one interval later.
    expect(gcPass(inp(["node-2"]), marks, 3000, 1000)).toEqual({ nodes: [["node-1", "11"]], endpoints: [] });
    expect([...marks.keys()].sort()).toEqual(["cep/shop/web", "node/node-1"]);
    expect(gcPass(inp(["node-2"], [cn2]), marks, 3400, 1000)).toEqual({ nodes: [], endpoints: [] });
    expect(gcPass(inp(["node-2"], [cn2]), marks, 4000, 1000)).toEqual({ nodes: [], endpoints: [["shop", "web", "21"]] });
    expect(gcPass({ nodes: new Set(["node-2"]), ciliumNodes: [cn2], endpoints: [cep2] }, marks, 5000, 1000)).toEqual({ nodes: [], endpoints: [] });
    expect(marks.size).toBe(0);
  });

  it("G1: a CiliumNode with an owner is left to the API's garbage collector", () => {
    const marks = new Map<string, number>();
    const withOwner = { ...cn1, metadata: { ...cn1.metadata, ownerReferences: [{ apiVersion: "v1", kind: "Node", name: "node-1", uid: "n1" }] } };
    for (const t of [0, 5000, 10_000]) expect(gcPass({ nodes: new Set(), ciliumNodes: [withOwner], endpoints: [] }, marks, t, 1000).nodes).toEqual([]);
  });

  it("G2: a Pod-owned CiliumEndpoint goes with its pod (gone, another uid, or finished), only when the Pods were listed", () => {
    const base = { nodes: new Set(["node-1", "node-2"]), ciliumNodes: [cn1, cn2], endpoints: [owned] };
    const judge = (pods: GcInputs["pods"]) => gcPass({ ...base, pods }, new Map(), 0, 1000).endpoints.map((e) => e[1]);
    expect(judge(undefined)).toEqual([]);
    expect(judge(new Map([["shop/api", { uid: "uid-api", phase: "Running" }]]))).toEqual([]);
    expect(judge(new Map())).toEqual(["api"]);
    expect(judge(new Map([["shop/api", { uid: "uid-other", phase: "Running" }]]))).toEqual(["api"]);
    expect(judge(new Map([["shop/api", { uid: "uid-api", phase: "Succeeded" }]]))).toEqual(["api"]);
  });

  it("G4: a failed list deletes nothing", () => {
    const marks = new Map([["node/node-1", 0]]);
    for (const inp of [{ ciliumNodes: [cn1], endpoints: [cep1] }, { nodes: new Set<string>(), endpoints: [cep1] }, { nodes: new Set<string>(), ciliumNodes: [cn1] }]) {
      expect(gcPass(inp, marks, 10_000, 1000)).toEqual({ nodes: [], endpoints: [] });
    }
    expect(marks.get("node/node-1")).toBe(0);
  });
});

describe("against the test API server", () => {
  const api = new FakeApi(mkdtempSync(join(tmpdir(), "ciliate-crd-gc-")));
  const logs: string[] = [];
  const writable = [LEASE_PATH, ENDPOINTS_PATH, NODES_PATH];
  const state = (nodes: string[]) => ({ writable, [LEASE_PATH]: [], [ENDPOINTS_PATH]: [], [NODES_PATH]: [], "/api/v1/nodes": nodes.map(k8sNode), "/api/v1/pods": [] });
  const stops: (() => void)[] = [];

  beforeAll(async () => {
    api.writeState(state(["node-1", "node-2"]));
    await api.start(NODES_PATH);
  }, 30_000);

  afterAll(async () => {
    for (const s of stops) s();
    await api.stop();
    rmSync(api.dir, { recursive: true, force: true });
  });

  it("agents racing for the lease: never two leaders; a killed leader is replaced within the lease duration", async () => {
    const electors = [1, 2, 3].map((i) => new LeaderElector({ kubeConfig: api.kubeConfig(), identity: `race-${i}`, leaseDurationMs: 3000, retryPeriodMs: 200, name: "race", log: (m) => logs.push(m) }));
    stops.push(...electors.map((e) => () => e.stop()));
    let most = 0;
    const sample = setInterval(() => (most = Math.max(most, electors.filter((e) => e.isLeader()).length)), 20);
    try {
      for (const e of electors) e.start();
      await until(() => electors.some((e) => e.isLeader()), 20_000, () => logs.join("\n"));
      const first = electors.findIndex((e) => e.isLeader());
      // Killed: it stops renewing and never releases.
      electors[first]!.stop();
      const killed = performance.now();
      await until(() => electors.some((e, i) => i !== first && e.isLeader()), 30_000, () => logs.join("\n"));
      const took = performance.now() - killed;
      console.log(`[crd-gc] lease 3 s: a new leader ${took.toFixed(0)} ms after the old one stopped renewing`);
      expect(took).toBeGreaterThan(2000); // not before the lease could expire (3 s, less one retry period of observation lag)
      const [lease] = await api.list<{ spec: { holderIdentity: string; leaseTransitions: number } }>(LEASE_PATH);
      expect(lease!.spec.holderIdentity).not.toBe(`race-${first + 1}`);
      expect(lease!.spec.leaseTransitions).toBeGreaterThanOrEqual(1);
      // A graceful stop hands the lease back: the third agent takes it at its next retry, well within the lease.
      const second = electors.findIndex((e) => e.isLeader());
      await electors[second]!.release();
      const released = performance.now();
      await until(() => electors.some((e, i) => i !== first && i !== second && e.isLeader()), 30_000, () => logs.join("\n"));
      console.log(`[crd-gc] lease handed back on a graceful stop: a new leader ${(performance.now() - released).toFixed(0)} ms after`);
    } finally {
      clearInterval(sample);
    }
    expect(most).toBe(1);
  }, 60_000);

  it("a killed agent's objects stay while its Node exists and after its restart; its Node deleted, they go and the other node drops them", async () => {
    const kc = api.kubeConfig();
    const start = async (i: number) => {
      const st = new CrdState({ kubeConfig: kc, node: node(i), log: (m) => logs.push(`[${i}] ${m}`), retryMs: 200 });
      const gc = new CrdGarbageCollector({ kubeConfig: kc, nodeName: `node-${i}`, intervalMs: 1000, leaseDurationMs: 3000, log: (m) => logs.push(`[${i}] ${m}`) });
      await st.start();
      gc.start();
      stops.push(() => (st.abandon(), gc.stop()));
      return { st, gc, kill: () => (st.abandon(), gc.stop()) };
    };
    const a1 = await start(1);
    const a2 = await start(2);
    a1.st.publish([ep(1, "web", "10.251.1.5"), ep(1, "cart", "10.251.1.6")]);
    a2.st.publish([ep(2, "db", "10.251.2.5")]);
    await until(() => a2.st.remoteEndpoints().length === 2 && a1.st.remoteEndpoints().length === 1, 20_000, () => logs.join("\n"));
    const names = async (path: string) => (await api.list<{ metadata: { name: string } }>(path)).map((o) => o.metadata.name).sort().join();
    // Killed (SIGKILL: nothing deleted). Its Node exists: the leader's passes keep its objects.
    a1.kill();
    await until(() => a2.gc.elector.isLeader(), 30_000, () => logs.join("\n"));
    const passes = a2.gc.passes;
    await until(() => a2.gc.passes >= passes + 4, 30_000, () => `passes ${a2.gc.passes}`);
    expect(await names(NODES_PATH)).toBe("node-1,node-2");
    expect(await names(ENDPOINTS_PATH)).toBe("cart,db,web");
    expect(a2.st.remoteNodes().map((n) => n.name)).toEqual(["node-1"]);
    // Restarted: it finds its objects and keeps them (writing the same again changes nothing).
    const b1 = await start(1);
    b1.st.publish([ep(1, "web", "10.251.1.5"), ep(1, "cart", "10.251.1.6")]);
    await until(() => b1.st.synced() && b1.st.remoteEndpoints().length === 1, 20_000, () => logs.join("\n"));
    const again = a2.gc.passes + b1.gc.passes;
    await until(() => a2.gc.passes + b1.gc.passes >= again + 3, 30_000, () => "no passes");
    expect(await names(ENDPOINTS_PATH)).toBe("cart,db,web");
    // Killed again, and its Node deleted (the node is gone for good).
    b1.kill();
    api.writeState(state(["node-2"]));
    const gone = performance.now();
    await until(() => a2.st.remoteNodes().length === 0 && a2.st.remoteEndpoints().length === 0, 30_000, () => `${JSON.stringify(a2.st.remoteNodes())}\n${logs.join("\n")}`);
    const viewDropped = performance.now() - gone;
    await until(async () => (await names(NODES_PATH)) === "node-2" && (await names(ENDPOINTS_PATH)) === "db", 30_000, () => logs.join("\n"));
    const objectsGone = performance.now() - gone;
    console.log(`[crd-gc] interval 1 s, lease 3 s: node-1's Node deleted → node-2 drops its node and endpoints ${viewDropped.toFixed(0)} ms after, its objects gone ${objectsGone.toFixed(0)} ms after`);
    // Bound: the mark (≤ 1 interval), the sweep one interval later for the node, one more for its endpoints; slack for the loaded machine.
    expect(viewDropped).toBeLessThan(2 * 1000 + 10_000);
    expect(objectsGone).toBeLessThan(3 * 1000 + 10_000);
    expect(logs.some((l) => /crd gc: deleted CiliumNode node-1 \(its Node is gone\)/.test(l))).toBe(true);
    // node-2's own objects were never touched.
    expect(a2.st.synced()).toBe(true);
  }, 120_000);
});
