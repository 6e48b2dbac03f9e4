// Manifest loading: files and directories (*.yaml, *.yml, *.json, sorted), multi-document YAML and JSON,
// `kind: List` (kubectl get -o yaml output), the understood kinds as typed objects, workload expansion
// (Deployment/ReplicaSet/StatefulSet/DaemonSet → pods from the template and replicas), ciliate's own kinds
// (Traffic, Expectation, Config under ciliate.dev/v1alpha1), and a plain cluster model for the engine.
// Every object is first checked as the API server would (policy/schema.ts: its published schema, strict
// fields, its apiVersion; policy/k8s-names.ts: names and labels); an object with problems is refused —
// left out of `objects`, every problem in `errors` — and the others are still read. Unknown kinds are
// refused; every error names file, document, line, object and field path.
// Hostile input is refused with a one-line error before it can exhaust the process (MANIFEST_LIMITS): files
// over 32 MiB, nesting deeper than 256 levels (the parser's composer recurses per level), and alias
// expansion past the yaml library's resource-exhaustion guard (a "billion laughs" document).

import { readdirSync, readFileSync, statSync } from "node:fs";
import { join } from "node:path";
import { Composer, LineCounter, Parser, isNode, type CST, type Document, type YAMLError } from "yaml";
import { didYouMean } from "./ciliate-schemas.ts";
import { problemAt, ManifestError, type SourceRef } from "./errors.ts";
import { metadataProblems } from "./k8s-names.ts";
import { shapeProblem } from "./manifest-shapes.ts";
import { dropNulls, validateAgainstSchema } from "./schema.ts";
import type { ClusterModel, ContainerPort, EnforcementMode, ManifestObject, PodModel, ServiceModel } from "./types.ts";

export const CILIATE_API = "ciliate.dev/v1alpha1";

export const KNOWN_KINDS = [
  "Namespace",
  "Node",
  "Pod",
  "Deployment",
  "ReplicaSet",
  "StatefulSet",
  "DaemonSet",
  "Service",
  "EndpointSlice",
  "NetworkPolicy",
  "CiliumNetworkPolicy",
  "CiliumClusterwideNetworkPolicy",
];
export const CILIATE_KINDS = ["Traffic", "Expectation", "Config"];

export interface LoadResult {
  objects: ManifestObject[];
  warnings: ManifestError[];
  /** Every problem: YAML syntax errors and the problems of refused objects. */
  errors: ManifestError[];
  /** "Kind ns/name" of every object refused by schema or name validation. */
  refused: string[];
}

/** "Kind ns/name" (cluster-scoped kinds: "Kind name"), as problems name an object. */
export function objectLabel(kind: string, md: Record<string, unknown>): string {
  // An object without a name is named as such, so its problem line still reads "Kind ns/(no name)".
  const name = typeof md.name === "string" && md.name !== "" ? md.name : "(no name)";
  const clusterScoped = ["Namespace", "Node", "CiliumClusterwideNetworkPolicy", "Config"].includes(kind);
  return `${kind} ${clusterScoped ? name : `${typeof md.namespace === "string" ? md.namespace : "default"}/${name}`}`;
}

/** Bounds on one manifest input, documented in docs/reliability.md. Kubernetes objects nest about 15
 * levels deep and a `kubectl get -A -o yaml` of a large cluster is a few MiB; these are far above both. */
export const MANIFEST_LIMITS = {
  /** Bytes per file (or per text given to parseManifests). */
  maxBytes: 32 * 1024 * 1024,
  /** Nesting of collections (maps, sequences, flow collections) in one document. */
  maxDepth: 256,
  /** Alias expansions per aliased node (the yaml library's own guard, made explicit). */
  maxAliasCount: 100,
};

/** The deepest collection nesting in a CST document and the offset where it is reached; iterative, so a
 * hostile document cannot overflow the stack here. */
function cstDepth(root: CST.Token): { depth: number; offset: number } {
  let max = { depth: 0, offset: 0 };
  const stack: [CST.Token | undefined, number][] = [[root, 0]];
  while (stack.length) {
    const [t, d] = stack.pop()!;
    if (!t) continue;
    if (t.type === "document") {
      stack.push([t.value, d]);
      continue;
    }
    if (t.type !== "block-map" && t.type !== "block-seq" && t.type !== "flow-collection") continue;
    if (d + 1 > max.depth) max = { depth: d + 1, offset: t.offset };
    if (max.depth > MANIFEST_LIMITS.maxDepth) return max;
    for (const it of t.items as { key?: CST.Token | null; value?: CST.Token }[]) {
      if (it.key) stack.push([it.key, d + 1]);
      stack.push([it.value, d + 1]);
    }
  }
  return max;
}

