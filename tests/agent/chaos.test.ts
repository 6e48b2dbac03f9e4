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
import type { ChildProcess } from "node:child_process";
import { mkdirSync, mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { kernelSuite, removePinRoot } from "../../datapath/index.ts";
import { cni, eventually, serve, sh, startAgent, stopProcess, tool, toolAsync, writeFileAtomic } from "./e2e-helpers.ts";

const suite = kernelSuite("agent-chaos", ["root", "libbpf", "bpffs", "iproute2"]);
const TAG = `${process.pid % 10000}${Math.floor(Math.random() * 1000)}`;
const NS = (n: string) => `cic-${TAG}-${n}`;
const NODE = NS("node");
const PODS = ["client", "server", "other"];
const PIN = `/sys/fs/bpf/ciliate-test-${process.pid}-${Math.floor(Math.random() * 1e6)}`;
const KILLS = 4;

let dir = "";
let manifests = "";
let socket = "";
let agent: ChildProcess | undefined;
let agentLog = "";
const podIp = new Map<string, string>();
const servers: ChildProcess[] = [];

const POD_YAML = (name: string) => `apiVersion: v1
kind: Pod
metadata: {name: ${name}, namespace: default, labels: {app: ${name}}}
spec: {containers: [{name: c, image: x}]}
`;
/** Ingress to server on 8080 from the given apps. */
const POLICY_YAML = (apps: string[]) => `apiVersion: cilium.io/v2
kind: CiliumNetworkPolicy
metadata: {name: web, namespace: default}
spec:
  endpointSelector: {matchLabels: {app: server}}
  ingress:
${apps.map((a) => `  - fromEndpoints: [{matchLabels: {app: ${a}}}]\n    toPorts: [{ports: [{port: "8080", protocol: TCP}]}]\n`).join("")}`;

const write = (apps: string[]) => writeFileAtomic(join(manifests, "policy.yaml"), POLICY_YAML(apps));
const tcp = (from: string) => tool(NS(from), "tcp", podIp.get("server")!, 8080) as { ok: boolean };

async function start(): Promise<void> {
  agent = await startAgent(
    NODE,
    socket,
    ["-f", manifests, "--node-name", "node-1", "--node-ip", "192.168.60.1", "--pod-cidr", "10.244.11.0/24", "--bpffs", PIN, "--state-dir", join(dir, "state"), "--socket", socket, "--resync-interval", "100"],
    (d) => (agentLog += d),
  );
}

async function kill(): Promise<void> {
  const p = agent!;
  if (p.exitCode !== null || p.signalCode !== null) return;
  await new Promise<void>((resolve) => {
    p.once("exit", () => resolve());
    p.kill("SIGKILL");
  });
}

describe.skipIf(suite.skip)("ciliate agent: SIGKILL during reconcile, then restart (network namespaces)", () => {
  beforeAll(async () => {
    dir = mkdtempSync(join(tmpdir(), "ciliate-agent-chaos-"));
    manifests = join(dir, "manifests");
    mkdirSync(manifests);
    socket = join(dir, "state", "agent.sock");
    writeFileAtomic(join(manifests, "pods.yaml"), PODS.map(POD_YAML).join("---\n"));
    write(["client"]);
    for (const n of ["node", ...PODS]) sh("ip", ["netns", "add", NS(n)]);
    sh("ip", ["-n", NODE, "link", "set", "lo", "up"]);
    await start();
    for (const p of PODS) {
      const r = cni(socket, "ADD", { containerId: `chaos-${TAG}-${p}`, netns: `/var/run/netns/${NS(p)}`, pod: p });
      expect(r.code, JSON.stringify(r.out)).toBe(0);
      podIp.set(p, (r.out.ips as { address: string }[])[0]!.address.split("/")[0]!);
    }
    servers.push(serve(NS("server"), "server", 300_000));
    await new Promise((r) => setTimeout(r, 700));
  }, 60_000);

  afterAll(async () => {
    try {
      for (const s of servers) s.kill("SIGKILL");
      await stopProcess(agent);
    } finally {
      for (const n of ["node", ...PODS]) sh("ip", ["netns", "del", NS(n)], true);
      removePinRoot(PIN);
      if (dir) rmSync(dir, { recursive: true, force: true });
      if (process.env.CILIATE_E2E_LOG) console.log(agentLog);
    }
  }, 60_000);

  it(`keeps an established connection across ${KILLS} kills during reconciles, and the maps converge`, async () => {
    expect(tcp("client").ok, agentLog).toBe(true);
    expect(tcp("other").ok, agentLog).toBe(false);
    // One connection, a request every 100 ms, for as long as the kills and restarts take.
    const held = toolAsync(NS("client"), "hold", podIp.get("server")!, 8080, 45_000);
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
    expect(tcp("other").ok, agentLog).toBe(false);
    expect(tcp("client").ok, agentLog).toBe(true);
    write(["client", "other"]);
    await eventually(() => tcp("other").ok, 15_000, () => agentLog);
    expect(tcp("client").ok).toBe(true);

    // Converged: a graceful restart has nothing to change.
    await stopProcess(agent);
    const from = agentLog.length;
    await start();
    await new Promise((r) => setTimeout(r, 1500));
    const after = agentLog.slice(from);
    expect(after, after).not.toMatch(/reconcile \([^)]*\): \+\d+ ~\d+ -\d+ entries/);
    expect(after, after).not.toMatch(/map operations failed/);

    // And it still enforces changes.
    write(["client"]);
    await eventually(() => !tcp("other").ok, 15_000, () => agentLog);

    const h = (await held) as { sent: number; recv: number; error: string | null; maxGapMs: number };
    console.log(`chaos: ${KILLS} kills; held connection: ${h.sent} requests, ${h.recv} replies, longest wait ${h.maxGapMs} ms`);
    expect(h.error, `${JSON.stringify(h)}\n${agentLog}`).toBeNull();
    expect(h.recv, JSON.stringify(h)).toBe(h.sent);
    expect(h.sent).toBeGreaterThan(50);
  }, 180_000);
});
