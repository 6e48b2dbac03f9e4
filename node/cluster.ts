/*
 * The simulator's cluster model, built from manifests as the API server and an agent would see them:
 * nodes (pod CIDR, node IP), namespaces, pods (from Pods and expanded Deployments, ReplicaSets,
 * StatefulSets and DaemonSets; hostNetwork pods take their node's IP and the host identity), services
 * (ClusterIP, NodePort on every node IP, LoadBalancer status IPs, externalIPs, ClientIP affinity,
 * external/internal traffic policy Local, the per-service Maglev annotation), backends (EndpointSlices when
 * given, otherwise the selected pods with their ready/terminating state), the ciliate kinds (Traffic,
 * Expectation, Config) and the policy objects, which policy/ compiles.
 *
 * Addresses are allocated deterministically (docs/scenarios.md, "Addresses"): pods without status.podIP get
 * host .10, .11, … of their node's pod CIDR in namespace/name order; nodes without spec.podCIDR get the next
 * /24 of the cluster CIDR (10.244.0.0/16); nodes without an InternalIP get 192.168.56.11, .12, … in name
 * order; services without spec.clusterIP get 10.96.0.10, .11, … of the service CIDR in namespace/name order,
 * NodePorts from 30000 up. `pinned` (whatif) keeps the addresses of a previous model for objects that still
 * exist, so an edit never renumbers the cluster.
 */
import { formatIp, isIpv6, parseIp } from "../host/ip.ts";
import { maglevSeeds } from "../host/maglev.ts";
import { podKeyOf, CILIATE_API, CILIATE_KINDS, KNOWN_KINDS, KAFKA_ROLE_REQUEST, kafkaApiKeyOf, parseCidr, dnsSelectorProblems, type ClusterModel, type ContainerPort, type EnforcementMode, type ManifestObject, type NamespaceModel, type PodModel, type ServiceModel } from "../policy/index.ts";
import { SimError } from "./errors.ts";

export type L4 = "TCP" | "UDP" | "SCTP";
/** VRRP and IGMP (no ports; port 0) need the Config's enableExtendedIPProtocols to get through. */
export type FlowProtocol = L4 | "ICMP" | "ICMPv6" | "VRRP" | "IGMP";

export interface SimConfig {
  clusterName: string;
  /** Cluster Mesh: the cluster's id (Config clusterId, 1-255; Cilium's cluster-id), when declared. */
  clusterId?: number;
  policyEnforcement: EnforcementMode;
  podCIDR: string;
  serviceCIDR: string;
  /** Dual stack: the cluster's IPv6 pod CIDR (nodes without an IPv6 spec.podCIDRs entry get the next /64 of
   * it), as Cilium's enable-ipv6 with a cluster pool. Absent: pods get IPv6 addresses only from their
   * node's spec.podCIDRs or their status.podIPs. */
  podCIDRv6?: string;
  /** Where dual-stack and IPv6 services get their IPv6 ClusterIP from. */
  serviceCIDRv6: string;
  maglevTableSize: number;
  maglevSeed: string;
  ct: { syn: number; tcp: number; close: number; any: number; svcTcp: number; svcAny: number };
  /** Cilium's enable-node-selector-labels: remote nodes get identities from their labels; fromNodes/toNodes apply. */
  nodeSelectorLabels: boolean;
  /** Cilium's enable-extended-ip-protocols: VRRP and IGMP are tracked and policy may allow them (otherwise dropped, 137). */
  enableExtendedIPProtocols: boolean;
  /** Cilium's enable-host-firewall: host policies (nodeSelector) are enforced at each node's device. */
  enableHostFirewall: boolean;
}

export const DEFAULT_CONFIG: SimConfig = {
  clusterName: "default",
  policyEnforcement: "default",
  nodeSelectorLabels: false,
  enableExtendedIPProtocols: false,
  enableHostFirewall: false,
  podCIDR: "10.244.0.0/16",
  serviceCIDR: "10.96.0.0/12",
  serviceCIDRv6: "fd00:10:96::/112",
  maglevTableSize: 251,
  maglevSeed: "JLfvgnHc2kaSUFaI",
  ct: { syn: 60, tcp: 8000, close: 10, any: 60, svcTcp: 8000, svcAny: 60 },
};

export interface SimNode {
  name: string;
  ip: string;
  /** The node's IPv6 InternalIP (dual stack, Cilium's ipv6-node): its IPv6 NodePort frontends and the
   * SNAT source of its IPv6 masquerading. */
  ip6?: string;
  podCIDR: string;
  /** The node's IPv6 pod CIDR (the IPv6 entry of spec.podCIDRs), when the node is dual-stack. */
  podCIDRv6?: string;
  labels: Record<string, string>;
}

export interface SimPod extends PodModel {
  key: string;
  /** The IPv4 address (or the only address); `ips` holds every address, IPv4 first (status.podIPs). */
  ip: string;
  ips: string[];
  node: string;
  ready: boolean;
  terminating: boolean;
  /** The workload it was expanded from (kind/name), if any. */
  owner?: string;
}

export interface SimBackend {
  ip: string;
  port: number;
  protocol: L4;
  state: "active" | "terminating";
  /** ns/name of the pod behind the address, when known (cluster/ns/name for another cluster's pod). */
  pod?: string;
  node?: string;
  /** Cluster Mesh: the cluster of a global service's backend when it is not this cluster. */
  cluster?: string;
}

export interface SimServicePort {
  name?: string;
  port: number;
  protocol: L4;
  targetPort: number | string;
  nodePort?: number;
  backends: SimBackend[];
}

export interface SimService {
  key: string;
  namespace: string;
  name: string;
  type: "ClusterIP" | "NodePort" | "LoadBalancer" | "ExternalName";
  clusterIP?: string;
  /** Every ClusterIP, the primary first (spec.clusterIPs: one per family of spec.ipFamilies). */
  clusterIPs: string[];
  headless: boolean;
  externalIPs: string[];
  loadBalancerIPs: string[];
  ports: SimServicePort[];
  /** ClientIP affinity timeout in seconds; 0 = no affinity. */
  affinityTimeout: number;
  maglev: boolean;
  externalLocal: boolean;
  internalLocal: boolean;
  selector?: Record<string, string>;
  /** Cluster Mesh: a global service (service.cilium.io/global) and its affinity (service.cilium.io/affinity). */
  global?: { shared: boolean; affinity: GlobalAffinity };
}

/** service.cilium.io/affinity of a global service (cilium/cilium pkg/annotation: GlobalServiceAffinity). */
export type GlobalAffinity = "local" | "remote" | "none";

export type EndpointRefSpec =
  | { pod: string }
  | { service: string }
  | { selector: { namespace?: string; matchLabels?: Record<string, string> } }
  | { cidr: string }
  | { ip: string }
  | { entity: string };

export interface HttpSpec {
  method: string;
  path: string;
  host?: string;
  headers?: Record<string, string>;
}

/** One Kafka request of a flow, as the Kafka proxy would read it from the wire. */
export interface KafkaSpec {
  apiKey: number;
  apiVersion: number;
  clientID: string;
  topics: string[];
}

/** The ClientHello of a TLS flow; no serverName = a ClientHello without SNI. */
export interface TlsSpec {
  serverName?: string;
}

/** A DNS query a flow carries, and the answer the resolver gives when the query reaches it. */
export interface DnsSpec {
  /** The name asked (A/AAAA). */
  query: string;
  /** Addresses in the resolver's answer (A and AAAA records); empty = an answer without records. */
  answers: string[];
  /** TTL of the answer's records, seconds. */
  ttl: number;
}

export interface FlowSpec {
  name: string;
  from: EndpointRefSpec;
  to: EndpointRefSpec;
  port: number;
  protocol: FlowProtocol;
  http?: HttpSpec;
  kafka?: KafkaSpec;
  tls?: TlsSpec;
  dns?: DnsSpec;
  /** Seconds the virtual clock advances before the flow starts (e.g. to let a DNS TTL run out). */
  wait?: number;
  icmp?: { type: number; code: number };
  /** After the flow's first packet, an ICMPv4 error about it (destination unreachable, time exceeded,
   * parameter problem) goes back to the sender, embedding that packet as it arrived: from `from` (a
   * router's address) or, without it, from where the packet was delivered. Instead of the rest of the
   * connection (`ciliate trace --icmp-error`). */
  icmpError?: IcmpErrorSpec;
  /** UDP: bytes of the request's payload; above the sender's MTU (1500) the datagram is sent in IPv4
   * fragments (`ciliate trace --size`). */
  size?: number;
  /** With `size`: the first fragment is lost on the way, only the later ones arrive (`--first-fragment-lost`). */
  firstFragmentLost?: boolean;
  /** The address family the flow uses between dual-stack ends (default: IPv4, or the family of an address given). */
  ipFamily?: "IPv4" | "IPv6";
  count: number;
  /** Where it was declared, for messages. */
  where: string;
  /** Where each end was declared (the reference's own field, e.g. `spec.flows[0].from.pod`), for messages about it. */
  whereEnds?: { from: string; to: string };
}

/** FlowSpec.icmpError. */
export interface IcmpErrorSpec {
  type: number;
  code: number;
  from?: string;
}

/**
 * What is wrong with an ICMP error about a flow (FlowSpec.icmpError), in words for a message naming the
 * field; undefined when it can be simulated. The datapath translates the embedded packet of ICMPv4 errors
 * (core/nat.ts E1–E3, core/lb.ts lbRevNatIcmpError), so: types 3, 11 and 12, about a TCP, UDP or ICMP echo
 * flow over IPv4, without an L7 request or fragments; `from` an IPv4 address.
 */
