/*
 * The kvstore's shared state (kvstore-state.ts) as part of the agent's desired state, and what the agent
 * publishes there. Endpoints of other nodes become Pods, other nodes become Nodes, among the objects the
 * desired state is computed from: a remote pod is then selected by policy through its labels, written into
 * the ipcache with its identity and its node as tunnel endpoint (node/desired.ts), and its node's pod CIDR
 * is routed in native routing (routing.ts) — the computation pods and nodes from manifests go through.
 * Cilium likewise feeds kvstore endpoints into the ipcache and kvstore nodes into its node manager
 * (pkg/ipcache/kvstore.go IPIdentityWatcher, pkg/node/manager), which the datapath's routes follow.
 *
 * Precedence: what the manifests (or the Kubernetes API) say about a pod, namespace or node is kept; the
 * kvstore fills in only what they do not say — a pod they do not list, the address(es) of a pod they list
 * without one, a node or namespace they do not declare. A dual-stack endpoint becomes a pod with
 * status.podIPs (IPv4, IPv6), a dual-stack node a Node with spec.podCIDRs and an InternalIP of each family,
 * so its IPv6 pod CIDR is routed (routing.ts) and its pods' IPv6 addresses reach the ipcache.
 */
import * as C from "../host/constants.gen.ts";
import type { ManifestObject } from "../policy/index.ts";
import type { DesiredState, LocalEndpoint } from "./desired.ts";
import { CLUSTER_ANNOTATION, GLOBAL_SERVICE_ANNOTATION, SHARED_SERVICE_ANNOTATION } from "../node/cluster.ts";
import type { ClusterService, PortConfiguration, SharedEndpoint, SharedNode } from "./kvstore-state.ts";

export interface RemoteState {
  endpoints: SharedEndpoint[];
  nodes: SharedNode[];
}

const podKey = (o: ManifestObject) => `${o.metadata.namespace ?? "default"}/${o.metadata.name}`;

/** A shared endpoint's addresses as the kubelet reports them: status.podIP and, dual stack, status.podIPs. */
function podStatus(e: SharedEndpoint): { podIP: string; podIPs?: { ip: string }[] } {
  return { podIP: e.ip, ...(e.ip6 ? { podIPs: [{ ip: e.ip }, { ip: e.ip6 }] } : {}) };
}

/** A shared node as a Node object: spec.podCIDR (and spec.podCIDRs dual stack), its InternalIP of each family. */
function nodeObject(n: SharedNode, metadata: ManifestObject["metadata"]): ManifestObject {
  const spec = { podCIDR: n.podCIDR, ...(n.podCIDRv6 ? { podCIDRs: [n.podCIDR, n.podCIDRv6] } : {}) };
  const addresses = [{ type: "InternalIP", address: n.ip }, ...(n.ip6 ? [{ type: "InternalIP", address: n.ip6 }] : [])];
  return { apiVersion: "v1", kind: "Node", metadata, raw: { apiVersion: "v1", kind: "Node", metadata, spec, status: { addresses } } };
}

