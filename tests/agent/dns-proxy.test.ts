/*
 * The node's DNS proxy on real sockets: a client namespace asks (dig) a resolver namespace (dnsmasq) through
 * this process's network namespace, where an nftables TPROXY rule stands in for the datapath's redirect and
 * delivers the queries to the proxy's transparent UDP listener with their original destination (and an
 * nftables socket rule, the replies of the resolver to the proxy's upstream socket). Allowed names resolve
 * (the proxy forwards to the original destination from the client's own address — the resolver logs the
 * client — and the client gets the resolver's answer from the resolver's address), denied names get
 * REFUSED from the proxy, every answer's addresses are
 * learned into the FQDN cache before the client sees the answer, and the policy compiled from that cache
 * allows egress to exactly the learned addresses until the TTL runs out.
 * Why a TPROXY shim here when tests/agent/e2e-l7-protocols.test.ts runs DNS/toFQDNs through the real agent
 * and its datapath redirect: this suite covers what that path cannot reach yet — the proxy's IPv6
 * transparent sockets (the agent's endpoints are IPv4 only, so no pod can send it IPv6 DNS) and TTL expiry
 * on a real answer (dnsmasq --local-ttl=2) without a node-wide clock.
 * Needs root, nft (TPROXY), dnsmasq and dig; in CI they are required.
 */
import { execFile, spawn, spawnSync, type ChildProcess } from "node:child_process";
import { createServer, type AddressInfo } from "node:net";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { compileYaml, podsYaml } from "../../policy/test-helpers.ts";
import { explainFlow, FqdnCache, identityOfIp, type CompiledPolicy } from "../../policy/index.ts";
import type { DnsProxyContext } from "../../agent/proxy/dns.ts";
import { DnsUdpProxy } from "../../agent/proxy/dns-udp.ts";
import type { L7FlowEvent } from "../../agent/proxy/types.ts";
import { skipUnless } from "../helpers/tools.ts";

const have = (cmd: string, args: string[]) => spawnSync(cmd, args, { stdio: "ignore" }).status === 0;
const root = process.getuid?.() === 0;
const skip = skipUnless(root && have("nft", ["--version"]) && have("dnsmasq", ["--version"]) && have("dig", ["-v"]), "root, nft, dnsmasq and dig (the DNS proxy e2e)");

const id = process.pid % 200;
const sub = 20 + (process.pid % 200);
const CLIENT_NS = `cdnsc${process.pid}`;
const RESOLVER_NS = `cdnsr${process.pid}`;
const C_IF = `cdc${process.pid}`;
const R_IF = `cdr${process.pid}`;
const CLIENT_IP = `10.231.${sub}.2`;
const RESOLVER_IP = `10.232.${sub}.2`;
const CLIENT_IP6 = `fd31:${sub}::2`;
const RESOLVER_IP6 = `fd32:${sub}::2`;
const MARK = 0x7d00 + id;
const TABLE = 31000 + id;
const NFT_TABLE = `ciliate_dns_${process.pid}`;

function sh(cmd: string, args: string[], allowFail = false): string {
  const r = spawnSync(cmd, args, { encoding: "utf8", timeout: 20_000 });
  if (r.status !== 0 && !allowFail) throw new Error(`${cmd} ${args.join(" ")}: ${r.stderr || r.error?.message}`);
  return r.stdout ?? "";
}

/** Dual-stack pods: status.podIPs carries both addresses. */
const cluster = podsYaml([
  { ns: "default", name: "client", labels: { app: "client" } },
  { ns: "kube-system", name: "kube-dns", labels: { "k8s-app": "kube-dns" } },
])
  .replace(/("name":"client".*?"spec":\{[^]*?\}\]\})/, `$1,"status":{"podIPs":[{"ip":"${CLIENT_IP}"},{"ip":"${CLIENT_IP6}"}]}`)
  .replace(/("name":"kube-dns".*?"spec":\{[^]*?\}\]\})/, `$1,"status":{"podIPs":[{"ip":"${RESOLVER_IP}"},{"ip":"${RESOLVER_IP6}"}]}`);
const policyYaml = `
---
apiVersion: cilium.io/v2
kind: CiliumNetworkPolicy
metadata: {name: dns, namespace: default}
spec:
  endpointSelector: {matchLabels: {app: client}}
  egress:
  - toEndpoints: [{matchLabels: {"k8s:io.kubernetes.pod.namespace": kube-system, k8s-app: kube-dns}}]
    toPorts: [{ports: [{port: "53", protocol: ANY}], rules: {dns: [{matchPattern: "*.allowed.test"}, {matchName: allowed.test}]}}]
  - toFQDNs: [{matchPattern: "*.allowed.test"}, {matchName: allowed.test}]
    toPorts: [{ports: [{port: "443", protocol: TCP}]}]
`;

