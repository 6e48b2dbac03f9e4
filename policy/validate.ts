// Field validation shared by the CiliumNetworkPolicy and NetworkPolicy translators: what Cilium's
// sanitize step (pkg/policy/api/rule_validation.go) and the Kubernetes API refuse — CIDRs and excepts,
// ports and port ranges, the 40-ports limit, entities, ICMP fields, L7 rule kinds, HTTP regexes, Kafka
// rules and TLS server names. Field names are those of Cilium's CRD schema (pkg/policy/api/l4.go, l7.go,
// http.go JSON tags): an unknown field is refused, never ignored, because an ignored `HTTP:` or `Rules:`
// would silently turn an L7 restriction into a plain L4 allow.
// Every check appends a ManifestError naming the field path, so a report lists every problem.

import { ciliumCidr, ciliumCidrRule } from "./cilium-cidr.ts";
import type { Cidr } from "./cidr.ts";
import { problemAt, type ManifestError, type SourceRef } from "./errors.ts";
import { parseCiliumPort } from "./cilium-port.ts";
import { EXTENDED_IP_PROTOCOLS, ICMPV4_TYPES, ICMPV6_TYPES, icmpType } from "./ports.ts";
import { checkKafkaRule } from "./l7/kafka.ts";
import { re2Problem } from "./l7/http.ts";
import { checkServerName } from "./l7/tls.ts";
import { dnsSelectorProblems } from "./l7/dns.ts";
import type { DnsRule, HttpRule, L7Rules, Peer, PortSpec } from "./types.ts";

export const ENTITIES = [
  "all",
  "world",
  "world-ipv4",
  "world-ipv6",
  "cluster",
  "host",
  "remote-node",
  "kube-apiserver",
  "init",
  "health",
  "unmanaged",
  "ingress",
  "none",
];

export const MAX_PORTS_PER_RULE = 40;
export const MAX_ICMP_FIELDS = 40;

export interface Ctx {
  src?: SourceRef;
  problems: ManifestError[];
  /** Accepted but not (fully) enforced: host-firewall rules, DNS rules. */
  warnings?: ManifestError[];
  /** "Kind ns/name" of the object being read, named in every problem. */
  object?: string;
  /** Cilium's enable-extended-ip-protocols: VRRP and IGMP accepted in toPorts, and a port may be left out. */
  extendedIPProtocols?: boolean;
}

export function warn(ctx: Ctx, path: (string | number)[], code: string, detail: string, hint = ""): void {
  ctx.warnings?.push(problemAt(ctx.src, path, code, detail, hint, ctx.object));
}

export function bad(ctx: Ctx, path: (string | number)[], code: string, detail: string, hint = ""): void {
  ctx.problems.push(problemAt(ctx.src, path, code, detail, hint, ctx.object));
}

export function asList(ctx: Ctx, v: unknown, path: (string | number)[]): unknown[] {
  if (v === undefined || v === null) return [];
  if (!Array.isArray(v)) {
    bad(ctx, path, "invalid-type", "must be a list");
    return [];
  }
  return v;
}

/** fromCIDR/toCIDR entry as Cilium's CIDR.sanitize reads it (policy/cilium-cidr.ts); problems for invalid ones. */
export function checkCidr(ctx: Ctx, s: unknown, path: (string | number)[]): Cidr | undefined {
  const c = ciliumCidr(typeof s === "string" ? s : String(s ?? ""));
  if ("error" in c) {
    bad(ctx, path, "invalid-cidr", c.error, "write a prefix like 10.0.0.0/8 or 2001:db8::/32, or an address");
    return undefined;
  }
  return c;
}