/** `objects` with the remote endpoints and nodes added (see Precedence). Deterministic: sorted inputs. */
export function withSharedState(objects: ManifestObject[], remote: RemoteState): ManifestObject[] {
  const declaredNodes = new Set(objects.filter((o) => o.kind === "Node").map((o) => o.metadata.name));
  const declaredNs = new Set(objects.filter((o) => o.kind === "Namespace").map((o) => o.metadata.name));
  const podIps = new Set(objects.filter((o) => o.kind === "Pod" && typeof o.raw?.status?.podIP === "string").map((o) => o.raw.status.podIP as string));
  const byPod = new Map<string, SharedEndpoint>();
  for (const e of [...remote.endpoints].sort((a, b) => (a.ip < b.ip ? -1 : a.ip > b.ip ? 1 : 0))) if (!podIps.has(e.ip) && !byPod.has(`${e.namespace}/${e.pod}`)) byPod.set(`${e.namespace}/${e.pod}`, e);
  const out: ManifestObject[] = [];
  for (const o of objects) {
    const e = o.kind === "Pod" ? byPod.get(podKey(o)) : undefined;
    if (!e) {
      out.push(o);
      continue;
    }
    byPod.delete(podKey(o));
    if (o.raw?.status?.podIP) {
      out.push(o);
      continue;
    }
    // Listed without an address (its node's kubelet has not reported it here yet): the kvstore's.
    const raw = structuredClone(o.raw ?? {});
    raw.spec = { ...(raw.spec ?? {}), nodeName: e.node };
    raw.status = { ...(raw.status ?? {}), ...podStatus(e) };
    out.push({ ...o, raw });
  }
  for (const n of [...remote.nodes].sort((a, b) => (a.name < b.name ? -1 : 1))) {
    if (declaredNodes.has(n.name)) continue;
    out.push(nodeObject(n, { name: n.name }));
  }
  for (const e of byPod.values()) {
    if (!declaredNs.has(e.namespace)) {
      declaredNs.add(e.namespace);
      const metadata = { name: e.namespace, labels: e.namespaceLabels };
      out.push({ apiVersion: "v1", kind: "Namespace", metadata, raw: { apiVersion: "v1", kind: "Namespace", metadata } });
    }
    const metadata = { name: e.pod, namespace: e.namespace, labels: e.labels };
    const spec = { nodeName: e.node, ...(e.serviceAccount ? { serviceAccountName: e.serviceAccount } : {}) };
    out.push({ apiVersion: "v1", kind: "Pod", metadata, raw: { apiVersion: "v1", kind: "Pod", metadata, spec, status: podStatus(e) } });
  }
  return out;
}

/** "namespace/name" → metadata.uid of every Pod in `objects` that has one (the owner of its CiliumEndpoint). */
export function podUidsOf(objects: ManifestObject[]): Map<string, string> {
  const out = new Map<string, string>();
  for (const o of objects) {
    const uid = o.kind === "Pod" ? o.raw?.metadata?.uid : undefined;
    if (typeof uid === "string" && uid) out.set(podKey(o), uid);
  }
  return out;
}

/**
 * The local endpoints to publish: those whose identity is allocated (a pending one, init, is published
 * once it has its number), with their pod's labels and namespace labels from the desired state.
 */
export function localSharedEndpoints(desired: DesiredState | undefined, endpoints: LocalEndpoint[], node: { name: string; ip: string }): SharedEndpoint[] {
  if (!desired) return [];
  const pods = new Map(desired.cluster.pods.map((p) => [p.key, p]));
  const namespaces = new Map(desired.cluster.namespaces.map((n) => [n.name, n]));
  const out: SharedEndpoint[] = [];
  for (const e of endpoints) {
    const identity = desired.podIdentity.get(e.pod);
    const pod = pods.get(e.pod);
    if (!pod || identity === undefined || identity === C.ID_INIT || identity === C.ID_WORLD) continue;
    const namespaceLabels = Object.fromEntries(Object.entries(namespaces.get(pod.namespace)?.labels ?? {}).filter(([k]) => k !== "kubernetes.io/metadata.name"));
    out.push({
      ip: e.ip,
      ...(e.ip6 ? { ip6: e.ip6 } : {}),
      hostIp: node.ip,
      identity,
      node: node.name,
      namespace: pod.namespace,
      pod: pod.name,
      labels: pod.labels,
      namespaceLabels,
      ...(pod.serviceAccount ? { serviceAccount: pod.serviceAccount } : {}),
    });
  }
  return out;
}

/**
 * The shared global services of this node's cluster as ClusterService entries (S6 of kvstore-state.ts):
 * every Service annotated service.cilium.io/global "true" and not service.cilium.io/shared "false", with
 * its ClusterIP and this cluster's backends (other clusters' backends are theirs to publish).
 */
export function localClusterServices(desired: DesiredState | undefined, cluster: { name: string; id: number }): ClusterService[] {
  if (!desired) return [];
  const out: ClusterService[] = [];
  for (const svc of desired.cluster.services) {
    if (!svc.global?.shared) continue;
    const frontend: PortConfiguration = {};
    const backends: Record<string, PortConfiguration> = {};
    for (const p of svc.ports) {
      frontend[p.name ?? ""] = { Protocol: p.protocol, Port: p.port };
      for (const b of p.backends) if (b.cluster === undefined && b.state === "active") (backends[b.ip] ??= {})[p.name ?? ""] = { Protocol: p.protocol, Port: b.port };
    }
    const obj = desired.cluster.objects.find((o) => o.kind === "Service" && (o.metadata.namespace ?? "default") === svc.namespace && o.metadata.name === svc.name);
    out.push({
      cluster: cluster.name,
      namespace: svc.namespace,
      name: svc.name,
      frontends: svc.clusterIP ? { [svc.clusterIP]: frontend } : {},
      backends,
      labels: { ...(obj?.metadata.labels ?? {}) },
      selector: { ...(svc.selector ?? {}) },
      includeExternal: true,
      shared: true,
      clusterID: cluster.id,
    });
  }
  return out;
}

