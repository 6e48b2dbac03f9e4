/*
 * agent/k8s-source.ts against msw handlers that play a Kubernetes API server: lists, watch streams,
 * bookmarks, a dropped watch, a 410 Gone in the middle of a stream, and the API server going away.
 */
import { KubeConfig } from "@kubernetes/client-node";
import { http, HttpResponse } from "msw";
import { setupServer } from "msw/node";
import { afterAll, afterEach, beforeAll, describe, expect, it } from "vitest";
import { KubernetesSource, WATCHED_KINDS } from "../../agent/k8s-source.ts";

const API = "http://k8s.test:6443";

interface Res {
  items: Record<string, unknown>[];
  rv: number;
  lists: number;
  watches: URLSearchParams[];
  streams: ReadableStreamDefaultController<Uint8Array>[];
  failing: boolean;
}

const state = new Map<string, Res>();
const enc = new TextEncoder();

function reset(): void {
  for (const r of WATCHED_KINDS) state.set(r.path, { items: [], rv: 100, lists: 0, watches: [], streams: [], failing: false });
}

const pod = (name: string, rv: number, labels: Record<string, string> = { app: name }) => ({ metadata: { name, namespace: "default", labels, resourceVersion: String(rv) }, spec: { nodeName: "node-1", containers: [] }, status: { podIP: `10.244.1.${rv % 200}` } });

const handlers = WATCHED_KINDS.map((r) =>
  http.get(`${API}${r.path}`, ({ request }) => {
    const s = state.get(r.path)!;
    if (s.failing) return HttpResponse.error();
    const url = new URL(request.url);
    if (url.searchParams.get("watch") === "true") {
      s.watches.push(url.searchParams);
      const stream = new ReadableStream<Uint8Array>({ start: (c) => void s.streams.push(c) });
      return new HttpResponse(stream, { headers: { "content-type": "application/json" } });
    }
    s.lists++;
    return HttpResponse.json({ kind: `${r.kind}List`, apiVersion: r.apiVersion, metadata: { resourceVersion: String(s.rv) }, items: s.items });
  }),
);

const server = setupServer(...handlers);
let src: KubernetesSource | undefined;
let changes = 0;

beforeAll(() => server.listen({ onUnhandledRequest: "error" }));
afterEach(() => {
  src?.stop();
  src = undefined;
});
afterAll(() => server.close());

function kc(): KubeConfig {
  const k = new KubeConfig();
  k.loadFromOptions({ clusters: [{ name: "c", server: API, skipTLSVerify: true }], users: [{ name: "u", token: "t" }], contexts: [{ name: "x", cluster: "c", user: "u" }], currentContext: "x" });
  return k;
}

async function until(fn: () => boolean, ms = 5000): Promise<void> {
  const end = Date.now() + ms;
  while (!fn() && Date.now() < end) await new Promise((r) => setTimeout(r, 20));
  expect(fn()).toBe(true);
}

function send(path: string, ev: unknown): void {
  const s = state.get(path)!;
  s.streams.at(-1)!.enqueue(enc.encode(`${JSON.stringify(ev)}\n`));
}

const PODS = "/api/v1/pods";
const names = () => src!.objects().filter((o) => o.kind === "Pod").map((o) => o.metadata.name).sort();

async function started(): Promise<void> {
  changes = 0;
  src = new KubernetesSource(kc(), { restartDelayMs: 100, debounceMs: 10, log: () => {} });
  await src.start(() => changes++, 5000);
  await until(() => WATCHED_KINDS.every((r) => state.get(r.path)!.watches.length >= 1));
}

describe("KubernetesSource (msw API server)", () => {
  it("lists every kind, then applies watch events (ADDED, MODIFIED, DELETED) and calls onChange", async () => {
    reset();
    state.get(PODS)!.items = [pod("a", 101)];
    state.get("/apis/cilium.io/v2/ciliumnetworkpolicies")!.items = [{ metadata: { name: "p", namespace: "default", resourceVersion: "5" }, spec: { endpointSelector: {} } }];
    await started();
    expect(names()).toEqual(["a"]);
    const cnp = src!.objects().find((o) => o.kind === "CiliumNetworkPolicy")!;
    expect(cnp).toMatchObject({ apiVersion: "cilium.io/v2", metadata: { name: "p", namespace: "default" } });
    // Watches start at the list's resourceVersion and ask for bookmarks.
    expect(state.get(PODS)!.watches[0]!.get("resourceVersion")).toBe("100");
    expect(state.get(PODS)!.watches[0]!.get("allowWatchBookmarks")).toBe("true");
    send(PODS, { type: "ADDED", object: pod("b", 102) });
    await until(() => names().join() === "a,b");
    send(PODS, { type: "MODIFIED", object: pod("b", 103, { app: "other" }) });
    await until(() => src!.objects().find((o) => o.metadata.name === "b")?.metadata.labels?.app === "other");
    send(PODS, { type: "DELETED", object: pod("a", 104) });
    await until(() => names().join() === "b");
    await until(() => changes > 0);
  });

  it("moves on with bookmarks and re-watches from the last resourceVersion when a watch is dropped", async () => {
    reset();
    await started();
    send(PODS, { type: "BOOKMARK", object: { kind: "Pod", apiVersion: "v1", metadata: { resourceVersion: "250" } } });
    await new Promise((r) => setTimeout(r, 50));
    state.get(PODS)!.streams.at(-1)!.close(); // the server closes the watch
    await until(() => state.get(PODS)!.watches.length >= 2);
    expect(state.get(PODS)!.watches[1]!.get("resourceVersion")).toBe("250");
    expect(state.get(PODS)!.lists).toBe(1); // no relist for a dropped watch
  });

  it("relists after a 410 Gone in the middle of a stream", async () => {
    reset();
    state.get(PODS)!.items = [pod("a", 101), pod("gone-while-away", 102)];
    await started();
    expect(names()).toEqual(["a", "gone-while-away"]);
    state.get(PODS)!.items = [pod("a", 101), pod("new", 300)];
    state.get(PODS)!.rv = 300;
    send(PODS, { type: "ERROR", object: { kind: "Status", apiVersion: "v1", status: "Failure", reason: "Expired", code: 410, metadata: {} } });
    state.get(PODS)!.streams.at(-1)!.close();
    await until(() => state.get(PODS)!.lists === 2);
    await until(() => names().join() === "a,new");
    expect(state.get(PODS)!.watches.at(-1)!.get("resourceVersion")).toBe("300");
  });

  it("resyncs: hands the cache to the agent again every resyncMs without any event", async () => {
    reset();
    changes = 0;
    src = new KubernetesSource(kc(), { resyncMs: 50, debounceMs: 10, log: () => {} });
    await src.start(() => changes++, 5000);
    await until(() => changes >= 3);
    expect(state.get(PODS)!.lists).toBe(1);
  });

  it("keeps its objects while the API server is away, and catches up when it is back", async () => {
    reset();
    state.get(PODS)!.items = [pod("a", 101)];
    await started();
    const before = JSON.stringify(src!.objects());
    for (const s of state.values()) s.failing = true;
    state.get(PODS)!.streams.at(-1)!.error(new Error("connection reset"));
    await until(() => src!.errors > 0);
    await new Promise((r) => setTimeout(r, 300)); // restarts fail too
    expect(JSON.stringify(src!.objects())).toBe(before);
    state.get(PODS)!.items = [pod("a", 101), pod("b", 150)];
    state.get(PODS)!.rv = 150;
    for (const s of state.values()) s.failing = false;
    await until(() => names().join() === "a,b");
  });
});
