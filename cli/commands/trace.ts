/*
 * `ciliate trace`: one flow, step by step — addresses, identities, the service and backend chosen, the
 * conntrack state, each policy decision with the policy-map entry that decided it and the rules (policy,
 * rule index, element) behind that entry, the L7 decision, and the verdict. The decisions come from the
 * core's trace records (cookie → provenance); when egress drops the flow, the ingress side is still run
 * once on the would-be packet so the output shows both directions (`ingress.evaluated: false`).
 */
import { stringify as stringifyYaml } from "yaml";
import * as C from "../../host/constants.gen.ts";
import { dropReasonText } from "../../host/drop-reasons.gen.ts";
import { KAFKA_API_KEYS, KAFKA_ROLE_REQUEST, kafkaApiKeyOf, policyLookup, dnsSelectorProblems, portInPrefix, type CompiledPolicy, type MapStateEntry } from "../../policy/index.ts";
import { icmpErrorProblem, type EndpointRefSpec, type FlowSpec } from "../../node/cluster.ts";
import { identityText, jsonLine, MATCH_TYPE_NAMES } from "../../host/flows.ts";
import { protoName, protoNumber } from "../../host/protocols.ts";
import { hostPort, parseIp } from "../../host/ip.ts";

/** The address of "addr:port" or "[addr]:port". */
function addrOf(hp: string): string {
  return hp.startsWith("[") ? hp.slice(1, hp.indexOf("]")) : hp.split(":")[0]!;
}
import type { DirectionOutcome, FlowResult, Place, Simulation, Step } from "../../sim/simulator.ts";
import { diagnosticsJson, load, outputOf, parsePort, parseRef, simulation, simulationOptions, type GlobalOptions, type Out } from "../common.ts";
import { MeshSimulation } from "../../sim/mesh.ts";
import { CliError } from "../errors.ts";


interface TraceOptions extends GlobalOptions {
  from?: string;
  to?: string;
  port?: string;
  protocol?: string;
  httpMethod?: string;
  httpPath?: string;
  httpHost?: string;
  kafkaApiKey?: string;
  kafkaRole?: string;
  kafkaApiVersion?: string;
  kafkaClientId?: string;
  kafkaTopic?: string[];
  tlsSni?: string;
  icmpType?: string;
  icmpCode?: string;
  ipFamily?: string;
  dnsQuery?: string;
  dnsAnswer?: string[];
  dnsTtl?: string;
  size?: string;
  firstFragmentLost?: boolean;
  icmpError?: string;
  icmpErrorFrom?: string;
}

/** The L7 verdict with the deciding rule (its policy, rule element and index in that element's L7 list). */
function l7Json(l7: NonNullable<FlowResult["l7"]>) {
  const r = l7.rule;
  const rule = r
    ? { ...r.provenance, index: r.index, ...(l7.protocol === "http" ? { httpIndex: r.index, http: r.http } : {}), ...(r.kafka ? { kafka: r.kafka } : {}), ...(r.serverName ? { serverName: r.serverName } : {}), ...(l7.protocol === "dns" ? { dnsIndex: r.index, dns: r.dns } : {}) }
    : null;
  return { protocol: l7.protocol, verdict: l7.verdict, status: l7.status, errorCode: l7.errorCode, rcode: l7.rcode, learned: l7.learned, direction: l7.direction, proxyPort: l7.proxyPort, reason: l7.reason, rule };
}

/**
 * The compiled entry behind a decision: policy/'s lookup (the one TypeScript policy lookup, checked
 * against the datapath by policy/properties.test.ts) on the endpoint's entries. Undefined when the
 * datapath matched no entry (no cookie) or the endpoint has no policy.
 */
function decidingEntry(policy: CompiledPolicy, d: DirectionOutcome | undefined, direction: "ingress" | "egress", proto: number, port: number): MapStateEntry | undefined {
  if (!d?.endpoint || !d.cookie) return undefined;
  // In a multi-cluster scenario the endpoint is shown cluster/namespace/name; its policy knows it as namespace/name.
  const ep = policy.endpoints.get(d.endpoint.split("/").slice(-2).join("/"));
  return ep ? policyLookup(ep.entries, direction, d.remoteIdentity, proto, port).entry : undefined;
}

