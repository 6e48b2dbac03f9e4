/*
 * Numeric constants shared by every core module, with Cilium's values where Cilium has them
 * (bpf/lib/common.h, bpf/lib/lb.h, bpf/lib/conntrack.h, pkg/identity). Flag-bit names match the
 * layout fields they live in (core/layout.ts).
 */

// Program return codes (TC actions).
export const CTX_ACT_OK: u32 = 0;
export const CTX_ACT_DROP: u32 = 2;
export const CTX_ACT_REDIRECT: u32 = 7;
/** Encapsulated: the tunnel key is set on the packet; the program redirects it to the tunnel device
 * (ConfigValue.tunnelIfindex). Our own value: Cilium returns ctx_redirect's TC_ACT_REDIRECT directly. */
export const CTX_ACT_TUNNEL: u32 = 8;

// Address families as stored in keys (Cilium ENDPOINT_KEY_IPV4/IPV6).
export const FAMILY_IPV4: u32 = 1;
export const FAMILY_IPV6: u32 = 2;

// EtherTypes and IP protocol numbers.
export const ETH_P_IP: u32 = 0x0800;
export const ETH_P_IPV6: u32 = 0x86dd;
export const ETH_P_8021Q: u32 = 0x8100;
export const ETH_P_8021AD: u32 = 0x88a8;
export const ETH_P_ARP: u32 = 0x0806;
export const IPPROTO_ICMP: u32 = 1;
export const IPPROTO_TCP: u32 = 6;
export const IPPROTO_UDP: u32 = 17;
export const IPPROTO_ICMPV6: u32 = 58;
export const IPPROTO_SCTP: u32 = 132;
/** Extended IP protocols without transport ports that policy may name (Cilium's ProtoIGMP, ProtoVRRP). */
export const IPPROTO_IGMP: u32 = 2;
export const IPPROTO_VRRP: u32 = 112;

// TCP flags (low byte of the flags field).
export const TCP_FIN: u32 = 0x01;
export const TCP_SYN: u32 = 0x02;
export const TCP_RST: u32 = 0x04;
export const TCP_PSH: u32 = 0x08;
export const TCP_ACK: u32 = 0x10;

// Reserved identities (pkg/identity/numericidentity.go).
export const ID_UNKNOWN: u32 = 0;
export const ID_HOST: u32 = 1;
export const ID_WORLD: u32 = 2;
export const ID_UNMANAGED: u32 = 3;
export const ID_HEALTH: u32 = 4;
export const ID_INIT: u32 = 5;
export const ID_REMOTE_NODE: u32 = 6;
export const ID_KUBE_APISERVER: u32 = 7;
export const ID_INGRESS: u32 = 8;
export const ID_WORLD_IPV4: u32 = 9;
export const ID_WORLD_IPV6: u32 = 10;
/** Node-local identity scope (CIDR identities, pkg/identity/numericidentity.go IdentityScopeLocal): bits 24–31 = 1. */
export const ID_SCOPE_LOCAL: u32 = 1;

// CONFIG_F_* (ConfigValue.flags).
export const CONFIG_F_ENABLE_ICMP_RULE: u32 = 0x1;
export const CONFIG_F_ALLOW_ICMP_FRAG_NEEDED: u32 = 0x2;
export const CONFIG_F_POLICY_AUDIT: u32 = 0x4;
/** Emit flow events (TraceRecord copies) into the Events ring buffer for drops and new-flow verdicts. */
export const CONFIG_F_EVENTS: u32 = 0x8;
/** Also emit an event for every forwarded packet (Hubble's trace events; for debugging, costly). */
export const CONFIG_F_EVENTS_ALL: u32 = 0x10;
/** Track and apply policy to VRRP and IGMP (Cilium's enable-extended-ip-protocols); without it they drop 137. */
export const CONFIG_F_EXTENDED_IP_PROTOCOLS: u32 = 0x20;
/** BPF masquerading (Cilium's enable-bpf-masquerade): toNetwork SNATs pod traffic leaving the cluster to
 * ConfigValue.nodeIpv4Be (core/nat.ts M1–M6). */
export const CONFIG_F_MASQUERADE: u32 = 0x40;
/** Host firewall (Cilium's enable-host-firewall): host policies (the Policy entries of
 * ConfigValue.hostEpId) apply at the node device's ingress (fromNetwork) and egress (toNetwork)
 * (core/host-firewall.ts H1–H8). */
