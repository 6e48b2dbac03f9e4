/*
 * Chaos: the real `ciliate agent` is SIGKILLed while it reconciles a policy change, again and again, and
 * restarted each time (a node namespace, three pods joined by `ciliate cni`; bounded TCP from
 * tests/agent/pod-tool.cjs).
 *   1. A connection established before the first kill carries a request every 100 ms across every kill and
 *      restart without losing one: the attached programs and pinned maps keep forwarding while no agent runs.
 *   2. The maps converge: after the last restart, traffic follows the last manifests (the last policy
 *      change is in force), a graceful restart afterwards finds nothing to change (no "+a ~u -d" line in its
 *      reconcile log), and a further policy change is enforced.
 * Each kill lands at a different delay after the manifest write (0-240 ms; the agent polls every 100 ms), so
 * the kills fall before, during and after a reconcile.
 * Kernel suite: needs root, libbpf, bpffs and iproute2 (fails in CI without them); everything is removed in
 * afterAll.
 */
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { kernelSuite } from "../../datapath/index.ts";
import { E2eNode, eventually, podYaml, serve, stopProcess, tool, toolAsync } from "./e2e-helpers.ts";

const suite = kernelSuite("agent-chaos", ["root", "libbpf", "bpffs", "iproute2"]);
const PODS = ["client", "server", "other"];
const KILLS = 4;
const h = new E2eNode({ prefix: "cic", nodeIp: "192.168.60.1", podCidr: "10.244.11.0/24", pods: PODS.map((name) => ({ name })) });
const NS = (n: string) => h.ns(n);

/** Ingress to server on 8080 from the given apps. */
const POLICY_YAML = (apps: string[]) => `apiVersion: cilium.io/v2
kind: CiliumNetworkPolicy
metadata: {name: web, namespace: default}
spec:
  endpointSelector: {matchLabels: {app: server}}
  ingress:
${apps.map((a) => `  - fromEndpoints: [{matchLabels: {app: ${a}}}]\n    toPorts: [{ports: [{port: "8080", protocol: TCP}]}]\n`).join("")}`;

const write = (apps: string[]) => h.write("policy.yaml", POLICY_YAML(apps));
const tcp = (from: string) => tool(NS(from), "tcp", h.podIp.get("server")!, 8080) as { ok: boolean };

const start = () => h.startAgent();
const kill = () => h.killAgent();

describe.skipIf(suite.skip)("ciliate agent: SIGKILL during reconcile, then restart (network namespaces)", () => {
  beforeAll(async () => {
    h.setUp({ "pods.yaml": PODS.map((p) => podYaml(p)).join("---\n"), "policy.yaml": POLICY_YAML(["client"]) });
    await start();
    h.addPods();
    h.children.push(serve(NS("server"), "server", 300_000));
    await new Promise((r) => setTimeout(r, 700));
  }, 60_000);

  afterAll(() => h.tearDown(), 60_000);

  it(`keeps an established connection across ${KILLS} kills during reconciles, and the maps converge`, async () => {
    expect(tcp("client").ok, h.log).toBe(true);
    expect(tcp("other").ok, h.log).toBe(false);
    // One connection, a request every 100 ms, for as long as the kills and restarts take.
    const held = toolAsync(NS("client"), "hold", h.podIp.get("server")!, 8080, 45_000);
    await new Promise((r) => setTimeout(r, 500));
    let apps = ["client"];
    for (let k = 0; k < KILLS; k++) {
      apps = k % 2 === 0 ? ["client", "other"] : ["client"];
      write(apps);
      await new Promise((r) => setTimeout(r, k * 80));
      await kill();
      await start();
    }
    // Converged on the last write, whether or not its reconcile had run when the agent died: it alternates
    // allowing and removing "other", and KILLS is even, so the last one removed it.
    expect(apps).toEqual(["client"]);
    await new Promise((r) => setTimeout(r, 1000));
    expect(tcp("other").ok, h.log).toBe(false);
    expect(tcp("client").ok, h.log).toBe(true);
    write(["client", "other"]);
    await eventually(() => tcp("other").ok, 15_000, () => h.log);
    expect(tcp("client").ok).toBe(true);

    // Converged: a graceful restart has nothing to change.
    await stopProcess(h.agent);
    const from = h.log.length;
    await start();
    await new Promise((r) => setTimeout(r, 1500));
    const after = h.log.slice(from);
    expect(after, after).not.toMatch(/reconcile \([^)]*\): \+\d+ ~\d+ -\d+ entries/);
    expect(after, after).not.toMatch(/map operations failed/);

    // And it still enforces changes.
    write(["client"]);
    await eventually(() => !tcp("other").ok, 15_000, () => h.log);

    const r = (await held) as { sent: number; recv: number; error: string | null; maxGapMs: number };
    console.log(`chaos: ${KILLS} kills; held connection: ${r.sent} requests, ${r.recv} replies, longest wait ${r.maxGapMs} ms`);
    expect(r.error, `${JSON.stringify(r)}\n${h.log}`).toBeNull();
    expect(r.recv, JSON.stringify(r)).toBe(r.sent);
    expect(r.sent).toBeGreaterThan(50);
  }, 180_000);
});
