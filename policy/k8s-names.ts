// Kubernetes' own name and label validation (k8s.io/apimachinery pkg/util/validation/validation.go and
// pkg/api/validation/objectmeta.go): object names are DNS-1123 subdomains (Namespaces DNS-1123 labels,
// Services DNS-1035 labels), namespaces DNS-1123 labels, label keys an optional DNS-1123-subdomain prefix
// and a name of at most 63 characters, label values at most 63 characters of the same alphabet. The API
// server refuses an object that breaks any of them; so does ciliate, with the same wording.

const DNS1123_LABEL = /^[a-z0-9]([-a-z0-9]*[a-z0-9])?$/;
const DNS1123_SUBDOMAIN = /^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$/;
const DNS1035_LABEL = /^[a-z]([-a-z0-9]*[a-z0-9])?$/;
const QUALIFIED_NAME = /^([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9]$/;
const LABEL_VALUE = /^(([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9])?$/;

export interface NameProblem {
  path: (string | number)[];
  detail: string;
}

/** DNS-1123 label: at most 63 lowercase alphanumerics or '-', starting and ending alphanumeric. */
export function dns1123Label(v: string): string | undefined {
  if (v.length > 63) return "must be no more than 63 characters";
  if (!DNS1123_LABEL.test(v)) return "a lowercase RFC 1123 label must consist of lower case alphanumeric characters or '-', and must start and end with an alphanumeric character";
  return undefined;
}

/** DNS-1123 subdomain: at most 253 characters, dot-separated DNS-1123 labels. */
export function dns1123Subdomain(v: string): string | undefined {
  if (v.length > 253) return "must be no more than 253 characters";
  if (!DNS1123_SUBDOMAIN.test(v))
    return "a lowercase RFC 1123 subdomain must consist of lower case alphanumeric characters, '-' or '.', and must start and end with an alphanumeric character";
  return undefined;
}

/** DNS-1035 label (Service names): like a DNS-1123 label but starting with a letter. */
export function dns1035Label(v: string): string | undefined {
  if (v.length > 63) return "must be no more than 63 characters";
  if (!DNS1035_LABEL.test(v)) return "a DNS-1035 label must consist of lower case alphanumeric characters or '-', start with an alphabetic character, and end with an alphanumeric character";
  return undefined;
}

/** A label key (qualified name): `[prefix/]name`, prefix a DNS-1123 subdomain, name at most 63 characters. */
export function labelKey(k: string): string | undefined {
  const parts = k.split("/");
  if (parts.length > 2) return "a qualified name must consist of alphanumeric characters, '-', '_' or '.', with an optional DNS subdomain prefix and '/'";
  const name = parts.length === 2 ? parts[1]! : parts[0]!;
  if (parts.length === 2) {
    if (parts[0]!.length === 0) return "prefix part must be non-empty";
    const p = dns1123Subdomain(parts[0]!);
    if (p) return `prefix part ${p}`;
  }
  if (name.length === 0) return "name part must be non-empty";
  if (name.length > 63) return "name part must be no more than 63 characters";
  if (!QUALIFIED_NAME.test(name)) return "name part must consist of alphanumeric characters, '-', '_' or '.', and must start and end with an alphanumeric character";
  return undefined;
}

/** A label value: empty, or at most 63 characters, alphanumerics, '-', '_' or '.', alphanumeric at both ends. */
export function labelValue(v: string): string | undefined {
  if (v.length > 63) return "must be no more than 63 characters";
  if (!LABEL_VALUE.test(v)) return "a valid label must be an empty string or consist of alphanumeric characters, '-', '_' or '.', and must start and end with an alphanumeric character";
  return undefined;
}

/** The name rule each kind's metadata.name follows (the API server's per-kind ValidateName). */
function nameRule(kind: string): (v: string) => string | undefined {
  if (kind === "Namespace") return dns1123Label;
  if (kind === "Service") return dns1035Label;
  return dns1123Subdomain;
}

/** Every name and label problem of an object's metadata (and of a workload's pod template labels). */
export function metadataProblems(kind: string, raw: Record<string, unknown>): NameProblem[] {
  const out: NameProblem[] = [];
  const md = (raw.metadata ?? {}) as Record<string, unknown>;
  if (typeof md.name === "string" && md.name !== "") {
    const p = nameRule(kind)(md.name);
    if (p) out.push({ path: ["metadata", "name"], detail: `Invalid value ${JSON.stringify(md.name)}: ${p}` });
  }
  if (typeof md.namespace === "string" && md.namespace !== "") {
    const p = dns1123Label(md.namespace);
    if (p) out.push({ path: ["metadata", "namespace"], detail: `Invalid value ${JSON.stringify(md.namespace)}: ${p}` });
  }
  const labels = (base: (string | number)[], v: unknown) => {
    if (!v || typeof v !== "object") return;
    for (const [k, x] of Object.entries(v as Record<string, unknown>)) {
      const pk = labelKey(k);
      if (pk) out.push({ path: [...base, k], detail: `Invalid label key ${JSON.stringify(k)}: ${pk}` });
      if (typeof x === "string") {
        const pv = labelValue(x);
        if (pv) out.push({ path: [...base, k], detail: `Invalid label value ${JSON.stringify(x)}: ${pv}` });
      }
    }
  };
  labels(["metadata", "labels"], md.labels);
  const tmpl = ((raw.spec ?? {}) as Record<string, unknown>).template as Record<string, unknown> | undefined;
  if (tmpl && typeof tmpl === "object") labels(["spec", "template", "metadata", "labels"], (tmpl.metadata as Record<string, unknown> | undefined)?.labels);
  return out;
}
