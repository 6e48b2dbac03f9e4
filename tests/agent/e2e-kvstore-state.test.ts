/*
 * End to end: three nodes (tests/agent/multinode-harness.ts), each with its own `ciliate agent` in kvstore
 * mode and native routing, sharing one real etcd that runs in the underlay namespace (192.168.57.2). The
 * shared manifests hold no Node objects and only the server; the clients are in the private manifests of
 * their own node. So every other node learns those pods (address, identity, node) and the nodes (address,
 * pod CIDR) only through etcd (agent/kvstore-state.ts):
 *   1. a client created on node-1 is admitted by the identity-based ingress policy of the server on
 *      node-2, within a measured time; a pod of another label set on node-3 is denied; every node routes
 *      the others' pod CIDRs learned from the kvstore;
 *   2. etcd stopped: a connection held across the outage and new connections between existing pods keep
 *      working; a client added on node-1 meanwhile is unknown to node-2 (denied as world) until etcd
 *      returns, and then admitted;
 *   3. node-3's agent killed with SIGKILL: its entries outlive it until its lease (6 s) expires, then its
 *      pod leaves node-2's ipcache (world), its route leaves node-1, its identity reference goes.
 * Kernel suite: root, libbpf, bpffs, iproute2 (fails in CI without them); etcd required in CI.
 */
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { kernelSuite } from "../../datapath/index.ts";
import { EtcdServer, hasEtcd } from "../helpers/etcd.ts";
import { skipUnless } from "../helpers/tools.ts";
import { eventually, sh, tool, toolAsync } from "./e2e-helpers.ts";
import { MultiNodeCluster, SERVER_TCP_POLICY } from "./multinode-harness.ts";

const suite = kernelSuite("agent-e2e-kvstore-state", ["root", "libbpf", "bpffs", "iproute2"]);
const noEtcd = suite.skip ? true : skipUnless(hasEtcd(), "etcd (Debian etcd-server)");
const ETCD_HOST = "192.168.57.2";
let etcd: EtcdServer | undefined;

const c = new MultiNodeCluster({
  nodes: 3,
  routingMode: "native",
  prefix: "cks",
  beforeAgents: async (cl) => {
    // etcd on the underlay bridge, reachable from every node's eth0.
    sh("ip", ["-n", cl.underlay, "addr", "add", `${ETCD_HOST}/24`, "dev", "br0"]);
    etcd = await EtcdServer.start(cl.underlay, ETCD_HOST);
    cl.opts.agentArgs!.push("--kvstore-opt", `etcd.endpoints=${etcd.endpoint}`);
    // No Node objects: the nodes know each other only from the kvstore.
    cl.writeNodes([]);
  },
  agentArgs: ["--identity-allocation-mode", "kvstore", "--kvstore", "etcd", "--kvstore-lease-ttl", "6s", "--cluster-id", "4"],
});
const ip = (pod: string) => c.pod(pod).ip;
const ns = (pod: string) => c.pod(pod).ns;


