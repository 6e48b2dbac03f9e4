/*
 * What the thin attach-point programs (bpf/programs/) share: the clock and the verdict conversion.
 *
 * Time: core takes `now` in seconds. A program uses bpf_ktime_get_ns() / 1e9, unless the host has written
 * a non-zero override into entry 0 of the per-object array map `ciliate_now_v1`; that is how the
 * differential tests and the kernel Datapath engine (BPF_PROG_TEST_RUN) run a packet at a given virtual
 * time. The map is not pinned: each loaded object has its own clock, so tests never change the clock of an
 * agent's programs.
 *
 * Verdicts: core returns CTX_ACT_* (core/constants.ts); tc wants TC_ACT_* (ciliate_tc_action in
 * include/ciliate_proxy.h):
 *   CTX_ACT_OK       → TC_ACT_OK
 *   CTX_ACT_DROP     → TC_ACT_SHOT
 *   CTX_ACT_REDIRECT → to the L7 proxy's socket (bpf_sk_assign at tc ingress; at tc egress a redirect to
 *                      the device's own ingress, which finishes the assignment), or TC_ACT_SHOT with a
 *                      proxy drop reason when no proxy socket takes it. Never TC_ACT_OK un-inspected.
 *   anything else    → TC_ACT_SHOT
 */
#pragma once

#include <linux/types.h>
#include <linux/bpf.h>
#include <linux/pkt_cls.h>
#include <bpf/bpf_helpers.h>
#include "gen/constants.h"

struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__type(key, __u32);
	__type(value, __u32);
	__uint(max_entries, 1);
} ciliate_now_v1 SEC(".maps");

/* Seconds for core: the host's override when set, else the monotonic clock. */
static __always_inline __u32 ciliate_now(void)
{
	__u32 zero = 0;
	__u32 *override = bpf_map_lookup_elem(&ciliate_now_v1, &zero);

	if (override && *override != 0)
		return *override;
	return (__u32)(bpf_ktime_get_ns() / 1000000000ULL);
}
