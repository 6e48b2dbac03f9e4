// TLS SNI rules (`toPorts[].serverNames`, cilium/cilium pkg/policy/api/l4.go PortRule.ServerNames): when
// the list is not empty, the connection must be TLS and its ClientHello must name one of the servers.
// Cilium hands the names to Envoy's filter-chain match, which compares DNS names case-insensitively and
// accepts a leading "*." wildcard for any subdomain; ciliate does the same without terminating TLS. A
// connection without a server name (or that is not TLS) is refused when the peer's rule lists names.

import type { CompiledPolicy } from "../compile.ts";
import type { Provenance } from "../types.ts";
import { listenerRulesFor, type L7Context } from "./listener.ts";

const DNS_NAME = /^(\*\.)?([a-zA-Z0-9_]([a-zA-Z0-9_-]{0,61}[a-zA-Z0-9_])?\.)*[a-zA-Z0-9_]([a-zA-Z0-9_-]{0,61}[a-zA-Z0-9_])?\.?$/;

/** Problem text for an invalid serverNames entry, or undefined when it is a DNS name (optionally "*."-prefixed). */
export function checkServerName(v: unknown): string | undefined {
  if (typeof v !== "string" || v === "") return `server name must be a non-empty string, got ${JSON.stringify(v)}`;
  if (v.length > 253 || !DNS_NAME.test(v)) return `invalid server name ${JSON.stringify(v)}`;
  return undefined;
}

/** True when the ClientHello's server name matches one listed name (exact, or "*.suffix" for subdomains). */
export function serverNameMatches(pattern: string, serverName: string): boolean {
  const p = pattern.toLowerCase().replace(/\.$/, "");
  const n = serverName.toLowerCase().replace(/\.$/, "");
  if (p.startsWith("*.")) return n.endsWith(p.slice(1)) && n.length > p.length - 1;
  return p === n;
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
