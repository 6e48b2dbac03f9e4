/*
 * `ciliate cni` (cli/commands/cni.ts) against a stand-in agent API on a unix socket: VERSION, the
 * requests it forwards, the result it prints, and the CNI error codes for bad input and an unreachable agent.
 */
import { mkdtempSync, rmSync } from "node:fs";
import type { Server } from "node:http";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { serveApi, type Route } from "../../agent/api.ts";
import { AgentError } from "../../agent/defaults.ts";
import { runCni } from "../../cli/commands/cni.ts";

const dir = mkdtempSync(join(tmpdir(), "ciliate-cni-"));
const socket = join(dir, "api", "agent.sock");
const seen: Record<string, unknown>[] = [];
let server: Server;

beforeAll(async () => {
  const routes = new Map<string, Route>([
    ["POST /v1/cni/add", (b) => {
      seen.push(b);
      if (b.containerId === "exists") throw new AgentError("ENDPOINT_EXISTS", "container exists already", 4);
      return { cniVersion: "1.0.0", interfaces: [{ name: "lxc1", mac: "aa:bb:cc:dd:ee:ff" }], ips: [{ address: "10.244.1.2/32", gateway: "169.254.1.1", interface: 1 }], routes: [{ dst: "0.0.0.0/0", gw: "169.254.1.1" }], dns: {} };
    }],
    ["POST /v1/cni/del", (b) => (seen.push(b), {})],
    ["POST /v1/cni/check", (b) => (seen.push(b), {})],
  ]);
  server = await serveApi(socket, routes);
});
afterAll(() => {
  server.close();
  rmSync(dir, { recursive: true, force: true });
});

const conf = (extra: Record<string, unknown> = {}) => JSON.stringify({ cniVersion: "1.0.0", name: "ciliate", type: "ciliate-cni", socket, ...extra });
const env = (cmd: string, extra: Record<string, string> = {}) => ({ CNI_COMMAND: cmd, CNI_CONTAINERID: "abc123", CNI_NETNS: "/var/run/netns/pod", CNI_IFNAME: "eth0", CNI_ARGS: "IgnoreUnknown=1;K8S_POD_NAMESPACE=shop;K8S_POD_NAME=web-0", CNI_PATH: "/opt/cni/bin", ...extra });

async function cni(e: NodeJS.ProcessEnv, stdin: string): Promise<{ code: number; out: Record<string, unknown> }> {
  let text = "";
  const code = await runCni(e, stdin, (s) => (text += s));
  return { code, out: text.trim() ? JSON.parse(text) : {} };
}

describe("ciliate cni", () => {
  it("VERSION lists the supported spec versions", async () => {
    const r = await cni({ CNI_COMMAND: "VERSION" }, "");
    expect(r.code).toBe(0);
    expect(r.out.supportedVersions).toEqual(expect.arrayContaining(["0.4.0", "1.0.0"]));
  });

  it("ADD forwards container, netns, interface and pod to the agent and prints the result", async () => {
    const r = await cni(env("ADD"), conf());
    expect(r.code).toBe(0);
    expect(r.out).toMatchObject({ cniVersion: "1.0.0", ips: [{ address: "10.244.1.2/32" }] });
    expect(seen.at(-1)).toMatchObject({ containerId: "abc123", netns: "/var/run/netns/pod", ifname: "eth0", pod: "shop/web-0" });
  });

  it("DEL and CHECK succeed silently", async () => {
    expect(await cni(env("DEL"), conf())).toEqual({ code: 0, out: {} });
    expect(await cni(env("CHECK"), conf())).toEqual({ code: 0, out: {} });
  });

  it("answers CNI errors: bad JSON 6, unsupported version 1, missing variables 4, no name 7", async () => {
    expect((await cni(env("ADD"), "{not json")).out).toMatchObject({ code: 6 });
    expect((await cni(env("ADD"), conf({ cniVersion: "9.9.9" }))).out).toMatchObject({ code: 1 });
    expect((await cni(env("ADD", { CNI_CONTAINERID: "" }), conf())).out).toMatchObject({ code: 4 });
    expect((await cni(env("ADD", { CNI_NETNS: "" }), conf())).out).toMatchObject({ code: 4 });
    expect((await cni(env("BOGUS"), conf())).out).toMatchObject({ code: 4 });
    const r = await cni(env("ADD"), JSON.stringify({ cniVersion: "1.0.0", socket }));
    expect(r).toMatchObject({ code: 1, out: { code: 7, cniVersion: "1.0.0" } });
  });

  it("passes the agent's error code through (an ADD for an existing container)", async () => {
    const r = await cni(env("ADD", { CNI_CONTAINERID: "exists" }), conf());
    expect(r).toMatchObject({ code: 1, out: { code: 4, msg: "container exists already" } });
  });

  it("answers 11 (try again later) when the agent cannot be reached", async () => {
    const r = await cni(env("ADD"), conf({ socket: join(dir, "nope.sock") }));
    expect(r).toMatchObject({ code: 1, out: { code: 11 } });
  });
});
