/*
 * The host ABI of core: what the WASM module exports and the JS build re-exports, identically. Hosts
 * (host/abi-datapath.ts) write keys, values and packets into the scratch and packet areas of the
 * instance's memory, call these functions, and read results back from memory and from the Trace map.
 * Nothing here is part of the kernel build: in C the maps are real BPF maps and the entry points are the
 * programs in bpf/programs/.
 */
import { MapId } from "../gen/layout";
import { allocStatic, arenaReset, heapUsed } from "../alloc";
import { read32, write32 } from "../env";
import { mapCount, mapCreate, mapDelete, mapLookup, mapNextKey, mapRingbufConsume, mapUpdate } from "../maps";
import { fromEndpoint, fromHost, fromNetwork, fromOverlay, toEndpoint, toNetwork } from "../pipeline";
import { PKT_DESC_SIZE, PKT_DESC_TUNNEL_IN, PKT_DESC_TUNNEL_IN_SET, PKT_DESC_TUNNEL_OUT, PKT_DESC_TUNNEL_OUT_SET } from "../tunnel-key";
import { maglevBuild, maglevDelete, maglevStore } from "../maglev";
import { ctGc } from "./conntrack-gc";

/** Largest packet a host may pass (the kernel's test-run limit is a page minus headroom; we allow more). */
export const ABI_PACKET_MAX: u32 = 65536;
/** Size of the host's scratch area for keys and values. */
export const ABI_SCRATCH_SIZE: u32 = 65536;

let scratch: usize = 0;
let hostBuf: usize = 0;
let hostBufSize: usize = 0;
let packet: usize = 0;
let pktDesc: usize = 0;

/** Must be called once before anything else. Returns 0, or -12 when memory cannot be had. */
export function abiInit(): i32 {
  if (scratch != 0) return 0;
  scratch = allocStatic(ABI_SCRATCH_SIZE, 16);
  packet = allocStatic(ABI_PACKET_MAX, 16);
  pktDesc = allocStatic(PKT_DESC_SIZE, 8);
  if (scratch == 0 || packet == 0 || pktDesc == 0) return -12;
  arenaReset();
  return 0;
}

export function abiScratch(): usize { return scratch; }
export function abiPacket(): usize { return packet; }
export function abiHeapUsed(): usize { return heapUsed(); }

export function abiMapCreate(map: i32, maxEntries: u32): i32 { return mapCreate(<MapId>map, maxEntries); }
export function abiMapLookup(map: i32, key: usize): usize { return mapLookup(<MapId>map, key); }
export function abiMapUpdate(map: i32, key: usize, value: usize, flags: u32): i32 {
  return mapUpdate(<MapId>map, key, value, flags);
}
export function abiMapDelete(map: i32, key: usize): i32 { return mapDelete(<MapId>map, key); }
export function abiMapNextKey(map: i32, key: usize, nextKey: usize): i32 { return mapNextKey(<MapId>map, key, nextKey); }
export function abiMapCount(map: i32): u32 { return mapCount(<MapId>map); }

/** Takes the oldest record of a ring buffer map (MapId.Events) into `out`; its length, 0 when empty. */
export function abiRingbufConsume(map: i32, out: usize, max: u32): i32 {
  return mapRingbufConsume(<MapId>map, out, max);
}

function preparePacket(len: u32): usize {
  write32(pktDesc, <u32>packet);
  write32(pktDesc + 4, len > ABI_PACKET_MAX ? ABI_PACKET_MAX : len);
  write32(pktDesc + PKT_DESC_TUNNEL_OUT_SET, 0);
  arenaReset();
  return pktDesc;
}

/** Runs the from-endpoint program (traffic leaving a pod) on the `len` bytes at abiPacket(). */
export function abiFromEndpoint(len: u32, now: u32): u32 {
  return fromEndpoint(preparePacket(len), now);
}

/** Runs the to-endpoint program (traffic arriving at a pod). `srcIdentity` is the identity carried with
 * the packet (the VXLAN VNI, or the mark on the same node); 0 means "look the source up in the ipcache". */
export function abiToEndpoint(len: u32, srcIdentity: u32, now: u32): u32 {
  return toEndpoint(preparePacket(len), srcIdentity, now);
}

/** The TunnelKey a packet given to abiFromOverlay arrived with: the host writes it here before the run. */
export function abiTunnelIn(): usize { return pktDesc + PKT_DESC_TUNNEL_IN; }
/** The TunnelKey the last run set (valid when abiTunnelOutSet() is 1). */
export function abiTunnelOut(): usize { return pktDesc + PKT_DESC_TUNNEL_OUT; }
export function abiTunnelOutSet(): u32 { return read32(pktDesc + PKT_DESC_TUNNEL_OUT_SET); }

/** Runs the from-overlay program (traffic from another node through the tunnel device). `tunnelKeyIn` 1:
 * the packet carries the key at abiTunnelIn(); 0: it carries none. */
export function abiFromOverlay(len: u32, tunnelKeyIn: u32, now: u32): u32 {
  const d = preparePacket(len);
  write32(d + PKT_DESC_TUNNEL_IN_SET, tunnelKeyIn);
  return fromOverlay(d, now);
}

/** Runs the from-host program (what the node's stack routes into the tunnel device). `tunnelKeyIn` 1: the
 * packet already carries the key at abiTunnelIn() (fromEndpoint set it); 0: it carries none. */
export function abiFromHost(len: u32, tunnelKeyIn: u32, now: u32): u32 {
  const d = preparePacket(len);
  write32(d + PKT_DESC_TUNNEL_IN_SET, tunnelKeyIn);
  return fromHost(d, now);
}

/** Runs the node entry (traffic from outside the node: NodePort, LoadBalancer, external IPs). */
export function abiFromNetwork(len: u32, now: u32): u32 {
  return fromNetwork(preparePacket(len), now);
}

/** Runs the to-network program (traffic leaving the node through its device: masquerading). */
export function abiToNetwork(len: u32, now: u32): u32 {
  return toNetwork(preparePacket(len), now);
}

/** A host buffer of at least `size` bytes for bulk inputs (Maglev backend records, tables). The previous
 * buffer is abandoned when a larger one is needed, so callers re-ask before each use. Returns 0 when
 * memory cannot grow. */
export function abiHostBuffer(size: u32): usize {
  if (hostBufSize < <usize>size) {
    hostBuf = allocStatic(<usize>size, 16);
    hostBufSize = hostBuf == 0 ? 0 : <usize>size;
  }
  return hostBuf;
}

/** Builds a Maglev lookup table (core/maglev.ts maglevBuild); 0 or -EINVAL. */
export function abiMaglevBuild(backends: usize, n: u32, m: u32, seedMurmur: u32, out: usize): i32 {
  return maglevBuild(backends, n, m, seedMurmur, out);
}

/** Writes a built table (m backend ids at `table`) as service `revNatIndex`'s Maglev map entries; 0 or
 * a negative errno from the map. */
export function abiMaglevStore(revNatIndex: u32, table: usize, m: u32): i32 {
  return maglevStore(revNatIndex, table, m);
}

/** Deletes service `revNatIndex`'s Maglev entries; returns how many were removed. */
export function abiMaglevDelete(revNatIndex: u32, m: u32): u32 {
  return maglevDelete(revNatIndex, m);
}

/** Removes expired conntrack entries (the agent's CT garbage collector); returns how many. */
export function abiCtGc(now: u32): u32 {
  return ctGc(now);
}
