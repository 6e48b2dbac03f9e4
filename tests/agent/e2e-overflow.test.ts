/*
 * End-to-end: the policy-map budget (`ciliate agent --policy-map-max`) on a node made of network namespaces.
 * The real agent runs with a budget of 64 entries per endpoint; pods join by `ciliate cni` ADD; traffic is
 * bounded TCP from tests/agent/pod-tool.cjs. Three pods: client, server and side (server and side listen on
 * TCP 80 and 81).
 *   1. A policy that fits is applied: client → server:80 allowed, client → server:81 dropped by policy.
 *   2. A change adds a policy that would give server more entries than the budget (80 ports over two rules,
 *      81 among them) and, in the same change, lets client reach side:81. The agent applies side's new policy
 *      but keeps server's last good one: server:80 still allowed (no connection lost while the change is
 *      applied), server:81 still dropped; `ciliate_policy_overflow_endpoints` is 1 and the log names the
 *      endpoint and the policies contributing. A further change while over budget keeps it so.
 *   3. Removing the offending policy clears the report, traffic is as before, and server's policy follows
 *      the manifests again (a rule for :81 takes effect).
 * Kernel suite: runs as root (fails in CI when it cannot); everything is removed in afterAll.
 */
import { rmSync } from "node:fs";
import { join } from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { kernelSuite } from "../../datapath/index.ts";
import { E2eNode, eventually, podYaml, serve, tool, toolAsync } from "./e2e-helpers.ts";

const suite = kernelSuite("agent-e2e-overflow", ["root", "libbpf", "bpffs", "iproute2"]);
const PODS = ["client", "server", "side"];
const BUDGET = 64;
const h = new E2eNode({ prefix: "cio", nodeIp: "192.168.58.1", podCidr: "10.244.3.0/24", metricsAddr: "127.0.0.1:19963", pods: PODS.map((name) => ({ name })), agentFlags: ["--policy-map-max", String(BUDGET)] });
const NS = (n: string) => h.ns(n);

/** A CiliumNetworkPolicy selecting app=`app`: one ingress rule from app=client per list of TCP ports. */
const CNP_YAML = (name: string, app: string, rules: number[][]) => `apiVersion: cilium.io/v2
kind: CiliumNetworkPolicy
metadata: {name: ${name}, namespace: default}
spec:
  endpointSelector: {matchLabels: {app: ${app}}}
  ingress:
${rules.map((ports) => `  - fromEndpoints: [{matchLabels: {app: client}}]\n    toPorts: [{ports: [${ports.map((p) => `{port: "${p}", protocol: TCP}`).join(", ")}]}]\n`).join("")}`;

const ports = (from: number, n: number) => Array.from({ length: n }, (_, i) => from + i);
/** 80 entries for server (two rules of 40 ports, the most a rule may list), 81 among them: over the budget. */
const WIDE_YAML = CNP_YAML("wide", "server", [[81, ...ports(2000, 39)], ports(3000, 40)]);

const write = (file: string, text: string) => h.write(file, text);
const metrics = () => h.metrics();
const gauge = (text: string, name: string) => Number(new RegExp(`^${name} (\\S+)$`, "m").exec(text)?.[1] ?? NaN);
const overflowEndpoints = () => gauge(metrics(), "ciliate_policy_overflow_endpoints");
const policyDenied = () => Number(/^ciliate_drop_count_total\{reason="POLICY_DENIED",direction="INGRESS"\} (\d+)$/m.exec(metrics())?.[1] ?? 0);
const tcp = (from: string, to: string, port: number) => tool(NS(from), "tcp", h.podIp.get(to)!, port);

/** client → `to`:`port` answered by `to`. */
function expectAllowed(to: string, port: number): void {
  expect(tcp("client", to, port), `client → ${to}:${port}\n${h.log}`).toEqual({ ok: true, reply: to });
}

