/*
 * The policy verdict for one packet direction: may the endpoint `epId` exchange this packet with the
 * remote identity, given the L4 protocol and destination port? Mirrors Cilium 1.17/1.18's
 * __policy_can_access and __policy_check (bpf/lib/policy.h).
 *
 * The Policy map is one LPM trie for the node (core/layout.ts PolicyKey): secLabel, epId and the
 * direction are always exact (POLICY_STATIC_PREFIX bits); the protocol and then the port can be
 * wildcarded by a shorter prefix (an entry's lpmPrefixLength = 0 any protocol, 8 protocol only, 9..24 a
 * port prefix). A wildcard identity is not an LPM feature: it is stored as secLabel 0 and found by a
 * second lookup.
 *
 * Precedence rules (numbered once; the numbers are repeated where each rule is implemented):
 *   1. Lookup #1 (identity-specific): key with the full prefix, secLabel = remote identity, the real
 *      protocol and port; the trie returns the most specific matching protocol/port entry.
 *   2. A deny entry from lookup #1 decides at once; lookup #2 is skipped.
 *   3. Lookup #2 (wildcard identity): the same key with secLabel = 0.
 *   4. The lookup-#2 entry decides when it exists and (a) it is a deny, or (b) lookup #1 found nothing,
 *      or (c) its proxyPortPriority is higher than the lookup-#1 entry's, or (d) the priorities are equal
 *      and its lpmPrefixLength is longer. So: deny first, then higher proxy priority, then the more
 *      specific L4 match; a tie goes to the identity-specific entry.
 *   5. Otherwise the lookup-#1 entry decides, if there is one.
 *   6. No entry from either lookup: -DROP_POLICY (default deny). (Cilium answers DROP_FRAG_NOSUPPORT
 *      for untracked fragments here; ciliate's parser drops those before policy.)
 *   7. The deciding entry is a deny: -DROP_POLICY_DENY.
 *   8. Auth: the deciding entry's auth type, except when it has no explicit auth type and the other
 *      lookup's entry has a numerically larger one, which is then propagated. A non-zero auth type gives
 *      -DROP_POLICY_AUTH_REQUIRED. (Cilium then consults its auth map, auth_lookup(); ciliate has no auth
 *      map yet, so such traffic is always dropped.)
 *   9. Otherwise the deciding entry's proxy port: > 0 redirect to that L7 proxy port, 0 plain allow.
 *
 * Match type of the decision (__policy_can_access): lookup-#1 entry with lpmPrefixLength > 8 → L3_L4,
 * 1..8 → L3_PROTO, 0 → L3_ONLY; lookup-#2 entry with 0 → ALL, ≤ 8 → PROTO_ONLY, otherwise L4_ONLY.
 */
import {
  MapId,
  CONFIG_VALUE_FLAGS,
  POLICY_ENTRY_AUTH_TYPE,
  POLICY_ENTRY_COOKIE,
  POLICY_ENTRY_FLAGS,
  POLICY_ENTRY_LPM_PREFIX_LENGTH,
  POLICY_ENTRY_PROXY_PORT_BE,
  POLICY_ENTRY_PROXY_PORT_PRIORITY,
  POLICY_KEY_DPORT_BE,
  POLICY_KEY_EGRESS,
  POLICY_KEY_EP_ID,
  POLICY_KEY_PREFIXLEN,
  POLICY_KEY_PROTOCOL,
  POLICY_KEY_SEC_LABEL,
  POLICY_KEY_SIZE,
  POLICY_RESULT_AUDITED,
  POLICY_RESULT_AUTH_TYPE,
  POLICY_RESULT_COOKIE,
  POLICY_RESULT_LOOKUP,
  POLICY_RESULT_MATCH_TYPE,
  POLICY_RESULT_PROXY_PORT,
  POLICY_RESULT_SIZE,
} from "./gen/layout";
import {
  CONFIG_F_ALLOW_ICMP_FRAG_NEEDED,
  CONFIG_F_ENABLE_ICMP_RULE,
  CONFIG_F_POLICY_AUDIT,
  ICMP_DEST_UNREACH,
  ICMP_FRAG_NEEDED_CODE,
  IPPROTO_ICMP,
  IPPROTO_ICMPV6,
  LPM_PROTO_PREFIX_BITS,
  POLICY_AUTH_F_EXPLICIT,
  POLICY_AUTH_TYPE_MASK,
  POLICY_F_DENY,
  POLICY_FULL_PREFIX,
  POLICY_LOOKUP_IDENTITY,
  POLICY_LOOKUP_NONE,
  POLICY_LOOKUP_WILDCARD,
  POLICY_MATCH_ALL,
  POLICY_MATCH_L3_L4,
  POLICY_MATCH_L3_ONLY,
  POLICY_MATCH_L3_PROTO,
  POLICY_MATCH_L4_ONLY,
  POLICY_MATCH_NONE,
  POLICY_MATCH_PROTO_ONLY,
} from "./constants";
import { DROP_POLICY, DROP_POLICY_AUTH_REQUIRED, DROP_POLICY_DENY } from "./drop-reasons";
import { memFill, read8, read32, write8, write16, write32 } from "./env";
import { read16be, write16be } from "./bytes";
import { mapLookup } from "./maps";
import { stackAlloc } from "./alloc";

