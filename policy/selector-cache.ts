// The selector cache, as Cilium keeps one (cilium/cilium pkg/policy/selectorcache.go): every distinct
// label selector the policies use keeps the set of identities it selects, and that set is updated when
// identities appear or disappear instead of being recomputed by matching every selector against every
// identity at every compile. A fresh selector is answered from a label index (an In requirement narrows
// the candidates to the identities carrying one of its values), so the first compile costs about the
// size of the selections, not selectors × identities. Each selection carries a version that changes
// exactly when its identity set changes, which the incremental compiler (compile.ts PolicyCompiler) uses
// to know which computed policies a change touches.

import { labelString } from "./labels.ts";
import { selectorMatches } from "./selector.ts";
import type { Identity, Label, Selector } from "./types.ts";

export interface Selection {
  selector: Selector;
  /** Selected identities, ascending (the identity table's order). */
  ids: number[];
  /** Changes whenever `ids` changes. */
  version: number;
}

const keys = new WeakMap<Selector, string>();

/** Canonical text of a selector: the cache key (requirement order kept, as matching does not depend on it).
 * Kept per selector object: translated rules are not changed once built, and the incremental compiler
 * asks for the key of every peer and subject at every compile. */
export function selectorKey(sel: Selector): string {
  let k = keys.get(sel);
  if (k === undefined) keys.set(sel, (k = JSON.stringify(sel.requirements)));
  return k;
}

function labelSetKey(labels: Label[]): string {
  return labels.map(labelString).join(",");
}

function sortedInsert(a: number[], v: number): void {
  let lo = 0;
  let hi = a.length;
  while (lo < hi) {
    const mid = (lo + hi) >> 1;
    if (a[mid]! < v) lo = mid + 1;
    else hi = mid;
  }
  a.splice(lo, 0, v);
}

export class SelectorCache {
  /** id → its label set and that set's text (an id whose labels change is a removal plus an addition). */
  private identities = new Map<number, { labels: Label[]; key: string }>();
  /** "key\0value" (any source) → identities carrying such a label. */
  private index = new Map<string, Set<number>>();
  private selections = new Map<string, Selection>();
  private nextVersion = 1;
  /** Changes whenever the identity set changes. */
  identitiesVersion = 0;

  /**
   * Brings the cache to the given identity set: identities that disappeared (or whose labels changed) leave
   * every selection that held them, new ones join every selection they match. Returns the number of
   * identities added plus removed (0: nothing changed).
   */
  sync(all: Identity[]): number {
    const seen = new Set<number>();
    const added: Identity[] = [];
    for (const i of all) {
      seen.add(i.id);
      const have = this.identities.get(i.id);
      if (have && (have.labels === i.labels || have.key === labelSetKey(i.labels))) continue;
      if (have) this.remove(i.id);
      added.push(i);
    }
    let removed = 0;
    for (const id of [...this.identities.keys()]) if (!seen.has(id)) {
      this.remove(id);
      removed++;
    }
    for (const i of added) this.add(i);
    if (added.length + removed) this.identitiesVersion++;
    return added.length + removed;
  }

  private add(i: Identity): void {
    this.identities.set(i.id, { labels: i.labels, key: labelSetKey(i.labels) });
    for (const l of i.labels) {
      const k = `${l.key}\0${l.value}`;
      let s = this.index.get(k);
      if (!s) this.index.set(k, (s = new Set()));
      s.add(i.id);
    }
    for (const sel of this.selections.values())
      if (selectorMatches(sel.selector, i.labels)) {
        sortedInsert(sel.ids, i.id);
        sel.version = this.nextVersion++;
      }
  }

  private remove(id: number): void {
    const have = this.identities.get(id);
    if (!have) return;
    this.identities.delete(id);
    for (const l of have.labels) this.index.get(`${l.key}\0${l.value}`)?.delete(id);
    for (const sel of this.selections.values()) {
      const at = sel.ids.indexOf(id);
      if (at >= 0) {
        sel.ids.splice(at, 1);
        sel.version = this.nextVersion++;
      }
    }
  }

  /** The identities a selector selects (kept, and updated by later syncs). */
  select(sel: Selector): Selection {
    const key = selectorKey(sel);
    let s = this.selections.get(key);
    if (!s) {
      s = { selector: sel, ids: this.evaluate(sel), version: this.nextVersion++ };
      this.selections.set(key, s);
    }
    return s;
  }

  /** Labels of a known identity. */
  labelsOf(id: number): Label[] | undefined {
    return this.identities.get(id)?.labels;
  }

  /** Forgets selections no longer in use (keeps the cache the size of the policies it serves). */
  retain(keys: Set<string>): void {
    for (const k of [...this.selections.keys()]) if (!keys.has(k)) this.selections.delete(k);
  }

  private evaluate(sel: Selector): number[] {
    // Candidates: the identities with a label one In requirement asks for (the smallest such set), or all.
    let best: number[] | undefined;
    for (const r of sel.requirements) {
      if (r.op !== "In") continue;
      const cand: number[] = [];
      for (const v of r.values) for (const id of this.index.get(`${r.key}\0${v}`) ?? []) cand.push(id);
      if (!best || cand.length < best.length) best = cand;
    }
    const out: number[] = [];
    const seen = new Set<number>();
    for (const id of best ?? this.identities.keys()) {
      if (seen.has(id)) continue;
      seen.add(id);
      if (selectorMatches(sel, this.identities.get(id)!.labels)) out.push(id);
    }
    return out.sort((a, b) => a - b);
  }
}
