/*
 * The agent's security boundary, with the real `ciliate agent` in a node network namespace:
 *   1. Its API socket refuses callers that are not root: a child switched to nobody with setpriv gets
 *      EACCES, even where the directories on the way are open to everyone (the socket itself is 0600);
 *      root is answered.
 *   2. Pod names, namespaces, interface names and netns paths with shell or path characters, sent straight
 *      to the API (past the plugin's own checks), are refused with CNI error 4 and reach no command line
 *      and no path: no marker file appears, no link is created, no endpoint is recorded.
 *   3. Nothing the agent writes (state directory and files, socket, bpffs pins) is world-writable.
 * Kernel suite: needs root, libbpf, bpffs and iproute2 (fails in CI without them); everything is removed
 * in afterAll.
 */
import { spawnSync } from "node:child_process";
import { chmodSync, existsSync, lstatSync, mkdirSync, readdirSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { kernelSuite } from "../../datapath/index.ts";
import { callApi } from "../../agent/api.ts";
import { E2eNode, cni, podYaml, sh } from "./e2e-helpers.ts";

const suite = kernelSuite("agent-security", ["root", "libbpf", "bpffs", "iproute2"]);
const h = new E2eNode({ prefix: "cis", nodeIp: "192.168.59.1", podCidr: "10.244.9.0/24", pods: [], others: ["pod"] });
const TAG = h.tag;
const NODE = h.nodeNs;
const POD = h.ns("pod");
const PIN = h.pin;
const MARKER = join(tmpdir(), `ciliate-pwned-${TAG}`);

let stateDir = "";
let socket = "";

describe.skipIf(suite.skip)("ciliate agent: security boundary (network namespaces)", () => {
  beforeAll(async () => {
    h.setUp({ "pods.yaml": podYaml("web") });
    // Open directories on the way, so that only the socket's own mode can keep nobody out.
    chmodSync(h.dir, 0o755);
    const pub = join(h.dir, "run");
    mkdirSync(pub, { mode: 0o755 });
    chmodSync(pub, 0o755);
    socket = h.socket = join(pub, "agent.sock");
    stateDir = join(h.dir, "state");
    await h.startAgent();
  }, 60_000);

  afterAll(async () => {
    try {
      await h.tearDown();
    } finally {
      rmSync(MARKER, { force: true });
    }
  }, 60_000);

  it("refuses a caller that is not root (EACCES on the socket), answers root", async () => {
    const probe = `require("net").connect(${JSON.stringify(socket)}).on("connect",()=>{console.log("connected");process.exit(0)}).on("error",(e)=>{console.log(e.code);process.exit(0)})`;
    const asNobody = spawnSync("setpriv", ["--reuid=65534", "--regid=65534", "--clear-groups", "--inh-caps=-all", process.execPath, "-e", probe], { encoding: "utf8", timeout: 20_000 });
    expect(asNobody.stderr).toBe("");
    expect(asNobody.stdout.trim()).toBe("EACCES");
    // The refusal is the socket's: nobody can reach it (open directories) and it exists.
    expect(spawnSync("setpriv", ["--reuid=65534", "--regid=65534", "--clear-groups", "stat", socket], { timeout: 10_000 }).status).toBe(0);
    expect(lstatSync(socket).mode & 0o777).toBe(0o600);
    expect((await callApi(socket, "GET", "/v1/healthz")).status).toBe(200);
  }, 30_000);

  const hostile: [string, Record<string, string>][] = [
    ["a pod name running a command", { pod: `default/$(touch ${MARKER})` }],
    ["a pod name in backquotes", { pod: `default/\`touch ${MARKER}\`` }],
    ["a pod namespace with a path", { pod: "../../etc/web" }],
    ["a pod name with a newline", { pod: "default/web\nlevel=error msg=forged" }],
    ["an interface name with a path", { ifname: "../../../tmp/x" }],
    ["an interface name with a command", { ifname: `;touch ${MARKER}` }],
    ["an interface name that is an ip option", { ifname: "-batch" }],
    ["a netns path escaping with ..", { netns: `/var/run/netns/../../../${MARKER}` }],
    ["a netns name with a command", { netns: `$(touch ${MARKER})` }],
    ["a container id with a path", { containerId: "../../../../tmp/x" }],
  ];
  for (const [what, change] of hostile)
    it(`refuses ${what} sent straight to the API, before any command runs`, async () => {
      const linksBefore = sh("ip", ["-n", NODE, "-o", "link", "show"]);
      const body = { containerId: `sec${TAG}`, netns: `/var/run/netns/${POD}`, ifname: "eth0", pod: "default/web", cniVersion: "1.0.0", ...change };
      const r = await callApi(socket, "POST", "/v1/cni/add", body);
      expect(r.status, JSON.stringify(r.body)).toBe(400);
      expect(r.body).toMatchObject({ code: 4 });
      expect((r.body as { msg: string }).msg).toMatch(/^(CNI_CONTAINERID|CNI_NETNS|CNI_IFNAME|K8S_POD_NAMESPACE|K8S_POD_NAME|pod must be) /);
      expect(existsSync(MARKER)).toBe(false);
      expect(sh("ip", ["-n", NODE, "-o", "link", "show"])).toBe(linksBefore);
      expect(sh("ip", ["-n", POD, "-o", "link", "show"])).not.toMatch(/eth0/);
      expect((await callApi(socket, "GET", "/v1/endpoints")).body).toEqual([]);
      expect(h.log).not.toMatch(/level=error msg=forged/);
    }, 30_000);

  it("writes nothing world-writable: state directory and files, socket, pins", () => {
    // An endpoint first, so the agent has written its state and IPAM files.
    const r = cni(socket, "ADD", { containerId: `sec${TAG}`, netns: `/var/run/netns/${POD}`, pod: "web" });
    expect(r.code, JSON.stringify(r.out)).toBe(0);
    const seen: string[] = [];
    const walk = (p: string) => {
      const st = lstatSync(p);
      seen.push(p);
      expect(st.mode & 0o002, `${p} is world-writable (mode ${(st.mode & 0o7777).toString(8)})`).toBe(0);
      if (st.isDirectory()) for (const n of readdirSync(p)) walk(join(p, n));
    };
    walk(stateDir);
    walk(socket);
    walk(PIN);
    expect(seen.some((p) => p.endsWith("state.json"))).toBe(true);
    expect(seen.some((p) => p.startsWith(PIN) && p !== PIN)).toBe(true);
    expect(lstatSync(stateDir).mode & 0o077).toBe(0);
    expect(cni(socket, "DEL", { containerId: `sec${TAG}`, netns: `/var/run/netns/${POD}`, pod: "web" }).code).toBe(0);
  }, 60_000);
});