function mib(n: number): string {
  return `${(n / 1024 / 1024).toFixed(1)} MiB`;
}

function lineOfFactory(doc: Document, lc: LineCounter, base: (string | number)[]): (path: (string | number)[]) => number {
  return (path) => {
    const full = [...base, ...path];
    const n = full.length === 0 ? doc.contents : doc.getIn(full, true);
    if (isNode(n) && n.range) return lc.linePos(n.range[0]).line;
    return 0;
  };
}

/**
 * One problem per broken document: the parser reports every error it recovered from, but after the
 * first the rest are usually echoes of it, so the earliest (by position) is the one worth reading.
 */
function yamlSyntaxError(errors: readonly YAMLError[], file: string, di: number): ManifestError {
  const pos = (e: YAMLError) => e.linePos?.[0] ?? { line: 0, col: 0 };
  const first = [...errors].sort((a, b) => pos(a).line - pos(b).line || pos(a).col - pos(b).col)[0]!;
  const { line, col } = pos(first);
  // The library's message ends with " at line L, column C:" and a code frame; we say where ourselves.
  const text = first.message.split("\n")[0]!.replace(/ at line \d+, column \d+:?$/, "");
  return new ManifestError("yaml-syntax", file, di, line, "", `${text}${col ? ` (column ${col})` : ""}`, "fix the YAML syntax");
}

/** Parses one text (YAML or JSON, any number of documents). */
export function parseManifests(text: string, file = "<memory>"): LoadResult {
  const out: LoadResult = { objects: [], warnings: [], errors: [], refused: [] };
  if (text.length > MANIFEST_LIMITS.maxBytes) {
    out.errors.push(new ManifestError("manifest-too-large", file, 0, 0, "", `${mib(text.length)} of text is over the limit of ${mib(MANIFEST_LIMITS.maxBytes)} per manifest`, "split it into several files"));
    return out;
  }
  const lc = new LineCounter();
  // parseAllDocuments in two steps, so the nesting is measured on the CST before the recursive composer
  // sees it.
  const tokens = [...new Parser(lc.addNewLine).parse(text)];
  for (const [di, t] of tokens.filter((x) => x.type === "document").entries()) {
    const d = cstDepth(t);
    if (d.depth > MANIFEST_LIMITS.maxDepth) {
      out.errors.push(new ManifestError("manifest-too-deep", file, di, lc.linePos(d.offset).line, "", `nesting deeper than ${MANIFEST_LIMITS.maxDepth} levels`, "Kubernetes objects nest a few levels deep; check the file is a manifest"));
      return out;
    }
  }
  const docs = [...new Composer({}).compose(tokens, true, text.length)];
  // What parseAllDocuments' prettyErrors does for positions (the messages keep no code frame).
  for (const doc of docs) for (const e of doc.errors) e.linePos = [lc.linePos(e.pos[0]), lc.linePos(e.pos[1])];
  docs.forEach((doc, di) => {
    const src: SourceRef = { file, doc: di, lineOf: lineOfFactory(doc as Document, lc, []) };
    if (doc.errors.length) {
      out.errors.push(yamlSyntaxError(doc.errors, file, di));
      return;
    }
    let v: unknown;
    try {
      v = doc.toJS({ maxAliasCount: MANIFEST_LIMITS.maxAliasCount });
    } catch (e) {
      // The yaml library refuses to expand more aliases than maxAliasCount (a "billion laughs" document).
      const alias = /alias/i.test((e as Error).message);
      const detail = alias ? "too many alias expansions (an alias bomb?); refused to expand it" : (e as Error).message.split("\n")[0]!;
      out.errors.push(new ManifestError("yaml-syntax", file, di, src.lineOf?.([]) ?? 0, "", detail, alias ? "write the repeated parts out, or use fewer nested aliases" : "fix the YAML"));
      return;
    }
    if (v === null || v === undefined) return;
    addObject(v, src, doc as Document, lc, [], out);
  });
  return out;
}

