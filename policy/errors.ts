// Errors and problems reported by the policy engine. Every class carries a stable `code` (for scripts and
// tests) and a `hint` (what to do about it). Problems found while loading or validating manifests name the
// file, the document index (0-based), the line (1-based, 0 when unknown) and the field path.

export interface SourceRef {
  file: string;
  doc: number;
  /** Resolves a field path inside the document to a 1-based line (0 when unknown). */
  lineOf?: (path: (string | number)[]) => number;
}

/** Base class: a Node-side error with a stable code and a hint. */
export class PolicyError extends Error {
  constructor(
    readonly code: string,
    message: string,
    readonly hint = "",
  ) {
    super(message);
    this.name = "PolicyError";
  }
}

/** One problem in one manifest document (parse error, invalid field, refused policy). */
export class ManifestError extends PolicyError {
  constructor(
    code: string,
    readonly file: string,
    readonly doc: number,
    readonly line: number,
    readonly path: string,
    readonly detail: string,
    hint = "",
    /** "Kind ns/name" of the object the problem is in, when known. */
    readonly object = "",
  ) {
    super(code, `${file}: document ${doc}, line ${line}: ${object ? `${object} ` : ""}${path || "(document)"}: ${detail}`, hint);
    this.name = "ManifestError";
  }
}

/** Raised when the per-endpoint policy map would hold more entries than the budget. */
export class PolicyBudgetError extends PolicyError {
  constructor(
    readonly endpoint: string,
    readonly entries: number,
    readonly budget: number,
    readonly policies: { policy: string; entries: number }[],
  ) {
    super(
      "policy-map-overflow",
      `endpoint ${endpoint} needs ${entries} policy-map entries, over the budget of ${budget}; ` +
        `policies contributing: ${policies.map((p) => `${p.policy} (${p.entries})`).join(", ")}`,
      "narrow the selectors or port ranges of these policies, or raise the entry budget (policyMapMax)",
    );
    this.name = "PolicyBudgetError";
  }
}

/** Formats a field path like Kubernetes does: spec.ingress[0].toPorts[1].ports[0].port */
export function formatPath(path: (string | number)[]): string {
  let s = "";
  for (const p of path) {
    if (typeof p === "number") s += `[${p}]`;
    else s += s ? `.${p}` : p;
  }
  return s;
}

/** Builds a ManifestError for a field of a source document. */
export function problemAt(src: SourceRef | undefined, path: (string | number)[], code: string, detail: string, hint = "", object = ""): ManifestError {
  const file = src?.file ?? "<memory>";
  const doc = src?.doc ?? 0;
  let line = 0;
  if (src?.lineOf) {
    // Walk up the path until a node with a position is found.
    for (let n = path.length; n >= 0 && line === 0; n--) line = src.lineOf(path.slice(0, n));
  }
  return new ManifestError(code, file, doc, line, formatPath(path), detail, hint, object);
}
