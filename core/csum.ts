/*
 * Incremental Internet checksum updates with the kernel's exact arithmetic (include/net/checksum.h
 * csum_replace4/inet_proto_csum_replace4 for skbs without CHECKSUM_PARTIAL): the old checksum is
 * unfolded as ~(u32)sum, which contributes a 0xffff upper half, so the result is never 0xffff. Matching
 * the kernel bit for bit is what lets the differential tests compare output bytes.
 */

function fold(s: u32): u32 {
  s = (s & 0xffff) + (s >>> 16);
  s = (s & 0xffff) + (s >>> 16);
  return s;
}

/** New checksum when a 32-bit big-endian field changes from `from` to `to`. */
export function csumReplace32(old: u32, from: u32, to: u32): u32 {
  // 0xffff: the upper half of ~csum_unfold(old) (a ones'-complement zero that is never +0).
  let s: u32 = 0xffff + ((~old) & 0xffff);
  const nf = u32(~from);
  s += nf >>> 16;
  s += nf & 0xffff;
  s += to >>> 16;
  s += to & 0xffff;
  return (~fold(s)) & 0xffff;
}

/** New checksum when a 16-bit big-endian field changes from `from` to `to`. */
export function csumReplace16(old: u32, from: u32, to: u32): u32 {
  let s: u32 = 0xffff + ((~old) & 0xffff);
  s += (~from) & 0xffff;
  s += to & 0xffff;
  return (~fold(s)) & 0xffff;
}

/** New checksum for bpf_l3_csum_replace with a 16-bit field: the kernel's csum_replace2
 * (include/net/checksum.h) adds in 16 bits with end-around carry and has no 0xffff upper half, so unlike
 * csumReplace16 its result is 0xffff where the ones'-complement sum is zero. */
export function csumReplace2L3(old: u32, from: u32, to: u32): u32 {
  let s: u32 = (~old) & 0xffff;
  s += (~from) & 0xffff;
  s += to & 0xffff;
  return (~fold(s)) & 0xffff;
}
