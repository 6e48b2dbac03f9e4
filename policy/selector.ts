// Label selectors (matchLabels + matchExpressions In/NotIn/Exists/DoesNotExist) with Cilium's source
// prefixes (k8s:, reserved:, any:; an unprefixed key matches any source), parsing with validation and
// matching against an identity's labels. Mirrors pkg/policy/api/selector.go.

import { problemAt, type ManifestError, type SourceRef } from "./errors.ts";
import { invalidValue, isQualifiedName, isValidLabelValue } from "./k8s-names.ts";
import { splitSourceKey } from "./labels.ts";
import type { Label, Requirement, Selector, SelectorOp } from "./types.ts";

const OPS: SelectorOp[] = ["In", "NotIn", "Exists", "DoesNotExist"];

/**
 * Whose validation a selector gets: Kubernetes' ValidateLabelSelector (NetworkPolicy selectors, in the API
 * server's words), or Cilium's EndpointSelector.sanitize (pkg/policy/api/selector.go), which runs the same
 * function on the extended keys (`k8s:app` is `k8s.app`, an unprefixed `app` is `any.app`) and wraps each
 * error as `invalid label selector: <field>: <error>`.
 */
export type SelectorValidation = "kubernetes" | "cilium";

/** labels.GetExtendedKeyFrom: `source.key` (no source: `any`; `$x` and `reserved.x` are reserved), without a `=value` tail. */
function extendedKey(k: string): string {
  const i = k.indexOf(":");
  if (i < 0 && (k.startsWith("$") || k.startsWith("reserved."))) k = `reserved:${k.startsWith("$") ? k.slice(1) : k.slice("reserved.".length)}`;
  const j = k.indexOf(":");
  const src = j > 0 ? k.slice(0, j) : "any";
  const next = j >= 0 ? k.slice(j + 1) : k;
  const eq = next.indexOf("=");
  return `${src}.${eq >= 0 ? next.slice(0, eq) : next}`;
}

const fieldText = (rel: (string | number)[]) => rel.map((x, i) => (typeof x === "number" ? `[${x}]` : i ? `.${x}` : x)).join("");

/** Parses a Kubernetes LabelSelector object; problems are appended to `problems`. */
export function parseSelector(
  raw: unknown,
  src: SourceRef | undefined,
  path: (string | number)[],
  problems: ManifestError[],
  validation: SelectorValidation = "kubernetes",
): Selector {
  // rel: the field inside the selector (named in Cilium's message); at: where the problem is reported.
  const report = (rel: (string | number)[], at: (string | number)[], code: string, body: string) =>
    problems.push(problemAt(src, [...path, ...at], code, validation === "cilium" ? `invalid label selector: ${fieldText(rel)}: ${body}` : body));
  const checkKey = (k: string, rel: (string | number)[], at: (string | number)[]) => {
    const key = validation === "cilium" ? extendedKey(k) : k;
    for (const m of isQualifiedName(key)) report(rel, at, "invalid-selector-key", invalidValue(key, m));
  };
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
        checkKey(k, ["matchLabels"], ["matchLabels", k]);
        if (typeof v === "string") for (const m of isValidLabelValue(v)) report(["matchLabels"], ["matchLabels", k], "invalid-selector-value", invalidValue(v, m));
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
        const rel = ["matchExpressions", i];
        if ((op === "In" || op === "NotIn") && values.length === 0)
          report([...rel, "values"], [...rel, "values"], "selector-values-required", "Required value: must be specified when `operator` is 'In' or 'NotIn'");
        if ((op === "Exists" || op === "DoesNotExist") && values.length > 0)
          report([...rel, "values"], [...rel, "values"], "selector-values-forbidden", "Forbidden: may not be specified when `operator` is 'Exists' or 'DoesNotExist'");
        checkKey(e.key, [...rel, "key"], [...rel, "key"]);
        values.forEach((v, j) => {
          for (const m of isValidLabelValue(v)) report([...rel, "values", j], [...rel, "values", j], "invalid-selector-value", invalidValue(v, m));
        });
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
