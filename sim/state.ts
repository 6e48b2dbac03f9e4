/*
 * The simulated cluster's state: one engine per node with its endpoint numbering, the services' model,
 * the virtual clock and source ports, the modelled DNS proxies' FQDN cache (the policy is recompiled from
 * it and the maps rewritten), the reserved entities' ipcache entries and the reserved:init endpoint, the
 * overlay between nodes, and the identity each node's ipcache gives an address. The layers above it
 * (flow-events.ts, l7-proxy.ts, flow-player.ts, probes.ts) play traffic on this state.
 */
import { MAP_SPECS } from "../host/codecs.gen.ts";
import * as C from "../host/constants.gen.ts";
import type { Datapath, TunnelKey } from "../host/datapath.ts";
import { tunnelPort, type TunnelProtocol } from "../host/tunnel.ts";
import { encodeEntries, FqdnCache, INIT_ENDPOINT, identityOfIp, nodeIdentityOn, type CompiledPolicy, type FqdnState } from "../policy/index.ts";
import type { EndpointRefSpec, FlowProtocol, SimCluster, SimPod, SimService, SimNode } from "../node/cluster.ts";
import type { SimEngineName } from "./engines.ts";
import type { FlowEvent } from "../host/flows.ts";
import { desiredMaps, positionalNumbering, type DesiredOptions, type MasqueradeOptions } from "../node/desired.ts";
import { wasmMaglevBuilder } from "../host/wasm-core.ts";
import { ipcacheKey } from "../host/ipcache.ts";
import { isRemoteNodeIdentity } from "../host/identity-scopes.ts";
import { ENTITY_OFFSETS, entityIp, KUBE_APISERVER_IP, Places, type Place } from "./places.ts";
import { compileClusterPolicy } from "./policy.ts";
import { buildLbModel, type Frontend, type LbModel } from "../node/services.ts";
import { addrBytes16 } from "../host/ip.ts";
import { rewriteMaps } from "./engine-maps.ts";

/** Virtual clock origin (shown in flow times) and the core's monotonic seconds at that moment. */
export const CLOCK_ORIGIN_MS = Date.UTC(2026, 0, 1, 0, 0, 0);
const MONO_BASE = 1000;
export const FIRST_SOURCE_PORT = 40000;

export interface SimulationOptions {
  engine?: SimEngineName;
  /** Another engine (e.g. the kernel one, composed by cli/): one fresh Datapath per node. */
  createDatapath?: () => Promise<Datapath>;
  /** Name of that engine, for messages. */
  engineName?: string;
  /** Minimum TTL (seconds) of learned DNS answers, as the agent's --tofqdns-min-ttl (default 0). */
  fqdnMinTtl?: number;
  /** Compiles the policy for a new FQDN cache state; default: the cluster's policies (sim/policy.ts). */
  recompile?: (fqdn: FqdnState) => CompiledPolicy;
  /** The overlay between nodes (Cilium's default tunnel routing mode): "vxlan" (default), "geneve", or
   * "disabled" (packets to other nodes' pods leave unencapsulated and their identity is looked up). */
  tunnel?: TunnelProtocol | "disabled";
  /** BPF masquerading on every node (the agent's --enable-bpf-masquerade, --ipv4-native-routing-cidr):
   * a pod's packet leaving the cluster runs toNetwork on its node, which SNATs it to the node's address;
   * the outside's reply runs fromNetwork there, which restores the pod. Absent: none. */
  masquerade?: MasqueradeOptions;
  /**
   * Cluster Mesh (sim/mesh.ts): this simulation is one cluster of a multi-cluster scenario, named so in
   * what it shows (its pods as `cluster/namespace/name`). Its model's nodes of other clusters (named
   * `cluster/node`) get no engine of their own: the mesh links them to their cluster's (linkNode).
   */
  meshCluster?: string;
}

