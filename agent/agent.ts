/*
 * `ciliate agent`: the node agent. It loads the generated datapath (build/bpf/ciliate.bpf.o) with its maps
 * pinned under a bpffs directory, joins pods to the node (endpoints.ts plumbing from datapath/), and keeps
 * the maps equal to what the desired state says this node's maps should hold (desired.ts), by writing only
 * the differences (reconcile.ts). It never reloads programs to apply a change.
 *
 * Everything the agent does is synchronous and runs on Node's one thread, so a CNI request, a manifest
 * change and a resync are naturally serialised: each sees the state the previous one left.
 *
 * Restart: the maps are pinned and the tc filters stay attached when the process exits, so established
 * connections keep flowing while it is down. On start the agent loads the object again (libbpf reuses the
 * pinned maps), re-attaches the new programs over the old ones, drops endpoints whose interface has gone,
 * and reconciles every managed map against the desired state, which removes whatever is stale.
 */
import { existsSync, mkdirSync, readFileSync, renameSync, writeFileSync } from "node:fs";
import { dirname, join } from "node:path";
import { MAP_SPECS, type MapSpec } from "../host/codecs.gen.ts";
import { attachTc, attachXdp, BpfObject, netnsPath, tcQuery, TcAttachment, type BpfProgram, type RawMap } from "../datapath/index.ts";
import { createEndpointLink, deleteEndpointLink, enableIpForwarding, hostIfnameFor, linkShow, checkEndpointLink, POD_GATEWAY, POD_GATEWAY6 } from "../datapath/endpoint-link.ts";
import { DEFAULT_FQDN_MIN_TTL, FqdnCache, type CompiledPolicy, type ManifestObject } from "../policy/index.ts";
import type { BuildOptions } from "../node/cluster.ts";
import type { MasqueradeOptions } from "../node/desired.ts";
import { computeDesired, MANAGED_MAPS, type DesiredState, type Numbering, type LocalEndpoint, type ManagedMap, type MapContents, type NodeInfo } from "./desired.ts";
import { StableIdentities, StableNumbers, type IdentityState } from "./identities.ts";
import { ClusterIdentities, type IdentityAllocator } from "./identity-allocator.ts";
import { Ipam } from "./ipam.ts";
import { readContents, reconcileFailClosed, type ApplyResult } from "./reconcile.ts";
import { AgentError } from "./defaults.ts";
import { endpointNamesProblem } from "./endpoint-names.ts";
import * as C from "../host/constants.gen.ts";
import { installProxyRouting } from "../datapath/transparent-proxy.ts";
import { parseIp } from "../host/ip.ts";
import { ipcacheKey } from "../host/ipcache.ts";
import type { ProxyListenerMap } from "./proxy/manager.ts";
import { routeTarget, syncNodeRoutes } from "../datapath/node-routes.ts";
import { remoteNodeRoutes, tunnelNodeRoutes, type RoutingMode } from "./routing.ts";
import { planOverlay, setupOverlay, removeStaleOverlay, type NodeOverlay } from "./overlay.ts";
import type { TunnelProtocol } from "../host/tunnel.ts";

export { AgentError, DEFAULT_SOCKET, DEFAULT_STATE_DIR } from "./defaults.ts";