function addObject(v: unknown, src: SourceRef, doc: Document, lc: LineCounter, base: (string | number)[], out: LoadResult): void {
  const s: SourceRef = { file: src.file, doc: src.doc, lineOf: lineOfFactory(doc, lc, base) };
  if (!v || typeof v !== "object" || Array.isArray(v)) {
    out.errors.push(problemAt(s, [], "not-an-object", "a manifest must be an object with apiVersion and kind"));
    return;
  }
  const o = v as Record<string, unknown>;
  if (typeof o.kind !== "string") {
    out.errors.push(problemAt(s, ["kind"], "missing-kind", "kind is required"));
    return;
  }
  if (o.kind === "List" || o.kind.endsWith("List")) {
    const items = Array.isArray(o.items) ? o.items : [];
    items.forEach((it, i) => addObject(it, src, doc, lc, [...base, "items", i], out));
    return;
  }
  const known = KNOWN_KINDS.includes(o.kind) || (CILIATE_KINDS.includes(o.kind) && o.apiVersion === CILIATE_API);
  if (!known) {
    // One rule, as kubectl has for a kind its server does not serve: refuse, never skip. A skipped
    // object could be a policy (an AdminNetworkPolicy, a CiliumCIDRGroup) whose absence makes a denied flow
    // look allowed. docs/scenarios.md "Unknown kinds" says the same.
    const api = o.apiVersion === undefined ? "" : ` (apiVersion ${String(o.apiVersion)})`;
    const md = o.metadata && typeof o.metadata === "object" ? (o.metadata as Record<string, unknown>) : {};
    const label = objectLabel(o.kind, md);
    if (CILIATE_KINDS.includes(o.kind))
      out.errors.push(problemAt(s, ["apiVersion"], "unsupported-api-version", `${o.kind} needs apiVersion ${CILIATE_API}, not ${JSON.stringify(o.apiVersion ?? "")}`, "", label));
    else {
      const near = didYouMean(o.kind, [...KNOWN_KINDS, ...CILIATE_KINDS]);
      // The hint goes into the line itself: it is the one thing to read before fixing the file.
      const hint = near ? `did you mean ${near}?` : "remove it; from a cluster, export only the kinds ciliate reads (docs/scenarios.md)";
      out.errors.push(problemAt(s, ["kind"], "unknown-kind", `ciliate does not read kind ${o.kind}${api}; ${hint}`, "", label));
    }
    out.refused.push(label);
    return;
  }
  const md = (o.metadata && typeof o.metadata === "object" ? o.metadata : {}) as Record<string, unknown>;
  const label = objectLabel(o.kind, md);
  const problems: ManifestError[] = [];
  if ((typeof md.name !== "string" || md.name === "") && o.kind !== "Config") problems.push(problemAt(s, ["metadata", "name"], "missing-name", "required (every object has a name)", "", label));
  for (const p of validateAgainstSchema(o) ?? []) problems.push(problemAt(s, p.path, p.code, p.detail, p.hint ?? "", label));
  for (const p of metadataProblems(o.kind, o)) problems.push(problemAt(s, p.path, "invalid-name", p.detail, "", label));
  // The shapes the loader's consumers iterate, for what a schema leaves open (e.g. a kind without one).
  const shape = problems.length ? undefined : shapeProblem(o);
  if (shape) problems.push(problemAt(s, shape.path, "invalid-shape", `${o.kind} ${shape.detail}`, "", label));
  if (problems.length) {
    out.errors.push(...problems);
    out.refused.push(label);
    return;
  }
  // The API server stores what it validated: null fields dropped (`fromEndpoints: null` is no field).
  const stored = dropNulls(o) as Record<string, unknown>;
  out.objects.push({
    apiVersion: String(o.apiVersion ?? ""),
    kind: o.kind,
    metadata: { ...md, name: String(md.name ?? "config"), namespace: md.namespace === undefined ? undefined : String(md.namespace), labels: (md.labels ?? {}) as Record<string, string> },
    raw: stored,
    source: s,
  });
}

/** Lists manifest files under a path (a file, or a directory walked recursively in sorted order). */
export function manifestFiles(path: string): string[] {
  const st = statSync(path);
  if (st.isFile()) return [path];
  const out: string[] = [];
  for (const name of readdirSync(path).sort()) {
    const p = join(path, name);
    if (statSync(p).isDirectory()) out.push(...manifestFiles(p));
    else if (/\.(ya?ml|json)$/i.test(name)) out.push(p);
  }
  return out;
}