/** ifindex the simulated nodes give their tunnel device (ConfigValue.tunnelIfindex; any non-zero value). */
const SIM_TUNNEL_IFINDEX = 2;

export interface NodeRuntime {
  node: SimNode;
  dp: Datapath;
  /** ns/name → endpoint id of the pods with an endpoint on this node. */
  epIds: Map<string, number>;
}

/** Endpoint id of the reserved:init endpoint on every simulated node (pods count up from 1). */
const INIT_EP_ID = 4095;

export class SimulationState {
  readonly nodes = new Map<string, NodeRuntime>();
  readonly lb: LbModel;
  /** Virtual time in milliseconds since CLOCK_ORIGIN_MS. */
  clockMs = 0;
  private nextPort = FIRST_SOURCE_PORT;
  /** Resolution of endpoint references and addresses to places. */
  readonly places: Places;
  /** Address of each node's reserved:init endpoint → node. */
  protected readonly initByIp = new Map<string, string>();
  /** What the (modelled) DNS proxies learned; the policy is compiled from its state. */
  readonly fqdn: FqdnCache;
  private readonly recompile: (fqdn: FqdnState) => CompiledPolicy;

  protected constructor(
    readonly cluster: SimCluster,
    public policy: CompiledPolicy,
    readonly engine: SimEngineName,
    opts: SimulationOptions,
  ) {
    this.fqdn = new FqdnCache(opts.fqdnMinTtl ?? 0);
    this.recompile = opts.recompile ?? ((fqdn) => compileClusterPolicy(cluster, undefined, fqdn));
    this.lb = buildLbModel(cluster);
    this.places = new Places(cluster, this.lb);
    this.tunnel = opts.tunnel === "disabled" ? undefined : (opts.tunnel ?? "vxlan");
    this.meshCluster = opts.meshCluster;
    this.masquerade = opts.masquerade !== undefined;
    this.desiredOptions = {
      ...(this.tunnel ? { tunnel: { protocol: this.tunnel, ifindex: SIM_TUNNEL_IFINDEX } } : {}),
      ...(opts.masquerade ? { masquerade: opts.masquerade } : {}),
    };
  }

  /** The cluster this simulation is in a multi-cluster scenario (SimulationOptions.meshCluster). */
  readonly meshCluster: string | undefined;
  /** Nodes of other clusters, linked to their own cluster's simulation: its engine, its policy. */
  protected readonly linked = new Map<string, () => CompiledPolicy>();

  /** True for a node of the model that gets an engine here (in a mesh, the other clusters' do not). */
  ownsNode(n: SimNode): boolean {
    return !this.meshCluster || !n.name.includes("/");
  }

  /**
   * Cluster Mesh: node `name` of this model (`cluster/node`) is that cluster's node `rt`, its maps written
   * by that cluster's simulation; `policy` is that cluster's compiled policy, which explains what its
   * node's engine decides (cookies, proxy ports). Its pods' endpoint ids are known here as
   * `cluster/namespace/name`.
   */
  linkNode(name: string, rt: NodeRuntime, cluster: string, policy: () => CompiledPolicy): void {
    this.nodes.set(name, { node: this.cluster.nodes.find((n) => n.name === name)!, dp: rt.dp, epIds: new Map([...rt.epIds].map(([k, v]) => [`${cluster}/${k}`, v])) });
    this.linked.set(name, policy);
  }

  /** The compiled policy behind node `node`'s maps: this cluster's, or the linked cluster's. */
  policyAt(node: string): CompiledPolicy {
    return this.linked.get(node)?.() ?? this.policy;
  }

  /** How a pod is shown: its key, qualified with this cluster's name in a multi-cluster scenario. */
  podName(p: SimPod): string {
    return p.cluster || !this.meshCluster ? p.key : `${this.meshCluster}/${p.key}`;
  }