export const CONFIG_F_HOST_FIREWALL: u32 = 0x100;

// Policy map (Cilium bpf/lib/policy.h, struct policy_key): prefix bits after prefixlen that are always
// exact, and the maximum.
export const POLICY_STATIC_PREFIX: u32 = 56;
export const POLICY_FULL_PREFIX: u32 = 80;
export const POLICY_F_DENY: u32 = 0x1;
export const POLICY_INGRESS: u32 = 0;
export const POLICY_EGRESS: u32 = 1;
// Policy match types reported in traces (Cilium POLICY_MATCH_*).
export const POLICY_MATCH_NONE: u32 = 0;
export const POLICY_MATCH_L3_ONLY: u32 = 1;
export const POLICY_MATCH_L3_L4: u32 = 2;
export const POLICY_MATCH_L4_ONLY: u32 = 3;
export const POLICY_MATCH_ALL: u32 = 4;
export const POLICY_MATCH_L3_PROTO: u32 = 5;
export const POLICY_MATCH_PROTO_ONLY: u32 = 6;
// Policy entry internals (bpf/lib/policy.h): protocol/port prefix bits of lpmPrefixLength, and the
// authType byte (low 7 bits auth type, top bit has_explicit_auth_type, as Cilium's bitfields).
export const LPM_PROTO_PREFIX_BITS: u32 = 8;
export const LPM_FULL_PREFIX_BITS: u32 = 24;
export const POLICY_AUTH_TYPE_MASK: u32 = 0x7f;
export const POLICY_AUTH_F_EXPLICIT: u32 = 0x80;
// PolicyResult.lookup: which of policyCanAccess's two lookups decided (core/policy.ts).
export const POLICY_LOOKUP_NONE: u32 = 0;
export const POLICY_LOOKUP_IDENTITY: u32 = 1;
export const POLICY_LOOKUP_WILDCARD: u32 = 2;

// ipcache: static prefix bits (clusterId, pad, family) ahead of the address.
export const IPCACHE_STATIC_PREFIX: u32 = 32;

// Conntrack (Cilium bpf/lib/conntrack.h).
export const CT_NEW: u32 = 0;
export const CT_ESTABLISHED: u32 = 1;
export const CT_REPLY: u32 = 2;
export const CT_RELATED: u32 = 3;
export const CT_NONE: u32 = 255;
export const TUPLE_F_OUT: u32 = 0;
export const TUPLE_F_IN: u32 = 1;
export const TUPLE_F_RELATED: u32 = 2;
export const TUPLE_F_SERVICE: u32 = 4;
export const CT_F_RX_CLOSING: u32 = 0x01;
export const CT_F_TX_CLOSING: u32 = 0x02;
export const CT_F_SEEN_NON_SYN: u32 = 0x04;
export const CT_F_LB_LOOPBACK: u32 = 0x08;
export const CT_F_NODE_PORT: u32 = 0x10;
export const CT_F_PROXY_REDIRECT: u32 = 0x20;

// Load balancing (Cilium bpf/lib/lb.h).
export const LB_LOOKUP_SCOPE_EXT: u32 = 0;
export const LB_LOOKUP_SCOPE_INT: u32 = 1;
export const LB_ALG_RANDOM: u32 = 1;
export const LB_ALG_MAGLEV: u32 = 2;
export const SVC_F_EXTERNAL_IP: u32 = 0x01;
export const SVC_F_NODEPORT: u32 = 0x02;
export const SVC_F_EXT_LOCAL_SCOPE: u32 = 0x04;
export const SVC_F_HOSTPORT: u32 = 0x08;
export const SVC_F_AFFINITY: u32 = 0x10;
export const SVC_F_LOADBALANCER: u32 = 0x20;
export const SVC_F_ROUTABLE: u32 = 0x40;
export const SVC_F_SOURCE_RANGE: u32 = 0x80;
export const SVC_F2_INT_LOCAL_SCOPE: u32 = 0x10;
export const SVC_F2_TWO_SCOPES: u32 = 0x20;
export const BE_STATE_ACTIVE: u32 = 0;
export const BE_STATE_TERMINATING: u32 = 1;
export const BE_STATE_QUARANTINED: u32 = 2;
export const BE_STATE_MAINTENANCE: u32 = 3;

