// The selector cache: selections answered from the label index equal matching every identity, and they
// follow identities that appear, disappear or change labels, with a new version exactly when they change.
import { describe, expect, it } from "vitest";
import fc from "fast-check";
import { SelectorCache } from "./selector-cache.ts";
import { selectorMatches } from "./selector.ts";
import type { Identity, Selector } from "./types.ts";

const k8s = (key: string, value: string) => ({ source: "k8s", key, value });
const ident = (id: number, labels: Record<string, string>): Identity => ({ id, labels: Object.entries(labels).map(([k, v]) => k8s(k, v)), pods: [] });
const sel = (reqs: [string, "In" | "NotIn" | "Exists" | "DoesNotExist", string[]][]): Selector => ({ requirements: reqs.map(([key, op, values]) => ({ source: "any", key, op, values })) });

describe("SelectorCache", () => {
  it("follows identities that appear, disappear and change labels, bumping versions only on change", () => {
    const c = new SelectorCache();
    c.sync([ident(256, { app: "a" }), ident(257, { app: "b" })]);
    const a = c.select(sel([["app", "In", ["a"]]]));
    const notA = c.select(sel([["app", "NotIn", ["a"]]]));
    expect(a.ids).toEqual([256]);
    expect(notA.ids).toEqual([257]);
    const v = a.version;
    c.sync([ident(256, { app: "a" }), ident(257, { app: "b" }), ident(258, { app: "a" })]);
    expect(a.ids).toEqual([256, 258]);
    expect(a.version).not.toBe(v);
    const vNot = notA.version;
    c.sync([ident(256, { app: "a" }), ident(257, { app: "b" }), ident(258, { app: "a" })]);
    expect(notA.version).toBe(vNot); // nothing changed
    c.sync([ident(256, { app: "b" }), ident(258, { app: "a" })]); // 256 relabelled, 257 gone
    expect(a.ids).toEqual([258]);
    expect(notA.ids).toEqual([256]);
  });

  it("answers like matching every identity, after any sequence of identity sets", () => {
    const labels = fc.record({ app: fc.constantFrom("a", "b", "c"), tier: fc.constantFrom("x", "y") }, { requiredKeys: [] });
    const sets = fc.array(fc.array(fc.tuple(fc.integer({ min: 256, max: 263 }), labels), { maxLength: 6 }), { minLength: 1, maxLength: 5 });
    const sels = fc.array(
      fc.array(fc.tuple(fc.constantFrom("app", "tier"), fc.constantFrom("In" as const, "NotIn" as const, "Exists" as const, "DoesNotExist" as const), fc.constantFrom(["a"], ["b", "x"], ["c"])), { maxLength: 2 }),
      { minLength: 1, maxLength: 4 },
    );
    fc.assert(
      fc.property(sets, sels, (steps, selectors) => {
        const c = new SelectorCache();
        for (const step of steps) {
          const ids = [...new Map(step.map(([id, l]) => [id, ident(id, l)])).values()];
          c.sync(ids);
          for (const s of selectors) {
            const selector = sel(s.map(([k, op, v]) => [k, op, op === "Exists" || op === "DoesNotExist" ? [] : [...v]]));
            const want = ids.filter((i) => selectorMatches(selector, i.labels)).map((i) => i.id).sort((x, y) => x - y);
            expect(c.select(selector).ids).toEqual(want);
          }
        }
      }),
      { numRuns: 100 },
    );
  });
});