  /** The overlay protocol between the nodes, undefined when disabled. */
  readonly tunnel: TunnelProtocol | undefined;
  /** Whether the nodes masquerade pod traffic leaving the cluster. */
  readonly masquerade: boolean;
  protected readonly desiredOptions: DesiredOptions;

  private nodeIp(name: string): string {
    return this.cluster.nodes.find((n) => n.name === name)!.ip;
  }

  /** What a collect-metadata tunnel device does with an encapsulated packet: the key the receiving
   * node's fromOverlay reads, with the sender's node as the remote end. */
  protected received(fromNode: string, sent: TunnelKey): TunnelKey {
    return { remote: this.nodeIp(fromNode), tunnelId: sent.tunnelId };
  }

  /** Hubble's tunnel record of an encapsulated hop (flow.proto Tunnel), with the VNI (not a Hubble field). */
  protected tunnelView(fromNode: string, sent: TunnelKey): NonNullable<FlowEvent["tunnel"]> {
    const port = tunnelPort(this.tunnel ?? "vxlan");
    return {
      protocol: this.tunnel === "geneve" ? "GENEVE" : "VXLAN",
      IP: { source: this.nodeIp(fromNode), destination: sent.remote, ipVersion: sent.remote.includes(":") ? "IPv6" : "IPv4" },
      l4: { UDP: { source_port: port, destination_port: port } },
      vni: sent.tunnelId,
    };
  }

  close(): void {
    for (const n of this.nodes.values()) n.dp.close();
  }

  /**
   * Addresses of reserved entities (health, kube-apiserver …) so the ipcache answers with their identity. An
   * entity's modelled address that a pod holds (a status.podIP an agent's IPAM gave it: they start at .2)
   * stays the pod's: the pod is real, the entity address only the simulator's.
   */
  protected extraIpcache(n: SimNode, dp: Datapath): void {
    const m = dp.map(MAP_SPECS.Ipcache);
    const key = (ip: string) => ipcacheKey(ip);
    m.update(key(KUBE_APISERVER_IP), { secIdentity: C.ID_KUBE_APISERVER });
    for (const other of this.cluster.nodes) {
      for (const [off, id] of ENTITY_OFFSETS) {
        const ip = entityIp(other, off);
        if (!this.places.podByIp.has(ip)) m.update(key(ip), { secIdentity: id });
      }
    }
  }

  /**
   * The reserved:init entity is an endpoint (labels not known yet), so it has its own policy, enforced in
   * both directions (policy/compile.ts), installed like a pod's at its address on every node.
   */
  protected initEndpoint(n: SimNode, dp: Datapath): void {
    const ep = this.policy.endpoints.get(INIT_ENDPOINT);
    const ip = entityIp(n, ENTITY_OFFSETS.find(([, id]) => id === C.ID_INIT)![0]);
    if (!ep || ip.includes(":") || this.places.podByIp.has(ip)) return;
    this.initByIp.set(ip, n.name);
    dp.map(MAP_SPECS.Endpoints).update({ addr: addrBytes16(ip), family: C.FAMILY_IPV4 }, { epId: INIT_EP_ID, secIdentity: C.ID_INIT, ifindex: 100 + INIT_EP_ID });
    const pm = dp.map(MAP_SPECS.Policy);
    for (const { key, value } of encodeEntries(INIT_EP_ID, ep.entries)) pm.update(key, value);
  }

  /** The monotonic seconds the core sees. */
  now(): number {
    return MONO_BASE + Math.floor(this.clockMs / 1000);
  }

  advance(ms: number): void {
    this.clockMs += ms;
  }

  /**
   * The next source port and the clock, to line two simulations up: whatif plays each flow in both versions
   * from the same cursor, so a flow that exists in only one of them shifts no other flow's ports or time.
   */
  get cursor(): { port: number; clockMs: number } {
    return { port: this.nextPort, clockMs: this.clockMs };
  }

  set cursor(c: { port: number; clockMs: number }) {
    this.nextPort = c.port;
    this.clockMs = c.clockMs;
  }

