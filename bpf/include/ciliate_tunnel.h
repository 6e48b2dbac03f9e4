/*
 * The tunnel seams of core/tunnel-key.ts on a collect-metadata (`external`) VXLAN or Geneve device, as
 * Cilium's bpf/lib/encap.h (ctx_set_tunnel_key) and bpf/bpf_overlay.c (ctx_get_tunnel_key) use them:
 * the device builds and strips the outer headers; the program only sets or reads the key. The tunnel id
 * is the VNI (24 bits on the wire), which carries the source security identity.
 */
#pragma once

#include <linux/types.h>
#include <linux/bpf.h>
#include <linux/pkt_cls.h>
#include <bpf/bpf_helpers.h>
#include <bpf/bpf_endian.h>
#include "gen/layout.h"
#include "gen/constants.h"

#ifdef CILIATE_PKT_XDP
/* At XDP there is no tunnel metadata (the from-network XDP program never reaches the overlay): both seams
 * fail with -EOPNOTSUPP, so core drops the packet with its reason instead of sending it unencapsulated. */
static __always_inline __s32 ciliate_tunnel_key_set(struct xdp_md *ctx, __u8 *p)
{
	(void)ctx;
	(void)p;
	return -95;
}

static __always_inline __s32 ciliate_tunnel_key_get(struct xdp_md *ctx, __u8 *p)
{
	(void)ctx;
	(void)p;
	return -95;
}
#else
/* core/tunnel-key.ts tunnelKeySet: 0 or the helper's negative errno. */
static __always_inline __s32 ciliate_tunnel_key_set(struct __sk_buff *ctx, __u8 *p)
{
	struct tunnel_key *k = (struct tunnel_key *)p;
	struct bpf_tunnel_key key = {};
	/* As Cilium: no outer UDP checksum (BPF_F_ZERO_CSUM_TX), the VNI and TTL of the key. */
	__u64 flags = BPF_F_ZERO_CSUM_TX;

	key.tunnel_id = k->tunnel_id;
	key.tunnel_ttl = CILIATE_TUNNEL_TTL;
	if (k->family == CILIATE_FAMILY_IPV6) {
		__builtin_memcpy(key.remote_ipv6, k->remote, 16);
		flags |= BPF_F_TUNINFO_IPV6;
	} else if (k->family == CILIATE_FAMILY_IPV4) {
		__u32 be;

		__builtin_memcpy(&be, k->remote, 4);
		key.remote_ipv4 = bpf_ntohl(be);
	} else {
		return -22;
	}
	return (__s32)bpf_skb_set_tunnel_key(ctx, &key, sizeof(key), flags);
}

/* core/tunnel-key.ts tunnelKeyGet: the key the packet arrived with (remote = the sender's endpoint), 0, or
 * a negative errno when it has none. An IPv4 read of an IPv6 tunnel fails with -EPROTO/-EINVAL, so the
 * IPv6 form is tried second. */
static __always_inline __s32 ciliate_tunnel_key_get(struct __sk_buff *ctx, __u8 *p)
{
	struct tunnel_key *k = (struct tunnel_key *)p;
	struct bpf_tunnel_key key = {};
	long err;

	err = bpf_skb_get_tunnel_key(ctx, &key, sizeof(key), 0);
	if (err == 0) {
		__u32 be = bpf_htonl(key.remote_ipv4);

		__builtin_memset(k->remote, 0, 16);
		__builtin_memcpy(k->remote, &be, 4);
		k->family = CILIATE_FAMILY_IPV4;
	} else {
		err = bpf_skb_get_tunnel_key(ctx, &key, sizeof(key), BPF_F_TUNINFO_IPV6);
		if (err < 0)
			return (__s32)err;
		__builtin_memcpy(k->remote, key.remote_ipv6, 16);
		k->family = CILIATE_FAMILY_IPV6;
	}
	k->tunnel_id = key.tunnel_id;
	return 0;
}

#endif /* CILIATE_PKT_XDP */

/* CTX_ACT_TUNNEL: to the tunnel device named in the configuration (Cilium: ctx_redirect(ENCAP_IFINDEX)).
 * Without one the packet is dropped, never sent unencapsulated. */
static __always_inline int ciliate_tunnel_redirect(void)
{
	__u32 zero = 0;
	struct config_value *cfg = bpf_map_lookup_elem(&ciliate_config_v2, &zero);

	if (!cfg || cfg->tunnel_ifindex == 0)
		return TC_ACT_SHOT;
	return bpf_redirect(cfg->tunnel_ifindex, 0);
}
