// L7 HTTP rule evaluation as Cilium's Envoy filter applies rules.http (pkg/policy/api/http.go; the proxy
// matches method, path and host as regular expressions anchored at both ends, `headers` entries
// "Name" (present) or "Name: value" (equal), and headerMatches {name, value} — a headerMatch with a
// `mismatch` action never denies, it only logs or edits). A request is allowed when any rule of the
// listener that applies to the remote identity matches; an empty rule (or a peer without L7 rules) allows
// every request. Denied requests get a 403 response, not a drop.

import type { CompiledPolicy } from "../compile.ts";
import type { HttpRule, Provenance } from "../types.ts";
import { listenerRulesFor, type L7Context } from "./listener.ts";

export interface HttpRequest {
  method: string;
  path: string;
  host?: string;
  headers?: Record<string, string>;
}

function anchored(re: string | undefined, v: string): boolean {
  if (re === undefined || re === "") return true;
  return new RegExp(`^(?:${re})$`).test(v);
}

function header(req: HttpRequest, name: string): string | undefined {
  const want = name.toLowerCase();
  if (want === "host" || want === ":authority") return req.host ?? req.headers?.[Object.keys(req.headers ?? {}).find((k) => k.toLowerCase() === "host") ?? ""];
  for (const [k, v] of Object.entries(req.headers ?? {})) if (k.toLowerCase() === want) return v;
  return undefined;
}

/** True when one HTTP rule matches the request. */
export function httpRuleMatches(rule: HttpRule, req: HttpRequest): boolean {
  if (!anchored(rule.method, req.method)) return false;
  if (!anchored(rule.path, req.path)) return false;
  if (rule.host && !anchored(rule.host, header(req, "host") ?? "")) return false;
  for (const h of rule.headers ?? []) {
    const i = h.indexOf(":");
    const name = (i < 0 ? h : h.slice(0, i)).trim();
    const v = header(req, name);
    if (v === undefined) return false;
    if (i >= 0 && v !== h.slice(i + 1).trim()) return false;
  }
  for (const m of rule.headerMatches ?? []) {
    if (m.mismatch) continue;
    const v = header(req, m.name);
    if (v === undefined) return false;
    if (m.value !== undefined && v !== m.value) return false;
  }
  return true;
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