export interface AgentOptions {
  nodeName: string;
  nodeIp: string;
  podCIDR: string;
  /**
   * Dual stack (Cilium's enable-ipv6 with ipv6-range): this node's IPv6 pod CIDR. Every pod then also gets
   * an IPv6 address from it, with its own endpoint and ipcache entries under the pod's identity. Absent:
   * IPv4 only (the pod's interface has IPv6 off).
   */
  podCIDRv6?: string;
  /** Dual stack: this node's IPv6 address (Cilium's ipv6-node), the next hop of the other nodes' routes to
   * its IPv6 pod CIDR in native routing; published with the node in kvstore and crd modes. */
  nodeIp6?: string;
  /** bpffs directory for the pinned maps. */
  pinRoot: string;
  /** Agent state (endpoints, identities, IPAM). */
  stateDir: string;
  objectPath: string;
  /** Where the desired state comes from; called on every reconcile. Throws on bad input. */
  source: () => ManifestObject[];
  /** Node devices facing the outside: from-network (NodePort, LoadBalancer) is attached at their tc ingress. */
  devices?: string[];
  /**
   * Run from-network at XDP in driver mode on `devices` instead of at tc ingress (Cilium's
   * loadBalancer.acceleration=native): drops cost no skb and translated frames are forwarded from the
   * driver. The device's driver must support native XDP; otherwise the agent refuses to start.
   */
  xdpAcceleration?: boolean;
  /** The XDP build of from-network (default: from_network_xdp.bpf.o beside objectPath). */
  xdpObjectPath?: string;
  /** Trace every packet into the events ring buffer (not only drops and new flows' policy verdicts). */
  eventsAll?: boolean;
  /** Also trace about 1 in N forwarded packets (sampled by a packet hash in the datapath). */
  traceSample?: number;
  buildOptions?: BuildOptions;
  /** Per-endpoint policy entry budget (default policy/'s, 16384). */
  policyMapMax?: number;
  /** Minimum TTL (seconds) of what the DNS proxy learns (Cilium's --tofqdns-min-ttl; default 0 = the answer's TTL). */
  fqdnMinTtl?: number;
  /**
   * How pods on other nodes are reached. "native": a route to each remote node's pod CIDR via its node IP
   * (routing.ts), the packet unchanged; the receiving node takes the sender's identity from its ipcache.
   * Undefined: the agent installs no routes (a single node, or routes managed outside the agent).
   * "tunnel": the node's collect-metadata tunnel device with from_overlay at its ingress and from_host at
   * its egress, its ifindex and protocol in the Config map, the other nodes' pod CIDRs routed through it
   * (for the node's own traffic; pods' packets are redirected to it), pods at the overlay MTU (overlay.ts).
   */
  routingMode?: RoutingMode;
  /** With routing mode tunnel: vxlan (default) or geneve. */
  tunnelProtocol?: TunnelProtocol;
  /**
   * BPF masquerading (Cilium's enable-bpf-masquerade): to_network at the tc egress of every device SNATs
   * pod traffic leaving the cluster to `nodeIp` (IPv4) or `nodeIp6` (IPv6; core/nat.ts M1–M6), except to
   * `nativeRoutingCidr` (ipv4-native-routing-cidr) and `ipv6NativeRoutingCidr` (ipv6-native-routing-cidr);
   * from_network at their ingress restores the replies. Needs `devices`. Absent: no masquerading, and a
   * to_network an earlier run left on a device is removed.
   */
  masquerade?: MasqueradeOptions;
  /**
   * Cluster-wide identities (kvstore or crd mode), already started. Without it the agent numbers label
   * sets itself (local mode): stable on this node, not agreed with other nodes.
   */
  identityAllocator?: IdentityAllocator;
  /** Called when allocating or releasing a cluster-wide identity failed (the backend away; it is retried). */
  onIdentityError?: () => void;
  /** Cluster id (0..255): bits 16-23 of the cluster-scoped identities this agent allocates. */
  clusterId?: number;
  log?: (level: "info" | "warn" | "error", msg: string) => void;
}

/** One pod joined to the node. */
export interface EndpointRecord {
  containerId: string;
  /** CNI_IFNAME inside the pod. */
  ifname: string;
  netns: string;
  pod: string;
  ip: string;
  /** The pod's IPv6 address (dual stack). */
  ip6?: string;
  epId: number;
  hostIfname: string;
  hostIfindex: number;
  hostMac: string;
  podMac: string;
}

interface StateFile {
  endpoints: EndpointRecord[];
  identities: IdentityState;
  backendIds?: Record<string, number>;
  revNatIndexes?: Record<string, number>;
  nextEpId: number;
  /** What the DNS proxy had learned (absolute expiries), so a restart keeps the toFQDNs allows. */
  fqdn?: { name: string; ip: string; expires: number }[];
}

export interface ReconcileReport {
  ok: boolean;
  reason: string;
  error?: string;
  applied?: ApplyResult;
  /** Local endpoints whose policy is over budget (kept at their last good entries). */
  overflow?: string[];
  durationMs: number;
}

export interface AgentEvents {
  onReconcile?: (r: ReconcileReport) => void;
  onEndpoints?: (n: number) => void;
}

/** Backoff of the reconcile retried after map errors (doubling from MIN to MAX). */
export const RETRY_MIN_MS = 500;
export const RETRY_MAX_MS = 30_000;

/** Wall-clock seconds: the FQDN cache's time on a node. */
function fqdnNow(): number {
  return Math.floor(Date.now() / 1000);
}

