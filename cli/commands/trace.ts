/*
 * `ciliate trace`: one flow, step by step — addresses, identities, the service and backend chosen, the
 * conntrack state, each policy decision with the policy-map entry that decided it and the rules (policy,
 * rule index, element) behind that entry, the L7 decision, and the verdict. The decisions come from the
 * core's trace records (cookie → provenance); when egress drops the flow, the ingress side is still run
 * once on the would-be packet so the output shows both directions (`ingress.evaluated: false`).
 */
import type { Command } from "commander";
import { stringify as stringifyYaml } from "yaml";
import * as C from "../../host/constants.gen.ts";
import { dropReasonText } from "../../host/drop-reasons.gen.ts";
import type { CompiledPolicy } from "../../policy/compile.ts";
import { portInPrefix } from "../../policy/ports.ts";
import type { MapStateEntry } from "../../policy/types.ts";
import type { FlowSpec } from "../../sim/cluster.ts";
import { identityText, MATCH_TYPE_NAMES } from "../../sim/flows.ts";
import type { DirectionOutcome, FlowResult, Place, Simulation } from "../../sim/simulator.ts";
import { diagnosticsJson, load, outputOf, parsePort, parseRef, simulation, type GlobalOptions, type Out } from "../common.ts";
import { CliError } from "../errors.ts";

const PROTO_NUM: Record<string, number> = { TCP: 6, UDP: 17, SCTP: 132, ICMP: 1, ICMPv6: 58 };

interface TraceOptions extends GlobalOptions {
  from?: string;
  to?: string;
  port?: string;
  protocol?: string;
  httpMethod?: string;
  httpPath?: string;
  httpHost?: string;
  icmpType?: string;
  icmpCode?: string;
}

/** The compiled entry behind a decision: the endpoint's entry with the deciding cookie that covers the packet. */
function decidingEntry(policy: CompiledPolicy, d: DirectionOutcome | undefined, direction: "ingress" | "egress", proto: number, port: number): MapStateEntry | undefined {
  if (!d?.endpoint || !d.cookie) return undefined;
  const ep = policy.endpoints.get(d.endpoint);
  if (!ep) return undefined;
  const cands = ep.entries.filter(
    (e) =>
      e.cookie === d.cookie &&
      e.key.direction === direction &&
      (e.key.identity === d.remoteIdentity || e.key.identity === 0) &&
      (e.key.protocol === 0 || (e.key.protocol === proto && portInPrefix(port, { port: e.key.port, prefix: e.key.portPrefix }))),
  );
  cands.sort((a, b) => (b.key.identity === d.remoteIdentity ? 1 : 0) - (a.key.identity === d.remoteIdentity ? 1 : 0) || b.key.portPrefix - a.key.portPrefix);
  return cands[0];
}

function entryJson(e: MapStateEntry | undefined) {
  if (!e) return null;
  return { identity: e.key.identity, direction: e.key.direction, protocol: e.key.protocol, port: e.key.port, portPrefix: e.key.portPrefix, deny: e.deny, proxyPort: e.proxyPort, cookie: e.cookie };
}

function entryText(e: ReturnType<typeof entryJson>): string {
  if (!e) return "no entry matched";
  const names: Record<number, string> = { 6: "TCP", 17: "UDP", 132: "SCTP", 1: "ICMP", 58: "ICMPv6" };
  const l4 = e.protocol === 0 ? "any protocol" : `${e.port}${e.portPrefix < 16 ? `/${e.portPrefix} bits` : ""}/${names[e.protocol] ?? e.protocol}`;
  return `identity ${e.identity === 0 ? "0 (any)" : e.identity} ${e.direction} ${l4}${e.deny ? " DENY" : ""}${e.proxyPort ? ` proxy-port ${e.proxyPort}` : ""} (cookie ${e.cookie})`;
}

