/*
 * Delivery of a CTX_ACT_REDIRECT verdict to the node's L7 proxy: the part of a redirect that needs kernel
 * sockets, so it lives at the program level and not in core. Core has already checked that the proxy
 * port is in ProxyListeners (the host's statement that it listens) and counted the packet; here the kernel
 * checks that the socket really exists — the agent may have died without clearing the map — and hands the
 * packet to it. Nothing here ever returns TC_ACT_OK for a packet that no proxy socket took: a failure is
 * TC_ACT_SHOT with DROP_PROXY_LOOKUP_FAILED (no socket) or DROP_PROXY_SET_FAILED (the kernel refused the
 * assignment), moved from the forwarded to the drop counters of the Metrics map and reported in the trace
 * record and the events ring buffer like any other drop.
 *
 * How (after Cilium bpf/lib/proxy.h, ctx_redirect_to_proxy4 / assign_socket, with our own marks):
 *   - The socket: first the flow's own socket (an accepted proxy connection, or for a reply the proxy's
 *     upstream connection, which is bound to the client's address), skipping listeners and TIME_WAIT;
 *     then, for a new flow, the transparent listener on the proxy port (bound to 0.0.0.0).
 *   - At tc ingress (from-endpoint: the pod's egress, or replies leaving a server pod) the packet is
 *     assigned to the socket (bpf_sk_assign) and marked MARK_MAGIC_TO_PROXY; the node routes marked
 *     packets to its local stack (an `ip rule fwmark` to a table with `local 0.0.0.0/0 dev lo`, which the
 *     agent installs), which delivers them to the assigned socket with the original addresses intact.
 *   - At tc egress (to-endpoint: the pod's ingress) bpf_sk_assign is not available, so the packet is
 *     marked and redirected to the ingress of the same host-side device, where from-endpoint sees the
 *     mark before anything else and finishes the assignment (ciliate_proxy_reenter). Pods cannot forge the
 *     mark: crossing a veth from another namespace clears skb->mark.
 *   - The loopback device (ifindex 1) is where BPF_PROG_TEST_RUN runs programs: there are no proxy
 *     sockets to deliver to, so a redirect there is dropped without touching the maps (the kernel engine
 *     reports core's verdict from the trace record, as the WASM and JS engines do).
 */
#pragma once

#include <linux/types.h>
#include <linux/bpf.h>
#include <linux/pkt_cls.h>
#include <bpf/bpf_helpers.h>
#include <bpf/bpf_endian.h>
#include "gen/constants.h"

#define CILIATE_LOOPBACK_IFINDEX 1
#define CILIATE_PACKET_HOST 0

/* The working structs of this file live in core's per-CPU scratch memory, not on the stack (the inlined
 * pipeline already uses most of the 512 bytes). Either the pipeline has finished with the scratch memory
 * when they are used (ciliate_tc_action) or it does not run at all (ciliate_proxy_reenter). */
#define CILIATE_PROXY_TUPLE_OFF 0
#define CILIATE_PROXY_INFO_OFF 64
#define CILIATE_PROXY_REC_OFF (CILIATE_PROXY_INFO_OFF + ((sizeof(struct packet_info) + 7) & ~7))
_Static_assert(CILIATE_PROXY_TUPLE_OFF + sizeof(struct bpf_sock_tuple) <= CILIATE_PROXY_INFO_OFF, "tuple slot");
_Static_assert(CILIATE_PROXY_REC_OFF + sizeof(struct trace_record) <= CILIATE_SCRATCH_SIZE, "scratch too small");

/* Moves the packet from the forwarded counter to `reason` (core counted the redirect as forwarded). The
 * Metrics map is a per-CPU array indexed by the MetricsKey read as a u32 (reason | dir << 8), so this CPU's
 * slots are the ones core just counted in, and plain adds are enough. */
static __always_inline void ciliate_proxy_count_drop(__u32 dir, __u32 len, __u32 reason)
{
	__u32 key = (dir & 0xff) << 8;
	struct metrics_value *v = bpf_map_lookup_elem(&ciliate_metrics_v2, &key);

	if (v) {
		v->packets -= 1;
		v->bytes -= len;
	}
	key = ((dir & 0xff) << 8) | (reason & 0xff);
	v = bpf_map_lookup_elem(&ciliate_metrics_v2, &key);
	if (v) {
		v->packets += 1;
		v->bytes += len;
	}
}

/* Turns the record of a redirect into the record of a drop, and emits it as a drop event. */
static __always_inline int ciliate_proxy_fail(struct trace_record *tr, __u32 reason)
{
	__u32 zero = 0;
	struct config_value *cfg = bpf_map_lookup_elem(&ciliate_config_v2, &zero);
	__u32 dir = tr->hook == CILIATE_HOOK_TO_ENDPOINT ? CILIATE_METRIC_DIR_INGRESS : CILIATE_METRIC_DIR_EGRESS;

	ciliate_proxy_count_drop(dir, tr->len, reason);
	tr->verdict = CILIATE_CTX_ACT_DROP;
	tr->drop_reason = reason;
	if (cfg && (cfg->flags & (CILIATE_CONFIG_F_EVENTS | CILIATE_CONFIG_F_EVENTS_ALL)))
		bpf_ringbuf_output(&ciliate_events_v1, tr, sizeof(*tr), 0);
	return TC_ACT_SHOT;
}