/** Loads every manifest from files and directories. */
export function loadManifests(paths: string[]): LoadResult {
  const out: LoadResult = { objects: [], warnings: [], errors: [], refused: [] };
  for (const p of paths) {
    let files: string[];
    try {
      files = manifestFiles(p);
    } catch (e) {
      out.errors.push(new ManifestError("file-not-found", p, 0, 0, "", (e as Error).message, "check the path"));
      continue;
    }
    for (const f of files) {
      // Refused before reading, so a huge file costs no memory.
      const size = statSync(f).size;
      if (size > MANIFEST_LIMITS.maxBytes) {
        out.errors.push(new ManifestError("manifest-too-large", f, 0, 0, "", `file is ${mib(size)}, over the limit of ${mib(MANIFEST_LIMITS.maxBytes)} per manifest`, "split it into several files"));
        continue;
      }
      const r = parseManifests(readFileSync(f, "utf8"), f);
      out.objects.push(...r.objects);
      out.warnings.push(...r.warnings);
      out.errors.push(...r.errors);
      out.refused.push(...r.refused);
    }
  }
  return out;
}

/* ------------------------------------------------------------------------------------------------ */
/* Typed ciliate kinds (docs/scenarios.md)                                                              */

export type EndpointReference =
  | { pod: string }
  | { service: string }
  | { selector: { namespace?: string; matchLabels?: Record<string, string> } }
  | { cidr: string }
  | { ip: string }
  | { entity: string };

export interface TrafficFlow {
  from: EndpointReference;
  to: EndpointReference;
  port?: number;
  protocol: string;
  http?: { method?: string; path?: string; headers?: Record<string, string> };
  kafka?: { apiKey?: string | number; role?: "produce" | "consume"; apiVersion?: number; clientID?: string; topic?: string; topics?: string[] };
  tls?: { serverName?: string };
  icmp?: { type: number; code?: number };
  count: number;
}

export interface TrafficSpec {
  name: string;
  namespace?: string;
  flows: TrafficFlow[];
}

export interface ExpectationSpec {
  name: string;
  namespace?: string;
  from: EndpointReference;
  to: EndpointReference;
  port?: number;
  protocol: string;
  http?: { method?: string; path?: string; headers?: Record<string, string> };
  kafka?: { apiKey?: string | number; role?: "produce" | "consume"; apiVersion?: number; clientID?: string; topic?: string; topics?: string[] };
  tls?: { serverName?: string };
  icmp?: { type: number; code?: number };
  verdict: "allowed" | "denied";
}

export interface ConfigSpec {
  clusterName?: string;
  policyEnforcement?: EnforcementMode;
  podCIDR?: string;
  serviceCIDR?: string;
  maglevTableSize?: number;
  maglevSeed?: number;
  ctTimeouts?: Record<string, number>;
  [k: string]: unknown;
}

const REF_KEYS = ["pod", "service", "selector", "cidr", "ip", "entity"];

function parseRef(v: unknown, src: SourceRef | undefined, path: (string | number)[], errors: ManifestError[]): EndpointReference | undefined {
  if (typeof v === "string") {
    // Short forms: "ns/pod", "svc:ns/name", "entity:world", an IP.
    if (v.startsWith("svc:")) return { service: v.slice(4) };
    if (v.startsWith("entity:")) return { entity: v.slice(7) };
    if (/^[0-9.]+$|:/.test(v)) return { ip: v };
    return { pod: v };
  }
  if (!v || typeof v !== "object") {
    errors.push(problemAt(src, path, "invalid-endpoint-ref", "an endpoint reference is required", `one of ${REF_KEYS.join(", ")}`));
    return undefined;
  }
  const keys = Object.keys(v).filter((k) => REF_KEYS.includes(k));
  if (keys.length !== 1) {
    errors.push(problemAt(src, path, "invalid-endpoint-ref", `an endpoint reference needs exactly one of ${REF_KEYS.join(", ")}`));
    return undefined;
  }
  return v as EndpointReference;
}

