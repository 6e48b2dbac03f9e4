/*
 * from-endpoint: traffic leaving a pod (Cilium bpf_lxc.c cil_from_container). Attach at tc ingress of the
 * pod's host-side veth. Everything it does is core's fromEndpoint (core/pipeline.ts), generated into
 * bpf/gen/core.h.
 */
#include "gen/core.h"
#include "include/ciliate_prog.h"
#ifdef CILIATE_CORE_HAS_PIPELINE
#include "include/ciliate_proxy.h"
#endif

SEC("tc")
int from_endpoint(struct __sk_buff *ctx)
{
#ifdef CILIATE_CORE_HAS_PIPELINE
	/* A packet to-endpoint sent here for its proxy: finish the socket assignment (include/ciliate_proxy.h). */
	if ((ctx->mark & CILIATE_MARK_MAGIC_MASK) == CILIATE_MARK_MAGIC_TO_PROXY)
		return ciliate_proxy_reenter(ctx);
	return ciliate_tc_action(ctx, ciliate_from_endpoint(ctx, ciliate_now()), true);
#else
	/* core/pipeline.ts was not translated (see `npm run gen` warnings): fail closed. */
	return TC_ACT_SHOT;
#endif
}

#ifndef CILIATE_ONE_OBJECT
char LICENSE[] SEC("license") = "Dual BSD/GPL";
#endif