/** client → `to`:`port` (a port `to` listens on) times out, and the datapath counted a policy drop for it. */
function expectDenied(to: string, port: number): void {
  const before = policyDenied();
  expect(tcp("client", to, port), `client → ${to}:${port}\n${h.log}`).toEqual({ ok: false, error: "timeout" });
  expect(policyDenied()).toBeGreaterThan(before);
}

describe.skipIf(suite.skip)("ciliate agent: an endpoint over the policy-map budget keeps its last good policy (network namespaces)", () => {
  beforeAll(async () => {
    h.setUp({ "pods.yaml": PODS.map((p) => podYaml(p)).join("---\n"), "web.yaml": CNP_YAML("web", "server", [[80]]), "side.yaml": CNP_YAML("side", "side", [[80]]) });
    await h.startAgent();
    h.addPods();
    for (const p of ["server", "side"]) h.children.push(serve(NS(p), p, 120_000, [80, 81]));
    await new Promise((r) => setTimeout(r, 700)); // servers listening
  }, 60_000);

  afterAll(() => h.tearDown(), 60_000);

  it("applies a policy that fits the budget: client → server:80 allowed, :81 dropped by policy", () => {
    expectAllowed("server", 80);
    expectDenied("server", 81);
    expectAllowed("side", 80);
    expectDenied("side", 81);
    expect(overflowEndpoints()).toBe(0);
    expect(h.log).not.toMatch(/policy-map entries, over the budget/);
  }, 30_000);

  it("keeps server's last good policy when a change would overflow its budget, updates the others, and reports it", async () => {
    const logFrom = h.log.length;
    // Connections to server:80 all through the change: the kept policy never has a hole.
    const during = toolAsync(NS("client"), "loop", h.podIp.get("server")!, 80, 3000, 20);
    await new Promise((r) => setTimeout(r, 300));
    write("wide.yaml", WIDE_YAML);
    write("side.yaml", CNP_YAML("side", "side", [[80, 81]]));
    await eventually(() => overflowEndpoints() === 1, 10_000, () => h.log);
    // The change was applied to side (its new rule works) ...
    await eventually(() => tcp("client", "side", 81).ok === true, 10_000, () => h.log);
    // ... but not to server, which would have allowed :81 had it been.
    expectAllowed("server", 80);
    expectDenied("server", 81);
    const d = await during;
    expect(d.fail, JSON.stringify(d)).toBe(0);
    expect(d.ok).toBeGreaterThan(10);
    const log = h.log.slice(logFrom);
    expect(log).toMatch(
      new RegExp(
        `error endpoint default/server needs \\d+ policy-map entries, over the budget of ${BUDGET}; ` +
          `policies contributing: CiliumNetworkPolicy/default/wide \\(80\\), CiliumNetworkPolicy/default/web \\(1\\); the endpoint keeps its last good policy`,
      ),
    );
    expect(log).not.toMatch(/endpoint default\/(client|side) needs/);
  }, 40_000);

  it("keeps server at its last good policy through a further change while it is still over budget", async () => {
    write("side.yaml", CNP_YAML("side", "side", [[80]]));
    await eventually(() => tcp("client", "side", 81).ok === false, 10_000, () => h.log);
    expect(overflowEndpoints()).toBe(1);
    expectAllowed("server", 80);
    expectDenied("server", 81);
    expectAllowed("side", 80);
  }, 30_000);

  it("returns to normal when the offending policy is removed, and server's policy follows the manifests again", async () => {
    const logFrom = h.log.length;
    rmSync(join(h.manifests, "wide.yaml"));
    await eventually(() => overflowEndpoints() === 0, 10_000, () => h.log);
    expectAllowed("server", 80);
    expectDenied("server", 81);
    // Not frozen: a change to server's own policy that fits the budget takes effect.
    write("web.yaml", CNP_YAML("web", "server", [[80, 81]]));
    await eventually(() => tcp("client", "server", 81).ok === true, 10_000, () => h.log);
    expectAllowed("server", 80);
    expect(overflowEndpoints()).toBe(0);
    expect(h.log.slice(logFrom)).not.toMatch(/policy-map entries, over the budget/);
  }, 40_000);
});