export function icmpErrorProblem(e: IcmpErrorSpec, flow: { protocol: string; icmpType?: number; l7: boolean; size?: number; ipFamily?: string }): string | undefined {
  if (![3, 11, 12].includes(e.type)) return `ICMP error type ${e.type} is not an ICMPv4 error that embeds a packet (3 destination unreachable, 11 time exceeded, 12 parameter problem)`;
  if (!Number.isInteger(e.code) || e.code < 0 || e.code > 255) return `invalid ICMP code ${JSON.stringify(e.code)} (0-255)`;
  if (e.from !== undefined && (e.from.includes(":") || !/^\d+\.\d+\.\d+\.\d+$/.test(e.from))) return `the error's sender ${JSON.stringify(e.from)} must be an IPv4 address`;
  if (flow.protocol !== "TCP" && flow.protocol !== "UDP" && !(flow.protocol === "ICMP" && (flow.icmpType ?? 8) === 8)) return `an ICMP error is simulated about a TCP, UDP or ICMP echo flow, not ${flow.protocol}${flow.protocol === "ICMP" ? ` type ${flow.icmpType}` : ""}`;
  if (flow.ipFamily === "IPv6") return "an ICMP error is simulated about an IPv4 flow (the datapath translates ICMPv4 errors)";
  if (flow.l7) return "an ICMP error is about the flow's first packet: leave out http, kafka, tls and dns";
  if (flow.size !== undefined) return "an ICMP error is about the flow's first packet: leave out size";
  return undefined;
}

export interface ExpectationSpec extends FlowSpec {
  verdict: "allowed" | "denied";
}

export interface SimCluster {
  config: SimConfig;
  nodes: SimNode[];
  namespaces: NamespaceModel[];
  pods: SimPod[];
  services: SimService[];
  policies: ManifestObject[];
  traffic: FlowSpec[];
  expectations: ExpectationSpec[];
  /** The input policy/ takes. */
  model: ClusterModel;
  /** Every object, for whatif. */
  objects: ManifestObject[];
}

export interface Allocation {
  nodeIp: Map<string, string>;
  nodeCidr: Map<string, string>;
  podIp: Map<string, string>;
  /** IPv6 addresses of dual-stack pods (the IPv4 one is podIp). */
  podIp6: Map<string, string>;
  podNode: Map<string, string>;
  serviceIp: Map<string, string>;
  /** Second-family ClusterIPs of dual-stack services. */
  serviceIp6: Map<string, string>;
  nodePort: Map<string, number>;
}

export interface BuildOptions {
  clusterName?: string;
  policyEnforcement?: EnforcementMode;
  /** --enable-host-firewall: turns the host firewall on whatever the Config says. */
  enableHostFirewall?: boolean;
  /** Addresses of a previous build to keep (whatif). */
  pinned?: Allocation;
  /** A multi-cluster scenario (sim/mesh.ts): every cluster's id by name, for the identities' numbers. */
  clusterIds?: Record<string, number>;
}

export const POLICY_KINDS = new Set(["CiliumNetworkPolicy", "CiliumClusterwideNetworkPolicy", "NetworkPolicy"]);
// The kinds the manifest loader accepts (policy/manifest-loader.ts), checked again for objects that reach
// buildCluster without it.
const KNOWN_KINDS_SET = new Set([...KNOWN_KINDS, ...CILIATE_KINDS]);
export const MAGLEV_ANNOTATIONS = ["service.cilium.io/lb-algorithm", "io.cilium/lb-algorithm"];
const ENTITY_REFS = new Set(["world", "host", "remote-node", "health", "init", "unmanaged", "kube-apiserver", "ingress"]);

/**
 * Cluster Mesh in the manifests: an object annotated `ciliate.dev/cluster: NAME` belongs to cluster NAME;
 * without it (or with the model's own cluster name) it belongs to the model's own cluster (Config
 * clusterName). Pods, nodes, namespaces and services of another cluster are that cluster's state as the
 * agent learns it from the cluster's etcd: its pods are peers (selected by policy through their labels and
 * `io.cilium.k8s.policy.cluster`, keyed `cluster/namespace/name`), its nodes their tunnel endpoints and
 * routes (named `cluster/node`), its global services add their backends to the global service of the same
 * namespace and name here. What the other cluster enforces is not part of this model.
 */
export const CLUSTER_ANNOTATION = "ciliate.dev/cluster";
/** Global services (cilium/cilium pkg/annotation/k8s.go: GlobalService, SharedService, ServiceAffinity). */
export const GLOBAL_SERVICE_ANNOTATION = "service.cilium.io/global";
export const SHARED_SERVICE_ANNOTATION = "service.cilium.io/shared";
export const SERVICE_AFFINITY_ANNOTATION = "service.cilium.io/affinity";

/** The value of an object's CLUSTER_ANNOTATION, if any. */
export function clusterAnnotationOf(o: ManifestObject): string | undefined {
  const v = (o.metadata.annotations as Record<string, unknown> | undefined)?.[CLUSTER_ANNOTATION];
  return v === undefined ? undefined : String(v);
}

/** The other cluster an object belongs to, or undefined for the model's own (CLUSTER_ANNOTATION). */
export function otherClusterOf(o: ManifestObject, own: string): string | undefined {
  const v = clusterAnnotationOf(o);
  if (v === undefined || v === own) return undefined;
  const problem = clusterNameProblem(String(v));
  if (problem) throw bad(o, ["metadata", "annotations", CLUSTER_ANNOTATION], problem);
  return String(v);
}

/** The global-service annotations of a Service: undefined when it is not global. */
function globalServiceOf(o: ManifestObject): SimService["global"] {
  const a = labelsOf((o.metadata as Record<string, unknown>).annotations);
  const g = a[GLOBAL_SERVICE_ANNOTATION]?.toLowerCase();
  if (g === undefined || g === "false") return undefined;
  if (g !== "true") throw bad(o, ["metadata", "annotations", GLOBAL_SERVICE_ANNOTATION], `expected "true" or "false", got ${JSON.stringify(a[GLOBAL_SERVICE_ANNOTATION])}`);
  const sh = a[SHARED_SERVICE_ANNOTATION]?.toLowerCase() ?? "true";
  if (sh !== "true" && sh !== "false") throw bad(o, ["metadata", "annotations", SHARED_SERVICE_ANNOTATION], `expected "true" or "false", got ${JSON.stringify(a[SHARED_SERVICE_ANNOTATION])}`);
  const af = a[SERVICE_AFFINITY_ANNOTATION]?.toLowerCase() ?? "none";
  if (af !== "local" && af !== "remote" && af !== "none") throw bad(o, ["metadata", "annotations", SERVICE_AFFINITY_ANNOTATION], `expected local, remote or none, got ${JSON.stringify(a[SERVICE_AFFINITY_ANNOTATION])}`);
  return { shared: sh === "true", affinity: af };
}

const CLUSTER_SCOPED_KINDS = new Set(["Namespace", "Node", "CiliumClusterwideNetworkPolicy", "Config"]);

function objectName(o: ManifestObject): string {
  const ns = o.metadata.namespace ?? (CLUSTER_SCOPED_KINDS.has(o.kind) ? "" : "default");
  return `${o.kind} ${ns ? ns + "/" : ""}${o.metadata.name}`;
}

function where(o: ManifestObject, path: (string | number)[] = []): string {
  const s = o.source;
  if (!s) return objectName(o);
  const line = s.lineOf ? lineOf(s.lineOf, path) : 0;
  const p = path.length ? ` ${path.map((x, i) => (typeof x === "number" ? `[${x}]` : i ? `.${x}` : x)).join("")}` : "";
  return `${s.file}: document ${s.doc}${line ? `, line ${line}` : ""}: ${objectName(o)}${p}`;
}

function lineOf(f: (p: (string | number)[]) => number, path: (string | number)[]): number {
  for (let n = path.length; n >= 0; n--) {
    const l = f(path.slice(0, n));
    if (l) return l;
  }
  return 0;
}

function bad(o: ManifestObject, path: (string | number)[], msg: string, code = "INVALID_MANIFEST"): SimError {
  return new SimError(code, `${where(o, path)}: ${msg}`);
}

function ipv4ToInt(ip: string): number {
  return ip.split(".").reduce((a, p) => a * 256 + Number(p), 0);
}

function intToIpv4(n: number): string {
  return [24, 16, 8, 0].map((s) => Math.floor(n / 2 ** s) % 256).join(".");
}

/** Canonical text of an address (so 10.0.0.01-style and IPv6 spellings compare equal). */
export function canonicalIp(ip: string): string | undefined {
  const a = parseIp(ip);
  return a ? formatIp(a.family, a.addr) : undefined;
}

function str(v: unknown): string | undefined {
  return typeof v === "string" ? v : undefined;
}

function labelsOf(v: unknown): Record<string, string> {
  if (!v || typeof v !== "object") return {};
  const out: Record<string, string> = {};
  for (const [k, x] of Object.entries(v as Record<string, unknown>)) out[k] = String(x);
  return out;
}

function protocolOf(o: ManifestObject, path: (string | number)[], v: unknown): L4 {
  const p = v === undefined || v === null ? "TCP" : String(v).toUpperCase();
  if (p !== "TCP" && p !== "UDP" && p !== "SCTP") throw bad(o, path, `unknown protocol ${JSON.stringify(v)} (TCP, UDP or SCTP)`);
  return p;
}

function portNumber(o: ManifestObject, path: (string | number)[], v: unknown): number {
  if (v === undefined || v === null) throw bad(o, path, "a port is required (1-65535)");
  const n = typeof v === "string" && /^\d+$/.test(v) ? Number(v) : v;
  if (typeof n !== "number" || !Number.isInteger(n) || n < 1 || n > 65535) throw bad(o, path, `invalid port ${JSON.stringify(v)} (1-65535)`);
  return n;
}

interface RawPod {
  namespace: string;
  name: string;
  spec: Record<string, unknown>;
  labels: Record<string, string>;
  status?: Record<string, unknown>;
  deleting: boolean;
  owner?: string;
  src: ManifestObject;
  /** Node fixed by the workload (DaemonSet). */
  node?: string;
  /** Another cluster's pod (CLUSTER_ANNOTATION). */
  cluster?: string;
}

