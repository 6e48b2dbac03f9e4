/*
 * from-overlay: traffic from pods on other nodes, at tc ingress of the node's collect-metadata tunnel
 * device after it stripped the outer headers (Cilium bpf_overlay.c cil_from_overlay). The source identity
 * is the tunnel id the sender set; everything is core's fromOverlay (core/pipeline.ts), generated into
 * bpf/gen/core.h.
 *
 * What the wrapper adds for the stack, which core does not model: a packet core lets through goes up the
 * node's stack to the pod's veth. The device classified the inner frame by its destination MAC — the
 * sending node's veth — as PACKET_OTHERHOST, which the IP layer drops, so it becomes PACKET_HOST (Cilium's
 * bpf_overlay.c / lib/l3.h do the same, ctx_change_type(ctx, PACKET_HOST)). And it is marked
 * MARK_MAGIC_OVERLAY, so that to_endpoint at the pod's veth passes it as judged here (on the identity in
 * the tunnel key) rather than judging it again.
 */
#include "gen/core.h"
#include "include/ciliate_prog.h"
#ifdef CILIATE_CORE_HAS_PIPELINE
#include "include/ciliate_proxy.h"
#endif

SEC("tc")
int from_overlay(struct __sk_buff *ctx)
{
#ifdef CILIATE_CORE_HAS_PIPELINE
	__u32 verdict = ciliate_from_overlay(ctx, ciliate_now());

	if (verdict == CILIATE_CTX_ACT_OK || verdict == CILIATE_CTX_ACT_REDIRECT)
		bpf_skb_change_type(ctx, CILIATE_PACKET_HOST);
	if (verdict == CILIATE_CTX_ACT_OK)
		ctx->mark = CILIATE_MARK_MAGIC_OVERLAY;
	return ciliate_tc_action(ctx, verdict, true);
#else
	/* core/pipeline.ts was not translated (see `npm run gen` warnings): fail closed. */
	return TC_ACT_SHOT;
#endif
}

#ifndef CILIATE_ONE_OBJECT
char LICENSE[] SEC("license") = "Dual BSD/GPL";
#endif
