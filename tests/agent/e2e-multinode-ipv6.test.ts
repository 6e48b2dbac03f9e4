/*
 * End to end: IPv6 pod to pod between nodes (issue #13 item 6), on two node namespaces joined by the
 * underlay bridge, each with its own dual-stack `ciliate agent` (--enable-ipv6 --ipv6-range --ipv6-node;
 * tests/agent/multinode-harness.ts `dualStack`), pods joined by `ciliate cni` with an IPv4 and an IPv6
 * address. The same workload runs in both routing modes:
 *   - tunnel (VXLAN): IPv6 inner packets over the IPv4 underlay, the sender's identity in the VNI; the
 *     Node objects and the pods' status.podIPs come from the shared manifests;
 *   - native routing with `--identity-allocation-mode kvstore` and a real etcd on the underlay: no Node
 *     objects, each pod only in its own node's manifests, so the other node learns the pod's IPv6 address
 *     (a kvstore key per address) and the node's IPv6 pod CIDR and IPv6 InternalIP (types.Node
 *     IPv6AllocCIDR, IPAddresses) only through etcd, and routes fd00:10:244:<i>::/64 via fd00:57::1<i>.
 * In each: every node's ipcache holds both addresses of every pod with the same identity (the node's IPv4
 * address as tunnel endpoint); TCP, UDP and ICMPv6 echo over IPv6 from client (node-1) to server (node-2)
 * allowed by the ingress policy on identity at node-2, from other denied there (counted as a policy drop
 * at node-2, none at node-1), TCP to an unlisted port denied; an IPv6 ClusterIP whose backend is on
 * node-2 answers from the server; and `ciliate trace --ip-family 6` on the same manifests (the simulator)
 * gives every case the node's verdict, with the VXLAN hop between the node addresses in tunnel mode.
 * Kernel suite (root, libbpf, bpffs, iproute2); the native/kvstore half needs etcd (required in CI).
 */