  /** Virtual seconds since the clock origin: the FQDN cache's time. */
  protected fqdnNow(): number {
    return Math.floor(this.clockMs / 1000);
  }

  /** Recompiles the policy from the FQDN cache's current state and rewrites every node's maps. */
  protected refreshFqdnPolicy(): void {
    this.policy = this.recompile(this.fqdn.state(this.fqdnNow()));
    // The maps that depend on the policy are rewritten from the desired state (node/desired.ts): endpoints
    // and services do not depend on the FQDN cache, CIDR identities and policy entries do.
    for (const n of this.nodes.values()) {
      if (this.linked.has(n.node.name)) continue;
      const desired = desiredMaps(this.cluster, this.policy, this.lb, n.node.name, positionalNumbering(this.cluster, n.node.name, this.lb), wasmMaglevBuilder, this.desiredOptions);
      rewriteMaps(n.dp, desired, ["Ipcache", "Policy", "ProxyListeners"]);
      this.extraIpcache(n.node, n.dp);
    }
  }

  /** Drops expired FQDN cache entries (and their policy) at the current virtual time. */
  expireFqdn(): void {
    if (this.fqdn.expire(this.fqdnNow())) this.refreshFqdnPolicy();
  }

  nextSourcePort(): number {
    const p = this.nextPort++;
    if (this.nextPort > 65535) this.nextPort = FIRST_SOURCE_PORT;
    return p;
  }

  /* ------------------------------------------------------------------------------------------------ */
  /* Endpoint references (sim/places.ts). */

  podByKey(key: string): SimPod | undefined {
    return this.places.podByKey(key);
  }

  serviceByKey(key: string): SimService | undefined {
    return this.places.serviceByKey(key);
  }

  /** Place of an address: a pod, a node (host), or outside the cluster. */
  placeOfIp(ip: string): Place {
    return this.places.placeOfIp(ip);
  }

  /** Resolves a source reference; `peerNode` is where the destination lives (for entity: host). */
  resolveSource(ref: EndpointRefSpec, peerNode: string | undefined, what: string): Place {
    return this.places.resolveSource(ref, peerNode, what);
  }

  /** Resolves a destination; a service becomes the frontend the source would use. */
  resolveDestination(ref: EndpointRefSpec, src: Place | undefined, port: number, proto: FlowProtocol, what: string): { place: Place; port: number; frontend?: Frontend } {
    return this.places.resolveDestination(ref, src, port, proto, what);
  }

  /**
   * The identity `node`'s ipcache holds for an address: pod, node (host on itself, remote-node elsewhere:
   * policy's nodeIdentityOn, as node/desired.ts writes it), CIDR identity, or world. A host-networked pod
   * has its node's address, which the ipcache knows as the node's.
   */
  identityOfIp(ip: string, node: string): number {
    const pod = this.places.podByIp.get(ip);
    if (pod && !pod.hostNetwork) return this.identityOfPod(pod);
    const n = this.places.nodeByIp.get(ip);
    if (n) return nodeIdentityOn(this.policy.identities, node, n.name);
    return identityOfIp(this.policy.identities, this.cluster.model, ip) ?? C.ID_WORLD;
  }

  /**
   * The identity a packet from another node is delivered with: a node's own traffic travels with the
   * reserved remote-node identity, which the receiving node refines from its ipcache by the source address
   * (cilium/cilium bpf/bpf_overlay.c: identity_is_remote_node → ipcache lookup), so a node with a
   * remote-node identity of its own (enable-node-selector-labels) is seen as that identity.
   */
  protected overlayIdentity(carried: number, src: string, node: string): number {
    return isRemoteNodeIdentity(carried) && this.places.nodeByIp.has(src) ? this.identityOfIp(src, node) : carried;
  }

  identityOfPod(p: SimPod): number {
    return this.policy.identities.podIdentity.get(p.key) ?? C.ID_WORLD;
  }
}