function entryJson(e: MapStateEntry | undefined) {
  if (!e) return null;
  return { identity: e.key.identity, direction: e.key.direction, protocol: e.key.protocol, port: e.key.port, portPrefix: e.key.portPrefix, deny: e.deny, proxyPort: e.proxyPort, cookie: e.cookie };
}

function entryText(e: ReturnType<typeof entryJson>): string {
  if (!e) return "no entry matched";
  const l4 = e.protocol === 0 ? "any protocol" : `${e.port}${e.portPrefix < 16 ? `/${e.portPrefix} bits` : ""}/${protoName(e.protocol) ?? e.protocol}`;
  return `identity ${e.identity === 0 ? "0 (any)" : e.identity} ${e.direction} ${l4}${e.deny ? " DENY" : ""}${e.proxyPort ? ` proxy-port ${e.proxyPort}` : ""} (cookie ${e.cookie})`;
}

function placeJson(sim: Simulation, p: Place, identity: number) {
  return { kind: p.kind, ip: p.ip, pod: p.pod && sim.podName(p.pod), node: p.node, entity: p.entity, identity, identityName: identityText(identity) };
}

function dirJson(policy: CompiledPolicy, d: DirectionOutcome | undefined, direction: "ingress" | "egress", proto: number, port: number, evaluated: boolean, fallbackReason: string) {
  if (!d) return { verdict: "allowed" as const, evaluated, reason: fallbackReason, entry: null, rules: [] };
  const e = decidingEntry(policy, d, direction, proto, port);
  return {
    verdict: d.verdict,
    evaluated,
    node: d.node,
    endpoint: d.endpoint,
    remoteIdentity: d.remoteIdentity,
    matchType: d.matchType,
    dropReason: d.dropReason || undefined,
    dropReasonText: d.dropReason ? dropReasonText(d.dropReason) : undefined,
    proxyPort: d.proxyPort,
    entry: entryJson(e),
    rules: d.rules.map((r) => ({ kind: r.kind, namespace: r.namespace, name: r.name, ruleIndex: r.ruleIndex, element: r.element, peer: r.peer })),
    reason: d.reason,
  };
}


/** An endpoint reference as --from/--to take it: ns/pod, svc:ns/name, entity:NAME, an IP or a CIDR. */
function refText(r: EndpointRefSpec): string {
  if ("pod" in r) return r.pod;
  if ("service" in r) return `svc:${r.service}`;
  if ("entity" in r) return `entity:${r.entity}`;
  if ("ip" in r) return r.ip;
  if ("cidr" in r) return r.cidr;
  const labels = Object.entries(r.selector.matchLabels ?? {}).map(([k, v]) => `${k}=${v}`);
  return `selector ${r.selector.namespace ?? "(any namespace)"}${labels.length ? ` {${labels.join(", ")}}` : ""}`;
}
export function traceJson(sim: Simulation, spec: FlowSpec, r: FlowResult, ingressWouldBe?: DirectionOutcome) {
  const proto = protoNumber(spec.protocol)!;
  const port = r.backend?.port ?? spec.port;
  const egressReason = r.source.kind === "pod" ? "allowed" : "the source is not a pod on a node: no egress policy applies";
  const ingressReason = r.destination.kind === "pod" || r.backend ? "allowed" : "the destination is not a pod: no ingress policy applies";
  const ingress = r.ingress ?? ingressWouldBe;
  return {
    verdict: r.verdict,
    flow: { from: spec.from, to: spec.to, port: spec.port, protocol: spec.protocol, http: spec.http, dns: spec.dns, icmp: spec.icmp, ...(spec.icmpError ? { icmpError: spec.icmpError } : {}) },
    identities: { source: r.srcIdentity, destination: r.dstIdentity },
    source: placeJson(sim, r.source, r.srcIdentity),
    destination: placeJson(sim, r.destination, r.dstIdentity),
    service: r.service ?? null,
    backend: r.backend ?? null,
    egress: dirJson(r.egress ? sim.policyAt(r.egress.node) : sim.policy, r.egress, "egress", proto, port, true, egressReason),
    ingress: dirJson(ingress ? sim.policyAt(ingress.node) : sim.policy, ingress, "ingress", proto, port, !!r.ingress || !ingressWouldBe, ingressReason),
    ...(r.l7 ? { l7: l7Json(r.l7) } : {}),
    dropReason: r.dropReason || undefined,
    dropReasonText: r.dropReason ? dropReasonText(r.dropReason) : undefined,
    steps: r.steps.map((s) => ({
      node: s.node,
      entry: s.entry,
      packet: s.packet,
      reply: s.reply,
      verdict: s.result.verdict === C.CTX_ACT_DROP ? "DROPPED" : s.result.verdict === C.CTX_ACT_REDIRECT ? "REDIRECTED" : "FORWARDED",
      // Encapsulated towards another node (fromEndpoint) or received through the tunnel (fromOverlay).
      ...(s.tunnel ? { tunnel: tunnelJson(sim, s) } : {}),
      // An IPv4 fragment: a later one (offset > 0) was judged with its first fragment's ports (core/frag.ts).
      ...(s.fragment ? { fragment: { id: s.fragment.id, offset: s.fragment.offset, last: !s.fragment.more } } : {}),
      // An ICMP error: the packet it embeds as the program received it and as it left (--icmp-error).
      ...(s.icmpError ? { icmpError: { type: s.icmpError.type, code: s.icmpError.code, inner: { before: innerText(s.icmpError.before), after: innerText(s.icmpError.after) } } } : {}),
      // Masquerading (toNetwork) and its reverse for the reply (fromNetwork); NodePort SNAT alike.
      ...(s.trace.traceFlags & C.TRACE_F_SNAT && s.result.verdict !== C.CTX_ACT_DROP ? { snat: snatJson(s) } : {}),
      dropReason: s.result.dropReason || undefined,
      ctState: ["new", "established", "reply", "related"][s.trace.ctState] ?? "none",
      srcIdentity: s.trace.srcIdentity,
      dstIdentity: s.trace.dstIdentity,
      output: s.output,
    })),
    reason: r.reason,
  };
}

