/*
 * to-endpoint: traffic arriving at a pod (Cilium bpf_lxc.c cil_to_container). The source identity comes
 * from skb->mark when the sender's node set it (0 = unknown: core looks the source address up in the
 * ipcache). Everything else is core's toEndpoint (core/pipeline.ts), generated into bpf/gen/core.h.
 * A packet from_overlay already delivered (MARK_MAGIC_OVERLAY: judged on the identity in the tunnel key,
 * tracked and reverse-NATed there) passes unchanged, as Cilium enforces a packet from the overlay once.
 */
#include "gen/core.h"
#include "include/ciliate_prog.h"
#ifdef CILIATE_CORE_HAS_PIPELINE
#include "include/ciliate_proxy.h"
#endif

SEC("tc")
int to_endpoint(struct __sk_buff *ctx)
{
#ifdef CILIATE_CORE_HAS_PIPELINE
	if ((ctx->mark & CILIATE_MARK_MAGIC_MASK) == CILIATE_MARK_MAGIC_OVERLAY) {
		ctx->mark = 0;
		return TC_ACT_OK;
	}
	return ciliate_tc_action(ctx, ciliate_to_endpoint(ctx, ctx->mark, ciliate_now()), false);
#else
	/* core/pipeline.ts was not translated (see `npm run gen` warnings): fail closed. */
	return TC_ACT_SHOT;
#endif
}

#ifndef CILIATE_ONE_OBJECT
char LICENSE[] SEC("license") = "Dual BSD/GPL";
#endif
