/*
 * End-to-end: Kafka, TLS SNI and DNS/toFQDNs policy on a node made of network namespaces — the real
 * `ciliate agent`, pods joined by `ciliate cni`, real servers and clients:
 *   - broker pod: the Kafka broker stand-in (agent/proxy/test-kafka-broker.ts, the project's kafka-wire
 *     parser) on 9092 and 9093 and a node:tls server on 8443 and 8444 with a certificate made by openssl for
 *     this run;
 *   - kube-dns pod (kube-system): dnsmasq from Debian on 53;
 *   - client pod: kafkajs, a node:tls client and dig;
 *   - untrusted pod: dig, with the client's DNS rule but not admitted by the resolver's own ingress policy;
 *   - ext namespace: two "internet" addresses behind the node, each serving TCP on 8080.
 * Policy: the broker admits `role: produce, topic: allowed-topic` from the client on 9092 (ingress Kafka) and
 * TLS on 8444 only for server name tls.allowed.test (ingress SNI); the client may produce only to
 * allowed-topic on 9093 (egress Kafka), may open TLS to 8443 only for tls.allowed.test (egress SNI), may resolve only
 * *.allowed.test (egress DNS) and may reach on 8080 only the addresses learned for *.allowed.test (toFQDNs).
 * Allowed requests succeed; denied ones are refused in the protocol's own way (TOPIC_AUTHORIZATION_FAILED,
 * a reset TLS connection, DNS REFUSED, an unlearned address dropped by policy). The DNS proxy forwards from
 * the asking pod's own address: dnsmasq logs the client, and the resolver's ingress policy, which admits the
 * client only, drops what the proxy forwards for the untrusted pod (the node's address would be admitted). The L7 flows show in
 * `ciliate observe` and in hubble_flows_processed_total with Hubble's labels. With the proxy killed nothing
 * passes and the datapath counts the drops as PROXY_LOOKUP_FAILED (178). The same cases, as Expectations
 * on the same manifests, get the same verdicts from `ciliate check` (the simulator).
 * Kernel suite: root, libbpf, bpffs, iproute2, dnsmasq, dig, openssl (fails in CI without them); everything is
 * removed in afterAll.
 */
import { execFile, spawn, spawnSync } from "node:child_process";
import { join } from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { kernelSuite } from "../../datapath/index.ts";
import { skipUnless } from "../helpers/tools.ts";
import { E2eNode, ROOT, expectCheckAgrees, podYaml, eventually, serve, sh, stopProcess, tool } from "./e2e-helpers.ts";

const suite = kernelSuite("agent-e2e-l7-protocols", ["root", "libbpf", "bpffs", "iproute2"]);
const have = (cmd: string, args: string[]) => spawnSync(cmd, args, { stdio: "ignore" }).status === 0;
const skip = suite.skip || skipUnless(have("dnsmasq", ["--version"]) && have("dig", ["-v"]) && have("openssl", ["version"]), "dnsmasq, dig and openssl (the Kafka/TLS/DNS end-to-end test)");
const PODS = [
  { name: "client", namespace: "default", labels: "app: client" },
  { name: "broker", namespace: "default", labels: "app: broker" },
  { name: "coredns", namespace: "kube-system", labels: "k8s-app: kube-dns" },
  { name: "untrusted", namespace: "default", labels: "app: untrusted" },
];
const NODE_IP = "192.168.61.1";
const EXT_ALLOWED = "192.168.61.100";
const EXT_DENIED = "192.168.61.101";
/** The address of short.allowed.test, which dnsmasq answers with a TTL of 2 s. */
const EXT_SHORT = "192.168.61.102";
const EXT6 = "fd00:77::100";
const CLIENT6 = "fd00:6::2";
const POD_CIDR = "10.244.6.0/24";
const L7TOOL = join(ROOT, "tests/agent/l7-pod-tool.ts");

const h = new E2eNode({ prefix: "cip7", nodeIp: NODE_IP, podCidr: POD_CIDR, metricsAddr: "127.0.0.1:19966", pods: PODS, others: ["ext"] });
const NS = (n: string) => h.ns(n);
const NODE = h.nodeNs;
const brokerSaw: { apiKey: number; topics: string[] }[] = [];
/** dnsmasq's query log (--log-queries): who asked it what. */
let resolverLog = "";
const tlsSaw: string[] = [];
/** What the second broker (9093: the client's egress Kafka rule) and TLS server (8444: the broker's ingress SNI rule) saw. */
const broker2Saw: { apiKey: number; topics: string[] }[] = [];
const tls2Saw: string[] = [];
/** What the node did with each case, by the name of the Expectation that describes it. */
const node = new Map<string, "allowed" | "denied">();