function placeJson(p: Place, identity: number) {
  return { kind: p.kind, ip: p.ip, pod: p.pod?.key, node: p.node, entity: p.entity, identity, identityName: identityText(identity) };
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

export function traceJson(sim: Simulation, spec: FlowSpec, r: FlowResult, ingressWouldBe?: DirectionOutcome) {
  const proto = PROTO_NUM[spec.protocol]!;
  const port = r.backend?.port ?? spec.port;
  const egressReason = r.source.kind === "pod" ? "allowed" : "the source is not a pod on a node: no egress policy applies";
  const ingressReason = r.destination.kind === "pod" || r.backend ? "allowed" : "the destination is not a pod: no ingress policy applies";
  const ingress = r.ingress ?? ingressWouldBe;
  return {
    verdict: r.verdict,
    flow: { from: spec.from, to: spec.to, port: spec.port, protocol: spec.protocol, http: spec.http, icmp: spec.icmp },
    identities: { source: r.srcIdentity, destination: r.dstIdentity },
    source: placeJson(r.source, r.srcIdentity),
    destination: placeJson(r.destination, r.dstIdentity),
    service: r.service ?? null,
    backend: r.backend ?? null,
    egress: dirJson(sim.policy, r.egress, "egress", proto, port, true, egressReason),
    ingress: dirJson(sim.policy, ingress, "ingress", proto, port, !!r.ingress || !ingressWouldBe, ingressReason),
    ...(r.l7 ? { l7: { verdict: r.l7.verdict, status: r.l7.status, direction: r.l7.direction, proxyPort: r.l7.proxyPort, reason: r.l7.reason, rule: r.l7.rule ? { ...r.l7.rule.provenance, httpIndex: r.l7.rule.index, http: r.l7.rule.rule } : null } } : {}),
    dropReason: r.dropReason || undefined,
    dropReasonText: r.dropReason ? dropReasonText(r.dropReason) : undefined,
    steps: r.steps.map((s) => ({
      node: s.node,
      entry: s.entry,
      packet: s.packet,
      reply: s.reply,
      verdict: s.result.verdict === C.CTX_ACT_DROP ? "DROPPED" : s.result.verdict === C.CTX_ACT_REDIRECT ? "REDIRECTED" : "FORWARDED",
      dropReason: s.result.dropReason || undefined,
      ctState: ["new", "established", "reply", "related"][s.trace.ctState] ?? "none",
      srcIdentity: s.trace.srcIdentity,
      dstIdentity: s.trace.dstIdentity,
      output: s.output,
    })),
    reason: r.reason,
  };
}

function textOf(j: ReturnType<typeof traceJson>): string {
  const lines: string[] = [];
  const ep = (p: ReturnType<typeof placeJson>) => `${p.pod ?? p.entity ?? p.kind} ${p.ip} identity ${p.identity} (${p.identityName})${p.node ? ` on ${p.node}` : ""}`;
  lines.push(`Flow:        ${JSON.stringify(j.flow.from)} -> ${JSON.stringify(j.flow.to)} ${j.flow.protocol === "ICMP" || j.flow.protocol === "ICMPv6" ? `${j.flow.protocol} type ${j.flow.port}` : `${j.flow.port}/${j.flow.protocol}`}${j.flow.http ? ` HTTP ${j.flow.http.method} ${j.flow.http.path}` : ""}`);
  lines.push(`Source:      ${ep(j.source)}`);
  lines.push(`Destination: ${ep(j.destination)}`);
  if (j.service) lines.push(`Service:     ${j.service.namespace}/${j.service.name} ${j.service.frontend} (${j.service.kind})${j.backend ? ` → backend ${j.backend.pod ?? j.backend.ip} ${j.backend.ip}:${j.backend.port}` : " → no backend"}`);
  lines.push("Packets:");
  j.steps.forEach((s, i) => {
    lines.push(`  ${String(i + 1).padStart(2)}. [${s.node}] ${s.entry}${s.reply ? " (reply)" : ""} ${s.packet} → ${s.verdict}${s.dropReason ? ` (${dropReasonText(s.dropReason)})` : ""} ct=${s.ctState} ids ${s.srcIdentity}→${s.dstIdentity}${s.output.dst !== s.packet.split(" -> ")[1]?.split(":")[0] ? ` out ${s.output.src}:${s.output.sport} -> ${s.output.dst}:${s.output.dport}` : ""}`);
  });
  for (const [name, d] of [["Egress", j.egress], ["Ingress", j.ingress]] as const) {
    lines.push(`${name}:${" ".repeat(12 - name.length)}${d.verdict.toUpperCase()}${d.evaluated ? "" : " (not reached; this is what ingress would decide)"} — ${d.reason}`);
    if (d.entry) lines.push(`             map entry: ${entryText(d.entry)}`);
    else if (d.evaluated !== undefined && "node" in d && d.verdict === "denied") lines.push("             map entry: none matched (default deny)");
    if ("rules" in d && d.rules.length) for (const r of d.rules) lines.push(`             rule: ${r.kind === "derived" ? `derived ${r.element}` : `${r.kind} ${r.namespace ? r.namespace + "/" : ""}${r.name} rule ${r.ruleIndex} ${r.element} (peer ${r.peer})`}`);
  }
  if (j.l7) lines.push(`L7:          ${j.l7.verdict.toUpperCase()} (${j.l7.status}) at the ${j.l7.direction} proxy port ${j.l7.proxyPort} — ${j.l7.reason}`);
  lines.push(`Verdict:     ${j.verdict.toUpperCase()}`);
  return `${lines.join("\n")}\n`;
}

export async function runTrace(g: TraceOptions, out: Out): Promise<number> {
  const fmt = outputOf(g, ["table", "text", "json", "yaml"]);
  if (!g.from) throw new CliError("--from is required", "BAD_OPTION", "e.g. --from default/tiefighter");
  if (!g.to) throw new CliError("--to is required", "BAD_OPTION", "e.g. --to svc:default/deathstar");
  const from = parseRef(g.from, "--from");
  const to = parseRef(g.to, "--to");
  const protoRaw = (g.protocol ?? (g.icmpType !== undefined ? "ICMP" : "TCP")).toUpperCase();
  const protocol = protoRaw === "ICMPV6" ? "ICMPv6" : protoRaw;
  if (!(protocol in PROTO_NUM)) throw new CliError(`unknown protocol ${JSON.stringify(g.protocol)}`, "BAD_OPTION", "use TCP, UDP, SCTP, ICMP or ICMPv6");
  const icmp = protocol === "ICMP" || protocol === "ICMPv6";
  let port = 0;
  let icmpSpec: FlowSpec["icmp"];
  if (icmp) {
    const t = g.icmpType === undefined ? (protocol === "ICMP" ? 8 : 128) : Number(g.icmpType);
    const c = g.icmpCode === undefined ? 0 : Number(g.icmpCode);
    if (!Number.isInteger(t) || t < 0 || t > 255) throw new CliError(`malformed --icmp-type ${JSON.stringify(g.icmpType)}`, "BAD_OPTION", "an ICMP type is 0-255");
    if (!Number.isInteger(c) || c < 0 || c > 255) throw new CliError(`malformed --icmp-code ${JSON.stringify(g.icmpCode)}`, "BAD_OPTION", "an ICMP code is 0-255");
    icmpSpec = { type: t, code: c };
    port = t;
  } else port = parsePort(g.port, "--port");
  const http = g.httpMethod || g.httpPath ? { method: (g.httpMethod ?? "GET").toUpperCase(), path: g.httpPath ?? "/", host: g.httpHost } : undefined;
  if (http && protocol !== "TCP") throw new CliError("HTTP needs --protocol TCP", "BAD_OPTION");
  const spec: FlowSpec = { name: "trace", from, to, port, protocol: protocol as FlowSpec["protocol"], http, icmp: icmpSpec, count: 1, where: "--from/--to" };
  const l = load(g);
  const sim = await simulation(l, g);
  try {
    const r = sim.runFlow(spec);
    let wouldBe: DirectionOutcome | undefined;
    if (!r.ingress && r.egress?.verdict === "denied") wouldBe = sim.ingressWouldBe(r);
    const j = traceJson(sim, spec, r, wouldBe);
    const doc = { ...j, diagnostics: diagnosticsJson(g) };
    out(fmt === "json" ? `${JSON.stringify(doc, null, 2)}\n` : fmt === "yaml" ? stringifyYaml(JSON.parse(JSON.stringify(doc))) : textOf(j));
  } finally {
    sim.close();
  }
  return 0;
}

export function registerTrace(program: Command, run: (fn: () => Promise<number>) => Promise<void>): void {
  program
    .command("trace")
    .description("one flow step by step: addresses, identities, service/backend, conntrack, the deciding policy entries and rules")
    .option("--from <ref>", "source: ns/pod, an IP, a CIDR, or entity:NAME")
    .option("--to <ref>", "destination: ns/pod, svc:ns/name, an IP, a CIDR, or entity:NAME")
    .option("--port <port>", "destination port (a service port for svc:)")
    .option("--protocol <proto>", "TCP (default), UDP, SCTP, ICMP, ICMPv6")
    .option("--http-method <method>", "send this HTTP request (evaluated by L7 rules)")
    .option("--http-path <path>", "HTTP path")
    .option("--http-host <host>", "HTTP Host header")
    .option("--icmp-type <n>", "ICMP type (default echo request)")
    .option("--icmp-code <n>", "ICMP code")
    .addHelpText(
      "after",
      `
Examples:
  ciliate trace -f scenarios/starwars --from default/tiefighter --to svc:default/deathstar --port 80 \\
      --http-method POST --http-path /v1/request-landing
  ciliate trace -f scenarios/starwars --from default/xwing --to svc:default/deathstar --port 80 -o json
  ciliate trace -f scenarios/k8s-netpol --from x/a --to y/b --protocol ICMP --icmp-type 8
  ciliate trace -f scenarios/multi-node --from entity:world --to svc:shop/web --port 80

Output: text (default) or -o json with verdict, egress.verdict, ingress.verdict (allowed|denied),
l7.verdict when an L7 rule applied, identities, service/backend, and per direction the deciding
policy-map entry and its rules.
Exit codes: 0 traced (whatever the verdict), 2 bad input.`,
    )
    .action(async (_o, cmd: Command) => run(() => runTrace(cmd.optsWithGlobals(), (s) => process.stdout.write(s))));
}
