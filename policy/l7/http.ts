// L7 HTTP rule evaluation as Cilium's Envoy filter applies rules.http (pkg/policy/api/http.go; the proxy
// matches method, path and host as regular expressions anchored at both ends, `headers` entries
// "Name" (present) or "Name: value" (equal), and headerMatches {name, value}: an empty value is a presence
// match; with a `mismatch` action a mismatch never denies, it logs (LOG) or asks the proxy to edit the
// request — ADD the expected value, DELETE the wrong header, REPLACE its value — as cilium/proxy's
// HeaderMatch does (cilium/network_policy.cc)). A request is allowed when any rule of the
// listener that applies to the remote identity matches; an empty rule (or a peer without L7 rules) allows
// every request. Denied requests get a 403 response, not a drop.

import { RE2JS } from "re2js";
import type { CompiledPolicy } from "../compile.ts";
import type { HttpHeaderMatch, HttpRule, Provenance } from "../types.ts";
import { listenerRulesFor, type L7Context } from "./listener.ts";

export interface HttpRequest {
  method: string;
  path: string;
  host?: string;
  headers?: Record<string, string>;
}

const compiled = new Map<string, RE2JS>();

/**
 * Go's regexp.Compile error for a pattern (RE2 syntax, what Cilium's PortRuleHTTP.Sanitize and Envoy's
 * safe_regex accept), or undefined when it compiles.
 */
export function re2Problem(re: string): string | undefined {
  try {
    RE2JS.compile(re);
    return undefined;
  } catch (e) {
    return (e as Error).message;
  }
}

/** A full match with RE2 (Envoy's safe_regex FullMatch), as the proxy applies method, path and host. */
function anchored(re: string | undefined, v: string): boolean {
  if (re === undefined || re === "") return true;
  let r = compiled.get(re);
  if (!r) {
    r = RE2JS.compile(re);
    compiled.set(re, r);
  }
  return r.matches(v);
}

function header(req: HttpRequest, name: string): string | undefined {
  const want = name.toLowerCase();
  if (want === "host" || want === ":authority") return req.host ?? req.headers?.[Object.keys(req.headers ?? {}).find((k) => k.toLowerCase() === "host") ?? ""];
  for (const [k, v] of Object.entries(req.headers ?? {})) if (k.toLowerCase() === want) return v;
  return undefined;
}

/**
 * A `headers` entry as Cilium hands it to Envoy (pkg/envoy/server.go getHTTPRule): split at the first
 * space; with two parts, the name (trailing ':' removed) must carry exactly the rest as value; with one,
 * the whole entry is a header name that must be present. So "X-Key: v" and "X-Key v" need value "v",
 * while "X-Key:v" asks for a header named "X-Key:v".
 */
export function headerRule(entry: string): { name: string; value?: string } {
  const sp = entry.indexOf(" ");
  if (sp < 0) return { name: entry };
  return { name: entry.slice(0, sp).replace(/:+$/, ""), value: entry.slice(sp + 1) };
}

/** True when one HTTP rule matches the request. */
export function httpRuleMatches(rule: HttpRule, req: HttpRequest): boolean {
  if (!anchored(rule.method, req.method)) return false;
  if (!anchored(rule.path, req.path)) return false;
  if (rule.host && !anchored(rule.host, header(req, "host") ?? "")) return false;
  for (const h of rule.headers ?? []) {
    const { name, value } = headerRule(h);
    const v = header(req, name);
    if (v === undefined) return false;
    if (value !== undefined && v !== value) return false;
  }
  for (const m of rule.headerMatches ?? []) if (!m.mismatch && !headerMatchHolds(m, req)) return false;
  return true;
}

function headerMatchHolds(m: HttpHeaderMatch, req: HttpRequest): boolean {
  const v = header(req, m.name);
  if (v === undefined) return false;
  return !m.value || v === m.value;
}

/** An edit the proxy makes to an allowed request before forwarding it. */
export interface HttpHeaderEdit {
  action: "ADD" | "DELETE" | "REPLACE";
  name: string;
  value: string;
}

/** The edits the mismatching headerMatches of the rule that allowed `req` ask for, in rule order. */
export function httpHeaderEdits(rule: HttpRule, req: HttpRequest): HttpHeaderEdit[] {
  const out: HttpHeaderEdit[] = [];
  for (const m of rule.headerMatches ?? []) {
    if (!m.mismatch || m.mismatch === "LOG" || headerMatchHolds(m, req)) continue;
    const value = m.value ?? "";
    if (m.mismatch === "ADD") out.push({ action: "ADD", name: m.name, value });
    // A failed presence match or an absent header leaves nothing to delete.
    else if (m.mismatch === "DELETE" && value !== "" && header(req, m.name) !== undefined) out.push({ action: "DELETE", name: m.name, value });
    else if (m.mismatch === "REPLACE") out.push({ action: "REPLACE", name: m.name, value });
  }
  return out;
}

/** The listener and the remote identity (older name of L7Context). */
export type ProxyContext = L7Context;

export interface HttpVerdict {
  allowed: boolean;
  /** 200-style pass-through or 403 from the proxy. */
  status: number;
  /** The rule that allowed the request (index in its peer's http list; -1 = allow-all). */
  rule?: { provenance: Provenance; index: number; rule?: HttpRule };
  reason: string;
}

/** Evaluates a request at a proxy listener for a remote identity. */
export function evaluateHttp(compiled: CompiledPolicy, ctx: ProxyContext, req: HttpRequest): HttpVerdict {
  const found = listenerRulesFor(compiled, ctx, "http");
  if ("error" in found) return { allowed: false, status: 403, reason: found.error };
  for (const r of found.rules) {
    if (r.http === null || r.http.length === 0) return { allowed: true, status: 200, rule: { provenance: r.provenance, index: -1 }, reason: "peer allowed without L7 restrictions" };
    for (let i = 0; i < r.http.length; i++)
      if (httpRuleMatches(r.http[i], req)) return { allowed: true, status: 200, rule: { provenance: r.provenance, index: i, rule: r.http[i] }, reason: `matches http[${i}]` };
  }
  return { allowed: false, status: 403, reason: "no HTTP rule matches the request: 403 Access denied" };
}
