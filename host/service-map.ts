/*
 * The service map `ciliate ui` draws (docs/observability.md#service-map-ciliate-ui), built from flows in
 * the shape every ciliate flow source shares: a GetFlowsResponse in proto3 JSON ({flow, node_name, time},
 * flow.proto's Flow; the `ciliate` key with the policy rule index when the flow comes from ciliate itself).
 * `simulate -o json` lines, the agent's export file and an Observer API's GetFlows stream all are that.
 *
 * Nodes:
 *   1. a pod is drawn as its workload: namespace + the first app label it carries (APP_LABELS, the labels
 *      Kubernetes recommends and Hubble UI names its cards by), else its pod name without the replica suffix
 *      a Deployment, ReplicaSet or StatefulSet adds; its pods are listed on the node;
 *   2. a service (the flow's destination_service) is a node of its own, in its namespace;
 *   3. an endpoint outside the cluster is its reserved entity (world, host, remote-node, kube-apiserver, …;
 *      CIDR and FQDN identities are world), with the addresses seen.
 * Connections: the events of one connection (same client address, port and protocol — an ICMP echo: same
 * client and service or server; replies turned around) are one unit, whichever node saw them: the node
 * that translated a service names it, the backend's node only the backend. Its verdict:
 *   1. DROPPED when any deciding event dropped it: a drop, a policy verdict that denied, an L7 request the
 *      proxy refused;
 *   2. FORWARDED otherwise (policy verdicts allowed or redirected it, or only trace events were seen).
 * Edges: client → service → backend workload when the connection went through a service (the backend once
 * an event names the backend pod), else client → server. An edge is `forwarded` when all its connections
 * were, `dropped` when all were dropped, `mixed` otherwise.
 * The deciding rule of a connection: the policy references of its policy-verdict and L7 events (flow.proto
 * `ingress_allowed_by`, `egress_denied_by`, …, with ciliate's rule index and element when present), else
 * an allowing verdict's match type (`an L3-L4 match`), the drop reason, or, for a drop no rule names, "no
 * rule allows it (default deny)".
 */
import { compactLine, EVENT_DROP, EVENT_L7, EVENT_POLICY_VERDICT, MATCH_TYPE_NAMES } from "./flows.ts";
import { flowEventOfHubble, type HubbleFlowJson } from "./hubble-flow-event.ts";

/** App labels in the order a workload is named by (Kubernetes' recommended label first). */
export const APP_LABELS = ["app.kubernetes.io/name", "k8s-app", "app", "name"];

interface PolicyJson {
  kind?: string;
  name?: string;
  namespace?: string;
  rule_index?: number;
  element?: string;
}

type Direction = "ingress" | "egress";
const POLICY_KEYS = [
  ["ingress_allowed_by", "ingress", "allowed"],
  ["egress_allowed_by", "egress", "allowed"],
  ["ingress_denied_by", "ingress", "denied"],
  ["egress_denied_by", "egress", "denied"],
] as const;

/** A flow as an Observer API or `simulate -o json` gives it. */
export interface MapFlowInput {
  flow?: HubbleFlowJson & Partial<Record<(typeof POLICY_KEYS)[number][0], PolicyJson[]>> & { drop_reason_desc?: string; l7?: { type?: string } };
  node_name?: string;
  time?: string;
  ciliate?: { flow_name?: string } & Partial<Record<(typeof POLICY_KEYS)[number][0], PolicyJson[]>>;
}

export type NodeKind = "workload" | "service" | "entity";

export interface MapNode {
  id: string;
  kind: NodeKind;
  name: string;
  namespace?: string;
  /** Pods of a workload, addresses of an entity, in order. */
  members: string[];
}

export type EdgeStatus = "forwarded" | "dropped" | "mixed";

export interface MapEdge {
  id: string;
  from: string;
  to: string;
  status: EdgeStatus;
  forwarded: number;
  dropped: number;
  /** `80/TCP`, … the server ports seen, in order. */
  ports: string[];
}

