/*
 * The overlay: packets to pods on other nodes leave through the node's collect-metadata tunnel device
 * (VXLAN or Geneve, one code path) with the source's security identity in the tunnel id, and packets
 * that arrive through it are judged on the identity they carry — Cilium's tunnel routing mode
 * (bpf/lib/encap.h __encap_with_nodeid / encap_and_redirect_with_nodeid, bpf/bpf_overlay.c
 * cil_from_overlay, get_id_from_tunnel_id in bpf/lib/overlay.h).
 *
 * Rules (numbered once, repeated where implemented):
 *   O1. Encapsulate only when the node runs an overlay (ConfigValue.tunnelProtocol != TUNNEL_PROTO_NONE)
 *       and the destination's ipcache entry names a tunnel endpoint (IPCACHE_F_HAS_TUNNEL_EP) without
 *       IPCACHE_F_SKIP_TUNNEL; everything else is forwarded unencapsulated (local pods, the node's stack,
 *       the world).
 *   O2. The tunnel id is the source's security identity. Identities that do not fit the 24-bit VNI are
 *       refused (DROP_INVALID_IDENTITY): a truncated identity would be another identity's.
 *   O3. An entry that claims a tunnel endpoint but holds none (all-zero address) is a control-plane bug:
 *       DROP_NO_TUNNEL_ENDPOINT, never a packet sent to 0.0.0.0.
 *   O4. On arrival the identity is the tunnel id. A packet without tunnel metadata is DROP_NO_TUNNEL_KEY;
 *       a tunnel id of 0 (no identity) or reserved:host (a node never sends its host identity over the
 *       tunnel; Cilium bpf_overlay.c drops it as spoofed) is DROP_INVALID_IDENTITY.
 *   O5. The node's own packets (source identity reserved:host) are sent with reserved:remote-node as tunnel
 *       id: to the receiving node the sender is another node (Cilium bpf/lib/encap.h maps HOST_ID to
 *       LOCAL_NODE_ID, which is REMOTE_NODE_ID), and O4 there refuses reserved:host.
 *   O6. What the node's stack routes into the tunnel device (pipeline.ts fromHost) must leave encapsulated:
 *       a packet that already carries a key (fromEndpoint set it and redirected the packet) passes; any
 *       other packet whose destination names no tunnel endpoint (O1 does not apply) is
 *       DROP_NO_TUNNEL_ENDPOINT, never sent unencapsulated.
 */
import { CONFIG_VALUE_TUNNEL_PROTOCOL, IPCACHE_VALUE_FLAGS, IPCACHE_VALUE_TUNNEL_ENDPOINT, TUNNEL_KEY_FAMILY,
  TUNNEL_KEY_REMOTE, TUNNEL_KEY_SIZE, TUNNEL_KEY_TUNNEL_ID, TRACE_RECORD_TUNNEL_FAMILY, TRACE_RECORD_TUNNEL_ID,
  TRACE_RECORD_TUNNEL_PEER } from "./gen/layout";
import { FAMILY_IPV4, FAMILY_IPV6, ID_HOST, ID_REMOTE_NODE, IPCACHE_F_HAS_TUNNEL_EP, IPCACHE_F_IPV6_TUNNEL_EP,
  IPCACHE_F_SKIP_TUNNEL, TUNNEL_ID_MAX, TUNNEL_PROTO_NONE } from "./constants";
import { DROP_INVALID_IDENTITY, DROP_NO_TUNNEL_ENDPOINT, DROP_NO_TUNNEL_KEY, DROP_WRITE_ERROR } from "./drop-reasons";
import { memCopy, read8, read32, write8, write32 } from "./env";
import { stackAlloc } from "./alloc";
import { Pkt } from "./pkt";
import { ipcacheLookup } from "./ipcache";
import { tunnelKeyGet, tunnelKeySet } from "./tunnel-key";

/** Copies a tunnel key into the trace record's tunnel fields (no-op without a record). */
function traceTunnel(tr: usize, key: usize): void {
  if (tr == 0) return;
  write32(tr + TRACE_RECORD_TUNNEL_ID, read32(key + TUNNEL_KEY_TUNNEL_ID));
  memCopy(tr + TRACE_RECORD_TUNNEL_PEER, key + TUNNEL_KEY_REMOTE, 16);
  write8(tr + TRACE_RECORD_TUNNEL_FAMILY, read8(key + TUNNEL_KEY_FAMILY));
}

