// Per-endpoint policy-map state, computed as Cilium's agent does (pkg/policy/repository.go,
// pkg/policy/mapstate.go, pkg/policy/l4.go):
//  1. Enforcement per direction (computePolicyEnforcementAndRules): mode never → none; always → both;
//     default → a direction is enforced when a selecting rule touches it; when every touching rule has
//     enableDefaultDeny false, a wildcard allow is added (deny rules still apply).
//  2. Each rule element → (peer identity set) × (protocol, port prefix) keys; identity 0 = any peer;
//     ANY expands to TCP, UDP, SCTP; named ports resolve per destination pod; ranges become prefixes.
//  3. Deny-preferred insertion: an entry covered by a broader-or-equal deny (same identity or identity 0)
//     is dropped; a deny removes every narrower-or-equal entry it covers; identical keys merge.
//  4. A port with L7 rules (HTTP, Kafka, DNS) or TLS serverNames becomes a proxy redirect for every allow on
//     that port (peers without L7 rules get allow-all at that proxy), with a deterministic proxy port per
//     (endpoint, direction, L4 key) and one protocol per listener: a port whose rules mix kinds is refused
//     (PolicyL7ConflictError), as Cilium refuses to merge conflicting L7 parsers (pkg/policy/l4.go).
//  5. Fixed entries: allow-any per direction that is not enforced; localhost (host, identity 1) ingress.
//  6. Budget: more entries than policyMapMax is an error naming the endpoint and the policies.
// toFQDNs peers select the CIDR identities (/32, /128) of the addresses the FQDN cache holds for the names
// they match (CompileOptions.fqdn, the cache's state at compile time), as Cilium turns learned names into
// CIDR identities (pkg/policy/api/fqdn.go, pkg/fqdn/namemanager); with nothing learned they select nothing.
// Every entry keeps its provenance; cookies number the distinct provenance sets deterministically.

import { ID_HOST, ID_INIT, IPPROTO_ICMP, IPPROTO_ICMPV6 } from "../host/constants.gen.ts";
import { cidrContains, parseCidr, parseIp } from "./cidr.ts";
import { PolicyBudgetError, PolicyError, PolicyL7ConflictError } from "./errors.ts";
import type { FqdnState } from "./fqdn-cache.ts";
import { dnsSelectorMatches, dnsSelectorText } from "./l7/dns.ts";
import { allocateIdentities, ENTITY_IDENTITY, LOCAL_IDENTITY_SCOPE, type IdentityTable } from "./identity.ts";
import { LABEL_CLUSTER, labelString, podKeyOf, sortLabels } from "./labels.ts";
import { portInPrefix, portRangeToPrefixes, PROTO_NUMBERS } from "./ports.ts";
import { selectorMatches, selectorText } from "./selector.ts";
import { SelectorCache, selectorKey } from "./selector-cache.ts";
import type {
  ClusterModel,
  Direction,
  DnsRule,
  EndpointPolicy,
  InternalRule,
  Label,
  L7Protocol,
  ListenerRule,
  MapStateEntry,
  MapStateKey,
  NodeModel,
  Peer,
  PeerRule,
  PodModel,
  PortSpec,
  Provenance,
  ProxyListener,
} from "./types.ts";

export interface CompileOptions {
  /** Per-endpoint entry budget (Cilium bpf-policy-map-max). */
  policyMapMax?: number;
  /** First proxy port handed out. */
  proxyPortBase?: number;
  /** allow-localhost (default true = Cilium's auto/always). */
  allowLocalhost?: boolean;
  dualStack?: boolean;
  /** Extra label-filter patterns (as --labels). */
  labelFilter?: string[];
  /** The FQDN cache's state (names → learned addresses) that toFQDNs selectors select from. */
  fqdn?: FqdnState;
  /**
   * Computes every endpoint's policy on its own instead of once per identity (and per pod ports where
   * ingress named ports need them): the reference the shared computation is checked against
   * (compile-incremental.test.ts). Same result, slower.
   */
  perEndpoint?: boolean;
}

export interface CompiledPolicy {
  cluster: ClusterModel;
  identities: IdentityTable;
  /** prefix → CIDR identity, for the ipcache. */
  cidrIdentities: { prefix: string; identity: number }[];
  /** By "ns/name". Host-networked pods have none. */
  endpoints: Map<string, EndpointPolicy>;
  /**
   * The host endpoint of each node (by node name): the policy of host policies (nodeSelector rules) for
   * the node, as Cilium computes it for its host endpoint (identity reserved:host; labels the node's, source
   * k8s, plus reserved:host). Its entries are written under the node's host endpoint id only with the host
   * firewall on (node/desired.ts); a node no host policy selects allows everything.
   */
  hostEndpoints: Map<string, EndpointPolicy>;
  /** cookie → provenance of the entry. */
  provenance: Map<number, Provenance[]>;
  proxies: Map<number, ProxyListener>;
  errors: PolicyError[];
  /** Accepted but narrowed: e.g. a port name with several numbers among one identity's pods. */
  warnings: PolicyError[];
}

export const DEFAULT_POLICY_MAP_MAX = 16384;
/** Key in CompiledPolicy.endpoints of the policy of an endpoint with the reserved:init identity. */
export const INIT_ENDPOINT = "reserved:init";
export const DEFAULT_PROXY_PORT_BASE = 10000;
export const REDIRECT_PRIORITY = 1;

export function keyString(k: MapStateKey): string {
  return `${k.direction}/${k.identity}/${k.protocol}/${k.port}/${k.portPrefix}`;
}

/** True when `a` covers `b` on protocol/port (same direction assumed). */
export function l4Covers(a: MapStateKey, b: MapStateKey): boolean {
  if (a.protocol === 0) return true;
  if (a.protocol !== b.protocol) return false;
  return a.portPrefix <= b.portPrefix && portInPrefix(b.port, { port: a.port, prefix: a.portPrefix });
}

function sameKey(a: MapStateKey, b: MapStateKey): boolean {
  return keyString(a) === keyString(b);
}

