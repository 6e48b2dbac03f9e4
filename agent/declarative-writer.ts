/*
 * Declarative publishing to a store that may be away: the caller says what it wants stored now (key →
 * value); the writer stores what differs from what it last stored and removes what is no longer wanted,
 * one pass at a time with later requests coalesced into one more pass, and retries a failed pass after
 * `retryMs` until the store answers. Used by crd-state.ts (CiliumEndpoint/CiliumNode objects); the same
 * rule as kvstore-state.ts's S2.
 */
export interface DeclarativeWriterOptions<V> {
  /** Stores one value (create or replace). */
  put(key: string, value: V): Promise<void>;
  /** Removes one key (absent is not an error). */
  remove(key: string): Promise<void>;
  /** How a value compares with the last one stored. */
  fingerprint(value: V): string;
  /** A failed pass, before its retry. */
  onError(e: Error): void;
  retryMs: number;
}

export class DeclarativeWriter<V> {
  private want = new Map<string, V>();
  /** key → fingerprint of what was last stored. */
  private readonly stored = new Map<string, string>();
  private pass?: Promise<void>;
  private passAgain = false;
  private retry?: NodeJS.Timeout;
  private stopped = false;

  constructor(private readonly o: DeclarativeWriterOptions<V>) {}

  /** Sets what should be stored; the writes follow. */
  set(want: Map<string, V>): void {
    this.want = want;
    this.kick();
  }

  /** Forgets that `key` is stored (it went away behind the writer's back) and writes it again if wanted. */
  lost(key: string): void {
    if (!this.stored.delete(key) || !this.want.has(key)) return;
    this.kick();
  }

  wants(key: string): boolean {
    return this.want.has(key);
  }

  /** True when everything wanted is stored. */
  synced(): boolean {
    return !this.pass && [...this.want].every(([k, v]) => this.stored.get(k) === this.o.fingerprint(v));
  }

  private kick(): void {
    if (!this.stopped) void this.run().catch(() => undefined);
  }

  /** One pass at a time; a request during a pass makes one more. */
  run(): Promise<void> {
    if (this.pass) {
      this.passAgain = true;
      return this.pass;
    }
    this.pass = this.passes().finally(() => (this.pass = undefined));
    return this.pass;
  }

  private async passes(): Promise<void> {
    do {
      this.passAgain = false;
      try {
        const want = this.want;
        for (const [k, v] of want) {
          const fp = this.o.fingerprint(v);
          if (this.stored.get(k) === fp) continue;
          await this.o.put(k, v);
          this.stored.set(k, fp);
        }
        for (const k of [...this.stored.keys()]) {
          if (want.has(k)) continue;
          await this.o.remove(k);
          this.stored.delete(k);
        }
      } catch (e) {
        this.o.onError(e as Error);
        if (!this.stopped) this.retry ??= setTimeout(() => ((this.retry = undefined), this.kick()), this.o.retryMs);
        throw e;
      }
    } while (this.passAgain && !this.stopped);
  }

  /** Stops writing; with `removeAll`, removes everything stored first (errors reported, not thrown). */
  async stop(removeAll = false): Promise<void> {
    this.stopped = true;
    clearTimeout(this.retry);
    await this.pass?.catch(() => undefined);
    if (!removeAll) return;
    for (const k of [...this.stored.keys()]) {
      await this.o.remove(k).then(
        () => this.stored.delete(k),
        (e: Error) => this.o.onError(e),
      );
    }
  }
}
