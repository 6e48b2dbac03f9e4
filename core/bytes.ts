/*
 * Byte-order helpers over env memory. Layout fields ending in `Be` hold network byte order; core keeps
 * host-order numbers in variables and converts only at these boundaries.
 */
import { read16, read32, write16, write32 } from "./env";

export function bswap16(x: u32): u32 {
  return ((x & 0xff) << 8) | ((x >>> 8) & 0xff);
}

export function bswap32(x: u32): u32 {
  return u32(((x & 0xff) << 24) | ((x & 0xff00) << 8) | ((x >>> 8) & 0xff00) | (x >>> 24));
}

/** Reads a network-order u16 field as a host-order number. */
export function read16be(p: usize): u32 {
  return bswap16(read16(p));
}

/** Writes a host-order number into a network-order u16 field. */
export function write16be(p: usize, v: u32): void {
  write16(p, bswap16(v & 0xffff));
}

/** Reads a network-order u32 field as a host-order number. */
export function read32be(p: usize): u32 {
  return bswap32(read32(p));
}

/** Writes a host-order number into a network-order u32 field. */
export function write32be(p: usize, v: u32): void {
  write32(p, bswap32(v));
}
