/*
 * Packet access for the datapath. A packet is a handle (Pkt); core reads and writes it only through
 * these functions, at offsets from the start of the Ethernet header. Reads outside the packet return 0
 * and writes outside it do nothing, but core never relies on that: it calls pktHas(pkt, end) first and
 * drops with DROP_INVALID (or the specific reason) when a header is truncated.
 *
 * WASM/JS: a Pkt points to a descriptor {data: u32, len: u32} in linear memory (set up by core/abi).
 * C: a Pkt is the struct __sk_buff *; every function here is a seam in bpf/include/ciliate_pkt.h that
 * becomes verifier-checked direct packet access, and the checksum functions become
 * bpf_l3_csum_replace / bpf_l4_csum_replace with the kernel's exact arithmetic (core/csum.ts mirrors it).
 */
import { read8, write8 } from "./env";
import { csumReplace2L3, csumReplace16, csumReplace32 } from "./csum";

/** A packet handle (a pointer in WASM/JS, the skb in C). */
export type Pkt = usize;

/** @seam ciliate_pkt_len */
export function pktLen(pkt: Pkt): u32 {
  return read32u(pkt + 4);
}

function read32u(p: usize): u32 {
  return u32(read8(p) | (read8(p + 1) << 8) | (read8(p + 2) << 16) | (read8(p + 3) << 24));
}

function dataOf(pkt: Pkt): usize {
  return <usize>read32u(pkt);
}

/** True when bytes [0, end) are inside the packet. @seam ciliate_pkt_has */
export function pktHas(pkt: Pkt, end: u32): bool {
  return end <= pktLen(pkt);
}

/** @seam ciliate_pkt_load8 */
export function pktLoad8(pkt: Pkt, off: u32): u32 {
  if (off + 1 > pktLen(pkt)) return 0;
  return read8(dataOf(pkt) + off);
}

/** Big-endian 16-bit read. @seam ciliate_pkt_load16 */
export function pktLoad16(pkt: Pkt, off: u32): u32 {
  if (off + 2 > pktLen(pkt)) return 0;
  const p = dataOf(pkt) + off;
  return (read8(p) << 8) | read8(p + 1);
}

/** Big-endian 32-bit read. @seam ciliate_pkt_load32 */
export function pktLoad32(pkt: Pkt, off: u32): u32 {
  if (off + 4 > pktLen(pkt)) return 0;
  const p = dataOf(pkt) + off;
  return u32((read8(p) << 24) | (read8(p + 1) << 16) | (read8(p + 2) << 8) | read8(p + 3));
}

/** @seam ciliate_pkt_store8 */
export function pktStore8(pkt: Pkt, off: u32, v: u32): void {
  if (off + 1 > pktLen(pkt)) return;
  write8(dataOf(pkt) + off, v);
}

/** Big-endian 16-bit write. @seam ciliate_pkt_store16 */
export function pktStore16(pkt: Pkt, off: u32, v: u32): void {
  if (off + 2 > pktLen(pkt)) return;
  const p = dataOf(pkt) + off;
  write8(p, v >>> 8);
  write8(p + 1, v);
}

/** Big-endian 32-bit write. @seam ciliate_pkt_store32 */
export function pktStore32(pkt: Pkt, off: u32, v: u32): void {
  if (off + 4 > pktLen(pkt)) return;
  const p = dataOf(pkt) + off;
  write8(p, v >>> 24);
  write8(p + 1, v >>> 16);
  write8(p + 2, v >>> 8);
  write8(p + 3, v);
}

/** Copies n packet bytes at `off` into memory at `dst` (n ≤ 16, a constant at every call site).
 * Returns false if the range is outside the packet. @seam ciliate_pkt_copy_out */
export function pktCopyOut(pkt: Pkt, off: u32, dst: usize, n: u32): bool {
  if (off + n > pktLen(pkt)) return false;
  const p = dataOf(pkt) + off;
  for (let i: u32 = 0; i < 16; i++) {
    if (i >= n) break;
    write8(dst + i, read8(p + i));
  }
  return true;
}

/** Copies n bytes from memory at `src` into the packet at `off` (n ≤ 16, constant at every call site).
 * Returns false if the range is outside the packet. @seam ciliate_pkt_copy_in */
export function pktCopyIn(pkt: Pkt, off: u32, src: usize, n: u32): bool {
  if (off + n > pktLen(pkt)) return false;
  const p = dataOf(pkt) + off;
  for (let i: u32 = 0; i < 16; i++) {
    if (i >= n) break;
    write8(p + i, read8(src + i));
  }
  return true;
}

/** bpf_l3_csum_replace: updates the 16-bit checksum at `csumOff` for a field changing from `from` to
 * `to` (`size` 2 or 4 bytes). Returns 0, or -1 when the checksum is outside the packet.
 * @seam ciliate_l3_csum_replace */
export function pktL3CsumReplace(pkt: Pkt, csumOff: u32, from: u32, to: u32, size: u32): i32 {
  if (csumOff + 2 > pktLen(pkt)) return -1;
  const old = pktLoad16(pkt, csumOff);
  const next = size == 2 ? csumReplace2L3(old, from, to) : csumReplace32(old, from, to);
  pktStore16(pkt, csumOff, next);
  return 0;
}

/** BPF_F_MARK_MANGLED_0: a zero UDP checksum means "none" and stays zero; a result of 0 is written 0xffff. */
export const CSUM_F_MARK_MANGLED_0: u32 = 0x20;
/** BPF_F_PSEUDO_HDR: the changed field is part of the pseudo-header (addresses). */
export const CSUM_F_PSEUDO_HDR: u32 = 0x10;

/** bpf_l4_csum_replace: like pktL3CsumReplace for the L4 checksum; `flags` carries the field size in its
 * low 4 bits plus CSUM_F_* bits. Returns 0, or -1 when the checksum is outside the packet.
 * @seam ciliate_l4_csum_replace */
export function pktL4CsumReplace(pkt: Pkt, csumOff: u32, from: u32, to: u32, flags: u32): i32 {
  if (csumOff + 2 > pktLen(pkt)) return -1;
  const old = pktLoad16(pkt, csumOff);
  if ((flags & CSUM_F_MARK_MANGLED_0) != 0 && old == 0) return 0;
  let next = (flags & 0xf) == 2 ? csumReplace16(old, from, to) : csumReplace32(old, from, to);
  if ((flags & CSUM_F_MARK_MANGLED_0) != 0 && next == 0) next = 0xffff;
  pktStore16(pkt, csumOff, next);
  return 0;
}