/** The packet an ICMP error embeds, as `src:port -> dst:port PROTO` (an ICMP echo by its identifier). */
function innerText(i: NonNullable<Step["icmpError"]>["before"]): string {
  const name = protoName(i.proto) ?? String(i.proto);
  if (i.proto === 1) return `${i.src} -> ${i.dst} ICMP echo id ${i.sport}`;
  return `${hostPort(i.src, i.sport)} -> ${hostPort(i.dst, i.dport)} ${name}`;
}

/** The outer header of an encapsulated hop: on encapsulation the key names the destination node, on
 * decapsulation the sending one; the other end is the node the step ran on. */
function tunnelJson(sim: Simulation, s: Step) {
  const t = s.tunnel!;
  const here = sim.cluster.nodes.find((n) => n.name === s.node)?.ip ?? "";
  const encap = s.entry === "fromEndpoint";
  return {
    direction: encap ? ("encap" as const) : ("decap" as const),
    protocol: sim.tunnel === "geneve" ? "GENEVE" : "VXLAN",
    outer: encap ? { source: here, destination: t.remote } : { source: t.remote, destination: here },
    vni: t.tunnelId,
  };
}

/** The address an SNAT step translated: the source on the way out; the destination of a reply coming
 * back (TRACE_F_REPLY at fromNetwork). */
function snatJson(s: Step) {
  const [src, dst] = s.packet.split(" ")[0] === undefined ? ["", ""] : [s.packet.split(" -> ")[0]!, s.packet.split(" -> ")[1]!.split(" ")[0]!];
  const reverse = s.entry === "fromNetwork" && (s.trace.traceFlags & C.TRACE_F_REPLY) !== 0;
  return reverse
    ? { direction: "rev-snat" as const, field: "destination" as const, from: dst, to: hostPort(s.output.dst, s.output.dport) }
    : { direction: "snat" as const, field: "source" as const, from: src, to: hostPort(s.output.src, s.output.sport) };
}

/** What the datapath did with a fragment (core/frag.ts F1–F3): the first one's ports recorded, a later one
 * judged with them, or dropped because its first fragment was never seen. */
function fragmentText(f: { id: number; offset: number; last: boolean }, dropReason: number | undefined): string {
  const what = `IPv4 fragment (IP id ${f.id}, offset ${f.offset}${f.last ? ", last" : ""})`;
  if (f.offset === 0) return `${what}: the first; its ports are recorded for the later fragments`;
  if (dropReason === C.DROP_FRAG_NOT_FOUND) return `${what}: its first fragment was not seen, so it has no ports (drop ${dropReason})`;
  return `${what}: takes the ports, service translation and verdict of its first fragment`;
}

