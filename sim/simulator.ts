/*
 * The packet-level simulator: one datapath instance per node (WASM by default, or the JS build), its maps
 * written with its desired state (node/desired.ts) as a Cilium agent on that node would, a virtual clock, and traffic played packet
 * by packet through the core's entry points:
 *
 *   pod → anything:   fromEndpoint on the sender's node (service DNAT, conntrack, egress policy);
 *   outside / host →  fromNetwork on the receiving node when the address is a service frontend (NodePort,
 *                     LoadBalancer, external IP, ClusterIP from the host);
 *   → pod:            toEndpoint on the receiver's node, with the sender's identity carried as the VXLAN
 *                     VNI carries it between nodes (to-overlay / from-overlay events), or 0 so the
 *                     receiver looks the source address up in its ipcache (traffic from outside).
 *
 * TCP is played as SYN, SYN-ACK, ACK, a request (the HTTP request when given) and a response, FIN/ACK in
 * both directions and a last ACK; UDP and SCTP as request and response; ICMP as echo request and reply.
 * The first drop ends the flow. When a policy entry redirects to the L7 proxy, the flow's L7 request (HTTP,
 * Kafka, or a TLS ClientHello) is judged by policy/'s rules of that proxy port, the implementation the
 * node's proxies use (a denial is an L7 REQUEST DROPPED, then the proxy's answer: an HTTP 403, a Kafka
 * TOPIC_AUTHORIZATION_FAILED response, or a closed TLS connection, as Hubble shows them); the proxy's own
 * connection is modelled as the same packet continuing.
 * A DNS query (a flow with `dns`) redirected to the DNS proxy is judged by policy/'s rules.dns; a denied
 * query is answered REFUSED by the proxy, an allowed one goes on to the resolver, and the answer's
 * addresses are learned into the FQDN cache before the answer reaches the client: the policy is
 * recompiled with the cache's state and every node's ipcache and policy map rewritten, so a later flow
 * to a learned address meets the new toFQDNs entries. Cache entries expire with the virtual clock.
 * Every verdict comes from the core's verdict and trace record; policy/ is only asked which rules stand
 * behind a cookie and what the proxy does with a request.
 */
import { MAP_SPECS, type MapSpec, type TraceRecord } from "../host/codecs.gen.ts";
import * as C from "../host/constants.gen.ts";
import { clearMap, writeAll, type Datapath, type EntryPoint, type RunResult, type TunnelKey } from "../host/datapath.ts";
import { tunnelPort, type TunnelProtocol } from "../host/tunnel.ts";
import { dropReasonHubble, dropReasonText } from "../host/drop-reasons.gen.ts";
import { describe as describeRules, DNS_RCODE_NOERROR, encodeEntries, evaluateDns, evaluateL7, FqdnCache, INIT_ENDPOINT, identityOfIp, kafkaApiKeyName, nodeIdentityOn, parseCidr, toFqdn, type CompiledPolicy, type DnsRule, type FqdnState, type L7Verdict, type Provenance } from "../policy/index.ts";
import { canonicalIp, type DnsSpec, type EndpointRefSpec, type FlowProtocol, type FlowSpec, type HttpSpec, type KafkaSpec, type SimCluster, type SimPod, type SimService, type SimNode, type TlsSpec } from "../node/cluster.ts";
import { createSimDatapath, type SimEngineName } from "./engines.ts";
import { AbiDatapath } from "../host/abi-datapath.ts";
import { SimError } from "../node/errors.ts";
import {
  EVENT_DROP,
  EVENT_L7,
  EVENT_POLICY_VERDICT,
  EVENT_TRACE,
  MATCH_TYPE_NAMES,
  OBS_POINT_NAMES,
  tcpFlagNames,
  type FlowEndpoint,
  type FlowEvent,
  type PolicyRef,
  type Verdict,
} from "../host/flows.ts";
import { DESIRED_MAPS, desiredMaps, positionalNumbering, type DesiredMap, type DesiredMaps, type DesiredOptions } from "../node/desired.ts";
import { wasmMaglevBuilder } from "../host/wasm-core.ts";
import { protoNumber } from "../host/protocols.ts";
import { formatIp, hostPort } from "../host/ip.ts";
import { ipcacheKey } from "../host/ipcache.ts";
import { isRemoteNodeIdentity } from "../host/identity-scopes.ts";
import { ENTITY_OFFSETS, entityIp, KUBE_APISERVER_IP, Places, WORLD_IP, type Place } from "./places.ts";
import { compileClusterPolicy } from "./policy.ts";
import { buildFrame, decodeFrame, TCP_FLAGS, type FrameSpec } from "./packets.ts";
import { buildLbModel, type Frontend, type LbModel } from "../node/services.ts";
import { addrBytes16 } from "../host/ip.ts";

/** Virtual clock origin (shown in flow times) and the core's monotonic seconds at that moment. */
export const CLOCK_ORIGIN_MS = Date.UTC(2026, 0, 1, 0, 0, 0);
const MONO_BASE = 1000;
export const FIRST_SOURCE_PORT = 40000;

export type { Place };
export { KUBE_APISERVER_IP, WORLD_IP };

/** One invocation of a core entry point, for `trace`. */
export interface Step {
  node: string;
  entry: EntryPoint;
  packet: string;
  reply: boolean;
  srcIdentityIn: number;
  result: { verdict: number; dropReason: number };
  trace: TraceRecord;
  output: { src: string; dst: string; sport: number; dport: number };
  /** The frame after the program ran. */
  frame: Uint8Array;
  /** The tunnel key: set by fromEndpoint (encapsulated towards another node), or carried into fromOverlay. */
  tunnel?: TunnelKey;
}

export interface DirectionOutcome {
  verdict: "allowed" | "denied";
  node: string;
  endpoint?: string;
  remoteIdentity: number;
  matchType: string;
  cookie: number;
  rules: Provenance[];
  dropReason: number;
  reason: string;
  proxyPort?: number;
}

export interface L7Outcome {
  protocol: L7Verdict["protocol"];
  verdict: "allowed" | "denied";
  /** HTTP status the client sees (200 passed on, 403 from the proxy). */
  status?: number;
  /** Kafka error code of the proxy's answer (0 passed on, 29 denied). */
  errorCode?: number;
  direction: "ingress" | "egress";
  proxyPort: number;
  reason: string;
  rule?: NonNullable<L7Verdict["rule"]> & { dns?: DnsRule };
  /** DNS: the response code the client gets (0 NOERROR, 5 REFUSED by the proxy). */
  rcode?: number;
  /** DNS: the addresses of the answer, learned into the FQDN cache. */
  learned?: string[];
}

export interface FlowResult {
  name: string;
  verdict: "allowed" | "denied";
  reason: string;
  events: FlowEvent[];
  steps: Step[];
  source: Place;
  destination: Place;
  service?: { namespace: string; name: string; frontend: string; kind: string };
  backend?: { ip: string; port: number; pod?: string };
  egress?: DirectionOutcome;
  ingress?: DirectionOutcome;
  l7?: L7Outcome;
  dropReason: number;
  srcIdentity: number;
  dstIdentity: number;
}

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
  masquerade?: { nativeRoutingCidr?: string };
}

/** ifindex the simulated nodes give their tunnel device (ConfigValue.tunnelIfindex; any non-zero value). */
const SIM_TUNNEL_IFINDEX = 2;

interface NodeRuntime {
  node: SimNode;
  dp: Datapath;
  /** ns/name → endpoint id of the pods with an endpoint on this node. */
  epIds: Map<string, number>;
}

interface Ctx {
  result: FlowResult;
  flowName: string;
  http?: HttpSpec;
  kafka?: KafkaSpec;
  tls?: TlsSpec;
  dns?: DnsSpec;
  stopped: boolean;
  /** The node that SNATed this connection — its fromNetwork towards a remote backend, or its toNetwork
   * masquerading a pod's flow to the outside — where its replies go back. */
  snatNode?: string;
  /** Proxy port and direction of an L7 redirect seen on the way. */
  redirect?: { port: number; direction: "ingress" | "egress"; remoteIdentity: number; node: string };
  l7Denied: boolean;
}

const POLICY_DROPS = new Set([C.DROP_POLICY, C.DROP_POLICY_DENY, 189]);

export class Simulation {
  readonly nodes = new Map<string, NodeRuntime>();
  readonly lb: LbModel;
  /** Virtual time in milliseconds since CLOCK_ORIGIN_MS. */
  clockMs = 0;
  private nextPort = FIRST_SOURCE_PORT;
  /** Resolution of endpoint references and addresses to places. */
  readonly places: Places;
  /** Address of each node's reserved:init endpoint → node. */
  private readonly initByIp = new Map<string, string>();
  /** What the (modelled) DNS proxies learned; the policy is compiled from its state. */
  readonly fqdn: FqdnCache;
  private readonly recompile: (fqdn: FqdnState) => CompiledPolicy;