const PODS_YAML = PODS.map((p) => podYaml(p.name, p.namespace, p.labels)).join("---\n");

const POLICY_YAML = `apiVersion: cilium.io/v2
kind: CiliumNetworkPolicy
metadata: {name: broker-kafka, namespace: default}
spec:
  endpointSelector: {matchLabels: {app: broker}}
  ingress:
  - fromEndpoints: [{matchLabels: {app: client}}]
    toPorts:
    - ports: [{port: "9092", protocol: TCP}]
      rules:
        kafka: [{role: produce, topic: allowed-topic}]
  - fromEndpoints: [{matchLabels: {app: client}}]
    toPorts: [{ports: [{port: "8443", protocol: TCP}]}, {ports: [{port: "9093", protocol: TCP}]}]
  - fromEndpoints: [{matchLabels: {app: client}}]
    toPorts: [{ports: [{port: "8444", protocol: TCP}], serverNames: [tls.allowed.test]}]
---
apiVersion: cilium.io/v2
kind: CiliumNetworkPolicy
metadata: {name: client-egress, namespace: default}
spec:
  endpointSelector: {matchLabels: {app: client}}
  egress:
  - toEndpoints: [{matchLabels: {app: broker}}]
    toPorts: [{ports: [{port: "9092", protocol: TCP}]}, {ports: [{port: "8444", protocol: TCP}]}]
  - toEndpoints: [{matchLabels: {app: broker}}]
    toPorts: [{ports: [{port: "9093", protocol: TCP}], rules: {kafka: [{role: produce, topic: allowed-topic}]}}]
  - toEndpoints: [{matchLabels: {app: broker}}]
    toPorts: [{ports: [{port: "8443", protocol: TCP}], serverNames: [tls.allowed.test]}]
  - toEndpoints: [{matchLabels: {"k8s:io.kubernetes.pod.namespace": kube-system, "k8s:k8s-app": kube-dns}}]
    toPorts: [{ports: [{port: "53", protocol: ANY}], rules: {dns: [{matchPattern: "*.allowed.test"}]}}]
  - toFQDNs: [{matchPattern: "*.allowed.test"}]
    toPorts: [{ports: [{port: "8080", protocol: TCP}]}]
  - toCIDR: ["fd00:77::/64"]
    toPorts: [{ports: [{port: "8081", protocol: TCP}], rules: {http: [{method: GET}]}}]
---
apiVersion: cilium.io/v2
kind: CiliumNetworkPolicy
metadata: {name: untrusted-dns, namespace: default}
spec:
  endpointSelector: {matchLabels: {app: untrusted}}
  egress:
  - toEndpoints: [{matchLabels: {"k8s:io.kubernetes.pod.namespace": kube-system, "k8s:k8s-app": kube-dns}}]
    toPorts: [{ports: [{port: "53", protocol: ANY}], rules: {dns: [{matchPattern: "*.allowed.test"}]}}]
---
apiVersion: cilium.io/v2
kind: CiliumNetworkPolicy
metadata: {name: dns-clients, namespace: kube-system}
spec:
  endpointSelector: {matchLabels: {k8s-app: kube-dns}}
  ingress:
  - fromEndpoints: [{matchLabels: {"k8s:io.kubernetes.pod.namespace": default, app: client}}]
    toPorts: [{ports: [{port: "53", protocol: ANY}]}]
`;

