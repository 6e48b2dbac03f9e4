/*
 * `ciliate ui --server` in chromium, on a live Observer API: the agent's Observer server
 * (agent/observer-grpc.ts, on a unix socket) fed through its flow ring as the agent's datapath reader feeds
 * it, with the flows the simulator makes for the Star Wars Traffic. The page must say the server cannot
 * be reached before it is up, then draw what it holds, then follow: flows pushed later change an edge's
 * colour; a server that goes away and comes back is followed again from the last flow drawn. The flows cross gRPC as flow.proto Flows (no `ciliate` key), so the deciding rule names the
 * policy object without ciliate's rule index.
 */
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import type { Browser, Page } from "puppeteer-core";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { FlowStore } from "../../agent/flows.ts";
import { serveObserver, type ObserverServer } from "../../agent/observer-grpc.ts";
import type { FlowEvent } from "../../host/flows.ts";
import { Diagnostics } from "../../policy/index.ts";
import { loadFrom } from "../../sim/load.ts";
import { loadManifests } from "../../sim/manifests.ts";
import { Simulation } from "../../sim/simulator.ts";
import { ROOT } from "../cli/run.ts";
import { hasChromium, skipUnless } from "../helpers/tools.ts";
import { ARTIFACTS, clickEdge, drawnEdges, launchChromium, startUi, type UiProcess } from "../helpers/ui-page.ts";

const skip = skipUnless(hasChromium(), "chromium (apt package chromium, /usr/bin/chromium)");

const TIE = "workload:default/tiefighter->service:default/deathstar";
const XWING = "workload:default/xwing->service:default/deathstar";

/** The events of each Star Wars Traffic flow, by flow name. */
async function starwarsEvents(): Promise<Record<string, FlowEvent[]>> {
  const d = new Diagnostics(false, () => {});
  const l = loadFrom(loadManifests([`${ROOT}/scenarios/starwars`], d), {}, d);
  const sim = await Simulation.create(l.cluster, l.policy, { engine: "js" });
  try {
    return Object.fromEntries(l.cluster.traffic.map((f) => [f.name, sim.runFlow(f).events]));
  } finally {
    sim.close();
  }
}

async function until(page: Page, what: string, fn: () => boolean | undefined): Promise<void> {
  try {
    await page.waitForFunction(fn, { timeout: 20_000, polling: 100 });
  } catch (e) {
    throw new Error(`${what}: ${(e as Error).message}; status: ${await page.$eval("#status", (s) => s.textContent)}`);
  }
}

describe.skipIf(skip)("ciliate ui --server in chromium: a live Observer API", () => {
  let dir: string;
  let browser: Browser;
  let ui: UiProcess;
  let observer: ObserverServer | undefined;
  let store: FlowStore;
  beforeAll(async () => {
    dir = mkdtempSync(join(tmpdir(), "ciliate-ui-live-"));
    [browser, ui] = await Promise.all([launchChromium(), startUi("--server", `unix://${join(dir, "hubble.sock")}`)]);
  });
  afterAll(async () => {
    await browser?.close();
    expect(await ui?.stop()).toBe(0);
    await observer?.close();
    rmSync(dir, { recursive: true, force: true });
  });

  it("says the server is unreachable, draws its flows once it is up, and follows new ones", async () => {
    const events = await starwarsEvents();
    const page = await browser.newPage();
    await page.setViewport({ width: 1480, height: 520 });
    await page.goto(ui.url);
    await until(page, "the unreachable server reported", () => document.querySelector("#status.error")?.textContent?.includes("cannot reach") ?? false);
    expect(await page.$("svg#service-map")).toBeNull();

    store = new FlowStore(1000);
    for (const f of [...events["tiefighter-lands"]!, ...events["xwing-lands"]!]) store.push(f);
    observer = await serveObserver({ store, nodeName: "node-1", version: "ciliate-test", startedAt: new Date() }, join(dir, "hubble.sock"));
    await until(page, "the held flows drawn", () => document.querySelector('path.edge[data-status="dropped"]') !== null && document.querySelector('path.edge[data-status="forwarded"]') !== null);
    expect(await page.$eval("#status", (s) => [s.textContent, s.className])).toEqual(["following", ""]);
    let edges = await drawnEdges(page);
    expect(edges[TIE]).toEqual({ status: "forwarded", stroke: "rgb(46, 158, 68)" });
    expect(edges[XWING]).toEqual({ status: "dropped", stroke: "rgb(214, 45, 32)" });

    // Followed: the exhaust-port PUT arrives after the page was drawn and turns tiefighter's edge mixed.
    for (const f of events["tiefighter-exhaust-port"]!) store.push({ ...f, time: new Date().toISOString() });
    await until(page, "the followed flow drawn", () => document.querySelector('path.edge[data-edge="workload:default/tiefighter->service:default/deathstar"]')?.getAttribute("data-status") === "mixed");
    edges = await drawnEdges(page);
    expect(edges[TIE]).toEqual({ status: "mixed", stroke: "rgb(240, 140, 0)" });

    const x = await clickEdge(page, XWING);
    expect(x.map((c) => [c.verdict, c.decidedBy])).toEqual([["DROPPED", "no rule allows it (default deny, POLICY_DENIED)"]]);
    const t = await clickEdge(page, TIE);
    expect(t.map((c) => c.verdict)).toEqual(["FORWARDED", "DROPPED"]);
    // Through gRPC the policy is Hubble's Policy message: the object, without ciliate's rule index.
    expect(t[0]!.decidedBy).toBe("egress: allowed by derived; ingress: allowed by CiliumNetworkPolicy default/rule1");
    expect(t[1]!.decidedBy).toMatch(/^L7 request refused by the proxy \(HTTP\/1\.1 PUT .*exhaust-port\); L3\/L4 allowed by CiliumNetworkPolicy default\/rule1$/);
    await page.screenshot({ path: join(ARTIFACTS, "live-starwars.png") });
  });

  it("when the server goes away it says so, and when it is back it goes on from the last flow it had (none twice)", async () => {
    const page = await browser.newPage();
    await page.goto(ui.url);
    const count = () => page.$eval("#count", (c) => Number.parseInt(c.textContent ?? "", 10));
    await page.waitForFunction(() => /^\d+ flows$/.test(document.querySelector("#count")?.textContent ?? ""));
    const before = await count();
    await observer!.close();
    await until(page, "the lost server reported", () => document.querySelector("#status.error") !== null);
    // Flows the agent saw while the stream was down, and after: each comes once.
    const events = await starwarsEvents();
    const later = events["xwing-lands"]!.map((f, i) => ({ ...f, time: new Date(Date.now() + i).toISOString() }));
    for (const f of later) store.push(f);
    observer = await serveObserver({ store, nodeName: "node-1", version: "ciliate-test", startedAt: new Date() }, join(dir, "hubble.sock"));
    await until(page, "following again", () => document.querySelector("#status")?.textContent === "following");
    await page.waitForFunction((n) => Number.parseInt(document.querySelector("#count")?.textContent ?? "", 10) >= n, { timeout: 20_000 }, before + later.length);
    await new Promise((r) => setTimeout(r, 2500)); // one more poll: nothing more comes
    expect(await count()).toBe(before + later.length);
    // The same client address and port as before: the new events join xwing's connection.
    const [x] = await clickEdge(page, XWING);
    expect(x!.text).toContain(`${2 * later.length} event(s)`);
  });
});
