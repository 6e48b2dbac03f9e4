/*
 * to-network: traffic leaving the node through its device, at the device's tc egress (Cilium bpf_host.c
 * cil_to_netdev). It masquerades pod traffic leaving the cluster to the node's address (BPF SNAT,
 * core/nat.ts M1–M6) and leaves everything else alone; the replies are restored by from_network at the
 * same device's ingress. Everything it does is core's toNetwork (core/pipeline.ts), generated into
 * bpf/gen/core.h.
 */
#include "gen/core.h"
#include "include/ciliate_prog.h"
#ifdef CILIATE_CORE_HAS_PIPELINE
#include "include/ciliate_proxy.h"
#endif

SEC("tc")
int to_network(struct __sk_buff *ctx)
{
#ifdef CILIATE_CORE_HAS_PIPELINE
	return ciliate_tc_action(ctx, ciliate_to_network(ctx, ciliate_now()), false);
#else
	/* core/pipeline.ts was not translated (see `npm run gen` warnings): the node's own traffic must
	 * still leave, and nothing is masqueraded. */
	return TC_ACT_OK;
#endif
}

#ifndef CILIATE_ONE_OBJECT
char LICENSE[] SEC("license") = "Dual BSD/GPL";
#endif
