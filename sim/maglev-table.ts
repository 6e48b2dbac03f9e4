/*
 * Maglev lookup tables for the simulator's agent, as Cilium's agent computes them (pkg/maglev/maglev.go:
 * murmur3 x64-128 of each backend's hash string with the cluster seed; offset = h1 % M, skip =
 * h2 % (M − 1) + 1; backends sorted by hash string claim their next preferred free slot in turn).
 *
 * ADAPTER: the node agent asks the engine to build the table with core/maglev.ts (AbiDatapath.maglevTable)
 * when the engine offers it, and falls back to this TypeScript (BigInt) copy otherwise (equal weights only;
 * tests/sim/maglev-table.test.ts checks that both give the same table). Every engine reads the table from
 * the Maglev map, so the engines agree with each other either way.
 */
import { maglevHashString, maglevSeeds } from "../core/host/maglev.ts";

const M64 = (1n << 64n) - 1n;
const C1 = 0x87c37b91114253d5n;
const C2 = 0x4cf5ad432745937fn;

function rotl(x: bigint, r: bigint): bigint {
  return ((x << r) | (x >> (64n - r))) & M64;
}

function fmix(k: bigint): bigint {
  k ^= k >> 33n;
  k = (k * 0xff51afd7ed558ccdn) & M64;
  k ^= k >> 33n;
  k = (k * 0xc4ceb9fe1a85ec53n) & M64;
  k ^= k >> 33n;
  return k;
}

function le64(b: Uint8Array, off: number, n = 8): bigint {
  let v = 0n;
  for (let i = n - 1; i >= 0; i--) v = (v << 8n) | BigInt(b[off + i] ?? 0);
  return v;
}

/** murmur3 x64 128 (Austin Appleby's reference algorithm), returning [h1, h2]. */
export function murmur3x64_128(data: Uint8Array, seed: number): [bigint, bigint] {
  let h1 = BigInt(seed >>> 0);
  let h2 = h1;
  const nblocks = Math.floor(data.length / 16);
  for (let i = 0; i < nblocks; i++) {
    let k1 = le64(data, i * 16);
    let k2 = le64(data, i * 16 + 8);
    k1 = (k1 * C1) & M64;
    k1 = rotl(k1, 31n);
    k1 = (k1 * C2) & M64;
    h1 ^= k1;
    h1 = rotl(h1, 27n);
    h1 = (h1 + h2) & M64;
    h1 = (h1 * 5n + 0x52dce729n) & M64;
    k2 = (k2 * C2) & M64;
    k2 = rotl(k2, 33n);
    k2 = (k2 * C1) & M64;
    h2 ^= k2;
    h2 = rotl(h2, 31n);
    h2 = (h2 + h1) & M64;
    h2 = (h2 * 5n + 0x38495ab5n) & M64;
  }
  const tail = nblocks * 16;
  const rem = data.length & 15;
  if (rem > 8) {
    let k2 = le64(data, tail + 8, rem - 8);
    k2 = (k2 * C2) & M64;
    k2 = rotl(k2, 33n);
    k2 = (k2 * C1) & M64;
    h2 ^= k2;
  }
  if (rem > 0) {
    let k1 = le64(data, tail, Math.min(rem, 8));
    k1 = (k1 * C1) & M64;
    k1 = rotl(k1, 31n);
    k1 = (k1 * C2) & M64;
    h1 ^= k1;
  }
  const len = BigInt(data.length);
  h1 ^= len;
  h2 ^= len;
  h1 = (h1 + h2) & M64;
  h2 = (h2 + h1) & M64;
  h1 = fmix(h1);
  h2 = fmix(h2);
  h1 = (h1 + h2) & M64;
  h2 = (h2 + h1) & M64;
  return [h1, h2];
}

export interface MaglevInput {
  id: number;
  addr: string;
  port: number;
  protocol: string;
}

/** The M-entry table of backend ids (equal weights). Empty input → empty table. */
export function maglevTable(backends: MaglevInput[], m: number, seed: string): number[] {
  if (backends.length === 0) return [];
  const murmur = maglevSeeds(seed).murmur;
  const enc = new TextEncoder();
  const sorted = backends
    .map((b) => ({ id: b.id, hash: maglevHashString({ addr: b.addr, port: b.port, protocol: b.protocol }) }))
    .sort((a, b) => (a.hash < b.hash ? -1 : a.hash > b.hash ? 1 : 0));
  const mb = BigInt(m);
  const perm = sorted.map((b) => {
    const [h1, h2] = murmur3x64_128(enc.encode(b.hash), murmur);
    return { offset: Number(h1 % mb), skip: Number((h2 % (mb - 1n)) + 1n), next: 0 };
  });
  const table = new Array<number>(m).fill(-1);
  let filled = 0;
  for (;;) {
    for (let i = 0; i < sorted.length; i++) {
      const p = perm[i]!;
      let c = (p.offset + ((p.next * p.skip) % m)) % m;
      while (table[c]! >= 0) {
        p.next++;
        c = (p.offset + ((p.next * p.skip) % m)) % m;
      }
      table[c] = sorted[i]!.id;
      p.next++;
      if (++filled === m) return table;
    }
  }
}