function provKey(p: Provenance): string {
  return `${p.kind}|${p.namespace}|${p.name}|${p.ruleIndex}|${p.element}|${p.peer}`;
}

function mergeProv(into: Provenance[], from: Provenance[]): void {
  const have = new Set(into.map(provKey));
  for (const p of from) if (!have.has(provKey(p))) into.push(p);
}

/** Rule 3: deny-preferred insertion into one endpoint's map state. */
export function denyPreferredInsert(state: Map<string, MapStateEntry>, e: MapStateEntry): void {
  const k = e.key;
  for (const o of state.values()) {
    if (!o.deny || o.key.direction !== k.direction) continue;
    if (o.key.identity !== k.identity && o.key.identity !== 0) continue;
    if (!l4Covers(o.key, k)) continue;
    if (e.deny && sameKey(o.key, k)) {
      mergeProv(o.provenance, e.provenance);
      return;
    }
    return; // covered by a broader-or-equal deny
  }
  if (e.deny) {
    for (const [ks, o] of state) {
      if (o.key.direction !== k.direction) continue;
      if (k.identity !== 0 && o.key.identity !== k.identity) continue;
      if (l4Covers(k, o.key)) state.delete(ks);
    }
    state.set(keyString(k), e);
    return;
  }
  const ks = keyString(k);
  const o = state.get(ks);
  if (!o) {
    state.set(ks, e);
    return;
  }
  // Same-key merge of two allows: prefer a redirect; then higher priority; then the lower proxy port.
  const better =
    (e.proxyPort !== 0 && o.proxyPort === 0) ||
    (e.proxyPort !== 0 && o.proxyPort !== 0 && (e.proxyPortPriority > o.proxyPortPriority || (e.proxyPortPriority === o.proxyPortPriority && e.proxyPort < o.proxyPort)));
  if (better) {
    o.proxyPort = e.proxyPort;
    o.proxyPortPriority = e.proxyPortPriority;
  }
  mergeProv(o.provenance, e.provenance);
}

const PROTO_NAMES: Record<number, string> = Object.fromEntries(Object.entries(PROTO_NUMBERS).map(([k, v]) => [v, k]));

function provText(p: Provenance): string {
  return `${p.kind} ${p.namespace ? p.namespace + "/" : ""}${p.name} ${p.element}`;
}

function elementName(r: PeerRule): string {
  return `${r.direction}${r.deny ? "Deny" : ""}[${r.index}]`;
}

export function peerText(p: Peer): string {
  switch (p.type) {
    case "selector":
      return p.text;
    case "entity":
      return `entity:${p.entity}`;
    case "cidr":
      return p.except.length ? `cidr:${p.cidr} except ${p.except.join(",")}` : `cidr:${p.cidr}`;
    case "all":
      return "all";
    case "none":
      return "none";
    case "service":
      return `service:${p.namespace}/${p.name ?? selectorText(p.selector ?? { requirements: [] })}`;
    case "fqdn":
      return `toFQDNs ${dnsSelectorText(p.selector)}`;
  }
}

/** The learned addresses (as /32 or /128 prefixes) of the names a toFQDNs selector matches. */
function fqdnPrefixes(sel: DnsRule, fqdn: FqdnState | undefined): string[] {
  const out: string[] = [];
  for (const e of fqdn ?? []) if (dnsSelectorMatches(sel, e.name)) for (const ip of e.ips) out.push(`${ip}/${parseIp(ip)?.family === 6 ? 128 : 32}`);
  return [...new Set(out)].sort();
}

/** Resolves toServices peers into selector or CIDR peers against the cluster. */
function resolveServicePeer(p: Extract<Peer, { type: "service" }>, cluster: ClusterModel): Peer[] {
  const out: Peer[] = [];
  for (const s of cluster.services) {
    if (s.namespace !== p.namespace) continue;
    if (p.name !== undefined && s.name !== p.name) continue;
    if (p.selector && !selectorMatches(p.selector, Object.entries(s.labels ?? {}).map(([key, value]) => ({ source: "k8s", key, value })))) continue;
    if (s.selector && Object.keys(s.selector).length) {
      const reqs = Object.entries(s.selector).map(([key, v]) => ({ source: "k8s", key, op: "In" as const, values: [v] }));
      reqs.push({ source: "k8s", key: "io.kubernetes.pod.namespace", op: "In", values: [s.namespace] });
      const selector = { requirements: reqs };
      out.push({ type: "selector", selector, text: `service ${s.namespace}/${s.name} ${selectorText(selector)}` });
    } else for (const ip of s.endpoints ?? []) {
      const c = parseCidr(ip);
      if (c) out.push({ type: "cidr", cidr: c.text, except: [] });
    }
  }
  return out;
}

function expandPeers(r: PeerRule, cluster: ClusterModel, fqdn: FqdnState | undefined): Peer[] {
  return r.peers.flatMap((p) => (p.type === "service" ? resolveServicePeer(p, cluster) : p.type === "fqdn" ? [{ ...p, ips: fqdnPrefixes(p.selector, fqdn) }] : [p]));
}