/** fromCIDRSet/toCIDRSet entry as Cilium's CIDRRule.sanitize reads it: a prefix, excepts whose address lies in it. */
export function checkCidrSet(ctx: Ctx, cidr: unknown, except: unknown, path: (string | number)[], exceptPath: (string | number)[]): Peer | undefined {
  const ex = asList(ctx, except, exceptPath).map((e) => (typeof e === "string" ? e : String(e)));
  const r = ciliumCidrRule(typeof cidr === "string" ? cidr : String(cidr ?? ""), ex);
  for (const pr of r.problems)
    if (pr.index === undefined) bad(ctx, path, "invalid-cidr", pr.message, "write a prefix like 10.0.0.0/8 or 2001:db8::/32");
    else bad(ctx, [...exceptPath, pr.index], pr.message.startsWith("allow CIDR") ? "except-outside-cidr" : "invalid-cidr", pr.message);
  return r.cidr && !r.problems.length ? { type: "cidr", cidr: r.cidr.text, except: r.except.map((x) => x!.text) } : undefined;
}

export function checkEntity(ctx: Ctx, e: unknown, path: (string | number)[]): Peer | undefined {
  if (typeof e !== "string" || !ENTITIES.includes(e)) {
    bad(ctx, path, "unknown-entity", `unsupported entity: ${String(e)}`, `use one of ${ENTITIES.join(", ")}`);
    return undefined;
  }
  if (e === "all") return { type: "all" };
  if (e === "none") return { type: "none" };
  return { type: "entity", entity: e };
}

/**
 * A CiliumNetworkPolicy port as Cilium's PortProtocol.sanitize reads it (policy/cilium-port.ts): an IANA
 * service name, lower-cased, or a number as Go's ParseUint(s, 0, 16) reads it; absent or empty = 0.
 */
export function checkCiliumPort(ctx: Ctx, v: unknown, path: (string | number)[]): number | string | undefined {
  if (v === undefined || v === null || v === "") return 0;
  const r = parseCiliumPort(String(v));
  if ("port" in r) return r.port;
  bad(ctx, path, /value out of range$/.test(r.error) ? "port-out-of-range" : "invalid-port", r.error, "a number 0-65535 or a port name (letters, digits and single dashes, at most 15 characters)");
  return undefined;
}

export function checkEndPort(ctx: Ctx, port: number | string | undefined, endPort: unknown, path: (string | number)[]): number | undefined {
  if (endPort === undefined || endPort === null || endPort === 0) return undefined;
  const n = Number(endPort);
  if (!Number.isInteger(n) || n < 0 || n > 65535) {
    bad(ctx, path, "port-out-of-range", `endPort ${endPort} is out of range 0-65535`);
    return undefined;
  }
  if (typeof port === "string") {
    bad(ctx, path, "endport-with-named-port", "endPort cannot be used with a named port");
    return undefined;
  }
  // Cilium accepts it and allows the port alone (pkg/policy/types PortRangeToMaskedPorts: an end port equal
  // to or below the start port is the start port); said, not silently narrowed.
  if (port !== undefined && n < port) {
    warn(ctx, path, "endport-below-port", `endPort ${n} is below port ${port}: only port ${port} is allowed, as Cilium reads it`, `write endPort ${port} or more for a range`);
    return undefined;
  }
  return n;
}

const PROTOCOLS = ["TCP", "UDP", "SCTP", "ANY", ...EXTENDED_IP_PROTOCOLS];

export function checkProtocol(ctx: Ctx, v: unknown, path: (string | number)[], dflt: PortSpec["protocol"], allowed = PROTOCOLS): PortSpec["protocol"] | undefined {
  if (v === undefined || v === null || v === "") return dflt;
  if (typeof v === "string" && allowed.includes(v.toUpperCase())) return v.toUpperCase() as PortSpec["protocol"];
  bad(ctx, path, "invalid-protocol", `unknown protocol ${JSON.stringify(v)}`, `use one of ${allowed.join(", ")}`);
  return undefined;
}