/**
 * Encapsulates a packet leaving a local pod towards `daddr` when the overlay applies (O1–O3).
 * `cfg` is the ConfigValue (non-zero), `srcId` the sender's identity, `tr` the trace record or 0.
 * Outcomes:
 *   - 0: not for the overlay (O1); the packet is forwarded as it is;
 *   - 1: the tunnel key {destination node, srcId} is set (reserved:host sent as remote-node, O5); the
 *     caller redirects to the tunnel device;
 *   - -DROP_INVALID_IDENTITY: srcId does not fit the VNI (O2);
 *   - -DROP_NO_TUNNEL_ENDPOINT: the entry names no usable endpoint (O3);
 *   - -DROP_WRITE_ERROR: the kernel refused the key.
 */
export function overlayEncap(pkt: Pkt, cfg: usize, tr: usize, daddr: usize, family: u32, srcId: u32): i32 {
  if (read8(cfg + CONFIG_VALUE_TUNNEL_PROTOCOL) == TUNNEL_PROTO_NONE) return 0;
  const info = ipcacheLookup(daddr, family);
  if (info == 0) return 0;
  const flags = read8(info + IPCACHE_VALUE_FLAGS);
  if ((flags & IPCACHE_F_HAS_TUNNEL_EP) == 0 || (flags & IPCACHE_F_SKIP_TUNNEL) != 0) return 0;
  // O2.
  if (srcId > TUNNEL_ID_MAX) return -(<i32>DROP_INVALID_IDENTITY);
  const key = stackAlloc(TUNNEL_KEY_SIZE);
  const ep = info + IPCACHE_VALUE_TUNNEL_ENDPOINT;
  const epFamily = (flags & IPCACHE_F_IPV6_TUNNEL_EP) != 0 ? FAMILY_IPV6 : FAMILY_IPV4;
  // O3: an IPv4 endpoint is its first 4 bytes; an IPv6 one all 16.
  let any: u32 = read32(ep);
  if (epFamily == FAMILY_IPV6) any = any | read32(ep + 4) | read32(ep + 8) | read32(ep + 12);
  if (any == 0) return -(<i32>DROP_NO_TUNNEL_ENDPOINT);
  if (epFamily == FAMILY_IPV6) memCopy(key + TUNNEL_KEY_REMOTE, ep, 16);
  else memCopy(key + TUNNEL_KEY_REMOTE, ep, 4);
  // O5.
  write32(key + TUNNEL_KEY_TUNNEL_ID, srcId == ID_HOST ? ID_REMOTE_NODE : srcId);
  write8(key + TUNNEL_KEY_FAMILY, epFamily);
  if (tunnelKeySet(pkt, key) < 0) return -(<i32>DROP_WRITE_ERROR);
  traceTunnel(tr, key);
  return 1;
}

/**
 * The source identity of a packet that arrived through the tunnel device (O4), recorded in the trace.
 * Outcomes:
 *   - the identity (> 0, never ID_HOST);
 *   - -DROP_NO_TUNNEL_KEY: the packet carries no tunnel metadata;
 *   - -DROP_INVALID_IDENTITY: the tunnel id is 0 or reserved:host.
 */
export function overlayDecapIdentity(pkt: Pkt, tr: usize): i32 {
  const key = stackAlloc(TUNNEL_KEY_SIZE);
  if (tunnelKeyGet(pkt, key) < 0) return -(<i32>DROP_NO_TUNNEL_KEY);
  traceTunnel(tr, key);
  const id = read32(key + TUNNEL_KEY_TUNNEL_ID) & TUNNEL_ID_MAX;
  if (id == 0 || id == ID_HOST) return -(<i32>DROP_INVALID_IDENTITY);
  return <i32>id;
}

/**
 * Whether the packet already carries a tunnel key (O6): fromEndpoint encapsulated it and redirected it to
 * the tunnel device, whose egress fromHost also sees. Outcomes: true / false.
 */
export function overlayKeyPresent(pkt: Pkt): bool {
  const key = stackAlloc(TUNNEL_KEY_SIZE);
  return tunnelKeyGet(pkt, key) == 0;
}