export interface MapGraph {
  namespaces: string[];
  nodes: MapNode[];
  edges: MapEdge[];
  /** Flows read in total (also those of connections no longer held). */
  flows: number;
}

export interface RuleRef {
  direction: Direction;
  action: "allowed" | "denied";
  /** `CiliumNetworkPolicy default/rule1 rule 0 ingress[0]`, `derived allow-any-egress`. */
  policy: string;
}

export interface MapConnection {
  id: string;
  time: string;
  verdict: "FORWARDED" | "DROPPED";
  client: string;
  server: string;
  service?: string;
  port: string;
  /** The policies that decided, in the order their events came. */
  rules: RuleRef[];
  /** One line: what decided (a rule, a drop reason, default deny). */
  decidedBy: string;
  /** The Traffic document a simulated flow came from. */
  flowName?: string;
  /** An explanation the source adds (the simulator's for a Traffic flow). */
  explanation?: string;
  /** L7 requests and responses seen (flow Summaries). */
  l7: string[];
  /** The connection's events as `hubble observe` compact lines. */
  events: string[];
}

interface Connection {
  id: string;
  time: string;
  seq: number;
  client: string;
  server?: string;
  service?: string;
  clientText: string;
  serverText: string;
  /** The backend (or server) as an event named it. */
  backendText?: string;
  port: string;
  dropped: boolean;
  rules: RuleRef[];
  dropReason?: string;
  l7Denied?: string;
  flowName?: string;
  explanation?: string;
  l7: string[];
  events: string[];
}

function labelValue(labels: readonly string[], key: string): string | undefined {
  for (const l of labels) {
    const body = l.slice(l.indexOf(":") + 1);
    if (body.startsWith(`${key}=`)) return body.slice(key.length + 1);
  }
  return undefined;
}

/** A pod's name without the suffix its controller adds: `web-7d4b9c8f6-x2x9q` → `web`, `db-0` → `db`. */
export function workloadOfPodName(pod: string): string {
  const deploy = /^(.+)-[a-z0-9]{6,10}-[a-z0-9]{5}$/.exec(pod);
  if (deploy) return deploy[1]!;
  const ordinal = /^(.+)-\d+$/.exec(pod);
  if (ordinal) return ordinal[1]!;
  const rs = /^(.+)-[a-z0-9]{5}$/.exec(pod);
  return rs && /\d/.test(pod.slice(-5)) ? rs[1]! : pod;
}

const RESERVED_BY_IDENTITY: Record<number, string> = { 1: "host", 2: "world", 3: "unmanaged", 4: "health", 5: "init", 6: "remote-node", 7: "kube-apiserver", 8: "ingress", 9: "world", 10: "world" };

interface EndpointJson {
  identity?: number;
  namespace?: string;
  pod_name?: string;
  labels?: string[];
}

/** The node an endpoint is drawn as (rules 1 and 3) and the text naming it in a connection. */
function endpointNode(e: EndpointJson | undefined, ip: string): { node: MapNode; text: string } {
  const labels = e?.labels ?? [];
  if (e?.pod_name || (e?.namespace && labels.some((l) => l.startsWith("k8s:")))) {
    const ns = e.namespace ?? "";
    const app = APP_LABELS.map((k) => labelValue(labels, k)).find((v) => v);
    const name = app ?? (e.pod_name ? workloadOfPodName(e.pod_name) : `identity ${e.identity ?? 0}`);
    const member = e.pod_name ?? ip;
    return { node: { id: `workload:${ns}/${name}`, kind: "workload", name, namespace: ns, members: member ? [member] : [] }, text: e.pod_name ? `${ns}/${e.pod_name}` : `${ns}/${name} ${ip}` };
  }
  const reserved = labels.find((l) => l.startsWith("reserved:"))?.slice("reserved:".length);
  // CIDR and FQDN identities, and an address with no identity known, are outside the cluster: world.
  const entity = reserved ?? RESERVED_BY_IDENTITY[e?.identity ?? 0] ?? "world";
  const name = entity === "world-ipv4" || entity === "world-ipv6" ? "world" : entity;
  return { node: { id: `entity:${name}`, kind: "entity", name, members: ip ? [ip] : [] }, text: ip ? `${ip} (${name})` : name };
}