function textOf(j: ReturnType<typeof traceJson>): string {
  const lines: string[] = [];
  const ep = (p: ReturnType<typeof placeJson>) => `${p.pod ?? p.entity ?? p.kind} ${p.ip} identity ${p.identity} (${p.identityName})${p.node ? ` on ${p.node}` : ""}`;
  lines.push(`Flow:        ${refText(j.flow.from)} -> ${refText(j.flow.to)} ${j.flow.protocol === "ICMP" || j.flow.protocol === "ICMPv6" ? `${j.flow.protocol} type ${j.flow.port}` : `${j.flow.port}/${j.flow.protocol}`}${j.flow.http ? ` HTTP ${j.flow.http.method} ${j.flow.http.path}` : ""}${j.flow.dns ? ` DNS query ${j.flow.dns.query}` : ""}${j.flow.icmpError ? `, then ICMP error type ${j.flow.icmpError.type} code ${j.flow.icmpError.code} from ${j.flow.icmpError.from ?? "where it arrived"}` : ""}`);
  lines.push(`Source:      ${ep(j.source)}`);
  lines.push(`Destination: ${ep(j.destination)}`);
  if (j.service) lines.push(`Service:     ${j.service.namespace}/${j.service.name} ${j.service.frontend} (${j.service.kind})${j.backend ? ` → backend ${j.backend.pod ?? j.backend.ip} ${hostPort(j.backend.ip, j.backend.port)}` : " → no backend"}`);
  lines.push("Packets:");
  j.steps.forEach((s, i) => {
    lines.push(`  ${String(i + 1).padStart(2)}. [${s.node}] ${s.entry}${s.reply ? " (reply)" : ""} ${s.packet} → ${s.verdict}${s.dropReason ? ` (${dropReasonText(s.dropReason)})` : ""} ct=${s.ctState} ids ${s.srcIdentity}→${s.dstIdentity}${s.output.dst !== addrOf(s.packet.split(" -> ")[1]?.split(" ")[0] ?? "") ? ` out ${hostPort(s.output.src, s.output.sport)} -> ${hostPort(s.output.dst, s.output.dport)}` : ""}`);
    if (s.tunnel) lines.push(`      ${s.tunnel.direction === "encap" ? "encapsulated" : "decapsulated"}: ${s.tunnel.protocol} ${s.tunnel.outer.source} -> ${s.tunnel.outer.destination} VNI ${s.tunnel.vni} (identity ${s.tunnel.vni})`);
    if (s.fragment) lines.push(`      ${fragmentText(s.fragment, s.dropReason)}`);
    if (s.snat) lines.push(`      ${s.snat.direction === "snat" ? "SNAT" : "reverse SNAT"} of the ${s.snat.field}: ${s.snat.from} -> ${s.snat.to}`);
    if (s.icmpError) {
      const e = s.icmpError;
      // The backend's own error also gets the frontend as its outer source (core/lb.ts lbRevNatIcmpError).
      const src = s.packet.split(" -> ")[0]!.replace(/:0$/, "");
      const outer = s.output.src !== src ? `; outer source ${src} -> ${s.output.src}` : "";
      lines.push(`      ICMP error type ${e.type} code ${e.code} about ${e.inner.before}${e.inner.after !== e.inner.before ? `; embedded header translated to ${e.inner.after}` : ""}${outer}`);
    }
  });
  for (const [name, d] of [["Egress", j.egress], ["Ingress", j.ingress]] as const) {
    lines.push(`${name}:${" ".repeat(12 - name.length)}${d.verdict.toUpperCase()}${d.evaluated ? "" : " (not reached; this is what ingress would decide)"} — ${d.reason}`);
    if (d.entry) lines.push(`             map entry: ${entryText(d.entry)}`);
    else if (d.evaluated !== undefined && "node" in d && d.verdict === "denied") lines.push("             map entry: none matched (default deny)");
    if ("rules" in d && d.rules.length) for (const r of d.rules) lines.push(`             rule: ${r.kind === "derived" ? `derived ${r.element}` : `${r.kind} ${r.namespace ? r.namespace + "/" : ""}${r.name} rule ${r.ruleIndex} ${r.element} (peer ${r.peer})`}`);
  }
  if (j.l7) {
    const answer = j.l7.rcode !== undefined ? ` (${j.l7.rcode === 5 ? "REFUSED" : `rcode ${j.l7.rcode}`})` : j.l7.status !== undefined ? ` (${j.l7.status})` : j.l7.errorCode ? ` (error code ${j.l7.errorCode})` : "";
    lines.push(`L7:          ${j.l7.verdict.toUpperCase()}${answer} at the ${j.l7.direction} ${j.l7.protocol} proxy port ${j.l7.proxyPort} — ${j.l7.reason}`);
    const rule = j.l7.rule;
    if (rule && rule.index >= 0) lines.push(`             rule: ${rule.kind} ${rule.namespace ? rule.namespace + "/" : ""}${rule.name} rule ${rule.ruleIndex} ${rule.element} ${j.l7.protocol === "tls" ? "serverNames" : j.l7.protocol}[${rule.index}] ${JSON.stringify(rule.http ?? rule.kafka ?? rule.serverName ?? rule.dns)}`);
    if (j.l7.learned?.length) lines.push(`             learned into the FQDN cache: ${j.l7.learned.join(", ")}`);
  }
  lines.push(`Verdict:     ${j.verdict.toUpperCase()}`);
  return `${lines.join("\n")}\n`;
}