/** The node's cases as Expectations, in the order the test runs them (one simulation teaches the FQDN cache in order). */
const expectation = (name: string, spec: string, from = "default/client") => `apiVersion: ciliate.dev/v1alpha1
kind: Expectation
metadata: {name: ${name}, namespace: default}
spec:
  from: {pod: ${from}}
${spec}`;
const EXPECTATIONS_YAML = [
  expectation("kafka-produce-allowed-topic", "  to: {pod: default/broker}\n  port: 9092\n  kafka: {role: produce, topic: allowed-topic}\n  verdict: allowed\n"),
  expectation("kafka-produce-other-topic", "  to: {pod: default/broker}\n  port: 9092\n  kafka: {role: produce, topic: secret-topic}\n  verdict: denied\n"),
  expectation("tls-allowed-sni", "  to: {pod: default/broker}\n  port: 8443\n  protocol: TCP\n  tls: {serverName: tls.allowed.test}\n  verdict: allowed\n"),
  expectation("tls-other-sni", "  to: {pod: default/broker}\n  port: 8443\n  protocol: TCP\n  tls: {serverName: tls.denied.test}\n  verdict: denied\n"),
  expectation("kafka-egress-allowed-topic", "  to: {pod: default/broker}\n  port: 9093\n  kafka: {role: produce, topic: allowed-topic}\n  verdict: allowed\n"),
  expectation("kafka-egress-other-topic", "  to: {pod: default/broker}\n  port: 9093\n  kafka: {role: produce, topic: secret-topic}\n  verdict: denied\n"),
  expectation("tls-ingress-allowed-sni", "  to: {pod: default/broker}\n  port: 8444\n  protocol: TCP\n  tls: {serverName: tls.allowed.test}\n  verdict: allowed\n"),
  expectation("tls-ingress-other-sni", "  to: {pod: default/broker}\n  port: 8444\n  protocol: TCP\n  tls: {serverName: tls.denied.test}\n  verdict: denied\n"),
  expectation("fqdn-before-resolving", `  to: {ip: ${EXT_ALLOWED}}\n  port: 8080\n  protocol: TCP\n  verdict: denied\n`),
  expectation("dns-allowed-name", `  to: {pod: kube-system/coredns}\n  port: 53\n  dns: {query: web.allowed.test, answers: [${EXT_ALLOWED}], ttl: 300}\n  verdict: allowed\n`),
  expectation("dns-other-name", `  to: {pod: kube-system/coredns}\n  port: 53\n  dns: {query: web.denied.test, answers: [${EXT_DENIED}], ttl: 300}\n  verdict: denied\n`),
  expectation("fqdn-learned-address", `  to: {ip: ${EXT_ALLOWED}}\n  port: 8080\n  protocol: TCP\n  verdict: allowed\n`),
  expectation("fqdn-refused-name-address", `  to: {ip: ${EXT_DENIED}}\n  port: 8080\n  protocol: TCP\n  verdict: denied\n`),
  expectation("dns-untrusted-pod", `  to: {pod: kube-system/coredns}\n  port: 53\n  dns: {query: web.allowed.test, answers: [${EXT_ALLOWED}], ttl: 300}\n  verdict: denied\n`, "default/untrusted"),
  expectation("dns-short-ttl", `  to: {pod: kube-system/coredns}\n  port: 53\n  dns: {query: short.allowed.test, answers: [${EXT_SHORT}], ttl: 2}\n  verdict: allowed\n`),
  expectation("fqdn-short-ttl-open", `  to: {ip: ${EXT_SHORT}}\n  port: 8080\n  protocol: TCP\n  verdict: allowed\n`),
  expectation("fqdn-short-ttl-expired", `  wait: 4\n  to: {ip: ${EXT_SHORT}}\n  port: 8080\n  protocol: TCP\n  verdict: denied\n`),
].join("---\n");

const metrics = () => h.metrics();
const metric = (text: string, series: string) => {
  const line = text.split("\n").find((l) => l.startsWith(`${series} `));
  return Number(line?.slice(series.length + 1) ?? 0);
};
const proxyDrops = (text: string) => metric(text, 'ciliate_drop_count_total{reason="PROXY_LOOKUP_FAILED",direction="INGRESS"}') + metric(text, 'ciliate_drop_count_total{reason="PROXY_LOOKUP_FAILED",direction="EGRESS"}');
const observe = (...args: string[]) => h.observe(...args);

/** l7-pod-tool in a namespace (TypeScript through tsx, from the repository root); asynchronous: the agent's proxy answers meanwhile. */
function l7tool(ns: string, ...args: (string | number)[]): Promise<Record<string, unknown>> {
  return new Promise((resolve, reject) =>
    execFile("ip", ["netns", "exec", ns, process.execPath, "--import", "tsx", L7TOOL, ...args.map(String)], { cwd: ROOT, timeout: 30_000 }, (_e, stdout) => {
      try {
        resolve(JSON.parse(String(stdout).trim().split("\n").pop()!));
      } catch {
        reject(new Error(`l7-pod-tool ${args.join(" ")} printed ${JSON.stringify(String(stdout))}`));
      }
    }),
  );
}

/** A long-running l7-pod-tool server; each JSON line after {serving} goes to `onLine`. Resolves once it listens. */
function l7server(ns: string, onLine: (o: Record<string, unknown>) => void, ...args: (string | number)[]): Promise<void> {
  const p = spawn("ip", ["netns", "exec", ns, process.execPath, "--import", "tsx", L7TOOL, ...args.map(String)], { cwd: ROOT, stdio: ["ignore", "pipe", "pipe"] });
  h.children.push(p);
  let buf = "";
  return new Promise((resolve, reject) => {
    const t = setTimeout(() => reject(new Error(`l7-pod-tool ${args[0]} did not start`)), 20_000);
    p.stdout!.on("data", (d) => {
      buf += d;
      for (let i = buf.indexOf("\n"); i >= 0; i = buf.indexOf("\n")) {
        const o = JSON.parse(buf.slice(0, i)) as Record<string, unknown>;
        buf = buf.slice(i + 1);
        if ("serving" in o) (clearTimeout(t), resolve());
        else onLine(o);
      }
    });
  });
}