/** Identity set a peer selects; [0] = every identity (wildcard key). */
export function peerIdentities(p: Peer, t: IdentityTable, clusterName: string): number[] {
  switch (p.type) {
    case "all":
      return [0];
    case "none":
    case "service":
      return [];
    case "fqdn": {
      const want = new Set(p.ips ?? []);
      return t.cidrs.filter((c) => want.has(c.cidr.text)).map((c) => c.identity);
    }
    case "selector":
      return t.all.filter((i) => selectorMatches(p.selector, i.labels)).map((i) => i.id);
    case "entity": {
      const e = p.entity;
      if (e === "world" || e === "world-ipv4" || e === "world-ipv6") {
        const fam = e === "world-ipv4" ? 4 : e === "world-ipv6" ? 6 : 0;
        const ids: number[] = [];
        if (e === "world") ids.push(2, 9, 10);
        else if (fam === 4) ids.push(...(t.dualStack ? [9] : [2, 9]));
        else ids.push(10);
        for (const c of t.cidrs) if (fam === 0 || c.cidr.family === fam) ids.push(c.identity);
        return ids;
      }
      if (e === "cluster")
        return t.all
          .filter((i) => [1, 3, 4, 5, 6, 7, 8].includes(i.id) || i.labels.some((l) => l.source === "k8s" && l.key === LABEL_CLUSTER && l.value === clusterName))
          .map((i) => i.id);
      // Every identity a remote node can have: the reserved ones and, with enable-node-selector-labels,
      // the remote-node-scoped ones (they carry reserved:remote-node, which this entity selects).
      if (e === "remote-node") return [6, 7, ...t.nodeIdentity.values()].filter((id, i, a) => a.indexOf(id) === i);
      return [ENTITY_IDENTITY[e]];
    }
    case "cidr": {
      const c = parseCidr(p.cidr)!;
      const ex = p.except.map((x) => parseCidr(x)!);
      const ids: number[] = [];
      if (c.bits === 0) ids.push(...(c.family === 4 ? (t.dualStack ? [9] : [2]) : t.dualStack ? [10] : [2]));
      for (const x of t.cidrs) if (cidrContains(c, x.cidr) && !ex.some((e) => cidrContains(e, x.cidr))) ids.push(x.identity);
      return ids;
    }
  }
}

/** The L7 part of a port rule: which proxy it needs and the rules that proxy applies to the peer. */
interface L7Part {
  kind: L7Protocol;
  rules: Pick<ListenerRule, "http" | "kafka" | "dns" | "serverNames">;
}

/** Kinds that turn a port into a proxy redirect (DNS: to the DNS proxy, which feeds toFQDNs). */
export const REDIRECTING_L7: readonly L7Protocol[] = ["http", "kafka", "tls", "dns"];

function l7PartOf(ps: PortSpec): L7Part | undefined {
  const none = { http: null, kafka: null, dns: null, serverNames: null };
  if (ps.l7?.http) return { kind: "http", rules: { ...none, http: ps.l7.http } };
  if (ps.l7?.kafka) return { kind: "kafka", rules: { ...none, kafka: ps.l7.kafka } };
  if (ps.l7?.dns) return REDIRECTING_L7.includes("dns") ? { kind: "dns", rules: { ...none, dns: ps.l7.dns } } : undefined;
  if (ps.serverNames?.length) return { kind: "tls", rules: { ...none, serverNames: ps.serverNames } };
  return undefined;
}

interface L4Key {
  protocol: number;
  port: number;
  portPrefix: number;
  l7?: L7Part;
}

function protocolsOf(p: string): number[] {
  if (p === "ANY") return [PROTO_NUMBERS.TCP, PROTO_NUMBERS.UDP, PROTO_NUMBERS.SCTP];
  return [PROTO_NUMBERS[p]];
}

/**
 * Expands a rule element's ports for one destination pod set (named ports resolved against `dstPods`).
 * When the pods give a name several numbers, `onAmbiguous` decides which of them to keep (default: all).
 */
function expandPorts(r: PeerRule, dstPods: PodModel[], onAmbiguous?: (port: string, numbers: number[]) => number[]): L4Key[] {
  if (r.ports === null) return [{ protocol: 0, port: 0, portPrefix: 0 }];
  const out: L4Key[] = [];
  for (const ps of r.ports) {
    const l7 = l7PartOf(ps);
    if (ps.protocol === "ICMP" || ps.protocol === "ICMPv6") {
      out.push({ protocol: ps.protocol === "ICMP" ? IPPROTO_ICMP : IPPROTO_ICMPV6, port: Number(ps.port), portPrefix: 16 });
      continue;
    }
    for (const proto of protocolsOf(ps.protocol)) {
      // serverNames require TLS: with ANY/UDP/SCTP only the TCP key can ever be satisfied, so the others
      // allow nothing (Cilium would redirect them to a TCP-only proxy listener, which passes nothing).
      if (ps.serverNames?.length && proto !== PROTO_NUMBERS.TCP) continue;
      let ranges: [number, number][] = [];
      if (typeof ps.port === "number") ranges = [[ps.port, ps.endPort ?? ps.port]];
      else {
        const seen = new Set<number>();
        for (const pod of dstPods)
          for (const cp of pod.containerPorts)
            if (cp.name === ps.port && PROTO_NUMBERS[cp.protocol] === proto && !seen.has(cp.port)) {
              seen.add(cp.port);
              ranges.push([cp.port, cp.port]);
            }
        if (ranges.length > 1 && onAmbiguous) ranges = onAmbiguous(ps.port, ranges.map(([a]) => a).sort((a, b) => a - b)).map((n) => [n, n]);
      }
      for (const [a, b] of ranges) for (const pp of portRangeToPrefixes(a, b)) out.push({ protocol: proto, port: pp.port, portPrefix: pp.prefix, l7 });
    }
  }
  return out;
}

interface Pending {
  key: MapStateKey;
  deny: boolean;
  l7?: L7Part;
  provenance: Provenance;
}

function l4String(direction: Direction, k: { protocol: number; port: number; portPrefix: number }): string {
  return `${direction}/${k.protocol}/${k.port}/${k.portPrefix}`;
}

/** Collects every InternalRule's CIDR prefixes (incl. excepts and service endpoints) for identity allocation. */
function collectCidrs(rules: InternalRule[], cluster: ClusterModel, fqdn: FqdnState | undefined): string[] {
  const out: string[] = [];
  for (const ir of rules)
    for (const r of ir.rules)
      for (const p of expandPeers(r, cluster, fqdn))
        if (p.type === "cidr") out.push(p.cidr, ...p.except);
        else if (p.type === "fqdn") out.push(...(p.ips ?? []));
  return out;
}

/** One identity's computed policy, shared by the endpoints of that identity (and, across compiles, kept
 * while nothing it depends on changed). What differs per endpoint is filled in when it is handed out: the
 * proxy ports (numbered per endpoint in endpoint order) and the endpoint's name in errors and listeners. */