function protocolOf(f: HubbleFlowJson): { proto: string; sport: number; dport: number } {
  const l4 = f.l4 ?? {};
  for (const p of ["TCP", "UDP", "SCTP"]) {
    const v = l4[p];
    if (v) return { proto: p, sport: v.source_port ?? 0, dport: v.destination_port ?? 0 };
  }
  if (l4.ICMPv4) return { proto: "ICMP", sport: 0, dport: 0 };
  if (l4.ICMPv6) return { proto: "ICMPv6", sport: 0, dport: 0 };
  return { proto: "IP", sport: 0, dport: 0 };
}

function policyText(p: PolicyJson): string {
  const where = p.namespace ? `${p.namespace}/${p.name ?? ""}` : (p.name ?? "");
  const rule = p.rule_index !== undefined && p.kind !== "derived" ? ` rule ${p.rule_index}` : "";
  return [p.kind ?? "policy", where, `${rule.trim()}`, p.element ?? ""].filter(Boolean).join(" ");
}

/** A connection's deciding rule as one line. */
function decidedBy(c: Connection): string {
  // In the packet's order: egress at the client's node, then ingress at the server's (two nodes' clocks
  // may order their events the other way round).
  const rules = [...c.rules.filter((r) => r.direction === "egress"), ...c.rules.filter((r) => r.direction === "ingress")];
  const denied = rules.filter((r) => r.action === "denied");
  if (c.dropped) {
    if (denied.length) return denied.map((r) => `${r.direction}: denied by ${r.policy}`).join("; ");
    if (c.l7Denied) {
      const allowed = rules.filter((r) => r.action === "allowed" && r.direction === "ingress");
      return `L7 request refused by the proxy (${c.l7Denied})${allowed.length ? `; L3/L4 allowed by ${allowed.map((r) => r.policy).join(", ")}` : ""}`;
    }
    return `no rule allows it (default deny${c.dropReason ? `, ${c.dropReason}` : ""})`;
  }
  const allowed = rules.filter((r) => r.action === "allowed");
  return allowed.length ? allowed.map((r) => `${r.direction}: allowed by ${r.policy}`).join("; ") : "no policy decision seen (trace events only)";
}

export interface ServiceMapOptions {
  /** Connections held (the oldest are forgotten first); their counts stay on the edges. */
  maxConnections?: number;
  /** Events kept per connection. */
  maxEvents?: number;
}

/** The service map of every flow added so far. */
export class ServiceMap {
  private readonly nodes = new Map<string, MapNode>();
  private readonly conns = new Map<string, Connection>();
  private readonly forgotten = new Map<string, { forwarded: number; dropped: number; ports: Set<string> }>();
  private seq = 0;
  private total = 0;
  private readonly maxConnections: number;
  private readonly maxEvents: number;

  constructor(o: ServiceMapOptions = {}) {
    this.maxConnections = o.maxConnections ?? 10_000;
    this.maxEvents = o.maxEvents ?? 64;
  }

  private node(n: MapNode): string {
    const had = this.nodes.get(n.id);
    if (!had) this.nodes.set(n.id, { ...n, members: [...n.members] });
    else for (const m of n.members) if (!had.members.includes(m)) had.members.push(m);
    return n.id;
  }

