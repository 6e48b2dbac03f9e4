/*
 * Memory for the WASM/JS hosts of core: a bump allocator for tables created at start-up, and a small
 * per-invocation arena behind stackAlloc. In C, each stackAlloc(SIZE) call site becomes its own zeroed slot
 * in the per-CPU array map ciliate_scratch_v1 (codegen binds it by the @seam-alloca tag): the pipeline's
 * structs do not fit the 512-byte BPF stack, and a pointer returned by a callee must outlive its frame.
 */
import { ensureMemory, heapBase, memFill, memoryBytes } from "./env";

const ARENA_SIZE: u32 = 16384;

let heapTop: usize = 0;
let arenaBase: usize = 0;
let arenaTop: usize = 0;

function alignUp(p: usize, a: usize): usize {
  return (p + a - 1) & ~(a - 1);
}

/** Allocates `size` zeroed bytes that live for the life of the instance. Returns 0 when memory cannot
 * grow. Not used on the packet path.
 * Only the part that was memory before this call is cleared: the rest was added by growing it, and new
 * memory is zero. A simulated node's maps are tens of megabytes, most never written; clearing them
 * touched every page: about a fifth of a `ciliate trace` in a CPU profile. */
export function allocStatic(size: usize, align: usize): usize {
  if (heapTop == 0) heapTop = alignUp(heapBase(), 16);
  const p = alignUp(heapTop, align);
  const end = p + size;
  const had = memoryBytes();
  if (!ensureMemory(end)) return 0;
  if (p < had) memFill(p, 0, (end < had ? end : had) - p);
  heapTop = end;
  return p;
}

/** Bytes allocated so far (for memory reports). */
export function heapUsed(): usize {
  return heapTop == 0 ? 0 : heapTop - heapBase();
}

/** Resets the per-invocation arena; every entry point calls it first. */
export function arenaReset(): void {
  if (arenaBase == 0) {
    arenaBase = allocStatic(ARENA_SIZE, 16);
  }
  arenaTop = arenaBase;
}

/** Zeroed scratch memory for one key/value/tuple that lives until the entry point returns (in C: until
 * the same call site runs again in the same invocation).
 * Returns 0 if the arena is exhausted (a bounded packet path never gets there). @seam-alloca */
export function stackAlloc(size: u32): usize {
  const p = alignUp(arenaTop, 8);
  if (p + size > arenaBase + ARENA_SIZE) return 0;
  memFill(p, 0, size);
  arenaTop = p + size;
  return p;
}
