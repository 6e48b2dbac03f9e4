// TypeScript mirror of the datapath policy verdict (Cilium 1.17/1.18 __policy_can_access
// in bpf/lib/policy.h) over compiled map entries, and the encoder of entries into core's PolicyKey /
// PolicyEntry codec objects.
//  1. Lookup #1: entries with the remote identity, longest protocol/port prefix that matches.
//  2. If that entry is a deny → denied (181).
//  3. Lookup #2: the same with identity 0.
//  4. Choose the identity-0 entry if it is a deny, or there is no identity entry, or its proxy priority is
//     higher, or priorities are equal and its prefix is longer; otherwise the identity entry (ties → L3).
//  5. Nothing found → denied (133). Chosen deny → denied (181). Else allowed, redirected when proxyPort ≠ 0.

import {
  DROP_POLICY,
  DROP_POLICY_DENY,
  POLICY_EGRESS,
  POLICY_F_DENY,
  POLICY_INGRESS,
  POLICY_MATCH_ALL,
  POLICY_MATCH_L3_L4,
  POLICY_MATCH_L3_ONLY,
  POLICY_MATCH_L3_PROTO,
  POLICY_MATCH_L4_ONLY,
  POLICY_MATCH_NONE,
  POLICY_MATCH_PROTO_ONLY,
  POLICY_STATIC_PREFIX,
} from "../host/constants.gen.ts";
import type { PolicyEntry, PolicyKey } from "../host/codecs.gen.ts";
import { portInPrefix } from "./ports.ts";
import type { Direction, MapStateEntry } from "./types.ts";

/** Bits of protocol+port an entry matches (0, 8, or 8 + port prefix). */
export function lpmPrefixLength(e: MapStateEntry): number {
  return e.key.protocol === 0 ? 0 : 8 + e.key.portPrefix;
}

export interface LookupResult {
  verdict: "allowed" | "denied";
  /** 0, DROP_POLICY (133) or DROP_POLICY_DENY (181). */
  dropReason: number;
  proxyPort: number;
  entry?: MapStateEntry;
  /** Which lookup decided: "l3" (identity-specific) or "l4" (identity 0). */
  lookup?: "l3" | "l4";
  matchType: number;
}

function lpm(entries: MapStateEntry[], direction: Direction, identity: number, protocol: number, port: number): MapStateEntry | undefined {
  let best: MapStateEntry | undefined;
  for (const e of entries) {
    const k = e.key;
    if (k.direction !== direction || k.identity !== identity) continue;
    if (k.protocol !== 0 && (k.protocol !== protocol || !portInPrefix(port, { port: k.port, prefix: k.portPrefix }))) continue;
    if (!best || lpmPrefixLength(e) > lpmPrefixLength(best)) best = e;
  }
  return best;
}

/** Policy verdict for one packet direction at one endpoint (port = ICMP type for ICMP). */
export function policyLookup(entries: MapStateEntry[], direction: Direction, remoteIdentity: number, protocol: number, port: number): LookupResult {
  const l3 = lpm(entries, direction, remoteIdentity, protocol, port);
  let chosen: MapStateEntry | undefined;
  let which: "l3" | "l4" | undefined;
  if (l3 && l3.deny) {
    chosen = l3;
    which = "l3";
  } else {
    const l4 = remoteIdentity === 0 ? undefined : lpm(entries, direction, 0, protocol, port);
    if (l4 && (l4.deny || !l3 || l4.proxyPortPriority > l3.proxyPortPriority || (l4.proxyPortPriority === l3.proxyPortPriority && lpmPrefixLength(l4) > lpmPrefixLength(l3)))) {
      chosen = l4;
      which = "l4";
    } else if (l3) {
      chosen = l3;
      which = "l3";
    }
  }
  if (!chosen) return { verdict: "denied", dropReason: DROP_POLICY, proxyPort: 0, matchType: POLICY_MATCH_NONE };
  const len = lpmPrefixLength(chosen);
  const matchType =
    which === "l3"
      ? len > 8
        ? POLICY_MATCH_L3_L4
        : len > 0
          ? POLICY_MATCH_L3_PROTO
          : POLICY_MATCH_L3_ONLY
      : len === 0
        ? POLICY_MATCH_ALL
        : len <= 8
          ? POLICY_MATCH_PROTO_ONLY
          : POLICY_MATCH_L4_ONLY;
  if (chosen.deny) return { verdict: "denied", dropReason: DROP_POLICY_DENY, proxyPort: 0, entry: chosen, lookup: which, matchType };
  return { verdict: "allowed", dropReason: 0, proxyPort: chosen.proxyPort, entry: chosen, lookup: which, matchType };
}

/** Encodes compiled entries as core PolicyKey/PolicyEntry codec objects for endpoint `epId`. */
export function encodeEntries(epId: number, entries: MapStateEntry[]): { key: PolicyKey; value: PolicyEntry }[] {
  return entries.map((e) => {
    const len = lpmPrefixLength(e);
    return {
      key: {
        prefixlen: POLICY_STATIC_PREFIX + len,
        secLabel: e.key.identity >>> 0,
        epId,
        egress: e.key.direction === "egress" ? POLICY_EGRESS : POLICY_INGRESS,
        protocol: e.key.protocol,
        dport: e.key.protocol === 0 ? 0 : e.key.port,
        pad0: 0,
      },
      value: {
        proxyPort: e.proxyPort,
        flags: e.deny ? POLICY_F_DENY : 0,
        lpmPrefixLength: len,
        authType: 0,
        proxyPortPriority: e.proxyPortPriority,
        pad0: 0,
        cookie: e.cookie,
      },
    };
  });
}