function podTemplate(o: ManifestObject): { labels: Record<string, string>; spec: Record<string, unknown> } {
  const t = (o.raw.spec?.template ?? {}) as Record<string, unknown>;
  const md = (t.metadata ?? {}) as Record<string, unknown>;
  return { labels: labelsOf(md.labels), spec: (t.spec ?? {}) as Record<string, unknown> };
}

function containerPorts(p: RawPod): ContainerPort[] {
  const out: ContainerPort[] = [];
  const cs = [...((p.spec.containers as unknown[]) ?? []), ...((p.spec.initContainers as unknown[]) ?? [])];
  cs.forEach((c0, ci) => {
    const c = (c0 ?? {}) as Record<string, unknown>;
    ((c.ports as unknown[]) ?? []).forEach((p0, pi) => {
      const cp = (p0 ?? {}) as Record<string, unknown>;
      const path = ["spec", "containers", ci, "ports", pi];
      out.push({ name: str(cp.name), port: portNumber(p.src, [...path, "containerPort"], cp.containerPort), protocol: protocolOf(p.src, [...path, "protocol"], cp.protocol) });
    });
  });
  return out;
}

function flowSpecOf(o: ManifestObject, raw: unknown, path: (string | number)[], defaultName: string): FlowSpec {
  const f = (raw ?? {}) as Record<string, unknown>;
  const from = endpointRefOf(o, [...path, "from"], f.from);
  const to = endpointRefOf(o, [...path, "to"], f.to);
  const protoRaw = f.protocol === undefined ? (f.icmp ? "ICMP" : f.dns !== undefined ? "UDP" : "TCP") : String(f.protocol).toUpperCase();
  const protocol = protoRaw === "ICMPV6" ? "ICMPv6" : protoRaw;
  if (!["TCP", "UDP", "SCTP", "ICMP", "ICMPv6", "VRRP", "IGMP"].includes(protocol)) throw bad(o, [...path, "protocol"], `unknown protocol ${JSON.stringify(f.protocol)} (TCP, UDP, SCTP, ICMP, ICMPv6, VRRP or IGMP)`);
  let port = 0;
  let icmp: FlowSpec["icmp"];
  if (protocol === "ICMP" || protocol === "ICMPv6") {
    const ic = (f.icmp ?? {}) as Record<string, unknown>;
    // ICMP has no ports: a `port` is the ICMP type (as `8/ICMP` on the command line), and must agree with icmp.type.
    const given = f.port === undefined ? undefined : Number(f.port);
    if (given !== undefined && ic.type !== undefined && given !== Number(ic.type)) throw bad(o, [...path, "port"], `${protocol} has no ports: port ${JSON.stringify(f.port)} would be the ICMP type, and icmp.type is ${JSON.stringify(ic.type)} (leave port out)`);
    const type = ic.type === undefined ? (given ?? (protocol === "ICMP" ? 8 : 128)) : Number(ic.type);
    const code = ic.code === undefined ? 0 : Number(ic.code);
    if (!Number.isInteger(type) || type < 0 || type > 255) throw bad(o, [...path, ...(ic.type === undefined ? ["port"] : ["icmp", "type"])], `invalid ICMP type ${JSON.stringify(ic.type ?? f.port)} (0-255)`);
    if (!Number.isInteger(code) || code < 0 || code > 255) throw bad(o, [...path, "icmp", "code"], `invalid ICMP code ${JSON.stringify(ic.code)}`);
    icmp = { type, code };
    port = type;
  } else if (protocol === "VRRP" || protocol === "IGMP") {
    if (f.port !== undefined && Number(f.port) !== 0) throw bad(o, [...path, "port"], `${protocol} has no ports (leave port out)`);
  } else port = f.port === undefined && f.dns !== undefined ? 53 : portNumber(o, [...path, "port"], f.port);
  let http: HttpSpec | undefined;
  if (f.http !== undefined) {
    const h = (f.http ?? {}) as Record<string, unknown>;
    if (protocol !== "TCP") throw bad(o, [...path, "http"], "http needs protocol TCP");
    http = { method: String(h.method ?? "GET").toUpperCase(), path: String(h.path ?? "/"), host: str(h.host), headers: h.headers ? labelsOf(h.headers) : undefined };
  }
  const kafka = f.kafka === undefined ? undefined : kafkaSpecOf(o, f.kafka, [...path, "kafka"], protocol);
  let tls: TlsSpec | undefined;
  if (f.tls !== undefined) {
    const t = (f.tls ?? {}) as Record<string, unknown>;
    if (protocol !== "TCP") throw bad(o, [...path, "tls"], "tls needs protocol TCP");
    for (const k of Object.keys(t)) if (k !== "serverName") throw bad(o, [...path, "tls", k], `unknown field ${JSON.stringify(k)} (tls has serverName)`);
    if (t.serverName !== undefined && (typeof t.serverName !== "string" || t.serverName === "")) throw bad(o, [...path, "tls", "serverName"], "serverName must be a non-empty string (omit it for a ClientHello without SNI)");
    tls = { serverName: str(t.serverName) };
  }
  const dns = f.dns === undefined ? undefined : dnsSpecOf(o, [...path, "dns"], f.dns, protocol);
  if ([http, kafka, dns].filter(Boolean).length > 1) throw bad(o, path, "a flow carries one L7 protocol: http, kafka or dns");
  let wait: number | undefined;
  if (f.wait !== undefined) {
    wait = Number(f.wait);
    if (!Number.isFinite(wait) || wait < 0 || wait > 86400 * 365) throw bad(o, [...path, "wait"], `invalid wait ${JSON.stringify(f.wait)} (seconds, 0-31536000)`);
  }
  const count = f.count === undefined ? 1 : Number(f.count);
  if (!Number.isInteger(count) || count < 1 || count > 10000) throw bad(o, [...path, "count"], `invalid count ${JSON.stringify(f.count)} (1-10000)`);
  const whereEnds = { from: where(o, [...path, "from", ...Object.keys(from).slice(0, 1)]), to: where(o, [...path, "to", ...Object.keys(to).slice(0, 1)]) };
  if (f.ipFamily !== undefined && f.ipFamily !== "IPv4" && f.ipFamily !== "IPv6") throw bad(o, [...path, "ipFamily"], `unknown ipFamily ${JSON.stringify(f.ipFamily)} (IPv4 or IPv6)`);
  const ipFamily = f.ipFamily as FlowSpec["ipFamily"];
  let icmpError: IcmpErrorSpec | undefined;
  if (f.icmpError !== undefined) {
    const e = (f.icmpError ?? {}) as Record<string, unknown>;
    for (const k of Object.keys(e)) if (!["type", "code", "from"].includes(k)) throw bad(o, [...path, "icmpError", k], `unknown field ${JSON.stringify(k)} (icmpError has type, code, from)`);
    if (e.type === undefined) throw bad(o, [...path, "icmpError", "type"], "icmpError needs a type (3, 11 or 12)");
    icmpError = { type: Number(e.type), code: e.code === undefined ? 0 : Number(e.code), ...(e.from !== undefined ? { from: String(e.from) } : {}) };
    const problem = icmpErrorProblem(icmpError, { protocol, icmpType: icmp?.type, l7: !!(http || kafka || tls || dns), ipFamily });
    if (problem) throw bad(o, [...path, "icmpError"], problem);
  }
  return { name: str(f.name) ?? defaultName, from, to, port, protocol: protocol as FlowProtocol, http, kafka, tls, dns, wait, icmp, ...(icmpError ? { icmpError } : {}), ...(ipFamily ? { ipFamily } : {}), count, where: where(o, path), whereEnds };
}

function dnsSpecOf(o: ManifestObject, path: (string | number)[], raw: unknown, protocol: string): DnsSpec {
  if (protocol !== "UDP" && protocol !== "TCP") throw bad(o, path, "dns needs protocol UDP or TCP");
  if (!raw || typeof raw !== "object" || Array.isArray(raw)) throw bad(o, path, "dns must be an object {query, answers?, ttl?}");
  const d = raw as Record<string, unknown>;
  for (const k of Object.keys(d)) if (!["query", "answers", "ttl"].includes(k)) throw bad(o, [...path, k], `unknown field ${JSON.stringify(k)} (dns has query, answers, ttl)`);
  if (typeof d.query !== "string" || d.query === "") throw bad(o, [...path, "query"], "dns.query (the name asked) is required");
  const problem = dnsSelectorProblems({ matchName: d.query })[0];
  if (problem) throw bad(o, [...path, "query"], `invalid DNS name: ${problem.message}`);
  const answers = d.answers === undefined ? [] : d.answers;
  if (!Array.isArray(answers)) throw bad(o, [...path, "answers"], "dns.answers must be a list of IP addresses");
  answers.forEach((a, i) => {
    if (typeof a !== "string" || !parseIp(a)) throw bad(o, [...path, "answers", i], `invalid IP address ${JSON.stringify(a)}`);
  });
  const ttl = d.ttl === undefined ? 300 : Number(d.ttl);
  if (!Number.isInteger(ttl) || ttl < 0 || ttl > 2147483647) throw bad(o, [...path, "ttl"], `invalid TTL ${JSON.stringify(d.ttl)} (seconds, 0-2147483647)`);
  return { query: d.query, answers: answers as string[], ttl };
}

const KAFKA_FLOW_FIELDS = ["apiKey", "role", "apiVersion", "clientID", "topic", "topics"];

/**
 * A flow's Kafka request. `role: produce` stands for a Produce request and `role: consume` for a Fetch
 * request (the request that carries the role's data; a role rule also allows the metadata requests).
 */