describe.skipIf(noEtcd)("three nodes sharing endpoints and nodes through etcd (kvstore mode, native routing)", () => {
  beforeAll(async () => {
    await c.setup();
    c.writeManifest("policy.yaml", SERVER_TCP_POLICY);
    c.addPod(2, "server", { app: "server" });
    c.serve("server", 180_000);
  }, 240_000);

  afterAll(async () => {
    if (process.env.CILIATE_E2E_LOG) console.log(c.logs());
    await c.cleanup();
    await etcd?.destroy();
  }, 60_000);

  it("a client created on node-1 only is admitted by node-2's policy on its identity within a bounded time; another label set is denied", async () => {
    const t0 = performance.now();
    c.addPod(1, "client", { app: "client" }, "default", { only: true });
    const added = performance.now();
    // The server's node learns the client's address, identity and node from etcd.
    await eventually(() => {
      const e = c.ipcache(2, ip("client"));
      const own = c.endpointIdentity(1, ip("client"));
      return e !== undefined && own !== undefined && own >>> 16 === 4 && e.identity === own && e.tunnelEndpoint === c.node(1).ip;
    }, 20_000, () => `${JSON.stringify(c.ipcache(2, ip("client")))}\n${c.logs()}`);
    const inIpcache = performance.now();
    await eventually(() => tool(ns("client"), "tcp", ip("server"), 8080).ok === true, 20_000, () => c.logs());
    const reachable = performance.now();
    console.log(
      `[e2e-kvstore-state] client on node-1 → server on node-2: CNI ADD ${(added - t0).toFixed(0)} ms; in node-2's ipcache ${(inIpcache - added).toFixed(0)} ms after; first admitted connection ${(reachable - added).toFixed(0)} ms after`,
    );
    // Routes from the kvstore's nodes: each node routes the other two pod CIDRs.
    for (let i = 1; i <= 3; i++) {
      const want = Object.fromEntries(c.nodes.filter((_, j) => j !== i - 1).map((n) => [n.podCIDR, n.ip]));
      await eventually(() => JSON.stringify(c.routes(i)) === JSON.stringify(want), 10_000, () => JSON.stringify(c.routes(i)));
    }
    c.addPod(3, "stranger", { app: "stranger" }, "default", { only: true });
    await eventually(() => (c.ipcache(2, ip("stranger"))?.identity ?? 0) >>> 16 === 4, 20_000, () => c.logs());
    expect(tool(ns("stranger"), "tcp", ip("server"), 8080).ok).toBe(false);
    expect(tool(ns("client"), "tcp", ip("server"), 8080).ok).toBe(true);
  }, 90_000);

  it("etcd stopped: held and new connections keep working; a client added meanwhile is admitted once etcd returns", async () => {
    const held = toolAsync(ns("client"), "hold", ip("server"), 8080, 9000);
    await new Promise((r) => setTimeout(r, 500));
    await etcd!.stop();
    await new Promise((r) => setTimeout(r, 1500));
    expect(tool(ns("client"), "tcp", ip("server"), 8080)).toEqual({ ok: true, reply: "server" });
    expect(c.ipcache(2, ip("client"))?.tunnelEndpoint).toBe(c.node(1).ip);
    // Its label set is known (node-1 holds app=client's identity), but node-2 cannot learn its address.
    c.addPod(1, "client2", { app: "client" }, "default", { only: true });
    await new Promise((r) => setTimeout(r, 3000));
    expect(c.ipcache(2, ip("client2"))).toEqual({ identity: 2, tunnelEndpoint: "" }); // world: only 0.0.0.0/0 covers it
    expect(tool(ns("client2"), "tcp", ip("server"), 8080).ok).toBe(false);
    const h = await held;
    expect(h.error, JSON.stringify(h)).toBeNull();
    expect(h.recv).toBe(h.sent);
    expect(h.sent as number).toBeGreaterThan(30);
    await etcd!.resume();
    const back = performance.now();
    await eventually(() => tool(ns("client2"), "tcp", ip("server"), 8080).ok === true, 30_000, () => c.logs());
    console.log(`[e2e-kvstore-state] etcd back: client2 (added during the outage) admitted on node-2 after ${(performance.now() - back).toFixed(0)} ms`);
    expect(tool(ns("client"), "tcp", ip("server"), 8080).ok).toBe(true);
    expect(tool(ns("stranger"), "tcp", ip("server"), 8080).ok).toBe(false);
  }, 90_000);

  it("node-3's agent killed with SIGKILL: its lease expires, its pods and node leave the other nodes, its identity reference goes", async () => {
    const stranger = ip("stranger");
    const refs = () => Object.keys(etcd!.getPrefix("cilium/state/identities/v1/value/")).filter((k) => k.endsWith("/node-3"));
    expect(refs().length).toBeGreaterThan(0);
    c.node(3).agent!.kill("SIGKILL");
    await new Promise<void>((r) => (c.node(3).agent!.exitCode !== null || c.node(3).agent!.signalCode !== null ? r() : c.node(3).agent!.once("exit", () => r())));
    const t0 = performance.now();
    // Still there right after the kill: the entries live as long as the lease (6 s), not as long as the process.
    expect(Object.keys(etcd!.getPrefix("cilium/state/ip/v1/default/"))).toContain(`cilium/state/ip/v1/default/${stranger}`);
    await eventually(() => c.ipcache(2, stranger)?.identity === 2 && !(c.node(3).podCIDR in c.routes(1)), 30_000, () => `${JSON.stringify(c.ipcache(2, stranger))} ${JSON.stringify(c.routes(1))}`);
    console.log(`[e2e-kvstore-state] node-3 killed: its pod and route left the other nodes after ${(performance.now() - t0).toFixed(0)} ms (lease TTL 6 s)`);
    expect(Object.keys(etcd!.getPrefix(`cilium/state/nodes/v1/default/`)).sort()).toEqual(["node-1", "node-2"].map((n) => `cilium/state/nodes/v1/default/${n}`));
    expect(refs()).toEqual([]);
    // The other nodes go on.
    expect(tool(ns("client"), "tcp", ip("server"), 8080).ok).toBe(true);
    expect(tool(ns("client2"), "tcp", ip("server"), 8080).ok).toBe(true);
  }, 60_000);
});