/**
 * An HTTP method/path/host regex as Cilium's PortRuleHTTP.Sanitize checks it: Go's regexp.Compile, RE2
 * syntax (re2js, a port of the same parser), refused with Go's error text — so `(?i)get` is valid and a
 * lookahead or backreference is not. The proxy matches with the same engine (policy/l7/http.ts). Cilium
 * leaves `host` to Envoy, which compiles it with RE2 too; it is checked here so it cannot fail later.
 */
function checkRegex(ctx: Ctx, v: unknown, path: (string | number)[]): string | undefined {
  if (v === undefined || v === null || v === "") return undefined;
  if (typeof v !== "string") {
    bad(ctx, path, "invalid-type", "must be a string");
    return undefined;
  }
  const problem = re2Problem(v);
  if (problem) {
    bad(ctx, path, "invalid-http-regex", problem, "RE2 syntax: no lookaround or backreferences");
    return undefined;
  }
  return v;
}

/** Refuses fields the CRD schema does not have, naming the close match when there is one. */
export function checkFields(ctx: Ctx, raw: unknown, known: readonly string[], path: (string | number)[], what: string): void {
  if (!raw || typeof raw !== "object" || Array.isArray(raw)) return;
  for (const k of Object.keys(raw)) {
    if (known.includes(k)) continue;
    const close = known.find((x) => x.toLowerCase() === k.toLowerCase());
    bad(ctx, [...path, k], "unknown-field", `unknown field ${JSON.stringify(k)} in ${what}`, close ? `did you mean ${close}?` : `fields: ${known.join(", ")}`);
  }
}

const HTTP_FIELDS = ["method", "path", "host", "headers", "headerMatches"];
const HEADER_MATCH_FIELDS = ["name", "value", "secret", "mismatch"];

function checkHttp(ctx: Ctx, raw: unknown, path: (string | number)[]): HttpRule[] {
  return asList(ctx, raw, path).map((r0, i) => {
    const r = (r0 ?? {}) as Record<string, unknown>;
    const p = [...path, i];
    checkFields(ctx, r, HTTP_FIELDS, p, "an HTTP rule");
    const rule: HttpRule = {
      method: checkRegex(ctx, r.method, [...p, "method"]),
      path: checkRegex(ctx, r.path, [...p, "path"]),
      host: checkRegex(ctx, r.host, [...p, "host"]),
    };
    const hs = asList(ctx, r.headers, [...p, "headers"]);
    if (hs.length) rule.headers = hs.map(String);
    const hm = asList(ctx, r.headerMatches, [...p, "headerMatches"]);
    if (hm.length)
      rule.headerMatches = hm.map((h0, j) => {
        const h = (h0 ?? {}) as Record<string, unknown>;
        checkFields(ctx, h, HEADER_MATCH_FIELDS, [...p, "headerMatches", j], "a headerMatch");
        if (typeof h.name !== "string" || h.name === "") bad(ctx, [...p, "headerMatches", j, "name"], "invalid-header-match", "name is required");
        if (h.secret !== undefined && h.secret !== null)
          bad(ctx, [...p, "headerMatches", j, "secret"], "unsupported-header-secret", "headerMatches with a secret are not supported by ciliate (it reads no Kubernetes secrets), so the header value could not be checked");
        if (h.mismatch !== undefined && !["LOG", "ADD", "DELETE", "REPLACE"].includes(String(h.mismatch)))
          bad(ctx, [...p, "headerMatches", j, "mismatch"], "invalid-header-match", `unknown mismatch action ${JSON.stringify(h.mismatch)}`, "use LOG, ADD, DELETE or REPLACE");
        return { name: String(h.name ?? ""), value: h.value === undefined ? undefined : String(h.value), mismatch: h.mismatch === undefined ? undefined : String(h.mismatch) };
      });
    return rule;
  });
}

const L7_FIELDS = ["http", "kafka", "dns", "l7proto", "l7"];