export async function runTrace(g: TraceOptions, out: Out): Promise<number> {
  const fmt = outputOf(g, ["table", "text", "json", "yaml"]);
  if (!g.from) throw new CliError("--from is required", "BAD_OPTION", "e.g. --from default/tiefighter");
  if (!g.to) throw new CliError("--to is required", "BAD_OPTION", "e.g. --to svc:default/deathstar");
  const from = parseRef(g.from, "--from");
  const to = parseRef(g.to, "--to");
  const protoRaw = (g.protocol ?? (g.icmpType !== undefined ? "ICMP" : g.dnsQuery !== undefined ? "UDP" : "TCP")).toUpperCase();
  const protocol = protoRaw === "ICMPV6" ? "ICMPv6" : protoRaw;
  if (protoNumber(protocol) === undefined) throw new CliError(`unknown protocol ${JSON.stringify(g.protocol)}`, "BAD_OPTION", "use TCP, UDP, SCTP, ICMP, ICMPv6, VRRP or IGMP");
  const icmp = protocol === "ICMP" || protocol === "ICMPv6";
  const dns = dnsOption(g, protocol);
  let port = 0;
  let icmpSpec: FlowSpec["icmp"];
  if (icmp) {
    const t = g.icmpType === undefined ? (protocol === "ICMP" ? 8 : 128) : Number(g.icmpType);
    const c = g.icmpCode === undefined ? 0 : Number(g.icmpCode);
    if (!Number.isInteger(t) || t < 0 || t > 255) throw new CliError(`malformed --icmp-type ${JSON.stringify(g.icmpType)}`, "BAD_OPTION", "an ICMP type is 0-255");
    if (!Number.isInteger(c) || c < 0 || c > 255) throw new CliError(`malformed --icmp-code ${JSON.stringify(g.icmpCode)}`, "BAD_OPTION", "an ICMP code is 0-255");
    icmpSpec = { type: t, code: c };
    port = t;
  } else if (protocol === "VRRP" || protocol === "IGMP") {
    if (g.port !== undefined && g.port !== "0") throw new CliError(`${protocol} has no ports`, "BAD_OPTION", "leave --port out");
  } else port = dns && g.port === undefined ? 53 : parsePort(g.port, "--port");
  const http = g.httpMethod || g.httpPath ? { method: (g.httpMethod ?? "GET").toUpperCase(), path: g.httpPath ?? "/", host: g.httpHost } : undefined;
  if (http && protocol !== "TCP") throw new CliError("HTTP needs --protocol TCP", "BAD_OPTION");
  const kafka = kafkaOf(g);
  if (kafka && http) throw new CliError("give --http-* or --kafka-* options, not both", "BAD_OPTION");
  if ((kafka || g.tlsSni !== undefined) && protocol !== "TCP") throw new CliError("Kafka and TLS need --protocol TCP", "BAD_OPTION");
  const tls = g.tlsSni !== undefined ? { serverName: g.tlsSni === "" ? undefined : g.tlsSni } : undefined;
  if (dns && (http || kafka || tls)) throw new CliError("a traced flow carries one L7 protocol: give --dns-query without --http-*, --kafka-* or --tls-sni", "BAD_OPTION");
  // IPv4/IPv6 (Kubernetes' ipFamilies spelling), or 4/6.
  const famText = g.ipFamily?.toUpperCase();
  const fam = famText === "IPV6" || famText === "6" ? "IPv6" : famText === "IPV4" || famText === "4" ? "IPv4" : undefined;
  if (g.ipFamily !== undefined && !fam) throw new CliError(`unknown --ip-family ${JSON.stringify(g.ipFamily)}`, "BAD_OPTION", "IPv4 or IPv6 (or 4, 6)");
  const size = sizeOption(g, protocol, dns !== undefined);
  const icmpError = icmpErrorOption(g, { protocol, icmpType: icmpSpec?.type, l7: !!(http || kafka || tls || dns), size, ipFamily: fam });
  const spec: FlowSpec = { name: "trace", from, to, port, protocol: protocol as FlowSpec["protocol"], http, kafka, tls, dns, icmp: icmpSpec, ...(icmpError ? { icmpError } : {}), ...(fam ? { ipFamily: fam } : {}), ...(size !== undefined ? { size, firstFragmentLost: g.firstFragmentLost === true } : {}), count: 1, where: "--from/--to", whereEnds: { from: "--from", to: "--to" } };
  const l = load(g);
  // A multi-cluster scenario: the flow is traced in its source's cluster (sim/mesh.ts).
  const mesh = l.mesh ? await MeshSimulation.create(l.mesh, await simulationOptions(g)) : undefined;
  let sim: Simulation;
  let traced = spec;
  try {
    ({ sim, spec: traced } = mesh ? mesh.forFlow(spec) : { sim: await simulation(l, g), spec });
  } catch (e) {
    mesh?.close();
    throw e;
  }
  try {
    // What the pods asked their resolver in the Traffic documents is learned first, so a traced flow to a
    // name's address meets the toFQDNs entries the node would have.
    for (const f of l.cluster.traffic) if (f.dns) (mesh ?? sim).runFlow(f);
    const r = sim.runFlow(traced);
    let wouldBe: DirectionOutcome | undefined;
    if (!r.ingress && r.egress?.verdict === "denied") wouldBe = sim.ingressWouldBe(r);
    const j = traceJson(sim, spec, r, wouldBe);
    // The flow's events as `simulate -o json` prints them (Hubble GetFlowsResponse lines), for tools that read Hubble's shape.
    const doc = { ...j, flows: r.events.map((e) => JSON.parse(jsonLine(e)) as unknown), diagnostics: diagnosticsJson(g) };
    out(fmt === "json" ? `${JSON.stringify(doc, null, 2)}\n` : fmt === "yaml" ? stringifyYaml(JSON.parse(JSON.stringify(doc))) : textOf(j));
  } finally {
    (mesh ?? sim).close();
  }
  return 0;
}

