// The DNS proxy's message logic and its TCP transport on loopback: a stand-in resolver (dns-packet over TCP),
// a real client connection through the handler contract, the rules of a compiled policy.
import dnsPacket from "dns-packet";
import { connect, createServer, type AddressInfo, type Server } from "node:net";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { compileYaml, podsYaml } from "../../policy/test-helpers.ts";
import { createDnsTcpHandler, proxyDnsQuery, tcpFrame, TcpDnsFramer, type DnsProxyContext } from "./dns.ts";
import { startHarness, type Harness } from "./test-harness.ts";
import type { L7FlowEvent } from "./types.ts";

const yaml =
  podsYaml([
    { ns: "default", name: "client", labels: { app: "client" } },
    { ns: "kube-system", name: "dns", labels: { "k8s-app": "kube-dns" } },
  ]) +
  `\n---\napiVersion: cilium.io/v2\nkind: CiliumNetworkPolicy\nmetadata: {name: dns, namespace: default}
spec:
  endpointSelector: {matchLabels: {app: client}}
  egress:
  - toEndpoints: [{matchLabels: {"k8s:io.kubernetes.pod.namespace": kube-system, k8s-app: kube-dns}}]
    toPorts: [{ports: [{port: '53', protocol: TCP}], rules: {dns: [{matchPattern: '*.example.com'}]}}]
`;
const { compiled } = compileYaml(yaml);
const listener = [...compiled.proxies.values()].find((l) => l.protocol === "dns")!;
const ids = { client: compiled.identities.podIdentity.get("default/client")!, dns: compiled.identities.podIdentity.get("kube-system/dns")! };

/** dns-packet decodes rcode and record data; its type declarations leave them out. */
const decode = (b: Buffer) => dnsPacket.decode(b) as ReturnType<typeof dnsPacket.decode> & { rcode: string; answers: { data: unknown }[] };
const query = (name: string, id = 1) => dnsPacket.encode({ type: "query", id, flags: dnsPacket.RECURSION_DESIRED, questions: [{ type: "A", name }] });
const answerFor = (q: Buffer) => {
  const p = dnsPacket.decode(q);
  return dnsPacket.encode({ type: "response", id: p.id, flags: dnsPacket.RECURSION_DESIRED | dnsPacket.RECURSION_AVAILABLE, questions: p.questions, answers: [{ type: "A", name: p.questions![0]!.name, ttl: 42, data: "192.0.2.7" }] });
};

let resolver: Server;
let resolverQueries: string[] = [];
let h: Harness;
const learned: { name: string; ips: string[]; ttl: number }[] = [];

beforeAll(async () => {
  resolver = createServer((s) => {
    const f = new TcpDnsFramer();
    s.on("data", (c: Buffer) => {
      for (const m of f.push(c)) {
        resolverQueries.push(dnsPacket.decode(m).questions![0]!.name);
        s.write(tcpFrame(answerFor(m)));
      }
    });
  });
  await new Promise<void>((r) => resolver.listen(0, "127.0.0.1", r));
  h = await startHarness(createDnsTcpHandler((name, ips, ttl) => void learned.push({ name, ips, ttl })), compiled, {
    proxyPort: listener.proxyPort,
    direction: "egress",
    sourceIdentity: ids.client,
    destinationIdentity: ids.dns,
    upstreamPort: (resolver.address() as AddressInfo).port,
  });
});
afterAll(async () => {
  await h.close();
  await new Promise<void>((r) => resolver.close(() => r()));
});