interface Template {
  /** Unique per computation: an endpoint whose template (and proxy base and cookies) is the same as at the
   * previous compile has the same entries. */
  seq: number;
  /** What the template was computed from (rule contents, selection versions, global inputs). */
  sig: string;
  enforced: { ingress: boolean; egress: boolean };
  /** Sorted; proxyPort holds the listener's index + 1 (0: no redirect); provenance already sorted. */
  entries: MapStateEntry[];
  /** Provenance signature of each entry (the cookie's key). */
  sigs: string[];
  listeners: Omit<ProxyListener, "proxyPort" | "endpoint">[];
  conflicts: { direction: Direction; port: string; kinds: { kind: string; policies: string[] }[] }[];
  budget?: { entries: number; policies: { policy: string; entries: number }[] };
  warnings: PolicyError[];
}

/** What one endpoint was handed by a compile: kept by the compiler to hand the same objects out again. */
interface Handed {
  tmpl: Template;
  /** First proxy port of the endpoint's redirects (0 without redirects). */
  base: number;
  ep: EndpointPolicy;
}

/** A template's entries for one endpoint: proxy ports from `base` (none when undefined), cookies given. */
function handOut(tmpl: Template, base: number | undefined, cookies: number[]): MapStateEntry[] {
  return tmpl.entries.map((e, i) => ({
    key: { ...e.key },
    deny: e.deny,
    proxyPort: e.proxyPort && base !== undefined ? base + e.proxyPort - 1 : 0,
    proxyPortPriority: e.proxyPortPriority,
    provenance: e.provenance,
    cookie: cookies[i]!,
  }));
}

function sameCookies(entries: MapStateEntry[], cookies: number[]): boolean {
  if (entries.length !== cookies.length) return false;
  for (let i = 0; i < cookies.length; i++) if (entries[i]!.cookie !== cookies[i]) return false;
  return true;
}

export interface CompileResult {
  policy: CompiledPolicy;
  /** Endpoints ("ns/name", or INIT_ENDPOINT) whose policy may differ from the previous compile of this
   * compiler (added, removed, or new entries, proxy ports or cookies); every endpoint on the first compile. */
  changedEndpoints: Set<string>;
  /** Identities whose policy was computed in this compile rather than reused. */
  recomputedIdentities: Set<number>;
}

function peerKey(p: Peer): string {
  return JSON.stringify(p);
}

/**
 * A policy compiler that keeps its work between compiles: the selector cache (selector-cache.ts), the
 * policy computed per identity, and what each was computed from. `compile` returns exactly what a fresh
 * compilePolicy returns for the same input (the property test in compile-incremental.test.ts checks it
 * after random sequences of changes), but recomputes only the identities whose selecting rules, peer
 * selections or global inputs changed; endpoints of one identity share one computation. Mirrors how
 * Cilium's agent regenerates only the endpoints a policy change selects (pkg/policy/distillery.go,
 * pkg/endpoint/policy.go). Not safe to share between concurrent callers; one compiler per consumer.
 */
export class PolicyCompiler {
  private cache = new SelectorCache();
  private templates = new Map<string, Template>();
  private others = new Map<string, { ids: number[]; version: number }>();
  private ruleKeys = new Map<string, number>();
  private nextRuleKey = 1;
  /** Rule objects seen before (a caller may hand the same translated rules again; rules are not mutated). */
  private ruleKeyOf = new WeakMap<InternalRule, number>();
  private nextVersion = 1;
  private nextSeq = 1;
  /** What each endpoint was handed at the previous compile (see Handed). */
  private handed = new Map<string, Handed>();
  private layout?: ReturnType<typeof endpointLayout>;
  private identities?: { cluster: ClusterModel; cidrKey: string; table: IdentityTable };

  /** Number of compiles done: `changedEndpoints` is relative to the compile before the latest. */
  generation = 0;

  constructor(private readonly opts: CompileOptions = {}) {}