/** --icmp-error TYPE[/CODE] and --icmp-error-from IP: an ICMP error about the flow's first packet. */
function icmpErrorOption(g: TraceOptions, flow: Parameters<typeof icmpErrorProblem>[1]): FlowSpec["icmpError"] {
  if (g.icmpError === undefined) {
    if (g.icmpErrorFrom !== undefined) throw new CliError("--icmp-error-from needs --icmp-error", "BAD_OPTION");
    return undefined;
  }
  const m = /^(\d{1,3})(?:\/(\d{1,3}))?$/.exec(g.icmpError);
  if (!m) throw new CliError(`malformed --icmp-error ${JSON.stringify(g.icmpError)}`, "BAD_OPTION", "TYPE/CODE, e.g. 3/4 (fragmentation needed), 3/3 (port unreachable), 11/0 (time exceeded)");
  const e = { type: Number(m[1]), code: m[2] === undefined ? 0 : Number(m[2]), ...(g.icmpErrorFrom !== undefined ? { from: g.icmpErrorFrom } : {}) };
  const problem = icmpErrorProblem(e, flow);
  if (problem) throw new CliError(`--icmp-error: ${problem}`, "BAD_OPTION");
  return e;
}

/** --size (UDP payload bytes; fragments above the MTU) and --first-fragment-lost (needs a fragmented --size). */
function sizeOption(g: TraceOptions, protocol: string, dns: boolean): number | undefined {
  if (g.size === undefined) {
    if (g.firstFragmentLost) throw new CliError("--first-fragment-lost needs --size larger than 1472 (a datagram sent in fragments)", "BAD_OPTION");
    return undefined;
  }
  if (protocol !== "UDP" || dns) throw new CliError("--size is for a UDP datagram (--protocol UDP, no --dns-query)", "BAD_OPTION");
  const n = Number(g.size);
  if (!/^\d+$/.test(g.size) || n > 65_507) throw new CliError(`malformed --size ${JSON.stringify(g.size)}`, "BAD_OPTION", "UDP payload bytes, 0-65507");
  if (g.firstFragmentLost && n <= 1472) throw new CliError("--first-fragment-lost needs --size larger than 1472 (a datagram sent in fragments)", "BAD_OPTION");
  return n;
}

