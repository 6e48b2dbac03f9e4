// Label selectors (matchLabels + matchExpressions In/NotIn/Exists/DoesNotExist) with Cilium's source
// prefixes (k8s:, reserved:, any:; an unprefixed key matches any source), parsing with validation and
// matching against an identity's labels. Mirrors pkg/policy/api/selector.go.

import { problemAt, type ManifestError, type SourceRef } from "./errors.ts";
import { splitSourceKey } from "./labels.ts";
import type { Label, Requirement, Selector, SelectorOp } from "./types.ts";

const OPS: SelectorOp[] = ["In", "NotIn", "Exists", "DoesNotExist"];

/** Parses a Kubernetes LabelSelector object; problems are appended to `problems`. */
export function parseSelector(
  raw: unknown,
  src: SourceRef | undefined,
  path: (string | number)[],
  problems: ManifestError[],
): Selector {
  const reqs: Requirement[] = [];
  if (raw === null || raw === undefined) return { requirements: reqs };
  if (typeof raw !== "object" || Array.isArray(raw)) {
    problems.push(problemAt(src, path, "invalid-selector", "a label selector must be an object"));
    return { requirements: reqs };
  }
  const r = raw as Record<string, unknown>;
  for (const k of Object.keys(r)) {
    if (k !== "matchLabels" && k !== "matchExpressions")
      problems.push(problemAt(src, [...path, k], "invalid-selector", `unknown selector field "${k}"`, "use matchLabels or matchExpressions"));
  }
  const ml = r.matchLabels;
  if (ml !== undefined && ml !== null) {
    if (typeof ml !== "object" || Array.isArray(ml)) problems.push(problemAt(src, [...path, "matchLabels"], "invalid-selector", "matchLabels must be a map"));
    else
      for (const [k, v] of Object.entries(ml as Record<string, unknown>)) {
        const sk = splitSourceKey(k);
        reqs.push({ ...sk, op: "In", values: [v === null || v === undefined ? "" : String(v)] });
      }
  }
  const me = r.matchExpressions;
  if (me !== undefined && me !== null) {
    if (!Array.isArray(me)) problems.push(problemAt(src, [...path, "matchExpressions"], "invalid-selector", "matchExpressions must be a list"));
    else
      me.forEach((e: Record<string, unknown>, i: number) => {
        const p = [...path, "matchExpressions", i];
        if (!e || typeof e !== "object") {
          problems.push(problemAt(src, p, "invalid-selector", "a match expression must be an object"));
          return;
        }
        const op = e.operator as SelectorOp;
        if (typeof e.key !== "string" || e.key === "") {
          problems.push(problemAt(src, [...p, "key"], "invalid-selector", "key is required"));
          return;
        }
        if (!OPS.includes(op)) {
          problems.push(problemAt(src, [...p, "operator"], "invalid-selector-operator", `unknown operator "${String(e.operator)}"`, "use In, NotIn, Exists or DoesNotExist"));
          return;
        }
        const values = Array.isArray(e.values) ? e.values.map(String) : [];
        if ((op === "In" || op === "NotIn") && values.length === 0)
          problems.push(problemAt(src, [...p, "values"], "selector-values-required", `operator ${op} needs at least one value`));
        if ((op === "Exists" || op === "DoesNotExist") && values.length > 0)
          problems.push(problemAt(src, [...p, "values"], "selector-values-forbidden", `operator ${op} takes no values`));
        reqs.push({ ...splitSourceKey(e.key), op, values });
      });
  }
  return { requirements: reqs };
}

/** Builds a selector from plain matchLabels (no validation). */
export function selectorFromLabels(m: Record<string, string>): Selector {
  return { requirements: Object.entries(m).map(([k, v]) => ({ ...splitSourceKey(k), op: "In" as const, values: [v] })) };
}

function reqMatches(labels: Label[], r: Requirement): boolean {
  // Several labels may share a key under different sources; any of them may satisfy In/Exists.
  const found = labels.filter((l) => l.key === r.key && (r.source === "any" || r.source === l.source));
  switch (r.op) {
    case "In":
      return found.some((l) => r.values.includes(l.value));
    case "NotIn":
      return !found.some((l) => r.values.includes(l.value));
    case "Exists":
      return found.length > 0;
    case "DoesNotExist":
      return found.length === 0;
  }
}

/** True when every requirement holds for the label set (an empty selector matches everything). */
export function selectorMatches(sel: Selector, labels: Label[]): boolean {
  return sel.requirements.every((r) => reqMatches(labels, r));
}

export function isWildcardSelector(sel: Selector): boolean {
  return sel.requirements.length === 0;
}

/** True when the selector has a requirement on the given key (source any or the given source). */
export function selectorHasKey(sel: Selector, key: string, sources: string[]): boolean {
  return sel.requirements.some((r) => r.key === key && sources.includes(r.source));
}

export function selectorUsesSource(sel: Selector, source: string): boolean {
  return sel.requirements.some((r) => r.source === source);
}

/** Human-readable form, e.g. {any:app=web, k8s:io.kubernetes.pod.namespace=x}. */
export function selectorText(sel: Selector): string {
  if (sel.requirements.length === 0) return "{}";
  const parts = sel.requirements.map((r) => {
    const k = `${r.source}:${r.key}`;
    if (r.op === "In" && r.values.length === 1) return `${k}=${r.values[0]}`;
    if (r.op === "In") return `${k} in (${r.values.join(",")})`;
    if (r.op === "NotIn") return `${k} notin (${r.values.join(",")})`;
    if (r.op === "Exists") return k;
    return `!${k}`;
  });
  return `{${parts.join(", ")}}`;
}