/** One rules.dns entry or toFQDNs selector, checked as Cilium's FQDNSelector/PortRuleDNS sanitize does. */
export function checkDnsSelector(ctx: Ctx, raw: unknown, path: (string | number)[]): DnsRule | undefined {
  if (!raw || typeof raw !== "object" || Array.isArray(raw)) {
    bad(ctx, path, "invalid-dns-rule", "must be an object with matchName or matchPattern");
    return undefined;
  }
  const d = raw as Record<string, unknown>;
  const problems = dnsSelectorProblems(d);
  for (const pr of problems) bad(ctx, pr.field ? [...path, pr.field] : path, "invalid-dns-rule", pr.message, "e.g. matchName: api.github.com or matchPattern: '*.cilium.io'");
  if (problems.length) return undefined;
  return typeof d.matchName === "string" && d.matchName !== "" ? { matchName: d.matchName } : { matchPattern: String(d.matchPattern) };
}

/** rules: exactly one L7 kind; HTTP regexes compile; Kafka and DNS fields are well-formed. */
export function checkL7(ctx: Ctx, raw: unknown, path: (string | number)[], deny: boolean): L7Rules | undefined {
  if (raw === undefined || raw === null) return undefined;
  if (deny) {
    bad(ctx, path, "l7-on-deny", "L7 rules are not allowed on deny rules", "deny rules are L3/L4 only; move the L7 rules to an allow rule");
    return undefined;
  }
  if (typeof raw !== "object" || Array.isArray(raw)) {
    bad(ctx, path, "invalid-type", "rules must be an object with one of http, kafka, dns, l7proto/l7");
    return undefined;
  }
  const r = raw as Record<string, unknown>;
  checkFields(ctx, r, L7_FIELDS, path, "L7 rules");
  const kinds = ["http", "kafka", "dns", "l7proto"].filter((k) => r[k] !== undefined && r[k] !== null);
  if (kinds.length > 1) {
    bad(ctx, path, "multiple-l7-kinds", "multiple L7 protocol rule types specified in single rule");
    return undefined;
  }
  const out: L7Rules = {};
  if (r.http !== undefined) out.http = checkHttp(ctx, r.http, [...path, "http"]);
  if (r.kafka !== undefined)
    out.kafka = asList(ctx, r.kafka, [...path, "kafka"]).map((k0, i) => {
      const { rule, problems } = checkKafkaRule(k0 ?? {});
      for (const pr of problems) bad(ctx, pr.field ? [...path, "kafka", i, pr.field] : [...path, "kafka", i], "invalid-kafka-rule", pr.detail, pr.hint ?? "");
      return rule;
    });
  if (r.dns !== undefined) {
    const list = asList(ctx, r.dns, [...path, "dns"]).map((d, i) => checkDnsSelector(ctx, d, [...path, "dns", i]));
    out.dns = list.filter((d): d is DnsRule => !!d);
  }
  if (r.l7 !== undefined && (r.l7proto === undefined || r.l7proto === "")) bad(ctx, [...path, "l7"], "l7-without-l7proto", "'l7' may only be specified when a 'l7proto' is also specified");
  else if (r.l7proto !== undefined) bad(ctx, [...path, "l7proto"], "unsupported-l7", "generic l7proto rules are not supported by ciliate");
  return out;
}

const PORT_RULE_FIELDS = ["ports", "terminatingTLS", "originatingTLS", "serverNames", "listener", "rules"];

const hasRules = (r: unknown): boolean => !!r && typeof r === "object" && Object.values(r as Record<string, unknown>).some((v) => v !== undefined && v !== null && !(Array.isArray(v) && v.length === 0));

/**
 * toPorts (allow or deny) → PortSpecs, with the checks of Cilium's PortRule and PortProtocol sanitize
 * (cilium/cilium pkg/policy/api/rule_validation.go), each problem in Cilium's words, plus what ciliate
 * cannot enforce (listener, TLS termination/origination), refused rather than ignored. serverNames alone
 * are TLS SNI rules, enforced by the TLS proxy (policy/l7).
 */