/** dig in the client pod, or another (asynchronous, as above). */
function dig(name: string, pod = "client"): Promise<{ status: string; answers: string[] }> {
  return new Promise((resolve) =>
    execFile("ip", ["netns", "exec", NS(pod), "dig", "+tries=1", "+time=2", `@${h.podIp.get("coredns")}`, name, "A"], { timeout: 10_000 }, (_e, stdout) => {
      const out = String(stdout);
      resolve({ status: /status: ([A-Z]+)/.exec(out)?.[1] ?? "NO ANSWER", answers: [...out.matchAll(/^\S+\s+\d+\s+IN\s+A\s+(\S+)$/gm)].map((m) => m[1]!) });
    }),
  );
}

/** "DIRECTION PORT" of the client's flows `observe` shows dropped as PROXY_LOOKUP_FAILED (178). */
const dropped178 = () =>
  new Set(observe("--verdict", "DROPPED", "--from-pod", "client", "--last", "0").filter((f) => f.drop_reason === 178).map((f) => {
    const l4 = f.l4 as { TCP?: { destination_port: number }; UDP?: { destination_port: number } };
    return `${f.traffic_direction} ${(l4.TCP ?? l4.UDP)?.destination_port}`;
  }));
const produce = (topic: string, port = 9092) => l7tool(NS("client"), "kafka-produce", h.podIp.get("broker")!, port, "client", topic);
const tlsTo = (sni: string, port = 8443) => l7tool(NS("client"), "tls", h.podIp.get("broker")!, port, sni, join(h.dir, "ca.pem"));
const tcpTo = (ip: string) => tool(NS("client"), "tcp", ip, 8080) as { ok: boolean; reply?: string; error?: string };