function kafkaSpecOf(o: ManifestObject, raw: unknown, path: (string | number)[], protocol: string): KafkaSpec {
  if (protocol !== "TCP") throw bad(o, path, "kafka needs protocol TCP");
  if (!raw || typeof raw !== "object" || Array.isArray(raw)) throw bad(o, path, "kafka must be an object like {apiKey: produce, topic: deathstar-plans}");
  const k = raw as Record<string, unknown>;
  for (const f of Object.keys(k)) if (!KAFKA_FLOW_FIELDS.includes(f)) throw bad(o, [...path, f], `unknown field ${JSON.stringify(f)} (kafka has ${KAFKA_FLOW_FIELDS.join(", ")})`);
  if (k.apiKey !== undefined && k.role !== undefined) throw bad(o, path, "give apiKey or role, not both");
  if (k.role !== undefined && k.role !== "produce" && k.role !== "consume") throw bad(o, [...path, "role"], `unknown role ${JSON.stringify(k.role)} (produce or consume)`);
  const apiKey = k.role !== undefined ? KAFKA_ROLE_REQUEST[k.role as "produce" | "consume"] : kafkaApiKeyOf(k.apiKey);
  if (apiKey === undefined) throw bad(o, [...path, "apiKey"], `unknown Kafka apiKey ${JSON.stringify(k.apiKey)} (a name like produce, fetch, metadata, or a number; or give role)`);
  const apiVersion = k.apiVersion === undefined ? 0 : Number(k.apiVersion);
  if (!Number.isInteger(apiVersion) || apiVersion < 0 || apiVersion > 32767) throw bad(o, [...path, "apiVersion"], `invalid apiVersion ${JSON.stringify(k.apiVersion)} (0-32767)`);
  if (k.clientID !== undefined && typeof k.clientID !== "string") throw bad(o, [...path, "clientID"], "clientID must be a string");
  const topics = k.topics !== undefined ? k.topics : k.topic !== undefined ? [k.topic] : [];
  if (!Array.isArray(topics) || topics.some((t) => typeof t !== "string" || t === "")) throw bad(o, [...path, k.topics !== undefined ? "topics" : "topic"], "topics must be non-empty strings");
  return { apiKey, apiVersion, clientID: (k.clientID as string | undefined) ?? "", topics: topics as string[] };
}

/** Parses one endpoint reference of a Traffic flow or Expectation. */
export function endpointRefOf(o: ManifestObject | undefined, path: (string | number)[], v: unknown): EndpointRefSpec {
  const fail = (m: string) => (o ? bad(o, path, m, "BAD_REFERENCE") : new SimError("BAD_REFERENCE", m));
  if (!v || typeof v !== "object") throw fail("missing endpoint reference (pod, service, selector, cidr, ip or entity)");
  const r = v as Record<string, unknown>;
  const keys = Object.keys(r);
  if (keys.length !== 1) throw fail(`an endpoint reference has exactly one of pod, service, selector, cidr, ip, entity (got ${keys.join(", ") || "none"})`);
  const k = keys[0]!;
  const val = r[k];
  switch (k) {
    case "pod":
    case "service":
      if (typeof val !== "string" || !val) throw fail(`${k} must be "namespace/name"`);
      return k === "pod" ? { pod: val.includes("/") ? val : `default/${val}` } : { service: val.includes("/") ? val : `default/${val}` };
    case "selector": {
      const s = (val ?? {}) as Record<string, unknown>;
      return { selector: { namespace: str(s.namespace), matchLabels: labelsOf(s.matchLabels) } };
    }
    case "cidr":
      if (typeof val !== "string" || !parseCidr(val)) throw fail(`invalid CIDR ${JSON.stringify(val)}`);
      return { cidr: val };
    case "ip":
      if (typeof val !== "string" || !parseIp(val)) throw fail(`invalid IP address ${JSON.stringify(val)}`);
      return { ip: val };
    case "entity":
      if (typeof val !== "string" || !ENTITY_REFS.has(val)) throw fail(`unknown entity ${JSON.stringify(val)} (${[...ENTITY_REFS].join(", ")})`);
      return { entity: val };
    default:
      throw fail(`unknown endpoint reference ${JSON.stringify(k)} (pod, service, selector, cidr, ip or entity)`);
  }
}

function configOf(objs: ManifestObject[], opts: BuildOptions): SimConfig {
  const c: SimConfig = { ...DEFAULT_CONFIG, ct: { ...DEFAULT_CONFIG.ct } };
  for (const o of objs.filter((x) => x.kind === "Config" && x.apiVersion === CILIATE_API)) {
    const s = (o.raw.spec ?? o.raw) as Record<string, unknown>;
    if (s.clusterName !== undefined) {
      const problem = clusterNameProblem(String(s.clusterName));
      if (problem) throw bad(o, ["spec", "clusterName"], problem);
      c.clusterName = String(s.clusterName);
    }
    if (s.clusterId !== undefined) {
      const id = s.clusterId;
      if (typeof id !== "number" || !Number.isInteger(id) || id < 1 || id > 255) throw bad(o, ["spec", "clusterId"], `invalid clusterId ${JSON.stringify(id)} (an integer 1-255, Cilium's cluster-id)`);
      c.clusterId = id;
    }
    if (s.policyEnforcement !== undefined) {
      const m = String(s.policyEnforcement);
      if (m !== "default" && m !== "always" && m !== "never") throw bad(o, ["spec", "policyEnforcement"], `invalid policyEnforcement ${JSON.stringify(m)} (default, always or never)`);
      c.policyEnforcement = m;
    }
    if (s.nodeSelectorLabels !== undefined) c.nodeSelectorLabels = s.nodeSelectorLabels === true;
    if (s.enableExtendedIPProtocols !== undefined) c.enableExtendedIPProtocols = s.enableExtendedIPProtocols === true;
    if (s.enableHostFirewall !== undefined) c.enableHostFirewall = s.enableHostFirewall === true;
    const cidrOf = (k: string) => {
      const v = s[k];
      if (v === undefined) return undefined;
      const p = typeof v === "string" ? parseCidr(v) : undefined;
      if (!p || p.family !== 4) throw bad(o, ["spec", k], `invalid IPv4 CIDR ${JSON.stringify(v)}`);
      return p.text;
    };
    c.podCIDR = cidrOf("podCIDR") ?? cidrOf("clusterCIDR") ?? c.podCIDR;
    c.serviceCIDR = cidrOf("serviceCIDR") ?? c.serviceCIDR;
    const cidr6Of = (k: string, minBits: number, maxBits: number) => {
      const v = s[k];
      if (v === undefined) return undefined;
      const p = typeof v === "string" ? parseCidr(v) : undefined;
      if (!p || p.family !== 6 || p.bits < minBits || p.bits > maxBits) throw bad(o, ["spec", k], `invalid IPv6 CIDR ${JSON.stringify(v)} (/${minBits} to /${maxBits})`);
      return p.text;
    };
    c.podCIDRv6 = cidr6Of("podCIDRv6", 32, 64) ?? c.podCIDRv6;
    c.serviceCIDRv6 = cidr6Of("serviceCIDRv6", 96, 120) ?? c.serviceCIDRv6;
    const mg = (s.maglev ?? {}) as Record<string, unknown>;
    const size = s.maglevTableSize ?? mg.tableSize;
    if (size !== undefined) {
      if (![251, 509, 1021, 2039, 4093, 8191, 16381, 32749, 65521, 131071].includes(Number(size))) throw bad(o, ["spec", "maglevTableSize"], `Maglev table size ${JSON.stringify(size)} is not one of Cilium's primes (251, 509, 1021, … 131071)`);
      c.maglevTableSize = Number(size);
    }
    const seed = s.maglevSeed ?? mg.seed;
    if (seed !== undefined) {
      const at = ["spec", s.maglevSeed !== undefined ? "maglevSeed" : "maglev", ...(s.maglevSeed !== undefined ? [] : ["seed"])];
      try {
        maglevSeeds(String(seed)); // the agent decodes it the same way; a bad seed is bad input, found here
      } catch (e) {
        throw bad(o, at, `${(e as Error).message} (Cilium's bpf-lb-maglev-hash-seed: 12 bytes, base64, e.g. ${DEFAULT_CONFIG.maglevSeed})`);
      }
      c.maglevSeed = String(seed);
    }
    const ct = (s.ctTimeouts ?? s.conntrack ?? {}) as Record<string, unknown>;
    for (const k of Object.keys(c.ct) as (keyof SimConfig["ct"])[]) {
      if (ct[k] === undefined) continue;
      const n = Number(ct[k]);
      if (!Number.isInteger(n) || n < 1) throw bad(o, ["spec", "ctTimeouts", k], `invalid timeout ${JSON.stringify(ct[k])} (seconds)`);
      c.ct[k] = n;
    }
  }
  if (opts.clusterName !== undefined) {
    const problem = clusterNameProblem(opts.clusterName);
    if (problem) throw new SimError("BAD_OPTION", `--cluster-name: ${problem}`);
    c.clusterName = opts.clusterName;
  }
  if (opts.policyEnforcement) c.policyEnforcement = opts.policyEnforcement;
  if (opts.enableHostFirewall) c.enableHostFirewall = true;
  return c;
}

/**
 * Cilium's rule for a cluster name (cilium/cilium pkg/clustermesh/types/option.go, ValidateClusterName):
 * at most 32 characters, lower-case alphanumerics and '-', beginning and ending with an alphanumeric. It
 * becomes a label value of every identity (io.cilium.k8s.policy.cluster).
 */
export function clusterNameProblem(name: string): string | undefined {
  if (name.length > 32) return `cluster name ${JSON.stringify(name)} is longer than 32 characters`;
  if (!/^[a-z0-9]([-a-z0-9]*[a-z0-9])?$/.test(name)) return `invalid cluster name ${JSON.stringify(name)} (lower-case letters, digits and '-', beginning and ending with a letter or digit, as Cilium's cluster-name)`;
  return undefined;
}