export class Agent {
  readonly obj: BpfObject;
  private readonly progs: { from: BpfProgram; to: BpfProgram; network: BpfProgram };
  private readonly xdpObj?: BpfObject;
  private readonly endpoints = new Map<string, EndpointRecord>();
  private readonly numbering: Numbering;
  readonly ipam: Ipam;
  /** IPAM of the IPv6 pod CIDR (dual stack), its own file. */
  readonly ipam6?: Ipam;
  private nextEpId = 1;
  private lastDesired?: DesiredState;
  /** The last apply wrote every operation (its maps then hold exactly lastDesired). */
  private lastApplyClean = false;
  /** Endpoint ids held out of the endpoints map because their policy could not be written (reconcile.ts F2). */
  private readonly quarantine = new Set<number>();
  /** The last objects that compiled; kept when new input is bad. */
  private lastGoodObjects?: ManifestObject[];
  readonly events: AgentEvents = {};
  private readonly log: NonNullable<AgentOptions["log"]>;
  /** What the DNS proxy learned; the policy is compiled from its state (toFQDNs). */
  readonly fqdn: FqdnCache;
  private fqdnTimer?: NodeJS.Timeout;
  /** The last node-route problems logged (logged again only when they change). */
  private routeProblems = "";
  private collisionsLogged = 0;
  private identityTimer?: NodeJS.Timeout;
  /** The overlay this node runs (routing mode tunnel), set up before the first reconcile writes its ifindex. */
  readonly overlay?: NodeOverlay;
  /** A device a run in tunnel mode left behind is removed once the Config map no longer names it. */
  private staleOverlayChecked = false;
  /** A reconcile again after map operations failed (a full map, an EPERM…), with backoff. */
  private retryTimer?: NodeJS.Timeout;
  private retryDelayMs = RETRY_MIN_MS;

  constructor(readonly opts: AgentOptions) {
    this.log = opts.log ?? ((level, msg) => process.stderr.write(`${new Date().toISOString()} ${level} ${msg}\n`));
    this.fqdn = new FqdnCache(opts.fqdnMinTtl ?? DEFAULT_FQDN_MIN_TTL);
    mkdirSync(opts.stateDir, { recursive: true, mode: 0o700 });
    const st = this.readState();
    for (const e of st?.fqdn ?? []) this.fqdn.restore(e);
    this.scheduleFqdnExpiry();
    this.numbering = {
      identities: opts.identityAllocator
        ? new ClusterIdentities(opts.identityAllocator, {
            state: st?.identities,
            onReady: () => this.identitiesChanged("identities allocated"),
            log: (m) => {
              this.log("warn", m);
              opts.onIdentityError?.();
            },
          })
        : new StableIdentities(st?.identities, opts.clusterId ?? 0),
      backends: new StableNumbers(1, 0xffffffff, st?.backendIds),
      revNat: new StableNumbers(1, 0xffff, st?.revNatIndexes),
      eventsAll: opts.eventsAll,
      traceSample: opts.traceSample,
    };
    this.nextEpId = st?.nextEpId ?? 1;
    // Another node allocated or released an identity: the ipcache and policy follow.
    opts.identityAllocator?.onChange(() => this.identitiesChanged("identities changed"));
    this.ipam = new Ipam(opts.podCIDR, join(opts.stateDir, "ipam.json"));
    if (opts.podCIDRv6) {
      this.ipam6 = new Ipam(opts.podCIDRv6, join(opts.stateDir, "ipam6.json"));
      if (this.ipam6.family !== 6) throw new AgentError("BAD_OPTION", `the IPv6 pod CIDR ${opts.podCIDRv6} is not an IPv6 prefix`, 2);
    }
    enableIpForwarding(opts.podCIDRv6 !== undefined);
    // Tunnel mode needs a device this kernel can make: checked before anything is loaded or attached, so a
    // node that cannot run the overlay refuses to start instead of forwarding unencapsulated.
    const overlayPlan = opts.routingMode === "tunnel" ? planOverlay(opts.tunnelProtocol ?? "vxlan", opts.nodeIp, opts.devices ?? [], opts.podCIDRv6 !== undefined) : undefined;
    // Packets the programs hand to the L7 proxy are routed to the local stack (datapath/transparent-proxy.ts).
    installProxyRouting(opts.podCIDRv6 !== undefined);
    this.obj = loadObject(opts.objectPath, opts.pinRoot, opts.xdpAcceleration === true);
    this.progs = { from: this.obj.program("from_endpoint"), to: this.obj.program("to_endpoint"), network: this.obj.program("from_network") };
    if (opts.xdpAcceleration) {
      // The same maps by pinning (and the Events ring buffer, pinned explicitly), so the XDP program's
      // conntrack entries, counters and flow events are the ones the rest of the node sees.
      this.xdpObj = loadObject(opts.xdpObjectPath ?? join(dirname(opts.objectPath), "from_network_xdp.bpf.o"), opts.pinRoot, true);
      const prog = this.xdpObj.program("from_network_xdp");
      for (const dev of opts.devices ?? []) attachXdp(prog, { ifname: dev, mode: "drv", replace: true });
    } else {
      for (const dev of opts.devices ?? []) attachTc(this.progs.network, { ifname: dev, direction: "ingress", replace: true });
    }
    // A NodePort flow to a backend on another node leaves from_network SNATed to the node's own address
    // and its reply comes back reverse-translated to the frontend (the node's address) as source; the stack
    // forwards both, and without accept_local drops a packet arriving with a local source as a martian (as
    // the pods' veths have it, datapath/endpoint-link.ts). Best effort: a read-only /proc/sys keeps its own.
    for (const dev of opts.devices ?? []) {
      try {
        writeFileSync(`/proc/sys/net/ipv4/conf/${dev}/accept_local`, "1");
      } catch {
        // The operator's setting stands.
      }
    }
    // Masquerading: to_network at each device's egress (a no-op until the first reconcile sets
    // CONFIG_F_MASQUERADE); without it, a to_network an earlier run left goes.
    // The host firewall (--enable-host-firewall) needs it too: the node's own packets meet its egress host
    // policy there (core/host-firewall.ts H3), and from_network at the ingress judges what arrives (H2).
    const hostFirewall = opts.buildOptions?.enableHostFirewall === true;
    for (const dev of opts.devices ?? []) {
      if (opts.masquerade || hostFirewall) {
        attachTc(this.obj.program("to_network"), { ifname: dev, direction: "egress", replace: true });
        if (opts.masquerade) {
          const m = opts.masquerade;
          const v6 = opts.nodeIp6 ? `, IPv6 to ${opts.nodeIp6}${m.ipv6NativeRoutingCidr ? ` (not to ${m.ipv6NativeRoutingCidr})` : ""}` : m.ipv6NativeRoutingCidr ? ", IPv6 not masqueraded (no --ipv6-node)" : "";
          this.log("info", `masquerade: to_network at ${dev} egress, pod traffic leaving the cluster is SNATed to ${opts.nodeIp}${m.nativeRoutingCidr ? ` (not to ${m.nativeRoutingCidr})` : ""}${v6}`);
        }
        if (hostFirewall) this.log("info", `host firewall: host policies enforced at ${dev} (from_network at ingress, to_network at egress)`);
      } else if (tcQuery({ ifname: dev, direction: "egress" }) !== undefined) {
        new TcAttachment(linkShow(dev)!.ifindex, "egress", 1, 1, 0).detach();
        this.log("info", `masquerade: off; removed the to_network filter at ${dev} egress`);
      }
    }
    // The device and from_overlay before any endpoint or map: the first reconcile writes its ifindex.
    if (overlayPlan) {
      this.overlay = setupOverlay(overlayPlan, this.obj.program("from_overlay"), this.obj.program("from_host"));
      this.log("info", `overlay: ${this.overlay.protocol} device ${this.overlay.device} (ifindex ${this.overlay.ifindex}, ${this.overlay.adopted ? "adopted" : "created"}, port ${this.overlay.port}, MTU ${this.overlay.deviceMtu}); pods get MTU ${this.overlay.podMtu}`);
    }
    // Restart: keep the endpoints whose interface is still there; re-attach the new programs.
    for (const ep of st?.endpoints ?? []) {
      const link = linkShow(ep.hostIfname);
      if (!link || !existsSync(netnsPath(ep.netns))) {
        this.log("info", `endpoint ${ep.pod} (${ep.containerId.slice(0, 12)}) is gone; removing it`);
        deleteEndpointLink(ep.hostIfname);
        this.releaseAddresses(ep.containerId);
        continue;
      }
      ep.hostIfindex = link.ifindex;
      this.attach(ep);
      this.endpoints.set(ep.containerId, ep);
    }
    // Addresses held by containers the agent no longer knows.
    const known = new Set(this.endpoints.keys());
    for (const owner of new Set(Object.values(this.ipam.allocations()))) if (!known.has(owner)) this.ipam.release(owner);
    for (const owner of new Set(Object.values(this.ipam6?.allocations() ?? {}))) if (!known.has(owner)) this.ipam6!.release(owner);
    this.saveState();
  }