async function freePort(): Promise<number> {
  const s = createServer();
  await new Promise<void>((r) => s.listen(0, "127.0.0.1", r));
  const p = (s.address() as AddressInfo).port;
  await new Promise<void>((r) => s.close(() => r()));
  return p;
}

/** dig in the client namespace; asynchronous, because the proxy answering it runs in this process. */
async function dig(name: string, server = RESOLVER_IP, type = "A"): Promise<{ status: string; answers: string[]; ttl: number[]; from: string }> {
  const out = await new Promise<string>((resolve) => execFile("ip", ["netns", "exec", CLIENT_NS, "dig", "+tries=1", "+time=3", `@${server}`, name, type], { timeout: 10_000 }, (_e, stdout) => resolve(String(stdout))));
  const status = /status: ([A-Z]+)/.exec(out)?.[1] ?? "NO ANSWER";
  const answers: string[] = [];
  const ttl: number[] = [];
  for (const m of out.matchAll(/^\S+\s+(\d+)\s+IN\s+A{1,4}\s+(\S+)$/gm)) {
    ttl.push(Number(m[1]));
    answers.push(m[2]!);
  }
  return { status, answers, ttl, from: /SERVER: ([^#\s]+)#/.exec(out)?.[1] ?? "" };
}

describe.skipIf(skip)("DNS proxy on real sockets (TPROXY in place of the datapath redirect)", () => {
  let dnsmasq: ChildProcess | undefined;
  /** dnsmasq's query log (--log-queries): who asked it what. */
  let resolverLog = "";
  let proxy: DnsUdpProxy | undefined;
  let base: CompiledPolicy;
  let policy: CompiledPolicy;
  let proxyPort = 0;
  const events: L7FlowEvent[] = [];
  const cache = new FqdnCache(0);
  let learnedBeforeAnswer = 0;
  const now = () => Math.floor(Date.now() / 1000);

  const ctx: DnsProxyContext = {
    policy: () => policy,
    emit: (e) => events.push(e),
    upstreamError: () => undefined,
    learn: (name, ips, ttl) => {
      if (cache.learn(name, ips, ttl, now()).changed) policy = compileYaml(cluster + policyYaml, { proxyPortBase: proxyPort, fqdn: cache.state(now()) }).compiled;
      learnedBeforeAnswer++;
    },
  };

  beforeAll(async () => {
    proxyPort = await freePort();
    base = compileYaml(cluster + policyYaml, { proxyPortBase: proxyPort }).compiled;
    policy = base;
    // Namespaces and links.
    sh("ip", ["netns", "add", CLIENT_NS]);
    sh("ip", ["netns", "add", RESOLVER_NS]);
    for (const [ns, hostIf, ip, net, ip6, net6] of [
      [CLIENT_NS, C_IF, CLIENT_IP, `10.231.${sub}`, CLIENT_IP6, `fd31:${sub}:`],
      [RESOLVER_NS, R_IF, RESOLVER_IP, `10.232.${sub}`, RESOLVER_IP6, `fd32:${sub}:`],
    ] as const) {
      sh("ip", ["link", "add", hostIf, "type", "veth", "peer", "name", "eth0", "netns", ns]);
      sh("ip", ["addr", "add", `${net}.1/24`, "dev", hostIf]);
      sh("ip", ["link", "set", hostIf, "up"]);
      sh("ip", ["-n", ns, "addr", "add", `${ip}/24`, "dev", "eth0"]);
      sh("ip", ["-n", ns, "link", "set", "eth0", "up"]);
      sh("ip", ["-n", ns, "link", "set", "lo", "up"]);
      sh("ip", ["-n", ns, "route", "add", "default", "via", `${net}.1`]);
      sh("ip", ["addr", "add", `${net6}:1/64`, "dev", hostIf, "nodad"]);
      sh("ip", ["-n", ns, "addr", "add", `${ip6}/64`, "dev", "eth0", "nodad"]);
      sh("ip", ["-n", ns, "-6", "route", "add", "default", "via", `${net6}:1`]);
    }
    sh("sysctl", ["-qw", "net.ipv4.ip_forward=1"]);
    // The redirect: DNS from the client's link goes to the proxy's transparent socket.
    sh("nft", ["add", "table", "ip", NFT_TABLE]);
    sh("nft", ["add", "chain", "ip", NFT_TABLE, "pre", "{ type filter hook prerouting priority mangle; }"]);
    sh("nft", ["add", "rule", "ip", NFT_TABLE, "pre", "iifname", C_IF, "udp", "dport", "53", "tproxy", "to", `:${udpProxyPort()}`, "meta", "mark", "set", String(MARK), "accept"]);
    // The resolver's answers to the proxy's upstream socket (bound to the client's address) go to that socket.
    sh("nft", ["add", "rule", "ip", NFT_TABLE, "pre", "iifname", R_IF, "udp", "sport", "53", "socket", "transparent", "1", "meta", "mark", "set", String(MARK), "accept"]);
    sh("ip", ["rule", "add", "fwmark", String(MARK), "lookup", String(TABLE)]);
    sh("ip", ["route", "add", "local", "0.0.0.0/0", "dev", "lo", "table", String(TABLE)]);
    sh("nft", ["add", "table", "ip6", NFT_TABLE]);
    sh("nft", ["add", "chain", "ip6", NFT_TABLE, "pre", "{ type filter hook prerouting priority mangle; }"]);
    sh("nft", ["add", "rule", "ip6", NFT_TABLE, "pre", "iifname", C_IF, "udp", "dport", "53", "tproxy", "to", `:${udpProxyPort()}`, "meta", "mark", "set", String(MARK), "accept"]);
    // The resolver's answers to the proxy's upstream socket (bound to the client's address) go to that socket.
    sh("nft", ["add", "rule", "ip6", NFT_TABLE, "pre", "iifname", R_IF, "udp", "sport", "53", "socket", "transparent", "1", "meta", "mark", "set", String(MARK), "accept"]);
    sh("ip", ["-6", "rule", "add", "fwmark", String(MARK), "lookup", String(TABLE)]);
    sh("ip", ["-6", "route", "add", "local", "::/0", "dev", "lo", "table", String(TABLE)]);
    dnsmasq = spawn(
      "ip",
      ["netns", "exec", RESOLVER_NS, "dnsmasq", "--keep-in-foreground", "--no-resolv", "--no-hosts", "--bind-interfaces", `--listen-address=${RESOLVER_IP},${RESOLVER_IP6}`, "--port=53", "--local-ttl=2", "--pid-file=", "--user=root", "--log-queries", "--log-facility=-",
        "--host-record=allowed.test,192.0.2.10", "--host-record=v6.allowed.test,2001:db8::10", "--host-record=www.allowed.test,192.0.2.11", "--host-record=denied.test,198.51.100.9"],
      { stdio: ["ignore", "ignore", "pipe"] },
    );
    dnsmasq.stderr!.on("data", (d) => (resolverLog += d));
    proxy = new DnsUdpProxy({ ctx, identityOf: (ip) => identityOfIp(policy.identities, policy.cluster, ip) ?? 2, replyMark: 0xb0000000 });
    proxy.sync([udpProxyPort()]);
    // dnsmasq is up when it answers directly (from this namespace, not through the proxy).
    for (let i = 0; i < 50; i++) {
      if (/status: NOERROR/.test(sh("dig", ["+tries=1", "+time=1", `@${RESOLVER_IP}`, "allowed.test"], true))) break;
      await new Promise((r) => setTimeout(r, 100));
    }
  }, 60_000);

  afterAll(() => {
    proxy?.close();
    dnsmasq?.kill("SIGKILL");
    sh("ip", ["rule", "del", "fwmark", String(MARK), "lookup", String(TABLE)], true);
    sh("ip", ["route", "flush", "table", String(TABLE)], true);
    sh("ip", ["-6", "rule", "del", "fwmark", String(MARK), "lookup", String(TABLE)], true);
    sh("ip", ["-6", "route", "flush", "table", String(TABLE)], true);
    sh("nft", ["delete", "table", "ip", NFT_TABLE], true);
    sh("nft", ["delete", "table", "ip6", NFT_TABLE], true);
    sh("ip", ["link", "del", C_IF], true);
    sh("ip", ["link", "del", R_IF], true);
    sh("ip", ["netns", "del", CLIENT_NS], true);
    sh("ip", ["netns", "del", RESOLVER_NS], true);
  });

  /** The proxy port of the client's UDP/53 DNS listener. */
  function udpProxyPort(): number {
    const l = [...base.proxies.values()].find((x) => x.endpoint === "default/client" && x.protocol === "dns" && x.l4Protocol === 17);
    if (!l) throw new Error("no DNS listener compiled");
    return l.proxyPort;
  }

  it("an allowed name resolves through the proxy, from the resolver's address, and its address is learned first", async () => {
    const before = explainFlow(policy, { from: { pod: "default/client" }, to: { ip: "192.0.2.10" }, protocol: "TCP", port: 443 }).verdict;
    expect(before).toBe("denied");
    const r = await dig("allowed.test");
    expect(r.status).toBe("NOERROR");
    expect(r.answers).toEqual(["192.0.2.10"]);
    expect(r.from).toBe(RESOLVER_IP);
    // The resolver was asked by the client's own address, not the node's.
    expect(resolverLog, resolverLog).toContain(`query[A] allowed.test from ${CLIENT_IP}\n`);
    expect(learnedBeforeAnswer).toBeGreaterThan(0);
    expect(cache.state(now()).map((e) => e.name)).toContain("allowed.test.");
    expect(explainFlow(policy, { from: { pod: "default/client" }, to: { ip: "192.0.2.10" }, protocol: "TCP", port: 443 }).verdict).toBe("allowed");
    expect(explainFlow(policy, { from: { pod: "default/client" }, to: { ip: "192.0.2.99" }, protocol: "TCP", port: 443 }).verdict).toBe("denied");
    const req = events.find((e) => e.type === "REQUEST" && e.dns?.query === "allowed.test.")!;
    expect(req.verdict).toBe("FORWARDED");
    expect(req.source.ip).toBe(CLIENT_IP);
    expect(req.destination).toMatchObject({ ip: RESOLVER_IP, port: 53 });
    const resp = events.find((e) => e.type === "RESPONSE" && e.dns?.query === "allowed.test.")!;
    expect(resp.dns).toMatchObject({ ips: ["192.0.2.10"], rcode: 0 });
  });

  it("a wildcard-matched name resolves too", async () => {
    expect((await dig("www.allowed.test")).answers).toEqual(["192.0.2.11"]);
  });

  it("a denied name gets REFUSED from the proxy and nothing is learned", async () => {
    const r = await dig("denied.test");
    expect(r.status).toBe("REFUSED");
    expect(r.from).toBe(RESOLVER_IP);
    expect(cache.state(now()).map((e) => e.name)).not.toContain("denied.test.");
    const req = events.find((e) => e.dns?.query === "denied.test.")!;
    expect(req).toMatchObject({ type: "REQUEST", verdict: "DROPPED", dns: { rcode: 5 } });
  });

  it("over IPv6: the query reaches the proxy's IPv6 listener, the AAAA answer is learned as a /128", async () => {
    const r = await dig("v6.allowed.test", RESOLVER_IP6, "AAAA");
    expect(r.status).toBe("NOERROR");
    expect(r.answers).toEqual(["2001:db8::10"]);
    expect(r.from).toBe(RESOLVER_IP6);
    expect(resolverLog, resolverLog).toContain(`query[AAAA] v6.allowed.test from ${CLIENT_IP6}\n`);
    expect(cache.state(now()).find((e) => e.name === "v6.allowed.test.")?.ips).toEqual(["2001:db8::10"]);
    expect(policy.cidrIdentities.map((c) => c.prefix)).toContain("2001:db8::10/128");
    expect((await dig("denied.test", RESOLVER_IP6)).status).toBe("REFUSED");
    const req = events.find((e) => e.type === "REQUEST" && e.dns?.query === "v6.allowed.test.")!;
    expect(req.source.ip).toBe(CLIENT_IP6);
    expect(req.destination.ip).toBe(RESOLVER_IP6);
    expect(req.destination.identity).toBe(base.identities.podIdentity.get("kube-system/kube-dns"));
  });

  it("the learned allow expires with the answer's TTL (dnsmasq --local-ttl=2)", async () => {
    await dig("allowed.test");
    const at = now();
    expect(cache.state(at).length).toBeGreaterThan(0);
    expect(cache.state(at + 3)).toEqual([]);
    const later = compileYaml(cluster + policyYaml, { proxyPortBase: proxyPort, fqdn: cache.state(at + 3) }).compiled;
    expect(explainFlow(later, { from: { pod: "default/client" }, to: { ip: "192.0.2.10" }, protocol: "TCP", port: 443 }).verdict).toBe("denied");
  });
});
