// Labels as Cilium models them ({source, key, value}, printed source:key=value), source prefixes in
// selector keys, the default identity-relevant label filter, and the label set of a pod's identity.
// Mirrors pkg/labels, pkg/labelsfilter/filter.go (defaultLabelPrefixCfg) and the extra labels Cilium
// adds to pods (pkg/k8s/apis/cilium.io/const.go).

import type { NodeModel, Label, NamespaceModel, PodModel } from "./types.ts";

export const KNOWN_SOURCES = ["k8s", "reserved", "any", "container", "cidr", "cidrgroup", "fqdn", "node", "unspec"];

export const LABEL_NAMESPACE = "io.kubernetes.pod.namespace";
export const LABEL_NAMESPACE_LABELS = "io.cilium.k8s.namespace.labels";
export const LABEL_SERVICE_ACCOUNT = "io.cilium.k8s.policy.serviceaccount";
export const LABEL_CLUSTER = "io.cilium.k8s.policy.cluster";

/**
 * Splits "k8s:app" into {source: "k8s", key: "app"}; a key without a known source prefix is "any". As
 * Cilium's ParseSource (pkg/labels), `$host` and `reserved.host` (LabelSourceReservedKeyPrefix) are the
 * reserved label host too — Cilium's own examples select `reserved.init` — while other `source.key`
 * spellings are plain keys.
 */
export function splitSourceKey(k: string): { source: string; key: string } {
  const i = k.indexOf(":");
  if (i > 0) {
    const src = k.slice(0, i);
    if (KNOWN_SOURCES.includes(src)) return { source: src, key: k.slice(i + 1) };
  }
  if (i < 0 && k.startsWith("$")) return { source: "reserved", key: k.slice(1) };
  if (i < 0 && k.startsWith("reserved.")) return { source: "reserved", key: k.slice("reserved.".length) };
  return { source: "any", key: k };
}

export function labelString(l: Label): string {
  return l.value === "" ? `${l.source}:${l.key}` : `${l.source}:${l.key}=${l.value}`;
}

export function sortLabels(ls: Label[]): Label[] {
  return [...ls].sort((a, b) => (labelString(a) < labelString(b) ? -1 : labelString(a) > labelString(b) ? 1 : 0));
}

interface FilterPattern {
  re: RegExp;
  ignore: boolean;
  source?: string;
  length: number;
  user: boolean;
}

const DEFAULT_PATTERNS = [
  "reserved:.*",
  "io.kubernetes.pod.namespace",
  "io.cilium.k8s.namespace.labels",
  "app.kubernetes.io",
  "io.cilium.k8s.policy.cluster",
  "!io\\.kubernetes",
  "!kubernetes\\.io",
  "!statefulset\\.kubernetes\\.io/pod-name",
  "!apps\\.kubernetes\\.io/pod-index",
  "!batch\\.kubernetes\\.io/job-completion-index",
  "!.*beta\\.kubernetes\\.io",
  "!k8s\\.io",
  "!pod-template-generation",
  "!pod-template-hash",
  "!controller-revision-hash",
  "!annotation.*",
  "!etcd_node",
];

function parsePattern(p: string, user: boolean): FilterPattern {
  let ignore = false;
  if (p.startsWith("!")) {
    ignore = true;
    p = p.slice(1);
  }
  let source: string | undefined;
  const i = p.indexOf(":");
  if (i > 0 && KNOWN_SOURCES.includes(p.slice(0, i))) {
    source = p.slice(0, i);
    p = p.slice(i + 1);
  }
  return { re: new RegExp("^(?:" + p + ")"), ignore, source, length: p.length, user };
}

/** The identity-relevant label filter (defaults plus optional user patterns, as --labels). */
export class LabelFilter {
  private patterns: FilterPattern[];
  private userIncludes: boolean;
  constructor(userPatterns: string[] = []) {
    this.patterns = [...DEFAULT_PATTERNS.map((p) => parsePattern(p, false)), ...userPatterns.map((p) => parsePattern(p, true))];
    this.userIncludes = this.patterns.some((p) => p.user && !p.ignore);
  }
  /** True when the label is identity-relevant (longest include beats shortest exclude). */
  accepts(l: Label): boolean {
    if (l.source === "reserved") return true;
    let include = 0;
    let exclude = Infinity;
    for (const p of this.patterns) {
      if (p.source && p.source !== l.source) continue;
      if (!p.re.test(l.key)) continue;
      if (p.ignore) exclude = Math.min(exclude, p.length);
      else include = Math.max(include, p.length);
    }
    const excluded = exclude !== Infinity;
    if (this.userIncludes) return include > 0 && (!excluded || include > exclude);
    return !excluded || include > exclude;
  }
}

/**
 * A pod's key in the model: `namespace/name`, or `cluster/namespace/name` for a pod of another cluster
 * (Cluster Mesh), so that two clusters' pods of the same name stay apart.
 */
export function podKeyOf(pod: Pick<PodModel, "namespace" | "name" | "cluster">): string {
  return pod.cluster ? `${pod.cluster}/${pod.namespace}/${pod.name}` : `${pod.namespace}/${pod.name}`;
}

/**
 * The full label set Cilium gives a pod (before filtering). A pod of another cluster carries that
 * cluster's name and its namespace's labels there.
 */
export function podLabels(pod: PodModel, ns: NamespaceModel | undefined, clusterName: string): Label[] {
  const out: Label[] = [];
  for (const [k, v] of Object.entries(pod.labels)) out.push({ source: "k8s", key: k, value: v });
  out.push({ source: "k8s", key: LABEL_NAMESPACE, value: pod.namespace });
  for (const [k, v] of Object.entries(pod.cluster ? (pod.namespaceLabels ?? {}) : (ns?.labels ?? {}))) out.push({ source: "k8s", key: `${LABEL_NAMESPACE_LABELS}.${k}`, value: v });
  out.push({ source: "k8s", key: LABEL_SERVICE_ACCOUNT, value: pod.serviceAccount ?? "default" });
  out.push({ source: "k8s", key: LABEL_CLUSTER, value: pod.cluster ?? clusterName });
  return out;
}

/** The identity-relevant, sorted label set of a pod: the allocation key of its identity. */
export function identityLabels(pod: PodModel, ns: NamespaceModel | undefined, clusterName: string, filter = new LabelFilter()): Label[] {
  return sortLabels(podLabels(pod, ns, clusterName).filter((l) => filter.accepts(l)));
}

/**
 * The label set of a remote node's identity with enable-node-selector-labels (cilium/cilium
 * pkg/node/manager nodeIdentityLabels): reserved:remote-node, every Node label under the `node:` source (no
 * node-label filter is configured, so all of them count, as Cilium's --node-labels default) and the
 * cluster label. Sorted: the allocation key of its identity.
 */
export function remoteNodeLabels(node: NodeModel, clusterName: string): Label[] {
  const out: Label[] = [{ source: "reserved", key: "remote-node", value: "" }];
  for (const [k, v] of Object.entries(node.labels)) out.push({ source: "node", key: k, value: v });
  out.push({ source: "k8s", key: LABEL_CLUSTER, value: clusterName });
  return sortLabels(out);
}