import { spawnSync } from "node:child_process";
import { mkdirSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { kernelSuite } from "../../datapath/index.ts";
import { EtcdServer, hasEtcd } from "../helpers/etcd.ts";
import { skipUnless } from "../helpers/tools.ts";
import { BIN, eventually, sh, tool } from "./e2e-helpers.ts";
import { MultiNodeCluster, nodeYaml, podYaml } from "./multinode-harness.ts";
import { drops, hasPython, ping, SERVER_INGRESS6 } from "./multinode-scenario.ts";

const suite = kernelSuite("agent-e2e-multinode-ipv6", ["root", "libbpf", "bpffs", "iproute2"]);
const noEtcd = suite.skip ? true : skipUnless(hasEtcd(), "etcd (Debian etcd-server)");
const SVC4 = "10.96.0.60";
const SVC6 = "fd00:10:96::60";
const ETCD_HOST = "192.168.57.2";

const POLICY = SERVER_INGRESS6;

const SERVICE = `apiVersion: v1
kind: Service
metadata: {name: web, namespace: default}
spec:
  clusterIP: ${SVC4}
  clusterIPs: [${SVC4}, "${SVC6}"]
  ipFamilyPolicy: PreferDualStack
  ipFamilies: [IPv4, IPv6]
  selector: {app: server}
  ports: [{port: 80, targetPort: 8080}]
`;

/** One probe: what the node did, and how to ask the simulator the same question. */
interface Probe {
  name: string;
  want: "allowed" | "denied";
  from: string;
  to: string;
  port: number;
  protocol: "TCP" | "UDP" | "ICMPv6";
  run: () => boolean;
}

/** INGRESS policy drops node i has counted so far. */
const ingressDrops = (c: MultiNodeCluster, i: number) => Number(/ciliate_drop_count_total\{reason="POLICY_DENIED",direction="INGRESS"\} (\d+)/.exec(c.metrics(i))?.[1] ?? 0);

/** The probes of the workload (the pods' IPv6 addresses; the service's IPv6 ClusterIP). */
function probes(c: MultiNodeCluster): Probe[] {
  const ns = (p: string) => c.pod(p).ns;
  const s6 = () => c.pod("server").ip6!;
  return [
    { name: "tcp6 client → server", want: "allowed", from: "client", to: "default/server", port: 8080, protocol: "TCP", run: () => JSON.stringify(tool(ns("client"), "tcp", s6(), 8080)) === JSON.stringify({ ok: true, reply: "server" }) },
    { name: "udp6 client → server", want: "allowed", from: "client", to: "default/server", port: 5353, protocol: "UDP", run: () => JSON.stringify(tool(ns("client"), "udp", s6(), 5353)) === JSON.stringify({ ok: true, reply: "server" }) },
    { name: "icmp6 client → server", want: "allowed", from: "client", to: "default/server", port: 128, protocol: "ICMPv6", run: () => ping(ns("client"), s6()).received === 2 },
    { name: "svc6 client → web", want: "allowed", from: "client", to: "svc:default/web", port: 80, protocol: "TCP", run: () => JSON.stringify(tool(ns("client"), "tcp", SVC6, 80)) === JSON.stringify({ ok: true, reply: "server" }) },
    { name: "tcp6 other → server", want: "denied", from: "other", to: "default/server", port: 8080, protocol: "TCP", run: () => tool(ns("other"), "tcp", s6(), 8080).ok === true },
    { name: "udp6 other → server", want: "denied", from: "other", to: "default/server", port: 5353, protocol: "UDP", run: () => tool(ns("other"), "udp", s6(), 5353).ok === true },
    { name: "icmp6 other → server", want: "denied", from: "other", to: "default/server", port: 128, protocol: "ICMPv6", run: () => ping(ns("other"), s6()).received > 0 },
    { name: "tcp6 client → server:9090", want: "denied", from: "client", to: "default/server", port: 9090, protocol: "TCP", run: () => tool(ns("client"), "tcp", s6(), 9090).ok === true },
  ];
}

/** The cluster as the API server would list it (every Node and Pod with its addresses), for the simulator. */
function clusterManifests(c: MultiNodeCluster, dir: string): string {
  const out = join(dir, "simulator");
  mkdirSync(out, { recursive: true });
  writeFileSync(join(out, "nodes.yaml"), c.nodes.map(nodeYaml).join("---\n"));
  writeFileSync(join(out, "pods.yaml"), [...c.pods.values()].map((p) => podYaml(p, c.node(p.node).name, p.ip, p.ip6)).join("---\n"));
  writeFileSync(join(out, "policy.yaml"), POLICY);
  writeFileSync(join(out, "service.yaml"), SERVICE);
  return out;
}

/** `ciliate trace --ip-family 6 -o json` for a probe. */
function trace(dir: string, p: Probe): { verdict: string; steps: { node: string; entry: string; tunnel?: { direction: string; outer: { source: string; destination: string } } }[]; reason: string } {
  const args = ["-f", dir, "trace", "--from", `default/${p.from}`, "--to", p.to, "--ip-family", "6", "-o", "json"];
  const r = spawnSync(process.execPath, [BIN, ...args, ...(p.protocol === "ICMPv6" ? ["--protocol", "ICMPv6", "--icmp-type", "128"] : ["--port", String(p.port), "--protocol", p.protocol])], { encoding: "utf8", timeout: 90_000 });
  expect(r.status, `${p.name}: ${r.stderr}`).toBe(0);
  return JSON.parse(r.stdout);
}

function dualStackSuite(mode: "tunnel" | "native"): void {
  const kvstore = mode === "native";
  let etcd: EtcdServer | undefined;
  const c = new MultiNodeCluster({
    nodes: 2,
    routingMode: mode,
    dualStack: true,
    prefix: mode === "tunnel" ? "c6t" : "c6n",
    agentArgs: kvstore ? ["--identity-allocation-mode", "kvstore", "--kvstore", "etcd", "--kvstore-lease-ttl", "10s", "--cluster-id", "5"] : [],
    beforeAgents: kvstore
      ? async (cl) => {
          // etcd on the underlay bridge; no Node objects: the nodes know each other only from the kvstore.
          sh("ip", ["-n", cl.underlay, "addr", "add", `${ETCD_HOST}/24`, "dev", "br0"]);
          etcd = await EtcdServer.start(cl.underlay, ETCD_HOST);
          cl.opts.agentArgs!.push("--kvstore-opt", `etcd.endpoints=${etcd.endpoint}`);
          cl.writeNodes([]);
        }
      : undefined,
  });
  const results = new Map<string, "allowed" | "denied">();

  describe.skipIf(kvstore ? noEtcd : suite.skip)(`IPv6 between two dual-stack nodes, ${mode === "tunnel" ? "tunnel mode (VXLAN over IPv4)" : "native routing, shared state through etcd"}`, () => {
    beforeAll(async () => {
      await c.setup();
      c.writeManifest("policy.yaml", POLICY);
      c.writeManifest("service.yaml", SERVICE);
      // In kvstore mode each pod is in its own node's manifests only: the other node learns it from etcd.
      const only = { only: kvstore };
      c.addPod(1, "client", { app: "client" }, "default", only);
      c.addPod(1, "other", { app: "other" }, "default", only);
      c.addPod(2, "server", { app: "server" }, "default", only);
      c.serve("server", 240_000);
      await c.converged(60_000);
      // The server answers over IPv6 across the nodes before any verdict is taken.
      await eventually(() => tool(c.pod("client").ns, "tcp", c.pod("server").ip6!, 8080).ok === true, 60_000, () => `client → [server]:8080 never answered\n${c.logs()}`);
    }, 300_000);

    afterAll(async () => {
      if (process.env.CILIATE_E2E_LOG) console.log(c.logs());
      await c.cleanup();
      await etcd?.destroy();
    }, 90_000);

    it("gives every pod both addresses and every node both addresses of every pod with one identity", () => {
      for (const p of c.pods.values()) {
        expect(p.ip6, p.name).toMatch(new RegExp(`^fd00:10:244:${p.node}::[0-9a-f]+$`));
        expect(c.endpointIdentity(p.node, p.ip6!), p.name).toBe(c.endpointIdentity(p.node, p.ip));
      }
      expect(c.disagreements()).toEqual([]);
    });

    if (mode === "tunnel") {
      it("sends IPv6 over the tunnel device, with no IPv6 node routes and pods at the overlay MTU (at least IPv6's 1280)", () => {
        for (let i = 1; i <= 2; i++) {
          // The IPv4 pod CIDR of the other node goes through the tunnel device (the node's own traffic).
          expect(c.routes(i, 4), `node-${i}`).toEqual({ [c.node(3 - i).podCIDR]: "dev ciliate_vxlan" });
          expect(c.routes(i, 6), `node-${i}`).toEqual({});
        }
        const link = JSON.parse(sh("ip", ["-n", c.pod("client").ns, "-j", "link", "show", "eth0"]))[0] as { mtu: number };
        expect(link.mtu).toBe(1450);
        const rx = () => (JSON.parse(sh("ip", ["-n", c.node(2).ns, "-j", "-s", "link", "show", "ciliate_vxlan"]))[0] as { stats64: { rx: { packets: number } } }).stats64.rx.packets;
        const before = rx();
        expect(tool(c.pod("client").ns, "tcp", c.pod("server").ip6!, 8080)).toEqual({ ok: true, reply: "server" });
        expect(rx()).toBeGreaterThan(before);
      });
    } else {
      it("routes the other node's IPv6 pod CIDR via its IPv6 address, both learned from etcd (no Node objects)", async () => {
        for (let i = 1; i <= 2; i++) {
          const o = c.node(3 - i);
          await eventually(() => JSON.stringify(c.routes(i, 6)) === JSON.stringify({ [o.podCIDRv6!]: o.ip6 }), 30_000, () => `node-${i}: ${JSON.stringify(c.routes(i, 6))}\n${c.logs()}`);
          expect(c.routes(i, 4)).toEqual({ [o.podCIDR]: o.ip });
        }
      });
    }

    it("enforces identity policy on IPv6 across nodes: TCP, UDP, ICMPv6 and the IPv6 ClusterIP allowed for client, denied for other at the receiving node", () => {
      for (const p of probes(c)) {
        const before = ingressDrops(c, 2);
        // An allowed case may try three times (a datagram lost on a loaded machine); a denied one gets one try
        // and must show up as an ingress policy drop on the server's node.
        let ok = p.run();
        for (let i = 0; p.want === "allowed" && !ok && i < 2; i++) ok = p.run();
        expect(`${p.name}: ${ok ? "allowed" : "denied"}`, c.logs()).toBe(`${p.name}: ${p.want}`);
        if (p.want === "denied") expect(ingressDrops(c, 2), `${p.name}: an ingress policy drop on node-2`).toBeGreaterThan(before);
        results.set(p.name, ok ? "allowed" : "denied");
      }
      // The sender's node let everything through (no egress policy): the drops are node-2's verdicts.
      expect(drops(c, 1)).not.toMatch(/POLICY_DENIED/);
    }, 180_000);

    it("`ciliate trace --ip-family 6` on the same cluster agrees with the nodes on every probe", () => {
      expect(results.size).toBe(probes(c).length);
      const dir = clusterManifests(c, c.dir);
      for (const p of probes(c)) {
        const t = trace(dir, p);
        expect(`${p.name}: ${t.verdict}`, t.reason).toBe(`${p.name}: ${results.get(p.name)}`);
        if (p.want !== "allowed") continue;
        // The first packet crosses from node-1 to node-2 between the node addresses (the simulator draws
        // the hop as the overlay in either mode).
        const hop = t.steps.find((s) => s.tunnel?.direction === "encap");
        expect(hop?.tunnel?.outer, p.name).toEqual({ source: c.node(1).ip, destination: c.node(2).ip });
        expect(t.steps.some((s) => s.node === "node-2"), p.name).toBe(true);
      }
    }, 300_000);
  });
}

describe.skipIf(!hasPython)("dual-stack multi-node", () => {
  dualStackSuite("tunnel");
  dualStackSuite("native");
});
