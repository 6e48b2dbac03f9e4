/*
 * from-overlay: traffic from pods on other nodes, at tc ingress of the node's collect-metadata tunnel
 * device after it stripped the outer headers (Cilium bpf_overlay.c cil_from_overlay). The source identity
 * is the tunnel id the sender set; everything is core's fromOverlay (core/pipeline.ts), generated into
 * bpf/gen/core.h.
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
	return ciliate_tc_action(ctx, ciliate_from_overlay(ctx, ciliate_now()), true);
#else
	/* core/pipeline.ts was not translated (see `npm run gen` warnings): fail closed. */
	return TC_ACT_SHOT;
#endif
}

#ifndef CILIATE_ONE_OBJECT
char LICENSE[] SEC("license") = "Dual BSD/GPL";
#endif