  private readState(): StateFile | undefined {
    const f = join(this.opts.stateDir, "state.json");
    if (!existsSync(f)) return undefined;
    try {
      return JSON.parse(readFileSync(f, "utf8")) as StateFile;
    } catch (e) {
      this.log("warn", `ignoring unreadable state ${f}: ${(e as Error).message}`);
      return undefined;
    }
  }

  private saveState(): void {
    const f = join(this.opts.stateDir, "state.json");
    const s: StateFile = {
      endpoints: [...this.endpoints.values()],
      identities: this.numbering.identities.state(),
      backendIds: this.numbering.backends.state(),
      revNatIndexes: this.numbering.revNat.state(),
      nextEpId: this.nextEpId,
      fqdn: this.fqdn.entries(),
    };
    writeFileSync(`${f}.tmp`, JSON.stringify(s, null, 2), { mode: 0o600 });
    renameSync(`${f}.tmp`, f);
  }

  private attach(ep: EndpointRecord): void {
    // from-endpoint sees what the pod sends (ingress of the host side), to-endpoint what it receives.
    attachTc(this.progs.from, { ifindex: ep.hostIfindex, direction: "ingress", replace: true });
    attachTc(this.progs.to, { ifindex: ep.hostIfindex, direction: "egress", replace: true });
  }

