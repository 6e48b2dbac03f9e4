/*
 * agent/crd-state.ts (CiliumEndpoint and CiliumNode objects) against the test API server
 * (tests/agent/fake-apiserver.cjs, a real HTTP server in a child process, both collections writable). Two
 * stores play two nodes: each sees the other's endpoints and node (not its own), with labels, namespace
 * labels and service account carried in the identity labels; a pod gone deletes its CiliumEndpoint; an
 * object of ours deleted behind our back is written again (R2); the API server gone keeps the last view, a
 * restarted one (that lost every object) gets them written again; close deletes what the node wrote; a
 * dual-stack node and endpoint arrive with both addresses and both pod CIDRs.
 */
import { KubeConfig } from "@kubernetes/client-node";
import { spawn, type ChildProcess } from "node:child_process";
import { mkdtempSync, renameSync, rmSync, writeFileSync } from "node:fs";
import { createServer } from "node:net";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { ciliumEndpointOf, CrdState, ENDPOINTS_PATH, NODES_PATH, parseCiliumEndpoint } from "../../agent/crd-state.ts";
import type { SharedEndpoint, SharedNode } from "../../agent/kvstore-state.ts";
import { podUidsOf } from "../../agent/shared-state.ts";
import { ROOT } from "./e2e-helpers.ts";

const dir = mkdtempSync(join(tmpdir(), "ciliate-crd-state-"));
let port = 0;
let api: ChildProcess | undefined;
const logs: string[] = [];

function writeState(): void {
  const f = join(dir, "apiserver.json");
  writeFileSync(`${f}.tmp`, JSON.stringify({ writable: [ENDPOINTS_PATH, NODES_PATH], [ENDPOINTS_PATH]: [], [NODES_PATH]: [] }));
  renameSync(`${f}.tmp`, f);
}

async function freePort(): Promise<number> {
  const s = createServer();
  await new Promise<void>((r) => s.listen(0, "127.0.0.1", r));
  const p = (s.address() as { port: number }).port;
  await new Promise((r) => s.close(r));
  return p;
}

async function startApi(): Promise<void> {
  api = spawn(process.execPath, [join(ROOT, "tests/agent/fake-apiserver.cjs"), join(dir, "apiserver.json"), String(port)], { stdio: "ignore" });
  await until(async () => (await fetch(`http://127.0.0.1:${port}${NODES_PATH}`).catch(() => undefined))?.status === 200, 10_000, () => "API server did not start");
}

async function stopApi(): Promise<void> {
  const a = api!;
  if (a.exitCode === null && a.signalCode === null) {
    const exited = new Promise((r) => a.once("exit", r));
    a.kill("SIGKILL");
    await exited;
  }
}

async function until(cond: () => boolean | Promise<boolean>, ms: number, why: () => string): Promise<void> {
  const end = Date.now() + ms;
  for (;;) {
    if (await cond()) return;
    if (Date.now() > end) throw new Error(`timed out: ${why()}`);
    await new Promise((r) => setTimeout(r, 50));
  }
}

async function apiList<T>(path: string): Promise<T[]> {
  return ((await (await fetch(`http://127.0.0.1:${port}${path}`)).json()) as { items: T[] }).items;
}

function kubeConfig(): KubeConfig {
  const kc = new KubeConfig();
  kc.loadFromOptions({ clusters: [{ name: "c", server: `http://127.0.0.1:${port}`, skipTLSVerify: true }], users: [{ name: "u", token: "t" }], contexts: [{ name: "x", cluster: "c", user: "u" }], currentContext: "x" });
  return kc;
}

const node = (i: number): SharedNode => ({ name: `node-${i}`, cluster: "c1", clusterId: 3, ip: `192.168.70.${i}`, podCIDR: `10.250.${i}.0/24` });
const ep = (i: number, pod: string, ip: string, extra: Partial<SharedEndpoint> = {}): SharedEndpoint => ({
  ip,
  hostIp: node(i).ip,
  identity: 0x30000 + 256 + i,
  node: `node-${i}`,
  namespace: "shop",
  pod,
  labels: { app: pod },
  namespaceLabels: {},
  ...extra,
});

let s1: CrdState;
let s2: CrdState;
const key = (e: SharedEndpoint) => `${e.namespace}/${e.pod} ${e.ip} ${e.identity} ${e.node} ${JSON.stringify(e.labels)} ${JSON.stringify(e.namespaceLabels)} ${e.serviceAccount ?? ""}`;

beforeAll(async () => {
  port = await freePort();
  writeState();
  await startApi();
  s1 = new CrdState({ kubeConfig: kubeConfig(), node: node(1), log: (m) => logs.push(`[1] ${m}`), retryMs: 200 });
  s2 = new CrdState({ kubeConfig: kubeConfig(), node: node(2), log: (m) => logs.push(`[2] ${m}`), retryMs: 200 });
  await Promise.all([s1.start(), s2.start()]);
}, 30_000);

afterAll(async () => {
  s1?.abandon();
  s2?.abandon();
  if (api) await stopApi();
  rmSync(dir, { recursive: true, force: true });
});

