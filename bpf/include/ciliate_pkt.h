/*
 * The packet seam of core/pkt.ts for the eBPF build (hand-written). A core `Pkt` is the skb itself
 * (struct __sk_buff *); offsets are from the start of the Ethernet header.
 *
 * Semantics are core/pkt.ts's: an out-of-range read returns 0, an out-of-range write does nothing,
 * copies and checksum updates report failure. Multi-byte loads and stores are big-endian in the packet and
 * host-order numbers in core (bpf_ntohs/bpf_ntohl at this boundary).
 *
 * Access is direct packet access, written for the verifier: every seam re-reads ctx->data/data_end (a
 * helper such as bpf_l3_csum_replace or bpf_skb_pull_data invalidates earlier packet pointers), bounds the
 * variable offset first (`off > CILIATE_PKT_MAX_OFF` → out of range) so that the verifier can track the
 * pointer range, then compares the end of the access with data_end. The packet's length is skb->len;
 * ciliate_pkt_has pulls non-linear bytes into the linear area (bpf_skb_pull_data), as Cilium's
 * revalidate_data_pull (bpf/lib/common.h) does, so that direct access reaches every byte that pktHas promised.
 */
#pragma once

#include <linux/types.h>
#include <linux/bpf.h>
#include <stdbool.h>
#include <bpf/bpf_helpers.h>
#include <bpf/bpf_endian.h>

/* Largest offset a seam accepts; the verifier limits packet offsets to 16 bits (MAX_PACKET_OFF). */
#define CILIATE_PKT_MAX_OFF 0xfff0

/* ctx->data / ctx->data_end, read afresh. The empty asm makes the compiler forget what it knows about
 * ctx, so it cannot keep `&ctx->data_end` in a register or on the stack across a helper call (the verifier
 * rejects a dereference of a modified ctx pointer). */
static __always_inline __u8 *ciliate_pkt_data(struct __sk_buff *ctx)
{
	asm volatile("" : "+r"(ctx));
	return (__u8 *)(long)ctx->data;
}

static __always_inline __u8 *ciliate_pkt_end(struct __sk_buff *ctx)
{
	asm volatile("" : "+r"(ctx));
	return (__u8 *)(long)ctx->data_end;
}

#define CILIATE_PKT_DATA(ctx) ciliate_pkt_data(ctx)
#define CILIATE_PKT_END(ctx) ciliate_pkt_end(ctx)

/* Length of the packet in bytes (linear and non-linear parts). */
static __always_inline __u32 ciliate_pkt_len(struct __sk_buff *ctx)
{
	return ctx->len;
}

/* True when bytes [0, end) are inside the packet; makes them reachable by direct access. */
static __always_inline bool ciliate_pkt_has(struct __sk_buff *ctx, __u32 end)
{
	if (end > ctx->len)
		return false;
	if (end > CILIATE_PKT_MAX_OFF)
		return false;
	if (CILIATE_PKT_DATA(ctx) + end > CILIATE_PKT_END(ctx)) {
		if (bpf_skb_pull_data(ctx, end) < 0)
			return false;
		if (CILIATE_PKT_DATA(ctx) + end > CILIATE_PKT_END(ctx))
			return false;
	}
	return true;
}

/*
 * Loads and stores: one packet pointer `p = data + off` is bounds-checked and every byte is accessed at a
 * constant offset from it (the verifier tracks the checked range on that pointer; `data[off + 1]` would be
 * a new variable-offset pointer without a range).
 */
static __always_inline __u32 ciliate_pkt_load8(struct __sk_buff *ctx, __u32 off)
{
	__u8 *p, *end;

	if (off > CILIATE_PKT_MAX_OFF)
		return 0;
	p = CILIATE_PKT_DATA(ctx) + off;
	end = CILIATE_PKT_END(ctx);
	if (p + 1 > end)
		return 0;
	return p[0];
}

static __always_inline __u32 ciliate_pkt_load16(struct __sk_buff *ctx, __u32 off)
{
	__u8 *p, *end;

	if (off > CILIATE_PKT_MAX_OFF)
		return 0;
	p = CILIATE_PKT_DATA(ctx) + off;
	end = CILIATE_PKT_END(ctx);
	if (p + 2 > end)
		return 0;
	return ((__u32)p[0] << 8) | p[1];
}

static __always_inline __u32 ciliate_pkt_load32(struct __sk_buff *ctx, __u32 off)
{
	__u8 *p, *end;

	if (off > CILIATE_PKT_MAX_OFF)
		return 0;
	p = CILIATE_PKT_DATA(ctx) + off;
	end = CILIATE_PKT_END(ctx);
	if (p + 4 > end)
		return 0;
	return ((__u32)p[0] << 24) | ((__u32)p[1] << 16) | ((__u32)p[2] << 8) | p[3];
}

