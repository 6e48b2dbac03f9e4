/*
 * from-host: what the node's stack routes into the tunnel device — the node's own connections, its L7
 * proxy's upstream connections and NodePort flows forwarded to a backend on another node — at the tunnel
 * device's tc egress (Cilium bpf_host.c cil_from_host, which encapsulates such traffic towards the
 * destination's node). Everything it decides is core's fromHost (core/pipeline.ts), generated into
 * bpf/gen/core.h: the tunnel key, or a drop.
 *
 * What the wrapper adds: the packet is already on the tunnel device, so an encapsulation verdict
 * (CTX_ACT_TUNNEL) lets it continue to the device, which builds the outer headers from the key just set;
 * attached anywhere else it is redirected to the tunnel device (include/ciliate_tunnel.h). A packet core
 * drops is shot: the device never sends a packet without a key (it would drop it unreported).
 */
#include "gen/core.h"
#include "include/ciliate_prog.h"
#ifdef CILIATE_CORE_HAS_PIPELINE
#include "include/ciliate_proxy.h"
#endif

#ifdef CILIATE_CORE_HAS_PIPELINE
/* The tc action for core's verdict (also the test harness's, bpf/programs/test_harness.bpf.c). */
static __always_inline int ciliate_from_host_action(struct __sk_buff *ctx, __u32 verdict)
{
	__u32 zero = 0;
	struct config_value *cfg;

	if (verdict == CILIATE_CTX_ACT_TUNNEL) {
		cfg = bpf_map_lookup_elem(&ciliate_config_v2, &zero);
		if (cfg && cfg->tunnel_ifindex != 0 && cfg->tunnel_ifindex == ctx->ifindex)
			return TC_ACT_OK;
	}
	return ciliate_tc_action(ctx, verdict, false);
}
#endif

SEC("tc")
int from_host(struct __sk_buff *ctx)
{
#ifdef CILIATE_CORE_HAS_PIPELINE
	return ciliate_from_host_action(ctx, ciliate_from_host(ctx, ciliate_now()));
#else
	/* core/pipeline.ts was not translated (see `npm run gen` warnings): fail closed. */
	return TC_ACT_SHOT;
#endif
}

#ifndef CILIATE_ONE_OBJECT
char LICENSE[] SEC("license") = "Dual BSD/GPL";
#endif