export function checkToPorts(ctx: Ctx, raw: unknown, path: (string | number)[], deny: boolean, direction: "ingress" | "egress" = "ingress"): PortSpec[] {
  const out: PortSpec[] = [];
  asList(ctx, raw, path).forEach((pr0, i) => {
    const pr = (pr0 ?? {}) as Record<string, unknown>;
    const p = [...path, i];
    // PortDenyRule has ports only; PortRule adds TLS, SNI, listener and L7 rules.
    checkFields(ctx, pr, deny ? ["ports"] : PORT_RULE_FIELDS, p, deny ? "a deny port rule" : "a port rule");
    const snList = deny ? [] : asList(ctx, pr.serverNames, [...p, "serverNames"]);
    const serverNames = snList.map(String);
    snList.forEach((n, k) => {
      const problem = checkServerName(n);
      if (problem) bad(ctx, [...p, "serverNames", k], "invalid-server-name", problem, "a DNS name like api.example.com or *.example.com");
    });
    const ports = asList(ctx, pr.ports, [...p, "ports"]);
    const rules = (pr.rules ?? undefined) as Record<string, unknown> | undefined;
    const withL7 = hasRules(rules);
    const dnsRules = asList(ctx, rules?.dns, [...p, "rules", "dns"]).length > 0;
    if (direction === "ingress" && dnsRules) bad(ctx, [...p, "rules", "dns"], "dns-on-ingress", "DNS rules are not allowed on ingress");
    if (serverNames.length && withL7 && !pr.terminatingTLS)
      bad(ctx, [...p, "serverNames"], "server-names-with-l7", "ServerNames are not allowed with L7 rules without TLS termination", "use serverNames alone (SNI filtering without terminating TLS), or L7 rules on a plain-text port");
    if (ports.length > MAX_PORTS_PER_RULE) bad(ctx, [...p, "ports"], "too-many-ports", `too many ports, the max is ${MAX_PORTS_PER_RULE}`, "split the port rule");
    const l7 = checkL7(ctx, pr.rules, [...p, "rules"], deny);
    let zeroPort = false;
    const list = ports.length ? ports : [{}];
    list.forEach((pp0, j) => {
      const pp = (pp0 ?? {}) as Record<string, unknown>;
      const pth = [...p, "ports", j];
      // With enable-extended-ip-protocols Cilium lets a port be left out (= every port; pkg/policy/api
      // PortProtocol.Validate), as the extended protocols have none.
      const protocol = checkProtocol(ctx, pp.protocol, [...pth, "protocol"], "ANY");
      const extended = protocol === "VRRP" || protocol === "IGMP";
      // Without the option Cilium's datapath drops them (DROP_CT_UNKNOWN_PROTO): the rule could never
      // allow anything, so it is refused rather than accepted to no effect.
      if (extended && !ctx.extendedIPProtocols)
        bad(ctx, [...pth, "protocol"], "extended-protocol-disabled", `protocol ${protocol} needs the agent option "enable-extended-ip-protocols"; without it such traffic is dropped (DROP_CT_UNKNOWN_PROTO)`, "set enableExtendedIPProtocols: true in the Config (Cilium's enable-extended-ip-protocols)");
      if (ports.length && (pp.port === undefined || pp.port === null || pp.port === "") && !ctx.extendedIPProtocols) {
        bad(ctx, [...pth, "port"], "port-required", "Port must be specified");
        return;
      }
      const port = checkCiliumPort(ctx, pp.port, [...pth, "port"]);
      if (port === 0) zeroPort = true;
      const endPort = checkEndPort(ctx, port, pp.endPort, [...pth, "endPort"]);
      if (extended) {
        if (port !== 0 || endPort !== undefined) bad(ctx, [...pth, "port"], "extended-protocol-port", "port must be empty or 0", `${protocol} has no transport ports`);
      }
      if (dnsRules && typeof port === "number" && endPort !== undefined && endPort > port) bad(ctx, [...pth, "endPort"], "dns-port-range", "DNS rules do not support port ranges");
      // DNS rules may sit on TCP, UDP or ANY; every other L7 rule needs TCP (an unset protocol is ANY).
      if (ports.length && withL7 && !dnsRules && protocol !== undefined && protocol !== "TCP")
        bad(ctx, [...pth, "protocol"], "l7-not-tcp", `L7 rules can only apply to TCP (not ${protocol}) except for DNS rules`);
      if (port === undefined || protocol === undefined) return;
      out.push({ port, endPort, protocol, l7, ...(serverNames.length ? { serverNames } : {}) });
    });
    const listener = pr.listener as Record<string, unknown> | undefined;
    if (listener) {
      const name = String(listener.name ?? "");
      if (direction === "ingress") bad(ctx, [...p, "listener"], "listener-on-ingress", `Listener is not allowed on ingress (${name})`);
      else if (withL7) bad(ctx, [...p, "listener"], "listener-with-l7", `Listener is not allowed with L7 rules (${name})`);
      else bad(ctx, [...p, "listener"], "unsupported-listener", "listener (a CiliumEnvoyConfig listener) is not supported by ciliate; traffic would not be inspected", "remove the listener or use rules.http");
    }
    if (withL7 && zeroPort) bad(ctx, [...p, "rules"], "l7-port-zero", "L7 rules can not be used when a port is 0");
    if (dnsRules && ports.length === 0) bad(ctx, [...p, "rules", "dns"], "dns-port-required", "Port 53 must be specified for DNS rules");
    for (const f of ["terminatingTLS", "originatingTLS"])
      if (!deny && pr[f] !== undefined && pr[f] !== null) bad(ctx, [...p, f], "unsupported-tls", `${f} is not supported by ciliate: TLS is not terminated or originated, so its L7 rules could not be enforced`, "ciliate's proxies do not terminate TLS; serverNames alone (SNI) is supported");
  });
  return out;
}