static __always_inline void ciliate_pkt_store8(struct __sk_buff *ctx, __u32 off, __u32 v)
{
	__u8 *p, *end;

	if (off > CILIATE_PKT_MAX_OFF)
		return;
	p = CILIATE_PKT_DATA(ctx) + off;
	end = CILIATE_PKT_END(ctx);
	if (p + 1 > end)
		return;
	p[0] = (__u8)v;
}

static __always_inline void ciliate_pkt_store16(struct __sk_buff *ctx, __u32 off, __u32 v)
{
	__u8 *p, *end;

	if (off > CILIATE_PKT_MAX_OFF)
		return;
	p = CILIATE_PKT_DATA(ctx) + off;
	end = CILIATE_PKT_END(ctx);
	if (p + 2 > end)
		return;
	p[0] = (__u8)(v >> 8);
	p[1] = (__u8)v;
}

static __always_inline void ciliate_pkt_store32(struct __sk_buff *ctx, __u32 off, __u32 v)
{
	__u8 *p, *end;

	if (off > CILIATE_PKT_MAX_OFF)
		return;
	p = CILIATE_PKT_DATA(ctx) + off;
	end = CILIATE_PKT_END(ctx);
	if (p + 4 > end)
		return;
	p[0] = (__u8)(v >> 24);
	p[1] = (__u8)(v >> 16);
	p[2] = (__u8)(v >> 8);
	p[3] = (__u8)v;
}

/* Copies n (≤ 16) packet bytes at off to dst. False when the range is outside the packet. */
static __always_inline bool ciliate_pkt_copy_out(struct __sk_buff *ctx, __u32 off, void *dst, __u32 n)
{
	__u8 *p, *end;

	if (off > CILIATE_PKT_MAX_OFF || n > 16)
		return false;
	p = CILIATE_PKT_DATA(ctx) + off;
	end = CILIATE_PKT_END(ctx);
	if (p + n > end || off + n > ctx->len)
		return false;
	/* Byte by byte with a constant bound: each access is checked against data_end for the verifier. */
	for (__u32 i = 0; i < 16; i++) {
		if (i >= n)
			break;
		if (p + i + 1 > end)
			return false;
		((__u8 *)dst)[i] = p[i];
	}
	return true;
}

/* Copies n (≤ 16) bytes from src into the packet at off. False when the range is outside the packet. */
static __always_inline bool ciliate_pkt_copy_in(struct __sk_buff *ctx, __u32 off, const void *src, __u32 n)
{
	__u8 *p, *end;

	if (off > CILIATE_PKT_MAX_OFF || n > 16)
		return false;
	p = CILIATE_PKT_DATA(ctx) + off;
	end = CILIATE_PKT_END(ctx);
	if (p + n > end || off + n > ctx->len)
		return false;
	for (__u32 i = 0; i < 16; i++) {
		if (i >= n)
			break;
		if (p + i + 1 > end)
			return false;
		p[i] = ((const __u8 *)src)[i];
	}
	return true;
}

/* Network-order form of a host-order field value of `size` bytes, as the csum helpers take it. */
static __always_inline __u64 ciliate_csum_be(__u32 v, __u32 size)
{
	return size == 2 ? (__u64)bpf_htons((__u16)v) : (__u64)bpf_htonl(v);
}

/*
 * bpf_l3_csum_replace. core passes `from`/`to` as host-order numbers (read with pktLoad16/32), the helper
 * takes the field's bytes as they are in the packet, hence the conversion. Returns 0, or -1 when the
 * checksum is outside the packet or the helper fails (core/pkt.ts returns -1 for both).
 */
static __always_inline __s32 ciliate_l3_csum_replace(struct __sk_buff *ctx, __u32 csum_off, __u32 from, __u32 to, __u32 size)
{
	if (csum_off > CILIATE_PKT_MAX_OFF || csum_off + 2 > ctx->len)
		return -1;
	if (bpf_l3_csum_replace(ctx, csum_off, ciliate_csum_be(from, size), ciliate_csum_be(to, size), size) < 0)
		return -1;
	return 0;
}

/* bpf_l4_csum_replace; `flags` carries the field size (low 4 bits) plus BPF_F_PSEUDO_HDR and
 * BPF_F_MARK_MANGLED_0 (the same bits as core's CSUM_F_*). Returns 0 or -1 as ciliate_l3_csum_replace. */
static __always_inline __s32 ciliate_l4_csum_replace(struct __sk_buff *ctx, __u32 csum_off, __u32 from, __u32 to, __u32 flags)
{
	__u32 size = flags & 0xf;

	if (csum_off > CILIATE_PKT_MAX_OFF || csum_off + 2 > ctx->len)
		return -1;
	if (bpf_l4_csum_replace(ctx, csum_off, ciliate_csum_be(from, size), ciliate_csum_be(to, size), flags) < 0)
		return -1;
	return 0;
}
