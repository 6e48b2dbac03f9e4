/*
 * The one drop-reason table. Numbers are Cilium's (bpf/lib/common.h DROP_*, text from
 * pkg/monitor/api/drop.go, Hubble names from api/v1/flow/flow.proto DropReason). Each constant's doc
 * comment is "<text shown to users> | <Hubble DropReason name>"; codegen/drop-reasons reads those comments
 * to write bpf/gen/drop_reasons.h, host/drop-reasons.gen.ts and docs/drop-reasons.md.
 * To add a reason: add a constant here (Cilium's number if Cilium has one), then `npm run gen`.
 */

/** Invalid source ip | INVALID_SOURCE_IP */
export const DROP_INVALID_SIP: u32 = 132;
/** Policy denied | POLICY_DENIED */
export const DROP_POLICY: u32 = 133;
/** Invalid packet | INVALID_PACKET_DROPPED */
export const DROP_INVALID: u32 = 134;
/** CT: Truncated or invalid header | CT_TRUNCATED_OR_INVALID_HEADER */
export const DROP_CT_INVALID_HDR: u32 = 135;
/** CT: Unknown L4 protocol | CT_UNKNOWN_L4_PROTOCOL */
export const DROP_CT_UNKNOWN_PROTO: u32 = 137;
/** Unsupported L3 protocol | UNSUPPORTED_L3_PROTOCOL */
export const DROP_UNKNOWN_L3: u32 = 139;
/** Error writing to packet | ERROR_WRITING_TO_PACKET */
export const DROP_WRITE_ERROR: u32 = 141;
/** Unknown L4 protocol | UNKNOWN_L4_PROTOCOL */
export const DROP_UNKNOWN_L4: u32 = 142;
/** Unknown ICMPv4 code | UNKNOWN_ICMPV4_CODE */
export const DROP_UNKNOWN_ICMP_CODE: u32 = 143;
/** Unknown ICMPv4 type | UNKNOWN_ICMPV4_TYPE */
export const DROP_UNKNOWN_ICMP_TYPE: u32 = 144;
/** Unknown ICMPv6 code | UNKNOWN_ICMPV6_CODE */
export const DROP_UNKNOWN_ICMP6_CODE: u32 = 145;
/** Unknown ICMPv6 type | UNKNOWN_ICMPV6_TYPE */
export const DROP_UNKNOWN_ICMP6_TYPE: u32 = 146;
/** Error retrieving tunnel key | ERROR_RETRIEVING_TUNNEL_KEY */
export const DROP_NO_TUNNEL_KEY: u32 = 147;
/** Stale or unroutable IP | STALE_OR_UNROUTABLE_IP */
export const DROP_UNROUTABLE: u32 = 151;
/** Error while correcting L3 checksum | ERROR_WHILE_CORRECTING_L3_CHECKSUM */
export const DROP_CSUM_L3: u32 = 153;
/** Error while correcting L4 checksum | ERROR_WHILE_CORRECTING_L4_CHECKSUM */
export const DROP_CSUM_L4: u32 = 154;
/** CT: Map insertion failed | CT_MAP_INSERTION_FAILED */
export const DROP_CT_CREATE_FAILED: u32 = 155;
/** Invalid IPv6 extension header | INVALID_IPV6_EXTENSION_HEADER */
export const DROP_INVALID_EXTHDR: u32 = 156;
/** IP fragmentation not supported | IP_FRAGMENTATION_NOT_SUPPORTED */
export const DROP_FRAG_NOSUPPORT: u32 = 157;
/** Service backend not found | SERVICE_BACKEND_NOT_FOUND */
export const DROP_NO_SERVICE: u32 = 158;
/** No tunnel/encapsulation endpoint (datapath BUG!) | NO_TUNNEL_OR_ENCAPSULATION_ENDPOINT */
export const DROP_NO_TUNNEL_ENDPOINT: u32 = 160;
/** Unknown connection tracking state | UNKNOWN_CONNECTION_TRACKING_STATE */
export const DROP_UNKNOWN_CT: u32 = 163;
/** No configuration available to perform policy decision | NO_CONFIGURATION_AVAILABLE_TO_PERFORM_POLICY_DECISION */
export const DROP_NO_CONFIG: u32 = 165;
/** Unsupported L2 protocol | UNSUPPORTED_L2_PROTOCOL */
export const DROP_UNSUPPORTED_L2: u32 = 166;
/** No mapping for NAT masquerade | NO_MAPPING_FOR_NAT_MASQUERADE */
export const DROP_NAT_NO_MAPPING: u32 = 167;
/** Unsupported protocol for NAT masquerade | UNSUPPORTED_PROTOCOL_FOR_NAT_MASQUERADE */
export const DROP_NAT_UNSUPP_PROTO: u32 = 168;
/** Invalid identity | INVALID_IDENTITY */
export const DROP_INVALID_IDENTITY: u32 = 171;
/** Unknown sender | UNKNOWN_SENDER */
export const DROP_UNKNOWN_SENDER: u32 = 172;
/** Is a ClusterIP | IS_A_CLUSTERIP */
export const DROP_IS_CLUSTER_IP: u32 = 174;
/** First logical datagram fragment not found | FIRST_LOGICAL_DATAGRAM_FRAGMENT_NOT_FOUND */
export const DROP_FRAG_NOT_FOUND: u32 = 175;
/** Denied by LB src range check | DENIED_BY_LB_SRC_RANGE_CHECK */
export const DROP_NOT_IN_SRC_RANGE: u32 = 177;
/** Proxy lookup failed | PROXY_LOOKUP_FAILED */
export const DROP_PROXY_LOOKUP_FAILED: u32 = 178;
/** Proxy set failed | PROXY_SET_FAILED */
export const DROP_PROXY_SET_FAILED: u32 = 179;
/** Proxy redirection not supported for protocol | PROXY_REDIRECTION_NOT_SUPPORTED_FOR_PROTOCOL */
export const DROP_PROXY_UNKNOWN_PROTO: u32 = 180;
/** Policy denied by denylist | POLICY_DENY */
export const DROP_POLICY_DENY: u32 = 181;
/** Authentication required | AUTH_REQUIRED */
export const DROP_POLICY_AUTH_REQUIRED: u32 = 189;
/** TTL exceeded | TTL_EXCEEDED */
export const DROP_TTL_EXCEEDED: u32 = 196;
