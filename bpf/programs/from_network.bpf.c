/*
 * from-network: traffic entering the node from outside, for NodePort/LoadBalancer/external IPs (Cilium
 * bpf_host.c cil_from_netdev). Everything it does is core's fromNetwork (core/pipeline.ts), generated into
 * bpf/gen/core.h.
 */
#include "gen/core.h"
#include "include/ciliate_prog.h"
#ifdef CILIATE_CORE_HAS_PIPELINE
#include "include/ciliate_proxy.h"
#endif

SEC("tc")
int from_network(struct __sk_buff *ctx)
{
#ifdef CILIATE_CORE_HAS_PIPELINE
	return ciliate_tc_action(ctx, ciliate_from_network(ctx, ciliate_now()), true);
#else
	/* core/pipeline.ts was not translated (see `npm run gen` warnings): fail closed. */
	return TC_ACT_SHOT;
#endif
}

#ifndef CILIATE_ONE_OBJECT
char LICENSE[] SEC("license") = "Dual BSD/GPL";
#endif