  private rawMap(name: ManagedMap): RawMap {
    return this.obj.map((MAP_SPECS[name] as MapSpec).bpfName);
  }

  localEndpoints(): LocalEndpoint[] {
    return [...this.endpoints.values()].map((e) => ({ epId: e.epId, pod: e.pod, ip: e.ip, ip6: e.ip6, ifindex: e.hostIfindex, mac: e.podMac, hostMac: e.hostMac }));
  }

  endpointList(): EndpointRecord[] {
    return [...this.endpoints.values()];
  }

  get desired(): DesiredState | undefined {
    return this.lastDesired;
  }

  /**
   * Brings every managed map to the desired state. Bad input (a manifest that does not parse, validate or
   * compile) leaves the maps as they are and is reported; with `objects` omitted the source is read again.
   */
  reconcile(reason: string): ReconcileReport {
    const t0 = performance.now();
    let objects: ManifestObject[];
    let desired: DesiredState;
    try {
      objects = this.opts.source();
      desired = computeDesired(objects, this.nodeInfo(), this.localEndpoints(), this.numbering, this.desiredOptions());
      this.lastGoodObjects = objects;
    } catch (e) {
      // Keep the running state; with new endpoints, fall back to the last good manifests.
      const msg = (e as Error).message;
      if (!this.lastGoodObjects) {
        const r = { ok: false, reason, error: msg, durationMs: performance.now() - t0 };
        this.log("error", `reconcile (${reason}): ${msg}; no good state yet, maps unchanged`);
        this.events.onReconcile?.(r);
        return r;
      }
      this.log("error", `reconcile (${reason}): invalid desired state, keeping the last good one: ${msg}`);
      try {
        desired = computeDesired(this.lastGoodObjects, this.nodeInfo(), this.localEndpoints(), this.numbering, this.desiredOptions());
      } catch (e2) {
        const r = { ok: false, reason, error: (e2 as Error).message, durationMs: performance.now() - t0 };
        this.events.onReconcile?.(r);
        return r;
      }
      const applied = this.apply(desired);
      this.syncRoutes(this.lastGoodObjects);
      const r = { ok: false, reason, error: msg, applied, durationMs: performance.now() - t0 };
      this.events.onReconcile?.(r);
      return r;
    }
    const applied = this.apply(desired);
    this.syncRoutes(objects);
    if (!this.staleOverlayChecked && applied.failed.length === 0) {
      // The Config map now says which tunnel device (if any) the programs use: a device of an earlier run
      // in tunnel mode that this run does not use can go.
      this.staleOverlayChecked = true;
      for (const m of removeStaleOverlay(this.overlay?.device)) this.log("info", m);
    }
    this.saveState(); // identities may have grown
    const r: ReconcileReport = { ok: applied.failed.length === 0, reason, applied, overflow: desired.overflow.map((e) => e.endpoint), durationMs: performance.now() - t0 };
    if (applied.failed.length) {
      r.error = applied.failed.map((f) => `${f.op.map} ${f.op.op}: ${f.error.message}`).slice(0, 5).join("; ");
      const delay = this.scheduleRetry();
      this.log("error", `reconcile (${reason}): ${applied.failed.length} map operations failed: ${r.error}; retrying in ${delay} ms`);
    } else if (applied.added + applied.updated + applied.deleted > 0) {
      this.log("info", `reconcile (${reason}): +${applied.added} ~${applied.updated} -${applied.deleted} entries in ${r.durationMs.toFixed(1)} ms`);
    }
    if (applied.failed.length === 0) this.cancelRetry();
    this.events.onReconcile?.(r);
    return r;
  }

  /**
   * Arms one retry of the reconcile after map operations failed. Nothing else may come to retry them (the
   * manifests need not change again), and until they succeed the node holds a partial state: the delay
   * doubles from RETRY_MIN_MS to RETRY_MAX_MS so a map that stays full is not hammered. Returns the delay.
   */
  private scheduleRetry(): number {
    const delay = this.retryDelayMs;
    if (!this.retryTimer) {
      this.retryTimer = setTimeout(() => {
        this.retryTimer = undefined;
        this.reconcile("retry after map errors");
      }, delay);
      this.retryTimer.unref();
      this.retryDelayMs = Math.min(RETRY_MAX_MS, delay * 2);
    }
    return delay;
  }

  private cancelRetry(): void {
    clearTimeout(this.retryTimer);
    this.retryTimer = undefined;
    this.retryDelayMs = RETRY_MIN_MS;
  }

  /**
   * Pins removed under the running agent (an operator's `rm`, a cleanup script) are made again from the
   * maps this process holds, so the next start reuses the maps the attached programs use instead of
   * creating empty ones beside them. Returns the maps re-pinned (empty when nothing was missing).
   */
  repairPins(): string[] {
    const repinned = [...this.obj.repinMissing(), ...(this.xdpObj?.repinMissing() ?? [])];
    if (repinned.length) this.log("warn", `pins removed under ${this.opts.pinRoot} were restored: ${repinned.join(", ")}`);
    return repinned;
  }