function parseFlowLike(r: Record<string, unknown>, src: SourceRef | undefined, path: (string | number)[], errors: ManifestError[]) {
  const from = parseRef(r.from, src, [...path, "from"], errors);
  const to = parseRef(r.to, src, [...path, "to"], errors);
  const protocol = String(r.protocol ?? (r.icmp ? "ICMP" : "TCP"));
  if (!["TCP", "UDP", "SCTP", "ICMP", "ICMPv6"].includes(protocol)) errors.push(problemAt(src, [...path, "protocol"], "invalid-protocol", `unknown protocol ${protocol}`));
  const port = r.port === undefined ? undefined : Number(r.port);
  if (port !== undefined && !(Number.isInteger(port) && port >= 0 && port <= 65535)) errors.push(problemAt(src, [...path, "port"], "port-out-of-range", `port ${r.port} is out of range 0-65535`));
  return { from, to, protocol, port, http: r.http as TrafficFlow["http"], kafka: r.kafka as TrafficFlow["kafka"], tls: r.tls as TrafficFlow["tls"], icmp: r.icmp as TrafficFlow["icmp"] };
}

/** Parses Traffic, Expectation and Config objects into typed specs. */
export function parseCiliateObjects(objects: ManifestObject[]): { traffic: TrafficSpec[]; expectations: ExpectationSpec[]; config: ConfigSpec; errors: ManifestError[] } {
  const errors: ManifestError[] = [];
  const traffic: TrafficSpec[] = [];
  const expectations: ExpectationSpec[] = [];
  let config: ConfigSpec = {};
  for (const o of objects) {
    if (o.apiVersion !== CILIATE_API) continue;
    const spec = (o.raw.spec ?? {}) as Record<string, unknown>;
    if (o.kind === "Traffic") {
      const flows: TrafficFlow[] = [];
      (Array.isArray(spec.flows) ? spec.flows : []).forEach((f: Record<string, unknown>, i: number) => {
        const x = parseFlowLike(f ?? {}, o.source, ["spec", "flows", i], errors);
        if (x.from && x.to) flows.push({ ...x, from: x.from, to: x.to, count: Number(f.count ?? 1) });
      });
      if (!Array.isArray(spec.flows)) errors.push(problemAt(o.source, ["spec", "flows"], "missing-field", "spec.flows must be a list"));
      traffic.push({ name: o.metadata.name, namespace: o.metadata.namespace, flows });
    } else if (o.kind === "Expectation") {
      const x = parseFlowLike(spec, o.source, ["spec"], errors);
      const verdict = spec.verdict;
      if (verdict !== "allowed" && verdict !== "denied") errors.push(problemAt(o.source, ["spec", "verdict"], "invalid-verdict", "verdict must be allowed or denied"));
      else if (x.from && x.to) expectations.push({ name: o.metadata.name, namespace: o.metadata.namespace, ...x, from: x.from, to: x.to, verdict });
    } else if (o.kind === "Config") {
      const pe = spec.policyEnforcement;
      if (pe !== undefined && !["default", "always", "never"].includes(String(pe)))
        errors.push(problemAt(o.source, ["spec", "policyEnforcement"], "invalid-enforcement", `unknown policy enforcement ${JSON.stringify(pe)}`, "use default, always or never"));
      config = { ...config, ...(spec as ConfigSpec) };
    }
  }
  return { traffic, expectations, config, errors };
}

/* ------------------------------------------------------------------------------------------------ */
/* Cluster model                                                                                       */

function containerPorts(podSpec: Record<string, unknown>): ContainerPort[] {
  const out: ContainerPort[] = [];
  for (const c of [...((podSpec.containers as unknown[]) ?? []), ...((podSpec.initContainers as unknown[]) ?? [])] as Record<string, unknown>[])
    for (const p of ((c?.ports as unknown[]) ?? []) as Record<string, unknown>[])
      out.push({ name: p.name === undefined ? undefined : String(p.name), port: Number(p.containerPort), protocol: (String(p.protocol ?? "TCP").toUpperCase() as ContainerPort["protocol"]) });
  return out;
}

function podFromTemplate(ns: string, name: string, tmpl: Record<string, unknown>, node?: string): PodModel {
  const md = (tmpl.metadata ?? {}) as Record<string, unknown>;
  const spec = (tmpl.spec ?? {}) as Record<string, unknown>;
  return {
    namespace: ns,
    name,
    labels: { ...((md.labels ?? {}) as Record<string, string>) },
    serviceAccount: String(spec.serviceAccountName ?? spec.serviceAccount ?? "default"),
    node: (spec.nodeName as string | undefined) ?? node,
    hostNetwork: Boolean(spec.hostNetwork),
    containerPorts: containerPorts(spec),
  };
}

