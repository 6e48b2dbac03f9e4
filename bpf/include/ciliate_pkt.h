/*
 * The packet seam of core/pkt.ts for the eBPF build (hand-written). A core `Pkt` is the program's context,
 * ciliate_ctx_t: the skb (struct __sk_buff *) for tc programs, or struct xdp_md when the including program
 * defines CILIATE_PKT_XDP before its first include (bpf/programs/from_network_xdp.bpf.c); offsets are from
 * the start of the Ethernet header.
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
 *
 * XDP: the frame is linear (programs are loaded without BPF_F_XDP_HAS_FRAGS, so the kernel never hands them
 * a multi-buffer frame); its length is data_end - data. XDP has no checksum helpers, so the checksum
 * seams apply core/csum.ts's arithmetic here (the kernel's csum_replace2/4 for a skb without
 * CHECKSUM_PARTIAL), which keeps output bytes identical to the tc build's and to WASM/JS.
 */
#pragma once

#include <linux/types.h>
#include <linux/bpf.h>
#include <stdbool.h>
#include <bpf/bpf_helpers.h>
#include <bpf/bpf_endian.h>

#ifdef CILIATE_PKT_XDP
typedef struct xdp_md ciliate_ctx_t;
#else
typedef struct __sk_buff ciliate_ctx_t;
#endif

/* Largest offset a seam accepts; the verifier limits packet offsets to 16 bits (MAX_PACKET_OFF). */
#define CILIATE_PKT_MAX_OFF 0xfff0

/* ctx->data / ctx->data_end, read afresh. The empty asm makes the compiler forget what it knows about
 * ctx, so it cannot keep `&ctx->data_end` in a register or on the stack across a helper call (the verifier
 * rejects a dereference of a modified ctx pointer). */
static __always_inline __u8 *ciliate_pkt_data(ciliate_ctx_t *ctx)
{
	asm volatile("" : "+r"(ctx));
	return (__u8 *)(long)ctx->data;
}

static __always_inline __u8 *ciliate_pkt_end(ciliate_ctx_t *ctx)
{
	asm volatile("" : "+r"(ctx));
	return (__u8 *)(long)ctx->data_end;
}

#define CILIATE_PKT_DATA(ctx) ciliate_pkt_data(ctx)
#define CILIATE_PKT_END(ctx) ciliate_pkt_end(ctx)

/* Length of the packet in bytes (linear and non-linear parts). */
static __always_inline __u32 ciliate_pkt_len(ciliate_ctx_t *ctx)
{
#ifdef CILIATE_PKT_XDP
	return (__u32)(ctx->data_end - ctx->data);
#else
	return ctx->len;
#endif
}

/* True when bytes [0, end) are inside the packet; makes them reachable by direct access. */
static __always_inline bool ciliate_pkt_has(ciliate_ctx_t *ctx, __u32 end)
{
	if (end > ciliate_pkt_len(ctx))
		return false;
	if (end > CILIATE_PKT_MAX_OFF)
		return false;
	if (CILIATE_PKT_DATA(ctx) + end > CILIATE_PKT_END(ctx)) {
#ifdef CILIATE_PKT_XDP
		return false;
#else
		if (bpf_skb_pull_data(ctx, end) < 0)
			return false;
		if (CILIATE_PKT_DATA(ctx) + end > CILIATE_PKT_END(ctx))
			return false;
#endif
	}
	return true;
}

/*
 * Loads and stores: one packet pointer `p = data + off` is bounds-checked and every byte is accessed at a
 * constant offset from it (the verifier tracks the checked range on that pointer; `data[off + 1]` would be
 * a new variable-offset pointer without a range).
 */
static __always_inline __u32 ciliate_pkt_load8(ciliate_ctx_t *ctx, __u32 off)
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

static __always_inline __u32 ciliate_pkt_load16(ciliate_ctx_t *ctx, __u32 off)
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

static __always_inline __u32 ciliate_pkt_load32(ciliate_ctx_t *ctx, __u32 off)
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

static __always_inline void ciliate_pkt_store8(ciliate_ctx_t *ctx, __u32 off, __u32 v)
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

static __always_inline void ciliate_pkt_store16(ciliate_ctx_t *ctx, __u32 off, __u32 v)
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