  /**
   * Native routing: the routes to the other nodes' pod CIDRs follow the Node objects. Runs after the maps
   * are written, so a remote pod's ipcache entry (its identity) is in place before its traffic is routed.
   */
  private nodeInfo(): NodeInfo {
    return { name: this.opts.nodeName, ip: this.opts.nodeIp, podCIDR: this.opts.podCIDR, podCIDRv6: this.opts.podCIDRv6, ...(this.opts.nodeIp6 ? { ip6: this.opts.nodeIp6 } : {}) };
  }

  private syncRoutes(objects: ManifestObject[]): void {
    const collisions = this.numbering.identities.collisions ?? [];
    for (const c of collisions.slice(this.collisionsLogged)) {
      this.log("error", `identity collision: ${c.key} hashes to the number held by ${c.holder}; it got ${c.id} on this node, which other nodes may number differently (docs/multi-node.md)`);
    }
    this.collisionsLogged = collisions.length;
    // Native routing: via the nodes; tunnel mode: through the tunnel device (from_host encapsulates what the
    // node itself sends there). Otherwise none (a restart in another mode removes them).
    const want = this.opts.routingMode === "native" ? remoteNodeRoutes(objects, this.nodeInfo())
      : this.overlay ? tunnelNodeRoutes(objects, this.nodeInfo(), this.overlay.device, this.overlay.podMtu)
      : { routes: [], problems: [] };
    const problems = want.problems.join("\n");
    if (problems !== this.routeProblems) for (const p of want.problems) this.log("warn", p);
    this.routeProblems = problems;
    try {
      const r = syncNodeRoutes(want.routes);
      for (const a of r.added) this.log("info", `route ${a.cidr} ${a.dev ? routeTarget(a) : `via ${a.via}`} (node ${a.node})`);
      for (const d of r.removed) this.log("info", `route ${d} removed (no such node any more)`);
      for (const f of r.failed) this.log("error", `route ${f.route.cidr} via ${f.route.via} (node ${f.route.node}): ${f.error}`);
    } catch (e) {
      this.log("error", `node routes: ${(e as Error).message}`);
    }
  }

  private desiredOptions() {
    // After a restart the previous policy is what the pinned map holds.
    const previous = this.lastDesired ?? { maps: { Policy: readContents(this.rawMap("Policy")) } };
    const tunnel = this.overlay ? { protocol: this.overlay.protocol, ifindex: this.overlay.ifindex } : undefined;
    return { ...this.opts.buildOptions, policyMapMax: this.opts.policyMapMax, previous, fqdn: this.fqdn.state(fqdnNow()), tunnel, masquerade: this.opts.masquerade };
  }

  /** A reconcile soon, coalescing bursts of allocations and watch events into one. */
  private identitiesChanged(reason: string): void {
    if (this.identityTimer) return;
    this.identityTimer = setTimeout(() => {
      this.identityTimer = undefined;
      if (this.lastDesired || this.lastGoodObjects) this.reconcile(reason);
    }, 20);
  }

  /** True while a local endpoint's identity is still being allocated cluster-wide (it is init meanwhile). */
  identitiesPending(): boolean {
    const ids = this.numbering.identities;
    return ids instanceof ClusterIdentities && ids.pending();
  }

  /** The policy the maps were last written from (what the L7 proxies judge with). */
  currentPolicy(): CompiledPolicy | undefined {
    return this.lastDesired?.policy;
  }

  /**
   * The DNS proxy learned `ips` for `name`: when that adds an address, the maps are reconciled before this
   * returns, so the answer reaches the client only once egress to the address is allowed (as Cilium holds
   * DNS responses until the ipcache and policy map are updated).
   */
  learnDns(name: string, ips: string[], ttl: number): void {
    if (this.fqdn.learn(name, ips, ttl, fqdnNow()).changed) this.reconcile(`dns: ${name} → ${ips.join(", ")}`);
    this.scheduleFqdnExpiry();
  }

  /** Removes what expired (and its allows) now, and arms the timer for the next expiry. */
  expireFqdn(): void {
    if (this.fqdn.expire(fqdnNow())) this.reconcile("dns: TTL expired");
    this.scheduleFqdnExpiry();
  }

  private scheduleFqdnExpiry(): void {
    clearTimeout(this.fqdnTimer);
    const next = this.fqdn.nextExpiry();
    if (next === undefined) return;
    this.fqdnTimer = setTimeout(() => this.expireFqdn(), Math.max(0, next - fqdnNow()) * 1000 + 50);
    this.fqdnTimer.unref();
  }

