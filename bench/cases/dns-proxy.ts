/*
 * Benchmark: the cost of the node's DNS proxy per query. The same client sends the same A query over UDP to
 * the same loopback resolver (dns-packet answers from a dgram socket), once directly and once through the
 * DNS proxy's query path (agent/proxy/dns.ts proxyDnsQuery: decode, rules.dns judged for the resolver's
 * identity, forward to the resolver from a fresh socket, the answer's addresses learned into an FQDN cache),
 * in one run. Rows are microseconds per query (sequential queries, so latency, not throughput); the ratio
 * and the difference are the proxy's overhead. The transparent sockets (the node forwards from the client's
 * address) and the datapath redirect are not part of it (they need root): the proxy's front here is a plain
 * loopback UDP socket.
 */
import { createSocket, type Socket } from "node:dgram";
import dnsPacket from "dns-packet";
import { buildRules, clusterFromManifests, compilePolicy, FqdnCache, parseManifests } from "../../policy/index.ts";
import { proxyDnsQuery, type DnsProxyContext } from "../../agent/proxy/dns.ts";
import { udpExchange } from "../../agent/proxy/dns-udp.ts";
import { measure, ratio, type Benchmark, type BenchResult, type Row } from "../harness.ts";

const POLICY = `apiVersion: v1
kind: Pod
metadata: { name: client, namespace: b, labels: { app: client } }
status: { podIP: 10.244.0.10 }
---
apiVersion: v1
kind: Pod
metadata: { name: dns, namespace: b, labels: { app: dns } }
status: { podIP: 127.0.0.1 }
---
apiVersion: cilium.io/v2
kind: CiliumNetworkPolicy
metadata: { name: dns, namespace: b }
spec:
  endpointSelector: { matchLabels: { app: client } }
  egress:
    - toEndpoints: [{ matchLabels: { app: dns } }]
      toPorts:
        - ports: [{ port: "53", protocol: UDP }]
          rules: { dns: [{ matchName: api.example.com }, { matchPattern: "*.bench.example" }] }
`;

function listen(s: Socket): Promise<number> {
  return new Promise((r) => s.bind(0, "127.0.0.1", () => r(s.address().port)));
}

/** Microseconds per query over `n` sequential queries to `port`. */
async function usPerQuery(port: number, n: number): Promise<number> {
  const q = dnsPacket.encode({ type: "query", id: 1, flags: dnsPacket.RECURSION_DESIRED, questions: [{ type: "A", name: "api.example.com" }] });
  const t0 = process.hrtime.bigint();
  for (let i = 0; i < n; i++) {
    const a = dnsPacket.decode(await udpExchange({ ip: "127.0.0.1", port }, q)) as { answers?: { data?: unknown }[] };
    if (a.answers?.[0]?.data !== "192.0.2.7") throw new Error(`query ${i} was not answered`);
  }
  return Number(process.hrtime.bigint() - t0) / 1000 / n;
}

export const dnsProxyBenchmark: Benchmark = {
  name: "dns-proxy",
  title: "DNS proxy: query latency through the proxy vs direct, loopback UDP",
  steps: () => 2,
  async run(ctx) {
    const n = ctx.tiny ? 20 : ctx.quick ? 500 : 3000;
    const repeats = ctx.tiny ? 1 : ctx.quick ? 3 : 7;
    const result: BenchResult = { name: "dns-proxy", title: this.title, rows: [], ratios: [], skipped: [], charts: [], notes: [] };
    const objects = parseManifests(POLICY, "bench.yaml").objects;
    const cluster = clusterFromManifests(objects);
    const compiled = compilePolicy(cluster, buildRules(objects, cluster.clusterName).rules);
    const listener = [...compiled.proxies.values()].find((l) => l.protocol === "dns")!;
    const resolver = createSocket("udp4");
    resolver.on("message", (m, r) => {
      const p = dnsPacket.decode(m);
      resolver.send(dnsPacket.encode({ type: "response", id: p.id, flags: dnsPacket.RECURSION_AVAILABLE, questions: p.questions, answers: [{ type: "A", name: p.questions![0]!.name, ttl: 300, data: "192.0.2.7" }] }), r.port, r.address);
    });
    const resolverPort = await listen(resolver);
    const cache = new FqdnCache();
    let forwarded = 0;
    const pctx: DnsProxyContext = {
      policy: () => compiled,
      emit: (e) => void (e.type === "REQUEST" && e.verdict === "FORWARDED" && forwarded++),
      upstreamError: () => undefined,
      learn: (name, ips, ttl) => void cache.learn(name, ips, ttl, Math.floor(Date.now() / 1000)),
    };
    const origin = {
      source: { ip: "10.244.0.10", port: 0, identity: compiled.identities.podIdentity.get("b/client")! },
      destination: { ip: "127.0.0.1", port: resolverPort, identity: compiled.identities.podIdentity.get("b/dns")! },
      proxyPort: listener.proxyPort,
    };
    const front = createSocket("udp4");
    front.on("message", (m, r) => {
      void proxyDnsQuery(m, { ...origin, source: { ...origin.source, port: r.port } }, pctx, (q) => udpExchange({ ip: "127.0.0.1", port: resolverPort }, q)).then((reply) => reply && front.send(reply, r.port, r.address));
    });
    const frontPort = await listen(front);
    try {
      const params = { queries: n, rules: 2 };
      const direct: Row = { name: "direct", params, unit: "µs/query", stat: await measure(repeats, () => usPerQuery(resolverPort, n)) };
      ctx.tick("direct");
      const proxied: Row = { name: "through the DNS proxy", params, unit: "µs/query", stat: await measure(repeats, () => usPerQuery(frontPort, n)) };
      ctx.tick("proxied");
      result.rows.push(direct, proxied);
      result.ratios.push(ratio("DNS query latency: proxy ÷ direct", proxied, direct));
      result.notes.push(`proxy overhead: ${(proxied.stat.median - direct.stat.median).toFixed(1)} µs per query (median of ${repeats} runs of ${n} sequential queries)`);
      if (forwarded < n) throw new Error(`only ${forwarded} of the benchmark queries were forwarded by the proxy`);
      if (!cache.state(Math.floor(Date.now() / 1000)).length) throw new Error("the proxy learned nothing");
    } finally {
      resolver.close();
      front.close();
    }
    return result;
  },
};
