/*
 * End-to-end: dual-stack pods on one node (`ciliate agent --enable-ipv6 --ipv6-range`). Pods join by
 * `ciliate cni` ADD and get an IPv4 and an IPv6 address; an "ext" namespace beside the node stands for
 * addresses outside the cluster (2001:db8:1::5 and 2001:db8:2::5, routed by the node). Real TCP, UDP and
 * ICMPv6 echo over IPv6:
 *   - by identity: client → server allowed (TCP 8080, UDP 5353, ICMPv6 echo), other → server denied;
 *   - by IPv6 CIDR: other (egress toCIDR 2001:db8:1::/48) → 2001:db8:1::5 allowed, → 2001:db8:2::5 denied;
 *   - an IPv6 ClusterIP (dual-stack service) → server's IPv6 address;
 *   - IPv6 masquerading (`--enable-bpf-masquerade --ipv6-node --ipv6-native-routing-cidr`, issue #13): an
 *     "out" namespace on a link of its own (the agent's `--device`), with no route to the pods, sees a
 *     pod's TCP and UDP come from the node's IPv6 address and answers them; ICMPv6 echo too;
 *   - a dual-stack NodePort reached from "out" on the node's IPv6 address, DNATed to the server pod;
 * with the drops counted by the datapath, the flows carrying IPv6 addresses, and `ciliate check` on the same
 * manifests agreeing with every verdict.
 * L7 over IPv6, through the proxy's IPv6 listeners ([::]:<proxy port>), as over IPv4:
 *   - ingress HTTP (server:8090, GET /public only from client): allowed requests reach the server, which
 *     sees the client's own IPv6 address; denied ones get 403 from the proxy — and the same over IPv4;
 *   - egress HTTP (other → [2001:db8:2::5]:8091, GET /public only): the world destination sees other's own
 *     IPv6 address; a denied request gets 403;
 *   - ingress TLS SNI (server:8443, api.empire.example only): the allowed name talks to the server end to
 *     end, another is reset before the server sees it;
 * the L7 flows in `ciliate observe` carry IPv6 addresses, and `ciliate check` and `ciliate trace` give
 * the node's verdicts. Kernel suite: runs as root; everything is removed in afterAll.
 */
