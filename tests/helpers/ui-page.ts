// Drives `ciliate ui` for the browser tests: starts the command on a free port, and a headless chromium
// (puppeteer-core, Debian's /usr/bin/chromium) that reads the page the way a user does — edge colours as
// drawn, clicks at a point of an edge's curve.
import { spawn, type ChildProcess } from "node:child_process";
import { mkdirSync } from "node:fs";
import { join } from "node:path";
import type { Browser, Page } from "puppeteer-core";
import { ROOT } from "../cli/run.ts";
import { CHROMIUM } from "./tools.ts";

/** Where the browser tests leave their screenshots (CI keeps build/test-artifacts/). */
export const ARTIFACTS = process.env.CILIATE_TEST_ARTIFACTS ?? join(ROOT, "build/test-artifacts/ui");

export interface UiProcess {
  url: string;
  stderr: () => string;
  stop(): Promise<number | null>;
}

/** `ciliate ui ARGS --port 0`; resolves with the URL it prints. */
export function startUi(...args: string[]): Promise<UiProcess> {
  const child: ChildProcess = spawn(process.execPath, ["bin/ciliate.js", "ui", ...args, "--port", "0"], { cwd: ROOT, stdio: ["ignore", "pipe", "pipe"] });
  let out = "";
  let err = "";
  child.stderr!.on("data", (d) => (err += d));
  return new Promise((resolve, reject) => {
    const timer = setTimeout(() => reject(new Error(`ciliate ui did not start: ${err}`)), 60_000);
    child.on("exit", (code) => reject(new Error(`ciliate ui exited ${code}: ${err}`)));
    child.stdout!.on("data", (d) => {
      out += d;
      const m = /on (http:\/\/127\.0\.0\.1:\d+\/)/.exec(out);
      if (!m) return;
      clearTimeout(timer);
      resolve({
        url: m[1]!,
        stderr: () => err,
        stop: () =>
          new Promise((r) => {
            child.removeAllListeners("exit");
            child.once("exit", (code) => r(code));
            child.kill("SIGINT");
          }),
      });
    });
  });
}

export async function launchChromium(): Promise<Browser> {
  // Every browser test may save screenshots, whichever runs first.
  mkdirSync(ARTIFACTS, { recursive: true });
  const { default: puppeteer } = await import("puppeteer-core");
  return puppeteer.launch({ executablePath: CHROMIUM, headless: true, args: ["--no-sandbox", "--disable-gpu"] });
}

export async function openMap(browser: Browser, url: string): Promise<Page> {
  mkdirSync(ARTIFACTS, { recursive: true });
  const page = await browser.newPage();
  await page.setViewport({ width: 1480, height: 520 });
  await page.goto(url);
  await page.waitForSelector("svg#service-map path.edge");
  return page;
}

/** Every edge as drawn: its status attribute and its computed stroke colour. */
export function drawnEdges(page: Page): Promise<Record<string, { status: string; stroke: string }>> {
  return page.evaluate(() =>
    Object.fromEntries(Array.from(document.querySelectorAll<SVGPathElement>("path.edge")).map((p) => [p.dataset.edge!, { status: p.dataset.status!, stroke: getComputedStyle(p).stroke }])),
  );
}

/** Clicks the curve of edge `id` (40% along it) with the mouse and waits for its connections. */
export async function clickEdge(page: Page, id: string): Promise<{ verdict: string; text: string; decidedBy: string }[]> {
  const pt = await page.evaluate((edge) => {
    const path = document.querySelector<SVGPathElement>(`path.edge-hit[data-edge="${edge}"]`);
    if (!path) return undefined;
    const q = path.getPointAtLength(path.getTotalLength() * 0.4);
    const m = path.getScreenCTM()!;
    return { x: q.x * m.a + m.e, y: q.y * m.d + m.f };
  }, id);
  if (!pt) throw new Error(`no edge ${id} on the page`);
  await page.mouse.click(pt.x, pt.y);
  await page.waitForFunction((edge) => document.querySelector("aside.open")?.getAttribute("data-edge") === edge && document.querySelector("path.edge.selected")?.getAttribute("data-edge") === edge, {}, id);
  return page.evaluate(() =>
    Array.from(document.querySelectorAll<HTMLElement>("aside .conn")).map((c) => ({ verdict: c.dataset.verdict!, text: c.textContent!, decidedBy: c.querySelector(".decided-by")!.textContent! })),
  );
}
