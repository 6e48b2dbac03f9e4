/*
 * from-network at XDP: the same core fromNetwork as the tc program (bpf/programs/from_network.bpf.c), run
 * at the driver's receive hook for NodePort / LoadBalancer / external-IP traffic, as Cilium's
 * loadBalancer.acceleration=native (bpf/bpf_xdp.c, nodeport_lb4 at XDP). The packet seams are core's for
 * struct xdp_md (include/ciliate_pkt.h, CILIATE_PKT_XDP); the maps are the tc object's, shared by pinning.
 *
 * Verdicts (core's CTX_ACT_* to XDP actions):
 *   CTX_ACT_DROP     → XDP_DROP: a drop costs no skb at all, the point of the acceleration.
 *   CTX_ACT_OK       → XDP_TX when the (possibly translated) destination is routed back out of the device
 *                      the frame arrived on (a NodePort flow to a remote backend, or its reply to the
 *                      client): the kernel's FIB gives the next hop's MAC addresses (bpf_fib_lookup, as
 *                      Cilium's fib_redirect). Otherwise XDP_PASS: to the node's stack (a local backend, a
 *                      packet that is not for a service, or a next hop the kernel has not resolved yet);
 *                      the tc program on the same device then finds the packet already translated and
 *                      tracked, and leaves it as it is.
 *   anything else    → XDP_DROP (core never redirects to a proxy from the network).
 */
#define CILIATE_PKT_XDP 1
#include <linux/bpf.h>
#include <linux/if_ether.h>
#include "gen/core.h"
#include "include/ciliate_prog.h"

#ifndef AF_INET
#define AF_INET 2
#endif
#ifndef AF_INET6
#define AF_INET6 10
#endif

/* XDP_TX when the FIB sends the frame back out of its own device, with the next hop's MACs written in. */
static __always_inline int ciliate_xdp_forward(struct xdp_md *ctx)
{
	struct bpf_fib_lookup fib = {};
	__u8 *data = (__u8 *)(long)ctx->data;
	__u8 *end = (__u8 *)(long)ctx->data_end;
	struct ethhdr *eth = (struct ethhdr *)data;
	long rc;

	if (data + sizeof(*eth) > end)
		return XDP_PASS;
	if (eth->h_proto == bpf_htons(ETH_P_IP)) {
		if (data + sizeof(*eth) + 20 > end)
			return XDP_PASS;
		fib.family = AF_INET;
		fib.l4_protocol = data[sizeof(*eth) + 9];
		__builtin_memcpy(&fib.ipv4_src, data + sizeof(*eth) + 12, 4);
		__builtin_memcpy(&fib.ipv4_dst, data + sizeof(*eth) + 16, 4);
		fib.tot_len = (__u16)(end - data - sizeof(*eth));
	} else if (eth->h_proto == bpf_htons(ETH_P_IPV6)) {
		if (data + sizeof(*eth) + 40 > end)
			return XDP_PASS;
		fib.family = AF_INET6;
		fib.l4_protocol = data[sizeof(*eth) + 6];
		__builtin_memcpy(fib.ipv6_src, data + sizeof(*eth) + 8, 16);
		__builtin_memcpy(fib.ipv6_dst, data + sizeof(*eth) + 24, 16);
		fib.tot_len = (__u16)(end - data - sizeof(*eth));
	} else {
		return XDP_PASS;
	}
	fib.ifindex = ctx->ingress_ifindex;
	rc = bpf_fib_lookup(ctx, &fib, sizeof(fib), 0);
	if (rc != BPF_FIB_LKUP_RET_SUCCESS || fib.ifindex != ctx->ingress_ifindex)
		return XDP_PASS;
	data = (__u8 *)(long)ctx->data;
	end = (__u8 *)(long)ctx->data_end;
	eth = (struct ethhdr *)data;
	if (data + sizeof(*eth) > end)
		return XDP_PASS;
	__builtin_memcpy(eth->h_dest, fib.dmac, ETH_ALEN);
	__builtin_memcpy(eth->h_source, fib.smac, ETH_ALEN);
	return XDP_TX;
}

static __always_inline int ciliate_xdp_action(struct xdp_md *ctx, __u32 verdict)
{
	if (verdict == CILIATE_CTX_ACT_OK)
		return ciliate_xdp_forward(ctx);
	return XDP_DROP;
}

SEC("xdp")
int from_network_xdp(struct xdp_md *ctx)
{
#ifdef CILIATE_CORE_HAS_PIPELINE
	return ciliate_xdp_action(ctx, ciliate_from_network(ctx, ciliate_now()));
#else
	/* core/pipeline.ts was not translated (see `npm run gen` warnings): fail closed. */
	return XDP_DROP;
#endif
}

char LICENSE[] SEC("license") = "Dual BSD/GPL";
