// Shared types of the policy engine: the cluster model the engine takes as input (built by the simulator
// from manifests and IPAM, or by clusterFromManifests), the internal rule form every policy kind is
// translated to, and the compiled per-endpoint map state with provenance.

import type { SourceRef } from "./errors.ts";

export type Protocol = "TCP" | "UDP" | "SCTP" | "ICMP" | "ICMPv6";
export type Direction = "ingress" | "egress";
export type EnforcementMode = "default" | "always" | "never";

/* ------------------------------------------------------------------------------------------------ */
/* Cluster model                                                                                      */

export interface ContainerPort {
  name?: string;
  port: number;
  protocol: "TCP" | "UDP" | "SCTP";
}

export interface NamespaceModel {
  name: string;
  labels: Record<string, string>;
}

export interface PodModel {
  namespace: string;
  name: string;
  labels: Record<string, string>;
  serviceAccount?: string;
  node?: string;
  hostNetwork?: boolean;
  containerPorts: ContainerPort[];
  ips?: string[];
  /**
   * Cluster Mesh: the cluster the pod runs in when it is not the model's own (`clusterName`). Its identity
   * carries that cluster's name (io.cilium.k8s.policy.cluster), and its key is `cluster/namespace/name`.
   */
  cluster?: string;
  /** With `cluster`: the labels of its namespace as its cluster has them (the model's namespaces are its own). */
  namespaceLabels?: Record<string, string>;
}

export interface ServicePortModel {
  name?: string;
  port: number;
  targetPort?: number | string;
  protocol: "TCP" | "UDP" | "SCTP";
}

export interface ServiceModel {
  namespace: string;
  name: string;
  labels?: Record<string, string>;
  /** Undefined or empty: a service without selector (endpoints given explicitly). */
  selector?: Record<string, string>;
  ports: ServicePortModel[];
  clusterIP?: string;
  /** Backend IPs when known (EndpointSlices); used for services without a selector. */
  endpoints?: string[];
}

/** A node as its Node object gives it: its labels select it in fromNodes/toNodes. */
export interface NodeModel {
  name: string;
  labels: Record<string, string>;
  /** Its addresses (InternalIP), which the ipcache maps to its identity. */
  ips: string[];
}

export interface ClusterModel {
  clusterName: string;
  policyEnforcement: EnforcementMode;
  namespaces: NamespaceModel[];
  pods: PodModel[];
  services: ServiceModel[];
  /** The cluster's nodes (optional: without them every remote node is the reserved remote-node identity). */
  nodes?: NodeModel[];
  /**
   * Cilium's agent option enable-node-selector-labels (Helm nodeSelectorLabels), off by default: remote nodes
   * get identities derived from their labels (remote-node scope) and fromNodes/toNodes are accepted.
   */
  nodeSelectorLabels?: boolean;
  /**
   * Cluster Mesh (a multi-cluster scenario): the id of every cluster of the mesh by name. With it, each
   * pod label set is numbered as its own cluster's allocator would number it (the cluster named by its
   * io.cilium.k8s.policy.cluster label; cluster id in bits 16–23), so every cluster's view gives one
   * label set the same number. Without it, cluster identities count up from 256.
   */
  clusterIds?: Record<string, number>;
}

/* ------------------------------------------------------------------------------------------------ */
/* Labels and selectors                                                                               */

export interface Label {
  source: string;
  key: string;
  value: string;
}

export type SelectorOp = "In" | "NotIn" | "Exists" | "DoesNotExist";

/** One requirement; source "any" matches a label of any source. */
export interface Requirement {
  source: string;
  key: string;
  op: SelectorOp;
  values: string[];
}

/** A label selector after parsing; an empty requirement list selects everything. */
export interface Selector {
  requirements: Requirement[];
}

/* ------------------------------------------------------------------------------------------------ */
/* Internal rules                                                                                     */

export type PolicyKind = "CiliumNetworkPolicy" | "CiliumClusterwideNetworkPolicy" | "NetworkPolicy";

export interface RuleOrigin {
  kind: PolicyKind;
  namespace: string;
  name: string;
  /** Index of the rule in `specs` (0 for `spec` and NetworkPolicy). */
  ruleIndex: number;
}

/** A peer of a rule: who is on the other side. */
export type Peer =
  | { type: "selector"; selector: Selector; text: string }
  | { type: "entity"; entity: string }
  | { type: "cidr"; cidr: string; except: string[] }
  /** Every identity, including world (identity 0 in the map). */
  | { type: "all" }
  /** toServices: resolved against the cluster's services at compile time. */
  | { type: "service"; namespace: string; name?: string; selector?: Selector }
  /** toFQDNs: the addresses the DNS proxy learned for names the selector matches (set at compile time from the FQDN cache). */
  | { type: "fqdn"; selector: DnsRule; ips?: string[] }
  | { type: "none" };

