/*
 * `ciliate ui` on a live two-node cluster, in chromium: two `ciliate agent`s in network namespaces
 * (tests/agent/multinode-harness.ts, native routing), `ciliate relay` in front of their hubble.sock, and
 * `ciliate ui --server` on the relay. Real TCP from tiefighter and xwing (node-1) through the deathstar
 * ClusterIP to its pod on node-2, which admits org=empire only: the page must draw both nodes' flows as
 * one connection each — tiefighter → deathstar service green, xwing → service red, service → deathstar
 * orange — and a click must show the connections with what decided (the CiliumNetworkPolicy behind the
 * allowing entry's cookie, default deny for the drop) and events from both nodes. Kernel suite (root, libbpf, bpffs)
 * and chromium: skips outside CI without them, fails in CI.
 */
import { spawn, type ChildProcess } from "node:child_process";
import { join } from "node:path";
import type { Browser } from "puppeteer-core";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { kernelSuite } from "../../datapath/index.ts";
import { BIN, stopProcess, tool } from "../agent/e2e-helpers.ts";
import { MultiNodeCluster } from "../agent/multinode-harness.ts";
import { hasChromium, skipUnless } from "../helpers/tools.ts";
import { ARTIFACTS, clickEdge, drawnEdges, launchChromium, startUi, type UiProcess } from "../helpers/ui-page.ts";

const suite = kernelSuite("ui-cluster", ["root", "libbpf", "bpffs", "iproute2"]);
const noChromium = skipUnless(hasChromium(), "chromium (apt package chromium, /usr/bin/chromium)");
const c = new MultiNodeCluster({ nodes: 2, routingMode: "native", prefix: "cui" });

const POLICY = `apiVersion: cilium.io/v2
kind: CiliumNetworkPolicy
metadata: {name: rule1, namespace: default}
spec:
  endpointSelector: {matchLabels: {app.kubernetes.io/name: deathstar}}
  ingress:
  - fromEndpoints: [{matchLabels: {org: empire}}]
    toPorts: [{ports: [{port: "8080", protocol: TCP}]}]
`;
const CLUSTER_IP = "10.96.0.30";
const SERVICE = `apiVersion: v1
kind: Service
metadata: {name: deathstar, namespace: default}
spec:
  clusterIP: ${CLUSTER_IP}
  selector: {app.kubernetes.io/name: deathstar}
  ports: [{name: http, port: 80, targetPort: 8080, protocol: TCP}]
`;

const TIE = "workload:default/tiefighter->service:default/deathstar";
const XWING = "workload:default/xwing->service:default/deathstar";
const BACKEND = "service:default/deathstar->workload:default/deathstar";

describe.skipIf(suite.skip || noChromium)("ciliate ui on a live two-node cluster through ciliate relay (chromium)", () => {
  let relay: ChildProcess | undefined;
  let ui: UiProcess | undefined;
  let browser: Browser | undefined;
  beforeAll(async () => {
    await c.setup();
    c.writeManifest("policy.yaml", POLICY);
    c.writeManifest("service.yaml", SERVICE);
    c.addPod(1, "tiefighter", { "app.kubernetes.io/name": "tiefighter", org: "empire" });
    c.addPod(1, "xwing", { "app.kubernetes.io/name": "xwing", org: "alliance" });
    c.addPod(2, "deathstar", { "app.kubernetes.io/name": "deathstar", org: "empire" });
    c.serve("deathstar");
    await c.converged();
    const relaySock = join(c.dir, "relay", "hubble-relay.sock");
    relay = spawn(process.execPath, [BIN, "relay", "--peer", `unix://${join(c.node(1).stateDir, "hubble.sock")}`, "--peer", `unix://${join(c.node(2).stateDir, "hubble.sock")}`, "--socket", relaySock], { stdio: "ignore" });
    [ui, browser] = await Promise.all([startUi("--server", `unix://${relaySock}`), launchChromium()]);
  }, 240_000);

  afterAll(async () => {
    await browser?.close();
    if (ui) expect(await ui.stop()).toBe(0);
    await stopProcess(relay);
    await c.cleanup();
  });

  it("draws both nodes' flows coloured by verdict, and a click shows the connections with the deciding rule", async () => {
    expect(tool(c.pod("tiefighter").ns, "tcp", CLUSTER_IP, 80), c.logs()).toEqual({ ok: true, reply: "deathstar" });
    expect(tool(c.pod("xwing").ns, "tcp", CLUSTER_IP, 80).ok).toBe(false);
    const page = await browser!.newPage();
    await page.setViewport({ width: 1480, height: 520 });
    await page.goto(ui!.url);
    await page
      .waitForFunction((t, x) => document.querySelector(`path.edge[data-edge="${t}"]`)?.getAttribute("data-status") === "forwarded" && document.querySelector(`path.edge[data-edge="${x}"]`)?.getAttribute("data-status") === "dropped", { timeout: 30_000, polling: 200 }, TIE, XWING)
      .catch(async (e: Error) => {
        throw new Error(`${e.message}; page: ${await page.evaluate(() => document.body.innerText)}; edges: ${JSON.stringify(await drawnEdges(page))}`);
      });
    const edges = await drawnEdges(page);
    expect(edges[TIE]).toEqual({ status: "forwarded", stroke: "rgb(46, 158, 68)" });
    expect(edges[XWING]).toEqual({ status: "dropped", stroke: "rgb(214, 45, 32)" });
    // node-1 translated the ClusterIP and names the service; node-2 saw the backend and dropped xwing.
    expect(edges[BACKEND]).toEqual({ status: "mixed", stroke: "rgb(240, 140, 0)" });
    const cards = await page.$$eval("g.node", (gs) => gs.map((g) => g.getAttribute("data-node")));
    expect(cards).toEqual(["service:default/deathstar", "workload:default/deathstar", "workload:default/tiefighter", "workload:default/xwing"]);

    const x = await clickEdge(page, XWING);
    expect(x.length).toBeGreaterThanOrEqual(1);
    expect(x.every((conn) => conn.verdict === "DROPPED" && conn.decidedBy === "no rule allows it (default deny, POLICY_DENIED)")).toBe(true);
    const t = await clickEdge(page, TIE);
    expect(t.length).toBeGreaterThanOrEqual(1);
    expect(t[0]!.verdict).toBe("FORWARDED");
    expect(t[0]!.text).toContain("default/tiefighter → default/deathstar via default/deathstar 8080/TCP");
    // node-2's verdict names the rule behind the deciding entry's cookie (a Hubble Policy through gRPC).
    expect(t[0]!.decidedBy).toMatch(/^egress: allowed by .*; ingress: allowed by CiliumNetworkPolicy default\/rule1$/);
    // The connection's events come from both nodes: node-1's egress verdict and node-2's ingress verdict.
    expect(t[0]!.text).toContain("[node-1]");
    expect(t[0]!.text).toContain("[node-2]");
    await page.screenshot({ path: join(ARTIFACTS, "cluster-two-nodes.png") });
  });
});