/** Builds the cluster model from manifest objects. Throws SimError (or policy's ManifestError) on bad input. */
export function buildCluster(objects: ManifestObject[], opts: BuildOptions = {}): SimCluster {
  checkKinds(objects);
  const config = configOf(objects, opts);
  const pinned = opts.pinned;
  // Objects of other clusters (CLUSTER_ANNOTATION) are set apart: they are peers, never local state.
  const remote = otherClusters(objects, config.clusterName);
  const local = objects.filter((o) => !remote.clusterOf.has(o));
  const localNodes = placeNodes(local, config, pinned);
  const nodes = [...localNodes, ...remoteNodes(remote)];
  const pods = placePods(expandPods(local, localNodes, remote), nodes, localNodes, pinned, remote);
  const namespaces = namespacesOf(local);
  const services = buildServices(local, config, pods, pinned, remote);
  const { traffic, expectations } = trafficOf(local);
  const model = clusterModelOf(config, local, nodes, namespaces, pods, services);
  if (opts.clusterIds) model.clusterIds = opts.clusterIds;
  return { config, nodes, namespaces, pods, services, policies: local.filter((o) => POLICY_KINDS.has(o.kind)), traffic, expectations, model, objects };
}

/** The objects of other clusters than the model's own, by cluster (CLUSTER_ANNOTATION). */
interface RemoteObjects {
  clusterOf: Map<ManifestObject, string>;
  of(kind: string): ManifestObject[];
}

function otherClusters(objects: ManifestObject[], own: string): RemoteObjects {
  const clusterOf = new Map<ManifestObject, string>();
  for (const o of objects) {
    const c = otherClusterOf(o, own);
    if (c === undefined) continue;
    if (!["Pod", "Node", "Namespace", "Service"].includes(o.kind)) throw bad(o, ["metadata", "annotations", CLUSTER_ANNOTATION], `a ${o.kind} of another cluster is not part of this model (only its Pods, Nodes, Namespaces and Services are)`);
    clusterOf.set(o, c);
  }
  return { clusterOf, of: (kind) => objects.filter((o) => o.kind === kind && clusterOf.has(o)) };
}

/** Other clusters' nodes: named cluster/node, with the pod CIDR and InternalIP they publish. */
function remoteNodes(remote: RemoteObjects): SimNode[] {
  return remote
    .of("Node")
    .sort((a, b) => (a.metadata.name < b.metadata.name ? -1 : 1))
    .map((o) => {
      const c = remote.clusterOf.get(o)!;
      const cidr = parseCidr(str(o.raw.spec?.podCIDR) ?? "");
      const ip = canonicalIp(((o.raw.status?.addresses as { type?: string; address?: string }[]) ?? []).find((a) => a.type === "InternalIP")?.address ?? "");
      if (!cidr || cidr.family !== 4) throw bad(o, ["spec", "podCIDR"], "a node of another cluster needs its IPv4 pod CIDR");
      if (!ip) throw bad(o, ["status", "addresses"], "a node of another cluster needs its InternalIP");
      return { name: `${c}/${o.metadata.name}`, ip, podCIDR: cidr.text, labels: labelsOf(o.metadata.labels) };
    });
}

/** Refuses objects of a kind the simulator does not know, and ciliate's own kinds of another apiVersion. */
function checkKinds(objects: ManifestObject[]): void {
  for (const o of objects) {
    if (!KNOWN_KINDS_SET.has(o.kind)) throw bad(o, ["kind"], `unsupported kind ${o.kind} (supported: ${[...KNOWN_KINDS_SET].join(", ")})`, "UNSUPPORTED_KIND");
    if ((o.kind === "Traffic" || o.kind === "Expectation" || o.kind === "Config") && o.apiVersion !== CILIATE_API)
      throw bad(o, ["apiVersion"], `${o.kind} needs apiVersion ${CILIATE_API}`);
  }
}

function nsOf(o: ManifestObject): string {
  return o.metadata.namespace ?? "default";
}

/** The nodes, by name, with their pod CIDR (a free /24 of the cluster's pod CIDR when not declared) and address. */
function placeNodes(objects: ManifestObject[], config: SimConfig, pinned: Allocation | undefined): SimNode[] {
  const nodeObjs = objects.filter((o) => o.kind === "Node").sort((a, b) => (a.metadata.name < b.metadata.name ? -1 : 1));
  const clusterCidr = parseCidr(config.podCIDR)!;
  const nodes: SimNode[] = [];
  const usedCidrs = new Set<string>();
  const usedNodeIps = new Set<string>();
  const rawNodes = nodeObjs.map((o) => {
    const spec = (o.raw.spec ?? {}) as Record<string, unknown>;
    const addrs = (((o.raw.status ?? {}) as Record<string, unknown>).addresses as { type?: string; address?: string }[]) ?? [];
    const internal = addrs.find((a) => a.type === "InternalIP" && a.address && parseIp(a.address)?.family === 4)?.address;
    const internal6 = addrs.find((a) => a.type === "InternalIP" && a.address && parseIp(a.address)?.family === 6)?.address;
    let cidr = str(spec.podCIDR);
    if (cidr !== undefined && (!parseCidr(cidr) || parseCidr(cidr)!.family !== 4)) throw bad(o, ["spec", "podCIDR"], `invalid IPv4 pod CIDR ${JSON.stringify(cidr)}`);
    if (cidr) cidr = parseCidr(cidr)!.text;
    // Dual stack: spec.podCIDRs holds at most one CIDR per family (the API server's rule).
    let cidr6: string | undefined;
    const list = spec.podCIDRs === undefined ? [] : Array.isArray(spec.podCIDRs) ? spec.podCIDRs : [spec.podCIDRs];
    list.forEach((x, i) => {
      const c = typeof x === "string" ? parseCidr(x) : undefined;
      if (!c) throw bad(o, ["spec", "podCIDRs", i], `invalid pod CIDR ${JSON.stringify(x)}`);
      if (c.family === 4) {
        if (cidr === undefined) cidr = c.text;
        return;
      }
      if (cidr6 !== undefined) throw bad(o, ["spec", "podCIDRs", i], "spec.podCIDRs has more than one IPv6 CIDR (one per family)");
      if (c.bits < 64 || c.bits > 120) throw bad(o, ["spec", "podCIDRs", i], `IPv6 pod CIDR ${c.text} must be /64 to /120`);
      cidr6 = c.text;
    });
    if (internal && !canonicalIp(internal)) throw bad(o, ["status", "addresses"], `invalid node address ${internal}`);
    return { o, name: o.metadata.name, cidr: cidr ?? pinned?.nodeCidr.get(o.metadata.name), cidr6, ip: internal ?? pinned?.nodeIp.get(o.metadata.name), ip6: internal6 === undefined ? undefined : canonicalIp(internal6), labels: labelsOf(o.metadata.labels) };
  });
  if (rawNodes.length === 0) rawNodes.push({ o: undefined as unknown as ManifestObject, name: "node-1", cidr: pinned?.nodeCidr.get("node-1"), cidr6: undefined, ip: pinned?.nodeIp.get("node-1"), ip6: undefined, labels: {} });
  for (const n of rawNodes) {
    if (n.cidr) usedCidrs.add(n.cidr);
    if (n.ip) usedNodeIps.add(n.ip);
  }
  let nextCidr = 0;
  let nextNodeIp = ipv4ToInt("192.168.56.11");
  for (const n of rawNodes) {
    let cidr = n.cidr;
    while (!cidr) {
      const base = Number(clusterCidr.addr) + nextCidr++ * 256;
      const c = `${intToIpv4(base)}/24`;
      if (nextCidr > 256) throw new SimError("IPAM_EXHAUSTED", `cluster pod CIDR ${config.podCIDR} has no free /24 for node ${n.name}`);
      if (!usedCidrs.has(c)) cidr = c;
    }
    usedCidrs.add(cidr);
    let ip = n.ip;
    while (!ip) {
      const c = intToIpv4(nextNodeIp++);
      if (!usedNodeIps.has(c)) ip = c;
    }
    usedNodeIps.add(ip);
    nodes.push({ name: n.name, ip, ...(n.ip6 ? { ip6: n.ip6 } : {}), podCIDR: cidr, podCIDRv6: n.cidr6, labels: n.labels });
  }
  // Dual stack from the Config: each node without an IPv6 pod CIDR gets the next free /64 of podCIDRv6.
  if (config.podCIDRv6) {
    const pool = parseCidr(config.podCIDRv6)!;
    const used = new Set(nodes.map((n) => n.podCIDRv6).filter(Boolean));
    let next = 0n;
    for (const n of nodes) {
      while (!n.podCIDRv6) {
        if (next >= 1n << BigInt(64 - pool.bits)) throw new SimError("IPAM_EXHAUSTED", `cluster IPv6 pod CIDR ${config.podCIDRv6} has no free /64 for node ${n.name}`);
        const c = `${formatIp(6, pool.addr + (next++ << 64n))}/64`;
        if (!used.has(c)) n.podCIDRv6 = c;
      }
      used.add(n.podCIDRv6);
    }
  }
  return nodes;
}