import { execFile, spawn, type ChildProcess } from "node:child_process";
import { mkdirSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { kernelSuite, openPinnedMap, tcQuery } from "../../datapath/index.ts";
import { MAP_SPECS } from "../../host/codecs.gen.ts";
import { formatAddr } from "../../host/ip.ts";
import { BIN, E2eNode, TOOL, eventually, expectCheckAgrees, podYaml, ROOT, serve, sh, tool } from "./e2e-helpers.ts";
import { SERVER_INGRESS6 } from "./multinode-scenario.ts";

const suite = kernelSuite("agent-e2e-ipv6", ["root", "libbpf", "bpffs", "iproute2"]);
const PODS = ["client", "other", "server"];
const RANGE6 = "fd00:10:244:6::/64";
const SVC6 = "fd00:10:96::50";
/** "out": the outside on a link of its own, the node's IPv6 address there (--ipv6-node) and its own. */
const NODE6 = "2001:db9:ff::1";
const OUT6 = "2001:db9:ff::2";
const PEER_PORT = 9000;
const NODE_PORT = 30680;
const h = new E2eNode({ prefix: "ci6", nodeIp: "192.168.59.1", podCidr: "10.244.6.0/24", metricsAddr: "127.0.0.1:19966", pods: PODS.map((name) => ({ name })), others: ["ext", "out"], agentFlags: ["--enable-ipv6", "--ipv6-range", RANGE6] });
const outDev = `v6o${h.tag}`.slice(0, 15);
const NS = (n: string) => h.ns(n);
const ip6 = new Map<string, string>();
/** The checked-in test certificate (agent/proxy/testdata): api.empire.example and rebels.example, so a refused name is refused by the proxy. */
const CERT = join(ROOT, "agent/proxy/testdata/tls-test.crt");
const KEY = join(ROOT, "agent/proxy/testdata/tls-test.key");
const L7TOOL = join(ROOT, "tests/agent/l7-pod-tool.ts");
/** What the TLS server in the server pod saw: the server name and the peer of each connection. */
const tlsSaw: { sni: string; peer: string }[] = [];

const FILES: Record<string, string> = {
  "pods.yaml": PODS.map((p) => podYaml(p)).join("---\n"),
  "svc.yaml": `apiVersion: v1
kind: Service
metadata: {name: web, namespace: default}
spec:
  clusterIP: 10.96.0.50
  clusterIPs: [10.96.0.50, "${SVC6}"]
  ipFamilyPolicy: PreferDualStack
  ipFamilies: [IPv4, IPv6]
  selector: {app: server}
  ports: [{port: 80, targetPort: 8080}]
---
apiVersion: v1
kind: Service
metadata: {name: web-np, namespace: default}
spec:
  type: NodePort
  clusterIP: 10.96.0.51
  clusterIPs: [10.96.0.51, "fd00:10:96::51"]
  ipFamilyPolicy: PreferDualStack
  ipFamilies: [IPv4, IPv6]
  selector: {app: server}
  ports: [{port: 81, targetPort: 8080, nodePort: ${NODE_PORT}}]
`,
  "policy.yaml": `${SERVER_INGRESS6}---
apiVersion: cilium.io/v2
kind: CiliumNetworkPolicy
metadata: {name: server-from-out, namespace: default}
spec:
  endpointSelector: {matchLabels: {app: server}}
  ingress:
  - fromCIDR: ["2001:db9::/32"]
    toPorts: [{ports: [{port: "8080", protocol: TCP}]}]
---
apiVersion: cilium.io/v2
kind: CiliumNetworkPolicy
metadata: {name: other-egress, namespace: default}
spec:
  endpointSelector: {matchLabels: {app: other}}
  egress:
  - toCIDR: ["2001:db8:1::/48"]
  - toCIDR: ["2001:db8:2::5/128"]
    toPorts:
    - ports: [{port: "8091", protocol: TCP}]
      rules:
        http: [{method: GET, path: /public}]
`,
  "l7.yaml": `apiVersion: cilium.io/v2
kind: CiliumNetworkPolicy
metadata: {name: server-l7, namespace: default}
spec:
  endpointSelector: {matchLabels: {app: server}}
  ingress:
  - fromEndpoints: [{matchLabels: {app: client}}]
    toPorts:
    - ports: [{port: "8090", protocol: TCP}]
      rules:
        http: [{method: GET, path: /public}]
  - fromEndpoints: [{matchLabels: {app: client}}]
    toPorts: [{ports: [{port: "8443", protocol: TCP}], serverNames: [api.empire.example]}]
`,
};

const metrics = () => h.metrics();
const dropped = (dir: "INGRESS" | "EGRESS") => Number(new RegExp(`^ciliate_drop_count_total\\{reason="POLICY_DENIED",direction="${dir}"\\} (\\d+)$`, "m").exec(metrics())?.[1] ?? 0);
const ping6 = (from: string, to: string) => JSON.parse(sh("ip", ["netns", "exec", NS(from), "python3", join(ROOT, "tests/agent/ping.py"), to, "2"])) as { sent: number; received: number };
const verdicts = new Map<string, "allowed" | "denied">();
/** The simulator's IPv6 pod range, so its pods are dual-stack like the node's. */
const CONFIG6 = `apiVersion: ciliate.dev/v1alpha1\nkind: Config\nmetadata: {name: c}\nspec: {podCIDRv6: "fd00:10:244::/56"}\n`;
const counter = (reason: string, dir: "INGRESS" | "EGRESS") => Number(new RegExp(`^ciliate_drop_count_total\\{reason="${reason}",direction="${dir}"\\} (\\d+)$`, "m").exec(metrics())?.[1] ?? 0);
/** One HTTP request with pod-tool from `from` to ip:port: the status (200 from the server, 403 from the proxy) and the server's answer. */
function http(from: string, ip: string, port: number, method: string, path: string): { status?: number; body?: Record<string, unknown>; error?: string } {
  const r = tool(NS(from), "http", ip, port, method, path) as { ok: boolean; error?: string; results: { status: number; body: string }[] };
  if (!r.ok) return { error: r.error };
  const { status, body } = r.results[0]!;
  return { status, body: status === 200 ? (JSON.parse(body) as Record<string, unknown>) : { text: body } };
}
/** l7-pod-tool's TLS client in the client pod (asynchronous: the agent's proxy answers meanwhile). */
function tlsTo(ip: string, sni: string): Promise<Record<string, unknown>> {
  return new Promise((resolve, reject) =>
    execFile("ip", ["netns", "exec", NS("client"), process.execPath, "--import", "tsx", L7TOOL, "tls", ip, "8443", sni, CERT], { cwd: ROOT, timeout: 30_000 }, (_e, stdout) => {
      try {
        resolve(JSON.parse(String(stdout).trim().split("\n").pop()!));
      } catch {
        reject(new Error(`l7-pod-tool tls printed ${JSON.stringify(String(stdout))}`));
      }
    }),
  );
}
/** A TLS server on [::]:8443 (IPv4 and IPv6) in the server pod; each connection's {sni, peer} goes to tlsSaw. Resolves once it listens. */
function tlsServer(): Promise<void> {
  const p = spawn("ip", ["netns", "exec", NS("server"), process.execPath, "--import", "tsx", L7TOOL, "tls-serve", "8443", CERT, KEY, "240000", "::"], { cwd: ROOT, stdio: ["ignore", "pipe", "ignore"] });
  h.children.push(p);
  let buf = "";
  return new Promise((resolve, reject) => {
    const t = setTimeout(() => reject(new Error("l7-pod-tool tls-serve did not start")), 20_000);
    p.stdout!.on("data", (d) => {
      buf += d;
      for (let i = buf.indexOf("\n"); i >= 0; i = buf.indexOf("\n")) {
        const o = JSON.parse(buf.slice(0, i)) as { serving?: string; sni: string; peer: string };
        buf = buf.slice(i + 1);
        if (o.serving) (clearTimeout(t), resolve());
        else tlsSaw.push({ sni: o.sni, peer: o.peer });
      }
    });
  });
}
/** pod-tool's HTTP server (IPv4 and IPv6) on `port` in namespace `ns`, answering with its name and the peer it sees. */
const httpServer = (ns: string, name: string, port: number): ChildProcess => spawn("ip", ["netns", "exec", ns, process.execPath, TOOL, "http-serve", name, "240000", String(port)], { stdio: "ignore" });
const servers: ChildProcess[] = [];
/** The address a peer-serve saw ("[ADDR]:PORT" over IPv6), or the failure. */
const seenAs = (r: Record<string, unknown>) => (r.ok ? /^\[([^\]]+)\]:\d+$/.exec(String(r.reply))?.[1] ?? `unexpected ${String(r.reply)}` : `failed (${String(r.error)})`);

