/*
 * DNS names in policy: the one implementation of `rules.dns` and `toFQDNs` selectors, used by the policy
 * compiler (which learned names a toFQDNs selector selects), the simulator and `trace` (may this query
 * pass the DNS proxy) and the node's DNS proxy (the same question on real packets).
 *
 * Semantics follow cilium/cilium pkg/policy/api/fqdn.go (FQDNSelector / PortRuleDNS sanitize: allowed
 * characters, matchName and matchPattern mutually exclusive, at most 255 characters) and
 * pkg/fqdn/matchpattern/matchpattern.go (ToAnchoredRegexp): names are compared lower-case in FQDN form
 * (one trailing dot); in a pattern `*` stands for zero or more DNS characters `[-a-zA-Z0-9_]` inside one
 * label; a pattern made only of stars (`*`, `**.`) matches every name; a leading `**.` matches one or more
 * whole labels before the rest.
 */
import type { CompiledPolicy } from "../compile.ts";
import type { DnsRule, Provenance } from "../types.ts";
import { listenerRulesFor, type L7Context } from "./listener.ts";

/** DNS response code the proxy answers a denied query with (RFC 1035 REFUSED; Cilium's default). */
export const DNS_RCODE_REFUSED = 5;
export const DNS_RCODE_NOERROR = 0;
/** Longest matchName / matchPattern (pkg/fqdn/matchpattern MaxFQDNLength). */
export const MAX_FQDN_LENGTH = 255;

const NAME_CHARS = /^[-a-zA-Z0-9_.]+$/;
const PATTERN_CHARS = /^[-a-zA-Z0-9_.*]+$/;
const DNS_CHAR = "[-a-z0-9_]";

/** A name in canonical FQDN form: trimmed, lower-case, exactly one trailing dot ("." for the root). */
export function toFqdn(name: string): string {
  const n = name.trim().toLowerCase();
  return n.endsWith(".") ? n : `${n}.`;
}

/** True when the pattern is only stars with an optional trailing dot: it selects every name. */
function isWildcardOnly(p: string): boolean {
  return /^\*+\.?$/.test(p);
}

/**
 * Problems of one selector ({matchName} or {matchPattern}); an empty list when it is valid. `what`
 * names the field in messages.
 */
export function dnsSelectorProblems(sel: { matchName?: unknown; matchPattern?: unknown }): { field: "matchName" | "matchPattern" | ""; message: string }[] {
  const out: { field: "matchName" | "matchPattern" | ""; message: string }[] = [];
  const name = sel.matchName;
  const pattern = sel.matchPattern;
  const has = (v: unknown) => v !== undefined && v !== null && v !== "";
  if (!has(name) && !has(pattern)) out.push({ field: "", message: "matchName or matchPattern is required" });
  if (has(name) && has(pattern)) out.push({ field: "", message: "only one of matchName or matchPattern is allowed" });
  for (const [field, v, chars, allowed] of [
    ["matchName", name, NAME_CHARS, "letters, digits, '-', '_' and '.'"],
    ["matchPattern", pattern, PATTERN_CHARS, "letters, digits, '-', '_', '.' and '*'"],
  ] as const) {
    if (!has(v)) continue;
    if (typeof v !== "string") out.push({ field, message: "must be a string" });
    else if (v.trim().length > MAX_FQDN_LENGTH) out.push({ field, message: `${JSON.stringify(v)} is longer than ${MAX_FQDN_LENGTH} characters` });
    else if (!chars.test(v)) out.push({ field, message: `invalid characters in ${JSON.stringify(v)}: only ${allowed} are allowed` });
  }
  return out;
}

/** The anchored regular expression of a matchPattern (as Cilium's matchpattern.ToAnchoredRegexp of the sanitized pattern). */
export function patternRegExp(pattern: string): RegExp {
  let p = pattern.trim().toLowerCase();
  if (isWildcardOnly(p)) return new RegExp(`^(?:(?:${DNS_CHAR}+\\.)+|\\.)$`);
  p = toFqdn(p);
  let out = "";
  let i = 0;
  const lead = /^\*{2,}\./.exec(p);
  if (lead) {
    out += `${DNS_CHAR}+(?:\\.${DNS_CHAR}+)*\\.`;
    i = lead[0].length;
  }
  for (; i < p.length; i++) {
    const c = p[i]!;
    if (c === ".") out += "\\.";
    else if (c === "*") {
      while (p[i + 1] === "*") i++;
      out += `${DNS_CHAR}*`;
    } else out += c;
  }
  return new RegExp(`^${out}$`);
}

const compiled = new Map<string, RegExp>();

/** True when a DNS name (any case, with or without the trailing dot) is selected by the selector. */
export function dnsSelectorMatches(sel: DnsRule, name: string): boolean {
  const n = toFqdn(name);
  if (sel.matchName) return toFqdn(sel.matchName) === n;
  if (!sel.matchPattern) return false;
  let re = compiled.get(sel.matchPattern);
  if (!re) {
    re = patternRegExp(sel.matchPattern);
    if (compiled.size > 4096) compiled.clear();
    compiled.set(sel.matchPattern, re);
  }
  return re.test(n);
}

/** Text of a selector, as trace and flows show it. */
export function dnsSelectorText(sel: DnsRule): string {
  return sel.matchName !== undefined && sel.matchName !== "" ? `matchName: ${sel.matchName}` : `matchPattern: ${sel.matchPattern}`;
}

export interface DnsVerdict {
  allowed: boolean;
  /** 0 (NOERROR: the query is forwarded, the resolver's answer is what the client gets) or 5 (REFUSED by the proxy). */
  rcode: number;
  /** The rule that allowed the query (index in its peer's dns list; -1 = the peer has no DNS restriction). */
  rule?: { provenance: Provenance; index: number; rule?: DnsRule };
  reason: string;
}

/**
 * May `remoteIdentity` (the resolver's identity, for egress) be asked `query` through the DNS proxy
 * listening on `proxyPort`? Allowed when a rule of that listener applying to the identity has a dns
 * selector matching the name, or carries no DNS restriction (a peer allowed at L3/L4 only); denied
 * otherwise (REFUSED), and denied when no DNS listener has that port.
 */
export function evaluateDns(policy: CompiledPolicy, ctx: L7Context, query: string): DnsVerdict {
  const found = listenerRulesFor(policy, ctx, "dns");
  if ("error" in found) return { allowed: false, rcode: DNS_RCODE_REFUSED, reason: found.error };
  const name = toFqdn(query);
  for (const r of found.rules) {
    if (!r.dns) return { allowed: true, rcode: DNS_RCODE_NOERROR, rule: { provenance: r.provenance, index: -1 }, reason: "peer allowed without DNS restrictions" };
    for (let i = 0; i < r.dns.length; i++)
      if (dnsSelectorMatches(r.dns[i]!, name)) return { allowed: true, rcode: DNS_RCODE_NOERROR, rule: { provenance: r.provenance, index: i, rule: r.dns[i] }, reason: `${name} matches dns[${i}] (${dnsSelectorText(r.dns[i]!)})` };
  }
  return { allowed: false, rcode: DNS_RCODE_REFUSED, reason: `no DNS rule allows ${name}: REFUSED` };
}