/** Pods, including expanded workloads (Deployment, ReplicaSet, StatefulSet replicas; a DaemonSet's pod per node), sorted; a pod declared twice is refused. */
function expandPods(objects: ManifestObject[], nodes: SimNode[], remote: RemoteObjects): RawPod[] {
  const raws: RawPod[] = [];
  for (const o of remote.of("Pod")) {
    const c = remote.clusterOf.get(o)!;
    const nodeName = str(o.raw.spec?.nodeName);
    if (!str(o.raw.status?.podIP) || !nodeName) throw bad(o, ["status", "podIP"], "a pod of another cluster needs its podIP and spec.nodeName");
    raws.push({ namespace: nsOf(o), name: o.metadata.name, spec: (o.raw.spec ?? {}) as Record<string, unknown>, labels: labelsOf(o.metadata.labels), status: o.raw.status, deleting: false, src: o, node: `${c}/${nodeName}`, cluster: c });
  }
  for (const o of objects) {
    const ns = nsOf(o);
    const deleting = !!(o.metadata as Record<string, unknown>).deletionTimestamp;
    if (o.kind === "Pod") {
      raws.push({ namespace: ns, name: o.metadata.name, spec: (o.raw.spec ?? {}) as Record<string, unknown>, labels: labelsOf(o.metadata.labels), status: o.raw.status, deleting, src: o });
    } else if (o.kind === "Deployment" || o.kind === "ReplicaSet" || o.kind === "StatefulSet") {
      const t = podTemplate(o);
      const rep = o.raw.spec?.replicas === undefined ? 1 : Number(o.raw.spec.replicas);
      if (!Number.isInteger(rep) || rep < 0 || rep > 1000) throw bad(o, ["spec", "replicas"], `invalid replicas ${JSON.stringify(o.raw.spec?.replicas)} (0-1000)`);
      for (let i = 0; i < rep; i++) raws.push({ namespace: ns, name: `${o.metadata.name}-${i}`, spec: t.spec, labels: t.labels, deleting, owner: `${o.kind}/${o.metadata.name}`, src: o });
    } else if (o.kind === "DaemonSet") {
      const t = podTemplate(o);
      for (const n of nodes) raws.push({ namespace: ns, name: `${o.metadata.name}-${n.name}`, spec: t.spec, labels: t.labels, deleting, owner: `DaemonSet/${o.metadata.name}`, src: o, node: n.name });
    }
  }
  raws.sort((a, b) => (podKeyOf(a) < podKeyOf(b) ? -1 : 1));
  const seenPods = new Map<string, RawPod>();
  for (const r of raws) {
    const k = podKeyOf(r);
    if (seenPods.has(k)) throw bad(r.src, ["metadata", "name"], `pod ${k} is declared twice (also by ${where(seenPods.get(k)!.src)})`, "DUPLICATE_POD");
    seenPods.set(k, r);
  }
  return raws;
}

/** Each pod's node (its nodeName, else round robin) and address (its podIP, else the next free one of its node's CIDR). */
function placePods(raws: RawPod[], nodes: SimNode[], localNodes: SimNode[], pinned: Allocation | undefined, remote: RemoteObjects): SimPod[] {
  const nodeByName = new Map(nodes.map((n) => [n.name, n]));
  // Other clusters' namespaces only give their pods' namespace labels.
  const remoteNs = new Map(remote.of("Namespace").map((o) => [`${remote.clusterOf.get(o)}/${o.metadata.name}`, labelsOf(o.metadata.labels)]));
  const remoteNsLabels = (c: string, ns: string) => ({ ...(remoteNs.get(`${c}/${ns}`) ?? {}), "kubernetes.io/metadata.name": ns });
  const pods: SimPod[] = [];
  const usedPodIps = new Map<string, string>();
  const podCursor = new Map<string, number>();
  const podCursor6 = new Map<string, bigint>();
  let rr = 0;
  const placed: { r: RawPod; node: string; ip?: string; ip6?: string; host: boolean }[] = [];
  for (const r of raws) {
    const k = podKeyOf(r);
    let node = r.node ?? str(r.spec.nodeName) ?? pinned?.podNode.get(k);
    if (node && !nodeByName.has(node)) throw bad(r.src, ["spec", "nodeName"], `node ${node} is not declared (declare a Node or omit nodeName)`, "UNKNOWN_NODE");
    if (!node) node = localNodes[rr++ % localNodes.length]!.name;
    const host = r.spec.hostNetwork === true;
    let ip = str(r.status?.podIP);
    if (ip !== undefined) {
      const c = canonicalIp(ip);
      if (!c) throw bad(r.src, ["status", "podIP"], `invalid pod IP ${JSON.stringify(ip)}`);
      ip = c;
    }
    // status.podIPs (dual stack): the primary (= podIP) first, at most one address per family.
    let ip6: string | undefined;
    const listed = Array.isArray(r.status?.podIPs) ? (r.status!.podIPs as unknown[]) : [];
    listed.forEach((x, i) => {
      const raw = str((x as Record<string, unknown> | undefined)?.ip);
      const c = raw === undefined ? undefined : canonicalIp(raw);
      if (!c) throw bad(r.src, ["status", "podIPs", i, "ip"], `invalid pod IP ${JSON.stringify(raw)}`);
      if (i === 0 && ip !== undefined && c !== ip) throw bad(r.src, ["status", "podIPs", 0, "ip"], `status.podIPs[0] (${c}) must be status.podIP (${ip})`);
      if (i === 0 && ip === undefined) ip = c;
      if (i === 0) return;
      if (isIpv6(c) === isIpv6(ip!)) throw bad(r.src, ["status", "podIPs", i, "ip"], `status.podIPs has two ${isIpv6(c) ? "IPv6" : "IPv4"} addresses (one per family)`);
      ip6 = c;
    });
    // An IPv6-first dual-stack pod: `ip` is the IPv4 address, `ip6` the IPv6 one (an IPv6-only pod keeps its one address as `ip`).
    if (ip !== undefined && isIpv6(ip) && ip6 !== undefined) [ip, ip6] = [ip6, ip];
    if (host) ip = nodeByName.get(node)!.ip;
    else {
      if (!ip) ip = pinned?.podIp.get(k);
      if (!ip6 && !r.status?.podIP) ip6 = pinned?.podIp6.get(k);
    }
    placed.push({ r, node, ip, ip6: host ? undefined : ip6, host });
    for (const a of host ? [] : [ip, ip6]) {
      if (!a) continue;
      const other = usedPodIps.get(a);
      if (other) throw bad(r.src, ["status", "podIP"], `pod ${k} has IP ${a}, already used by pod ${other}`, "DUPLICATE_IP");
      usedPodIps.set(a, k);
    }
  }
  for (const p of placed) {
    if (!p.ip) {
      const n = nodeByName.get(p.node)!;
      const c = parseCidr(n.podCIDR)!;
      const size = 2 ** (32 - c.bits);
      let i = podCursor.get(n.name) ?? 10;
      let ip: string | undefined;
      for (; i < size - 1; i++) {
        const cand = intToIpv4(Number(c.addr) + i);
        if (!usedPodIps.has(cand)) {
          ip = cand;
          break;
        }
      }
      if (!ip) throw new SimError("IPAM_EXHAUSTED", `node ${n.name}: pod CIDR ${n.podCIDR} has no free address for pod ${podKeyOf(p.r)}`);
      podCursor.set(n.name, i + 1);
      usedPodIps.set(ip, podKeyOf(p.r));
      p.ip = ip;
    }
    const n = nodeByName.get(p.node)!;
    if (!p.ip6 && !p.host && n.podCIDRv6 && !p.r.status?.podIP) {
      // The IPv6 address: host .10, .11, … of the node's IPv6 pod CIDR (hex), as the IPv4 one.
      const c = parseCidr(n.podCIDRv6)!;
      const size = 1n << BigInt(128 - c.bits);
      let i = podCursor6.get(n.name) ?? 10n;
      for (; i < size - 1n && !p.ip6; i++) {
        const cand = formatIp(6, c.addr + i);
        if (!usedPodIps.has(cand)) p.ip6 = cand;
      }
      if (!p.ip6) throw new SimError("IPAM_EXHAUSTED", `node ${n.name}: IPv6 pod CIDR ${n.podCIDRv6} has no free address for pod ${p.r.namespace}/${p.r.name}`);
      podCursor6.set(n.name, i);
      usedPodIps.set(p.ip6, `${p.r.namespace}/${p.r.name}`);
    }
    const conds = (p.r.status?.conditions as { type?: string; status?: string }[]) ?? [];
    const readyCond = conds.find((c) => c.type === "Ready");
    const ready = readyCond ? readyCond.status !== "False" : true;
    const sa = str(p.r.spec.serviceAccountName) ?? str(p.r.spec.serviceAccount);
    pods.push({
      key: podKeyOf(p.r),
      ...(p.r.cluster ? { cluster: p.r.cluster, namespaceLabels: remoteNsLabels(p.r.cluster, p.r.namespace) } : {}),
      namespace: p.r.namespace,
      name: p.r.name,
      labels: p.r.labels,
      serviceAccount: sa,
      node: p.node,
      hostNetwork: p.host,
      containerPorts: containerPorts(p.r),
      ips: p.ip6 ? [p.ip!, p.ip6] : [p.ip!],
      ip: p.ip!,
      ready,
      terminating: p.r.deleting,
      owner: p.r.owner,
    });
  }
  return pods;
}

/** Namespaces: declared ones plus every namespace an object lives in. */
function namespacesOf(objects: ManifestObject[]): NamespaceModel[] {
  const nsMap = new Map<string, NamespaceModel>();
  for (const o of objects.filter((x) => x.kind === "Namespace")) nsMap.set(o.metadata.name, { name: o.metadata.name, labels: { ...labelsOf(o.metadata.labels), "kubernetes.io/metadata.name": o.metadata.name } });
  for (const o of objects)
    if (o.kind !== "Namespace" && o.kind !== "Node" && o.kind !== "CiliumClusterwideNetworkPolicy" && !nsMap.has(nsOf(o))) nsMap.set(nsOf(o), { name: nsOf(o), labels: { "kubernetes.io/metadata.name": nsOf(o) } });
  const namespaces = [...nsMap.values()].sort((a, b) => (a.name < b.name ? -1 : 1));
  return namespaces;
}