  private constructor(
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
    this.masquerade = opts.masquerade !== undefined;
    this.desiredOptions = {
      ...(this.tunnel ? { tunnel: { protocol: this.tunnel, ifindex: SIM_TUNNEL_IFINDEX } } : {}),
      ...(opts.masquerade ? { masquerade: opts.masquerade } : {}),
    };
  }

  /** The overlay protocol between the nodes, undefined when disabled. */
  readonly tunnel: TunnelProtocol | undefined;
  /** Whether the nodes masquerade pod traffic leaving the cluster. */
  readonly masquerade: boolean;
  private readonly desiredOptions: DesiredOptions;

  private nodeIp(name: string): string {
    return this.cluster.nodes.find((n) => n.name === name)!.ip;
  }

  /** What a collect-metadata tunnel device does with an encapsulated packet: the key the receiving
   * node's fromOverlay reads, with the sender's node as the remote end. */
  private received(fromNode: string, sent: TunnelKey): TunnelKey {
    return { remote: this.nodeIp(fromNode), tunnelId: sent.tunnelId };
  }

  /** Hubble's tunnel record of an encapsulated hop (flow.proto Tunnel), with the VNI (not a Hubble field). */
  private tunnelView(fromNode: string, sent: TunnelKey): NonNullable<FlowEvent["tunnel"]> {
    const port = tunnelPort(this.tunnel ?? "vxlan");
    return {
      protocol: this.tunnel === "geneve" ? "GENEVE" : "VXLAN",
      IP: { source: this.nodeIp(fromNode), destination: sent.remote, ipVersion: sent.remote.includes(":") ? "IPv6" : "IPv4" },
      l4: { UDP: { source_port: port, destination_port: port } },
      vni: sent.tunnelId,
    };
  }

  static async create(cluster: SimCluster, policy: CompiledPolicy, opts: SimulationOptions = {}): Promise<Simulation> {
    const sim = new Simulation(cluster, policy, opts.engine ?? "wasm", opts);
    const shared: EncodedMaps = {};
    for (const n of cluster.nodes) {
      const numbering = positionalNumbering(cluster, n.name, sim.lb);
      // Maglev tables first (core's builder in a small shared instance), so the engine's maps can be sized
      // to what this node holds.
      const desired = desiredMaps(cluster, policy, sim.lb, n.name, numbering, wasmMaglevBuilder, sim.desiredOptions);
      const dp = opts.createDatapath ? await opts.createDatapath() : await createSimDatapath(sim.engine, { capacities: capacitiesFor(desired, 1 + ENTITY_OFFSETS.length * cluster.nodes.length) });
      writeDesired(dp, desired, shared);
      sim.extraIpcache(n, dp);
      sim.initEndpoint(n, dp);
      sim.nodes.set(n.name, { node: n, dp, epIds: numbering.epIds });
    }
    return sim;
  }

  close(): void {
    for (const n of this.nodes.values()) n.dp.close();
  }

  /** Addresses of reserved entities (health, kube-apiserver …) so the ipcache answers with their identity. */
  private extraIpcache(n: SimNode, dp: Datapath): void {
    const m = dp.map(MAP_SPECS.Ipcache);
    const key = (ip: string) => ipcacheKey(ip);
    m.update(key(KUBE_APISERVER_IP), { secIdentity: C.ID_KUBE_APISERVER });
    for (const other of this.cluster.nodes) {
      for (const [off, id] of ENTITY_OFFSETS) m.update(key(entityIp(other, off)), { secIdentity: id });
    }
  }