/* The tuple that finds a socket listening on 0.0.0.0 (or ::) port `proxy_port`. */
static __always_inline void ciliate_listener_tuple(struct bpf_sock_tuple *t, bool v4, __u16 proxy_port)
{
	__builtin_memset(t, 0, sizeof(*t));
	if (v4)
		t->ipv4.dport = bpf_htons(proxy_port);
	else
		t->ipv6.dport = bpf_htons(proxy_port);
}

/* TCP: sock_common lookups, so that a connection still in its handshake (a request socket) is found. */
static __always_inline struct bpf_sock *ciliate_proxy_socket_tcp(struct __sk_buff *ctx, struct bpf_sock_tuple *t, __u32 len,
								 bool v4, __u16 proxy_port)
{
	struct bpf_sock *sk = bpf_skc_lookup_tcp(ctx, t, len, BPF_F_CURRENT_NETNS, 0);

	if (sk) {
		/* A listener found by the original destination port belongs to someone else. */
		if (sk->state != BPF_TCP_LISTEN && sk->state != BPF_TCP_TIME_WAIT)
			return sk;
		bpf_sk_release(sk);
	}
	if (proxy_port == 0)
		return NULL;
	ciliate_listener_tuple(t, v4, proxy_port);
	sk = bpf_skc_lookup_tcp(ctx, t, len, BPF_F_CURRENT_NETNS, 0);
	if (sk && sk->state != BPF_TCP_LISTEN) {
		bpf_sk_release(sk);
		return NULL;
	}
	return sk;
}

static __always_inline struct bpf_sock *ciliate_proxy_socket_udp(struct __sk_buff *ctx, struct bpf_sock_tuple *t, __u32 len,
								 bool v4, __u16 proxy_port)
{
	struct bpf_sock *sk = bpf_sk_lookup_udp(ctx, t, len, BPF_F_CURRENT_NETNS, 0);

	if (sk) {
		/* Only a connected socket is the flow's own. */
		if (sk->state == BPF_TCP_ESTABLISHED)
			return sk;
		bpf_sk_release(sk);
	}
	if (proxy_port == 0)
		return NULL;
	ciliate_listener_tuple(t, v4, proxy_port);
	return bpf_sk_lookup_udp(ctx, t, len, BPF_F_CURRENT_NETNS, 0);
}

/*
 * The proxy socket for a packet: its flow's own socket, else (proxy_port != 0) the one listening on
 * proxy_port. Addresses and ports are as the packet carries them (network order). Returns a referenced
 * socket or NULL.
 */
static __always_inline struct bpf_sock *ciliate_proxy_socket(struct __sk_buff *ctx, __u8 family, __u8 nexthdr,
							     const __u8 *saddr, const __u8 *daddr, __be16 sport,
							     __be16 dport, __u16 proxy_port)
{
	struct bpf_sock_tuple *t = (struct bpf_sock_tuple *)ciliate_scratch(CILIATE_PROXY_TUPLE_OFF, sizeof(struct bpf_sock_tuple));
	bool v4 = family == CILIATE_FAMILY_IPV4;
	__u32 len;

	if (!t)
		return NULL;
	if (v4) {
		__builtin_memcpy(&t->ipv4.saddr, saddr, 4);
		__builtin_memcpy(&t->ipv4.daddr, daddr, 4);
		t->ipv4.sport = sport;
		t->ipv4.dport = dport;
		len = sizeof(t->ipv4);
	} else {
		__builtin_memcpy(t->ipv6.saddr, saddr, 16);
		__builtin_memcpy(t->ipv6.daddr, daddr, 16);
		t->ipv6.sport = sport;
		t->ipv6.dport = dport;
		len = sizeof(t->ipv6);
	}
	if (nexthdr == CILIATE_IPPROTO_TCP)
		return ciliate_proxy_socket_tcp(ctx, t, len, v4, proxy_port);
	if (nexthdr == CILIATE_IPPROTO_UDP)
		return ciliate_proxy_socket_udp(ctx, t, len, v4, proxy_port);
	return NULL;
}

static __always_inline struct trace_record *ciliate_trace_record(void)
{
	__u32 zero = 0;

	return bpf_map_lookup_elem(&ciliate_trace_v1, &zero);
}

/*
 * The tc action for core's verdict at a hook. REDIRECT: to the proxy socket as described above, or a drop.
 * `at_ingress`: the program runs at tc ingress (sk_assign possible) rather than egress.
 */
