/*
 * Benchmark: the cost of the node's HTTP proxy per request. The same keep-alive client sends the same
 * small GET to the same loopback HTTP server, once directly and once through the HTTP proxy handler
 * (agent/proxy/http.ts: Node's HTTP parser, the policy's HTTP rules judged per request, an upstream
 * keep-alive connection per client connection), in one run. Rows are microseconds per request (sequential
 * requests on one connection, so this is latency, not throughput); the ratio and the difference are the
 * proxy's overhead. The redirect itself (tc → socket) is not part of it: both paths use plain loopback TCP.
 */
import { Agent, createServer, request, type Server } from "node:http";
import type { AddressInfo } from "node:net";
import { buildRules, clusterFromManifests, compilePolicy, parseManifests } from "../../policy/index.ts";
import { HttpProxyHandler } from "../../agent/proxy/http.ts";
import { startHarness } from "../../agent/proxy/test-harness.ts";
import { measure, ratio, type Benchmark, type BenchResult, type Row } from "../harness.ts";

const POLICY = `apiVersion: v1
kind: Pod
metadata: { name: server, namespace: b, labels: { app: server } }
---
apiVersion: v1
kind: Pod
metadata: { name: client, namespace: b, labels: { app: client } }
---
apiVersion: cilium.io/v2
kind: CiliumNetworkPolicy
metadata: { name: web, namespace: b }
spec:
  endpointSelector: { matchLabels: { app: server } }
  ingress:
    - fromEndpoints: [{ matchLabels: { app: client } }]
      toPorts:
        - ports: [{ port: "8080", protocol: TCP }]
          rules: { http: [{ method: GET, path: "/api/.*", headers: ["X-Bench"] }, { method: POST, path: /upload }] }
`;

function get(port: number, agent: Agent): Promise<number> {
  return new Promise((resolve, reject) => {
    request({ host: "127.0.0.1", port, path: "/api/item", agent, headers: { "X-Bench": "1" } }, (res) => {
      res.resume();
      res.on("end", () => resolve(res.statusCode ?? 0));
    })
      .on("error", reject)
      .end();
  });
}

/** Microseconds per request over `n` sequential requests on one keep-alive connection. */
async function usPerRequest(port: number, n: number): Promise<number> {
  const agent = new Agent({ keepAlive: true, maxSockets: 1 });
  try {
    const t0 = process.hrtime.bigint();
    for (let i = 0; i < n; i++) if ((await get(port, agent)) !== 200) throw new Error(`request ${i} was not answered 200`);
    return Number(process.hrtime.bigint() - t0) / 1000 / n;
  } finally {
    agent.destroy();
  }
}

export const l7ProxyBenchmark: Benchmark = {
  name: "l7-proxy",
  title: "L7 proxy: HTTP request latency through the proxy vs direct, loopback",
  steps: () => 2,
  async run(ctx) {
    const n = ctx.tiny ? 20 : ctx.quick ? 500 : 3000;
    const repeats = ctx.tiny ? 1 : ctx.quick ? 3 : 7;
    const result: BenchResult = { name: "l7-proxy", title: this.title, rows: [], ratios: [], skipped: [], charts: [], notes: [] };
    const objects = parseManifests(POLICY, "bench.yaml").objects;
    const cluster = clusterFromManifests(objects);
    const compiled = compilePolicy(cluster, buildRules(objects, cluster.clusterName).rules);
    const listener = [...compiled.proxies.values()][0]!;
    const upstream: Server = createServer((_req, res) => res.end("ok"));
    await new Promise<void>((r) => upstream.listen(0, "127.0.0.1", r));
    const upstreamPort = (upstream.address() as AddressInfo).port;
    const h = await startHarness(new HttpProxyHandler(), compiled, {
      proxyPort: listener.proxyPort,
      sourceIdentity: compiled.identities.podIdentity.get("b/client")!,
      destinationIdentity: compiled.identities.podIdentity.get("b/server")!,
      upstreamPort,
    });
    try {
      const params = { requests: n, body: "2 bytes", rules: 2 };
      const direct: Row = { name: "direct", params, unit: "µs/request", stat: await measure(repeats, () => usPerRequest(upstreamPort, n)) };
      ctx.tick("direct");
      const proxied: Row = { name: "through the HTTP proxy", params, unit: "µs/request", stat: await measure(repeats, () => usPerRequest(h.port, n)) };
      ctx.tick("proxied");
      result.rows.push(direct, proxied);
      result.ratios.push(ratio("HTTP request latency: proxy ÷ direct", proxied, direct));
      result.notes.push(`proxy overhead: ${(proxied.stat.median - direct.stat.median).toFixed(1)} µs per request (median of ${repeats} runs of ${n} sequential keep-alive requests)`);
      const denied = h.events.filter((e) => e.verdict !== "FORWARDED").length;
      if (denied) throw new Error(`${denied} benchmark requests were not forwarded by the proxy`);
    } finally {
      await h.close();
      await new Promise<void>((r) => upstream.close(() => r()));
    }
    return result;
  },
};
