/*
 * The host firewall: host policies (CiliumClusterwideNetworkPolicy rules with a nodeSelector) enforced for
 * the node itself at its network device, as Cilium's bpf/lib/host_firewall.h (ipv4_host_policy_ingress /
 * ipv4_host_policy_egress, called from bpf/bpf_host.c cil_from_netdev and cil_to_netdev). The host is one
 * endpoint, ConfigValue.hostEpId (Cilium's HOST_EP_ID), whose Policy map entries the control plane writes
 * like any endpoint's: allow-all in a direction no host policy touches, the compiled rules otherwise
 * (policy/compile.ts). The steps themselves are core/pipeline.ts fromNetwork (ingress) and toNetwork
 * (egress); this file holds the rules and the tests they use. Numbered once:
 *   H1. Only with CONFIG_F_HOST_FIREWALL (Cilium's enable-host-firewall); otherwise nothing here applies.
 *   H2. Ingress (fromNetwork, after NodePort translation and reverse SNAT, as nodeport_lb4 runs before the
 *       host firewall in bpf_host.c): only packets whose destination's ipcache identity is the host
 *       (ConfigValue.hostIdentity) — traffic forwarded to pods is the pods' policy's.
 *   H3. Egress (toNetwork, before masquerading): only packets whose source's ipcache identity is the host,
 *       and not packets this node forwards on the pods' behalf (hostFwForwarded): a NodePort flow SNATed
 *       towards a remote backend, a service reply rev-NATed to the node's NodePort frontend, or the overlay's
 *       encapsulated packets (UDP to the configured tunnel port). Cilium tells those apart by the skb mark
 *       (resolve_srcid_ipv4; MARK_MAGIC_OVERLAY and ctx_skip_host_fw for the overlay); ciliate by the maps
 *       and the configuration that made them. Arriving tunnel packets are judged (H2): their source is
 *       another node, remote-node.
 *   H4. IPv6 neighbour discovery (ICMPv6 133–136) passes untouched (Cilium bpf/lib/icmp6.h
 *       icmp6_host_handle returns SKIP_HOST_FIREWALL for it).
 *   H5. Conntrack: ingress flows are tracked as TUPLE_F_IN, egress as TUPLE_F_OUT, so the reply of a
 *       connection the host opened (or accepted) is found as the reverse of its entry. Replies and related
 *       ICMP errors pass without a policy lookup ("Reply traffic and related are allowed regardless of
 *       policy verdict"). A protocol conntrack does not track is judged by policy on every packet.
 *   H6. New and established packets: a policy lookup for endpoint hostEpId with the remote identity (the
 *       source's ipcache identity on ingress — remote-node for another node, world outside the cluster —;
 *       the destination's on egress), with policyCanAccess's rules (core/policy.ts 1–9). A drop verdict
 *       drops; audit mode (CONFIG_F_POLICY_AUDIT) applies.
 *   H7. A proxy redirect verdict drops with DROP_PROXY_LOOKUP_FAILED: ciliate has no L7 proxy for the host
 *       (the policy layer refuses L7 rules in host policies, so this only guards against a bad map).
 *   H8. An allowed new flow gets its conntrack entry; failing that, DROP_CT_CREATE_FAILED.
 *   H9. A drop of the host firewall is counted (Metrics) in the direction of the host's policy that
 *       decided it: METRIC_DIR_INGRESS at fromNetwork and fromOverlay, METRIC_DIR_EGRESS at toNetwork, as
 *       Cilium's bpf_host.c reports them (cil_from_netdev / cil_to_host with METRIC_INGRESS, cil_to_netdev
 *       with METRIC_EGRESS). Flow events name the direction the same way (traffic_direction INGRESS /
 *       EGRESS).
 *  H10. Tunnel mode: a pod of another node reaches this node's address through the tunnel (with the host
 *       firewall, node addresses carry their node as tunnel endpoint, node/desired.ts, as Cilium's
 *       nodeAddressHasTunnelIP), so the packet arrives at fromOverlay, not fromNetwork. There, a packet
 *       for the node itself goes up its stack after H5–H8 with the source's ipcache identity (the pod's;
 *       the tunnel id only when no entry covers the source), as Cilium's cil_from_overlay hands it to
 *       cilium_host, whose cil_to_host runs ipv4_host_policy_ingress with that lookup. The encapsulating
 *       UDP packet itself met fromNetwork's ingress policy as remote-node's (H2).
 */
import { MapId, CONFIG_VALUE_FLAGS, PACKET_INFO_DADDR, PACKET_INFO_DPORT, PACKET_INFO_FAMILY, PACKET_INFO_ICMP_TYPE,
  PACKET_INFO_NEXTHDR, PACKET_INFO_SADDR, PACKET_INFO_SPORT, CT_TUPLE_SIZE, CT_TUPLE_DADDR, CT_TUPLE_SADDR,
  CT_TUPLE_DPORT_BE, CT_TUPLE_SPORT_BE, CT_TUPLE_NEXTHDR, CT_TUPLE_FLAGS, CT_TUPLE_FAMILY, SERVICE_KEY_SIZE,
  SERVICE_KEY_ADDR, SERVICE_KEY_DPORT_BE, SERVICE_KEY_PROTO, SERVICE_KEY_SCOPE, SERVICE_KEY_FAMILY,
  SERVICE_VALUE_FLAGS, CONFIG_VALUE_TUNNEL_PROTOCOL } from "./gen/layout";