/** Services with their frontends (clusterIP and NodePorts allocated when not declared) and backends. */
function buildServices(objects: ManifestObject[], config: SimConfig, pods: SimPod[], pinned: Allocation | undefined, remote: RemoteObjects): SimService[] {
  const svcObjs = objects.filter((o) => o.kind === "Service").sort((a, b) => (`${nsOf(a)}/${a.metadata.name}` < `${nsOf(b)}/${b.metadata.name}` ? -1 : 1));
  const svcCidr = parseCidr(config.serviceCIDR)!;
  const svcCidr6 = parseCidr(config.serviceCIDRv6)!;
  const usedSvcIps = new Set<string>();
  const usedNodePorts = new Set<number>();
  for (const o of svcObjs) {
    const ip = str(o.raw.spec?.clusterIP);
    if (ip && ip !== "None") usedSvcIps.add(canonicalIp(ip) ?? ip);
    for (const x of Array.isArray(o.raw.spec?.clusterIPs) ? (o.raw.spec.clusterIPs as unknown[]) : []) if (typeof x === "string" && x !== "None") usedSvcIps.add(canonicalIp(x) ?? x);
    for (const p of (o.raw.spec?.ports as Record<string, unknown>[]) ?? []) if (p?.nodePort) usedNodePorts.add(Number(p.nodePort));
  }
  for (const v of pinned?.serviceIp.values() ?? []) usedSvcIps.add(v);
  for (const v of pinned?.serviceIp6.values() ?? []) usedSvcIps.add(v);
  let nextSvc6 = 10n;
  for (const v of pinned?.nodePort.values() ?? []) usedNodePorts.add(v);
  let nextSvc = 10;
  let nextNodePort = 30000;
  const slices = objects.filter((o) => o.kind === "EndpointSlice");
  const remoteServices = remote.of("Service").flatMap((o): RemoteService[] => {
    const g = globalServiceOf(o);
    if (!g?.shared) return [];
    const rawPorts = (o.raw.spec?.ports as Record<string, unknown>[]) ?? [];
    const ports = rawPorts.map((p, i) => {
      const port = portNumber(o, ["spec", "ports", i, "port"], p?.port);
      const tp = p?.targetPort;
      return { name: str(p?.name), port, protocol: protocolOf(o, ["spec", "ports", i, "protocol"], p?.protocol), targetPort: typeof tp === "string" && !/^\d+$/.test(tp) ? tp : tp === undefined ? port : portNumber(o, ["spec", "ports", i, "targetPort"], tp) };
    });
    return [{ cluster: remote.clusterOf.get(o)!, namespace: nsOf(o), name: o.metadata.name, selector: labelsOf(o.raw.spec?.selector), ports }];
  });
  const services: SimService[] = [];
  for (const o of svcObjs) {
    const spec = (o.raw.spec ?? {}) as Record<string, unknown>;
    const ns = nsOf(o);
    const key = `${ns}/${o.metadata.name}`;
    const type = (str(spec.type) ?? "ClusterIP") as SimService["type"];
    if (!["ClusterIP", "NodePort", "LoadBalancer", "ExternalName"].includes(type)) throw bad(o, ["spec", "type"], `unknown service type ${JSON.stringify(spec.type)}`);
    let clusterIP = str(spec.clusterIP);
    const headless = clusterIP === "None";
    if (headless || type === "ExternalName") clusterIP = undefined;
    else if (clusterIP) {
      const c = canonicalIp(clusterIP);
      if (!c) throw bad(o, ["spec", "clusterIP"], `invalid clusterIP ${JSON.stringify(clusterIP)}`);
      clusterIP = c;
    } else {
      clusterIP = pinned?.serviceIp.get(key);
      while (!clusterIP) {
        const cand = intToIpv4(Number(svcCidr.addr) + nextSvc++);
        if (!usedSvcIps.has(cand)) clusterIP = cand;
      }
      usedSvcIps.add(clusterIP);
    }
    const clusterIPs = clusterIP ? [clusterIP] : [];
    if (clusterIP) {
      // Dual stack (spec.ipFamilies, spec.ipFamilyPolicy, spec.clusterIPs): one ClusterIP per family.
      const listed = Array.isArray(spec.clusterIPs) ? (spec.clusterIPs as unknown[]) : [];
      listed.forEach((x, i) => {
        const c = typeof x === "string" ? canonicalIp(x) : undefined;
        if (!c) throw bad(o, ["spec", "clusterIPs", i], `invalid clusterIP ${JSON.stringify(x)}`);
        if (i === 0 && c !== clusterIP && str(spec.clusterIP)) throw bad(o, ["spec", "clusterIPs", 0], `spec.clusterIPs[0] (${c}) must be spec.clusterIP (${clusterIP})`);
        if (i === 0) return;
        if (isIpv6(c) === isIpv6(clusterIP!) || i > 1) throw bad(o, ["spec", "clusterIPs", i], "spec.clusterIPs holds at most one address per family");
        clusterIPs.push(c);
      });
      const families = Array.isArray(spec.ipFamilies) ? (spec.ipFamilies as unknown[]).map(String) : [];
      families.forEach((f, i) => {
        if (f !== "IPv4" && f !== "IPv6") throw bad(o, ["spec", "ipFamilies", i], `unknown IP family ${JSON.stringify(f)} (IPv4 or IPv6)`);
      });
      const policy = str(spec.ipFamilyPolicy) ?? "SingleStack";
      if (!["SingleStack", "PreferDualStack", "RequireDualStack"].includes(policy)) throw bad(o, ["spec", "ipFamilyPolicy"], `unknown ipFamilyPolicy ${JSON.stringify(policy)} (SingleStack, PreferDualStack or RequireDualStack)`);
      const wantV6 = families.includes("IPv6") || policy !== "SingleStack";
      if (wantV6 && clusterIPs.length === 1 && !isIpv6(clusterIP!)) {
        let ip6 = pinned?.serviceIp6.get(key);
        while (!ip6) {
          if (nextSvc6 >= 1n << BigInt(128 - svcCidr6.bits)) throw new SimError("IPAM_EXHAUSTED", `IPv6 service CIDR ${config.serviceCIDRv6} has no free address for service ${key}`);
          const cand = formatIp(6, svcCidr6.addr + nextSvc6++);
          if (!usedSvcIps.has(cand)) ip6 = cand;
        }
        usedSvcIps.add(ip6);
        clusterIPs.push(ip6);
      }
    }
    const selector = spec.selector && Object.keys(spec.selector as object).length ? labelsOf(spec.selector) : undefined;
    const annotations = labelsOf((o.metadata as Record<string, unknown>).annotations);
    const maglev = MAGLEV_ANNOTATIONS.some((a) => annotations[a]?.toLowerCase() === "maglev");
    const affinity = spec.sessionAffinity === "ClientIP";
    const timeoutRaw = (((spec.sessionAffinityConfig ?? {}) as Record<string, unknown>).clientIP as Record<string, unknown> | undefined)?.timeoutSeconds;
    const affinityTimeout = affinity ? (timeoutRaw === undefined ? 10800 : Number(timeoutRaw)) : 0;
    if (affinity && (!Number.isInteger(affinityTimeout) || affinityTimeout < 1 || affinityTimeout > 86400))
      throw bad(o, ["spec", "sessionAffinityConfig", "clientIP", "timeoutSeconds"], `invalid affinity timeout ${JSON.stringify(timeoutRaw)} (1-86400)`);
    const lbIngress = ((((o.raw.status ?? {}) as Record<string, unknown>).loadBalancer ?? {}) as Record<string, unknown>).ingress as { ip?: string }[] | undefined;
    const loadBalancerIPs = type === "LoadBalancer" ? (lbIngress ?? []).map((i) => i.ip).filter((x): x is string => !!x).map((x) => canonicalIp(x) ?? x) : [];
    const externalIPs = ((spec.externalIPs as string[]) ?? []).map((x, i) => {
      const c = canonicalIp(String(x));
      if (!c) throw bad(o, ["spec", "externalIPs", i], `invalid external IP ${JSON.stringify(x)}`);
      return c;
    });
    const ports: SimServicePort[] = [];
    const rawPorts = (spec.ports as unknown[]) ?? [];
    rawPorts.forEach((p0, i) => {
      const p = (p0 ?? {}) as Record<string, unknown>;
      const path = ["spec", "ports", i];
      const port = portNumber(o, [...path, "port"], p.port);
      const protocol = protocolOf(o, [...path, "protocol"], p.protocol);
      let targetPort: number | string = port;
      if (p.targetPort !== undefined) targetPort = typeof p.targetPort === "string" && !/^\d+$/.test(p.targetPort) ? p.targetPort : portNumber(o, [...path, "targetPort"], p.targetPort);
      let nodePort: number | undefined;
      if (type === "NodePort" || type === "LoadBalancer") {
        if (p.nodePort !== undefined) nodePort = portNumber(o, [...path, "nodePort"], p.nodePort);
        else {
          nodePort = pinned?.nodePort.get(`${key}/${port}/${protocol}`);
          while (nodePort === undefined) {
            const cand = nextNodePort++;
            if (!usedNodePorts.has(cand)) nodePort = cand;
          }
          usedNodePorts.add(nodePort);
        }
      }
      ports.push({ name: str(p.name), port, protocol, targetPort, nodePort, backends: [] });
    });
    const svc: SimService = {
      key,
      namespace: ns,
      name: o.metadata.name,
      type,
      clusterIP,
      clusterIPs,
      headless,
      externalIPs,
      loadBalancerIPs,
      ports,
      affinityTimeout,
      maglev,
      externalLocal: spec.externalTrafficPolicy === "Local",
      internalLocal: spec.internalTrafficPolicy === "Local",
      selector,
    };
    const global = globalServiceOf(o);
    if (global) svc.global = global;
    serviceBackends(o, ns, ports, rawPorts, selector, slices, pods, clusterIPs);
    if (global) addGlobalBackends(svc, remoteServices.filter((r) => r.namespace === ns && r.name === o.metadata.name), pods);
    for (const sp of ports) sp.backends.sort((a, b) => (a.state === b.state ? 0 : a.state === "active" ? -1 : 1) || ipv4Cmp(a.ip, b.ip) || a.port - b.port);
    services.push(svc);
  }
  return services;
}

