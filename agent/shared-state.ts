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
 * kvstore fills in only what they do not say — a pod they do not list, the address of a pod they list
 * without one, a node or namespace they do not declare.
 */
import * as C from "../host/constants.gen.ts";
import type { ManifestObject } from "../policy/index.ts";
import type { DesiredState, LocalEndpoint } from "./desired.ts";
import type { SharedEndpoint, SharedNode } from "./kvstore-state.ts";

export interface RemoteState {
  endpoints: SharedEndpoint[];
  nodes: SharedNode[];
}

const podKey = (o: ManifestObject) => `${o.metadata.namespace ?? "default"}/${o.metadata.name}`;

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
    raw.status = { ...(raw.status ?? {}), podIP: e.ip };
    out.push({ ...o, raw });
  }
  for (const n of [...remote.nodes].sort((a, b) => (a.name < b.name ? -1 : 1))) {
    if (declaredNodes.has(n.name)) continue;
    const metadata = { name: n.name };
    out.push({ apiVersion: "v1", kind: "Node", metadata, raw: { apiVersion: "v1", kind: "Node", metadata, spec: { podCIDR: n.podCIDR }, status: { addresses: [{ type: "InternalIP", address: n.ip }] } } });
  }
  for (const e of byPod.values()) {
    if (!declaredNs.has(e.namespace)) {
      declaredNs.add(e.namespace);
      const metadata = { name: e.namespace, labels: e.namespaceLabels };
      out.push({ apiVersion: "v1", kind: "Namespace", metadata, raw: { apiVersion: "v1", kind: "Namespace", metadata } });
    }
    const metadata = { name: e.pod, namespace: e.namespace, labels: e.labels };
    const spec = { nodeName: e.node, ...(e.serviceAccount ? { serviceAccountName: e.serviceAccount } : {}) };
    out.push({ apiVersion: "v1", kind: "Pod", metadata, raw: { apiVersion: "v1", kind: "Pod", metadata, spec, status: { podIP: e.ip } } });
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
