/*
 * CNI fuzzing: `ciliate cni` (runCni, in process) with random and hostile environments (CNI_COMMAND,
 * CNI_CONTAINERID, CNI_NETNS, CNI_IFNAME, CNI_ARGS) and stdin (mutated network configurations, any JSON,
 * random bytes), against an agent API that records what reaches it. The contract (CNI spec): exit 0 or 1;
 * stdout is one JSON line — the result, the version list, or an error {cniVersion, code, msg} with a CNI
 * error code — or nothing for a successful DEL or CHECK; never a throw, never a hang. And: no name with shell or path characters reaches the agent.
 * FUZZ_RUNS scales the case count (default 300).
 */
import { mkdtempSync, rmSync } from "node:fs";
import type { Server } from "node:http";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import fc from "fast-check";
import { runCni } from "../../cli/commands/cni.ts";
import { serveApi, type Route } from "../../agent/api.ts";
import { endpointNamesProblem } from "../../agent/endpoint-names.ts";

const RUNS = Number(process.env.FUZZ_RUNS ?? 300);
const CNI_CODES = [1, 2, 3, 4, 5, 6, 7, 11, 999];
const dir = mkdtempSync(join(tmpdir(), "ciliate-fuzz-cni-"));
const socket = join(dir, "agent.sock");
let server: Server | undefined;
/** Every ADD/CHECK body that reached the agent. */
const received: Record<string, unknown>[] = [];

beforeAll(async () => {
  const record: Route = (b) => {
    received.push(b);
    return { cniVersion: "1.0.0", interfaces: [{ name: String(b.ifname) }], ips: [{ address: "10.244.0.9/32" }] };
  };
  server = await serveApi(socket, new Map<string, Route>([["POST /v1/cni/add", record], ["POST /v1/cni/check", record], ["POST /v1/cni/del", () => ({})]]));
});
afterAll(() => {
  server?.close();
  rmSync(dir, { recursive: true, force: true });
});

const HOSTILE = ["", " ", "..", "../../etc/passwd", "/var/run/netns/../../../etc", "a b", "$(reboot)", "`id`", "x;rm -rf /", "-j", "eth0\n", "e\u0000", "a".repeat(300), "/proc/1/ns/net", "lxc:1", "💥", "Default", "default/x"];
// Valid names half of the time, so that many requests get as far as the agent and the property "nothing
// invalid reaches it" is exercised, not only the early refusals.
const word = fc.oneof({ weight: 2, arbitrary: fc.constantFrom(...HOSTILE) }, { weight: 1, arbitrary: fc.string({ maxLength: 20 }) }, { weight: 3, arbitrary: fc.stringMatching(/^[a-z0-9][a-z0-9-]{0,10}$/) });
const env = fc.record(
  {
    CNI_COMMAND: fc.constantFrom("ADD", "ADD", "ADD", "DEL", "CHECK", "VERSION", "GC", "", "add"),
    CNI_CONTAINERID: fc.oneof(word, fc.stringMatching(/^[a-f0-9]{12,64}$/)),
    CNI_NETNS: fc.oneof(word, fc.constant("/var/run/netns/pod1"), fc.constant("/proc/1/ns/net")),
    CNI_IFNAME: fc.oneof(word, fc.constant("eth0"), fc.constant("eth0")),
    CNI_ARGS: fc.oneof(
      fc.tuple(word, word).map(([ns, name]) => `IgnoreUnknown=1;K8S_POD_NAMESPACE=${ns};K8S_POD_NAME=${name}`),
      fc.string({ maxLength: 60 }),
    ),
    CNI_PATH: fc.constant("/opt/cni/bin"),
  },
  { requiredKeys: ["CNI_COMMAND"] },
);
const stdin = fc.oneof(
  { weight: 4, arbitrary: fc.constant(JSON.stringify({ cniVersion: "1.0.0", name: "ciliate", type: "ciliate-cni", socket })) },
  fc.record({ cniVersion: fc.constantFrom("1.0.0", "0.4.0", "9.9.9", 1), name: fc.oneof(fc.constant("ciliate"), word), type: fc.constant("ciliate-cni"), socket: fc.constant(socket) }).map((c) => JSON.stringify(c)),
  fc.jsonValue().map((v) => JSON.stringify(v)),
  fc.string({ maxLength: 80 }),
  fc.uint8Array({ maxLength: 80 }).map((b) => Buffer.from(b).toString("latin1")),
);