describe("CiliumEndpoint / CiliumNode shared state (agent/crd-state.ts)", () => {
  it("each node sees the other's node and endpoints, never its own, with labels from the identity labels", async () => {
    const a = ep(1, "web", "10.250.1.5", { namespaceLabels: { team: "blue" }, serviceAccount: "web-sa" });
    const b = ep(2, "db", "10.250.2.7");
    s1.publish([a]);
    s2.publish([b]);
    await until(() => s2.remoteEndpoints().length === 1 && s1.remoteEndpoints().length === 1, 10_000, () => logs.join("\n"));
    expect(s2.remoteEndpoints().map(key)).toEqual([key(a)]);
    expect(s1.remoteEndpoints().map(key)).toEqual([key(b)]);
    expect(s1.remoteNodes()).toEqual([node(2)]);
    expect(s2.remoteNodes()).toEqual([node(1)]);
    // As Cilium writes them: namespaced by the pod, the identity's labels, the node's IP.
    const [cep] = (await apiList<ReturnType<typeof ciliumEndpointOf>>(ENDPOINTS_PATH)).filter((o) => o.metadata!.name === "web");
    expect(cep!.metadata!.namespace).toBe("shop");
    expect(cep!.status).toMatchObject({ identity: { id: a.identity }, networking: { addressing: [{ ipv4: "10.250.1.5" }], node: "192.168.70.1" } });
    expect(cep!.status!.identity!.labels).toEqual(["k8s:app=web", "k8s:io.cilium.k8s.namespace.labels.team=blue", "k8s:io.cilium.k8s.policy.cluster=c1", "k8s:io.cilium.k8s.policy.serviceaccount=web-sa", "k8s:io.kubernetes.pod.namespace=shop"]);
    const cn = (await apiList<{ metadata: { name: string }; spec: unknown }>(NODES_PATH)).find((o) => o.metadata.name === "node-1");
    expect(cn!.spec).toEqual({ addresses: [{ type: "InternalIP", ip: "192.168.70.1" }], ipam: { podCIDRs: ["10.250.1.0/24"] } });
  }, 30_000);

  it("a pod gone deletes its CiliumEndpoint; an identity change patches it", async () => {
    s1.publish([ep(1, "web", "10.250.1.5", { identity: 0x30000 + 999 }), ep(1, "cart", "10.250.1.6")]);
    await until(() => s2.remoteEndpoints().map((e) => `${e.pod}:${e.identity}`).sort().join() === `cart:${0x30000 + 257},web:${0x30000 + 999}`, 10_000, () => JSON.stringify(s2.remoteEndpoints()));
    s1.publish([ep(1, "cart", "10.250.1.6")]);
    await until(() => s2.remoteEndpoints().map((e) => e.pod).join() === "cart", 10_000, () => JSON.stringify(s2.remoteEndpoints()));
    expect((await apiList<{ metadata: { name: string } }>(ENDPOINTS_PATH)).map((o) => o.metadata.name).sort()).toEqual(["cart", "db"]);
    await until(() => s1.synced(), 5000, () => "s1 not synced");
  }, 30_000);

  it("an object of ours deleted behind our back is written again", async () => {
    const r = await fetch(`http://127.0.0.1:${port}/apis/cilium.io/v2/namespaces/shop/ciliumendpoints/cart`, { method: "DELETE" });
    expect(r.status).toBe(200);
    await until(async () => (await apiList<{ metadata: { name: string } }>(ENDPOINTS_PATH)).some((o) => o.metadata.name === "cart"), 10_000, () => logs.join("\n"));
  }, 30_000);

  it("the API server gone: the last view is kept; restarted empty: every node's objects are written again", async () => {
    const before = s2.remoteEndpoints().map(key);
    await stopApi();
    s1.publish([ep(1, "cart", "10.250.1.6"), ep(1, "late", "10.250.1.9")]);
    await new Promise((r) => setTimeout(r, 1500));
    expect(s2.remoteEndpoints().map(key)).toEqual(before);
    expect(s2.remoteNodes()).toEqual([node(1)]);
    expect(s1.synced()).toBe(false);
    // Restarted without its objects (as an API server whose etcd lost its data).
    rmSync(join(dir, "apiserver.json.written"));
    writeState();
    await startApi();
    await until(() => s2.remoteEndpoints().map((e) => e.pod).sort().join() === "cart,late" && s1.remoteEndpoints().map((e) => e.pod).join() === "db", 20_000, () => `s1 sees ${JSON.stringify(s1.remoteEndpoints())} s2 sees ${JSON.stringify(s2.remoteEndpoints())}\n${logs.slice(-6).join("\n")}`);
    expect((await apiList<{ metadata: { name: string } }>(NODES_PATH)).map((o) => o.metadata.name).sort()).toEqual(["node-1", "node-2"]);
    expect(logs.some((l) => /write failed/.test(l))).toBe(true);
  }, 60_000);

  it("close deletes this node's objects; the other node's view follows", async () => {
    await s1.close();
    await until(() => s2.remoteEndpoints().length === 0 && s2.remoteNodes().length === 0, 10_000, () => JSON.stringify(s2.remoteEndpoints()));
    expect((await apiList<{ metadata: { name: string } }>(ENDPOINTS_PATH)).map((o) => o.metadata.name)).toEqual(["db"]);
    expect((await apiList<{ metadata: { name: string } }>(NODES_PATH)).map((o) => o.metadata.name)).toEqual(["node-2"]);
  }, 30_000);
});