/** A service port's backends: from the service's EndpointSlices when it has any, else the ready (or terminating) pods of this cluster its selector selects (sorted by the caller, active ones first). */
function serviceBackends(o: ManifestObject, ns: string, ports: SimServicePort[], rawPorts: unknown[], selector: Record<string, string> | undefined, slices: ManifestObject[], pods: SimPod[], clusterIPs: string[]): void {
  const mySlices = slices.filter((s) => nsOf(s) === ns && labelsOf(s.metadata.labels)["kubernetes.io/service-name"] === o.metadata.name);
  const podOfIp = (ip: string) => pods.find((p) => p.ips.includes(ip) && !p.hostNetwork) ?? pods.find((p) => p.ip === ip);
  if (mySlices.length) {
    for (const sp of ports) {
      const seen = new Set<string>();
      for (const s of mySlices) {
        const sports = (s.raw.ports as { name?: string; port?: number; protocol?: string }[]) ?? [];
        const match = sports.find((x) => (x.name ?? "") === (sp.name ?? "") && (x.protocol ?? "TCP").toUpperCase() === sp.protocol) ?? (sports.length === 1 && rawPorts.length === 1 ? sports[0] : undefined);
        if (!match || !match.port) continue;
        ((s.raw.endpoints as Record<string, unknown>[]) ?? []).forEach((ep, ei) => {
          const cond = (ep.conditions ?? {}) as Record<string, unknown>;
          const terminating = cond.terminating === true;
          const ready = cond.ready !== false;
          if (!ready && !terminating) return;
          if (terminating && cond.serving === false) return;
          ((ep.addresses as string[]) ?? []).forEach((a, ai) => {
            const ip = canonicalIp(String(a));
            if (!ip) throw bad(s, ["endpoints", ei, "addresses", ai], `invalid address ${JSON.stringify(a)}`);
            const k = `${ip}:${match.port}`;
            if (seen.has(k)) return;
            seen.add(k);
            const pod = podOfIp(ip);
            sp.backends.push({ ip, port: Number(match.port), protocol: sp.protocol, state: terminating ? "terminating" : "active", pod: pod?.key, node: str(ep.nodeName) ?? pod?.node });
          });
        });
      }
    }
  } else if (selector) {
    const selected = pods.filter((p) => !p.cluster && p.namespace === ns && Object.entries(selector).every(([k, v]) => p.labels[k] === v));
    ports.forEach((sp, i) => {
      let declared = false;
      for (const p of selected) {
        if (!p.ready && !p.terminating) continue;
        let port: number | undefined;
        if (typeof sp.targetPort === "number") port = sp.targetPort;
        else port = p.containerPorts.find((c) => c.name === sp.targetPort && c.protocol === sp.protocol)?.port;
        if (port === undefined) continue;
        declared = true;
        // One backend per address of the pod: each ClusterIP uses those of its own family (node/services.ts).
        for (const ip of p.hostNetwork ? [p.ip] : p.ips.filter((x, j) => j === 0 || clusterIPs.some((c) => isIpv6(c) === isIpv6(x)))) sp.backends.push({ ip, port, protocol: sp.protocol, state: p.terminating ? "terminating" : "active", pod: p.key, node: p.node });
      }
      if (typeof sp.targetPort === "string" && selected.length && !declared)
        throw bad(o, ["spec", "ports", i, "targetPort"], `targetPort ${JSON.stringify(sp.targetPort)} is not a named ${sp.protocol} port of any selected pod (${selected.map((p) => p.key).join(", ")})`, "UNKNOWN_TARGET_PORT");
    });
  }
}

/** The flows of Traffic documents and Expectations. */
function trafficOf(objects: ManifestObject[]): { traffic: FlowSpec[]; expectations: ExpectationSpec[] } {
  const traffic: FlowSpec[] = [];
  const expectations: ExpectationSpec[] = [];
  for (const o of objects) {
    if (o.kind === "Traffic") {
      const flows = o.raw.spec?.flows;
      if (!Array.isArray(flows)) throw bad(o, ["spec", "flows"], "a Traffic needs spec.flows (a list)");
      flows.forEach((f, i) => traffic.push(flowSpecOf(o, f, ["spec", "flows", i], `${o.metadata.name}[${i}]`)));
    } else if (o.kind === "Expectation") {
      const f = flowSpecOf(o, o.raw.spec, ["spec"], o.metadata.namespace ? `${o.metadata.namespace}/${o.metadata.name}` : o.metadata.name);
      f.name = o.metadata.name;
      const v = o.raw.spec?.verdict;
      if (v !== "allowed" && v !== "denied") throw bad(o, ["spec", "verdict"], `verdict must be allowed or denied (got ${JSON.stringify(v)})`);
      expectations.push({ ...f, verdict: v });
    }
  }
  return { traffic, expectations };
}

/** The cluster as policy/ sees it (ClusterModel, policy/types.ts). */
function clusterModelOf(config: SimConfig, objects: ManifestObject[], nodes: SimNode[], namespaces: NamespaceModel[], pods: SimPod[], services: SimService[]): ClusterModel {
  const model: ClusterModel = {
    clusterName: config.clusterName,
    policyEnforcement: config.policyEnforcement,
    nodeSelectorLabels: config.nodeSelectorLabels,
    nodes: nodes.map((n) => ({ name: n.name, labels: n.labels, ips: [n.ip] })),
    namespaces,
    pods,
    services: services.map(
      (s): ServiceModel => ({
        namespace: s.namespace,
        name: s.name,
        // toServices.k8sServiceSelector selects services by these (cilium/cilium pkg/policy/api/service.go).
        labels: labelsOf(objects.find((o) => o.kind === "Service" && nsOf(o) === s.namespace && o.metadata.name === s.name)?.metadata.labels),
        selector: s.selector,
        ports: s.ports.map((p) => ({ name: p.name, port: p.port, targetPort: p.targetPort, protocol: p.protocol })),
        clusterIP: s.clusterIP,
        endpoints: [...new Set(s.ports.flatMap((p) => p.backends.map((b) => b.ip)))],
      }),
    ),
  };
  return model;
}


/** A global, shared service of another cluster: its selector and ports (its ClusterService). */
interface RemoteService {
  cluster: string;
  namespace: string;
  name: string;
  selector: Record<string, string>;
  ports: { name?: string; port: number; protocol: L4; targetPort: number | string }[];
}

/**
 * Cluster Mesh: a global service's backends across clusters (cilium/cilium pkg/loadbalancer: a global
 * service merges the backends of every cluster's shared service of the same namespace and name).
 *   G1 each other cluster's shared service of the same namespace/name adds its cluster's pods that its
 *      selector selects, on the port of the same name (or the only port), its targetPort resolved there;
 *   G2 service.cilium.io/affinity: local keeps only this cluster's backends while one is active, remote
 *      only the other clusters' while one is active, none keeps all; when the preferred side has no active
 *      backend the others serve (failover).
 */
function addGlobalBackends(svc: SimService, others: RemoteService[], pods: SimPod[]): void {
  for (const sp of svc.ports) {
    for (const r of others) {
      const rp = r.ports.find((x) => (x.name ?? "") === (sp.name ?? "") && x.protocol === sp.protocol) ?? (r.ports.length === 1 && svc.ports.length === 1 ? r.ports[0] : undefined);
      if (!rp) continue;
      for (const p of pods) {
        if (p.cluster !== r.cluster || p.namespace !== r.namespace || !Object.keys(r.selector).length || !Object.entries(r.selector).every(([k, v]) => p.labels[k] === v)) continue;
        if (!p.ready && !p.terminating) continue;
        const port = typeof rp.targetPort === "number" ? rp.targetPort : p.containerPorts.find((c) => c.name === rp.targetPort && c.protocol === sp.protocol)?.port;
        if (port === undefined) continue;
        sp.backends.push({ ip: p.ip, port, protocol: sp.protocol, state: p.terminating ? "terminating" : "active", pod: p.key, node: p.node, cluster: r.cluster });
      }
    }
    const affinity = svc.global?.affinity ?? "none";
    if (affinity === "none") continue;
    const preferred = sp.backends.filter((b) => (affinity === "local") === (b.cluster === undefined));
    if (preferred.some((b) => b.state === "active")) sp.backends = preferred;
  }
}

function ipv4Cmp(a: string, b: string): number {
  const pa = parseIp(a);
  const pb = parseIp(b);
  if (!pa || !pb) return a < b ? -1 : a > b ? 1 : 0;
  return pa.family - pb.family || (pa.addr < pb.addr ? -1 : pa.addr > pb.addr ? 1 : 0);
}

/** The addresses a build handed out, to pin them in a second build (whatif). */
export function allocationOf(c: SimCluster): Allocation {
  const a: Allocation = { nodeIp: new Map(), nodeCidr: new Map(), podIp: new Map(), podIp6: new Map(), podNode: new Map(), serviceIp: new Map(), serviceIp6: new Map(), nodePort: new Map() };
  for (const n of c.nodes) {
    a.nodeIp.set(n.name, n.ip);
    a.nodeCidr.set(n.name, n.podCIDR);
  }
  for (const p of c.pods) {
    if (!p.hostNetwork) a.podIp.set(p.key, p.ip);
    if (!p.hostNetwork && p.ips[1]) a.podIp6.set(p.key, p.ips[1]);
    a.podNode.set(p.key, p.node);
  }
  for (const s of c.services) {
    if (s.clusterIP) a.serviceIp.set(s.key, s.clusterIP);
    if (s.clusterIPs[1]) a.serviceIp6.set(s.key, s.clusterIPs[1]);
    for (const p of s.ports) if (p.nodePort !== undefined) a.nodePort.set(`${s.key}/${p.port}/${p.protocol}`, p.nodePort);
  }
  return a;
}
