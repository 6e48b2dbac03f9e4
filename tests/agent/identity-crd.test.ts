/*
 * agent/identity-crd.ts (CiliumIdentity objects) against msw handlers that play the Kubernetes API server:
 * create with 409 on a taken name, merge patches, deletes with a resourceVersion precondition, list and
 * watch. Two allocators race for the same label set; watches held back make them create two numbers for
 * one label set, which must converge to the lowest; unused identities are collected.
 */
import { KubeConfig } from "@kubernetes/client-node";
import { http, HttpResponse } from "msw";
import { setupServer } from "msw/node";
import { afterAll, afterEach, beforeAll, beforeEach, describe, expect, it } from "vitest";
import { CrdAllocator, IDENTITY_PATH, type CiliumIdentity } from "../../agent/identity-crd.ts";

const API = "http://k8s-identity.test:6443";
const enc = new TextEncoder();
let objects = new Map<string, CiliumIdentity>();
let rv = 1;
let streams: ReadableStreamDefaultController<Uint8Array>[] = [];
/** Watch events held back while true (the watch lags), delivered on release. */
let holdWatch = false;
let held: string[] = [];

function emit(type: string, o: CiliumIdentity): void {
  const line = `${JSON.stringify({ type, object: o })}\n`;
  if (holdWatch) return void held.push(line);
  for (const s of streams) s.enqueue(enc.encode(line));
}

function releaseWatch(): void {
  holdWatch = false;
  for (const line of held) for (const s of streams) s.enqueue(enc.encode(line));
  held = [];
}

function mergePatch(target: Record<string, unknown>, patch: Record<string, unknown>): void {
  for (const [k, v] of Object.entries(patch)) {
    if (v === null) delete target[k];
    else if (typeof v === "object" && !Array.isArray(v)) {
      if (typeof target[k] !== "object" || target[k] === null) target[k] = {};
      mergePatch(target[k] as Record<string, unknown>, v as Record<string, unknown>);
    } else target[k] = v;
  }
}

const server = setupServer(
  http.get(`${API}${IDENTITY_PATH}`, ({ request }) => {
    if (new URL(request.url).searchParams.get("watch") === "true") {
      const stream = new ReadableStream<Uint8Array>({ start: (c) => void streams.push(c) });
      return new HttpResponse(stream, { headers: { "content-type": "application/json" } });
    }
    return HttpResponse.json({ kind: "CiliumIdentityList", apiVersion: "cilium.io/v2", metadata: { resourceVersion: String(rv) }, items: [...objects.values()] });
  }),
  http.get(`${API}${IDENTITY_PATH}/:name`, ({ params }) => {
    const o = objects.get(params.name as string);
    return o ? HttpResponse.json(o) : HttpResponse.json({ kind: "Status", code: 404 }, { status: 404 });
  }),
  http.post(`${API}${IDENTITY_PATH}`, async ({ request }) => {
    const o = (await request.json()) as CiliumIdentity;
    const name = o.metadata!.name!;
    if (objects.has(name)) return HttpResponse.json({ kind: "Status", code: 409, reason: "AlreadyExists" }, { status: 409 });
    o.metadata!.resourceVersion = String(++rv);
    objects.set(name, o);
    emit("ADDED", o);
    return HttpResponse.json(o, { status: 201 });
  }),
  http.patch(`${API}${IDENTITY_PATH}/:name`, async ({ params, request }) => {
    const o = objects.get(params.name as string);
    if (!o) return HttpResponse.json({ kind: "Status", code: 404 }, { status: 404 });
    expect(request.headers.get("content-type")).toBe("application/merge-patch+json");
    mergePatch(o as unknown as Record<string, unknown>, (await request.json()) as Record<string, unknown>);
    o.metadata!.resourceVersion = String(++rv);
    emit("MODIFIED", o);
    return HttpResponse.json(o);
  }),
  http.delete(`${API}${IDENTITY_PATH}/:name`, async ({ params, request }) => {
    const o = objects.get(params.name as string);
    if (!o) return HttpResponse.json({ kind: "Status", code: 404 }, { status: 404 });
    const body = (await request.json()) as { preconditions?: { resourceVersion?: string } };
    if (body.preconditions?.resourceVersion !== undefined && body.preconditions.resourceVersion !== o.metadata!.resourceVersion) return HttpResponse.json({ kind: "Status", code: 409, reason: "Conflict" }, { status: 409 });
    objects.delete(params.name as string);
    emit("DELETED", o);
    return HttpResponse.json({ kind: "Status", status: "Success" });
  }),
);

function kc(): KubeConfig {
  const k = new KubeConfig();
  k.loadFromOptions({ clusters: [{ name: "c", server: API, skipTLSVerify: true }], users: [{ name: "u", token: "t" }], contexts: [{ name: "x", cluster: "c", user: "u" }], currentContext: "x" });
  return k;
}

async function until(what: string, fn: () => boolean, ms = 5000): Promise<void> {
  const end = Date.now() + ms;
  while (!fn()) {
    if (Date.now() > end) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 20));
  }
}

