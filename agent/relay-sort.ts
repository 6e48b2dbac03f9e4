/*
 * The relay's sort buffer: flows from several nodes, each stream already in time order, come out as one
 * stream in time order with a bounded number held (Hubble Relay's priority queue, cilium/cilium
 * pkg/hubble/relay/queue/priority_queue.go and sortFlows in pkg/hubble/relay/observer/observer.go).
 *
 * A flow leaves the buffer when
 *   1. the buffer holds more than its bound (the oldest leaves, as Hubble's does when full);
 *   2. every node still sending has a flow in the buffer: the oldest of them cannot be overtaken by a
 *      later flow of any node (a k-way merge; Hubble Relay has no such rule, so without it a finite
 *      request is only ordered within the buffer's length);
 *   3. on a drain tick, its time is older than now minus the drain window (Hubble's sort-buffer drain
 *      timeout): a quiet node holds the others back for at most that long (follow requests);
 *   4. every node has finished: everything left leaves in order.
 * Ties on time keep arrival order.
 */

/** A protobuf Timestamp as @grpc/proto-loader writes it (64-bit seconds as a string). */
export interface TimestampObject {
  seconds?: string | number;
  nanos?: number;
}

/** Nanoseconds since the epoch of a Timestamp (absent: 0), exact as a bigint. */
export function timestampNs(t: TimestampObject | undefined): bigint {
  return BigInt(t?.seconds ?? 0) * 1_000_000_000n + BigInt(t?.nanos ?? 0);
}

interface Entry<T> {
  ns: bigint;
  seq: number;
  source: string;
  item: T;
}

export class SortBuffer<T> {
  private readonly heap: Entry<T>[] = [];
  private readonly held = new Map<string, number>();
  private seq = 0;

  /** `bound`: the most flows held (Hubble Relay's --sort-buffer-len-max, default 100). */
  constructor(private readonly bound: number) {}

  get size(): number {
    return this.heap.length;
  }

  /** Flows held from `source`. */
  heldFrom(source: string): number {
    return this.held.get(source) ?? 0;
  }

  push(source: string, ns: bigint, item: T): void {
    this.heap.push({ ns, seq: this.seq++, source, item });
    this.held.set(source, this.heldFrom(source) + 1);
    this.up(this.heap.length - 1);
  }

  /**
   * What may leave now, oldest first, under rules 1 and 2 (`sending`: the sources whose streams are still
   * open; when none is, that is rule 4 and everything leaves).
   */
  ready(sending: ReadonlySet<string>): T[] {
    const out: T[] = [];
    const allHeld = () => [...sending].every((s) => this.heldFrom(s) > 0);
    while (this.heap.length && (this.heap.length > this.bound || allHeld())) out.push(this.pop()!);
    return out;
  }

  /** Rule 3: every flow whose time is before `beforeNs`, oldest first. */
  olderThan(beforeNs: bigint): T[] {
    const out: T[] = [];
    while (this.heap.length && this.heap[0]!.ns < beforeNs) out.push(this.pop()!);
    return out;
  }

  private less(a: Entry<T>, b: Entry<T>): boolean {
    return a.ns < b.ns || (a.ns === b.ns && a.seq < b.seq);
  }

  private pop(): T | undefined {
    const top = this.heap[0];
    if (!top) return undefined;
    const last = this.heap.pop()!;
    if (this.heap.length) {
      this.heap[0] = last;
      this.down(0);
    }
    this.held.set(top.source, this.heldFrom(top.source) - 1);
    return top.item;
  }

  private up(i: number): void {
    const h = this.heap;
    while (i > 0) {
      const p = (i - 1) >> 1;
      if (!this.less(h[i]!, h[p]!)) break;
      [h[i], h[p]] = [h[p]!, h[i]!];
      i = p;
    }
  }

  private down(i: number): void {
    const h = this.heap;
    for (;;) {
      const l = 2 * i + 1;
      const r = l + 1;
      let m = i;
      if (l < h.length && this.less(h[l]!, h[m]!)) m = l;
      if (r < h.length && this.less(h[r]!, h[m]!)) m = r;
      if (m === i) return;
      [h[i], h[m]] = [h[m]!, h[i]!];
      i = m;
    }
  }
}