/** Pods a workload expands to (deterministic names: <name>-<i> / StatefulSet <name>-<i> / DaemonSet <name>-<node>). */
export function expandWorkload(o: ManifestObject, nodes: string[]): PodModel[] {
  const ns = o.metadata.namespace ?? "default";
  const spec = (o.raw.spec ?? {}) as Record<string, unknown>;
  const tmpl = (spec.template ?? {}) as Record<string, unknown>;
  if (o.kind === "DaemonSet") return (nodes.length ? nodes : ["node-1"]).map((n) => podFromTemplate(ns, `${o.metadata.name}-${n}`, tmpl, n));
  const replicas = spec.replicas === undefined ? 1 : Number(spec.replicas);
  const pods: PodModel[] = [];
  for (let i = 0; i < replicas; i++) {
    const p = podFromTemplate(ns, `${o.metadata.name}-${i}`, tmpl);
    if (o.kind === "StatefulSet") p.labels["statefulset.kubernetes.io/pod-name"] = p.name;
    pods.push(p);
  }
  return pods;
}

/** A plain cluster model from manifests (no IPAM: pod IPs only when status.podIP(s) is given). */
export function clusterFromManifests(objects: ManifestObject[], overrides: { clusterName?: string; policyEnforcement?: EnforcementMode } = {}): ClusterModel {
  const { config } = parseCiliateObjects(objects);
  const nsNames = new Set<string>();
  const namespaces = objects.filter((o) => o.kind === "Namespace").map((o) => ({ name: o.metadata.name, labels: { ...(o.metadata.labels ?? {}), "kubernetes.io/metadata.name": o.metadata.name } }));
  namespaces.forEach((n) => nsNames.add(n.name));
  const nodes = objects.filter((o) => o.kind === "Node").map((o) => o.metadata.name).sort();
  const pods: PodModel[] = [];
  for (const o of objects) {
    if (o.kind === "Pod") {
      const p = podFromTemplate(o.metadata.namespace ?? "default", o.metadata.name, { metadata: o.metadata, spec: o.raw.spec });
      const st = (o.raw.status ?? {}) as Record<string, unknown>;
      const ips = Array.isArray(st.podIPs) ? (st.podIPs as { ip: string }[]).map((x) => x.ip) : st.podIP ? [String(st.podIP)] : undefined;
      if (ips) p.ips = ips;
      pods.push(p);
    } else if (["Deployment", "ReplicaSet", "StatefulSet", "DaemonSet"].includes(o.kind)) pods.push(...expandWorkload(o, nodes));
  }
  const services: ServiceModel[] = objects
    .filter((o) => o.kind === "Service")
    .map((o) => {
      const spec = (o.raw.spec ?? {}) as Record<string, unknown>;
      return {
        namespace: o.metadata.namespace ?? "default",
        name: o.metadata.name,
        labels: o.metadata.labels,
        selector: spec.selector as Record<string, string> | undefined,
        ports: ((spec.ports as Record<string, unknown>[]) ?? []).map((p) => ({
          name: p.name as string | undefined,
          port: Number(p.port),
          targetPort: p.targetPort as number | string | undefined,
          protocol: String(p.protocol ?? "TCP") as "TCP",
        })),
        clusterIP: typeof spec.clusterIP === "string" && spec.clusterIP !== "None" ? spec.clusterIP : undefined,
      };
    });
  for (const o of objects.filter((x) => x.kind === "EndpointSlice")) {
    const svcName = o.metadata.labels?.["kubernetes.io/service-name"];
    const svc = services.find((s) => s.name === svcName && s.namespace === (o.metadata.namespace ?? "default"));
    if (!svc) continue;
    const eps = ((o.raw.endpoints as Record<string, unknown>[]) ?? []).flatMap((e) => ((e.addresses as string[]) ?? []).map(String));
    svc.endpoints = [...(svc.endpoints ?? []), ...eps];
  }
  for (const p of pods) if (!nsNames.has(p.namespace)) {
    nsNames.add(p.namespace);
    namespaces.push({ name: p.namespace, labels: { "kubernetes.io/metadata.name": p.namespace } });
  }
  return {
    clusterName: overrides.clusterName ?? config.clusterName ?? "default",
    policyEnforcement: overrides.policyEnforcement ?? config.policyEnforcement ?? "default",
    namespaces,
    pods,
    services,
  };
}
