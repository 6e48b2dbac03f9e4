/*
 * test_harness.bpf.o: ciliate.bpf.o plus three programs for BPF_PROG_TEST_RUN, which the kernel Datapath
 * engine (datapath/kernel-engine.ts) runs instead of from_endpoint, from_overlay and from_host. A test run goes
 * through no device, so the tunnel metadata a collect-metadata device would attach or consume has to be
 * set and read around the unchanged core call, with the same kernel helpers:
 *   harness_from_endpoint — from_endpoint, then the key the program set (bpf_skb_get_tunnel_key) into
 *                           slot 1 of ciliate_harness_tunnel_v1;
 *   harness_from_overlay  — sets slot 0's key as a receiving device would (remote = the sending node, as
 *                           the outer source), then from_overlay;
 *   harness_from_host     — slot 0's key (a key from_endpoint already set), then from_host, then the key it
 *                           set into slot 1.
 * Never attached by the agent.
 */
#include "ciliate.bpf.c"

/* The key as the host reads and writes it: struct tunnel_key plus "present". */
struct harness_tunnel {
	struct tunnel_key key;
	__u32 present;
};

struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__type(key, __u32);
	__type(value, struct harness_tunnel);
	__uint(max_entries, 2);
} ciliate_harness_tunnel_v1 SEC(".maps");

#ifdef CILIATE_CORE_HAS_PIPELINE
/* The key the program set, into slot 1. On a key being sent the kernel reports the outer destination as
 * local_*: see bpf_skb_get_tunnel_key, which reads addresses from the receiver's point of view. */
static __always_inline void harness_read_key_out(struct __sk_buff *ctx)
{
	__u32 one = 1;
	struct harness_tunnel *out = bpf_map_lookup_elem(&ciliate_harness_tunnel_v1, &one);
	struct bpf_tunnel_key key = {};

	if (!out)
		return;
	if (bpf_skb_get_tunnel_key(ctx, &key, sizeof(key), 0) == 0) {
		__u32 be = bpf_htonl(key.local_ipv4);

		__builtin_memcpy(out->key.remote, &be, 4);
		out->key.family = CILIATE_FAMILY_IPV4;
		out->key.tunnel_id = key.tunnel_id;
		out->present = 1;
	} else if (bpf_skb_get_tunnel_key(ctx, &key, sizeof(key), BPF_F_TUNINFO_IPV6) == 0) {
		__builtin_memcpy(out->key.remote, key.local_ipv6, 16);
		out->key.family = CILIATE_FAMILY_IPV6;
		out->key.tunnel_id = key.tunnel_id;
		out->present = 1;
	}
}

/* Sets slot 0's key on the packet, as a receiving device would (remote = the sending node, as the outer
 * source); 0, or -1 when the kernel refused it. */
static __always_inline int harness_set_key_in(struct __sk_buff *ctx)
{
	__u32 zero = 0;
	struct harness_tunnel *in = bpf_map_lookup_elem(&ciliate_harness_tunnel_v1, &zero);
	struct bpf_tunnel_key key = {};
	__u64 flags = 0;

	if (!in || !in->present)
		return 0;
	key.tunnel_id = in->key.tunnel_id;
	key.tunnel_ttl = CILIATE_TUNNEL_TTL;
	/* What a receiving device records: the sender as source (local_* when setting). */
	if (in->key.family == CILIATE_FAMILY_IPV6) {
		__builtin_memcpy(key.local_ipv6, in->key.remote, 16);
		flags = BPF_F_TUNINFO_IPV6;
	} else {
		__u32 be;

		__builtin_memcpy(&be, in->key.remote, 4);
		key.local_ipv4 = bpf_ntohl(be);
	}
	return bpf_skb_set_tunnel_key(ctx, &key, sizeof(key), flags) < 0 ? -1 : 0;
}

SEC("tc")
int harness_from_endpoint(struct __sk_buff *ctx)
{
	__u32 verdict = ciliate_from_endpoint(ctx, ciliate_now());

	harness_read_key_out(ctx);
	return ciliate_tc_action(ctx, verdict, true);
}

SEC("tc")
int harness_from_overlay(struct __sk_buff *ctx)
{
	if (harness_set_key_in(ctx) < 0)
		return TC_ACT_SHOT;
	return ciliate_tc_action(ctx, ciliate_from_overlay(ctx, ciliate_now()), true);
}

/* from_host: slot 0's key, when present, is the one from_endpoint already set (the packet passes); the key
 * from_host sets is read into slot 1 only when it encapsulated, so a key that was there before is never
 * reported as its own. */
SEC("tc")
int harness_from_host(struct __sk_buff *ctx)
{
	__u32 verdict;

	if (harness_set_key_in(ctx) < 0)
		return TC_ACT_SHOT;
	verdict = ciliate_from_host(ctx, ciliate_now());
	if (verdict == CILIATE_CTX_ACT_TUNNEL)
		harness_read_key_out(ctx);
	return ciliate_from_host_action(ctx, verdict);
}
#endif
