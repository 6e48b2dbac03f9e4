/*
 * IPv4 fragment tracking (Cilium bpf/lib/ipv4.h ipv4_handle_fragmentation / ipv4_frag_get_l4ports, map
 * IPV4_FRAG_DATAGRAMS): only a datagram's first fragment carries its L4 header, so the first fragment's
 * ports are recorded under the datagram's identity and the later fragments take them from there. Every
 * fragment of a datagram is then the same flow to service lookup, conntrack, policy and NAT, and follows
 * the first fragment's verdict and translation.
 *
 * Map MapId.FragDatagrams (LRU hash, key FragId, value FragL4Ports). Rules, numbered once:
 *   F1. Not an IPv4 fragment (PKT_F_FRAGMENT clear): nothing to do.
 *   F2. The first fragment (offset 0, MF set; parsed with its L4 header): its ports, ICMP type and code
 *       are written under {daddr, saddr, IP id, protocol} with BPF_ANY — the first logical fragment, not
 *       necessarily the first to arrive. A failed update does not drop the packet (Cilium: "nothing
 *       prevents us to process the current packet normally").
 *   F3. A later fragment (PKT_F_NO_L4): PacketInfo's ports, ICMP type and code become the entry's; no
 *       entry (its first fragment was not seen, or came later) → DROP_FRAG_NOT_FOUND (175).
 * Entries are left to the LRU (Cilium does not delete them either): a datagram's fragments share nothing
 * the next datagram could misuse but the IP id, which the sender only reuses after 65,536 datagrams.
 * IPv6 fragments are refused by the parser (DROP_FRAG_NOSUPPORT, core/packet.ts rule 4).
 */
import { read8, read16, write8, write16 } from "./env";
import { read16be, write16be } from "./bytes";
import { stackAlloc } from "./alloc";
import { mapLookup, mapUpdate } from "./maps";
import { Pkt, pktCopyOut } from "./pkt";
import { MapId, PACKET_INFO_FLAGS, PACKET_INFO_L3_OFF, PACKET_INFO_NEXTHDR, PACKET_INFO_SPORT, PACKET_INFO_DPORT,
  PACKET_INFO_ICMP_TYPE, PACKET_INFO_ICMP_CODE, FRAG_ID_SIZE, FRAG_ID_DADDR_BE, FRAG_ID_SADDR_BE, FRAG_ID_ID_BE,
  FRAG_ID_PROTO, FRAG_L4_PORTS_SIZE, FRAG_L4_PORTS_SPORT_BE, FRAG_L4_PORTS_DPORT_BE, FRAG_L4_PORTS_ICMP_TYPE,
  FRAG_L4_PORTS_ICMP_CODE } from "./gen/layout";
import { BPF_ANY, PKT_F_FRAGMENT, PKT_F_NO_L4 } from "./constants";
import { DROP_FRAG_NOT_FOUND } from "./drop-reasons";

/**
 * Rules F1–F3 for the parsed IPv4 packet `info`. Returns 0 (the packet goes on, with its ports) or
 * DROP_FRAG_NOT_FOUND.
 */
export function fragHandle(pkt: Pkt, info: usize): u32 {
  const flags = read8(info + PACKET_INFO_FLAGS);
  // F1.
  if ((flags & PKT_F_FRAGMENT) == 0) return 0;
  const l3Off = read16(info + PACKET_INFO_L3_OFF);
  const key = stackAlloc(FRAG_ID_SIZE);
  // Addresses and id straight from the header (network order, as Cilium's key holds them).
  pktCopyOut(pkt, l3Off + 16, key + FRAG_ID_DADDR_BE, 4);
  pktCopyOut(pkt, l3Off + 12, key + FRAG_ID_SADDR_BE, 4);
  pktCopyOut(pkt, l3Off + 4, key + FRAG_ID_ID_BE, 2);
  write8(key + FRAG_ID_PROTO, read8(info + PACKET_INFO_NEXTHDR));
  // F3.
  if ((flags & PKT_F_NO_L4) != 0) {
    const v = mapLookup(MapId.FragDatagrams, key);
    if (v == 0) return DROP_FRAG_NOT_FOUND;
    write16(info + PACKET_INFO_SPORT, read16be(v + FRAG_L4_PORTS_SPORT_BE));
    write16(info + PACKET_INFO_DPORT, read16be(v + FRAG_L4_PORTS_DPORT_BE));
    write8(info + PACKET_INFO_ICMP_TYPE, read8(v + FRAG_L4_PORTS_ICMP_TYPE));
    write8(info + PACKET_INFO_ICMP_CODE, read8(v + FRAG_L4_PORTS_ICMP_CODE));
    return 0;
  }
  // F2.
  const val = stackAlloc(FRAG_L4_PORTS_SIZE);
  write16be(val + FRAG_L4_PORTS_SPORT_BE, read16(info + PACKET_INFO_SPORT));
  write16be(val + FRAG_L4_PORTS_DPORT_BE, read16(info + PACKET_INFO_DPORT));
  write8(val + FRAG_L4_PORTS_ICMP_TYPE, read8(info + PACKET_INFO_ICMP_TYPE));
  write8(val + FRAG_L4_PORTS_ICMP_CODE, read8(info + PACKET_INFO_ICMP_CODE));
  mapUpdate(MapId.FragDatagrams, key, val, BPF_ANY);
  return 0;
}