import { CONFIG_F_HOST_FIREWALL, IPPROTO_ICMPV6, ICMPV6_ROUTER_SOLICIT, ICMPV6_NEIGH_ADVERT, TUPLE_F_IN,
  LB_LOOKUP_SCOPE_EXT, SVC_F_ROUTABLE, IPPROTO_UDP, TUNNEL_PROTO_NONE, TUNNEL_PROTO_GENEVE, TUNNEL_PORT_GENEVE,
  TUNNEL_PORT_VXLAN } from "./constants";
import { memCopy, memFill, read8, read16, read32, write8 } from "./env";
import { write16be } from "./bytes";
import { stackAlloc } from "./alloc";
import { mapLookup } from "./maps";

/** H1: whether the host firewall is on. `cfg` is the ConfigValue or 0. Outcomes: true / false. */
export function hostFwEnabled(cfg: usize): bool {
  return cfg != 0 && (read32(cfg + CONFIG_VALUE_FLAGS) & CONFIG_F_HOST_FIREWALL) != 0;
}

/** H4: whether the parsed packet is IPv6 neighbour discovery, which the host firewall never judges.
 * Outcomes: true / false. */
export function hostFwExempt(info: usize): bool {
  if (read8(info + PACKET_INFO_NEXTHDR) != IPPROTO_ICMPV6) return false;
  const t = read8(info + PACKET_INFO_ICMP_TYPE);
  return t >= ICMPV6_ROUTER_SOLICIT && t <= ICMPV6_NEIGH_ADVERT;
}

/**
 * H3: whether a packet leaving with the host's address is one this node forwards rather than its own:
 *   - with an overlay configured (ConfigValue.tunnelProtocol), UDP to its port: an encapsulated pod packet;
 *   - the reverse of the packet is the ingress key of a SNAT mapping (core/nat.ts): fromNetwork SNATed it
 *     to the node (NodePort to a remote backend) — the host's own connections have no mapping;
 *   - its source address and port are a routable service frontend (a NodePort reply rev-NATed to the
 *     frontend by the backend's hook).
 * Outcomes: true / false.
 */
export function hostFwForwarded(cfg: usize, info: usize): bool {
  const proto = read8(info + PACKET_INFO_NEXTHDR);
  const tunnel = read8(cfg + CONFIG_VALUE_TUNNEL_PROTOCOL);
  if (proto == IPPROTO_UDP && tunnel != TUNNEL_PROTO_NONE) {
    const port = tunnel == TUNNEL_PROTO_GENEVE ? TUNNEL_PORT_GENEVE : TUNNEL_PORT_VXLAN;
    if (read16(info + PACKET_INFO_DPORT) == port) return true;
  }
  const key = stackAlloc(CT_TUPLE_SIZE);
  memFill(key, 0, CT_TUPLE_SIZE);
  memCopy(key + CT_TUPLE_DADDR, info + PACKET_INFO_SADDR, 16);
  memCopy(key + CT_TUPLE_SADDR, info + PACKET_INFO_DADDR, 16);
  write16be(key + CT_TUPLE_DPORT_BE, read16(info + PACKET_INFO_SPORT));
  write16be(key + CT_TUPLE_SPORT_BE, read16(info + PACKET_INFO_DPORT));
  write8(key + CT_TUPLE_NEXTHDR, proto);
  write8(key + CT_TUPLE_FLAGS, TUPLE_F_IN);
  write8(key + CT_TUPLE_FAMILY, read8(info + PACKET_INFO_FAMILY));
  if (mapLookup(MapId.Snat, key) != 0) return true;
  const svcKey = stackAlloc(SERVICE_KEY_SIZE);
  memFill(svcKey, 0, SERVICE_KEY_SIZE);
  memCopy(svcKey + SERVICE_KEY_ADDR, info + PACKET_INFO_SADDR, 16);
  write16be(svcKey + SERVICE_KEY_DPORT_BE, read16(info + PACKET_INFO_SPORT));
  write8(svcKey + SERVICE_KEY_PROTO, proto);
  write8(svcKey + SERVICE_KEY_SCOPE, LB_LOOKUP_SCOPE_EXT);
  write8(svcKey + SERVICE_KEY_FAMILY, read8(info + PACKET_INFO_FAMILY));
  const svc = mapLookup(MapId.Services, svcKey);
  return svc != 0 && (read8(svc + SERVICE_VALUE_FLAGS) & SVC_F_ROUTABLE) != 0;
}
