/*
 * `ciliate ui` in a real browser: Debian's chromium, headless, loads the Star Wars service map and must
 * draw the deathstar service and workloads in namespace default, xwing → deathstar red (dropped),
 * tiefighter → deathstar orange (mixed: landing allowed, the exhaust-port PUT refused by the L7 rule) or
 * green with only the landing flows; a click on an edge lists its connections with the rule that decided.
 * Screenshots go to build/test-artifacts/ui/ (CILIATE_TEST_ARTIFACTS). Without chromium the test skips
 * outside CI and fails in CI.
 */
import { join } from "node:path";
import type { Browser } from "puppeteer-core";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { hasChromium, skipUnless } from "../helpers/tools.ts";
import { ARTIFACTS, clickEdge, drawnEdges, launchChromium, openMap, startUi, type UiProcess } from "../helpers/ui-page.ts";

const skip = skipUnless(hasChromium(), "chromium (apt package chromium, /usr/bin/chromium)");

const TIE = "workload:default/tiefighter";
const XWING = "workload:default/xwing";
const DS = "workload:default/deathstar";
const SVC = "service:default/deathstar";
const RED = "rgb(214, 45, 32)";
const GREEN = "rgb(46, 158, 68)";
const ORANGE = "rgb(240, 140, 0)";

describe.skipIf(skip)("ciliate ui in chromium: the Star Wars service map", () => {
  let browser: Browser;
  let ui: UiProcess;
  beforeAll(async () => {
    [browser, ui] = await Promise.all([launchChromium(), startUi("-f", "scenarios/starwars")]);
  });
  afterAll(async () => {
    await browser?.close();
    expect(await ui?.stop()).toBe(0);
  });

  it("draws the namespace, the workloads, the deathstar service and the edges coloured by verdict", async () => {
    const page = await openMap(browser, ui.url);
    const cards = await page.evaluate(() => Array.from(document.querySelectorAll<SVGGElement>("g.node")).map((g) => [g.dataset.node, g.getAttribute("class"), g.querySelector(".title")!.textContent, g.querySelector(".sub")!.textContent]));
    expect(cards).toEqual([
      [SVC, "node service", "deathstar", "service"],
      [DS, "node workload", "deathstar", "2 pods: deathstar-0, deathstar-1"],
      [TIE, "node workload", "tiefighter", "1 pod: tiefighter"],
      [XWING, "node workload", "xwing", "1 pod: xwing"],
    ]);
    expect(await page.$$eval("g.ns text", (t) => t.map((x) => x.textContent))).toEqual(["namespace default"]);
    expect(await drawnEdges(page)).toEqual({
      [`${SVC}->${DS}`]: { status: "mixed", stroke: ORANGE },
      [`${TIE}->${SVC}`]: { status: "mixed", stroke: ORANGE },
      [`${XWING}->${SVC}`]: { status: "dropped", stroke: RED },
    });
    // Every card inside its namespace band, none on another.
    const boxes = await page.evaluate(() => {
      const band = document.querySelector("g.ns rect")!.getBoundingClientRect();
      return Array.from(document.querySelectorAll("g.node rect")).map((r) => {
        const b = r.getBoundingClientRect();
        return { inside: b.left >= band.left && b.right <= band.right && b.top >= band.top && b.bottom <= band.bottom, b: [b.left, b.top, b.right, b.bottom] };
      });
    });
    expect(boxes.every((b) => b.inside)).toBe(true);
    for (const [i, a] of boxes.entries()) for (const b of boxes.slice(i + 1)) expect(a.b[2] <= b.b[0] || b.b[2] <= a.b[0] || a.b[3] <= b.b[1] || b.b[3] <= a.b[1]).toBe(true);
    await page.screenshot({ path: join(ARTIFACTS, "starwars-map.png") });
  });

  it("a click on xwing → deathstar shows the dropped connection and why", async () => {
    const page = await openMap(browser, ui.url);
    const conns = await clickEdge(page, `${XWING}->${SVC}`);
    expect(conns).toHaveLength(1);
    expect(conns[0]!.verdict).toBe("DROPPED");
    expect(conns[0]!.decidedBy).toBe("no rule allows it (default deny, POLICY_DENIED)");
    expect(conns[0]!.text).toContain("(xwing-lands)");
    expect(conns[0]!.text).toContain("no entry allows identity 258 on this port (default deny)");
    await page.screenshot({ path: join(ARTIFACTS, "starwars-xwing.png") });
  });

  it("a click on tiefighter → deathstar shows the landing allowed by rule1 and the exhaust-port PUT refused at L7", async () => {
    const page = await openMap(browser, ui.url);
    const conns = await clickEdge(page, `${TIE}->${SVC}`);
    expect(conns.map((c) => c.verdict)).toEqual(["FORWARDED", "DROPPED"]);
    expect(conns[0]!.decidedBy).toBe("egress: allowed by derived allow-any-egress; ingress: allowed by CiliumNetworkPolicy default/rule1 rule 0 ingress[0]");
    expect(conns[1]!.decidedBy).toMatch(/^L7 request refused by the proxy \(HTTP\/1\.1 PUT http:\/\/deathstar\.default\.svc\.cluster\.local\/v1\/exhaust-port\)/);
    expect(await page.$eval("path.edge.selected", (p) => p.getAttribute("data-edge"))).toBe(`${TIE}->${SVC}`);
    await page.screenshot({ path: join(ARTIFACTS, "starwars-tiefighter.png") });
  });

  it("with only the landing flows, tiefighter → deathstar is green", async () => {
    const only = await startUi("-f", "scenarios/starwars", "--flow", "tiefighter-lands", "--flow", "xwing-lands");
    try {
      const page = await openMap(browser, only.url);
      const edges = await drawnEdges(page);
      expect(edges[`${TIE}->${SVC}`]).toEqual({ status: "forwarded", stroke: GREEN });
      expect(edges[`${XWING}->${SVC}`]).toEqual({ status: "dropped", stroke: RED });
      await page.screenshot({ path: join(ARTIFACTS, "starwars-landing.png") });
    } finally {
      expect(await only.stop()).toBe(0);
    }
  });
});
