/*
 * from-endpoint: traffic leaving a pod (Cilium bpf_lxc.c cil_from_container). Attach at tc ingress of the
 * pod's host-side veth. Everything it does is core's fromEndpoint (core/pipeline.ts), generated into
 * bpf/gen/core.h.
 */
#include "gen/core.h"
#include "include/ciliate_prog.h"

SEC("tc")
int from_endpoint(struct __sk_buff *ctx)
{
#ifdef CILIATE_CORE_HAS_PIPELINE
	return ciliate_tc_verdict(ciliate_from_endpoint(ctx, ciliate_now()));
#else
	/* core/pipeline.ts was not translated (see `npm run gen` warnings): fail closed. */
	return TC_ACT_SHOT;
#endif
}

#ifndef CILIATE_ONE_OBJECT
char LICENSE[] SEC("license") = "Dual BSD/GPL";
#endif