// Metrics directions (cilium_metrics).
export const METRIC_DIR_INGRESS: u32 = 1;
export const METRIC_DIR_EGRESS: u32 = 2;
export const METRIC_DIR_SERVICE: u32 = 3;

// Trace observation points (pkg/monitor/api/types.go TraceTo*/TraceFrom*).
export const TRACE_TO_ENDPOINT: u32 = 0;
export const TRACE_TO_PROXY: u32 = 1;
export const TRACE_TO_HOST: u32 = 2;
export const TRACE_TO_STACK: u32 = 3;
export const TRACE_TO_OVERLAY: u32 = 4;
export const TRACE_FROM_ENDPOINT: u32 = 5;
export const TRACE_FROM_HOST: u32 = 7;
export const TRACE_FROM_OVERLAY: u32 = 9;
export const TRACE_FROM_NETWORK: u32 = 10;
export const TRACE_TO_NETWORK: u32 = 11;

// TraceRecord.hook.
export const HOOK_FROM_ENDPOINT: u32 = 1;
export const HOOK_TO_ENDPOINT: u32 = 2;
export const HOOK_FROM_NETWORK: u32 = 3;
export const HOOK_FROM_OVERLAY: u32 = 4;
export const HOOK_TO_NETWORK: u32 = 5;
export const HOOK_FROM_HOST: u32 = 6;

// IpcacheValue.flags (Cilium struct remote_endpoint_info's flag bits, bpf/lib/eps.h).
export const IPCACHE_F_SKIP_TUNNEL: u32 = 0x1;
export const IPCACHE_F_HAS_TUNNEL_EP: u32 = 0x2;
export const IPCACHE_F_IPV6_TUNNEL_EP: u32 = 0x4;

// Overlay (Cilium bpf/lib/encap.h, pkg/datapath/tunnel). One code path serves VXLAN and Geneve: both
// carry a 24-bit VNI in an 8-byte header over UDP, and a collect-metadata device does the header itself.
export const TUNNEL_PROTO_NONE: u32 = 0;
export const TUNNEL_PROTO_VXLAN: u32 = 1;
export const TUNNEL_PROTO_GENEVE: u32 = 2;
/** Cilium's default UDP ports: 8472 for VXLAN (the Linux kernel's legacy port), 6081 for Geneve (IANA). */
export const TUNNEL_PORT_VXLAN: u32 = 8472;
export const TUNNEL_PORT_GENEVE: u32 = 6081;
/** Largest identity a 24-bit VNI carries. */
export const TUNNEL_ID_MAX: u32 = 0xffffff;
/** Bytes the overlay adds to a packet (outer Ethernet 14 + IP + UDP 8 + VXLAN/Geneve 8, no Geneve
 * options): the pod MTU is the device MTU minus this (Cilium pkg/mtu: TunnelOverhead 50, +20 over IPv6). */
export const TUNNEL_OVERHEAD_IPV4: u32 = 50;
export const TUNNEL_OVERHEAD_IPV6: u32 = 70;
/** TTL of the outer header (the kernel's default for the tunnel device). */
export const TUNNEL_TTL: u32 = 64;

// TraceRecord.traceFlags.
export const TRACE_F_EGRESS_CHECKED: u32 = 0x01;
export const TRACE_F_INGRESS_CHECKED: u32 = 0x02;
export const TRACE_F_L7_REDIRECT: u32 = 0x04;
export const TRACE_F_DNAT: u32 = 0x08;
export const TRACE_F_REV_NAT: u32 = 0x10;
export const TRACE_F_SNAT: u32 = 0x20;
export const TRACE_F_REPLY: u32 = 0x40;
export const TRACE_F_AUDITED: u32 = 0x80;

// TraceRecord.verdict written by a host before a run to ask for the record (no program returns it): an
// armed record is filled in; an unarmed one only when flow events are on. A record still armed after
// the run means the program did not run.
export const TRACE_VERDICT_ARMED: u32 = 0xdeadbeef;