function isDeny(entry: usize): bool {
  return (read8(entry + POLICY_ENTRY_FLAGS) & POLICY_F_DENY) != 0;
}

/** POLICY_MATCH_* for the deciding entry (see the file comment). */
function matchType(entry: usize, lookup: u32): u32 {
  const plen = read8(entry + POLICY_ENTRY_LPM_PREFIX_LENGTH);
  if (lookup == POLICY_LOOKUP_IDENTITY) {
    if (plen > LPM_PROTO_PREFIX_BITS) return POLICY_MATCH_L3_L4;
    if (plen > 0) return POLICY_MATCH_L3_PROTO;
    return POLICY_MATCH_L3_ONLY;
  }
  if (plen == 0) return POLICY_MATCH_ALL;
  if (plen <= LPM_PROTO_PREFIX_BITS) return POLICY_MATCH_PROTO_ONLY;
  return POLICY_MATCH_L4_ONLY;
}

/**
 * Rules 7–9 for the deciding `entry` (`other` is the other lookup's entry or 0); fills `result`.
 * Outcomes: -DROP_POLICY_DENY, -DROP_POLICY_AUTH_REQUIRED, the proxy port (> 0) or 0.
 */
function policyCheck(entry: usize, other: usize, lookup: u32, result: usize): i32 {
  write32(result + POLICY_RESULT_COOKIE, read32(entry + POLICY_ENTRY_COOKIE));
  write8(result + POLICY_RESULT_MATCH_TYPE, matchType(entry, lookup));
  write8(result + POLICY_RESULT_LOOKUP, lookup);
  // 7. Deny.
  if (isDeny(entry)) return -(<i32>DROP_POLICY_DENY);
  const proxyPort = read16be(entry + POLICY_ENTRY_PROXY_PORT_BE);
  write16(result + POLICY_RESULT_PROXY_PORT, proxyPort);
  // 8. Auth type, propagated from the other entry when the deciding one has none explicitly.
  const authByte = read8(entry + POLICY_ENTRY_AUTH_TYPE);
  let auth = authByte & POLICY_AUTH_TYPE_MASK;
  if (other != 0 && (authByte & POLICY_AUTH_F_EXPLICIT) == 0) {
    const otherAuth = read8(other + POLICY_ENTRY_AUTH_TYPE) & POLICY_AUTH_TYPE_MASK;
    if (otherAuth > auth) auth = otherAuth;
  }
  write8(result + POLICY_RESULT_AUTH_TYPE, auth);
  if (auth != 0) return -(<i32>DROP_POLICY_AUTH_REQUIRED);
  // 9. Allow, possibly through the L7 proxy.
  return <i32>proxyPort;
}

/**
 * Policy verdict for a packet of endpoint `epId` exchanged with `remoteId` in direction `egress`
 * (POLICY_EGRESS 1 / POLICY_INGRESS 0), L4 protocol `proto` and host-order destination port `dport`.
 * For ICMP (1) and ICMPv6 (58) the caller passes the ICMP *type* as `dport` (Cilium enable_icmp_rule;
 * see policyPort), and checks policyIcmpFragNeededAllowed itself. `result` must point to a PolicyResult
 * (POLICY_RESULT_SIZE bytes) that is always completely written: cookie, match type, proxy port and auth
 * type of the deciding entry, which lookup decided (POLICY_LOOKUP_*), audited = 0.
 * Outcomes (Cilium's verdict convention, bpf/lib/policy.h: > 0 a proxy port, 0 allow, < 0 a drop reason):
 *   - -DROP_POLICY (-133): no entry matches (rule 6); result: match NONE, lookup NONE, cookie 0;
 *   - -DROP_POLICY_DENY (-181): the deciding entry is a deny (rules 2, 4a, 7);
 *   - -DROP_POLICY_AUTH_REQUIRED (-189): the decision requires authentication (rule 8);
 *   - > 0: allowed, redirect to this L7 proxy port (host order) (rule 9);
 *   - 0: allowed (rule 9).
 */