  /** Proxy ports of the DNS listeners over UDP of this node's endpoints (the DNS proxy listens on them). */
  dnsProxyPorts(): number[] {
    const p = this.lastDesired?.policy;
    if (!p) return [];
    const local = new Set(this.localEndpoints().map((e) => e.pod));
    return [...p.proxies.values()].filter((l) => l.protocol === "dns" && l.l4Protocol === 17 && local.has(l.endpoint)).map((l) => l.proxyPort);
  }

  private apply(desired: DesiredState): ApplyResult {
    for (const e of desired.overflow) this.log("error", `${e.message}; the endpoint keeps its last good policy`);
    for (const w of desired.warnings) this.log("warn", w.message);
    if (desired.cluster.config.enableHostFirewall && this.opts.buildOptions?.enableHostFirewall !== true)
      this.log("warn", "the Config enables the host firewall, but to_network is attached only with --enable-host-firewall: host egress policies are not enforced on this node (ingress ones are, at from_network)");
    // A map whose desired contents are the very ones last written without a failure (computeDesired reuses
    // them when only policies changed) is neither read back nor diffed; every other map is read from the
    // kernel and diffed, which also repairs anything changed behind the agent's back.
    const current: Partial<Record<ManagedMap, MapContents>> = {};
    const last = this.lastApplyClean ? this.lastDesired : undefined;
    for (const m of MANAGED_MAPS) current[m] = last && last.maps[m] === desired.maps[m] ? desired.maps[m] : readContents(this.rawMap(m));
    // Failed policy operations are fenced, or their endpoint quarantined, so that the node never allows
    // more than the desired state while it retries (agent/reconcile.ts rules F1–F3).
    const res = reconcileFailClosed((m) => this.rawMap(m), current, desired.maps, this.quarantine);
    if (res.fenced) this.log("error", `${res.fenced} policy entries could not be deleted or updated; overwritten with a deny until the retry`);
    if (res.quarantined.length) this.log("error", `endpoints ${res.quarantined.join(", ")} quarantined (all their traffic dropped): their policy could not be written`);
    if (res.released.length) this.log("info", `endpoints ${res.released.join(", ")} released from quarantine: their policy is in place`);
    for (const f of res.failOpen) this.log("error", `FAIL-OPEN: ${f.op.map} ${f.op.op} failed and neither a deny fence nor the endpoint's quarantine could be written: ${f.error.message}`);
    this.lastDesired = desired;
    this.lastApplyClean = res.failed.length === 0 && this.quarantine.size === 0;
    return res;
  }

  /** The datapath's ProxyListeners map: the proxy manager writes a port while its listener is open. */
  proxyListenerMap(): ProxyListenerMap {
    const m = this.obj.typedMap(MAP_SPECS.ProxyListeners);
    return {
      set: (port, direction) => m.update(port, { direction: direction === "egress" ? C.POLICY_EGRESS : C.POLICY_INGRESS }),
      delete: (port) => void m.delete(port),
      ports: () => [...m.entries()].map(([k]) => k),
    };
  }

  /**
   * The security identity of an address (IPv4 or IPv6) as this agent wrote it into the ipcache map (the
   * kernel's longest-prefix match, the same lookup the programs do): pod, CIDR or learned-FQDN identity;
   * world when nothing covers it.
   */
  identityOf(ip: string): number {
    if (!parseIp(ip)) return C.ID_WORLD;
    const v = this.obj.typedMap(MAP_SPECS.Ipcache).lookup(ipcacheKey(ip));
    return v?.secIdentity ?? C.ID_WORLD;
  }

  /** Current contents of a managed map, decoded (for tests and `ciliate agent` status). */
  mapContents(name: ManagedMap): MapContents {
    return readContents(this.rawMap(name));
  }

  /* -------------------------------------------------------------------------------------------- */
  /* Endpoints (CNI). */