/** What a remote cluster of the mesh publishes in its etcd (agent/clustermesh.ts). */
export interface MeshClusterState {
  name: string;
  endpoints: SharedEndpoint[];
  nodes: SharedNode[];
  services: ClusterService[];
}

/**
 * `objects` with the state of the mesh's other clusters added, annotated with their cluster
 * (node/cluster.ts CLUSTER_ANNOTATION): their nodes, the namespaces and pods of their endpoints (a pod
 * whose node is not known yet waits for it), and their shared services (its selector, and per port the
 * backends' port as targetPort). Deterministic: sorted inputs.
 */
export function withClusterMesh(objects: ManifestObject[], clusters: MeshClusterState[]): ManifestObject[] {
  const out = [...objects];
  const annotations = (c: string, more: Record<string, string> = {}) => ({ [CLUSTER_ANNOTATION]: c, ...more });
  for (const c of [...clusters].sort((a, b) => (a.name < b.name ? -1 : 1))) {
    const nodes = new Set<string>();
    for (const n of [...c.nodes].sort((a, b) => (a.name < b.name ? -1 : 1))) {
      if (n.cluster !== c.name) continue;
      nodes.add(n.name);
      out.push(nodeObject(n, { name: n.name, annotations: annotations(c.name) }));
    }
    const namespaces = new Map<string, Record<string, string>>();
    const seen = new Set<string>();
    for (const e of [...c.endpoints].sort((a, b) => (a.ip < b.ip ? -1 : a.ip > b.ip ? 1 : 0))) {
      if (!nodes.has(e.node) || seen.has(`${e.namespace}/${e.pod}`)) continue;
      seen.add(`${e.namespace}/${e.pod}`);
      if (!namespaces.has(e.namespace)) namespaces.set(e.namespace, e.namespaceLabels);
      const metadata = { name: e.pod, namespace: e.namespace, labels: e.labels, annotations: annotations(c.name) };
      const spec = { nodeName: e.node, ...(e.serviceAccount ? { serviceAccountName: e.serviceAccount } : {}) };
      out.push({ apiVersion: "v1", kind: "Pod", metadata, raw: { apiVersion: "v1", kind: "Pod", metadata, spec, status: podStatus(e) } });
    }
    for (const [name, labels] of [...namespaces].sort((a, b) => (a[0] < b[0] ? -1 : 1))) {
      const metadata = { name, labels, annotations: annotations(c.name) };
      out.push({ apiVersion: "v1", kind: "Namespace", metadata, raw: { apiVersion: "v1", kind: "Namespace", metadata } });
    }
    for (const svc of [...c.services].sort((a, b) => (`${a.namespace}/${a.name}` < `${b.namespace}/${b.name}` ? -1 : 1))) {
      if (svc.cluster !== c.name || !svc.shared) continue;
      const frontend = Object.values(svc.frontends)[0] ?? {};
      const backendPort = (n: string) => Object.values(svc.backends).find((b) => b[n])?.[n]?.Port;
      const ports = Object.entries(frontend)
        .sort((a, b) => (a[0] < b[0] ? -1 : 1))
        .map(([n, a]) => ({ ...(n ? { name: n } : {}), port: a.Port, protocol: a.Protocol, targetPort: backendPort(n) ?? a.Port }));
      const metadata = { name: svc.name, namespace: svc.namespace, labels: svc.labels, annotations: annotations(c.name, { [GLOBAL_SERVICE_ANNOTATION]: "true", [SHARED_SERVICE_ANNOTATION]: "true" }) };
      out.push({ apiVersion: "v1", kind: "Service", metadata, raw: { apiVersion: "v1", kind: "Service", metadata, spec: { selector: svc.selector, ports } } });
    }
  }
  return out;
}
