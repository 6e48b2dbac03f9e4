// Kubernetes' own name and label validation (k8s.io/apimachinery pkg/util/validation/validation.go,
// pkg/api/validation/objectmeta.go and pkg/apis/meta/v1/validation ValidateLabelSelector): object names
// are DNS-1123 subdomains (Namespaces DNS-1123 labels, Services DNS-1035 labels), namespaces DNS-1123
// labels, label keys qualified names (an optional DNS-1123-subdomain prefix and a name of at most 63
// characters), label values at most 63 characters of the same alphabet. The API server refuses an object
// that breaks any of them; so does ciliate, with the API server's words (field.Invalid: `Invalid value:
// "<value>": <message>`, messages with their examples and regex as RegexError writes them).

const QUALIFIED_NAME_FMT = "([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9]";
const LABEL_VALUE_FMT = `(${QUALIFIED_NAME_FMT})?`;
const DNS1123_LABEL_FMT = "[a-z0-9]([-a-z0-9]*[a-z0-9])?";
const DNS1123_SUBDOMAIN_FMT = `${DNS1123_LABEL_FMT}(\\.${DNS1123_LABEL_FMT})*`;
const DNS1035_LABEL_FMT = "[a-z]([-a-z0-9]*[a-z0-9])?";
const whole = (fmt: string) => new RegExp(`^${fmt}$`);

/** validation.RegexError: the message, its examples and the regex. */
function regexError(msg: string, fmt: string, ...examples: string[]): string {
  return `${msg} (e.g. ${examples.map((e) => `'${e}', `).join(" or ")}regex used for validation is '${fmt}')`;
}
const maxLen = (n: number) => `must be no more than ${n} characters`;

/** validation.IsDNS1123Label. */
export function isDNS1123Label(v: string): string[] {
  const out: string[] = [];
  if (v.length > 63) out.push(maxLen(63));
  if (!whole(DNS1123_LABEL_FMT).test(v))
    out.push(regexError("a lowercase RFC 1123 label must consist of lower case alphanumeric characters or '-', and must start and end with an alphanumeric character", DNS1123_LABEL_FMT, "my-name", "123-abc"));
  return out;
}

/** validation.IsDNS1123Subdomain. */
export function isDNS1123Subdomain(v: string): string[] {
  const out: string[] = [];
  if (v.length > 253) out.push(maxLen(253));
  if (!whole(DNS1123_SUBDOMAIN_FMT).test(v))
    out.push(regexError("a lowercase RFC 1123 subdomain must consist of lower case alphanumeric characters, '-' or '.', and must start and end with an alphanumeric character", DNS1123_SUBDOMAIN_FMT, "example.com"));
  return out;
}

/** validation.IsDNS1035Label (Service names). */
export function isDNS1035Label(v: string): string[] {
  const out: string[] = [];
  if (v.length > 63) out.push(maxLen(63));
  if (!whole(DNS1035_LABEL_FMT).test(v))
    out.push(regexError("a DNS-1035 label must consist of lower case alphanumeric characters or '-', start with an alphabetic character, and end with an alphanumeric character", DNS1035_LABEL_FMT, "my-name", "abc-123"));
  return out;
}

const QUALIFIED_MSG = "must consist of alphanumeric characters, '-', '_' or '.', and must start and end with an alphanumeric character";

/** validation.IsQualifiedName (label keys): `[prefix/]name`. */
export function isQualifiedName(v: string): string[] {
  const out: string[] = [];
  const parts = v.split("/");
  let name: string;
  if (parts.length === 1) name = parts[0]!;
  else if (parts.length === 2) {
    name = parts[1]!;
    if (parts[0] === "") out.push("prefix part must be non-empty");
    else out.push(...isDNS1123Subdomain(parts[0]!).map((m) => `prefix part ${m}`));
  } else return [`a qualified name ${regexError(QUALIFIED_MSG, QUALIFIED_NAME_FMT, "MyName", "my.name", "123-abc")} with an optional DNS subdomain prefix and '/' (e.g. 'example.com/MyName')`];
  if (name.length === 0) out.push("name part must be non-empty");
  else if (name.length > 63) out.push(`name part ${maxLen(63)}`);
  if (!whole(QUALIFIED_NAME_FMT).test(name)) out.push(`name part ${regexError(QUALIFIED_MSG, QUALIFIED_NAME_FMT, "MyName", "my.name", "123-abc")}`);
  return out;
}

/** validation.IsValidLabelValue. */
export function isValidLabelValue(v: string): string[] {
  const out: string[] = [];
  if (v.length > 63) out.push(maxLen(63));
  if (!whole(LABEL_VALUE_FMT).test(v))
    out.push(regexError("a valid label must be an empty string or consist of alphanumeric characters, '-', '_' or '.', and must start and end with an alphanumeric character", LABEL_VALUE_FMT, "MyValue", "my_value", "12345"));
  return out;
}

const first = (msgs: string[]) => msgs[0];
/** The first problem of each rule, or undefined when the value is valid. */
export const dns1123Label = (v: string) => first(isDNS1123Label(v));
export const dns1123Subdomain = (v: string) => first(isDNS1123Subdomain(v));
export const dns1035Label = (v: string) => first(isDNS1035Label(v));
export const labelKey = (v: string) => first(isQualifiedName(v));
export const labelValue = (v: string) => first(isValidLabelValue(v));

export interface NameProblem {
  path: (string | number)[];
  detail: string;
}

/** field.Invalid's body. */
export const invalidValue = (v: unknown, msg: string) => `Invalid value: ${JSON.stringify(v)}: ${msg}`;

/** The name rule each kind's metadata.name follows (the API server's per-kind ValidateName). */
function nameRule(kind: string): (v: string) => string[] {
  if (kind === "Namespace") return isDNS1123Label;
  if (kind === "Service") return isDNS1035Label;
  return isDNS1123Subdomain;
}

/** ValidateLabels: every key and value problem, at the labels' path. */
export function labelsProblems(base: (string | number)[], v: unknown): NameProblem[] {
  const out: NameProblem[] = [];
  if (!v || typeof v !== "object") return out;
  for (const [k, x] of Object.entries(v as Record<string, unknown>)) {
    for (const m of isQualifiedName(k)) out.push({ path: [...base, k], detail: invalidValue(k, m) });
    if (typeof x === "string") for (const m of isValidLabelValue(x)) out.push({ path: [...base, k], detail: invalidValue(x, m) });
  }
  return out;
}

/** Every name and label problem of an object's metadata (and of a workload's pod template labels). */
export function metadataProblems(kind: string, raw: Record<string, unknown>): NameProblem[] {
  const out: NameProblem[] = [];
  const md = (raw.metadata ?? {}) as Record<string, unknown>;
  if (typeof md.name === "string" && md.name !== "") for (const m of nameRule(kind)(md.name)) out.push({ path: ["metadata", "name"], detail: invalidValue(md.name, m) });
  if (typeof md.namespace === "string" && md.namespace !== "") for (const m of isDNS1123Label(md.namespace)) out.push({ path: ["metadata", "namespace"], detail: invalidValue(md.namespace, m) });
  out.push(...labelsProblems(["metadata", "labels"], md.labels));
  const tmpl = ((raw.spec ?? {}) as Record<string, unknown>).template as Record<string, unknown> | undefined;
  if (tmpl && typeof tmpl === "object") out.push(...labelsProblems(["spec", "template", "metadata", "labels"], (tmpl.metadata as Record<string, unknown> | undefined)?.labels));
  return out;
}