/** One case: `run` answers whether the traffic got through; a denied one must have been counted as a policy drop. */
function expectCase(name: string, want: "allowed" | "denied", dir: "INGRESS" | "EGRESS", run: () => boolean): void {
  const before = dropped(dir);
  // An allowed case may try three times (a datagram or a reply lost on a loaded machine); a denied one
  // gets one try and must show up as a policy drop.
  let ok = run();
  for (let i = 0; want === "allowed" && !ok && i < 2; i++) ok = run();
  expect(`${name}: ${ok ? "allowed" : "denied"}`, h.log).toBe(`${name}: ${want}`);
  if (want === "denied") expect(dropped(dir), `${name}: a policy drop counted`).toBeGreaterThan(before);
  verdicts.set(name, want);
}

describe.skipIf(suite.skip)("ciliate agent: dual-stack pods over IPv6 (network namespaces)", () => {
  beforeAll(async () => {
    h.setUp(FILES);
    // ext: a namespace behind the node holding two outside IPv6 addresses, with a route back to the pods.
    const veth = `v6x${h.tag}`.slice(0, 15);
    sh("ip", ["-n", h.nodeNs, "link", "add", veth, "type", "veth", "peer", "name", "eth0", "netns", NS("ext")]);
    sh("ip", ["-n", h.nodeNs, "-6", "addr", "add", "2001:db8:ff::1/64", "dev", veth, "nodad"]);
    sh("ip", ["-n", h.nodeNs, "link", "set", veth, "up"]);
    sh("ip", ["-n", NS("ext"), "link", "set", "lo", "up"]);
    sh("ip", ["-n", NS("ext"), "-6", "addr", "add", "2001:db8:ff::2/64", "dev", "eth0", "nodad"]);
    for (const a of ["2001:db8:1::5/128", "2001:db8:2::5/128"]) sh("ip", ["-n", NS("ext"), "-6", "addr", "add", a, "dev", "lo"]);
    sh("ip", ["-n", NS("ext"), "link", "set", "eth0", "up"]);
    sh("ip", ["-n", NS("ext"), "-6", "route", "add", RANGE6, "via", "2001:db8:ff::1"]);
    for (const p of ["2001:db8:1::/64", "2001:db8:2::/64"]) sh("ip", ["-n", h.nodeNs, "-6", "route", "add", p, "via", "2001:db8:ff::2"]);
    // out: one address on a link of its own to the node and no route at all beyond it — the pods' addresses
    // are unknown there, only masquerading can bring their answers back.
    sh("ip", ["-n", h.nodeNs, "link", "add", outDev, "type", "veth", "peer", "name", "eth0", "netns", NS("out")]);
    sh("ip", ["-n", h.nodeNs, "-6", "addr", "add", `${NODE6}/64`, "dev", outDev, "nodad"]);
    sh("ip", ["-n", h.nodeNs, "link", "set", outDev, "up"]);
    sh("ip", ["-n", NS("out"), "link", "set", "lo", "up"]);
    sh("ip", ["-n", NS("out"), "-6", "addr", "add", `${OUT6}/64`, "dev", "eth0", "nodad"]);
    sh("ip", ["-n", NS("out"), "link", "set", "eth0", "up"]);
    await h.startAgent(["--ipv6-node", NODE6, "--device", outDev, "--enable-bpf-masquerade", "--ipv6-native-routing-cidr", "fd00:10:244::/56"]);
    h.addPods();
    for (const p of PODS) {
      const addrs = JSON.parse(sh("ip", ["-n", NS(p), "-j", "-6", "addr", "show", "dev", "eth0", "scope", "global"])) as { addr_info: { local: string }[] }[];
      ip6.set(p, addrs[0]!.addr_info[0]!.local);
    }
    h.children.push(serve(NS("server"), "server", 240_000), serve(NS("ext"), "ext", 240_000, [443]));
    h.children.push(httpServer(NS("server"), "server", 8090), httpServer(NS("ext"), "ext", 8091));
    await tlsServer();
    servers.push(spawn("ip", ["netns", "exec", NS("out"), process.execPath, TOOL, "peer-serve", "240000", String(PEER_PORT)], { stdio: "ignore" }));
    await eventually(() => tool(NS("out"), "tcp", OUT6, PEER_PORT).ok === true, 30_000, () => `out's peer-serve never listened\n${h.log}`);
    await eventually(() => tool(NS("client"), "tcp", ip6.get("server")!, 8080).ok === true, 30_000, () => `client → [server]:8080 never answered\n${h.log}`);
  }, 120_000);

  afterAll(() => {
    for (const s of servers) s.kill("SIGKILL");
    return h.tearDown();
  }, 60_000);

  it("gives each pod an IPv4 and an IPv6 address from the node's ranges (CNI result and the pod's interface)", () => {
    for (const p of PODS) {
      expect(ip6.get(p)).toMatch(/^fd00:10:244:6::[0-9a-f]+$/);
      expect(h.podIp.get(p)).toMatch(/^10\.244\.6\.\d+$/);
    }
    expect(new Set(ip6.values()).size).toBe(3);
    // No neighbour discovery is needed: the pod knows its gateway's MAC (a permanent entry).
    expect(sh("ip", ["-n", NS("client"), "-6", "neigh", "show", "fe80::1", "dev", "eth0"])).toMatch(/PERMANENT/);
  });

  it("enforces identity policy on IPv6: TCP, UDP and ICMPv6 echo from client allowed, from other denied", () => {
    const s = ip6.get("server")!;
    expectCase("tcp6-client-server", "allowed", "INGRESS", () => tool(NS("client"), "tcp", s, 8080).ok === true);
    expectCase("udp6-client-server", "allowed", "INGRESS", () => tool(NS("client"), "udp", s, 5353).ok === true);
    expectCase("icmp6-client-server", "allowed", "INGRESS", () => ping6("client", s).received === 2);
    expectCase("tcp6-other-server", "denied", "EGRESS", () => tool(NS("other"), "tcp", s, 8080).ok === true);
    expectCase("tcp6-client-server-9090", "denied", "INGRESS", () => tool(NS("client"), "tcp", s, 9090).ok === true);
  }, 60_000);

  it("enforces an IPv6 CIDR rule: other reaches 2001:db8:1::5 and not 2001:db8:2::5", () => {
    expectCase("cidr6-allowed", "allowed", "EGRESS", () => tool(NS("other"), "tcp", "2001:db8:1::5", 443).ok === true);
    expectCase("cidr6-denied", "denied", "EGRESS", () => tool(NS("other"), "tcp", "2001:db8:2::5", 443).ok === true);
  }, 60_000);

  it("load-balances the IPv6 ClusterIP to the server's IPv6 address", () => {
    expectCase("svc6-client", "allowed", "INGRESS", () => JSON.stringify(tool(NS("client"), "tcp", SVC6, 80)) === JSON.stringify({ ok: true, reply: "server" }));
    const flows = h.observe("--last", "0");
    const ips = flows.map((f) => f.IP as { source: string; destination: string; ipVersion: string } | undefined).filter((x) => x?.ipVersion === "IPv6");
    expect(ips.some((x) => x!.source === ip6.get("client") && x!.destination === ip6.get("server"))).toBe(true);
  }, 60_000);

  it("L7 ingress HTTP over IPv6 through the proxy's IPv6 listener: GET /public reaches the server, which sees the client's IPv6 address; GET /private and POST /public get 403; IPv4 alike", () => {
    const s6 = ip6.get("server")!;
    const c6 = ip6.get("client")!;
    const ok = http("client", s6, 8090, "GET", "/public");
    expect(ok, h.log).toMatchObject({ status: 200, body: { server: "server", url: "/public", peer: c6 } });
    verdicts.set("l7-http6-get-public", "allowed");
    for (const [method, path] of [["GET", "/private"], ["POST", "/public"]] as const) {
      const r = http("client", s6, 8090, method, path);
      expect(r, `${method} ${path}\n${h.log}`).toMatchObject({ status: 403, body: { text: expect.stringMatching(/Access denied/) } });
      verdicts.set(`l7-http6-${method.toLowerCase()}${path.replace("/", "-")}`, "denied");
    }
    // The same rule over IPv4 on the same dual-stack pods: the IPv4 listener, the same verdicts.
    expect(http("client", h.podIp.get("server")!, 8090, "GET", "/public"), h.log).toMatchObject({ status: 200, body: { peer: h.podIp.get("client") } });
    verdicts.set("l7-http4-get-public", "allowed");
    expect(http("client", h.podIp.get("server")!, 8090, "GET", "/private"), h.log).toMatchObject({ status: 403 });
    verdicts.set("l7-http4-get-private", "denied");
  }, 60_000);

  it("L7 egress HTTP over IPv6 to a world address: GET /public reaches [2001:db8:2::5]:8091, which sees other's IPv6 address; GET /private gets 403", () => {
    const ok = http("other", "2001:db8:2::5", 8091, "GET", "/public");
    expect(ok, h.log).toMatchObject({ status: 200, body: { server: "ext", url: "/public", peer: ip6.get("other") } });
    verdicts.set("l7-egress-http6-get-public", "allowed");
    expect(http("other", "2001:db8:2::5", 8091, "GET", "/private"), h.log).toMatchObject({ status: 403 });
    verdicts.set("l7-egress-http6-get-private", "denied");
  }, 60_000);

  it("L7 TLS SNI over IPv6: the allowed server name talks to the server end to end from the client's IPv6 address; another is reset before the server sees it", async () => {
    const s6 = ip6.get("server")!;
    expect(await tlsTo(s6, "api.empire.example"), h.log).toEqual({ ok: true, reply: "tls:api.empire.example" });
    verdicts.set("l7-tls6-allowed-sni", "allowed");
    const denied = await tlsTo(s6, "rebels.example");
    expect(denied, h.log).toMatchObject({ ok: false });
    expect(["ECONNRESET", "closed"]).toContain(denied.error);
    verdicts.set("l7-tls6-other-sni", "denied");
    expect(tlsSaw).toEqual([{ sni: "api.empire.example", peer: ip6.get("client") }]);
  }, 60_000);

  it("shows the IPv6 L7 flows in `ciliate observe` with IPv6 addresses and the datapath's identities; every IPv6 listener opened", async () => {
    await new Promise((r) => setTimeout(r, 300));
    const l7 = h.observeLines("--last", "0").filter(({ flow: f }) => f.Type === "L7" && (f.l7 as { type: string }).type === "REQUEST" && (f.IP as { ipVersion: string }).ipVersion === "IPv6");
    const seen = l7.map(({ flow: f, ciliate }) => {
      const ip = f.IP as { source: string; destination: string };
      const x = f.l7 as { http?: { method: string; url: string } };
      const tls = ciliate?.tls as { server_name: string } | undefined;
      const what = x.http ? `${x.http.method} ${new URL(x.http.url, "http://relative.invalid").pathname}` : tls ? `tls ${tls.server_name}` : "?";
      return `${ip.source} ${ip.destination} ${f.traffic_direction} ${f.verdict} ${what}`;
    });
    const [c6, s6, o6] = [ip6.get("client"), ip6.get("server"), ip6.get("other")];
    expect(seen, JSON.stringify(l7)).toEqual(
      expect.arrayContaining([
        `${c6} ${s6} INGRESS FORWARDED GET /public`,
        `${c6} ${s6} INGRESS DROPPED GET /private`,
        `${c6} ${s6} INGRESS DROPPED POST /public`,
        `${o6} 2001:db8:2::5 EGRESS FORWARDED GET /public`,
        `${o6} 2001:db8:2::5 EGRESS DROPPED GET /private`,
        `${c6} ${s6} INGRESS FORWARDED tls api.empire.example`,
        `${c6} ${s6} INGRESS DROPPED tls rebels.example`,
      ]),
    );
    // The proxy's identities are the datapath's: the client's IPv6 L7 requests carry the identity its L3/L4
    // flows do (one identity for both of the pod's addresses).
    const l34 = h.observe("--from-pod", "client", "--last", "0").find((f) => f.Type === "L3_L4" && (f.source as { pod_name?: string }).pod_name === "client");
    expect(l34, "an L3/L4 flow from client").toBeDefined();
    for (const { flow: f } of l7.filter(({ flow: f }) => (f.IP as { source: string }).source === c6)) expect((f.source as { identity: number }).identity).toBe((l34!.source as { identity: number }).identity);
    expect(metrics()).not.toMatch(/^ciliate_proxy_listener_errors_total\{/m);
    expect(h.log).toMatch(/proxy port \d+ listening \(http, IPv6, default\/server ingress\)/);
  }, 30_000);

  it("`ciliate trace` over IPv6 gives the node's L7 verdicts", () => {
    // The node's manifests, with the cluster's IPv6 pod range for the simulator (as in the check below).
    const dir = join(h.dir, "scenario-trace");
    mkdirSync(dir, { recursive: true });
    for (const [name, text] of Object.entries({ ...FILES, "config.yaml": CONFIG6 })) writeFileSync(join(dir, name), text);
    const trace = (args: string[]) => {
      const out = sh(process.execPath, [BIN, "trace", "-f", dir, "--ip-family", "IPv6", "-o", "json", ...args]);
      return JSON.parse(out) as { verdict: string; l7?: { verdict: string } };
    };
    const cases: [string, string[]][] = [
      ["l7-http6-get-public", ["--from", "default/client", "--to", "default/server", "--port", "8090", "--http-method", "GET", "--http-path", "/public"]],
      ["l7-http6-get-private", ["--from", "default/client", "--to", "default/server", "--port", "8090", "--http-method", "GET", "--http-path", "/private"]],
      ["l7-egress-http6-get-public", ["--from", "default/other", "--to", "2001:db8:2::5", "--port", "8091", "--http-method", "GET", "--http-path", "/public"]],
      ["l7-egress-http6-get-private", ["--from", "default/other", "--to", "2001:db8:2::5", "--port", "8091", "--http-method", "GET", "--http-path", "/private"]],
      ["l7-tls6-allowed-sni", ["--from", "default/client", "--to", "default/server", "--port", "8443", "--tls-sni", "api.empire.example"]],
      ["l7-tls6-other-sni", ["--from", "default/client", "--to", "default/server", "--port", "8443", "--tls-sni", "rebels.example"]],
    ];
    for (const [name, args] of cases) {
      const t = trace(args);
      expect(`${name}: ${t.verdict} (l7 ${t.l7?.verdict})`).toBe(`${name}: ${verdicts.get(name)} (l7 ${verdicts.get(name)})`);
    }
  }, 90_000);

  it("masquerades a pod's IPv6 TCP, UDP and ICMPv6 echo to the outside to the node's IPv6 address, and the replies come back", () => {
    expect(h.log).toContain(`masquerade: to_network at ${outDev} egress, pod traffic leaving the cluster is SNATed to 192.168.59.1, IPv6 to ${NODE6} (not to fd00:10:244::/56)`);
    expect(tcQuery({ ifname: outDev, netns: h.nodeNs, direction: "egress" })).toBeGreaterThan(0);
    // The flags reached the Config map: the IPv6 masquerade address and exclusion CIDR (core/nat.ts M1, M4).
    const cfgMap = openPinnedMap(join(h.pin, MAP_SPECS.Config.bpfName), MAP_SPECS.Config);
    try {
      const cfg = cfgMap.lookup(0)!;
      expect([formatAddr(cfg.nodeIpv6, 6), formatAddr(cfg.snatExclusionIpv6, 6), cfg.snatExclusionIpv6PrefixLen]).toEqual([NODE6, "fd00:10:244::", 56]);
    } finally {
      cfgMap.raw.close();
    }
    // out cannot reach the pods by itself.
    expect(sh("ip", ["-n", NS("out"), "-6", "route", "get", ip6.get("client")!], true)).not.toContain("dev eth0");
    expect(seenAs(tool(NS("client"), "tcp", OUT6, PEER_PORT))).toBe(NODE6);
    expect(seenAs(tool(NS("client"), "udp", OUT6, PEER_PORT))).toBe(NODE6);
    expect(ping6("client", OUT6)).toEqual({ sent: 2, received: 2 });
    // Inside the cluster nothing is translated: the server still sees the client's own address.
    expect(tool(NS("client"), "tcp", ip6.get("server")!, 8080)).toEqual({ ok: true, reply: "server" });
  }, 60_000);

  it("a NodePort on the node's IPv6 address answers an outside client from the server pod", () => {
    // The connection is established with [NODE6]:NODE_PORT, so the server's answers were reverse-NATed to
    // the frontend (out has no route to the pod and would not accept them from it).
    expect(tool(NS("out"), "tcp", NODE6, NODE_PORT)).toEqual({ ok: true, reply: "server" });
    // Nothing listens there on the node itself: without the NodePort frontend the port is closed.
    expect(tool(NS("out"), "tcp", NODE6, NODE_PORT + 1)).toMatchObject({ ok: false });
  }, 60_000);

  it("agrees with `ciliate check` on every verdict", () => {
    const exp = (name: string, from: string, to: string, port: number, protocol: string, extra = "") =>
      `apiVersion: ciliate.dev/v1alpha1\nkind: Expectation\nmetadata: {name: ${name}}\nspec: {from: {pod: default/${from}}, to: ${to}, port: ${port}, protocol: ${protocol}, verdict: ${verdicts.get(name)}${extra}}\n`;
    const docs = [
      exp("tcp6-client-server", "client", "{pod: default/server}", 8080, "TCP", ", ipFamily: IPv6"),
      exp("udp6-client-server", "client", "{pod: default/server}", 5353, "UDP", ", ipFamily: IPv6"),
      exp("icmp6-client-server", "client", "{pod: default/server}", 128, "ICMPv6"),
      exp("tcp6-other-server", "other", "{pod: default/server}", 8080, "TCP", ", ipFamily: IPv6"),
      exp("tcp6-client-server-9090", "client", "{pod: default/server}", 9090, "TCP", ", ipFamily: IPv6"),
      exp("cidr6-allowed", "other", '{ip: "2001:db8:1::5"}', 443, "TCP"),
      exp("cidr6-denied", "other", '{ip: "2001:db8:2::5"}', 443, "TCP"),
      exp("svc6-client", "client", "{service: default/web}", 80, "TCP", ", ipFamily: IPv6"),
      exp("l7-http6-get-public", "client", "{pod: default/server}", 8090, "TCP", ", ipFamily: IPv6, http: {method: GET, path: /public}"),
      exp("l7-http6-get-private", "client", "{pod: default/server}", 8090, "TCP", ", ipFamily: IPv6, http: {method: GET, path: /private}"),
      exp("l7-http6-post-public", "client", "{pod: default/server}", 8090, "TCP", ", ipFamily: IPv6, http: {method: POST, path: /public}"),
      exp("l7-http4-get-public", "client", "{pod: default/server}", 8090, "TCP", ", ipFamily: IPv4, http: {method: GET, path: /public}"),
      exp("l7-http4-get-private", "client", "{pod: default/server}", 8090, "TCP", ", ipFamily: IPv4, http: {method: GET, path: /private}"),
      exp("l7-egress-http6-get-public", "other", '{ip: "2001:db8:2::5"}', 8091, "TCP", ", http: {method: GET, path: /public}"),
      exp("l7-egress-http6-get-private", "other", '{ip: "2001:db8:2::5"}', 8091, "TCP", ", http: {method: GET, path: /private}"),
      exp("l7-tls6-allowed-sni", "client", "{pod: default/server}", 8443, "TCP", ", ipFamily: IPv6, tls: {serverName: api.empire.example}"),
      exp("l7-tls6-other-sni", "client", "{pod: default/server}", 8443, "TCP", ", ipFamily: IPv6, tls: {serverName: rebels.example}"),
    ];
    expectCheckAgrees(h.dir, { ...FILES, "config.yaml": CONFIG6 }, docs.join("---\n"), verdicts);
  }, 90_000);

  it("with the proxy's IPv6 listeners destroyed under a live agent (ss -K), IPv6 L7 is dropped (178), reported with IPv6 addresses; IPv4 L7 is still proxied", async () => {
    const before = counter("PROXY_LOOKUP_FAILED", "INGRESS");
    // The ProxyListeners entries stay (the IPv4 listeners still listen); only the programs' IPv6 socket lookup can tell.
    sh("ip", ["netns", "exec", h.nodeNs, "ss", "-K", "-t", "-6", "state", "listening", "( sport >= :10000 and sport <= :10999 )"]);
    expect(http("client", ip6.get("server")!, 8090, "GET", "/public")).toEqual({ error: "timeout" });
    expect(counter("PROXY_LOOKUP_FAILED", "INGRESS"), h.log).toBeGreaterThan(before);
    expect(http("client", h.podIp.get("server")!, 8090, "GET", "/public"), h.log).toMatchObject({ status: 200 });
    await eventually(
      () => h.observe("--verdict", "DROPPED", "--last", "0").some((f) => f.drop_reason === 178 && (f.IP as { source: string; destination: string }).destination === ip6.get("server") && (f.l4 as { TCP?: { destination_port: number } }).TCP?.destination_port === 8090),
      10_000,
      () => h.log,
    );
  }, 60_000);
});