describe.skipIf(skip)("ciliate agent: Kafka, TLS SNI and DNS/toFQDNs through the node's proxies (network namespaces)", () => {
  beforeAll(async () => {
    h.setUp({ "pods.yaml": PODS_YAML, "policy.yaml": POLICY_YAML });
    // One self-signed certificate for both names: a refused name is refused by the proxy, not by the certificate.
    sh("openssl", ["req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes", "-days", "1", "-subj", "/CN=tls.allowed.test",
      "-addext", "subjectAltName=DNS:tls.allowed.test,DNS:tls.denied.test", "-keyout", join(h.dir, "key.pem"), "-out", join(h.dir, "ca.pem")]);
    // The "internet": two addresses behind the node's device, with a route back to the pods.
    sh("ip", ["link", "add", "ext0", "netns", NODE, "type", "veth", "peer", "name", "eth0", "netns", NS("ext")]);
    sh("ip", ["-n", NODE, "addr", "add", `${NODE_IP}/24`, "dev", "ext0"]);
    sh("ip", ["-n", NODE, "link", "set", "ext0", "up"]);
    for (const ip of [EXT_ALLOWED, EXT_DENIED, EXT_SHORT]) sh("ip", ["-n", NS("ext"), "addr", "add", `${ip}/24`, "dev", "eth0"]);
    sh("ip", ["-n", NS("ext"), "link", "set", "eth0", "up"]);
    sh("ip", ["-n", NS("ext"), "link", "set", "lo", "up"]);
    sh("ip", ["-n", NS("ext"), "route", "add", POD_CIDR, "via", NODE_IP]);
    await h.startAgent();
    h.addPods();
    h.children.push(serve(NS("ext"), "ext", 240_000));
    const dnsmasq = spawn("ip", ["netns", "exec", NS("coredns"), "dnsmasq", "--keep-in-foreground", "--no-resolv", "--no-hosts", "--bind-interfaces", `--listen-address=${h.podIp.get("coredns")}`,
      "--port=53", "--local-ttl=300", "--pid-file=", "--user=root", "--log-queries", "--log-facility=-", `--host-record=web.allowed.test,${EXT_ALLOWED}`, `--host-record=web.denied.test,${EXT_DENIED}`, `--host-record=short.allowed.test,${EXT_SHORT},2`], { stdio: ["ignore", "ignore", "pipe"] });
    dnsmasq.stderr!.on("data", (d) => (resolverLog += d));
    h.children.push(dnsmasq);
    await Promise.all([
      l7server(NS("broker"), (o) => brokerSaw.push(o as never), "kafka-broker", 9092, h.podIp.get("broker")!, 240_000),
      l7server(NS("broker"), (o) => tlsSaw.push(String(o.sni)), "tls-serve", 8443, join(h.dir, "ca.pem"), join(h.dir, "key.pem"), 240_000),
      l7server(NS("broker"), (o) => broker2Saw.push(o as never), "kafka-broker", 9093, h.podIp.get("broker")!, 240_000),
      l7server(NS("broker"), (o) => tls2Saw.push(String(o.sni)), "tls-serve", 8444, join(h.dir, "ca.pem"), join(h.dir, "key.pem"), 240_000),
    ]);
    // dnsmasq answers (asked from its own namespace, not through the proxy).
    await eventually(() => /status: NOERROR/.test(sh("ip", ["netns", "exec", NS("coredns"), "dig", "+tries=1", "+time=1", `@${h.podIp.get("coredns")}`, "web.allowed.test"], true)), 10_000);
  }, 120_000);

  afterAll(() => h.tearDown(), 60_000);

  it("Kafka: produce to the allowed topic reaches the broker; another topic gets TOPIC_AUTHORIZATION_FAILED and never reaches it", async () => {
    const ok = await produce("allowed-topic");
    expect(ok, h.log).toEqual({ ok: true });
    node.set("kafka-produce-allowed-topic", "allowed");
    expect(brokerSaw.filter((r) => r.apiKey === 0)).toEqual([{ apiKey: 0, topics: ["allowed-topic"] }]);
    const denied = await produce("secret-topic");
    // kafkajs's error for code 29 in the Metadata response the proxy built in the broker's place.
    expect(denied, h.log).toMatchObject({ ok: false, type: "TOPIC_AUTHORIZATION_FAILED", code: 29, message: "Not authorized to access topics: [Topic authorization failed]" });
    node.set("kafka-produce-other-topic", "denied");
    expect(brokerSaw.filter((r) => r.topics.includes("secret-topic"))).toEqual([]);
  }, 60_000);

  it("TLS SNI: the allowed server name gets the server's own answer end to end; another name is reset before the server sees it", async () => {
    expect(await tlsTo("tls.allowed.test"), h.log).toEqual({ ok: true, reply: "tls:tls.allowed.test" });
    node.set("tls-allowed-sni", "allowed");
    const denied = await tlsTo("tls.denied.test");
    expect(denied, h.log).toMatchObject({ ok: false });
    expect(["ECONNRESET", "closed"]).toContain(denied.error);
    node.set("tls-other-sni", "denied");
    expect(tlsSaw).toEqual(["tls.allowed.test"]);
  }, 60_000);

  it("the other directions: Kafka on the client's egress (9093) and TLS SNI on the broker's ingress (8444), each allowed and refused", async () => {
    expect(await produce("allowed-topic", 9093), h.log).toEqual({ ok: true });
    node.set("kafka-egress-allowed-topic", "allowed");
    expect(await produce("secret-topic", 9093), h.log).toMatchObject({ ok: false, type: "TOPIC_AUTHORIZATION_FAILED", code: 29 });
    node.set("kafka-egress-other-topic", "denied");
    expect(broker2Saw.filter((r) => r.apiKey === 0)).toEqual([{ apiKey: 0, topics: ["allowed-topic"] }]);
    expect(broker2Saw.filter((r) => r.topics.includes("secret-topic"))).toEqual([]);
    expect(await tlsTo("tls.allowed.test", 8444), h.log).toEqual({ ok: true, reply: "tls:tls.allowed.test" });
    node.set("tls-ingress-allowed-sni", "allowed");
    const denied = await tlsTo("tls.denied.test", 8444);
    expect(denied, h.log).toMatchObject({ ok: false });
    node.set("tls-ingress-other-sni", "denied");
    expect(tls2Saw).toEqual(["tls.allowed.test"]);
  }, 60_000);

  it("DNS and toFQDNs: an unresolved address is dropped; an allowed name resolves and its address opens; a denied name is REFUSED and its address stays closed", async () => {
    expect(tcpTo(EXT_ALLOWED)).toMatchObject({ ok: false, error: "timeout" });
    node.set("fqdn-before-resolving", "denied");
    const allowed = await dig("web.allowed.test");
    expect(allowed, h.log).toEqual({ status: "NOERROR", answers: [EXT_ALLOWED] });
    node.set("dns-allowed-name", "allowed");
    const refused = await dig("web.denied.test");
    expect(refused, h.log).toEqual({ status: "REFUSED", answers: [] });
    node.set("dns-other-name", "denied");
    // The proxy answers only after the maps allow the learned address: the first connection goes through.
    expect(tcpTo(EXT_ALLOWED), h.log).toEqual({ ok: true, reply: "ext" });
    node.set("fqdn-learned-address", "allowed");
    expect(tcpTo(EXT_DENIED)).toMatchObject({ ok: false, error: "timeout" });
    node.set("fqdn-refused-name-address", "denied");
    const polDrops = observe("--verdict", "DROPPED", "--from-pod", "client", "--last", "0").filter((f) => (f.IP as { destination: string }).destination === EXT_DENIED);
    expect(polDrops.map((f) => f.drop_reason_desc), h.log).toContain("POLICY_DENIED");
    // The proxy asked the resolver from the client's own address (Cilium's transparent DNS proxy).
    expect(resolverLog, resolverLog).toContain(`query[A] web.allowed.test from ${h.podIp.get("client")}\n`);
    // So the resolver's own ingress policy holds: the untrusted pod's allowed name reaches the proxy, whose
    // query, from the untrusted pod's address, is dropped at the resolver (from the node's it would pass).
    expect((await dig("web.allowed.test", "untrusted")).status).not.toBe("NOERROR");
    node.set("dns-untrusted-pod", "denied");
    expect(resolverLog).not.toContain(`from ${h.podIp.get("untrusted")}`);
    // The proxy's unanswered forward (5 s) is an upstream error, answered SERVFAIL.
    await eventually(() => metric(metrics(), 'ciliate_proxy_upstream_errors_total{protocol="dns"}') > 0, 10_000, () => metrics());
    await eventually(
      () => observe("--verdict", "DROPPED", "--from-pod", "untrusted", "--last", "0").some((f) => f.drop_reason_desc === "POLICY_DENIED" && f.traffic_direction === "INGRESS" && (f.l4 as { UDP?: { destination_port: number } }).UDP?.destination_port === 53),
      10_000,
      () => h.log,
    );
  }, 60_000);

  it("toFQDNs on the node: the allow learned from a 2 s answer goes when the TTL runs out", async () => {
    expect(await dig("short.allowed.test"), h.log).toEqual({ status: "NOERROR", answers: [EXT_SHORT] });
    const learnedAt = Date.now();
    node.set("dns-short-ttl", "allowed");
    expect(tcpTo(EXT_SHORT), h.log).toEqual({ ok: true, reply: "ext" });
    node.set("fqdn-short-ttl-open", "allowed");
    await new Promise((r) => setTimeout(r, Math.max(0, learnedAt + 4000 - Date.now())));
    expect(tcpTo(EXT_SHORT)).toMatchObject({ ok: false, error: "timeout" });
    node.set("fqdn-short-ttl-expired", "denied");
    expect(h.log).toMatch(/dns: TTL expired/);
  }, 60_000);

  it("`ciliate check` on the same manifests gives every case the node's verdict", () => {
    expectCheckAgrees(h.dir, { "cluster.yaml": PODS_YAML, "policy.yaml": POLICY_YAML }, EXPECTATIONS_YAML, node);
  }, 60_000);

  it("shows the L7 flows in `ciliate observe` and counts them in hubble_flows_processed_total with Hubble's labels", async () => {
    await new Promise((r) => setTimeout(r, 300));
    const l7 = h.observeLines("--from-pod", "client", "--last", "0").filter(({ flow: f }) => f.Type === "L7" && (f.l7 as { type: string }).type === "REQUEST");
    // Hubble's Layer7 has no TLS record: the server name travels in ciliate's own key beside the flow.
    const seen = l7.map(({ flow: f, ciliate }) => {
      const x = f.l7 as { kafka?: { api_key: string; topic: string }; dns?: { query: string } };
      const tls = ciliate?.tls as { server_name: string } | undefined;
      return `${f.traffic_direction} ${f.verdict} ${x.kafka ? `kafka ${x.kafka.api_key} ${x.kafka.topic}` : x.dns ? `dns ${x.dns.query}` : tls ? `tls ${tls.server_name}` : "?"}`;
    });
    expect(seen, JSON.stringify(l7)).toEqual(
      expect.arrayContaining([
        "INGRESS FORWARDED kafka produce allowed-topic",
        "INGRESS DROPPED kafka metadata secret-topic",
        "EGRESS FORWARDED tls tls.allowed.test",
        "EGRESS DROPPED tls tls.denied.test",
        "EGRESS FORWARDED dns web.allowed.test.",
        "EGRESS DROPPED dns web.denied.test.",
      ]),
    );
    const m = metrics();
    const flows = (protocol: string, subtype: string, verdict: string) => metric(m, `hubble_flows_processed_total{protocol="${protocol}",type="L7",subtype="${subtype}",verdict="${verdict}"}`);
    for (const [protocol, subtype] of [["Kafka", "Kafka"], ["DNS", "DNS"], ["Unknown L7", ""]]) {
      expect(flows(protocol!, subtype!, "FORWARDED"), `${protocol} FORWARDED\n${m}`).toBeGreaterThan(0);
      expect(flows(protocol!, subtype!, "DROPPED"), `${protocol} DROPPED`).toBeGreaterThan(0);
    }
    for (const protocol of ["kafka", "dns", "tls"]) expect(metric(m, `ciliate_proxy_requests_total{protocol="${protocol}",verdict="DROPPED"}`), protocol).toBeGreaterThan(0);
  }, 30_000);

  it("with the proxy's TCP listeners destroyed under a live agent (ss -K), Kafka and TLS are dropped (178) and shown in observe", async () => {
    const before = proxyDrops(metrics());
    const brokerBefore = brokerSaw.length;
    const tlsBefore = tlsSaw.length;
    // The ProxyListeners entries stay (the agent does not know); only the kernel's socket lookup can tell.
    // (ss -K cannot take the DNS proxy's UDP sockets away: a UDP socket bound to its port stays hashed.)
    sh("ip", ["netns", "exec", NODE, "ss", "-K", "-t", "state", "listening", "( sport >= :10000 and sport <= :10999 )"]);
    const [kafka, tls] = await Promise.all([produce("allowed-topic"), tlsTo("tls.allowed.test")]);
    expect(kafka).toMatchObject({ ok: false });
    expect(tls).toMatchObject({ ok: false, error: "timeout" });
    expect(brokerSaw.length).toBe(brokerBefore);
    expect(tlsSaw.length).toBe(tlsBefore);
    expect(proxyDrops(metrics())).toBeGreaterThan(before);
    await eventually(() => ["INGRESS 9092", "EGRESS 8443"].every((k) => dropped178().has(k)), 10_000, () => `${JSON.stringify([...dropped178()])}\n${h.log}`);
    expect(metric(metrics(), 'hubble_drop_total{reason="PROXY_LOOKUP_FAILED",protocol="TCP"}')).toBeGreaterThan(0);
  }, 60_000);

  it("with the agent's DNS proxy off (--no-dns-proxy), DNS to the redirected port is dropped (178), shown in observe, and nothing is learned", async () => {
    await stopProcess(h.agent);
    await h.startAgent(["--no-dns-proxy"]);
    const before = metric(metrics(), 'hubble_drop_total{reason="PROXY_LOOKUP_FAILED",protocol="UDP"}');
    expect(await dig("other.allowed.test")).toMatchObject({ status: "NO ANSWER" });
    await eventually(() => dropped178().has("EGRESS 53"), 10_000, () => `${JSON.stringify([...dropped178()])}\n${h.log}`);
    expect(metric(metrics(), 'hubble_drop_total{reason="PROXY_LOOKUP_FAILED",protocol="UDP"}')).toBeGreaterThan(before);
    expect(h.log).not.toMatch(/dns: other\.allowed\.test/);
  }, 60_000);

  it("IPv6 that must go to the proxy is dropped with a reason, never forwarded (without --enable-ipv6 the agent's endpoints are IPv4 only)", async () => {
    // The client turns IPv6 on by itself (the CNI turned it off) and sends to an address its L7 rule covers.
    const c = NS("client");
    sh("ip", ["netns", "exec", c, "sysctl", "-qw", "net.ipv6.conf.eth0.disable_ipv6=0"]);
    sh("ip", ["-n", c, "-6", "addr", "add", `${CLIENT6}/64`, "dev", "eth0", "nodad"]);
    sh("ip", ["-n", c, "-6", "route", "add", "fd00:77::/64", "dev", "eth0"]);
    const gw = (JSON.parse(sh("ip", ["-n", c, "-j", "neigh", "show", "dev", "eth0"])) as { dst: string; lladdr: string }[]).find((n) => n.dst === "169.254.1.1")!.lladdr;
    sh("ip", ["-n", c, "-6", "neigh", "replace", EXT6, "lladdr", gw, "dev", "eth0", "nud", "permanent"]);
    // Were it forwarded, the ext namespace (nothing listens on 8081) would answer with a reset.
    sh("ip", ["netns", "exec", NODE, "sysctl", "-qw", "net.ipv6.conf.all.forwarding=1"]);
    sh("ip", ["-n", NODE, "-6", "addr", "add", "fd00:77::1/64", "dev", "ext0", "nodad"]);
    sh("ip", ["-n", NS("ext"), "-6", "addr", "add", `${EXT6}/64`, "dev", "eth0", "nodad"]);
    sh("ip", ["-n", NS("ext"), "-6", "route", "add", "fd00:6::/64", "via", "fd00:77::1"]);
    expect(tool(c, "tcp", EXT6, 8081)).toMatchObject({ ok: false, error: "timeout" });
    const drops = () => observe("--verdict", "DROPPED", "--last", "0").filter((f) => (f.IP as { destination: string }).destination === EXT6);
    await eventually(() => drops().length > 0, 10_000, () => h.log);
    // The endpoint has no IPv6 address, so its IPv6 is spoofed as far as the datapath knows: dropped before
    // policy (Cilium's DROP_INVALID_SIP), so it can never reach an L7 port un-inspected.
    for (const f of drops()) expect(f, JSON.stringify(f)).toMatchObject({ drop_reason: 132, drop_reason_desc: "INVALID_SOURCE_IP", traffic_direction: "EGRESS", trace_observation_point: "FROM_ENDPOINT", l4: { TCP: { destination_port: 8081 } } });
  }, 60_000);

  it("with the proxy killed nothing passes: Kafka, TLS and DNS all fail, dropped as PROXY_LOOKUP_FAILED; back with the agent", async () => {
    await stopProcess(h.agent);
    await h.startAgent();
    // Serving again, DNS proxy included.
    await eventually(() => spawnSync("ip", ["netns", "exec", NS("client"), "dig", "+tries=1", "+time=1", `@${h.podIp.get("coredns")}`, "web.allowed.test"], { encoding: "utf8" }).stdout.includes("status: NOERROR"), 15_000, () => h.log);
    const before = proxyDrops(metrics());
    const brokerBefore = brokerSaw.length;
    const tlsBefore = tlsSaw.length;
    // SIGKILL: the agent cannot clear ProxyListeners; the programs find no socket and drop.
    await h.killAgent();
    const broker2Before = broker2Saw.length;
    const tls2Before = tls2Saw.length;
    const [kafka, tls, dns, kafka2, tls2] = await Promise.all([produce("allowed-topic"), tlsTo("tls.allowed.test"), dig("web.allowed.test"), produce("allowed-topic", 9093), tlsTo("tls.allowed.test", 8444)]);
    expect(kafka).toMatchObject({ ok: false });
    expect(tls).toMatchObject({ ok: false, error: "timeout" });
    expect(dns.status).toBe("NO ANSWER");
    expect(kafka2).toMatchObject({ ok: false });
    expect(tls2).toMatchObject({ ok: false, error: "timeout" });
    expect(brokerSaw.length).toBe(brokerBefore);
    expect(tlsSaw.length).toBe(tlsBefore);
    expect(broker2Saw.length).toBe(broker2Before);
    expect(tls2Saw.length).toBe(tls2Before);
    await h.startAgent();
    expect(proxyDrops(metrics())).toBeGreaterThan(before);
    // The restarted agent's proxies serve again.
    expect(await produce("allowed-topic"), h.log).toEqual({ ok: true });
    expect(await tlsTo("tls.allowed.test"), h.log).toEqual({ ok: true, reply: "tls:tls.allowed.test" });
  }, 120_000);

  it("with --tofqdns-min-ttl 8 the 2 s answer's allow lasts 8 s, and goes after; `ciliate check --tofqdns-min-ttl 8` agrees", async () => {
    await stopProcess(h.agent);
    await h.startAgent(["--tofqdns-min-ttl", "8"]);
    await eventually(() => spawnSync("ip", ["netns", "exec", NS("client"), "dig", "+tries=1", "+time=1", `@${h.podIp.get("coredns")}`, "web.allowed.test"], { encoding: "utf8" }).stdout.includes("status: NOERROR"), 15_000, () => h.log);
    const minTtl = new Map<string, "allowed" | "denied">();
    expect(await dig("short.allowed.test"), h.log).toEqual({ status: "NOERROR", answers: [EXT_SHORT] });
    const learnedAt = Date.now();
    minTtl.set("min-ttl-learn", "allowed");
    const at = (ms: number) => new Promise((r) => setTimeout(r, Math.max(0, learnedAt + ms - Date.now())));
    await at(4000);
    expect(tcpTo(EXT_SHORT), h.log).toEqual({ ok: true, reply: "ext" });
    minTtl.set("min-ttl-after-4s", "allowed");
    await at(10_000);
    expect(tcpTo(EXT_SHORT)).toMatchObject({ ok: false, error: "timeout" });
    minTtl.set("min-ttl-after-10s", "denied");
    const expectations = [
      expectation("min-ttl-learn", `  to: {pod: kube-system/coredns}\n  port: 53\n  dns: {query: short.allowed.test, answers: [${EXT_SHORT}], ttl: 2}\n  verdict: allowed\n`),
      expectation("min-ttl-after-4s", `  wait: 4\n  to: {ip: ${EXT_SHORT}}\n  port: 8080\n  protocol: TCP\n  verdict: allowed\n`),
      expectation("min-ttl-after-10s", `  wait: 6\n  to: {ip: ${EXT_SHORT}}\n  port: 8080\n  protocol: TCP\n  verdict: denied\n`),
    ].join("---\n");
    expectCheckAgrees(h.dir, { "cluster.yaml": PODS_YAML, "policy.yaml": POLICY_YAML }, expectations, minTtl, ["--tofqdns-min-ttl", "8"], "scenario-min-ttl");
  }, 90_000);
});
