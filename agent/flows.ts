/*
 * Flow events on a node: the datapath writes a TraceRecord into the ciliate_events_v1 ring buffer for every
 * drop and every policy verdict of a new flow (CONFIG_F_EVENTS; every packet with CONFIG_F_EVENTS_ALL); the
 * agent polls it, decodes each record into a Hubble-shaped flow (host/trace-flow.ts, so `ciliate
 * observe` prints exactly what `ciliate simulate` prints), names the pods from the desired state, and keeps
 * the last N in a ring for `--last`, with subscribers for `--follow` (Hubble's observer: pkg/hubble/observer
 * keeps a ring buffer of flows the same way).
 */
import { EVENT_L7, identityText, type FlowEndpoint, type FlowEvent, type PolicyRef } from "../host/flows.ts";
import { serviceFrontendKey, type FlowNames } from "../host/trace-flow.ts";
import type { DesiredState } from "./desired.ts";
import type { L7FlowEvent } from "./proxy/types.ts";

export function namesFrom(d: DesiredState | undefined, nodeName: string): FlowNames {
  const podByIp = new Map<string, { namespace: string; name: string; labels: Record<string, string> }>();
  const identityLabels = new Map<number, string[]>();
  if (d) {
    for (const p of d.cluster.pods) {
      if (p.hostNetwork) continue;
      podByIp.set(p.ip, { namespace: p.namespace, name: p.name, labels: p.labels });
      const id = d.podIdentity.get(p.key);
      if (id !== undefined && !identityLabels.has(id)) identityLabels.set(id, [...Object.entries(p.labels).map(([k, v]) => `k8s:${k}=${v}`), `k8s:io.kubernetes.pod.namespace=${p.namespace}`].sort());
    }
  }
  const serviceByFrontend = new Map<string, { namespace: string; name: string }>();
  for (const svc of d?.cluster.services ?? [])
    for (const ip of [svc.clusterIP, ...svc.externalIPs, ...svc.loadBalancerIPs])
      if (ip && ip !== "None") for (const port of svc.ports) serviceByFrontend.set(serviceFrontendKey(ip, port.port), { namespace: svc.namespace, name: svc.name });
  const policyByCookie = new Map<number, PolicyRef[]>();
  for (const [cookie, rules] of d?.provenanceByCookie ?? []) policyByCookie.set(cookie, rules.map((p) => ({ kind: p.kind, name: p.name, namespace: p.namespace, rule_index: p.ruleIndex, element: p.element })));
  return { podByIp, identityLabels, nodeName, serviceByFrontend, policyByCookie };
}

export interface FlowFilter {
  fromPod?: string;
  toPod?: string;
  verdict?: string;
  port?: number;
}

function podRef(e: FlowEndpoint): string | undefined {
  return e.pod_name ? `${e.namespace}/${e.pod_name}` : undefined;
}

/** Hubble's filter semantics: --from-pod ns/name (or name in default), --verdict FORWARDED|DROPPED|…, --port either side. */
export function matches(f: FlowEvent, q: FlowFilter): boolean {
  const norm = (p: string) => (p.includes("/") ? p : `default/${p}`);
  if (q.fromPod && podRef(f.source) !== norm(q.fromPod)) return false;
  if (q.toPod && podRef(f.destination) !== norm(q.toPod)) return false;
  if (q.verdict && f.verdict !== q.verdict.toUpperCase()) return false;
  if (q.port !== undefined && f.src_port !== q.port && f.dst_port !== q.port) return false;
  return true;
}

export class FlowStore {
  private readonly ring: FlowEvent[] = [];
  private readonly subscribers = new Set<(f: FlowEvent) => void>();
  /** Flows seen since start, by type (for the metrics). */
  seen = 0;

  constructor(readonly capacity = 4096) {}

  /** Flows held now (at most capacity). */
  get size(): number {
    return this.ring.length;
  }

  /** The flows held, oldest first. */
  all(): readonly FlowEvent[] {
    return this.ring;
  }

  push(f: FlowEvent): void {
    this.seen++;
    this.ring.push(f);
    if (this.ring.length > this.capacity) this.ring.splice(0, this.ring.length - this.capacity);
    for (const s of this.subscribers) s(f);
  }

  last(n: number, q: FlowFilter = {}): FlowEvent[] {
    const out = this.ring.filter((f) => matches(f, q));
    return n > 0 ? out.slice(-n) : out;
  }

  subscribe(fn: (f: FlowEvent) => void): () => void {
    this.subscribers.add(fn);
    return () => this.subscribers.delete(fn);
  }
}

/**
 * An L7 flow from the node's proxy (agent/proxy) as Hubble shows it, in the shape the simulator prints for
 * its modelled proxy (sim/simulator.ts): Type L7, event http-request / http-response, the
 * proxy port, and the request's verdict. Names come from the agent's desired state, as for L3/L4 flows.
 */
export function l7FlowOf(e: L7FlowEvent, names: FlowNames, now = new Date()): FlowEvent {
  const reply = e.type === "RESPONSE";
  const [from, to] = reply ? [e.destination, e.source] : [e.source, e.destination];
  const ep = (p: { ip: string; identity: number }): FlowEndpoint => {
    const pod = names.podByIp.get(p.ip);
    const labels = names.identityLabels.get(p.identity) ?? (p.identity > 0 && p.identity < 256 ? [`reserved:${identityText(p.identity)}`] : []);
    return pod ? { identity: p.identity, namespace: pod.namespace, pod_name: pod.name, labels } : { identity: p.identity, labels, ip: p.ip };
  };
  const l7: Record<string, unknown> = { type: e.type, ...(e.latencyNs !== undefined ? { latency_ns: e.latencyNs } : {}) };
  // Hubble's Layer7 records (flow.proto): snake_case fields, Kafka's topic as a string.
  if (e.http) l7.http = e.http;
  if (e.kafka) l7.kafka = { error_code: e.kafka.errorCode, api_version: e.kafka.apiVersion, api_key: e.kafka.apiKey, correlation_id: e.kafka.correlationId, topic: e.kafka.topic };
  if (e.dns) l7.dns = e.dns;
  if (e.tls) l7.tls = { server_name: e.tls.serverName };
  const what = e.http ? `${e.http.protocol} ${reply ? `${e.http.code ?? ""} ` : ""}${e.http.method} ${e.http.url}` : e.kafka ? `Kafka ${e.kafka.apiKey} ${e.kafka.topic}` : e.dns ? `DNS ${e.dns.query}` : e.tls ? `TLS ${e.tls.serverName}` : e.protocol;
  return {
    time: now.toISOString(),
    verdict: e.verdict,
    IP: { source: from.ip, destination: to.ip, ipVersion: from.ip.includes(":") ? "IPv6" : "IPv4" },
    l4: { [e.l4 ?? "TCP"]: { source_port: from.port, destination_port: to.port } },
    source: ep(from),
    destination: ep(to),
    Type: "L7",
    node_name: names.nodeName,
    event_type: { type: EVENT_L7 },
    traffic_direction: e.direction === "ingress" ? "INGRESS" : "EGRESS",
    is_reply: reply,
    l7: l7 as FlowEvent["l7"],
    proxy_port: e.proxyPort,
    Summary: `${what} (${e.reason})`,
    event: `${e.protocol}-${reply ? "response" : "request"}`,
    src_port: from.port,
    dst_port: to.port,
  };
}