export interface PortSpec {
  /** A number, or a named port resolved per destination pod. 0 = every port. */
  port: number | string;
  endPort?: number;
  /** ANY expands to TCP, UDP and SCTP. VRRP and IGMP (no ports) need enable-extended-ip-protocols. */
  protocol: "TCP" | "UDP" | "SCTP" | "ANY" | "ICMP" | "ICMPv6" | "VRRP" | "IGMP";
  /** Set when this port carries L7 rules. */
  l7?: L7Rules;
  /** TLS SNI names the connection must name (PortRule.serverNames); enforced by the TLS proxy. */
  serverNames?: string[];
}

export interface HttpHeaderMatch {
  name: string;
  value?: string;
  mismatch?: string;
}

export interface HttpRule {
  method?: string;
  path?: string;
  host?: string;
  headers?: string[];
  headerMatches?: HttpHeaderMatch[];
}

/** One `rules.kafka[]` element as written (validated; see l7/kafka.ts for its meaning). */
export interface KafkaRule {
  role?: "produce" | "consume";
  apiKey?: string;
  apiVersion?: string;
  clientID?: string;
  topic?: string;
}

/** One rules.dns entry or toFQDNs selector: exactly one of the two is set. */
export interface DnsRule {
  matchName?: string;
  matchPattern?: string;
}

export interface L7Rules {
  http?: HttpRule[];
  kafka?: KafkaRule[];
  dns?: DnsRule[];
}

/** The protocol a proxy listener speaks (Cilium's L7 parser type of the port). */
export type L7Protocol = "http" | "kafka" | "dns" | "tls";

/** One ingress/egress (allow or deny) element of a rule after translation. */
export interface PeerRule {
  direction: Direction;
  deny: boolean;
  /** Position in the ingress/egress/ingressDeny/egressDeny list. */
  index: number;
  /** L3 peers, OR'ed. Empty list with ports = any peer. */
  peers: Peer[];
  /** fromRequires/toRequires: AND'ed with every selector peer. */
  requires: Selector[];
  /** L4; null = every protocol and port (L3-only). */
  ports: PortSpec[] | null;
}

export interface InternalRule {
  origin: RuleOrigin;
  /** A nodeSelector rule (host policy): its subject selects host endpoints (a node's labels plus
   * reserved:host), never pods; an endpointSelector rule never selects a host endpoint. */
  host?: boolean;
  subject: Selector;
  subjectText: string;
  rules: PeerRule[];
  /** A rule "touches" a direction if it has allow or deny entries there (or an empty K8s entry). */
  touches: { ingress: boolean; egress: boolean };
  defaultDeny: { ingress: boolean; egress: boolean };
}

/* ------------------------------------------------------------------------------------------------ */
/* Identities                                                                                         */

export interface Identity {
  id: number;
  labels: Label[];
  /** For CIDR identities: the prefix. */
  cidr?: string;
  /** Pods (ns/name) carrying this identity. */
  pods: string[];
  /** Remote nodes carrying this identity (enable-node-selector-labels). */
  nodes?: string[];
}

/* ------------------------------------------------------------------------------------------------ */
/* Compiled map state                                                                                 */

/** Where an entry came from: a rule element and the peer selector, or a fixed entry. */
export interface Provenance {
  kind: PolicyKind | "derived";
  namespace: string;
  name: string;
  ruleIndex: number;
  /** e.g. "ingress[0]", "egressDeny[1]", or for derived entries "allow-any-ingress". */
  element: string;
  peer: string;
}

export interface MapStateKey {
  identity: number;
  direction: Direction;
  /** 0 = any protocol (then portPrefix is 0). */
  protocol: number;
  port: number;
  /** Bits of the port that must match (0..16). */
  portPrefix: number;
}

export interface MapStateEntry {
  key: MapStateKey;
  deny: boolean;
  proxyPort: number;
  proxyPortPriority: number;
  provenance: Provenance[];
  cookie: number;
}

/** One peer rule at a listener; only the list of the listener's protocol is set, null = allow every request. */
export interface ListenerRule {
  /** Remote identities the rule applies to (0 = any). */
  identities: number[];
  http: HttpRule[] | null;
  kafka: KafkaRule[] | null;
  dns: DnsRule[] | null;
  serverNames: string[] | null;
  provenance: Provenance;
}

export interface ProxyListener {
  proxyPort: number;
  endpoint: string;
  direction: Direction;
  /** The L7 protocol the proxy on this port speaks. */
  protocol: L7Protocol;
  /** IP protocol number and port (prefix) of the redirected traffic. */
  l4Protocol: number;
  port: number;
  portPrefix: number;
  rules: ListenerRule[];
}

export interface EndpointPolicy {
  endpoint: string;
  identity: number;
  enforced: { ingress: boolean; egress: boolean };
  entries: MapStateEntry[];
}

export interface ManifestObject {
  apiVersion: string;
  kind: string;
  metadata: { name: string; namespace?: string; labels?: Record<string, string>; [k: string]: unknown };
  // eslint-disable-next-line @typescript-eslint/no-explicit-any
  raw: any;
  source?: SourceRef;
}