function dnsOption(g: TraceOptions, protocolIn: string): FlowSpec["dns"] {
  if (g.dnsQuery === undefined) {
    if (g.dnsAnswer?.length || g.dnsTtl !== undefined) throw new CliError("--dns-answer and --dns-ttl need --dns-query", "BAD_OPTION");
    return undefined;
  }
  if (protocolIn !== "UDP" && protocolIn !== "TCP") throw new CliError("a DNS query needs --protocol UDP or TCP", "BAD_OPTION");
  const problem = dnsSelectorProblems({ matchName: g.dnsQuery })[0];
  if (problem) throw new CliError(`malformed --dns-query: ${problem.message}`, "BAD_OPTION");
  for (const a of g.dnsAnswer ?? []) if (!parseIp(a)) throw new CliError(`malformed --dns-answer ${JSON.stringify(a)}`, "BAD_OPTION", "an IPv4 or IPv6 address");
  const ttl = g.dnsTtl === undefined ? 300 : Number(g.dnsTtl);
  if (!Number.isInteger(ttl) || ttl < 0) throw new CliError(`malformed --dns-ttl ${JSON.stringify(g.dnsTtl)}`, "BAD_OPTION", "seconds, a non-negative integer");
  return { query: g.dnsQuery, answers: g.dnsAnswer ?? [], ttl };
}

/** The --kafka-* options as a flow's Kafka request (the same rules as a Traffic flow's `kafka:`). */
function kafkaOf(g: TraceOptions): FlowSpec["kafka"] {
  const any = g.kafkaApiKey ?? g.kafkaRole ?? g.kafkaApiVersion ?? g.kafkaClientId ?? g.kafkaTopic;
  if (any === undefined) return undefined;
  if (g.kafkaApiKey !== undefined && g.kafkaRole !== undefined) throw new CliError("give --kafka-api-key or --kafka-role, not both", "BAD_OPTION");
  if (g.kafkaRole !== undefined && g.kafkaRole !== "produce" && g.kafkaRole !== "consume") throw new CliError(`unknown --kafka-role ${JSON.stringify(g.kafkaRole)}`, "BAD_OPTION", "produce or consume");
  if (g.kafkaRole === undefined && g.kafkaApiKey === undefined) throw new CliError("a Kafka request needs --kafka-api-key or --kafka-role", "BAD_OPTION");
  const apiKey = g.kafkaRole !== undefined ? KAFKA_ROLE_REQUEST[g.kafkaRole as "produce" | "consume"] : kafkaApiKeyOf(g.kafkaApiKey);
  if (apiKey === undefined) throw new CliError(`unknown --kafka-api-key ${JSON.stringify(g.kafkaApiKey)}`, "BAD_OPTION", `a number or one of ${Object.keys(KAFKA_API_KEYS).join(", ")}`);
  const apiVersion = g.kafkaApiVersion === undefined ? 0 : Number(g.kafkaApiVersion);
  if (!/^\d+$/.test(g.kafkaApiVersion ?? "0") || apiVersion > 32767) throw new CliError(`malformed --kafka-api-version ${JSON.stringify(g.kafkaApiVersion)}`, "BAD_OPTION", "0-32767");
  return { apiKey, apiVersion, clientID: g.kafkaClientId ?? "", topics: g.kafkaTopic ?? [] };
}
