/*
 * End-to-end: two connections of one pod from one source port at the same time (issue #15; core/nat.ts
 * T1–T7), on a node made of network namespaces with the real agent. Linux hands out source ports per
 * destination 4-tuple, so a pod can hold port P towards a ClusterIP and towards that ClusterIP's backend
 * directly; after the datapath's DNAT both are {client:P → server:8080}. The pod-tool mode `pair` opens
 * both from one explicit local port (the first is connected and answered before the second is opened) and
 * keeps both busy, one request at a time: each must get every reply. Deterministic: the ports are chosen,
 * not left to chance. Before the fix the second SYN overwrote the first connection's conntrack entry and
 * the server's stack met a SYN on its established socket; one connection lost its replies or was reset
 * (the soak test's ECONNRESET).
 * Kernel suite: runs as root (fails in CI when it cannot); everything is removed in afterAll.
 */
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { kernelSuite } from "../../datapath/index.ts";
import { E2eNode, eventually, podYaml, serve, tool, toolWithin } from "./e2e-helpers.ts";

const suite = kernelSuite("agent-e2e-port-collision", ["root", "libbpf", "bpffs", "iproute2"]);
const h = new E2eNode({ prefix: "cpc", nodeIp: "192.168.63.1", podCidr: "10.244.14.0/24", pods: [{ name: "client" }, { name: "server" }] });
const NS = (n: string) => h.ns(n);
const VIP = "10.96.0.71";
const SERVICE = `apiVersion: v1
kind: Service
metadata: {name: web, namespace: default}
spec:
  clusterIP: ${VIP}
  selector: {app: server}
  ports:
  - {name: http, port: 80, targetPort: 8080, protocol: TCP}
`;
const HOLD_MS = 3000;

interface Held { sent: number; recv: number; error: string | null; localPort: number }

/** Two held connections from `port`: to `first` and then to `second` (each "host:port"). */
async function pair(port: number, first: string, second: string): Promise<{ first: Held; second: Held }> {
  const [h1, p1] = first.split(":");
  const [h2, p2] = second.split(":");
  return (await toolWithin(HOLD_MS + 30_000, NS("client"), "pair", port, HOLD_MS, h1!, p1!, h2!, p2!)) as unknown as { first: Held; second: Held };
}

/** Every request got its reply, from the one port, with no error. */
function expectBothWorked(r: { first: Held; second: Held }, port: number): void {
  for (const c of [r.first, r.second]) {
    expect(c, `${JSON.stringify(r)}\n${h.log}`).toMatchObject({ error: null, localPort: port });
    expect(c.sent, JSON.stringify(r)).toBeGreaterThanOrEqual(3);
    expect(c.recv, JSON.stringify(r)).toBe(c.sent);
  }
}

describe.skipIf(suite.skip)("ciliate agent: a held direct connection and a service connection from one source port (network namespaces)", () => {
  beforeAll(async () => {
    h.setUp({ "pods.yaml": [podYaml("client"), podYaml("server")].join("---\n"), "svc.yaml": SERVICE });
    await h.startAgent();
    h.addPods();
    h.children.push(serve(NS("server"), "server", 600_000));
    // The service is programmed and the server answers (through the ClusterIP and directly).
    await eventually(() => tool(NS("client"), "tcp", VIP, 80).ok === true, 30_000, () => h.log);
    await eventually(() => tool(NS("client"), "tcp", h.podIp.get("server")!, 8080).ok === true, 30_000, () => h.log);
  }, 120_000);
  afterAll(() => h.tearDown(), 60_000);

  it("keeps both working when the direct connection holds the port first", async () => {
    expectBothWorked(await pair(45555, `${h.podIp.get("server")}:8080`, `${VIP}:80`), 45555);
  }, 60_000);

  it("keeps both working when the service connection holds the port first", async () => {
    expectBothWorked(await pair(45556, `${VIP}:80`, `${h.podIp.get("server")}:8080`), 45556);
  }, 60_000);
});