  /**
   * The reserved:init entity is an endpoint (labels not known yet), so it has its own policy, enforced in
   * both directions (policy/compile.ts), installed like a pod's at its address on every node.
   */
  private initEndpoint(n: SimNode, dp: Datapath): void {
    const ep = this.policy.endpoints.get(INIT_ENDPOINT);
    const ip = entityIp(n, ENTITY_OFFSETS.find(([, id]) => id === C.ID_INIT)![0]);
    if (!ep || ip.includes(":")) return;
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
  private fqdnNow(): number {
    return Math.floor(this.clockMs / 1000);
  }

  /** Recompiles the policy from the FQDN cache's current state and rewrites every node's maps. */
  private refreshFqdnPolicy(): void {
    this.policy = this.recompile(this.fqdn.state(this.fqdnNow()));
    // The maps that depend on the policy are rewritten from the desired state (node/desired.ts): endpoints
    // and services do not depend on the FQDN cache, CIDR identities and policy entries do.
    for (const n of this.nodes.values()) {
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

  /* ------------------------------------------------------------------------------------------------ */
  /* Flow events. */

  private endpointOf(ip: string, identity: number): FlowEndpoint {
    const pod = this.places.podByIp.get(ip);
    const labels = (this.policy.identities.byId.get(identity)?.labels ?? []).map((l) => `${l.source}:${l.key}${l.value !== "" || l.source === "k8s" ? `=${l.value}` : ""}`);
    if (pod) {
      const epId = this.nodes.get(pod.node)?.epIds.get(pod.key);
      return { ID: epId, identity, namespace: pod.namespace, labels, pod_name: pod.name };
    }
    const f = this.lb.frontends.find((x) => x.ip === ip && x.kind !== "NodePort");
    return { identity, labels, ip, ...(f ? { service: `${f.svc.namespace}/${f.svc.name}` } : {}) };
  }

  private l4Of(d: { proto: number; sport: number; dport: number; tcpFlags: number; icmpType: number; icmpCode: number }): Record<string, unknown> {
    if (d.proto === 6) {
      const flags: Record<string, boolean> = {};
      for (const f of tcpFlagNames(d.tcpFlags)) flags[f] = true;
      return { TCP: { source_port: d.sport, destination_port: d.dport, flags } };
    }
    if (d.proto === 17) return { UDP: { source_port: d.sport, destination_port: d.dport } };
    if (d.proto === 132) return { SCTP: { source_port: d.sport, destination_port: d.dport } };
    if (d.proto === 1) return { ICMPv4: { type: d.icmpType, code: d.icmpCode } };
    if (d.proto === 58) return { ICMPv6: { type: d.icmpType, code: d.icmpCode } };
    return {};
  }

  private summaryOf(d: { proto: number; tcpFlags: number; icmpType: number }): string {
    if (d.proto === 6) return `TCP Flags: ${tcpFlagNames(d.tcpFlags).join(", ")}`;
    if (d.proto === 17) return "UDP";
    if (d.proto === 132) return "SCTP";
    if (d.proto === 112) return "VRRP";
    if (d.proto === 2) return "IGMP";
    if (d.proto === 1) return `ICMPv4 ${d.icmpType === 8 ? "EchoRequest" : d.icmpType === 0 ? "EchoReply" : `type ${d.icmpType}`}`;
    if (d.proto === 58) return `ICMPv6 ${d.icmpType === 128 ? "EchoRequest" : d.icmpType === 129 ? "EchoReply" : `type ${d.icmpType}`}`;
    return `protocol ${d.proto}`;
  }

  policyRefs(cookie: number): PolicyRef[] {
    return (this.policy.provenance.get(cookie) ?? []).map((p) => ({ kind: p.kind, name: p.name, namespace: p.namespace, rule_index: p.ruleIndex, element: p.element }));
  }

  private event(
    ctx: Ctx,
    node: string,
    frame: Uint8Array,
    ids: { src: number; dst: number },
    o: { event: string; verdict: Verdict; type: number; direction?: FlowEvent["traffic_direction"]; reply: boolean; obs?: string; extra?: Partial<FlowEvent> },
  ): FlowEvent {
    const d = decodeFrame(frame)!;
    // Identities the program did not report are those the node's ipcache gives the addresses.
    if (!ids.src) ids = { ...ids, src: this.identityOfIp(d.src, node) };
    if (!ids.dst) ids = { ...ids, dst: this.identityOfIp(d.dst, node) };
    const ev: FlowEvent = {
      time: new Date(CLOCK_ORIGIN_MS + this.clockMs).toISOString(),
      verdict: o.verdict,
      IP: { source: d.src, destination: d.dst, ipVersion: d.family === 4 ? "IPv4" : "IPv6" },
      l4: this.l4Of(d),
      source: this.endpointOf(d.src, ids.src),
      destination: this.endpointOf(d.dst, ids.dst),
      Type: "L3_L4",
      node_name: node,
      event_type: { type: o.type },
      traffic_direction: o.direction ?? "TRAFFIC_DIRECTION_UNKNOWN",
      is_reply: o.reply,
      Summary: this.summaryOf(d),
      event: o.event,
      src_port: d.sport,
      dst_port: d.dport,
      flow_name: ctx.flowName,
    };
    if (o.obs) ev.trace_observation_point = OBS_POINT_NAMES[o.obs];
    const f = ctx.result.service;
    if (f) ev.destination_service = { name: f.name, namespace: f.namespace };
    Object.assign(ev, o.extra ?? {});
    ctx.result.events.push(ev);
    return ev;
  }

  /* ------------------------------------------------------------------------------------------------ */
  /* Running packets. */

  private run(ctx: Ctx | undefined, node: string, entry: EntryPoint, frame: Uint8Array, srcIdentity: number, reply: boolean, tunnel?: TunnelKey): RunResult {
    const rt = this.nodes.get(node)!;
    const r = rt.dp.run(entry, frame, { now: this.now(), srcIdentity, tunnel });
    if (ctx) {
      const d = decodeFrame(frame)!;
      const o = decodeFrame(r.output);
      ctx.result.steps.push({
        node,
        entry,
        packet: `${hostPort(d.src, d.sport)} -> ${hostPort(d.dst, d.dport)} ${this.summaryOf(d)}`,
        reply,
        srcIdentityIn: srcIdentity,
        result: { verdict: r.verdict, dropReason: r.dropReason },
        trace: r.trace,
        output: o ? { src: o.src, dst: o.dst, sport: o.sport, dport: o.dport } : { src: d.src, dst: d.dst, sport: d.sport, dport: d.dport },
        frame: r.output,
        ...(entry === "fromOverlay" ? { tunnel } : r.tunnel ? { tunnel: r.tunnel } : {}),
      });
    }
    return r;
  }

  private frontendOf(ip: string, port: number, proto: number): Frontend | undefined {
    return this.lb.frontends.find((f) => f.ip === ip && f.fport === port && protoNumber(f.protocol) === proto);
  }

  private outcome(node: string, direction: "ingress" | "egress", t: TraceRecord, r: RunResult, endpoint: string | undefined): DirectionOutcome {
    const cookie = direction === "egress" ? t.egressCookie : t.ingressCookie;
    const mt = direction === "egress" ? t.egressMatchType : t.ingressMatchType;
    const rules = this.policy.provenance.get(cookie) ?? [];
    const remote = direction === "egress" ? t.dstIdentity : t.srcIdentity;
    const dropped = r.verdict === C.CTX_ACT_DROP;
    let reason: string;
    if (dropped) {
      const text = dropReasonText(r.dropReason);
      if (r.dropReason === C.DROP_POLICY && !rules.length) reason = `${text}: ${endpoint ?? node} is selected by a policy in ${direction}, but no entry allows identity ${remote} on this port (default deny)`;
      else reason = `${text}${rules.length ? `: ${describeRules(rules)}` : ""}`;
    } else if (!rules.length) reason = "allowed";
    else if (rules.every((p) => p.kind === "derived" && p.element.startsWith("allow-any"))) reason = `no policy selects ${endpoint ?? "the endpoint"} in ${direction}: allowed`;
    else reason = `allowed by ${describeRules(rules)}`;
    if (!dropped && t.proxyPort) reason += `; redirected to the L7 proxy on port ${t.proxyPort}`;
    return {
      verdict: dropped ? "denied" : "allowed",
      node,
      endpoint,
      remoteIdentity: remote,
      matchType: MATCH_TYPE_NAMES[mt] ?? String(mt),
      cookie,
      rules,
      dropReason: dropped ? r.dropReason : 0,
      reason,
      proxyPort: t.proxyPort || undefined,
    };
  }

  /** Emits events for one entry-point result; returns false when the packet was dropped. */
  private report(ctx: Ctx, node: string, entry: EntryPoint, frame: Uint8Array, r: RunResult, reply: boolean): boolean {
    const t = r.trace;
    const ids = { src: t.srcIdentity, dst: t.dstIdentity };
    const egress = entry === "fromEndpoint";
    const toPod = entry === "toEndpoint" || entry === "fromOverlay";
    const dirName: FlowEvent["traffic_direction"] = toPod ? "INGRESS" : "EGRESS";
    const checked = egress ? (t.traceFlags & C.TRACE_F_EGRESS_CHECKED) !== 0 : toPod && (t.traceFlags & C.TRACE_F_INGRESS_CHECKED) !== 0;
    const cookie = egress ? t.egressCookie : t.ingressCookie;
    const matchType = egress ? t.egressMatchType : t.ingressMatchType;
    const dropped = r.verdict === C.CTX_ACT_DROP;
    const podKey = (ip: string) => this.places.podByIp.get(ip)?.key ?? (this.initByIp.has(ip) ? `the ${INIT_ENDPOINT} endpoint` : undefined);
    const d = decodeFrame(frame)!;
    if (!reply && entry !== "fromNetwork" && (t.ctState === C.CT_NEW || dropped)) {
      const side = egress ? "egress" : "ingress";
      const o = this.outcome(node, side, t, r, egress ? podKey(d.src) : podKey(d.dst));
      if (side === "egress") ctx.result.egress ??= o;
      else ctx.result.ingress ??= o;
    }
    if (entry === "fromEndpoint") this.event(ctx, node, frame, ids, { event: "from-endpoint", verdict: "FORWARDED", type: EVENT_TRACE, reply, obs: "from-endpoint" });
    if (entry === "fromNetwork") this.event(ctx, node, frame, ids, { event: "from-network", verdict: "FORWARDED", type: EVENT_TRACE, reply, obs: "from-network" });
    if (entry === "toNetwork" && !dropped) this.event(ctx, node, r.output, ids, { event: "to-network", verdict: "FORWARDED", type: EVENT_TRACE, reply, obs: "to-network", direction: "EGRESS" });
    if (checked && (t.ctState === C.CT_NEW || dropped) && (!dropped || POLICY_DROPS.has(r.dropReason))) {
      const refs = this.policyRefs(cookie);
      const key = `${egress ? "egress" : "ingress"}_${dropped ? "denied" : "allowed"}_by` as const;
      this.event(ctx, node, frame, ids, {
        event: `policy-verdict:${MATCH_TYPE_NAMES[matchType] ?? matchType} ${dirName}`,
        verdict: dropped ? "DROPPED" : r.verdict === C.CTX_ACT_REDIRECT ? "REDIRECTED" : "FORWARDED",
        type: EVENT_POLICY_VERDICT,
        direction: dirName,
        reply,
        extra: { policy_match_type: matchType, ...(refs.length ? { [key]: refs } : {}), ...(dropped ? { drop_reason: r.dropReason, drop_reason_desc: dropReasonHubbleName(r.dropReason) } : {}) },
      });
    }
    if (dropped) {
      this.event(ctx, node, frame, ids, {
        event: dropReasonText(r.dropReason),
        verdict: "DROPPED",
        type: EVENT_DROP,
        direction: dirName,
        reply,
        extra: { drop_reason: r.dropReason, drop_reason_desc: dropReasonHubbleName(r.dropReason) },
      });
      ctx.result.dropReason = r.dropReason;
      ctx.result.verdict = "denied";
      ctx.stopped = true;
      return false;
    }
    if (r.verdict === C.CTX_ACT_REDIRECT) {
      const outFrame = r.output;
      this.event(ctx, node, outFrame, ids, { event: "to-proxy", verdict: "FORWARDED", type: EVENT_TRACE, direction: dirName, reply, obs: "to-proxy", extra: { proxy_port: t.proxyPort } });
      ctx.redirect ??= { port: t.proxyPort, direction: egress ? "egress" : "ingress", remoteIdentity: egress ? t.dstIdentity : t.srcIdentity, node };
    }
    return true;
  }

  /** Hubble's view of the flow's L7 request or response (flow.proto Layer7) and its Summary. */
  private l7View(ctx: Ctx, type: "REQUEST" | "RESPONSE", host: string, v: { status?: number; errorCode?: number }): { l7: NonNullable<FlowEvent["l7"]>; summary: string; event: string } {
    if (ctx.http) {
      const url = `http://${ctx.http.host ?? host}${ctx.http.path}`;
      const http = { ...(type === "RESPONSE" ? { code: v.status ?? 0 } : {}), method: ctx.http.method, url, protocol: "HTTP/1.1" };
      const summary = type === "REQUEST" ? `HTTP/1.1 ${ctx.http.method} ${url}` : `HTTP/1.1 ${v.status} 0ms (${ctx.http.method} ${url})`;
      return { l7: { type, http }, summary, event: `http-${type.toLowerCase()}` };
    }
    if (ctx.kafka) {
      const k = ctx.kafka;
      const apiKey = kafkaApiKeyName(k.apiKey);
      const topic = k.topics.join(",");
      const kafka = { error_code: v.errorCode ?? 0, api_version: k.apiVersion, api_key: apiKey, correlation_id: 1, topic };
      // As Cilium's Hubble parser words Kafka summaries (pkg/hubble/parser/seven).
      const summary = type === "REQUEST" ? `Kafka request ${apiKey} correlation id 1 topic '${topic}'` : `Kafka response ${apiKey} correlation id 1 topic '${topic}' return code ${v.errorCode ?? 0}`;
      return { l7: { type, kafka }, summary, event: `kafka-${type.toLowerCase()}` };
    }
    // Hubble has no TLS record: ciliate shows the ClientHello's server name in the same place.
    const sni = ctx.tls?.serverName;
    return { l7: { type, tls: { server_name: sni ?? "" } }, summary: `TLS ClientHello ${sni ? `server name ${sni}` : "without server name"}`, event: "tls-client-hello" };
  }

  /** Judges the flow's L7 request at the proxy; returns false when the proxy refuses it. */
  private proxyRequest(ctx: Ctx, frame: Uint8Array, ids: { src: number; dst: number }): boolean {
    const red = ctx.redirect!;
    const v = evaluateL7(this.policy, { proxyPort: red.port, remoteIdentity: red.remoteIdentity }, { http: ctx.http, kafka: ctx.kafka, tls: ctx.tls });
    if (!v) return true;
    const d = decodeFrame(frame)!;
    const host = ctx.result.service ? `${ctx.result.service.name}.${ctx.result.service.namespace}.svc.cluster.local` : d.dst;
    ctx.result.l7 = { protocol: v.protocol, verdict: v.allowed ? "allowed" : "denied", status: v.status, errorCode: v.errorCode, direction: red.direction, proxyPort: red.port, reason: v.reason, rule: v.rule };
    const dir: FlowEvent["traffic_direction"] = red.direction === "ingress" ? "INGRESS" : "EGRESS";
    const refs = v.rule ? [{ kind: v.rule.provenance.kind, name: v.rule.provenance.name, namespace: v.rule.provenance.namespace, rule_index: v.rule.provenance.ruleIndex, element: v.rule.provenance.element }] : [];
    const req = this.l7View(ctx, "REQUEST", host, v);
    this.event(ctx, red.node, frame, ids, {
      event: req.event,
      verdict: v.allowed ? "FORWARDED" : "DROPPED",
      type: EVENT_L7,
      direction: dir,
      reply: false,
      extra: { Type: "L7", l7: req.l7, Summary: req.summary, proxy_port: red.port, ...(v.allowed && refs.length ? { [`${red.direction}_allowed_by`]: refs } : {}) },
    });
    if (!v.allowed) {
      // The proxy answers in the protocol's own way (HTTP 403, Kafka error response); TLS gets a reset,
      // and so does a request the proxy could not parse (another protocol than the listener's).
      if ((v.protocol === "http" && ctx.http) || (v.protocol === "kafka" && ctx.kafka)) {
        const back = buildFrame({ src: d.dst, dst: d.src, proto: "TCP", sport: d.dport, dport: d.sport, tcpFlags: TCP_FLAGS.PSH | TCP_FLAGS.ACK });
        const resp = this.l7View(ctx, "RESPONSE", host, v);
        this.event(ctx, red.node, back, { src: ids.dst, dst: ids.src }, {
          event: resp.event,
          verdict: "FORWARDED",
          type: EVENT_L7,
          direction: dir,
          reply: true,
          extra: { Type: "L7", l7: resp.l7, Summary: resp.summary, proxy_port: red.port },
        });
      }
      ctx.result.verdict = "denied";
      ctx.l7Denied = true;
      ctx.stopped = true;
      return false;
    }
    return true;
  }

  private l7Response(ctx: Ctx, frame: Uint8Array, ids: { src: number; dst: number }): void {
    const red = ctx.redirect!;
    if (!ctx.result.l7 || ctx.result.l7.protocol === "tls" || ctx.result.l7.protocol === "dns") return;
    const d = decodeFrame(frame)!;
    const host = ctx.result.service ? `${ctx.result.service.name}.${ctx.result.service.namespace}.svc.cluster.local` : d.src;
    const resp = this.l7View(ctx, "RESPONSE", host, { status: 200, errorCode: 0 });
    this.event(ctx, red.node, frame, ids, {
      event: resp.event,
      verdict: "FORWARDED",
      type: EVENT_L7,
      direction: red.direction === "ingress" ? "INGRESS" : "EGRESS",
      reply: true,
      extra: { Type: "L7", l7: resp.l7, Summary: resp.summary, proxy_port: red.port },
    });
  }

  /**
   * The DNS proxy's decision on a query (cilium/cilium pkg/fqdn/dnsproxy: an allowed query is forwarded to
   * the original destination, a denied one is answered REFUSED by the proxy itself and never reaches the
   * resolver). Returns false when the query was refused.
   */
  private proxyDnsQuery(ctx: Ctx, frame: Uint8Array, ids: { src: number; dst: number }): boolean {
    const red = ctx.redirect!;
    const dns = ctx.dns!;
    const v = evaluateDns(this.policy, { proxyPort: red.port, remoteIdentity: red.remoteIdentity }, dns.query);
    const q = toFqdn(dns.query);
    const qtypes = dnsQtypes(dns);
    const rule = v.rule && { provenance: v.rule.provenance, index: v.rule.index, dns: v.rule.rule };
    ctx.result.l7 = { verdict: v.allowed ? "allowed" : "denied", rcode: v.rcode, protocol: "dns", direction: red.direction, proxyPort: red.port, reason: v.reason, rule };
    const refs = v.rule ? [{ kind: v.rule.provenance.kind, name: v.rule.provenance.name, namespace: v.rule.provenance.namespace, rule_index: v.rule.provenance.ruleIndex, element: v.rule.provenance.element }] : [];
    this.event(ctx, red.node, frame, ids, {
      event: "dns-request proxy",
      verdict: v.allowed ? "FORWARDED" : "DROPPED",
      type: EVENT_L7,
      direction: "EGRESS",
      reply: false,
      extra: {
        Type: "L7",
        l7: { type: "REQUEST", dns: { query: q, qtypes, ...(v.allowed ? {} : { rcode: v.rcode }) } },
        Summary: `DNS Query ${q} ${qtypes.join(",")}`,
        proxy_port: red.port,
        ...(v.allowed && refs.length ? { egress_allowed_by: refs } : {}),
      },
    });
    if (!v.allowed) {
      ctx.result.verdict = "denied";
      ctx.l7Denied = true;
      ctx.stopped = true;
      return false;
    }
    return true;
  }

  /**
   * Bytes that are not a DNS message, sent to a DNS proxy port: the node's DNS proxy cannot parse them and
   * drops them (agent/proxy/dns-udp.ts; over TCP it never sees a whole message and answers nothing), so the
   * flow is denied here too — a flow to a DNS port needs `dns: {query}` to be judged as a query.
   */
  private proxyDropsNonDns(ctx: Ctx): void {
    const red = ctx.redirect!;
    ctx.result.l7 = { verdict: "denied", protocol: "dns", direction: red.direction, proxyPort: red.port, reason: "not a DNS query: the DNS proxy drops it (give the flow dns: {query: …})" };
    ctx.result.verdict = "denied";
    ctx.l7Denied = true;
    ctx.stopped = true;
  }

  /** The resolver's answer passes the DNS proxy: its addresses are learned (policy rewritten) before the client sees it. */
  private dnsResponse(ctx: Ctx, frame: Uint8Array, ids: { src: number; dst: number }): void {
    const red = ctx.redirect!;
    const dns = ctx.dns!;
    const q = toFqdn(dns.query);
    const learned = this.fqdn.learn(q, dns.answers, dns.ttl, this.fqdnNow());
    if (learned.changed) this.refreshFqdnPolicy();
    if (ctx.result.l7) ctx.result.l7.learned = [...dns.answers];
    const rrtypes = [...new Set(dns.answers.map((a) => (a.includes(":") ? "AAAA" : "A")))];
    this.event(ctx, red.node, frame, ids, {
      event: "dns-response proxy",
      verdict: "FORWARDED",
      type: EVENT_L7,
      direction: "EGRESS",
      reply: true,
      extra: {
        Type: "L7",
        l7: { type: "RESPONSE", dns: { query: q, ips: [...dns.answers], ttl: dns.ttl, rcode: DNS_RCODE_NOERROR, qtypes: dnsQtypes(dns), rrtypes } },
        Summary: `DNS Answer "${dns.answers.join(",")}" TTL: ${dns.ttl} (Proxy ${q} ${dnsQtypes(dns).join(",")})`,
        proxy_port: red.port,
      },
    });
  }

  /**
   * Sends one packet from `sender` (addressed as in `spec`) through the datapath to wherever it ends.
   * Returns the frame as delivered, or undefined when it was dropped.
   */
  private sendPacket(ctx: Ctx, sender: Place, spec: FrameSpec, reply: boolean, httpData: "request" | "response" | undefined): Uint8Array | undefined {
    let frame = buildFrame(spec);
    let fromNode: string | undefined = sender.node;
    let carried = sender.kind === "pod" ? this.identityOfPod(sender.pod!) : (sender.carry ?? 0);
    const senderIdentity = carried;
    // The tunnel key the sender's fromEndpoint set: the packet crosses to another node encapsulated.
    let sent: TunnelKey | undefined;
    const initSender = sender.kind === "external" ? this.initByIp.get(sender.ip) : undefined;
    if (initSender) {
      // The reserved:init endpoint sends through its own endpoint program: its egress policy applies.
      const r = this.run(ctx, initSender, "fromEndpoint", frame, 0, reply);
      if (!this.report(ctx, initSender, "fromEndpoint", frame, r, reply)) return undefined;
      frame = r.output;
      fromNode = initSender;
    } else if (sender.kind === "pod") {
      const r = this.run(ctx, sender.node!, "fromEndpoint", frame, 0, reply);
      if (!this.report(ctx, sender.node!, "fromEndpoint", frame, r, reply)) return undefined;
      if (httpData === "response" && ctx.redirect && !ctx.l7Denied) this.l7Response(ctx, frame, { src: r.trace.srcIdentity, dst: r.trace.dstIdentity });
      if (httpData === "response" && ctx.dns && ctx.redirect && !ctx.l7Denied) this.dnsResponse(ctx, frame, { src: r.trace.srcIdentity, dst: r.trace.dstIdentity });
      this.noteService(ctx, r.trace, reply);
      frame = r.output;
      sent = r.tunnel;
      if (r.verdict === C.CTX_ACT_REDIRECT && httpData === "request" && ctx.redirect?.direction === "egress") {
        if (!this.proxyRequest(ctx, frame, { src: r.trace.srcIdentity, dst: r.trace.dstIdentity })) return undefined;
      }
      if (r.verdict === C.CTX_ACT_REDIRECT && httpData === "request" && ctx.dns && ctx.redirect?.direction === "egress") {
        if (!this.proxyDnsQuery(ctx, frame, { src: r.trace.srcIdentity, dst: r.trace.dstIdentity })) return undefined;
      }
      if (r.verdict === C.CTX_ACT_REDIRECT && httpData === "request" && !ctx.dns && ctx.redirect && this.policy.proxies.get(ctx.redirect.port)?.protocol === "dns") {
        this.proxyDropsNonDns(ctx);
        return undefined;
      }
    } else {
      // A resolver outside the cluster answers: the proxy sees (and learns from) the answer first.
      if (httpData === "response" && ctx.dns && ctx.redirect && !ctx.l7Denied) this.dnsResponse(ctx, frame, { src: 0, dst: 0 });
      const d = decodeFrame(frame)!;
      const f = this.frontendOf(d.dst, d.dport, d.proto);
      if (f) {
        const ingressNode = f.kind === "NodePort" ? this.places.nodeByIp.get(f.ip)!.name : (sender.kind === "host" ? sender.node! : this.cluster.nodes[0]!.name);
        const r = this.run(ctx, ingressNode, "fromNetwork", frame, 0, reply);
        if (!this.report(ctx, ingressNode, "fromNetwork", frame, r, reply)) return undefined;
        this.noteService(ctx, r.trace, reply);
        frame = r.output;
        fromNode = ingressNode;
        if (sender.kind === "external" && !carried) carried = r.trace.srcIdentity;
        if (!reply && r.trace.traceFlags & C.TRACE_F_SNAT) ctx.snatNode = ingressNode;
      }
    }
    let out = decodeFrame(frame)!;
    let target = this.placeOfIp(out.dst);
    // A pod's packet leaving the cluster passes its node's device, whose toNetwork masquerades it
    // (core/nat.ts M1–M6); the reply comes back to that node (below).
    if (this.masquerade && sender.kind === "pod" && fromNode && target.kind === "external" && !this.initByIp.has(out.dst)) {
      const r = this.run(ctx, fromNode, "toNetwork", frame, 0, reply);
      if (!this.report(ctx, fromNode, "toNetwork", frame, r, reply)) return undefined;
      if (r.trace.traceFlags & C.TRACE_F_SNAT && !reply) ctx.snatNode = fromNode;
      frame = r.output;
      out = decodeFrame(frame)!;
    }
    // The reply of a NodePort flow SNATed to this backend goes back to the node that translated it, whose
    // fromNetwork restores the client address and the frontend (pipeline R2).
    if (reply && ctx.snatNode && target.kind === "host" && target.node === ctx.snatNode) {
      const back = ctx.snatNode;
      const ids0 = { src: senderIdentity, dst: C.ID_WORLD };
      if (fromNode && fromNode !== back) {
        this.event(ctx, fromNode, frame, ids0, { event: "to-overlay", verdict: "FORWARDED", type: EVENT_TRACE, reply, obs: "to-overlay" });
        this.advance(1);
        this.event(ctx, back, frame, ids0, { event: "from-overlay", verdict: "FORWARDED", type: EVENT_TRACE, reply, obs: "from-overlay" });
      }
      const r = this.run(ctx, back, "fromNetwork", frame, 0, reply);
      if (!this.report(ctx, back, "fromNetwork", frame, r, reply)) return undefined;
      frame = r.output;
      fromNode = back;
      out = decodeFrame(frame)!;
      target = this.placeOfIp(out.dst);
    }
    // The reserved:init endpoint is delivered to like a pod: its ingress policy applies.
    const initNode = target.kind === "external" ? this.initByIp.get(out.dst) : undefined;
    if (target.kind !== "pod" && !initNode) {
      const obs = target.kind === "host" ? (target.node === fromNode ? "to-host" : "to-overlay") : "to-stack";
      this.event(ctx, fromNode ?? target.node ?? this.cluster.nodes[0]!.name, frame, { src: senderIdentity, dst: 0 }, { event: obs, verdict: "FORWARDED", type: EVENT_TRACE, reply, obs, direction: reply ? "INGRESS" : "EGRESS" });
      return frame;
    }
    const tnode = initNode ?? target.node!;
    if (sender.kind === "host") carried = fromNode === tnode ? C.ID_HOST : C.ID_REMOTE_NODE;
    carried = this.overlayIdentity(carried, out.src, tnode);
    // Without the overlay nothing carries the identity between nodes: the receiver looks the source up.
    if (sender.kind === "pod" && !this.tunnel && fromNode !== tnode) carried = 0;
    const ids = { src: carried, dst: initNode ? C.ID_INIT : this.identityOfPod(target.pod!) };
    // An encapsulated packet arrives through the receiver's tunnel device: its fromOverlay takes the
    // identity from the tunnel key (core/overlay.ts O4) and enforces the pod's ingress policy on it.
    const overlay = sent && fromNode && fromNode !== tnode ? this.received(fromNode, sent) : undefined;
    if (fromNode && fromNode !== tnode) {
      const extra = sent ? { tunnel: this.tunnelView(fromNode, sent) } : undefined;
      this.event(ctx, fromNode, frame, ids, { event: "to-overlay", verdict: "FORWARDED", type: EVENT_TRACE, reply, obs: "to-overlay", extra });
      this.advance(1);
      this.event(ctx, tnode, frame, ids, { event: "from-overlay", verdict: "FORWARDED", type: EVENT_TRACE, reply, obs: "from-overlay", extra });
    }
    const entry: EntryPoint = overlay ? "fromOverlay" : "toEndpoint";
    const r = this.run(ctx, tnode, entry, frame, overlay ? 0 : carried, reply, overlay);
    if (!this.report(ctx, tnode, entry, frame, r, reply)) return undefined;
    const t = r.trace;
    if (r.verdict === C.CTX_ACT_REDIRECT && httpData === "request" && ctx.redirect?.direction === "ingress") {
      if (!this.proxyRequest(ctx, r.output, { src: t.srcIdentity, dst: t.dstIdentity })) return undefined;
    }
    this.event(ctx, tnode, r.output, { src: t.srcIdentity, dst: t.dstIdentity }, { event: "to-endpoint", verdict: "FORWARDED", type: EVENT_TRACE, reply, obs: "to-endpoint", direction: "INGRESS" });
    return r.output;
  }

  private noteService(ctx: Ctx, t: TraceRecord, reply: boolean): void {
    if (reply || !(t.traceFlags & C.TRACE_F_DNAT)) return;
    const f = this.lb.frontends.find((x) => x.revNat === t.revNatIndex);
    if (f && !ctx.result.service) ctx.result.service = { namespace: f.svc.namespace, name: f.svc.name, frontend: `${hostPort(f.ip, f.fport)}/${f.protocol}`, kind: f.kind };
    const b = this.lb.backendById.get(t.backendId);
    if (b) ctx.result.backend = { ip: b.ip, port: b.port, pod: b.pod };
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
  private overlayIdentity(carried: number, src: string, node: string): number {
    return isRemoteNodeIdentity(carried) && this.places.nodeByIp.has(src) ? this.identityOfIp(src, node) : carried;
  }

  identityOfPod(p: SimPod): number {
    return this.policy.identities.podIdentity.get(p.key) ?? C.ID_WORLD;
  }

  /** Resolves both ends of a flow without sending anything; throws SimError for a bad reference. */
  resolveFlow(spec: FlowSpec): { src: Place; dst: { place: Place; port: number; frontend?: Frontend } } {
    const what = spec.where;
    // The destination first when the source is relative to it (entity: host).
    // A problem with one end names that end's field (spec.flows[0].from.pod, --to).
    const whereFrom = spec.whereEnds?.from ?? what;
    const whereTo = spec.whereEnds?.to ?? what;
    const srcPre = "entity" in spec.from ? undefined : this.resolveSource(spec.from, undefined, whereFrom);
    const srcHint: Place | undefined = srcPre ?? ("entity" in spec.from ? { kind: spec.from.entity === "host" ? "host" : "external", ip: "" } : undefined);
    let dst = this.resolveDestination(spec.to, srcHint, spec.port, spec.protocol, whereTo);
    const peerNode = dst.frontend ? (dst.frontend.port.backends[0]?.node ?? this.cluster.nodes[0]!.name) : dst.place.node;
    let src = srcPre ?? this.resolveSource(spec.from, peerNode, whereFrom);
    // Dual-stack ends (pods, services) take the flow's family: ICMPv6 or ipFamily IPv6 or the family of the
    // end given as an address; an end without an address of that family keeps its own (and fails below).
    const fixedV6 = (p: Place, f: Frontend | undefined) => (p.ip && !f && p.kind !== "pod" ? p.ip.includes(":") : undefined);
    const wantV6 = spec.protocol === "ICMPv6" || spec.ipFamily === "IPv6" ? true : spec.ipFamily === "IPv4" ? false : (fixedV6(dst.place, dst.frontend) ?? fixedV6(src, undefined));
    if (wantV6 !== undefined) {
      const d = this.places.inFamily(dst.place, dst.frontend, wantV6);
      if (d) dst = { ...dst, place: d.place, frontend: d.frontend, port: d.frontend ? d.frontend.fport : dst.port };
      src = this.places.inFamily(src, undefined, wantV6)?.place ?? src;
    }
    if (src.kind !== "pod" && dst.place.kind !== "pod" && !dst.frontend)
      throw new SimError("BAD_REFERENCE", `${what}: neither end of the flow is a pod or a service; ciliate simulates traffic that reaches or leaves the cluster's pods`);
    // A packet has one address family; a flow from an IPv4 address to an IPv6 one cannot be sent at all.
    const family = (ip: string) => (ip.includes(":") ? "IPv6" : "IPv4");
    if (src.ip && dst.place.ip && family(src.ip) !== family(dst.place.ip))
      throw new SimError("BAD_REFERENCE", `${what}: the source ${src.ip} is ${family(src.ip)} and the destination ${dst.place.ip} is ${family(dst.place.ip)}; a flow stays within one address family`);
    // ICMP and IGMP are IPv4's, ICMPv6 IPv6's: between addresses of the other family the flow is not
    // applicable (reach reports such pairs as "-"), never allowed or denied.
    const needs = spec.protocol === "ICMPv6" ? "IPv6" : spec.protocol === "ICMP" || spec.protocol === "IGMP" ? "IPv4" : undefined;
    const ip = src.ip || dst.place.ip;
    if (needs && ip && family(ip) !== needs)
      throw new SimError("BAD_REFERENCE", `${what}: ${spec.protocol} is carried by ${needs} only, and this flow's addresses are ${family(ip)} (${src.ip || "?"} -> ${dst.place.ip || "?"}): not applicable`, `use ${needs === "IPv6" ? "ICMP" : "ICMPv6"} between ${family(ip)} addresses`);
    return { src, dst };
  }

  /** Plays one flow of a Traffic document (or an Expectation) and returns its events and verdict. */
  runFlow(spec: FlowSpec, opts: { sport?: number } = {}): FlowResult {
    const { src, dst } = this.resolveFlow(spec);
    if (spec.wait) this.advance(spec.wait * 1000);
    this.expireFqdn();
    const result: FlowResult = {
      name: spec.name,
      verdict: "allowed",
      reason: "",
      events: [],
      steps: [],
      source: src,
      destination: dst.place,
      dropReason: 0,
      srcIdentity: src.kind === "pod" ? this.identityOfPod(src.pod!) : (src.carry ?? 0),
      dstIdentity: dst.place.kind === "pod" ? this.identityOfPod(dst.place.pod!) : 0,
    };
    if (dst.frontend) result.service = { namespace: dst.frontend.svc.namespace, name: dst.frontend.svc.name, frontend: `${hostPort(dst.frontend.ip, dst.frontend.fport)}/${dst.frontend.protocol}`, kind: dst.frontend.kind };
    let played = 0;
    for (let i = 0; i < spec.count && result.verdict === "allowed"; i++) {
      // The outcome describes one connection, the last one played (the denied one, if any): never the
      // backend of one connection with the policy verdicts of another.
      result.egress = result.ingress = result.l7 = result.backend = undefined;
      played = i + 1;
      const ctx: Ctx = { result, flowName: spec.name, http: spec.http, kafka: spec.kafka, tls: spec.tls, dns: spec.dns, stopped: false, l7Denied: false };
      this.playConnection(ctx, spec, src, dst.place.ip, dst.port, opts.sport);
      this.advance(100);
    }
    if (result.backend) result.destination = this.placeOfIp(result.backend.ip);
    // Identities as the datapath saw them.
    const first = result.steps.find((s) => !s.reply);
    if (first && !result.srcIdentity) result.srcIdentity = first.trace.srcIdentity;
    const deliver = result.steps.find((s) => !s.reply && (s.entry === "toEndpoint" || s.entry === "fromOverlay"));
    if (deliver) result.dstIdentity = deliver.trace.dstIdentity;
    else if (first && !result.dstIdentity) result.dstIdentity = first.trace.dstIdentity;
    result.reason = (spec.count > 1 ? `connection ${played} of ${spec.count}: ` : "") + this.reasonOf(result);
    return result;
  }

  private reasonOf(r: FlowResult): string {
    const parts: string[] = [];
    if (r.service) parts.push(`service ${r.service.namespace}/${r.service.name} (${r.service.frontend})${r.backend ? ` → backend ${r.backend.pod ?? r.backend.ip}:${r.backend.port}` : ""}`);
    if (r.verdict === "denied" && r.dropReason && !POLICY_DROPS.has(r.dropReason)) parts.push(`dropped: ${dropReasonText(r.dropReason)}`);
    if (r.egress) parts.push(`egress: ${r.egress.reason}`);
    if (r.ingress) parts.push(`ingress: ${r.ingress.reason}`);
    if (r.l7) parts.push(`L7 ${r.l7.protocol} ${r.l7.direction} proxy: ${r.l7.verdict === "allowed" ? "allowed" : "denied"} (${r.l7.reason})`);
    return parts.join("; ") || (r.verdict === "allowed" ? "allowed" : "denied");
  }

  private playConnection(ctx: Ctx, spec: FlowSpec, src: Place, dstIp: string, dport: number, fixedSport?: number): void {
    const sport = fixedSport ?? this.nextSourcePort();
    const proto = spec.protocol;
    const fwd = (extra: Partial<FrameSpec>): FrameSpec => ({ src: src.ip, dst: dstIp, proto, sport, dport, ...extra });
    // The reply goes from wherever the request was delivered back to the sender's address.
    let server: Place | undefined;
    let serverPort = dport;
    // Where the server sees the client (after any SNAT): replies are addressed there.
    let clientIp = src.ip;
    let clientPort = sport;
    const send = (spec2: FrameSpec, reply: boolean, http?: "request" | "response"): boolean => {
      if (ctx.stopped) return false;
      const from = reply ? server! : src;
      const out = this.sendPacket(ctx, from, spec2, reply, http);
      this.advance(1);
      if (!out) return false;
      if (!reply && !server) {
        const d = decodeFrame(out)!;
        server = this.placeOfIp(d.dst);
        serverPort = d.dport;
        clientIp = d.src;
        clientPort = d.proto === 1 || d.proto === 58 ? sport : d.sport;
      }
      return true;
    };
    const rev = (extra: Partial<FrameSpec>): FrameSpec => ({ src: server!.ip, dst: clientIp, proto, sport: serverPort, dport: clientPort, ...extra });
    const enc = new TextEncoder();
    const { SYN, ACK, FIN, PSH } = TCP_FLAGS;
    if (proto === "TCP") {
      if (!send(fwd({ tcpFlags: SYN }), false)) return;
      if (!send(rev({ tcpFlags: SYN | ACK }), true)) return;
      if (!send(fwd({ tcpFlags: ACK }), false)) return;
      const req = spec.http ? `${spec.http.method} ${spec.http.path} HTTP/1.1\r\nHost: ${spec.http.host ?? "x"}\r\n\r\n` : spec.dns ? `dns ${spec.dns.query}` : "ping";
      if (!send(fwd({ tcpFlags: PSH | ACK, payload: enc.encode(req) }), false, "request")) return;
      if (!send(rev({ tcpFlags: PSH | ACK, payload: enc.encode(spec.http ? "HTTP/1.1 200 OK\r\n\r\n" : "pong") }), true, "response")) return;
      if (!send(fwd({ tcpFlags: FIN | ACK }), false)) return;
      if (!send(rev({ tcpFlags: FIN | ACK }), true)) return;
      send(fwd({ tcpFlags: ACK }), false);
    } else if (proto === "VRRP" || proto === "IGMP") {
      // One message, no answer: VRRP advertisements and IGMP reports are not request/response.
      send(fwd({}), false);
    } else if (proto === "UDP" || proto === "SCTP") {
      if (!send(fwd({ payload: enc.encode(spec.dns ? `dns ${spec.dns.query}` : "ping") }), false, "request")) return;
      send(rev({ payload: enc.encode("pong") }), true, "response");
    } else {
      const v6 = proto === "ICMPv6";
      const type = spec.icmp?.type ?? (v6 ? 128 : 8);
      const code = spec.icmp?.code ?? 0;
      const echo = type === (v6 ? 128 : 8);
      const req: FrameSpec = { src: src.ip, dst: dstIp, proto, icmpType: type, icmpCode: code, icmpId: sport };
      if (!send(req, false)) return;
      if (echo) send({ src: server!.ip, dst: clientIp, proto, icmpType: v6 ? 129 : 0, icmpCode: 0, icmpId: sport }, true);
    }
  }

  /**
   * For a flow dropped at egress: what the destination's ingress policy would decide for the same packet
   * (run once through its toEndpoint). Undefined when the packet was not headed to a pod.
   */
  ingressWouldBe(r: FlowResult): DirectionOutcome | undefined {
    const step = [...r.steps].reverse().find((s) => s.entry === "fromEndpoint" && s.result.verdict === C.CTX_ACT_DROP);
    if (!step) return undefined;
    const target = this.placeOfIp(decodeFrame(step.frame)!.dst);
    if (target.kind !== "pod") return undefined;
    const res = this.run(undefined, target.node!, "toEndpoint", step.frame, step.trace.srcIdentity, false);
    return this.outcome(target.node!, "ingress", res.trace, res, target.pod!.key);
  }

  /* ------------------------------------------------------------------------------------------------ */
  /* Reachability probes (reach / whatif): one new connection from a pod to another pod's IP. */

  /**
   * Is a new connection from `src` to `dst`'s pod IP allowed end to end (egress at src, ingress at dst)?
   * An L7 redirect counts as allowed at L3/L4. `sport` should be unique per (src, dst) within a probe run.
   */
  probe(src: SimPod, dst: SimPod, port: number, proto: FlowProtocol, sport: number): { allowed: boolean; egress: RunResult; ingress?: RunResult } {
    const r = this.probeOnce(src, dst, port, proto, sport);
    // ICMP types other than echo carry no identifier in the conntrack tuple (bpf/lib/conntrack.h), so a
    // later probe b→a of the same type would look like a reply to a→b. Each probe must be judged as
    // `trace` judges it — a new flow — so its conntrack entries are removed again.
    // VRRP and IGMP have no ports at all: the same holds for them.
    const icmpNonEcho = (proto === "ICMP" && port !== 8) || (proto === "ICMPv6" && port !== 128) || proto === "VRRP" || proto === "IGMP";
    if (icmpNonEcho) this.forgetIcmpConntrack([src.node, dst.node]);
    return r;
  }

  /**
   * Both halves of a probe between two pods with an endpoint (not host-networked), each judged on its own:
   * the source's egress decision, and the destination's ingress decision for the packet egress forwarded
   * (or, when egress dropped it, for the packet as sent: a pod-to-pod packet reaches the destination
   * unchanged). reach combines halves of different pairs (sim/analysis/reach.ts); `probe` is this with the
   * ingress half only when egress passed.
   */
  probeSides(src: SimPod, dst: SimPod, port: number, proto: FlowProtocol, sport: number): { egress: boolean; ingress: boolean } {
    const frame = this.probeFrame(src, dst, port, proto, sport);
    const now = this.now();
    const egress = this.nodes.get(src.node)!.dp.run("fromEndpoint", frame, { now, srcIdentity: 0 });
    const out = egress.verdict === C.CTX_ACT_DROP ? frame : egress.output;
    const ingress = this.nodes.get(dst.node)!.dp.run("toEndpoint", out, { now, srcIdentity: this.identityOfPod(src) });
    if ((proto === "ICMP" && port !== 8) || (proto === "ICMPv6" && port !== 128)) this.forgetIcmpConntrack([src.node, dst.node]);
    return { egress: egress.verdict !== C.CTX_ACT_DROP, ingress: ingress.verdict !== C.CTX_ACT_DROP };
  }

  /**
   * Makes `policy` the simulation's policy and rewrites the policy-map entries of the endpoints of
   * `podKeys` from it (whatif's delta, sim/analysis/whatif.ts). Only for a policy that differs from the
   * current one in those endpoints' entries alone: identities, the ipcache and proxy listeners stay.
   */
  replaceEndpointPolicy(policy: CompiledPolicy, podKeys: Iterable<string>): void {
    for (const key of podKeys) {
      const pod = this.places.podByKey(key);
      const rt = pod && this.nodes.get(pod.node);
      const epId = rt?.epIds.get(key);
      if (!rt || epId === undefined) continue;
      const pm = rt.dp.map(MAP_SPECS.Policy);
      for (const e of encodeEntries(epId, this.policy.endpoints.get(key)?.entries ?? [])) pm.delete(e.key);
      for (const e of encodeEntries(epId, policy.endpoints.get(key)?.entries ?? [])) pm.update(e.key, e.value);
    }
    this.policy = policy;
  }

  /** Empties every node's conntrack, so the next probes are new connections as in a fresh simulation. */
  forgetConnections(): void {
    for (const n of this.nodes.values()) clearMap(n.dp.map(MAP_SPECS.Conntrack));
  }

  private forgetIcmpConntrack(nodes: string[]): void {
    for (const n of new Set(nodes)) {
      const ct = this.nodes.get(n)!.dp.map(MAP_SPECS.Conntrack);
      for (const [k] of [...ct.entries()]) if (k.nexthdr === 1 || k.nexthdr === 58 || k.nexthdr === 112 || k.nexthdr === 2) ct.delete(k);
    }
  }

  private probeOnce(src: SimPod, dst: SimPod, port: number, proto: FlowProtocol, sport: number): { allowed: boolean; egress: RunResult; ingress?: RunResult } {
    const frame = this.probeFrame(src, dst, port, proto, sport);
    const now = this.now();
    if (src.hostNetwork) {
      if (dst.hostNetwork) return { allowed: true, egress: fakeOk(frame) };
      const carried = this.identityOfIp(src.ip, dst.node);
      const ingress = this.nodes.get(dst.node)!.dp.run("toEndpoint", frame, { now, srcIdentity: carried });
      return { allowed: ingress.verdict !== C.CTX_ACT_DROP, egress: fakeOk(frame), ingress };
    }
    const egress = this.nodes.get(src.node)!.dp.run("fromEndpoint", frame, { now, srcIdentity: 0 });
    if (egress.verdict === C.CTX_ACT_DROP) return { allowed: false, egress };
    if (dst.hostNetwork) return { allowed: true, egress };
    const ingress = egress.tunnel
      ? this.nodes.get(dst.node)!.dp.run("fromOverlay", egress.output, { now, tunnel: this.received(src.node, egress.tunnel) })
      : this.nodes.get(dst.node)!.dp.run("toEndpoint", egress.output, { now, srcIdentity: src.node === dst.node || this.tunnel ? this.identityOfPod(src) : 0 });
    return { allowed: ingress.verdict !== C.CTX_ACT_DROP, egress, ingress };
  }

  private probeTemplate?: { key: string; frame: Uint8Array };

  /**
   * The probe packet from src to dst. Probes of one source differ only in the destination address, so
   * the frame is built once per (source, port, protocol) and re-addressed with RFC 1624 incremental
   * checksum updates (IPv4); IPv6 frames are built whole.
   */
  private probeFrame(src: SimPod, dst: SimPod, port: number, proto: FlowProtocol, sport: number): Uint8Array {
    const icmp = proto === "ICMP" || proto === "ICMPv6";
    const spec: FrameSpec = icmp ? { src: src.ip, dst: dst.ip, proto, icmpType: port, icmpCode: 0, icmpId: sport } : { src: src.ip, dst: dst.ip, proto, sport, dport: port, tcpFlags: proto === "TCP" ? TCP_FLAGS.SYN : undefined };
    if (src.ip.includes(":") || dst.ip.includes(":")) return buildFrame(spec);
    const key = `${src.ip}|${port}|${proto}|${sport}`;
    if (this.probeTemplate?.key !== key) this.probeTemplate = { key, frame: buildFrame(spec) };
    return retargetIpv4(this.probeTemplate.frame, dst.ip);
  }

  /** One sentence for a probe result: which direction decided and the rules behind the entry. */
  probeReason(src: SimPod, dst: SimPod, p: { allowed: boolean; egress: RunResult; ingress?: RunResult }): string {
    const e = this.outcome(src.node, "egress", p.egress.trace, p.egress, src.key);
    if (p.egress.verdict === C.CTX_ACT_DROP) return `egress at ${src.key}: ${e.reason}`;
    if (!p.ingress) return `egress at ${src.key}: ${e.reason}`;
    const i = this.outcome(dst.node, "ingress", p.ingress.trace, p.ingress, dst.key);
    if (p.ingress.verdict === C.CTX_ACT_DROP) return `ingress at ${dst.key}: ${i.reason}`;
    return `egress at ${src.key}: ${e.reason}; ingress at ${dst.key}: ${i.reason}`;
  }
}

/** Empties the maps `names` of an engine and writes them from the desired state. */
function rewriteMaps(dp: Datapath, maps: DesiredMaps, names: readonly DesiredMap[]): void {
  for (const name of names) {
    const m = dp.map(MAP_SPECS[name] as MapSpec);
    for (const [k] of [...m.entries()]) m.delete(k as never);
    for (const e of maps[name]) m.update(e.key as never, e.value as never);
  }
}

/**
 * Encoded entries of the first node's maps, reused for the entries other nodes share with it. Nodes of one
 * cluster hold mostly the same ipcache (every pod and node; only the local pods and the node entries
 * differ), listed in the same order (node/desired.ts), so entry i of a node is compared with entry i of
 * the first and, when equal, its bytes are copied instead of encoded again: at 10,000 pods on 50 nodes the
 * encoding was most of the simulation build.
 */
type EncodedMaps = Partial<Record<DesiredMap, { entries: DesiredMaps[DesiredMap]; keys: Uint8Array[]; values: Uint8Array[] }>>;

/** Structural equality of two codec objects (numbers, byte arrays, nested records). */
function sameCodecValue(a: unknown, b: unknown): boolean {
  if (a === b) return true;
  if (a instanceof Uint8Array) {
    if (!(b instanceof Uint8Array) || a.length !== b.length) return false;
    for (let i = 0; i < a.length; i++) if (a[i] !== b[i]) return false;
    return true;
  }
  if (typeof a !== "object" || typeof b !== "object" || a === null || b === null) return false;
  const ka = Object.keys(a);
  if (ka.length !== Object.keys(b).length) return false;
  for (const k of ka) if (!sameCodecValue((a as Record<string, unknown>)[k], (b as Record<string, unknown>)[k])) return false;
  return true;
}

/** Writes a node's desired state into an engine's maps, in map order (a later entry replaces an earlier
 * one), each map in one batch: encoded bytes shared through `shared` on a WASM/JS engine, else writeAll. */
function writeDesired(dp: Datapath, maps: DesiredMaps, shared?: EncodedMaps): void {
  for (const name of DESIRED_MAPS) {
    const spec = MAP_SPECS[name] as MapSpec;
    const list = maps[name];
    if (!(dp instanceof AbiDatapath) || !shared) {
      writeAll(dp.map(spec), list.map((e) => [e.key, e.value] as [never, never]));
      continue;
    }
    const ref = shared[name];
    const keys: Uint8Array[] = new Array(list.length);
    const values: Uint8Array[] = new Array(list.length);
    list.forEach((e, i) => {
      const r = ref?.entries[i];
      const same = r !== undefined && sameCodecValue(e.key, r.key);
      keys[i] = same ? ref!.keys[i]! : spec.key.encode(e.key as never);
      values[i] = same && sameCodecValue(e.value, r.value) ? ref!.values[i]! : spec.value.encode(e.value as never);
    });
    if (!ref) shared[name] = { entries: list, keys, values };
    dp.updateEncoded(spec, keys, values);
  }
}

/**
 * Sizes of a simulated node's control-plane maps: twice what the node holds (with the simulator's own
 * ipcache entries for reserved entities), at least 1,024 entries, at most the map's maximum. The datapath's own maps (conntrack, SNAT, affinity)
 * keep their defaults. A node of a large cluster otherwise takes ~54 MiB of engine memory, most of it
 * empty map space (10,000 pods on 50 nodes: 2.7 GiB).
 */
function capacitiesFor(d: DesiredMaps, extraIpcache: number): Record<string, number> {
  const max = new Map((Object.values(MAP_SPECS) as MapSpec[]).map((m) => [m.name, m.maxEntries]));
  const size = (name: string, n: number) => [name, Math.min(max.get(name) ?? Infinity, Math.max(1024, 2 * n))] as const;
  return Object.fromEntries([
    size("ipcache", d.Ipcache.length + extraIpcache),
    size("lxc", d.Endpoints.length),
    size("policy", d.Policy.length),
    size("lb_services", d.Services.length),
    size("lb_backends", d.Backends.length),
    size("lb_reverse_nat", d.RevNat.length),
    size("lb_maglev", d.Maglev.length),
  ]);
}

/** One's-complement 16-bit checksum update for a 32-bit field change (RFC 1624, eqn. 3). */
function csumUpdate32(csum: number, from: number, to: number): number {
  let sum = ~csum & 0xffff;
  sum += (~(from >>> 16) & 0xffff) + (~from & 0xffff) + (to >>> 16) + (to & 0xffff);
  while (sum > 0xffff) sum = (sum & 0xffff) + (sum >>> 16);
  return ~sum & 0xffff;
}

/** A copy of an IPv4 frame (Ethernet + 20-byte IP header) with a new destination address and fixed checksums. */
export function retargetIpv4(template: Uint8Array, dst: string): Uint8Array {
  const f = template.slice();
  const dv = new DataView(f.buffer);
  const parts = dst.split(".");
  const to = ((Number(parts[0]) << 24) | (Number(parts[1]) << 16) | (Number(parts[2]) << 8) | Number(parts[3])) >>> 0;
  const from = dv.getUint32(14 + 16);
  dv.setUint32(14 + 16, to);
  dv.setUint16(14 + 10, csumUpdate32(dv.getUint16(14 + 10), from, to));
  const proto = f[14 + 9];
  const l4 = 14 + (f[14]! & 0xf) * 4;
  const csumOff = proto === 6 ? l4 + 16 : proto === 17 ? l4 + 6 : -1;
  if (csumOff > 0 && !(proto === 17 && dv.getUint16(csumOff) === 0)) {
    let c = csumUpdate32(dv.getUint16(csumOff), from, to);
    if (proto === 17 && c === 0) c = 0xffff;
    dv.setUint16(csumOff, c);
  }
  return f;
}

function fakeOk(frame: Uint8Array): RunResult {
  return { verdict: C.CTX_ACT_OK, dropReason: 0, output: frame, trace: { srcIdentity: C.ID_HOST, dstIdentity: 0, egressCookie: 0, ingressCookie: 0, egressMatchType: 0, ingressMatchType: 0, traceFlags: 0, proxyPort: 0, ctState: 0 } as TraceRecord };
}


/** Endpoint id of the reserved:init endpoint on every simulated node (pods count up from 1). */
const INIT_EP_ID = 4095;

/** The query types a DNS flow stands for: AAAA when every expected answer is IPv6, else A. */
function dnsQtypes(d: DnsSpec): string[] {
  return d.answers.length && d.answers.every((a) => a.includes(":")) ? ["AAAA"] : ["A"];
}

function dropReasonHubbleName(code: number): string {
  return dropReasonHubble(code);
}
