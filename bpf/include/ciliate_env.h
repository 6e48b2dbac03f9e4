/*
 * The environment seam of core/env.ts for the eBPF build (hand-written; codegen binds every call to a
 * function tagged `@seam ciliate_*` in core/env.ts to the function of that name here).
 *
 * Memory is addressed by pointers (`usize` in core is always a pointer: a map value, a local struct from
 * stackAlloc). Reads return the zero-extended value of their width; writes store the low bits. 64-bit
 * fields are counters: add64 adds atomically (the map value is shared between CPUs), read64_lo/hi read
 * the halves. mul32 is a wrapping unsigned multiply (Math.imul in JavaScript).
 * memCopy/memFill are bound to __builtin_memcpy/__builtin_memset directly (constant lengths only).
 */
#pragma once

#include <linux/types.h>
#include <stdbool.h>
#include <bpf/bpf_helpers.h>

static __always_inline __u32 ciliate_read8(const void *p) { return *(const __u8 *)p; }
static __always_inline __u32 ciliate_read16(const void *p) { return *(const __u16 *)p; }
static __always_inline __u32 ciliate_read32(const void *p) { return *(const __u32 *)p; }
static __always_inline void ciliate_write8(void *p, __u32 v) { *(__u8 *)p = (__u8)v; }
static __always_inline void ciliate_write16(void *p, __u32 v) { *(__u16 *)p = (__u16)v; }
static __always_inline void ciliate_write32(void *p, __u32 v) { *(__u32 *)p = v; }

/* Adds a 32-bit amount to a 64-bit counter (atomic: map values are shared between CPUs). */
static __always_inline void ciliate_add64(void *p, __u32 v)
{
	__sync_fetch_and_add((__u64 *)p, (__u64)v);
}

/* add64 for a per-CPU map slot: only this CPU writes it, and BPF programs do not migrate mid-run. */
static __always_inline void ciliate_add64_local(void *p, __u32 v)
{
	*(__u64 *)p += (__u64)v;
}

static __always_inline __u32 ciliate_read64_lo(const void *p) { return (__u32)*(const __u64 *)p; }
static __always_inline __u32 ciliate_read64_hi(const void *p) { return (__u32)(*(const __u64 *)p >> 32); }

/* 32-bit wrapping multiply (codegen inlines mul32(a, b) as this expression). */
#define ciliate_mul32(a, b) ((__u32)((__u32)(a) * (__u32)(b)))