  /** `fqdn` (default: the constructor's) is the FQDN cache's state at this compile. */
  compile(cluster: ClusterModel, rules: InternalRule[], fqdn: FqdnState | undefined = this.opts.fqdn): CompileResult {
    const opts = this.opts;
    this.generation++;
    const max = opts.policyMapMax ?? DEFAULT_POLICY_MAP_MAX;
    let nextProxy = opts.proxyPortBase ?? DEFAULT_PROXY_PORT_BASE;
    // The identity table depends only on the cluster and the prefixes the rules name: kept while both are.
    const cidrs = collectCidrs(rules, cluster, fqdn);
    const cidrKey = cidrs.join(",");
    const t = this.identities && this.identities.cluster === cluster && this.identities.cidrKey === cidrKey ? this.identities.table : allocateIdentities(cluster, cidrs, { labelFilter: opts.labelFilter, dualStack: opts.dualStack });
    this.identities = { cluster, cidrKey, table: t };
    this.cache.sync(t.all);
    const endpoints = new Map<string, EndpointPolicy>();
    const proxies = new Map<number, ProxyListener>();
    const errors: PolicyError[] = [];
    const warnings: PolicyError[] = [];
    const warned = new Set<string>();
    // Endpoint order (by ns/name) and the pods of each identity: kept with the identity table.
    const layout = this.layout && this.layout.table === t ? this.layout : (this.layout = endpointLayout(cluster, t));
    const { pods, names, podsOfIdentity } = layout;
    // Peer selections: selector peers from the selector cache, the others (entities, CIDRs, FQDNs) resolved
    // once per compile against the identity table; each carries a version that changes with its identities.
    const usedSelectors = new Set<string>();
    const others = new Map<string, { ids: number[]; version: number }>();
    const resolve = (peer: Peer): { ids: number[]; version: string } => {
      if (peer.type === "selector") {
        const s = this.cache.select(peer.selector);
        usedSelectors.add(selectorKey(peer.selector));
        return { ids: s.ids, version: `s${s.version}` };
      }
      const k = peerKey(peer);
      let o = others.get(k);
      if (!o) {
        const ids = peerIdentities(peer, t, cluster.clusterName);
        const before = this.others.get(k);
        o = before && before.ids.length === ids.length && before.ids.every((x, i) => x === ids[i]) ? before : { ids, version: this.nextVersion++ };
        others.set(k, o);
      }
      return { ids: o.ids, version: `o${o.version}` };
    };
    // Egress named ports resolve against the pods of each peer identity: with such a rule, the pods'
    // ports are an input of every identity's policy.
    const namedEgress = rules.some((ir) => ir.rules.some((r) => r.direction === "egress" && r.ports?.some((p) => typeof p.port === "string")));
    const epoch = JSON.stringify([
      cluster.policyEnforcement,
      cluster.clusterName,
      max,
      opts.allowLocalhost ?? true,
      t.dualStack,
      namedEgress ? [...podsOfIdentity].map(([id, ps]) => [id, ps.map((p) => p.containerPorts)]) : 0,
    ]);
    // What each rule contributes to a template's inputs: its content and the versions of its peers'
    // selections (after toServices/toFQDNs expansion) and of its requirements.
    const ruleSigs = new Map<InternalRule, string>();
    const usedRuleKeys = new Set<number>();
    const expanded = new Map<PeerRule, Peer[]>();
    for (const ir of rules) {
      let rk = this.ruleKeyOf.get(ir);
      if (rk === undefined) {
        const content = JSON.stringify(ir);
        rk = this.ruleKeys.get(content);
        if (rk === undefined) this.ruleKeys.set(content, (rk = this.nextRuleKey++));
        this.ruleKeyOf.set(ir, rk);
      }
      usedRuleKeys.add(rk);
      const parts: string[] = [String(rk)];
      for (const r of ir.rules) {
        const peers = expandPeers(r, cluster, fqdn);
        expanded.set(r, peers);
        for (const p of peers) parts.push(resolve(p).version);
        if (r.requires.length) parts.push(`i${this.cache.identitiesVersion}`);
      }
      ruleSigs.set(ir, parts.join(","));
    }
    // Rules selecting each identity, in rule order, from the subjects' selections.
    const selectingOf = new Map<number, InternalRule[]>();
    for (const ir of rules) {
      if (ir.host) continue; // selects host endpoints only (below)
      usedSelectors.add(selectorKey(ir.subject));
      for (const id of this.cache.select(ir.subject).ids) {
        const l = selectingOf.get(id);
        if (l) l.push(ir);
        else selectingOf.set(id, [ir]);
      }
    }
    const ctx: TemplateContext = { cluster, t, fqdn, podsOfIdentity, expanded, resolve, max, allowLocalhost: opts.allowLocalhost ?? true };
    const used = new Map<string, Template>();
    const recomputed = new Set<number>();
    const changed = new Set<string>();
    // Per endpoint, in endpoint order: its name, identity, template and first proxy port.
    const epNames: string[] = [];
    const epIdentities: number[] = [];
    const ofEndpoint: Template[] = [];
    const epBases: number[] = [];
    const needsPodOf = new Map<number, boolean>();
    // An endpoint whose labels are not known yet carries reserved:init; the simulator places one per node.
    const initEndpoint: PodModel = { namespace: "", name: "", labels: {}, containerPorts: [] };
    for (let i = 0; i <= pods.length; i++) {
      const isInit = i === pods.length;
      const pod = isInit ? initEndpoint : pods[i]!;
      if (pod.hostNetwork) continue; // host endpoint: policy only with the host firewall, not modelled
      const name = isInit ? INIT_ENDPOINT : names[i]!;
      const identity = isInit ? ID_INIT : t.podIdentity.get(name)!;
      const selecting = selectingOf.get(identity) ?? [];
      // Ingress named ports resolve on the endpoint's own pod: then its ports are an input too.
      let byPod = needsPodOf.get(identity);
      if (byPod === undefined) needsPodOf.set(identity, (byPod = selecting.some((ir) => ir.rules.some((r) => r.direction === "ingress" && r.ports?.some((p) => typeof p.port === "string")))));
      const podPorts = byPod ? JSON.stringify(pod.containerPorts) : "";
      const tkey = opts.perEndpoint ? `${identity}|${name}` : `${identity}|${isInit ? 1 : 0}|${podPorts}`;
      let tmpl = used.get(tkey);
      if (!tmpl) {
        const labels = t.byId.get(identity)!.labels;
        const sig = `${epoch}|${labels.map(labelString).join(",")}|${selecting.map((ir) => ruleSigs.get(ir)).join(";")}`;
        tmpl = this.templates.get(tkey);
        if (!tmpl || tmpl.sig !== sig) {
          tmpl = computeTemplate(ctx, pod, isInit, identity, selecting, sig, this.nextSeq++);
          recomputed.add(identity);
        }
        used.set(tkey, tmpl);
      }
      const base = nextProxy;
      nextProxy += tmpl.listeners.length;
      tmpl.listeners.forEach((l, i) => proxies.set(base + i, { ...l, proxyPort: base + i, endpoint: name, rules: l.rules.map((r) => ({ ...r, identities: [...r.identities] })) }));
      for (const c of tmpl.conflicts) errors.push(new PolicyL7ConflictError(name, c.direction, c.port, c.kinds));
      for (const w of tmpl.warnings)
        if (!warned.has(w.message)) {
          warned.add(w.message);
          warnings.push(w);
        }
      if (tmpl.budget) errors.push(new PolicyBudgetError(name, tmpl.budget.entries, max, tmpl.budget.policies));
      epNames.push(name);
      epIdentities.push(identity);
      ofEndpoint.push(tmpl);
      epBases.push(base);
    }
    // Host endpoints: one per node, selected by the host rules (nodeSelector) alone (cilium/cilium
    // pkg/policy/rule.go: a node selector selects only the host endpoint, an endpoint selector never does).
    const hostEndpoints = new Map<string, EndpointPolicy>();
    const ofHost: Template[] = [];
    const hostNames: string[] = [];
    const hostRules = rules.filter((ir) => ir.host);
    for (const node of cluster.nodes ?? []) {
      const labels = hostEndpointLabels(node);
      const selecting = hostRules.filter((ir) => selectorMatches(ir.subject, labels));
      const hostPod: PodModel = { namespace: "", name: node.name, labels: {}, containerPorts: [] };
      const tmpl = computeTemplate(ctx, hostPod, false, ID_HOST, selecting, "", this.nextSeq++);
      for (const w of tmpl.warnings)
        if (!warned.has(w.message)) {
          warned.add(w.message);
          warnings.push(w);
        }
      if (tmpl.budget) errors.push(new PolicyBudgetError(`host ${node.name}`, tmpl.budget.entries, max, tmpl.budget.policies));
      ofHost.push(tmpl);
      hostNames.push(node.name);
    }
    // Cookies: one per distinct provenance set, numbered in endpoint and key order (host endpoints last).
    // Endpoints of one template have the same provenance sets, so each template is numbered once.
    const provenance = new Map<number, Provenance[]>();
    const cookieOf = new Map<string, number>();
    const cookiesOf = new Map<Template, number[]>();
    const numberCookies = (tmpl: Template): number[] => {
      let cookies = cookiesOf.get(tmpl);
      if (cookies) return cookies;
      cookies = tmpl.sigs.map((sig, i) => {
        let c = cookieOf.get(sig);
        if (c === undefined) {
          c = cookieOf.size + 1;
          cookieOf.set(sig, c);
          provenance.set(c, tmpl.entries[i]!.provenance);
        }
        return c;
      });
      cookiesOf.set(tmpl, cookies);
      return cookies;
    };
    for (const tmpl of ofEndpoint) numberCookies(tmpl);
    for (const tmpl of ofHost) numberCookies(tmpl);
    // The endpoints' entries. An endpoint whose template, proxy ports and cookies are those of the previous
    // compile gets the same array and EndpointPolicy object as then (handed-out entries are never changed),
    // so a consumer's caches keyed by those objects (whatif's verdict halves and encoded entries) keep
    // serving the identities an edit did not touch. Endpoints of one template without redirects have equal
    // entries: one array serves them all.
    const shared = new Map<Template, MapStateEntry[]>();
    const handed = this.handed;
    const seen = new Set<string>();
    for (let i = 0; i < ofEndpoint.length; i++) {
      const name = epNames[i]!;
      const tmpl = ofEndpoint[i]!;
      const redirects = tmpl.listeners.length > 0;
      const base = redirects ? epBases[i]! : 0;
      const cookies = cookiesOf.get(tmpl)!;
      const prev = handed.get(name);
      const same = prev !== undefined && prev.tmpl === tmpl && prev.base === base;
      // Cookies are numbered over the whole cluster, so one change can renumber many; a consumer that
      // needs stable numbers maps them by provenance (the agent does), so they are not part of the change.
      if (!same) changed.add(name);
      let entries = redirects ? undefined : shared.get(tmpl);
      if (!entries) {
        entries = same && sameCookies(prev.ep.entries, cookies) ? prev.ep.entries : handOut(tmpl, base, cookies);
        if (!redirects) shared.set(tmpl, entries);
      }
      let ep: EndpointPolicy;
      if (same && prev.ep.entries === entries) ep = prev.ep;
      else {
        ep = { endpoint: name, identity: epIdentities[i]!, enforced: { ...tmpl.enforced }, entries };
        if (prev) {
          prev.tmpl = tmpl;
          prev.base = base;
          prev.ep = ep;
        } else handed.set(name, { tmpl, base, ep });
      }
      endpoints.set(name, ep);
      seen.add(name);
    }
    if (handed.size > seen.size)
      for (const k of handed.keys())
        if (!seen.has(k)) {
          changed.add(k);
          handed.delete(k);
        }
    // Host endpoints have no proxy redirects (their listeners are not handed out).
    ofHost.forEach((tmpl, i) => hostEndpoints.set(hostNames[i]!, { endpoint: `host ${hostNames[i]}`, identity: ID_HOST, enforced: { ...tmpl.enforced }, entries: handOut(tmpl, undefined, cookiesOf.get(tmpl)!) }));
    this.templates = used;
    this.others = others;
    this.cache.retain(usedSelectors);
    // Rule texts no longer in use are forgotten once they outnumber the live ones (a long-lived agent edits).
    if (this.ruleKeys.size > 2 * usedRuleKeys.size + 64) for (const [k, v] of [...this.ruleKeys]) if (!usedRuleKeys.has(v)) this.ruleKeys.delete(k);
    return {
      policy: {
        cluster,
        identities: t,
        cidrIdentities: t.cidrs.map((c) => ({ prefix: c.cidr.text, identity: c.identity })),
        endpoints,
        hostEndpoints,
        provenance,
        proxies,
        errors,
        warnings,
      },
      changedEndpoints: changed,
      recomputedIdentities: recomputed,
    };
  }
}