  /**
   * CNI ADD. A second ADD for the same container and interface answers with the existing endpoint (the
   * runtime may retry after a timeout); for the same container with another namespace it is an error.
   */
  addEndpoint(req: { containerId: string; netns: string; ifname: string; pod: string }): EndpointRecord {
    if (!req.containerId) throw new AgentError("BAD_REQUEST", "CNI_CONTAINERID is empty", 4);
    if (!req.netns) throw new AgentError("BAD_REQUEST", "CNI_NETNS is empty", 4);
    if (!/^[^/\s]+\/[^/\s]+$/.test(req.pod)) throw new AgentError("BAD_REQUEST", `pod must be namespace/name, got ${JSON.stringify(req.pod)} (set K8S_POD_NAMESPACE and K8S_POD_NAME in CNI_ARGS)`, 4);
    // Every name is checked before it can reach an `ip` command line, a /proc/sys path or the state file.
    const problem = endpointNamesProblem(req);
    if (problem) throw new AgentError("BAD_REQUEST", problem, 4);
    const existing = this.endpoints.get(req.containerId);
    if (existing) {
      if (existing.netns === req.netns && existing.ifname === req.ifname && checkEndpointLink({ ...existing }).length === 0) return existing;
      throw new AgentError("ENDPOINT_EXISTS", `container ${req.containerId} already has an endpoint (${existing.ifname} in ${existing.netns}); DEL it first`, 4);
    }
    const ip = this.ipam.allocate(req.containerId);
    const hostIfname = hostIfnameFor(req.containerId);
    let rec: EndpointRecord;
    try {
      const ip6 = this.ipam6?.allocate(req.containerId);
      // Behind the overlay both ends get the device MTU less the encapsulation (Cilium pkg/mtu).
      const link = createEndpointLink({ hostIfname, netns: req.netns, ifname: req.ifname, ip, ip6, mtu: this.overlay?.podMtu });
      rec = { containerId: req.containerId, ifname: req.ifname, netns: req.netns, pod: req.pod, ip, ...(ip6 ? { ip6 } : {}), epId: this.nextEpId++, hostIfname, hostIfindex: link.hostIfindex, hostMac: link.hostMac, podMac: link.podMac };
      this.endpoints.set(rec.containerId, rec);
      // The maps first (the endpoint entry comes last, O2), then the programs: until the endpoint is in the
      // maps, from-endpoint would drop the pod's packets as an unknown source.
      this.reconcile(`endpoint ${req.pod} added`);
      this.attach(rec);
    } catch (e) {
      this.endpoints.delete(req.containerId);
      deleteEndpointLink(hostIfname);
      this.releaseAddresses(req.containerId);
      this.saveState();
      throw e instanceof AgentError ? e : new AgentError("ENDPOINT_FAILED", (e as Error).message, 999);
    }
    this.saveState();
    this.events.onEndpoints?.(this.endpoints.size);
    return rec;
  }

  /** CNI DEL: idempotent; an unknown container is not an error. */
  deleteEndpoint(req: { containerId: string }): boolean {
    const ep = this.endpoints.get(req.containerId);
    if (!ep) {
      this.releaseAddresses(req.containerId);
      return false;
    }
    this.endpoints.delete(req.containerId);
    deleteEndpointLink(ep.hostIfname);
    this.releaseAddresses(ep.containerId);
    this.saveState();
    this.reconcile(`endpoint ${ep.pod} deleted`);
    this.events.onEndpoints?.(this.endpoints.size);
    return true;
  }

  /** Returns a container's addresses of both families to IPAM. */
  private releaseAddresses(containerId: string): void {
    this.ipam.release(containerId);
    this.ipam6?.release(containerId);
  }

  /** CNI CHECK: the problems found (empty = fine). Throws when the container is unknown. */
  checkEndpoint(req: { containerId: string }): string[] {
    const ep = this.endpoints.get(req.containerId);
    if (!ep) throw new AgentError("UNKNOWN_CONTAINER", `no endpoint for container ${req.containerId}`, 3);
    return checkEndpointLink({ ...ep });
  }

  /** The CNI result for an endpoint (spec 1.0.0). */
  cniResult(ep: EndpointRecord, cniVersion = "1.0.0"): Record<string, unknown> {
    return {
      cniVersion,
      interfaces: [
        { name: ep.hostIfname, mac: ep.hostMac },
        { name: ep.ifname, mac: ep.podMac, sandbox: ep.netns },
      ],
      ips: [{ address: `${ep.ip}/32`, gateway: POD_GATEWAY, interface: 1 }, ...(ep.ip6 ? [{ address: `${ep.ip6}/128`, gateway: POD_GATEWAY6, interface: 1 }] : [])],
      routes: [{ dst: "0.0.0.0/0", gw: POD_GATEWAY }, ...(ep.ip6 ? [{ dst: "::/0", gw: POD_GATEWAY6 }] : [])],
      dns: {},
    };
  }

  /** Releases fds. Programs stay attached and maps stay pinned (restart keeps the datapath running). */
  close(): void {
    clearTimeout(this.fqdnTimer);
    clearTimeout(this.retryTimer);
    clearTimeout(this.identityTimer);
    this.xdpObj?.close();
    this.obj.close();
  }
}

/** Loads a generated object with the agent's pin directory; `sharedEvents` also pins the Events ring
 * buffer there (it is not pinned by name), for a second object that must write into the same one. */
function loadObject(path: string, pinRoot: string, sharedEvents: boolean): BpfObject {
  const obj = BpfObject.open(path, { pinRoot });
  try {
    if (sharedEvents) obj.setPinPath(MAP_SPECS.Events.bpfName, join(pinRoot, MAP_SPECS.Events.bpfName));
    obj.load();
  } catch (e) {
    obj.close();
    throw e;
  }
  return obj;
}