  /** Adds one flow (a GetFlowsResponse without a flow, e.g. a node_status, is ignored). */
  add(r: MapFlowInput, explanation?: string): void {
    const f = r.flow;
    if (!f) return;
    this.total++;
    const reply = f.is_reply === true;
    const { proto, sport, dport } = protocolOf(f);
    const clientEp = reply ? f.destination : f.source;
    const serverEp = reply ? f.source : f.destination;
    const clientIp = (reply ? f.IP?.destination : f.IP?.source) ?? "";
    const serverIp = (reply ? f.IP?.source : f.IP?.destination) ?? "";
    const clientPort = reply ? dport : sport;
    const serverPort = reply ? sport : dport;
    const svc = f.destination_service?.name ? f.destination_service : reply && f.source_service?.name ? f.source_service : undefined;
    const serviceId = svc ? this.node({ id: `service:${svc.namespace ?? ""}/${svc.name}`, kind: "service", name: svc.name!, namespace: svc.namespace ?? "", members: [] }) : undefined;
    const client = endpointNode(clientEp, clientIp);
    const clientId = this.node(client.node);
    // Through a service, the server side is the backend only once an event names the backend pod.
    const server = !svc || serverEp?.pod_name ? endpointNode(serverEp, serverIp) : undefined;
    const serverId = server ? this.node(server.node) : undefined;
    // A client address and port name one connection whatever the server side says: the node that
    // translated a service knows the service, the backend's node only the backend (an ICMP echo: the pair).
    const key = clientPort ? `${proto} ${clientIp}:${clientPort}` : `${proto} ${clientIp} ${serviceId ?? serverIp}`;
    let c = this.conns.get(key);
    if (!c) {
      c = {
        id: `c${++this.seq}`,
        seq: this.seq,
        time: f.time ?? r.time ?? "",
        client: clientId,
        clientText: client.text,
        serverText: server?.text ?? (svc ? `${svc.namespace}/${svc.name} (service)` : serverIp),
        port: proto === "ICMP" || proto === "ICMPv6" || proto === "IP" ? proto : `${serverPort}/${proto}`,
        dropped: false,
        rules: [],
        l7: [],
        events: [],
        ...(serviceId ? { service: serviceId } : {}),
      };
      this.conns.set(key, c);
      this.evict();
    }
    if (serviceId && !c.service) c.service = serviceId;
    if (serverId && !c.server) c.server = serverId;
    if (server && !c.backendText) c.backendText = server.text;
    if (c.service && c.backendText) c.serverText = `${c.backendText} via ${c.service.slice("service:".length)}`;
    else if (c.backendText) c.serverText = c.backendText;
    const flowName = r.ciliate?.flow_name;
    if (flowName) c.flowName = flowName;
    if (explanation) c.explanation = explanation;
    const type = f.event_type?.type ?? 0;
    const verdict = f.verdict ?? "";
    const l7Request = type === EVENT_L7 && f.l7?.type !== "RESPONSE";
    // Rule 1: a drop event, a denying policy verdict, a refused L7 request (trace events forward only).
    if (type === EVENT_DROP || verdict === "DROPPED") {
      c.dropped = true;
      if (f.drop_reason_desc && !c.dropReason) c.dropReason = f.drop_reason_desc;
      if (l7Request) c.l7Denied = f.Summary ?? "L7";
    }
    if (type === EVENT_POLICY_VERDICT || type === EVENT_L7) {
      const rule = (direction: Direction, action: RuleRef["action"], policy: string) => {
        if (!c!.rules.some((x) => x.direction === direction && x.action === action && x.policy === policy)) c!.rules.push({ direction, action, policy });
      };
      let named = false;
      for (const [k, direction, action] of POLICY_KEYS) {
        // ciliate's own references carry the rule index and element; Hubble's the object only.
        const refs = r.ciliate?.[k] ?? f[k] ?? [];
        for (const p of refs) rule(direction, action, policyText(p));
        named ||= refs.length > 0;
      }
      // A verdict that names no policy (a datapath record carries the match, not the rule): its match type.
      const direction = f.traffic_direction === "INGRESS" ? "ingress" : f.traffic_direction === "EGRESS" ? "egress" : undefined;
      if (!named && type === EVENT_POLICY_VERDICT && direction && verdict !== "DROPPED") rule(direction, "allowed", `an ${MATCH_TYPE_NAMES[f.policy_match_type ?? 0] ?? "unknown"} match (the flow names no policy)`);
    }
    if (type === EVENT_L7 && f.Summary) c.l7.push(f.Summary);
    if (c.events.length < this.maxEvents) c.events.push(compactLine(flowEventOfHubble(f, r.node_name, r.time)));
  }