/** The labels of a node's host endpoint: reserved:host and the Node's labels (source k8s), as Cilium's
 * host endpoint carries them (cilium/cilium Documentation/security/host-firewall.rst, `endpoint list`). */
export function hostEndpointLabels(node: NodeModel): Label[] {
  return sortLabels([{ source: "reserved", key: "host", value: "" }, ...Object.entries(node.labels).map(([key, value]) => ({ source: "k8s", key, value }))]);
}

/** The pods in endpoint order (by ns/name), their names, and the pods of each identity. */
function endpointLayout(cluster: ClusterModel, t: IdentityTable) {
  const sorted = cluster.pods.map((p) => [podKeyOf(p), p] as const).sort((a, b) => (a[0] < b[0] ? -1 : 1));
  const pods = sorted.map(([, p]) => p);
  const names = sorted.map(([n]) => n);
  const podsOfIdentity = new Map<number, PodModel[]>();
  sorted.forEach(([n, p]) => {
    const id = t.podIdentity.get(n)!;
    if (!podsOfIdentity.has(id)) podsOfIdentity.set(id, []);
    podsOfIdentity.get(id)!.push(p);
  });
  return { table: t, pods, names, podsOfIdentity };
}

/** Compiles the rules for every pod of the cluster (a fresh PolicyCompiler's first compile). */
export function compilePolicy(cluster: ClusterModel, rules: InternalRule[], opts: CompileOptions = {}): CompiledPolicy {
  return new PolicyCompiler(opts).compile(cluster, rules).policy;
}

