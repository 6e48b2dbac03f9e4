/*
 * End-to-end: the real `ciliate agent` in kvstore mode (`--identity-allocation-mode kvstore --kvstore etcd`)
 * on a node made of network namespaces, with a real etcd (Debian's etcd-server) on the node namespace's
 * loopback. Two pods join by `ciliate cni` ADD; a policy admits client → server:80 only.
 *   1. The agent allocates the pods' identities in etcd (cluster id 5: bits 16-23), with its references
 *      under its lease, and the datapath enforces the policy with those numbers.
 *   2. etcd is stopped: traffic between the existing pods keeps flowing; a pod with a new label set added
 *      meanwhile is reserved:init (its traffic to the server is dropped) until etcd returns, then its
 *      identity is allocated and the policy admits it.
 *   3. The agent is killed with SIGKILL: traffic keeps flowing on the pinned maps; its lease expires and
 *      its references disappear from etcd, while the identities (master keys) stay until gc.
 *   4. The agent starts again: the same numbers, references written again, the policy still enforced.
 *   5. etcd flaps (four short outages) under a held connection, and a pod with a new label set is added
 *      during one of them: the connection loses nothing, the pod is admitted once etcd is back for good,
 *      and the faults are counted (ciliate_kvstore_errors_total).
 * Kernel suite: runs as root (fails in CI when it cannot); etcd must be installed (fails in CI without it).
 */
