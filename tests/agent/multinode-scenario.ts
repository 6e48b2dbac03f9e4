/*
 * The workload the multi-node end-to-end suites share (native routing in e2e-multinode.test.ts, the
 * overlay in e2e-multinode-tunnel.test.ts), so both modes are held to the same verdicts: the policy, the
 * ClusterIP, the pods on each node, and the probes.
 */
import { execFileSync } from "node:child_process";
import { join } from "node:path";
import { expect } from "vitest";
import { skipUnless } from "../helpers/tools.ts";
import { ROOT, sh, tool, toolAsync } from "./e2e-helpers.ts";
import type { MultiNodeCluster } from "./multinode-harness.ts";

export const PING = join(ROOT, "tests/agent/ping.py");
export const hasPython = !skipUnless((() => {
  try {
    execFileSync("python3", ["-c", "pass"]);
    return true;
  } catch {
    return false;
  }
})(), "python3 (the ICMP test's raw-socket echo, tests/agent/ping.py)");
export const CLUSTER_IP = "10.96.0.20";

/** Ingress to app=server from app=client only: TCP 8080, UDP 5353 and the echo request `icmp` names. */
const serverIngress = (icmp: string) => `apiVersion: cilium.io/v2
kind: CiliumNetworkPolicy
metadata: {name: server-ingress, namespace: default}
spec:
  endpointSelector: {matchLabels: {app: server}}
  ingress:
  - fromEndpoints: [{matchLabels: {app: client}}]
    toPorts: [{ports: [{port: "8080", protocol: TCP}, {port: "5353", protocol: UDP}]}]
  - fromEndpoints: [{matchLabels: {app: client}}]
    icmps: [{fields: [${icmp}]}]
`;

/** Ingress to app=server from app=client only (TCP 8080, UDP 5353, ICMP echo); egress of app=other only to app=server. */
export const POLICY = `${serverIngress("{type: 8, family: IPv4}")}---
apiVersion: cilium.io/v2
kind: CiliumNetworkPolicy
metadata: {name: other-egress, namespace: default}
spec:
  endpointSelector: {matchLabels: {app: other}}
  egress:
  - toEndpoints: [{matchLabels: {app: server}}]
`;

/** The same ingress over IPv6 (ICMPv6 echo): the dual-stack suites. */
export const SERVER_INGRESS6 = serverIngress("{family: IPv6, type: EchoRequest}");

export const SERVICE = `apiVersion: v1
kind: Service
metadata: {name: web, namespace: default}
spec:
  clusterIP: ${CLUSTER_IP}
  selector: {app: server}
  ports: [{name: http, port: 80, targetPort: 8080, protocol: TCP}]
`;

/** node-1: the clients; node-2 and node-3: a server each; node-3 also a pod no one allows. Serves (for
 * `serveMs`, long enough for the suite on a loaded machine) and waits for convergence. */
export async function populate(c: MultiNodeCluster, serveMs = 120_000): Promise<void> {
  c.writeManifest("policy.yaml", POLICY);
  c.writeManifest("service.yaml", SERVICE);
  c.addPod(1, "client", { app: "client" });
  c.addPod(1, "other", { app: "other" });
  c.addPod(2, "server", { app: "server" });
  c.addPod(3, "server3", { app: "server" });
  c.addPod(3, "stranger", { app: "stranger" });
  for (const p of ["server", "server3", "stranger"]) c.serve(p, serveMs);
  await c.converged();
}

/** ICMP echo from a pod's namespace (tests/agent/ping.py): how many of `count` were answered. */
export function ping(ns: string, host: string, count = 2): { sent: number; received: number } {
  return JSON.parse(sh("ip", ["netns", "exec", ns, "python3", PING, host, String(count)]).trim()) as { sent: number; received: number };
}

/** Node i's ciliate_drop_count_total lines, joined. */
export function drops(c: MultiNodeCluster, i: number): string {
  return c.metrics(i).split("\n").filter((l) => l.startsWith("ciliate_drop_count_total")).join("; ");
}

/** TCP and UDP from client (node-1) to both servers allowed; other denied by ingress policy at node-2 only. */
export function checkPodToPod(c: MultiNodeCluster): void {
  const ip = (p: string) => c.pod(p).ip;
  const ns = (p: string) => c.pod(p).ns;
  for (const s of ["server", "server3"]) {
    expect(tool(ns("client"), "tcp", ip(s), 8080), c.logs()).toEqual({ ok: true, reply: s });
    expect(tool(ns("client"), "udp", ip(s), 5353)).toEqual({ ok: true, reply: s });
  }
  // other is allowed out by its egress policy, but the server's node refuses its identity.
  expect(tool(ns("other"), "tcp", ip("server"), 8080).ok).toBe(false);
  expect(tool(ns("other"), "udp", ip("server"), 5353).ok).toBe(false);
  expect(drops(c, 2)).toMatch(/ciliate_drop_count_total\{reason="POLICY_DENIED",direction="INGRESS"\} [1-9]/);
  // The sender's node let it through (egress allowed), so the drop is the receiving node's verdict.
  expect(drops(c, 1)).not.toMatch(/POLICY_DENIED/);
}

/** other (node-1) → stranger (node-3) denied by egress policy at node-1; client reaches stranger. */
export function checkEgressDeny(c: MultiNodeCluster): void {
  expect(tool(c.pod("other").ns, "tcp", c.pod("stranger").ip, 8080).ok).toBe(false);
  expect(drops(c, 1)).toMatch(/ciliate_drop_count_total\{reason="POLICY_DENIED",direction="EGRESS"\} [1-9]/);
  // Without an ingress policy on stranger, client reaches it across nodes.
  expect(tool(c.pod("client").ns, "tcp", c.pod("stranger").ip, 8080)).toEqual({ ok: true, reply: "stranger" });
}

/** ICMP echo: client → both servers answered, other → server dropped. */
export function checkPing(c: MultiNodeCluster): void {
  expect(ping(c.pod("client").ns, c.pod("server").ip)).toEqual({ sent: 2, received: 2 });
  expect(ping(c.pod("client").ns, c.pod("server3").ip)).toEqual({ sent: 2, received: 2 });
  expect(ping(c.pod("other").ns, c.pod("server").ip)).toEqual({ sent: 2, received: 0 });
}

/** The ClusterIP answers from both backends (node-2, node-3) with no failure; other stays denied. */
export function checkClusterIp(c: MultiNodeCluster): void {
  const r = tool(c.pod("client").ns, "loop", CLUSTER_IP, 80, 3000, 20) as { ok: number; fail: number; replies: Record<string, number> };
  expect(r.fail, JSON.stringify(r)).toBe(0);
  expect(Object.keys(r.replies).sort()).toEqual(["server", "server3"]);
  expect(tool(c.pod("other").ns, "tcp", CLUSTER_IP, 80).ok).toBe(false);
}

/** Restarts node-2's agent under a connection to server and one through the ClusterIP; neither may lose a request. */
export async function checkRestartUnderLoad(c: MultiNodeCluster): Promise<void> {
  const held = [toolAsync(c.pod("client").ns, "hold", c.pod("server").ip, 8080, 5000), toolAsync(c.pod("client").ns, "hold", CLUSTER_IP, 80, 5000)];
  await new Promise((r) => setTimeout(r, 700));
  await c.stopAgent(2);
  await new Promise((r) => setTimeout(r, 800));
  await c.startAgent(2);
  for (const h of await Promise.all(held)) {
    expect(h.error, JSON.stringify(h)).toBeNull();
    expect(h.recv).toBe(h.sent);
    expect(h.sent as number).toBeGreaterThan(30);
  }
}