describe("parseCiliumEndpoint", () => {
  const byIp = (ip: string) => (ip === "192.168.70.1" ? "node-1" : undefined);
  it("round-trips what ciliumEndpointOf writes; unknown node → undefined; bad fields → a reason", () => {
    const e = ep(1, "web", "10.250.1.5", { labels: { app: "web", tier: "front" }, namespaceLabels: { team: "x" }, serviceAccount: "sa" });
    expect(parseCiliumEndpoint(ciliumEndpointOf(e, "c1"), byIp)).toEqual(e);
    expect(parseCiliumEndpoint(ciliumEndpointOf({ ...e, hostIp: "192.168.70.9" }, "c1"), byIp)).toBeUndefined();
    const bad = ciliumEndpointOf(e, "c1");
    bad.status!.identity!.id = 0;
    expect(parseCiliumEndpoint(bad, byIp)).toMatch(/status\.identity\.id 0 is not an identity/);
    const noIp = ciliumEndpointOf(e, "c1");
    noIp.status!.networking!.addressing = [{ ipv6: "fd00::1" }];
    expect(parseCiliumEndpoint(noIp, byIp)).toMatch(/no IPv4 address/);
  });

  it("a CiliumEndpoint is owned by its Pod when the pod's uid is known (the uid of the source's Pod object)", () => {
    const e = ep(1, "web", "10.250.1.5");
    expect(ciliumEndpointOf(e, "c1").metadata!.ownerReferences).toBeUndefined();
    const pods = [
      { apiVersion: "v1", kind: "Pod", metadata: { name: "web", namespace: "shop" }, raw: { metadata: { name: "web", namespace: "shop", uid: "0f1e-web" } } },
      { apiVersion: "v1", kind: "Pod", metadata: { name: "db", namespace: "shop" }, raw: { metadata: { name: "db", namespace: "shop" } } },
      { apiVersion: "v1", kind: "Service", metadata: { name: "web", namespace: "shop" }, raw: { metadata: { uid: "svc" } } },
    ];
    const uids = podUidsOf(pods as never);
    expect([...uids]).toEqual([["shop/web", "0f1e-web"]]);
    expect(ciliumEndpointOf(e, "c1", uids.get("shop/web")).metadata!.ownerReferences).toEqual([{ apiVersion: "v1", kind: "Pod", name: "web", uid: "0f1e-web" }]);
  });
});

describe("dual-stack CiliumEndpoint / CiliumNode through the API server", () => {
  it("a dual-stack node and endpoint arrive whole at the other node: both addresses, both pod CIDRs", async () => {
    const dual = (i: number): SharedNode => ({ ...node(i), ip6: `fd00:70::${i}`, podCIDRv6: `fd00:250:${i}::/64` });
    const s3 = new CrdState({ kubeConfig: kubeConfig(), node: dual(3), log: (m) => logs.push(`[3] ${m}`), retryMs: 200 });
    const s4 = new CrdState({ kubeConfig: kubeConfig(), node: dual(4), log: (m) => logs.push(`[4] ${m}`), retryMs: 200 });
    try {
      await Promise.all([s3.start(), s4.start()]);
      const a = ep(3, "api", "10.250.3.5", { ip6: "fd00:250:3::5" });
      s3.publish([a]);
      s4.publish([]);
      await until(() => s4.remoteEndpoints().some((e) => e.pod === "api") && s4.remoteNodes().some((n) => n.name === "node-3"), 10_000, () => logs.join("\n"));
      expect(s4.remoteEndpoints().find((e) => e.pod === "api")).toEqual({ ...a, hostIp: node(3).ip });
      expect(s4.remoteNodes().find((n) => n.name === "node-3")).toEqual(dual(3));
      const [cep] = (await apiList<ReturnType<typeof ciliumEndpointOf>>(ENDPOINTS_PATH)).filter((o) => o.metadata!.name === "api");
      expect(cep!.status!.networking).toEqual({ addressing: [{ ipv4: "10.250.3.5", ipv6: "fd00:250:3::5" }], node: "192.168.70.3" });
      const cn = (await apiList<{ metadata: { name: string }; spec: unknown }>(NODES_PATH)).find((o) => o.metadata.name === "node-3");
      expect(cn!.spec).toEqual({ addresses: [{ type: "InternalIP", ip: "192.168.70.3" }, { type: "InternalIP", ip: "fd00:70::3" }], ipam: { podCIDRs: ["10.250.3.0/24", "fd00:250:3::/64"] } });
    } finally {
      await s3.close();
      await s4.close();
    }
  }, 30_000);
});