import type { ChildProcess } from "node:child_process";
import { mkdirSync, mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { kernelSuite, removePinRoot } from "../../datapath/index.ts";
import { EtcdServer, hasEtcd } from "../helpers/etcd.ts";
import { skipUnless } from "../helpers/tools.ts";
import { cni, eventually, scrapeMetrics, serve, sh, startAgent, tool, toolAsync, writeFileAtomic } from "./e2e-helpers.ts";

const suite = kernelSuite("agent-e2e-kvstore", ["root", "libbpf", "bpffs", "iproute2"]);
const noEtcd = suite.skip ? true : skipUnless(hasEtcd(), "etcd (Debian etcd-server)");
const TAG = `${process.pid % 10000}${Math.floor(Math.random() * 1000)}`;
const NS = (n: string) => `cik-${TAG}-${n}`;
const NODE = NS("node");
const PODS = ["client", "server", "late", "flap"];
const PIN = `/sys/fs/bpf/ciliate-test-${process.pid}-${Math.floor(Math.random() * 1e6)}`;
const PREFIX = "cilium/state/identities/v1/";

let dir = "";
let socket = "";
let etcd: EtcdServer | undefined;
let agent: ChildProcess | undefined;
let agentLog = "";
const podIp = new Map<string, string>();
const servers: ChildProcess[] = [];

const MANIFESTS = `apiVersion: v1
kind: Pod
metadata: {name: client, namespace: default, labels: {app: client}}
spec: {containers: [{name: c, image: x}]}
---
apiVersion: v1
kind: Pod
metadata: {name: server, namespace: default, labels: {app: server}}
spec: {containers: [{name: c, image: x}]}
---
apiVersion: cilium.io/v2
kind: CiliumNetworkPolicy
metadata: {name: web, namespace: default}
spec:
  endpointSelector: {matchLabels: {app: server}}
  ingress: [{fromEndpoints: [{matchLabels: {app: client}}, {matchLabels: {app: late}}], toPorts: [{ports: [{port: "80", protocol: TCP}]}]}]
---
apiVersion: v1
kind: Pod
metadata: {name: late, namespace: default, labels: {app: late}}
spec: {containers: [{name: c, image: x}]}
---
apiVersion: v1
kind: Pod
metadata: {name: flap, namespace: default, labels: {app: late, tier: flap}}
spec: {containers: [{name: c, image: x}]}
`;
const METRICS = "127.0.0.1:19974";

const tcp = (port: number, from = "client") => tool(NS(from), "tcp", podIp.get("server")!, port);

function start(): Promise<ChildProcess> {
  return startAgent(
    NODE,
    socket,
    ["-f", join(dir, "manifests"), "--node-name", "node-1", "--node-ip", "192.168.59.1", "--pod-cidr", "10.244.4.0/24", "--bpffs", PIN, "--state-dir", join(dir, "state"),
      "--socket", socket, "--resync-interval", "100", "--identity-allocation-mode", "kvstore", "--kvstore", "etcd", "--kvstore-opt", `etcd.endpoints=${etcd!.endpoint}`,
      "--kvstore-lease-ttl", "3s", "--cluster-id", "5", "--metrics-addr", METRICS],
    (d) => (agentLog += d),
  );
}

/** The identities in etcd: label set → number, and the nodes referencing each label set. */
function identities(): { ids: Map<string, number>; refs: Map<string, string[]> } {
  const kv = etcd!.getPrefix(PREFIX);
  const ids = new Map<string, number>();
  const refs = new Map<string, string[]>();
  for (const [k, v] of Object.entries(kv)) {
    if (k.startsWith(`${PREFIX}id/`)) ids.set(v, Number(k.slice(`${PREFIX}id/`.length)));
    else if (k.startsWith(`${PREFIX}value/`)) {
      const rest = k.slice(`${PREFIX}value/`.length);
      const set = rest.slice(0, rest.lastIndexOf("/"));
      refs.set(set, [...(refs.get(set) ?? []), rest.slice(rest.lastIndexOf("/") + 1)]);
    }
  }
  return { ids, refs };
}

const setOf = (ids: Map<string, number>, app: string) => [...ids.keys()].find((k) => k.includes(`k8s:app=${app};`));

describe.skipIf(noEtcd)("ciliate agent in kvstore mode with a real etcd (network namespaces)", () => {
  beforeAll(async () => {
    dir = mkdtempSync(join(tmpdir(), "ciliate-agent-kvstore-"));
    mkdirSync(join(dir, "manifests"));
    socket = join(dir, "state", "agent.sock");
    writeFileAtomic(join(dir, "manifests", "all.yaml"), MANIFESTS);
    for (const n of ["node", ...PODS]) sh("ip", ["netns", "add", NS(n)]);
    sh("ip", ["-n", NODE, "link", "set", "lo", "up"]);
    etcd = await EtcdServer.start(NODE);
    agent = await start();
    for (const p of ["client", "server"]) {
      const r = cni(socket, "ADD", { containerId: `kvs-${TAG}-${p}`, netns: `/var/run/netns/${NS(p)}`, pod: p });
      expect(r.code, JSON.stringify(r.out)).toBe(0);
      podIp.set(p, (r.out.ips as { address: string }[])[0]!.address.split("/")[0]!);
    }
    servers.push(serve(NS("server"), "server", 120_000, [80, 81]));
    await new Promise((r) => setTimeout(r, 700));
  }, 90_000);

  afterAll(async () => {
    try {
      for (const s of servers) s.kill("SIGKILL");
      agent?.kill("SIGKILL");
      await etcd?.destroy();
    } finally {
      for (const n of ["node", ...PODS]) sh("ip", ["netns", "del", NS(n)], true);
      removePinRoot(PIN);
      if (dir) rmSync(dir, { recursive: true, force: true });
      if (process.env.CILIATE_E2E_LOG) console.log(agentLog);
    }
  }, 60_000);

  let before: Map<string, number>;

  it("allocates the pods' identities in etcd with cluster id 5 and enforces the policy with them", async () => {
    await eventually(() => tcp(80).ok === true, 15_000, () => agentLog);
    expect(tcp(81)).toEqual({ ok: false, error: "timeout" });
    const { ids, refs } = identities();
    for (const app of ["client", "server"]) {
      const set = setOf(ids, app);
      expect(set, JSON.stringify([...ids])).toBeDefined();
      expect(ids.get(set!)! >>> 16).toBe(5);
      expect(refs.get(set!)).toEqual(["node-1"]);
    }
  }, 30_000);

  it("etcd stopped: existing pods keep talking; a pod added meanwhile is init until etcd returns, then admitted", async () => {
    await etcd!.stop();
    expect(tcp(80)).toEqual({ ok: true, reply: "server" });
    const r = cni(socket, "ADD", { containerId: `kvs-${TAG}-late`, netns: `/var/run/netns/${NS("late")}`, pod: "late" });
    expect(r.code, JSON.stringify(r.out)).toBe(0);
    podIp.set("late", (r.out.ips as { address: string }[])[0]!.address.split("/")[0]!);
    await new Promise((res) => setTimeout(res, 2000));
    // Its label set has no number yet: written as init, nothing allows it.
    expect(tcp(80, "late")).toEqual({ ok: false, error: "timeout" });
    expect(tcp(80)).toEqual({ ok: true, reply: "server" });
    await etcd!.resume();
    await eventually(() => tcp(80, "late").ok === true, 30_000, () => agentLog);
    const { ids, refs } = identities();
    expect(ids.get(setOf(ids, "late")!)! >>> 16).toBe(5);
    await eventually(() => identities().refs.size === 3, 15_000, () => JSON.stringify([...refs]));
    expect(tcp(80)).toEqual({ ok: true, reply: "server" });
    before = ids;
  }, 60_000);

  it("SIGKILL: traffic keeps flowing on the pinned maps, the lease expires and the references go, the identities stay", async () => {
    agent!.kill("SIGKILL");
    await new Promise<void>((r) => (agent!.exitCode !== null || agent!.signalCode !== null ? r() : agent!.once("exit", () => r())));
    expect(tcp(80)).toEqual({ ok: true, reply: "server" });
    await eventually(() => identities().refs.size === 0, 20_000, () => JSON.stringify([...identities().refs]));
    expect(identities().ids).toEqual(before);
    expect(tcp(80)).toEqual({ ok: true, reply: "server" });
    expect(tcp(81)).toEqual({ ok: false, error: "timeout" });
  }, 40_000);

  it("a restarted agent gets the same numbers and references them again", async () => {
    agent = await start();
    await eventually(() => identities().refs.size === 3, 15_000, () => agentLog);
    expect(identities().ids).toEqual(before);
    expect(tcp(80)).toEqual({ ok: true, reply: "server" });
    expect(tcp(81)).toEqual({ ok: false, error: "timeout" });
    expect(tcp(80, "late")).toEqual({ ok: true, reply: "server" });
  }, 40_000);

  it("etcd flapping: a held connection loses nothing, a pod added during an outage is admitted, faults counted", async () => {
    const errors = () =>
      scrapeMetrics(NODE, METRICS)
        .split("\n")
        .filter((l) => l.startsWith("ciliate_kvstore_errors_total{"))
        .reduce((n, l) => n + Number(l.split(" ").pop()), 0);
    const before = errors();
    const held = toolAsync(NS("client"), "hold", podIp.get("server")!, 80, 40_000);
    for (let i = 0; i < 4; i++) {
      await etcd!.stop();
      await new Promise((r) => setTimeout(r, 1500));
      if (i === 2) {
        const r = cni(socket, "ADD", { containerId: `kvs-${TAG}-flap`, netns: `/var/run/netns/${NS("flap")}`, pod: "flap" });
        expect(r.code, JSON.stringify(r.out)).toBe(0);
        podIp.set("flap", (r.out.ips as { address: string }[])[0]!.address.split("/")[0]!);
        expect(tcp(80, "flap")).toEqual({ ok: false, error: "timeout" }); // init until its identity exists
      }
      expect(tcp(80)).toEqual({ ok: true, reply: "server" });
      await etcd!.resume();
      await new Promise((r) => setTimeout(r, 2000));
    }
    await eventually(() => tcp(80, "flap").ok === true, 30_000, () => agentLog);
    const { ids } = identities();
    const flapSet = [...ids.keys()].find((k) => k.includes("k8s:tier=flap"));
    expect(flapSet, JSON.stringify([...ids])).toBeDefined();
    expect(ids.get(flapSet!)! >>> 16).toBe(5);
    await eventually(() => (identities().refs.get(flapSet!) ?? []).includes("node-1"), 15_000, () => agentLog);
    const r = (await held) as { sent: number; recv: number; error: string | null };
    expect(r.error, JSON.stringify(r)).toBeNull();
    expect(r.recv, JSON.stringify(r)).toBe(r.sent);
    expect(r.sent).toBeGreaterThan(100);
    expect(errors(), agentLog).toBeGreaterThan(before);
    expect(tcp(81)).toEqual({ ok: false, error: "timeout" });
  }, 120_000);
});
