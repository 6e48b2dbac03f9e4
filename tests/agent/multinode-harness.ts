/*
 * A cluster of real nodes made of network namespaces, for end-to-end tests of more than one node (issue #13;
 * reused by the overlay (routingMode "tunnel") and identity-allocation suites). Layout, all under one random tag (pid + random
 * suffix) so concurrent runs on one machine never share a name:
 *
 *   cmn-<tag>-ul            the underlay: a bridge `br0` joining the nodes
 *   cmn-<tag>-n<i>          node i: `eth0` (a veth to the bridge) with 192.168.57.(10+i)/24, its own
 *                           `ciliate agent` (own state directory, API socket, metrics on 127.0.0.1:9962
 *                           inside the namespace, and its own bpffs pin directory)
 *   cmn-<tag>-n<i>-<pod>    a pod on node i, joined by the real `ciliate cni` through node i's socket
 *
 * Every agent reads the same manifest directory (the cluster's "API server"): the harness writes a Node
 * object per node (name, spec.podCIDR 10.244.i.0/24, InternalIP), and a Pod first with only
 * spec.nodeName, then — once CNI ADD on its node has given it an address — with status.podIP, as the
 * kubelet reports it; that is how the other nodes learn the pod. The agents run with nsenter --net only, so
 * they share this process's bpffs and each node's pins are a directory of their own under /sys/fs/bpf.
 *
 * cleanup() kills what the harness started, deletes every namespace (which removes the veths and the
 * bridge) and the pin directories, and is safe to call twice or after a failed setup(); setup() calls it
 * itself when it fails. With CILIATE_E2E_KEEP=1 nothing is removed and the names are printed.
 */