interface TemplateContext {
  cluster: ClusterModel;
  t: IdentityTable;
  fqdn: FqdnState | undefined;
  podsOfIdentity: Map<number, PodModel[]>;
  expanded: Map<PeerRule, Peer[]>;
  resolve: (p: Peer) => { ids: number[] };
  max: number;
  allowLocalhost: boolean;
}

/** Rules 1–6 for one identity (and, with ingress named ports, one pod's ports). */
function computeTemplate(ctx: TemplateContext, pod: PodModel, isInit: boolean, identity: number, selecting: InternalRule[], sig: string, seq: number): Template {
  const { cluster, t, podsOfIdentity } = ctx;
  const errors: Template["conflicts"] = [];
  const warnings: PolicyError[] = [];
  let nextProxy = 1;
  const listeners: Template["listeners"] = [];
  const enforced = { ingress: false, egress: false };
  const wildcardAllow: Record<Direction, InternalRule[]> = { ingress: [], egress: [] };
  for (const d of ["ingress", "egress"] as Direction[]) {
    if (cluster.policyEnforcement === "never") continue;
    const touching = selecting.filter((r) => r.touches[d]);
    // reserved:init endpoints are enforced in both directions whatever selects them
    // (cilium/cilium pkg/policy/repository.go computePolicyEnforcementAndRules).
    if (cluster.policyEnforcement === "always" || touching.length || isInit) enforced[d] = true;
    if (cluster.policyEnforcement === "default" && touching.length && !isInit && !touching.some((r) => r.defaultDeny[d])) wildcardAllow[d] = touching;
  }
  // Rule 2: pending entries. fromRequires/toRequires of every selecting rule constrain every peer in
  // that direction (Cilium aggregates requirements over the rules selecting the endpoint).
  const requiresOf: Record<Direction, import("./types.ts").Selector[]> = {
    ingress: selecting.flatMap((ir) => ir.rules.filter((r) => r.direction === "ingress").flatMap((r) => r.requires)),
    egress: selecting.flatMap((ir) => ir.rules.filter((r) => r.direction === "egress").flatMap((r) => r.requires)),
  };
  const pending: Pending[] = [];
  // Pods of one identity that give a port name different numbers: an identity-keyed map cannot say
  // which pod has which, so an allow gets none of them and a deny all of them (fail closed, as Cilium
  // does for a name with several numbers), with a warning.
  const ambiguous = (port: string, numbers: number[], id: number, r: PeerRule, prov: Provenance): number[] => {
    const policy = `${prov.kind} ${prov.namespace ? `${prov.namespace}/` : ""}${prov.name}`;
    const message = `${policy} ${prov.element}: port name "${port}" is ${numbers.join(" or ")} on different pods of identity ${id}; none of them is allowed`;
    if (!r.deny && !warnings.some((w) => w.message === message))
      warnings.push(new PolicyError("named-port-ambiguous", message, "give the port the same number on every pod with the same labels, or name the number in the policy"));
    return r.deny ? numbers : [];
  };
  if (cluster.policyEnforcement !== "never")
    for (const ir of selecting)
      for (const r of ir.rules) {
        if (!enforced[r.direction]) continue;
        const peers = ctx.expanded.get(r) ?? expandPeers(r, cluster, ctx.fqdn);
        for (const peer of peers) {
          let ids = ctx.resolve(peer).ids;
          const requires = requiresOf[r.direction];
          if (requires.length) {
            if (ids.includes(0)) ids = t.all.map((i) => i.id);
            ids = ids.filter((id) => requires.every((s) => selectorMatches(s, t.byId.get(id)?.labels ?? [])));
          }
          const prov: Provenance = { kind: ir.origin.kind, namespace: ir.origin.namespace, name: ir.origin.name, ruleIndex: ir.origin.ruleIndex, element: elementName(r), peer: peerText(peer) };
          const named = r.ports?.some((p) => typeof p.port === "string");
          const groups: [number[], PodModel[]][] = [];
          if (!named || r.direction === "ingress") groups.push([ids, [pod]]);
          else {
            // Egress: a port name is resolved on the destination pod (Kubernetes). The map is keyed by
            // identity, so each identity gets the number its pods give the name; "any peer" becomes the
            // identities that have pods (nothing else has named ports).
            const dstIds = ids.includes(0) ? [...podsOfIdentity.keys()].sort((a, b) => a - b) : ids;
            for (const id of dstIds) groups.push([[id], podsOfIdentity.get(id) ?? []]);
          }
          for (const [gids, dst] of groups) {
            const l4 = expandPorts(r, dst, named && r.direction === "egress" ? (port, numbers) => ambiguous(port, numbers, gids[0]!, r, prov) : undefined);
            for (const id of gids)
              for (const k of l4)
                pending.push({ key: { identity: id, direction: r.direction, protocol: k.protocol, port: k.port, portPrefix: k.portPrefix }, deny: r.deny, l7: k.l7, provenance: prov });
          }
        }
      }
  // Rule 4: proxy listeners for L4 keys with L7 rules, one protocol each.
  const listenerOf = new Map<string, Template["listeners"][number] & { proxyPort: number }>();
  const kindsOf = new Map<string, Map<L7Protocol, Provenance[]>>();
  for (const p of pending) {
    if (p.deny || !p.l7) continue;
    const l4 = l4String(p.key.direction, p.key);
    const kinds = kindsOf.get(l4) ?? new Map<L7Protocol, Provenance[]>();
    kindsOf.set(l4, kinds);
    const provs = kinds.get(p.l7.kind);
    if (provs) provs.push(p.provenance);
    else kinds.set(p.l7.kind, [p.provenance]);
  }
  for (const l4 of [...kindsOf.keys()].sort()) {
    const [direction, protocol, port, portPrefix] = l4.split("/");
    const kinds = kindsOf.get(l4)!;
    const kind = [...kinds.keys()].sort()[0];
    if (kinds.size > 1)
      errors.push({ direction: direction as Direction, port: `${+port}${+portPrefix < 16 ? `/${portPrefix}` : ""}/${PROTO_NAMES[+protocol] ?? protocol}`, kinds: [...kinds.entries()].map(([k, provs]) => ({ kind: k, policies: provs.map(provText) })) });
    const listener = { proxyPort: nextProxy++, direction: direction as Direction, protocol: kind, l4Protocol: +protocol, port: +port, portPrefix: +portPrefix, rules: [] as ListenerRule[] };
    listenerOf.set(l4, listener);
    listeners.push(listener);
  }
  // Rule 4 (Cilium's wildcardL3L4Rules): an L3-only allow also reaches every L7 listener of the
  // endpoint in that direction, with allow-all L7, so L7 rules never restrict peers that an L3-only
  // rule allows; the map gets a redirect entry for those peers on the listener's port.
  for (const l of listenerOf.values())
    for (const p of pending.filter((x) => !x.deny && x.key.protocol === 0 && x.key.direction === l.direction))
      pending.push({ key: { ...p.key, protocol: l.l4Protocol, port: l.port, portPrefix: l.portPrefix }, deny: false, provenance: p.provenance });
  if (listenerOf.size)
    for (const d of ["ingress", "egress"] as Direction[])
      for (const ir of wildcardAllow[d])
        for (const l of listenerOf.values())
          if (l.direction === d)
            pending.push({
              key: { identity: 0, direction: d, protocol: l.l4Protocol, port: l.port, portPrefix: l.portPrefix },
              deny: false,
              provenance: { kind: ir.origin.kind, namespace: ir.origin.namespace, name: ir.origin.name, ruleIndex: ir.origin.ruleIndex, element: `enableDefaultDeny.${d}=false`, peer: "all" },
            });
  const state = new Map<string, MapStateEntry>();
  const contrib = new Map<string, number>();
  for (const p of pending) {
    const listener = p.deny ? undefined : listenerOf.get(l4String(p.key.direction, p.key));
    // A peer rule of another L7 kind on this port (an error above) gets no rule here: the proxy refuses it.
    if (listener && (!p.l7 || p.l7.kind === listener.protocol))
      listener.rules.push({ identities: [p.key.identity], ...(p.l7 ? p.l7.rules : { http: null, kafka: null, dns: null, serverNames: null }), provenance: p.provenance });
    const pol = `${p.provenance.kind}/${p.provenance.namespace ? p.provenance.namespace + "/" : ""}${p.provenance.name}`;
    contrib.set(pol, (contrib.get(pol) ?? 0) + 1);
    denyPreferredInsert(state, {
      key: p.key,
      deny: p.deny,
      proxyPort: listener?.proxyPort ?? 0,
      proxyPortPriority: listener ? REDIRECT_PRIORITY : 0,
      provenance: [p.provenance],
      cookie: 0,
    });
  }
  // Merge listener rules of the same peer rule across identities (compact form for the L7 evaluators).
  for (const l of listenerOf.values()) {
    const merged = new Map<string, ListenerRule>();
    for (const r of l.rules) {
      const k = provKey(r.provenance) + JSON.stringify([r.http, r.kafka, r.dns, r.serverNames]);
      const m = merged.get(k);
      if (m) m.identities.push(...r.identities.filter((i) => !m.identities.includes(i)));
      else merged.set(k, { ...r, identities: [...r.identities] });
    }
    l.rules = [...merged.values()];
  }
  // Rule 1/5: fixed entries.
  const derived = (element: string, peer = "all"): Provenance => ({ kind: "derived", namespace: "", name: "", ruleIndex: 0, element, peer });
  const fixed = (direction: Direction, id: number, prov: Provenance[]) =>
    denyPreferredInsert(state, { key: { identity: id, direction, protocol: 0, port: 0, portPrefix: 0 }, deny: false, proxyPort: 0, proxyPortPriority: 0, provenance: prov, cookie: 0 });
  for (const d of ["ingress", "egress"] as Direction[]) {
    if (!enforced[d]) fixed(d, 0, [derived(`allow-any-${d}`)]);
    else if (wildcardAllow[d].length)
      fixed(
        d,
        0,
        wildcardAllow[d].map((ir) => ({ kind: ir.origin.kind, namespace: ir.origin.namespace, name: ir.origin.name, ruleIndex: ir.origin.ruleIndex, element: `enableDefaultDeny.${d}=false`, peer: "all" })),
      );
  }
  if (ctx.allowLocalhost) fixed("ingress", ID_HOST, [derived("allow-localhost-ingress", "reserved:host")]);
  const entries = [...state.values()].sort((a, b) => compareKeys(a.key, b.key));
  const sigs = entries.map((e) => {
    const keyed = e.provenance.map((p) => [provKey(p), p] as const).sort((a, b) => (a[0] < b[0] ? -1 : a[0] > b[0] ? 1 : 0));
    e.provenance = keyed.map(([, p]) => p);
    return keyed.map(([k]) => k).join("\n");
  });
  const budget = entries.length > ctx.max ? { entries: entries.length, policies: [...contrib.entries()].map(([policy, n]) => ({ policy, entries: n })).sort((a, b) => b.entries - a.entries || (a.policy < b.policy ? -1 : 1)) } : undefined;
  return { seq, sig, enforced, entries, sigs, listeners, conflicts: errors, ...(budget ? { budget } : {}), warnings };
}

export function compareKeys(a: MapStateKey, b: MapStateKey): number {
  return (
    (a.direction === b.direction ? 0 : a.direction === "ingress" ? -1 : 1) ||
    a.identity - b.identity ||
    a.protocol - b.protocol ||
    a.port - b.port ||
    a.portPrefix - b.portPrefix
  );
}

export { LOCAL_IDENTITY_SCOPE };