describe("CNI fuzzing: hostile environments and configurations", () => {
  it(`${RUNS} invocations: exit 0/1, one JSON line with a CNI error code, no hostile name reaches the agent`, async () => {
    const codes = new Map<string, number>();
    await fc.assert(
      fc.asyncProperty(env, stdin, async (e, conf) => {
        let out = "";
        const started = Date.now();
        const code = await runCni(e, conf, (s) => void (out += s));
        expect([0, 1]).toContain(code);
        // DEL and CHECK succeed silently (CNI spec); everything else prints exactly one JSON line.
        if (code === 0 && (e.CNI_COMMAND === "DEL" || e.CNI_COMMAND === "CHECK")) {
          expect(out).toBe("");
          codes.set(`ok ${e.CNI_COMMAND}`, (codes.get(`ok ${e.CNI_COMMAND}`) ?? 0) + 1);
          return;
        }
        expect(out.endsWith("\n") && out.indexOf("\n") === out.length - 1, out).toBe(true);
        const o = JSON.parse(out) as Record<string, unknown>;
        if (code === 1) {
          expect(CNI_CODES).toContain(o.code);
          expect(typeof o.msg).toBe("string");
          expect(o.msg as string).not.toMatch(/\n/);
          codes.set(`error ${o.code}`, (codes.get(`error ${o.code}`) ?? 0) + 1);
        } else codes.set(`ok ${e.CNI_COMMAND}`, (codes.get(`ok ${e.CNI_COMMAND}`) ?? 0) + 1);
        expect(Date.now() - started).toBeLessThan(10_000);
      }),
      { numRuns: RUNS, seed: process.env.FUZZ_SEED ? Number(process.env.FUZZ_SEED) : undefined },
    );
    console.log(`CNI fuzz: ${RUNS} cases, ${[...codes].map(([k, v]) => `${k}: ${v}`).join(", ")}; ${received.length} requests reached the agent`);
    for (const b of received) expect(endpointNamesProblem(b as never), JSON.stringify(b)).toBeUndefined();
    expect(codes.get("error 4") ?? 0).toBeGreaterThan(0);
    // About 6% of the cases are valid end to end; far fewer would mean the generators stopped reaching it.
    expect(received.length).toBeGreaterThan(RUNS / 100);
    // The recording agent never fails, so a 999 would be the plugin failing on its own input.
    expect(codes.get("error 999") ?? 0).toBe(0);
  }, 300_000);

  const good = { CNI_COMMAND: "ADD", CNI_CONTAINERID: "abc123", CNI_NETNS: "/var/run/netns/pod1", CNI_IFNAME: "eth0", CNI_ARGS: "K8S_POD_NAMESPACE=default;K8S_POD_NAME=web-0" };
  const conf = JSON.stringify({ cniVersion: "1.0.0", name: "ciliate", type: "ciliate-cni", socket });
  const cases: [string, Record<string, string>, RegExp][] = [
    ["a pod name with shell characters", { CNI_ARGS: "K8S_POD_NAMESPACE=default;K8S_POD_NAME=$(reboot)" }, /K8S_POD_NAME "\$\(reboot\)" is not a Kubernetes pod name/],
    ["a pod name with a path", { CNI_ARGS: "K8S_POD_NAMESPACE=default;K8S_POD_NAME=../../etc/passwd" }, /K8S_POD_NAME/],
    ["a namespace with a path", { CNI_ARGS: "K8S_POD_NAMESPACE=../etc;K8S_POD_NAME=web" }, /K8S_POD_NAMESPACE "\.\."/],
    ["an interface name with a path", { CNI_IFNAME: "../../x" }, /CNI_IFNAME "\.\.\/\.\.\/x" must not contain \//],
    ["an interface name that is an option", { CNI_IFNAME: "-j" }, /CNI_IFNAME "-j" must not start with -/],
    ["an interface name with a space", { CNI_IFNAME: "eth0 up" }, /CNI_IFNAME/],
    ["an interface name over 15 bytes", { CNI_IFNAME: "a".repeat(16) }, /must be 1-15 bytes/],
    ["a netns path escaping with ..", { CNI_NETNS: "/var/run/netns/../../../etc/shadow" }, /CNI_NETNS .* normal form/],
    ["a netns name with shell characters", { CNI_NETNS: "x;reboot" }, /CNI_NETNS "x;reboot"/],
    ["a container id with a path", { CNI_CONTAINERID: "../../x" }, /CNI_CONTAINERID/],
  ];
  for (const [what, change, re] of cases)
    it(`refuses ${what} with CNI error 4 before calling the agent`, async () => {
      const before = received.length;
      let out = "";
      const code = await runCni({ ...good, ...change }, conf, (s) => void (out += s));
      expect(code).toBe(1);
      const o = JSON.parse(out) as { code: number; msg: string };
      expect(o.code).toBe(4);
      expect(o.msg).toMatch(re);
      expect(received.length).toBe(before);
    });

  it("passes valid names through", async () => {
    let out = "";
    expect(await runCni(good, conf, (s) => void (out += s))).toBe(0);
    expect(received.at(-1)).toMatchObject({ containerId: "abc123", pod: "default/web-0", ifname: "eth0" });
  });
});