import { spawn, type ChildProcess } from "node:child_process";
import { mkdirSync, mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { MAP_SPECS } from "../../host/codecs.gen.ts";
import { addrBytes16 } from "../../host/ip.ts";
import { familyOf, ipcacheKey } from "../../host/ipcache.ts";
import { openPinnedMap, removePinRoot } from "../../datapath/index.ts";
import * as h from "./e2e-helpers.ts";
import { sh } from "./e2e-helpers.ts";

export interface ClusterNode {
  /** Node name in the manifests: node-1, node-2, … */
  name: string;
  /** Its network namespace. */
  ns: string;
  ip: string;
  podCIDR: string;
  /** Dual stack: the node's IPv6 address on the underlay (fd00:57::(10+i)) and IPv6 pod CIDR (fd00:10:244:i::/64). */
  ip6?: string;
  podCIDRv6?: string;
  pin: string;
  stateDir: string;
  socket: string;
  /** Metrics address inside the node's namespace. */
  metricsAddr: string;
  agent?: ChildProcess;
  /** The agent's output since it was last started. */
  log: string;
}

export interface ClusterPod {
  name: string;
  namespace: string;
  node: number;
  ns: string;
  ip: string;
  /** Dual stack: the pod's IPv6 address. */
  ip6?: string;
  labels: Record<string, string>;
}

export interface ClusterOptions {
  nodes: number;
  /** Passed as --routing-mode (omitted when undefined). */
  routingMode?: string;
  /** More `ciliate agent` flags for every node. */
  agentArgs?: string[];
  /** More `ciliate agent` flags for node i (1-based) alone, after `agentArgs` (e.g. per-cluster flags). */
  nodeArgs?: (i: number) => string[];
  /**
   * Dual stack: every node also gets an IPv6 underlay address and IPv6 pod CIDR, its agent runs with
   * --enable-ipv6 --ipv6-range --ipv6-node, its Node object has spec.podCIDRs and both InternalIPs, and
   * every pod gets both addresses (status.podIPs).
   */
  dualStack?: boolean;
  /** Prefix of the namespace names (default "cmn"). */
  prefix?: string;
  /**
   * Runs after the namespaces and the underlay exist and before any agent starts (e.g. a service the
   * agents connect to at start, in the underlay namespace; it may add to `agentArgs`).
   */
  beforeAgents?: (c: MultiNodeCluster) => Promise<void>;
}

export const UNDERLAY_PREFIX = "192.168.57.";
export const UNDERLAY6_PREFIX = "fd00:57::";
export const METRICS_ADDR = "127.0.0.1:9962";

/** Ingress to app=server (TCP 8080) from app=client only: the identity-based policy the shared-state tests check. */
export const SERVER_TCP_POLICY = `apiVersion: cilium.io/v2
kind: CiliumNetworkPolicy
metadata: {name: server-ingress, namespace: default}
spec:
  endpointSelector: {matchLabels: {app: server}}
  ingress:
  - fromEndpoints: [{matchLabels: {app: client}}]
    toPorts: [{ports: [{port: "8080", protocol: TCP}]}]
`;

/** Pod manifest with spec.nodeName, and status.podIP (and status.podIPs dual stack) once it has them. */
export function podYaml(p: { name: string; namespace: string; labels: Record<string, string> }, node: string, ip?: string, ip6?: string): string {
  const labels = Object.entries(p.labels).map(([k, v]) => `${JSON.stringify(k)}: ${JSON.stringify(v)}`).join(", ");
  return `apiVersion: v1
kind: Pod
metadata: {name: ${p.name}, namespace: ${p.namespace}, labels: {${labels}}}
spec: {nodeName: ${node}, containers: [{name: c, image: x, ports: [{containerPort: 8080}, {containerPort: 5353, protocol: UDP}]}]}
${ip ? `status: {podIP: ${ip}${ip6 ? `, podIPs: [{ip: ${ip}}, {ip: "${ip6}"}]` : ""}}\n` : ""}`;
}

/** A Node object as the API server lists it: pod CIDR(s) and InternalIP(s). */
export function nodeYaml(n: ClusterNode): string {
  const cidrs = n.podCIDRv6 ? `, podCIDRs: [${n.podCIDR}, "${n.podCIDRv6}"]` : "";
  const ip6 = n.ip6 ? `, {type: InternalIP, address: "${n.ip6}"}` : "";
  return `apiVersion: v1
kind: Node
metadata: {name: ${n.name}}
spec: {podCIDR: ${n.podCIDR}${cidrs}}
status: {addresses: [{type: InternalIP, address: ${n.ip}}${ip6}]}
`;
}

export class MultiNodeCluster {
  readonly tag = `${process.pid % 100000}${Math.floor(Math.random() * 1000)}`;
  readonly prefix: string;
  readonly nodes: ClusterNode[] = [];
  readonly pods = new Map<string, ClusterPod>();
  readonly underlay: string;
  dir = "";
  manifests = "";
  private readonly children: ChildProcess[] = [];
  private readonly namespaces: string[] = [];
  private cleaned = false;

  constructor(readonly opts: ClusterOptions) {
    this.prefix = opts.prefix ?? "cmn";
    this.underlay = `${this.prefix}-${this.tag}-ul`;
    for (let i = 1; i <= opts.nodes; i++) {
      this.nodes.push({
        name: `node-${i}`,
        ns: `${this.prefix}-${this.tag}-n${i}`,
        ip: `${UNDERLAY_PREFIX}${10 + i}`,
        podCIDR: `10.244.${i}.0/24`,
        ...(opts.dualStack ? { ip6: `${UNDERLAY6_PREFIX}${10 + i}`, podCIDRv6: `fd00:10:244:${i}::/64` } : {}),
        pin: `/sys/fs/bpf/ciliate-mn-${this.tag}-n${i}`,
        stateDir: "",
        socket: "",
        metricsAddr: METRICS_ADDR,
        log: "",
      });
    }
  }

  /** Node i (1-based). */
  node(i: number): ClusterNode {
    const n = this.nodes[i - 1];
    if (!n) throw new Error(`no node ${i} in a cluster of ${this.nodes.length}`);
    return n;
  }

  pod(name: string): ClusterPod {
    const p = this.pods.get(name);
    if (!p) throw new Error(`no pod ${name}`);
    return p;
  }

  private addNs(name: string): void {
    sh("ip", ["netns", "add", name]);
    this.namespaces.push(name);
    sh("ip", ["-n", name, "link", "set", "lo", "up"]);
  }

  /** Another namespace `<prefix>-<tag>-<name>` (loopback up) that cleanup() removes. Returns its name. */
  extraNamespace(name: string): string {
    const ns = `${this.prefix}-${this.tag}-${name}`;
    this.addNs(ns);
    return ns;
  }

  /**
   * A host outside the cluster on the underlay bridge: namespace `<prefix>-<tag>-<name>` with `eth0` at `ip`/24,
   * no route to the pod CIDRs; removed by cleanup(). Returns the namespace.
   */
  addOutside(name: string, ip: string): string {
    const ns = this.extraNamespace(name);
    const port = `p${name}`.slice(0, 15);
    sh("ip", ["link", "add", "eth0", "netns", ns, "type", "veth", "peer", "name", port, "netns", this.underlay]);
    sh("ip", ["-n", this.underlay, "link", "set", port, "master", "br0"]);
    sh("ip", ["-n", this.underlay, "link", "set", port, "up"]);
    sh("ip", ["-n", ns, "addr", "add", `${ip}/24`, "dev", "eth0"]);
    sh("ip", ["-n", ns, "link", "set", "eth0", "up"]);
    return ns;
  }

  /** Namespaces, underlay, Node manifests, and an agent on every node. Cleans up and rethrows on failure. */
  async setup(): Promise<void> {
    try {
      this.dir = mkdtempSync(join(tmpdir(), "ciliate-multinode-"));
      this.manifests = join(this.dir, "manifests");
      mkdirSync(this.manifests);
      this.addNs(this.underlay);
      sh("ip", ["-n", this.underlay, "link", "add", "br0", "type", "bridge"]);
      sh("ip", ["-n", this.underlay, "link", "set", "br0", "up"]);
      for (const [i, n] of this.nodes.entries()) {
        n.stateDir = join(this.dir, n.name);
        n.socket = join(n.stateDir, "agent.sock");
        this.addNs(n.ns);
        const port = `p${i + 1}`;
        sh("ip", ["link", "add", "eth0", "netns", n.ns, "type", "veth", "peer", "name", port, "netns", this.underlay]);
        sh("ip", ["-n", this.underlay, "link", "set", port, "master", "br0"]);
        sh("ip", ["-n", this.underlay, "link", "set", port, "up"]);
        sh("ip", ["-n", n.ns, "addr", "add", `${n.ip}/24`, "dev", "eth0"]);
        if (n.ip6) sh("ip", ["-n", n.ns, "-6", "addr", "add", `${n.ip6}/64`, "dev", "eth0", "nodad"]);
        sh("ip", ["-n", n.ns, "link", "set", "eth0", "up"]);
        // Packets between pods of two nodes arrive on eth0 from a source the node routes via eth0 too;
        // the receiving pod's veth is where policy applies, so strict reverse-path filtering is not wanted.
        sh("ip", ["netns", "exec", n.ns, "sysctl", "-qw", "net.ipv4.conf.all.rp_filter=0", "net.ipv4.conf.eth0.rp_filter=0"]);
      }
      this.writeNodes();
      for (const n of this.nodes) mkdirSync(this.privateManifests(n), { recursive: true });
      await this.opts.beforeAgents?.(this);
      for (let i = 1; i <= this.nodes.length; i++) await this.startAgent(i);
    } catch (e) {
      await this.cleanup();
      throw e;
    }
  }

  /** nodes.yaml: one Node per node (all of them, or `only`). */
  writeNodes(only?: number[]): void {
    const docs = this.nodes
      .filter((_, i) => !only || only.includes(i + 1))
      .map((n) => nodeYaml(n));
    this.writeManifest("nodes.yaml", docs.join("---\n"));
  }

  /** Writes (atomically) a manifest file every agent reads. */
  writeManifest(file: string, text: string): void {
    h.writeFileAtomic(join(this.manifests, file), text);
  }

  removeManifest(file: string): void {
    rmSync(join(this.manifests, file), { force: true });
  }

  /** A manifest directory only node `n`'s agent reads (pods the other nodes learn from elsewhere). */
  privateManifests(n: ClusterNode): string {
    return join(this.dir, `${n.name}-manifests`);
  }

  /** `routingMode` overrides the cluster's for this start (null: none), e.g. to switch a node's mode. */
  agentArgs(n: ClusterNode, routingMode: string | null | undefined = this.opts.routingMode): string[] {
    return [
      "-f", this.manifests, "-f", this.privateManifests(n), "--node-name", n.name, "--node-ip", n.ip, "--pod-cidr", n.podCIDR,
      "--bpffs", n.pin, "--state-dir", n.stateDir, "--socket", n.socket, "--metrics-addr", n.metricsAddr,
      "--device", "eth0", "--resync-interval", "100",
      ...(n.podCIDRv6 ? ["--enable-ipv6", "--ipv6-range", n.podCIDRv6, "--ipv6-node", n.ip6!] : []),
      ...(routingMode ? ["--routing-mode", routingMode] : []),
      ...(this.opts.agentArgs ?? []),
      ...(this.opts.nodeArgs?.(this.nodes.indexOf(n) + 1) ?? []),
    ];
  }

  async startAgent(i: number, routingMode?: string | null): Promise<void> {
    const n = this.node(i);
    n.log = "";
    n.agent = await h.startAgent(n.ns, n.socket, this.agentArgs(n, routingMode === undefined ? this.opts.routingMode : routingMode), (d) => (n.log += d));
  }

  async stopAgent(i: number): Promise<void> {
    await h.stopProcess(this.node(i).agent);
  }

  /**
   * A pod on node `node`: its namespace, the Pod manifest (scheduled, no address yet), CNI ADD through that
   * node's agent, then the manifest with the address it got. Returns the address. With `only`, the manifest
   * goes to that node's private directory: the other nodes' manifests never list the pod.
   */
  addPod(node: number, name: string, labels: Record<string, string>, namespace = "default", opts: { only?: boolean } = {}): string {
    const n = this.node(node);
    const ns = `${n.ns}-${name}`;
    this.addNs(ns);
    const file = `pod-${namespace}-${name}.yaml`;
    const write = opts.only ? (f: string, text: string) => h.writeFileAtomic(join(this.privateManifests(n), f), text) : (f: string, text: string) => this.writeManifest(f, text);
    write(file, podYaml({ name, namespace, labels }, n.name));
    const r = h.cni(n.socket, "ADD", { containerId: `ctr-${this.tag}-${name}`, netns: `/var/run/netns/${ns}`, pod: name, namespace });
    if (r.code !== 0) throw new Error(`CNI ADD ${namespace}/${name} on ${n.name}: ${JSON.stringify(r.out)}`);
    const ips = (r.out.ips as { address: string }[]).map((a) => a.address.split("/")[0]!);
    const ip = ips.find((a) => !a.includes(":"))!;
    const ip6 = ips.find((a) => a.includes(":"));
    if (this.opts.dualStack && !ip6) throw new Error(`CNI ADD ${namespace}/${name} on ${n.name}: no IPv6 address in ${JSON.stringify(r.out)}`);
    write(file, podYaml({ name, namespace, labels }, n.name, ip, ip6));
    this.pods.set(name, { name, namespace, node, ns, ip, ...(ip6 ? { ip6 } : {}), labels });
    return ip;
  }

  /** pod-tool's server in a pod (TCP 8080, UDP 5353 answer the pod's name), killed by cleanup(). */
  serve(pod: string, ms = 120_000, ports?: number[]): void {
    this.children.push(h.serve(this.pod(pod).ns, pod, ms, ports));
  }

  /** pod-tool (`args`, e.g. a server mode) in any namespace of the cluster, in the background; killed by cleanup(). */
  background(ns: string, ...args: (string | number)[]): void {
    this.children.push(spawn("ip", ["netns", "exec", ns, process.execPath, h.TOOL, ...args.map(String)], { stdio: "ignore" }));
  }

  /** What node i's ipcache map says about `ip` right now (identity and tunnel endpoint), read from its pins. */
  ipcache(i: number, ip: string): { identity: number; tunnelEndpoint: string } | undefined {
    const m = openPinnedMap(join(this.node(i).pin, MAP_SPECS.Ipcache.bpfName), MAP_SPECS.Ipcache);
    try {
      const v = m.lookup(ipcacheKey(ip));
      if (!v) return undefined;
      const te = v.tunnelEndpoint as Uint8Array;
      return { identity: v.secIdentity, tunnelEndpoint: (v.flags & 0x2) !== 0 ? [...te.subarray(0, 4)].join(".") : "" };
    } finally {
      m.raw.close();
    }
  }

  /** The identity node i's endpoint map gives its local pod `ip`. */
  endpointIdentity(i: number, ip: string): number | undefined {
    const m = openPinnedMap(join(this.node(i).pin, MAP_SPECS.Endpoints.bpfName), MAP_SPECS.Endpoints);
    try {
      return m.lookup({ addr: addrBytes16(ip), family: familyOf(ip) })?.secIdentity;
    } finally {
      m.raw.close();
    }
  }

  /** Waits until every node's ipcache has every pod with the identity its own node gives it. */
  async converged(ms = 30_000): Promise<void> {
    await h.eventually(() => this.disagreements().length === 0, ms, () => this.disagreements().join("\n"));
  }

  /** One line per (node, pod) whose ipcache entry is missing or differs from the pod's own endpoint identity. */
  disagreements(): string[] {
    const out: string[] = [];
    for (const p of this.pods.values()) {
      const own = this.endpointIdentity(p.node, p.ip);
      if (own === undefined) {
        out.push(`${p.name}: no endpoint on ${this.node(p.node).name}`);
        continue;
      }
      for (let i = 1; i <= this.nodes.length; i++) {
        // Every address of the pod (IPv6 too, dual stack), with the node's IPv4 address as tunnel endpoint.
        for (const a of [p.ip, ...(p.ip6 ? [p.ip6] : [])]) {
          const e = this.ipcache(i, a);
          const wantTep = i === p.node ? "" : this.node(p.node).ip;
          if (!e || e.identity !== own || e.tunnelEndpoint !== wantTep) out.push(`${p.name} (${a}, identity ${own}) on node-${i}: ${JSON.stringify(e)}`);
        }
      }
    }
    return out;
  }

  /** The agent's node routes in node i's namespace (destination → gateway, or `dev <device>` for a route
   * through a device: tunnel mode), IPv4 or (family 6) IPv6. */
  routes(i: number, family: 4 | 6 = 4): Record<string, string> {
    const rows = JSON.parse(sh("ip", ["-n", this.node(i).ns, "-j", `-${family}`, "route", "show", "proto", "193"]) || "[]") as { dst: string; gateway?: string; dev?: string }[];
    return Object.fromEntries(rows.map((r) => [r.dst, r.gateway ?? `dev ${r.dev}`]));
  }

  metrics(i: number): string {
    return h.scrapeMetrics(this.node(i).ns, this.node(i).metricsAddr);
  }

  /** All agents' logs, for failure messages. */
  logs(): string {
    return this.nodes.map((n) => `--- ${n.name}\n${n.log}`).join("\n");
  }

  async cleanup(): Promise<void> {
    if (this.cleaned) return;
    this.cleaned = true;
    if (process.env.CILIATE_E2E_LOG) console.log(this.logs());
    if (process.env.CILIATE_E2E_KEEP === "1") {
      console.log(`CILIATE_E2E_KEEP=1: left namespaces ${this.namespaces.join(" ")}, pins ${this.nodes.map((n) => n.pin).join(" ")}, state ${this.dir}\n${this.logs()}`);
      return;
    }
    for (const c of this.children) c.kill("SIGKILL");
    await Promise.all(this.nodes.map((n) => h.stopProcess(n.agent)));
    // Pods first (their veths go with them), then the nodes, then the underlay.
    for (const ns of [...this.namespaces].reverse()) sh("ip", ["netns", "del", ns], true);
    for (const n of this.nodes) {
      try {
        removePinRoot(n.pin);
      } catch (e) {
        console.error(`cleanup: ${n.pin}: ${(e as Error).message}`);
      }
    }
    if (this.dir) rmSync(this.dir, { recursive: true, force: true });
  }
}