export function policyCanAccess(epId: u32, remoteId: u32, egress: u32, proto: u32, dport: u32, result: usize): i32 {
  memFill(result, 0, POLICY_RESULT_SIZE);
  const key = stackAlloc(POLICY_KEY_SIZE);
  if (key == 0) return -(<i32>DROP_POLICY);
  // 1. Lookup #1: always with the full prefix (unwildcarded data), exact identity.
  write32(key + POLICY_KEY_PREFIXLEN, POLICY_FULL_PREFIX);
  write32(key + POLICY_KEY_SEC_LABEL, remoteId);
  write16(key + POLICY_KEY_EP_ID, epId & 0xffff);
  write8(key + POLICY_KEY_EGRESS, egress != 0 ? 1 : 0);
  write8(key + POLICY_KEY_PROTOCOL, proto);
  write16be(key + POLICY_KEY_DPORT_BE, dport);
  const l3 = mapLookup(MapId.Policy, key);
  // 2. A deny from the identity-specific lookup decides without the second lookup.
  if (l3 != 0 && isDeny(l3)) return policyCheck(l3, 0, POLICY_LOOKUP_IDENTITY, result);
  // 3. Lookup #2: wildcard identity.
  write32(key + POLICY_KEY_SEC_LABEL, 0);
  const l4 = mapLookup(MapId.Policy, key);
  // 4. (a) deny, (b) no lookup-#1 entry, (c) higher proxy priority, (d) equal priority and longer prefix.
  if (l4 != 0) {
    let chooseL4 = isDeny(l4) || l3 == 0; // 4a, 4b
    if (!chooseL4) {
      const p4 = read8(l4 + POLICY_ENTRY_PROXY_PORT_PRIORITY);
      const p3 = read8(l3 + POLICY_ENTRY_PROXY_PORT_PRIORITY);
      if (p4 > p3) chooseL4 = true; // 4c
      else if (p4 == p3 && read8(l4 + POLICY_ENTRY_LPM_PREFIX_LENGTH) > read8(l3 + POLICY_ENTRY_LPM_PREFIX_LENGTH)) {
        chooseL4 = true; // 4d
      }
    }
    if (chooseL4) return policyCheck(l4, l3, POLICY_LOOKUP_WILDCARD, result);
  }
  // 5. The identity-specific entry.
  if (l3 != 0) return policyCheck(l3, l4, POLICY_LOOKUP_IDENTITY, result);
  // 6. Nothing matched: default deny.
  write8(result + POLICY_RESULT_MATCH_TYPE, POLICY_MATCH_NONE);
  write8(result + POLICY_RESULT_LOOKUP, POLICY_LOOKUP_NONE);
  return -(<i32>DROP_POLICY);
}

/**
 * The value to pass as policyCanAccess's `dport`, as Cilium's __policy_can_access derives it:
 * Outcomes:
 *   - for ICMP (proto 1) / ICMPv6 (58) with CONFIG_F_ENABLE_ICMP_RULE set in `cfg`: the ICMP type;
 *   - for ICMP / ICMPv6 without the flag (or without config): 0, so only rules wildcarding the port match;
 *   - otherwise `dport` unchanged.
 */
export function policyPort(cfg: usize, proto: u32, dport: u32, icmpType: u32): u32 {
  if (proto == IPPROTO_ICMP || proto == IPPROTO_ICMPV6) {
    if (cfg != 0 && (read32(cfg + CONFIG_VALUE_FLAGS) & CONFIG_F_ENABLE_ICMP_RULE) != 0) return icmpType & 0xff;
    return 0;
  }
  return dport;
}

/**
 * Cilium's allow_icmp_frag_needed short-cut (bpf/lib/policy.h, IPv4 only): an ICMPv4 "destination
 * unreachable / fragmentation needed" (type 3 code 4) is allowed whatever the policy says, so path-MTU
 * discovery keeps working. Cilium checks it before the policy lookups; a caller may equally apply it to a
 * negative policyCanAccess verdict. `cfg` is the ConfigValue pointer (configGet) or 0.
 * Outcomes:
 *   - true: CONFIG_F_ALLOW_ICMP_FRAG_NEEDED is set, `proto` is IPPROTO_ICMP, type 3 and code 4 — allow;
 *   - false otherwise (including no config, and ICMPv6, for which Cilium has no such exception here).
 */
export function policyIcmpFragNeededAllowed(cfg: usize, proto: u32, icmpType: u32, icmpCode: u32): bool {
  if (cfg == 0) return false;
  if ((read32(cfg + CONFIG_VALUE_FLAGS) & CONFIG_F_ALLOW_ICMP_FRAG_NEEDED) == 0) return false;
  return proto == IPPROTO_ICMP && icmpType == ICMP_DEST_UNREACH && icmpCode == ICMP_FRAG_NEEDED_CODE;
}

/**
 * Policy audit mode (Cilium POLICY_AUDIT_MODE in policy_can_ingress / policy_can_egress): with
 * CONFIG_F_POLICY_AUDIT set, every drop verdict (negative) becomes an allow and is reported as audited.
 * `cfg` is the ConfigValue pointer or 0; `result` the PolicyResult of the check, or 0.
 * Outcomes:
 *   - 0 with result.audited = 1: `verdict` < 0 and audit mode is on;
 *   - `verdict` unchanged otherwise (allow, proxy port, or a drop when audit mode is off / no config).
 */
export function policyAudit(verdict: i32, cfg: usize, result: usize): i32 {
  if (verdict >= 0 || cfg == 0) return verdict;
  if ((read32(cfg + CONFIG_VALUE_FLAGS) & CONFIG_F_POLICY_AUDIT) == 0) return verdict;
  if (result != 0) write8(result + POLICY_RESULT_AUDITED, 1);
  return 0;
}
