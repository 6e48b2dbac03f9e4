/*
 * The names a CNI request carries — container id, network namespace, interface name, pod namespace and
 * name — reach `ip`/`nsenter` argument lists, /proc/sys paths, the agent's state file and its log. They come
 * from the container runtime's environment, so they are checked against the rules their owners define
 * before anything uses them: the CNI spec (SPEC.md "Parameters": container id, ifname), the kernel's
 * dev_valid_name (net/core/dev.c) for interface names, and Kubernetes' DNS-1123 label/subdomain rules
 * (k8s.io/apimachinery pkg/util/validation) for namespaces and pod names. A name that fails is refused with
 * CNI error 4 (invalid environment) and never reaches a command line or a path. Light module: `ciliate cni`
 * checks here before calling the agent, and the agent checks again, since its API is the real boundary.
 */
import { normalize } from "node:path";

export interface EndpointRequestNames {
  containerId: string;
  netns: string;
  ifname: string;
  /** "namespace/name". */
  pod: string;
}

/** CNI spec: alphanumerics, underscore, period and hyphen, starting with an alphanumeric. */
const CONTAINER_ID = /^[A-Za-z0-9][A-Za-z0-9_.-]{0,254}$/;
/** DNS-1123 label (namespaces): at most 63 characters. */
const DNS_LABEL = /^[a-z0-9]([-a-z0-9]{0,61}[a-z0-9])?$/;
/** DNS-1123 subdomain (pod names): dot-separated labels, at most 253 characters. */
const DNS_SUBDOMAIN = /^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$/;
/** A network namespace given by name (under /var/run/netns). */
const NETNS_NAME = /^[A-Za-z0-9_][A-Za-z0-9_.-]{0,254}$/;

function show(s: string): string {
  return JSON.stringify(s.length > 80 ? `${s.slice(0, 80)}…` : s);
}

/** Why `ifname` is not a usable interface name, or undefined. The kernel's rule (dev_valid_name: 1-15
 * bytes, not "." or "..", no "/", ":" or whitespace), and no leading "-", which iproute2 would read as an
 * option. */
export function ifnameProblem(ifname: string): string | undefined {
  if (ifname.length === 0 || Buffer.byteLength(ifname) > 15) return "must be 1-15 bytes";
  if (ifname === "." || ifname === "..") return "must not be . or ..";
  if (/[/:\s\u0000-\u001f\u007f]/.test(ifname)) return "must not contain /, :, whitespace or control characters";
  if (ifname.startsWith("-")) return "must not start with -";
  return undefined;
}

/** Why `netns` is not a network namespace reference, or undefined: a name under /var/run/netns, or an
 * absolute path already in normal form (no "..", no "//", no trailing "/"), without whitespace or control
 * characters. */
export function netnsProblem(netns: string): string | undefined {
  if (netns.startsWith("/")) {
    if (netns.length > 4096) return "is too long";
    if (/[\s\u0000-\u001f\u007f]/.test(netns)) return "must not contain whitespace or control characters";
    if (normalize(netns) !== netns || netns.endsWith("/") || netns.split("/").includes("..")) return "must be an absolute path in normal form (no .., //, or trailing /)";
    return undefined;
  }
  if (netns === "." || netns === ".." || !NETNS_NAME.test(netns)) return "must be an absolute path or a namespace name of letters, digits, _, . and -";
  return undefined;
}

/** The first problem with a CNI request's names, as a message naming the variable it came from; undefined
 * when every name is valid. */
export function endpointNamesProblem(r: EndpointRequestNames): string | undefined {
  if (!CONTAINER_ID.test(r.containerId)) return `CNI_CONTAINERID ${show(r.containerId)} must be letters, digits, _, . and - (starting with a letter or digit), at most 255`;
  const nsProblem = netnsProblem(r.netns);
  if (nsProblem) return `CNI_NETNS ${show(r.netns)} ${nsProblem}`;
  const ifProblem = ifnameProblem(r.ifname);
  if (ifProblem) return `CNI_IFNAME ${show(r.ifname)} ${ifProblem}`;
  const slash = r.pod.indexOf("/");
  const ns = slash < 0 ? "" : r.pod.slice(0, slash);
  const name = slash < 0 ? r.pod : r.pod.slice(slash + 1);
  if (!DNS_LABEL.test(ns)) return `K8S_POD_NAMESPACE ${show(ns)} is not a Kubernetes namespace name (lower-case letters, digits and -, at most 63)`;
  if (name.length > 253 || !DNS_SUBDOMAIN.test(name)) return `K8S_POD_NAME ${show(name)} is not a Kubernetes pod name (lower-case letters, digits, - and ., at most 253)`;
  return undefined;
}