static __always_inline void ciliate_pkt_store32(ciliate_ctx_t *ctx, __u32 off, __u32 v)
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
static __always_inline bool ciliate_pkt_copy_out(ciliate_ctx_t *ctx, __u32 off, void *dst, __u32 n)
{
	__u8 *p, *end;

	if (off > CILIATE_PKT_MAX_OFF || n > 16)
		return false;
	p = CILIATE_PKT_DATA(ctx) + off;
	end = CILIATE_PKT_END(ctx);
	if (p + n > end || off + n > ciliate_pkt_len(ctx))
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
static __always_inline bool ciliate_pkt_copy_in(ciliate_ctx_t *ctx, __u32 off, const void *src, __u32 n)
{
	__u8 *p, *end;

	if (off > CILIATE_PKT_MAX_OFF || n > 16)
		return false;
	p = CILIATE_PKT_DATA(ctx) + off;
	end = CILIATE_PKT_END(ctx);
	if (p + n > end || off + n > ciliate_pkt_len(ctx))
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
#ifdef CILIATE_PKT_XDP
/* core/csum.ts, in C: the kernel's checksum arithmetic for a skb without CHECKSUM_PARTIAL. */
static __always_inline __u32 ciliate_xdp_csum_fold(__u32 s)
{
	s = (s & 0xffff) + (s >> 16);
	s = (s & 0xffff) + (s >> 16);
	return s;
}

static __always_inline __u32 ciliate_xdp_csum_replace32(__u32 old, __u32 from, __u32 to)
{
	__u32 s = 0xffff + ((~old) & 0xffff);
	__u32 nf = ~from;

	s += nf >> 16;
	s += nf & 0xffff;
	s += to >> 16;
	s += to & 0xffff;
	return (~ciliate_xdp_csum_fold(s)) & 0xffff;
}

static __always_inline __u32 ciliate_xdp_csum_replace16(__u32 old, __u32 from, __u32 to)
{
	__u32 s = 0xffff + ((~old) & 0xffff);

	s += (~from) & 0xffff;
	s += to & 0xffff;
	return (~ciliate_xdp_csum_fold(s)) & 0xffff;
}

/* csum_replace2, used by bpf_l3_csum_replace for a 16-bit field: no 0xffff upper half. */
static __always_inline __u32 ciliate_xdp_csum_replace2_l3(__u32 old, __u32 from, __u32 to)
{
	__u32 s = (~old) & 0xffff;

	s += (~from) & 0xffff;
	s += to & 0xffff;
	return (~ciliate_xdp_csum_fold(s)) & 0xffff;
}

static __always_inline __s32 ciliate_l3_csum_replace(ciliate_ctx_t *ctx, __u32 csum_off, __u32 from, __u32 to, __u32 size)
{
	__u32 old;

	if (csum_off > CILIATE_PKT_MAX_OFF || csum_off + 2 > ciliate_pkt_len(ctx))
		return -1;
	old = ciliate_pkt_load16(ctx, csum_off);
	ciliate_pkt_store16(ctx, csum_off, size == 2 ? ciliate_xdp_csum_replace2_l3(old, from, to) : ciliate_xdp_csum_replace32(old, from, to));
	return 0;
}

static __always_inline __s32 ciliate_l4_csum_replace(ciliate_ctx_t *ctx, __u32 csum_off, __u32 from, __u32 to, __u32 flags)
{
	__u32 old, next;

	if (csum_off > CILIATE_PKT_MAX_OFF || csum_off + 2 > ciliate_pkt_len(ctx))
		return -1;
	old = ciliate_pkt_load16(ctx, csum_off);
	if ((flags & BPF_F_MARK_MANGLED_0) && old == 0)
		return 0;
	next = (flags & 0xf) == 2 ? ciliate_xdp_csum_replace16(old, from, to) : ciliate_xdp_csum_replace32(old, from, to);
	if ((flags & BPF_F_MARK_MANGLED_0) && next == 0)
		next = 0xffff;
	ciliate_pkt_store16(ctx, csum_off, next);
	return 0;
}
#else
static __always_inline __s32 ciliate_l3_csum_replace(ciliate_ctx_t *ctx, __u32 csum_off, __u32 from, __u32 to, __u32 size)
{
	if (csum_off > CILIATE_PKT_MAX_OFF || csum_off + 2 > ciliate_pkt_len(ctx))
		return -1;
	if (bpf_l3_csum_replace(ctx, csum_off, ciliate_csum_be(from, size), ciliate_csum_be(to, size), size) < 0)
		return -1;
	return 0;
}

/* bpf_l4_csum_replace; `flags` carries the field size (low 4 bits) plus BPF_F_PSEUDO_HDR and
 * BPF_F_MARK_MANGLED_0 (the same bits as core's CSUM_F_*). Returns 0 or -1 as ciliate_l3_csum_replace. */
static __always_inline __s32 ciliate_l4_csum_replace(ciliate_ctx_t *ctx, __u32 csum_off, __u32 from, __u32 to, __u32 flags)
{
	__u32 size = flags & 0xf;

	if (csum_off > CILIATE_PKT_MAX_OFF || csum_off + 2 > ciliate_pkt_len(ctx))
		return -1;
	if (bpf_l4_csum_replace(ctx, csum_off, ciliate_csum_be(from, size), ciliate_csum_be(to, size), flags) < 0)
		return -1;
	return 0;
}
#endif
