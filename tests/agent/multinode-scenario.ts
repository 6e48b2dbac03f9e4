/*
 * The workload the multi-node end-to-end suites share (native routing in e2e-multinode.test.ts, the
 * overlay in e2e-multinode-tunnel.test.ts), so both modes are held to the same verdicts: the policy, the
 * ClusterIP, the pods on each node, and the probes.
 */
import { execFileSync } from "node:child_process";
import { join } from "node:path";
import { skipUnless } from "../helpers/tools.ts";
import { ROOT, sh } from "./e2e-helpers.ts";
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

/** Ingress to app=server from app=client only (TCP 8080, UDP 5353, ICMP echo); egress of app=other only to app=server. */
export const POLICY = `apiVersion: cilium.io/v2
kind: CiliumNetworkPolicy
metadata: {name: server-ingress, namespace: default}
spec:
  endpointSelector: {matchLabels: {app: server}}
  ingress:
  - fromEndpoints: [{matchLabels: {app: client}}]
    toPorts: [{ports: [{port: "8080", protocol: TCP}, {port: "5353", protocol: UDP}]}]
  - fromEndpoints: [{matchLabels: {app: client}}]
    icmps: [{fields: [{type: 8, family: IPv4}]}]
---
apiVersion: cilium.io/v2
kind: CiliumNetworkPolicy
metadata: {name: other-egress, namespace: default}
spec:
  endpointSelector: {matchLabels: {app: other}}
  egress:
  - toEndpoints: [{matchLabels: {app: server}}]
`;

export const SERVICE = `apiVersion: v1
kind: Service
metadata: {name: web, namespace: default}
spec:
  clusterIP: ${CLUSTER_IP}
  selector: {app: server}
  ports: [{name: http, port: 80, targetPort: 8080, protocol: TCP}]
`;

/** node-1: the clients; node-2 and node-3: a server each; node-3 also a pod no one allows. Serves and waits for convergence. */
export async function populate(c: MultiNodeCluster): Promise<void> {
  c.writeManifest("policy.yaml", POLICY);
  c.writeManifest("service.yaml", SERVICE);
  c.addPod(1, "client", { app: "client" });
  c.addPod(1, "other", { app: "other" });
  c.addPod(2, "server", { app: "server" });
  c.addPod(3, "server3", { app: "server" });
  c.addPod(3, "stranger", { app: "stranger" });
  for (const p of ["server", "server3", "stranger"]) c.serve(p);
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