describe("DNS over TCP through the proxy", () => {
  it("several queries on one connection: allowed ones answered by the resolver (addresses learned), denied ones REFUSED by the proxy", async () => {
    resolverQueries = [];
    const s = connect({ host: "127.0.0.1", port: h.port });
    const f = new TcpDnsFramer();
    const replies: Buffer[] = [];
    s.on("data", (c: Buffer) => replies.push(...f.push(c)));
    await new Promise((r) => s.once("connect", r));
    s.write(Buffer.concat([tcpFrame(query("api.example.com", 1)), tcpFrame(query("evil.org", 2)), tcpFrame(query("www.example.com", 3))]));
    for (let i = 0; i < 100 && replies.length < 3; i++) await new Promise((r) => setTimeout(r, 20));
    s.destroy();
    const r = replies.map((b) => decode(b));
    expect(r.map((p) => p.id)).toEqual([1, 2, 3]);
    expect(r[0]!.answers?.[0]?.data).toBe("192.0.2.7");
    expect(r[1]!.rcode).toBe("REFUSED");
    expect(r[1]!.answers).toEqual([]);
    expect(r[2]!.rcode).toBe("NOERROR");
    expect(resolverQueries).toEqual(["api.example.com", "www.example.com"]); // the denied query never left the proxy
    expect(learned).toEqual([
      { name: "api.example.com.", ips: ["192.0.2.7"], ttl: 42 },
      { name: "www.example.com.", ips: ["192.0.2.7"], ttl: 42 },
    ]);
    const ev = h.events.filter((e) => e.protocol === "dns").map((e) => [e.type, e.verdict, e.dns?.query, e.dns?.rcode]);
    expect(ev).toEqual([
      ["REQUEST", "FORWARDED", "api.example.com.", undefined],
      ["RESPONSE", "FORWARDED", "api.example.com.", 0],
      ["REQUEST", "DROPPED", "evil.org.", 5],
      ["REQUEST", "FORWARDED", "www.example.com.", undefined],
      ["RESPONSE", "FORWARDED", "www.example.com.", 0],
    ]);
  });
});

describe("proxyDnsQuery", () => {
  const origin = { source: { ip: "10.0.0.1", port: 5000, identity: ids.client }, destination: { ip: "10.0.0.53", port: 53, identity: ids.dns }, proxyPort: listener.proxyPort };
  const ctx = (events: L7FlowEvent[], order: string[]): DnsProxyContext => ({
    policy: () => compiled,
    emit: (e) => events.push(e),
    upstreamError: () => order.push("upstream-error"),
    learn: async () => {
      await new Promise((r) => setTimeout(r, 10));
      order.push("learned");
    },
  });
  it("the answer is returned only after the learn step finished", async () => {
    const order: string[] = [];
    const out = await proxyDnsQuery(query("a.example.com"), origin, ctx([], order), async (q) => {
      order.push("forwarded");
      return answerFor(q);
    });
    order.push("returned");
    expect(order).toEqual(["forwarded", "learned", "returned"]);
    expect(decode(out!).answers?.[0]?.data).toBe("192.0.2.7");
  });
  it("a resolver that fails gives SERVFAIL and counts an upstream error", async () => {
    const order: string[] = [];
    const out = await proxyDnsQuery(query("a.example.com"), origin, ctx([], order), async () => {
      throw new Error("connection refused");
    });
    expect(decode(out!).rcode).toBe("SERVFAIL");
    expect(order).toEqual(["upstream-error"]);
  });
  it("bytes that are not a DNS query are dropped, never forwarded", async () => {
    const events: L7FlowEvent[] = [];
    let forwarded = false;
    const out = await proxyDnsQuery(Buffer.from("GET / HTTP/1.1\r\n\r\n"), origin, ctx(events, []), async (q) => {
      forwarded = true;
      return q;
    });
    expect(out).toBeUndefined();
    expect(forwarded).toBe(false);
    expect(events[0]!.verdict).toBe("ERROR");
  });
  it("a listener of another protocol refuses the query", async () => {
    const out = await proxyDnsQuery(query("a.example.com"), { ...origin, proxyPort: 1 }, ctx([], []), async (q) => answerFor(q));
    expect(decode(out!).rcode).toBe("REFUSED");
  });
});
