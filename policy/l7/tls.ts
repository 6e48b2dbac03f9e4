// TLS SNI rules (`toPorts[].serverNames`, cilium/cilium pkg/policy/api/l4.go PortRule.ServerNames): when
// the list is not empty, the connection must be TLS and its ClientHello must name one of the servers.
// Names are matched as Cilium's proxy matches them (cilium/proxy cilium/network_policy.h SniPattern):
// case-insensitively; a pattern without `*` is an exact name; `*` stands for any DNS characters within
// one label, `**` for one or more whole labels, and a lone `*` for any name. ciliate judges the
// ClientHello without terminating TLS. A connection without a server name (or that is not TLS) is refused
// when the peer's rule lists names.

import type { CompiledPolicy } from "../compile.ts";
import type { Provenance } from "../types.ts";
import { listenerRulesFor, type L7Context } from "./listener.ts";

// The proxy's valid-pattern expression: labels of DNS characters with `*` wildcards, `**` only alone.
const LABEL = "([*]{1,2}|[*]?[-a-zA-Z0-9_]+([*][-a-zA-Z0-9_]+)*[*]?)";
const VALID_PATTERN = new RegExp(`^(${LABEL}[.])*${LABEL}$`);

/** Problem text for an invalid serverNames entry, or undefined when the proxy accepts it. */
export function checkServerName(v: unknown): string | undefined {
  if (typeof v !== "string" || v === "") return `server name must be a non-empty string, got ${JSON.stringify(v)}`;
  if (v.length > 253 || !VALID_PATTERN.test(v)) return `invalid server name ${JSON.stringify(v)}`;
  return undefined;
}

const compiledPatterns = new Map<string, RegExp>();

function patternRegExp(pattern: string): RegExp {
  let re = compiledPatterns.get(pattern);
  if (!re) {
    const p = pattern.toLowerCase();
    const body =
      p === "*"
        ? "[-a-z0-9_]+([.][-a-z0-9_]+)*"
        : p.replace(/\*\*|\*|\./g, (m) => (m === "." ? "[.]" : m === "**" ? "[-a-z0-9_]+([.][-a-z0-9_]+){0,}" : "[-a-z0-9_]{0,}"));
    re = new RegExp(`^(?:${body})$`);
    compiledPatterns.set(pattern, re);
  }
  return re;
}

/** True when the ClientHello's server name matches one serverNames entry. */
export function serverNameMatches(pattern: string, serverName: string): boolean {
  const n = serverName.toLowerCase();
  if (!pattern.includes("*")) return pattern.toLowerCase() === n;
  return patternRegExp(pattern).test(n);
}

export interface TlsHello {
  /** The ClientHello's server_name; undefined when it has none. */
  serverName?: string;
}

export interface TlsVerdict {
  allowed: boolean;
  rule?: { provenance: Provenance; index: number; serverName?: string };
  reason: string;
}

/** Judges a TLS connection by its ClientHello at a proxy listener for a remote identity. */
export function evaluateTls(compiled: CompiledPolicy, ctx: L7Context, hello: TlsHello): TlsVerdict {
  const found = listenerRulesFor(compiled, ctx, "tls");
  if ("error" in found) return { allowed: false, reason: found.error };
  for (const r of found.rules) {
    if (r.serverNames === null || r.serverNames.length === 0) return { allowed: true, rule: { provenance: r.provenance, index: -1 }, reason: "peer allowed without SNI restrictions" };
    if (hello.serverName === undefined) continue;
    const i = r.serverNames.findIndex((p) => serverNameMatches(p, hello.serverName!));
    if (i >= 0) return { allowed: true, rule: { provenance: r.provenance, index: i, serverName: r.serverNames[i] }, reason: `server name ${hello.serverName} matches serverNames[${i}] ${r.serverNames[i]}` };
  }
  return { allowed: false, reason: hello.serverName === undefined ? "the ClientHello names no server, and serverNames requires one: connection refused" : `server name ${hello.serverName} is not in serverNames: connection refused` };
}