static __always_inline int ciliate_tc_action(struct __sk_buff *ctx, __u32 verdict, bool at_ingress)
{
	struct trace_record *tr;
	struct bpf_sock *sk;
	__u16 port;
	bool reply;
	long err;

	if (verdict == CILIATE_CTX_ACT_OK)
		return TC_ACT_OK;
	if (verdict == CILIATE_CTX_ACT_TUNNEL)
		return ciliate_tunnel_redirect();
	if (verdict != CILIATE_CTX_ACT_REDIRECT)
		return TC_ACT_SHOT;
	if (ctx->ifindex == CILIATE_LOOPBACK_IFINDEX)
		return TC_ACT_SHOT;
	/* core fills a redirect's record whatever the event settings (core/pipeline.ts redirectRecord). */
	tr = ciliate_trace_record();
	if (!tr)
		return TC_ACT_SHOT;
	port = bpf_ntohs(tr->proxy_port_be);
	reply = (tr->trace_flags & CILIATE_TRACE_F_REPLY) != 0;
	sk = ciliate_proxy_socket(ctx, tr->family, tr->nexthdr, tr->saddr, tr->new_daddr, tr->sport_be, tr->new_dport_be,
				  reply ? 0 : port);
	if (!sk)
		return ciliate_proxy_fail(tr, CILIATE_DROP_PROXY_LOOKUP_FAILED);
	ctx->mark = CILIATE_MARK_MAGIC_TO_PROXY | (reply ? 0 : port);
	if (!at_ingress) {
		bpf_sk_release(sk);
		return bpf_redirect(ctx->ifindex, BPF_F_INGRESS);
	}
	err = bpf_sk_assign(ctx, sk, 0);
	bpf_sk_release(sk);
	if (err)
		return ciliate_proxy_fail(tr, CILIATE_DROP_PROXY_SET_FAILED);
	return TC_ACT_OK;
}

/*
 * A packet that to-endpoint redirected to this device's ingress for its proxy (mark MARK_MAGIC_TO_PROXY):
 * core already decided and counted it there; only the socket assignment is left. When the socket went
 * away in between, the packet is dropped, counted and reported as to-endpoint's drop.
 */
static __always_inline int ciliate_proxy_reenter(struct __sk_buff *ctx)
{
	struct packet_info *info = (struct packet_info *)ciliate_scratch(CILIATE_PROXY_INFO_OFF, sizeof(struct packet_info));
	struct trace_record *rec = (struct trace_record *)ciliate_scratch(CILIATE_PROXY_REC_OFF, sizeof(struct trace_record));
	struct bpf_sock *sk;
	__u32 reason = CILIATE_DROP_PROXY_LOOKUP_FAILED;
	__u32 zero = 0;
	__u16 port = (__u16)(ctx->mark & 0xffff);
	struct config_value *cfg;

	if (!info || !rec)
		return TC_ACT_SHOT;
	/* The frame still carries the pod's MAC as destination; to the stack it is for this host. */
	bpf_skb_change_type(ctx, CILIATE_PACKET_HOST);
	if (ciliate_parse_packet(ctx, (__u8 *)info) == 0) {
		sk = ciliate_proxy_socket(ctx, info->family, info->nexthdr, info->saddr, info->daddr, bpf_htons(info->sport),
					  bpf_htons(info->dport), port);
		if (sk) {
			long err = bpf_sk_assign(ctx, sk, 0);

			bpf_sk_release(sk);
			if (!err)
				return TC_ACT_OK;
			reason = CILIATE_DROP_PROXY_SET_FAILED;
		}
	}
	ciliate_proxy_count_drop(CILIATE_METRIC_DIR_INGRESS, info->len, reason);
	rec->verdict = CILIATE_CTX_ACT_DROP;
	rec->drop_reason = reason;
	rec->hook = CILIATE_HOOK_TO_ENDPOINT;
	rec->obs_point = CILIATE_TRACE_TO_PROXY;
	rec->family = info->family;
	rec->nexthdr = info->nexthdr;
	rec->len = info->len;
	rec->sport_be = bpf_htons(info->sport);
	rec->new_dport_be = bpf_htons(info->dport);
	rec->orig_dport_be = rec->new_dport_be;
	rec->proxy_port_be = bpf_htons(port);
	rec->ct_state = 255;
	__builtin_memcpy(rec->saddr, info->saddr, 16);
	__builtin_memcpy(rec->new_daddr, info->daddr, 16);
	__builtin_memcpy(rec->orig_daddr, info->daddr, 16);
	cfg = bpf_map_lookup_elem(&ciliate_config_v2, &zero);
	if (cfg && (cfg->flags & (CILIATE_CONFIG_F_EVENTS | CILIATE_CONFIG_F_EVENTS_ALL)))
		bpf_ringbuf_output(&ciliate_events_v1, rec, sizeof(*rec), 0);
	return TC_ACT_SHOT;
}