// skb->mark values between the node's L7 proxy and the programs (Cilium's MARK_MAGIC_* idea,
// bpf/lib/common.h; our own numbers, in the top nibble so they never collide with an identity, which is at
// most 25 bits). toEndpoint's srcIdentity is skb->mark: an identity, or one of these.
export const MARK_MAGIC_MASK: u32 = 0xf0000000;
/** Set by the programs on a packet handed to a proxy socket; low 16 bits: the proxy port (0: a reply to
 * the proxy's upstream connection). The node routes packets with this mark to the local stack. */
export const MARK_MAGIC_TO_PROXY: u32 = 0xc0000000;
/** Set (SO_MARK) by the ingress proxy on its upstream connections: ingress policy was enforced by the
 * proxy, so toEndpoint does not redirect them again. */
export const MARK_MAGIC_FROM_INGRESS_PROXY: u32 = 0xa0000000;
/** Set (SO_MARK) by the egress proxy on its client-side sockets and upstream connections. */
export const MARK_MAGIC_FROM_EGRESS_PROXY: u32 = 0xb0000000;
/** Set by the from_overlay program on a packet core's fromOverlay let through to a local pod (ingress
 * policy on the identity in the tunnel key, conntrack and reverse NAT done): the stack routes it to the
 * pod's veth, where to_endpoint passes it unchanged instead of judging it again — a reply fromOverlay
 * reverse-NATed would be a new flow to a second conntrack lookup. Pods cannot set it (the mark is cleared
 * when a packet leaves their namespace). */
export const MARK_MAGIC_OVERLAY: u32 = 0xd0000000;

// Map update flags (BPF_ANY/NOEXIST/EXIST) and errors returned by map operations (negative errno).
export const BPF_ANY: u32 = 0;
export const BPF_NOEXIST: u32 = 1;
export const BPF_EXIST: u32 = 2;
export const ENOENT: i32 = 2;
export const E2BIG: i32 = 7;
export const ENOMEM: i32 = 12;
export const EEXIST: i32 = 17;
export const EINVAL: i32 = 22;

// PacketInfo.flags.
export const PKT_F_FRAGMENT: u32 = 0x1;
export const PKT_F_ICMP_ERROR: u32 = 0x2;
export const PKT_F_VLAN: u32 = 0x4;
/** A non-first IPv4 fragment: no L4 header in this packet; ports come from the first fragment (core/frag.ts). */
export const PKT_F_NO_L4: u32 = 0x8;

// ICMP types used by parsing and conntrack.
export const ICMP_ECHOREPLY: u32 = 0;
export const ICMP_DEST_UNREACH: u32 = 3;
export const ICMP_FRAG_NEEDED_CODE: u32 = 4;
export const ICMP_ECHO: u32 = 8;
export const ICMP_TIME_EXCEEDED: u32 = 11;
export const ICMP_PARAMETERPROB: u32 = 12;
export const ICMPV6_DEST_UNREACH: u32 = 1;
export const ICMPV6_PKT_TOOBIG: u32 = 2;
export const ICMPV6_TIME_EXCEED: u32 = 3;
export const ICMPV6_PARAMPROB: u32 = 4;
export const ICMPV6_ECHO_REQUEST: u32 = 128;
export const ICMPV6_ECHO_REPLY: u32 = 129;
/** Neighbour discovery (RFC 4861): router solicitation/advertisement, neighbour solicitation/advertisement. */
export const ICMPV6_ROUTER_SOLICIT: u32 = 133;
export const ICMPV6_NEIGH_ADVERT: u32 = 136;

// Header sizes and IPv4 fragment bits used by packet parsing (bpf/lib/eth.h, bpf/lib/ipv4.h).
export const ETH_HLEN: u32 = 14;
export const VLAN_HLEN: u32 = 4;
export const IPV4_HLEN_MIN: u32 = 20;
export const IPV6_HLEN: u32 = 40;
export const IP_MF: u32 = 0x2000;
export const IP_OFFSET: u32 = 0x1fff;

// IPv6 extension header numbers (Cilium NEXTHDR_*, bpf/lib/ipv6.h) and how many the parser walks.
export const NEXTHDR_HOP: u32 = 0;
export const NEXTHDR_ROUTING: u32 = 43;
export const NEXTHDR_FRAGMENT: u32 = 44;
export const NEXTHDR_AUTH: u32 = 51;
export const NEXTHDR_NONE: u32 = 59;
export const NEXTHDR_DEST: u32 = 60;
export const IPV6_MAX_HEADERS: u32 = 4;
