/*
 * The tunnel metadata of a packet on a collect-metadata (`external`) VXLAN or Geneve device: the seams
 * through which core sets the key a packet is encapsulated with and reads the key a packet was
 * decapsulated with. In C they are bpf_skb_set_tunnel_key / bpf_skb_get_tunnel_key
 * (bpf/include/ciliate_tunnel.h), as Cilium's bpf/lib/encap.h and bpf/bpf_overlay.c use them; the device
 * builds and strips the outer headers, so VXLAN and Geneve share this one path.
 *
 * WASM/JS: the host passes the received key, and reads back the key that was set, in the packet
 * descriptor that core/runtime/abi.ts prepares (PKT_DESC_* below), next to {data, len}.
 */
import { TUNNEL_KEY_SIZE } from "./gen/layout";
import { memCopy, read32, write32 } from "./env";
import { Pkt } from "./pkt";

/** Packet descriptor fields after {data, len} (WASM/JS only): a flag and a TunnelKey for each way. */
export const PKT_DESC_TUNNEL_IN_SET: u32 = 8;
export const PKT_DESC_TUNNEL_OUT_SET: u32 = 12;
export const PKT_DESC_TUNNEL_IN: u32 = 16;
export const PKT_DESC_TUNNEL_OUT: u32 = 40;
export const PKT_DESC_SIZE: u32 = 64;

/**
 * Sets the tunnel key (TUNNEL_KEY_* at `key`: remote endpoint, family, tunnel id) the tunnel device will
 * encapsulate the packet with. Outcomes: 0, or a negative errno (C: the helper's error, e.g. -EINVAL for an
 * unknown family). @seam ciliate_tunnel_key_set
 */
export function tunnelKeySet(pkt: Pkt, key: usize): i32 {
  memCopy(pkt + PKT_DESC_TUNNEL_OUT, key, TUNNEL_KEY_SIZE);
  write32(pkt + PKT_DESC_TUNNEL_OUT_SET, 1);
  return 0;
}

/**
 * Reads the key the packet arrived with into `key` (remote = the sending node's tunnel endpoint).
 * Outcomes: 0, or a negative errno when the packet carries no tunnel metadata (C: it did not come from a
 * collect-metadata device). @seam ciliate_tunnel_key_get
 */
export function tunnelKeyGet(pkt: Pkt, key: usize): i32 {
  if (read32(pkt + PKT_DESC_TUNNEL_IN_SET) == 0) return -2;
  memCopy(key, pkt + PKT_DESC_TUNNEL_IN, TUNNEL_KEY_SIZE);
  return 0;
}