  private evict(): void {
    while (this.conns.size > this.maxConnections) {
      const [key, c] = this.conns.entries().next().value as [string, Connection];
      this.conns.delete(key);
      for (const id of this.edgeIds(c)) {
        const g = this.forgotten.get(id) ?? { forwarded: 0, dropped: 0, ports: new Set<string>() };
        if (c.dropped) g.dropped++;
        else g.forwarded++;
        g.ports.add(c.port);
        this.forgotten.set(id, g);
      }
    }
  }

  /** The edges a connection is drawn on. */
  private edgeIds(c: Connection): string[] {
    if (c.service) return [`${c.client}->${c.service}`, ...(c.server ? [`${c.service}->${c.server}`] : [])];
    return c.server ? [`${c.client}->${c.server}`] : [];
  }

  graph(): MapGraph {
    const edges = new Map<string, MapEdge & { portSet: Set<string> }>();
    const edge = (id: string) => {
      let e = edges.get(id);
      if (!e) {
        const [from, to] = id.split("->") as [string, string];
        e = { id, from, to, status: "forwarded", forwarded: 0, dropped: 0, ports: [], portSet: new Set() };
        edges.set(id, e);
      }
      return e;
    };
    for (const [id, g] of this.forgotten) {
      const e = edge(id);
      e.forwarded += g.forwarded;
      e.dropped += g.dropped;
      for (const p of g.ports) e.portSet.add(p);
    }
    for (const c of this.conns.values())
      for (const id of this.edgeIds(c)) {
        const e = edge(id);
        if (c.dropped) e.dropped++;
        else e.forwarded++;
        e.portSet.add(c.port);
      }
    const out: MapEdge[] = [...edges.values()]
      .map(({ portSet, ...e }) => ({ ...e, ports: [...portSet].sort(), status: (e.dropped === 0 ? "forwarded" : e.forwarded === 0 ? "dropped" : "mixed") as EdgeStatus }))
      .sort((a, b) => (a.id < b.id ? -1 : a.id > b.id ? 1 : 0));
    const nodes = [...this.nodes.values()].map((n) => ({ ...n, members: [...n.members].sort() })).sort((a, b) => (a.id < b.id ? -1 : a.id > b.id ? 1 : 0));
    const namespaces = [...new Set(nodes.map((n) => n.namespace).filter((n): n is string => n !== undefined))].sort();
    return { namespaces, nodes, edges: out, flows: this.total };
  }

  /** The connections drawn on an edge (oldest first), each with its deciding rule and events. */
  connections(edgeId: string): MapConnection[] {
    const out: MapConnection[] = [];
    for (const c of this.conns.values()) {
      if (!this.edgeIds(c).includes(edgeId)) continue;
      out.push({
        id: c.id,
        time: c.time,
        verdict: c.dropped ? "DROPPED" : "FORWARDED",
        client: c.clientText,
        server: c.serverText,
        ...(c.service ? { service: c.service.slice("service:".length) } : {}),
        port: c.port,
        rules: c.rules,
        decidedBy: decidedBy(c),
        ...(c.flowName ? { flowName: c.flowName } : {}),
        ...(c.explanation ? { explanation: c.explanation } : {}),
        l7: c.l7,
        events: c.events,
      });
    }
    return out;
  }
}