const key = (app: string) => `k8s:app=${app};k8s:io.kubernetes.pod.namespace=default;`;
let agents: CrdAllocator[] = [];

async function agent(nodeName: string, clusterId = 0): Promise<CrdAllocator> {
  const a = new CrdAllocator({ kubeConfig: kc(), nodeName, clusterId, heartbeatMs: 100_000, heartbeatTimeoutMs: 1000 });
  await a.start();
  agents.push(a);
  return a;
}

beforeAll(() => server.listen({ onUnhandledRequest: "error" }));
beforeEach(() => {
  objects = new Map();
  rv = 1;
  streams = [];
  holdWatch = false;
  held = [];
});
afterEach(() => {
  for (const a of agents) a.abandon();
  agents = [];
});
afterAll(() => server.close());

describe("identity allocation with CiliumIdentity objects (crd mode)", () => {
  it("writes one object per number with the label set in security-labels and this node's reference", async () => {
    const a = await agent("node-a");
    const id = await a.allocate(key("web"));
    expect(id).toBe(256);
    const o = objects.get("256")!;
    expect(o["security-labels"]).toEqual({ "k8s:app": "web", "k8s:io.kubernetes.pod.namespace": "default" });
    expect(o.metadata!.labels).toEqual({ app: "web", "io.kubernetes.pod.namespace": "default" });
    expect(Object.keys(o.status!.nodes!)).toEqual(["node-a"]);
  });

  it("two agents racing for the same label set end with one number, both referencing it", async () => {
    const [a, b] = await Promise.all([agent("node-a"), agent("node-b")]);
    const apps = ["x", "y", "z", "w"];
    const [ra, rb] = await Promise.all([Promise.all(apps.map((x) => a.allocate(key(x)))), Promise.all(apps.map((x) => b.allocate(key(x))))]);
    expect(ra).toEqual(rb);
    expect(new Set(ra).size).toBe(apps.length);
    expect(objects.size).toBe(apps.length);
    for (const id of ra) expect(Object.keys(objects.get(String(id))!.status!.nodes!).sort()).toEqual(["node-a", "node-b"]);
  });

  it("a race that created two numbers for one label set converges to the lowest; gc removes the other", async () => {
    const [a, b] = await Promise.all([agent("node-a"), agent("node-b")]);
    holdWatch = true; // neither sees the other's object yet
    const [ia, ib] = await Promise.all([a.allocate(key("dup"), 300), b.allocate(key("dup"), 301)]);
    expect([ia, ib]).toEqual([300, 301]);
    releaseWatch();
    await until("both caches to name 300", () => a.lookup(key("dup")) === 300 && b.lookup(key("dup")) === 300);
    // node-b moves its reference to the winner; the loser becomes unreferenced.
    await until("node-b's reference to move", () => Object.keys(objects.get("300")!.status?.nodes ?? {}).includes("node-b") && Object.keys(objects.get("301")!.status?.nodes ?? {}).length === 0);
    expect(await a.gc()).toEqual([]);
    expect(await a.gc()).toEqual([301]);
    expect(objects.has("300")).toBe(true);
  });

  it("references that stop being refreshed go stale (a dead agent); gc then releases the identity, a live one is kept", async () => {
    const [a, b] = await Promise.all([agent("node-a"), agent("node-b")]);
    const gone = await a.allocate(key("only-a"));
    const kept = await b.allocate(key("only-b"));
    a.abandon(); // killed: no release, no heartbeat
    const later = Date.now() + 5000;
    await b.refresh(); // b is alive and refreshes
    expect(await b.gc(later - 4500)).toEqual([]); // still fresh
    expect(await b.gc(later)).toEqual([]); // stale: marked in this pass...
    await b.refresh();
    expect(await b.gc(later)).toEqual([gone]); // ...collected in the next; b's refreshed one stays
    expect(objects.has(String(kept))).toBe(true);
  });

  it("a released identity is collected after two passes unless referenced again in between", async () => {
    const a = await agent("node-a");
    const id = await a.allocate(key("temp"));
    await a.release(key("temp"));
    expect(objects.get(String(id))!.status?.nodes ?? {}).toEqual({});
    expect(await a.gc()).toEqual([]);
    // Referenced again between the passes: the resourceVersion changed, so the second pass keeps it.
    expect(await a.allocate(key("temp"))).toBe(id);
    expect(await a.gc()).toEqual([]);
    expect(objects.has(String(id))).toBe(true);
  });

  it("start() fails with a message when CiliumIdentities cannot be listed (no CRD)", async () => {
    server.use(http.get(`${API}${IDENTITY_PATH}`, () => HttpResponse.json({ kind: "Status", code: 404 }, { status: 404 })));
    const a = new CrdAllocator({ kubeConfig: kc(), nodeName: "node-a", startTimeoutMs: 1500 });
    await expect(a.start()).rejects.toThrow(/CiliumIdentity CRD installed|HTTP 404/);
    server.resetHandlers();
  });

  it("allocates in the cluster's range (cluster id in bits 16-23)", async () => {
    const a = await agent("node-a", 3);
    expect(await a.allocate(key("mesh"))).toBe(3 << 16);
  });
});