/** icmps[].fields[] → PortSpecs with protocol ICMP/ICMPv6 and the type as port. */
export function checkIcmps(ctx: Ctx, raw: unknown, path: (string | number)[]): PortSpec[] {
  const out: PortSpec[] = [];
  asList(ctx, raw, path).forEach((ic0, i) => {
    const fields = asList(ctx, ((ic0 ?? {}) as Record<string, unknown>).fields, [...path, i, "fields"]);
    if (fields.length > MAX_ICMP_FIELDS) bad(ctx, [...path, i, "fields"], "too-many-icmp-fields", `too many types, the max is ${MAX_ICMP_FIELDS}`);
    fields.forEach((f0, j) => {
      const f = (f0 ?? {}) as Record<string, unknown>;
      const p = [...path, i, "fields", j];
      const fam = f.family === undefined || f.family === "" ? "IPv4" : String(f.family);
      if (fam !== "IPv4" && fam !== "IPv6") {
        bad(ctx, [...p, "family"], "invalid-icmp-family", `wrong family: ${String(f.family)}`, "use IPv4 or IPv6");
        return;
      }
      const t = icmpType(fam, f.type);
      if (t === undefined) {
        if (typeof f.type === "number" || /^\d+$/.test(String(f.type))) bad(ctx, [...p, "type"], "icmp-type-out-of-range", `ICMP type ${f.type} is out of range 0-255`);
        // pkg/policy/api/icmp.go ICMPField.UnmarshalJSON names the family as written (empty when left out).
        else bad(ctx, [...p, "type"], "unknown-icmp-type", `ICMP type ${String(f.type)} not found in ${String(f.family ?? "")}`, `a ${fam} type: a number 0-255 or one of ${Object.keys(fam === "IPv6" ? ICMPV6_TYPES : ICMPV4_TYPES).join(", ")}`);
        return;
      }
      out.push({ port: t, protocol: fam === "IPv6" ? "ICMPv6" : "ICMP" });
    });
  });
  return out;
}
