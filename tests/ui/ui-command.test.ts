/*
 * `ciliate ui` as a user runs it, without a browser: the JSON the page polls (graph and an edge's
 * connections) over HTTP from the running command, the page and its script served, and every bad flag a
 * one-line error with exit 2.
 */
import { createServer } from "node:net";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { ciliate } from "../cli/run.ts";
import { startUi, type UiProcess } from "../helpers/ui-page.ts";

describe("ciliate ui over HTTP", () => {
  let ui: UiProcess;
  beforeAll(async () => {
    ui = await startUi("-f", "scenarios/starwars");
  });
  afterAll(async () => {
    expect(await ui?.stop()).toBe(0);
  });

  it("serves the page, its script, the graph and an edge's connections; nothing else", async () => {
    const page = await fetch(ui.url);
    expect(page.headers.get("content-type")).toMatch(/^text\/html/);
    expect(await page.text()).toContain('<script src="service-map.js"></script>');
    expect((await fetch(`${ui.url}service-map.js`)).status).toBe(200);
    const g = await (await fetch(`${ui.url}api/graph`)).json();
    expect(g).toMatchObject({ source: "simulation of scenarios/starwars", state: "complete" });
    expect(g.graph.edges.map((e: { id: string; status: string }) => `${e.id} ${e.status}`)).toEqual([
      "service:default/deathstar->workload:default/deathstar mixed",
      "workload:default/tiefighter->service:default/deathstar mixed",
      "workload:default/xwing->service:default/deathstar dropped",
    ]);
    const edge = await (await fetch(`${ui.url}api/edge?id=${encodeURIComponent("workload:default/xwing->service:default/deathstar")}`)).json();
    expect(edge.connections.map((c: { verdict: string; decidedBy: string }) => [c.verdict, c.decidedBy])).toEqual([["DROPPED", "no rule allows it (default deny, POLICY_DENIED)"]]);
    expect((await fetch(`${ui.url}api/edge?id=nope`)).status).toBe(404);
    expect((await fetch(`${ui.url}etc/passwd`)).status).toBe(404);
    expect((await fetch(`${ui.url}api/graph`, { method: "POST" })).status).toBe(405);
  });
});

describe("ciliate ui refuses bad input in one line (exit 2)", () => {
  const cases: [string[], RegExp][] = [
    [["ui"], /^ciliate: nothing to draw/],
    [["ui", "-f", "scenarios/starwars", "--server", "127.0.0.1:4245"], /^ciliate: give -f .* or --server .*, not both/],
    [["ui", "--server", "localhost"], /^ciliate: --server "localhost": expected host:port/],
    [["ui", "--server", "127.0.0.1:4245", "--flow", "x"], /^ciliate: --flow selects simulated Traffic: it needs -f/],
    [["ui", "-f", "scenarios/starwars", "--port", "70000"], /^ciliate: invalid --port 70000/],
    [["ui", "-f", "scenarios/starwars", "--flow", "nope"], /^ciliate: --flow nope: no Traffic flow has this name/],
  ];
  for (const [args, message] of cases)
    it(args.join(" "), () => {
      const r = ciliate(...args);
      expect(r.code).toBe(2);
      expect(r.stderr).toMatch(message);
      expect(r.stderr.trim().split("\n")).toHaveLength(1);
    });

  it("a port already taken", async () => {
    const taken = createServer();
    await new Promise<void>((r) => taken.listen(0, "127.0.0.1", r));
    try {
      const port = (taken.address() as { port: number }).port;
      const r = ciliate("ui", "-f", "scenarios/starwars", "--port", String(port));
      expect(r.code).toBe(2);
      expect(r.stderr).toMatch(new RegExp(`^ciliate: cannot serve on 127\\.0\\.0\\.1:${port}: .*EADDRINUSE`));
    } finally {
      taken.close();
    }
  });
});
