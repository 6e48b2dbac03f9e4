/*
 * Shared state in the Kubernetes API (`--identity-allocation-mode crd`): each agent publishes its local
 * endpoints as CiliumEndpoint objects and its node as a CiliumNode, and watches every other agent's, as
 * Cilium's agents do in CRD mode (cilium/cilium pkg/k8s/apis/cilium.io/v2/types.go CiliumEndpoint,
 * EndpointStatus, EndpointIdentity, EndpointNetworking, CiliumNode, NodeSpec; pkg/k8s/watchers
 * ciliumendpoint.go feeds the ipcache from them). What it learns becomes the same SharedEndpoint/SharedNode
 * values as kvstore mode's (kvstore-state.ts), which shared-state.ts withSharedState turns into pods and
 * nodes of the desired state: one path from either backend to the ipcache and the routes.
 *
 * Objects, with the fields written and read (Cilium's JSON names):
 *   CiliumEndpoint <pod namespace>/<pod name>   status.identity.id, status.identity.labels (the identity's
 *                                               labels, "k8s:app=x", …), status.networking.addressing[]
 *                                               .ipv4 and, dual stack, .ipv6 (one AddressPair), status.
 *                                               networking.node (the node's IP: the tunnel endpoint),
 *                                               status.state "ready"
 *   CiliumNode <node name> (cluster-scoped)     spec.addresses[] {type: InternalIP, ip} (one per family),
 *                                               spec.ipam.podCIDRs[] (the IPv4 pod CIDR, then the IPv6 one)
 * The receiver takes a pod's labels, namespace labels and service account from its identity labels
 * (k8s:io.cilium.k8s.namespace.labels.<k>, k8s:io.cilium.k8s.policy.serviceaccount), and the endpoint's
 * node name from the CiliumNode whose InternalIP is status.networking.node.
 *
 * Rules, numbered as they are cited below:
 *   R1 publishing is declarative (as kvstore mode's S2): the agent says which endpoints it has now; the
 *      store creates (POST; on 409 AlreadyExists a merge patch) what differs from what it last wrote and
 *      deletes what is gone (a pod deleted: its CiliumEndpoint goes). A failed write (the API server away)
 *      is retried every second, so an endpoint added during an outage appears after it.
 *   R2 an object of this agent that disappears from the API (deleted by someone, or an API server that
 *      lost its data) is written again.
 *   R3 every agent lists and watches both collections; on an error the informer relists after a second and
 *      keeps its cache meanwhile: the node keeps forwarding on the last state it knew.
 *   R4 an endpoint whose node IP is this node's, and this node's CiliumNode, are not part of the remote
 *      view; an endpoint whose node has no CiliumNode yet is left out until it has one (every agent writes
 *      its CiliumNode before its endpoints); an object that does not parse is ignored with one log line.
 *   R5 a graceful close deletes this agent's CiliumEndpoints and CiliumNode (kvstore mode revokes its
 *      lease). A killed agent leaves them; Cilium relies on ownerReferences for that case: a CiliumEndpoint
 *      names its Pod as owner when the caller knows the pod's uid (`podUid`), so the API's garbage
 *      collector deletes it with the pod. Without blockOwnerDeletion, which would need update on
 *      pods/finalizers under the OwnerReferencesPermissionEnforcement admission plugin. What a killed
 *      agent leaves otherwise is collected once its Node is gone, by the agent holding the Lease (crd-gc.ts).
 */
import type { KubeConfig, KubernetesObject } from "@kubernetes/client-node";
import { parseIp } from "../host/ip.ts";
import { identityLabels, LABEL_CLUSTER, LABEL_NAMESPACE, LABEL_NAMESPACE_LABELS, LABEL_SERVICE_ACCOUNT, labelString, parseCidr } from "../policy/index.ts";
import { DeclarativeWriter } from "./declarative-writer.ts";
import { ChangeNotifier } from "./identity-allocator.ts";
import { K8sHttpError, k8sRequest, watchCollection, type CollectionInformer } from "./k8s-objects.ts";
import type { SharedEndpoint, SharedNode } from "./kvstore-state.ts";

export const ENDPOINTS_PATH = "/apis/cilium.io/v2/ciliumendpoints";
export const NODES_PATH = "/apis/cilium.io/v2/ciliumnodes";
/** What this store does with each kind: what deploy/'s ClusterRole must grant for crd mode. */
export const STATE_VERBS = ["list", "watch", "create", "patch", "delete"] as const;
const endpointPath = (ns: string, name?: string) => `/apis/cilium.io/v2/namespaces/${encodeURIComponent(ns)}/ciliumendpoints${name === undefined ? "" : `/${encodeURIComponent(name)}`}`;

export interface CiliumEndpoint extends KubernetesObject {
  status?: {
    identity?: { id?: number; labels?: string[] };
    networking?: { addressing?: { ipv4?: string; ipv6?: string }[]; node?: string };
    state?: string;
  };
}

export interface CiliumNode extends KubernetesObject {
  spec?: { addresses?: { type?: string; ip?: string }[]; ipam?: { podCIDRs?: string[] } };
}

export interface CrdStateOptions {
  kubeConfig: KubeConfig;
  node: SharedNode;
  log?: (msg: string) => void;
  /** Retry interval of failed writes (R1), ms. */
  retryMs?: number;
  startTimeoutMs?: number;
  /** The uid of a pod (namespace, name), when known: its CiliumEndpoint is then owned by it (R5). */
  podUid?: (namespace: string, name: string) => string | undefined;
}

/** The identity labels of an endpoint, "source:key=value" sorted (policy/labels.ts identityLabels, default filter). */
export function endpointIdentityLabels(e: SharedEndpoint, clusterName: string): string[] {
  const pod = { name: e.pod, namespace: e.namespace, labels: e.labels, serviceAccount: e.serviceAccount, containerPorts: [] };
  return identityLabels(pod, { name: e.namespace, labels: e.namespaceLabels }, clusterName).map(labelString);
}

/** The CiliumEndpoint this node publishes for `e`. */
export function ciliumEndpointOf(e: SharedEndpoint, clusterName: string, podUid?: string): CiliumEndpoint {
  return {
    apiVersion: "cilium.io/v2",
    kind: "CiliumEndpoint",
    metadata: {
      name: e.pod,
      namespace: e.namespace,
      ...(podUid ? { ownerReferences: [{ apiVersion: "v1", kind: "Pod", name: e.pod, uid: podUid }] } : {}),
    },
    status: {
      identity: { id: e.identity, labels: endpointIdentityLabels(e, clusterName) },
      networking: { addressing: [e.ip6 ? { ipv4: e.ip, ipv6: e.ip6 } : { ipv4: e.ip }], node: e.hostIp },
      state: "ready",
    },
  };
}

/** The CiliumNode this node publishes. */
export function ciliumNodeOf(n: SharedNode): CiliumNode {
  return {
    apiVersion: "cilium.io/v2",
    kind: "CiliumNode",
    metadata: { name: n.name },
    spec: {
      addresses: [{ type: "InternalIP", ip: n.ip }, ...(n.ip6 ? [{ type: "InternalIP", ip: n.ip6 }] : [])],
      ipam: { podCIDRs: [n.podCIDR, ...(n.podCIDRv6 ? [n.podCIDRv6] : [])] },
    },
  };
}

/** A CiliumNode back into a SharedNode of `cluster`, or a reason it is not one. */
export function parseCiliumNode(o: CiliumNode, cluster: { name: string; id: number }): SharedNode | string {
  const name = o.metadata?.name;
  if (!name) return "metadata.name missing";
  const internal = (family: 4 | 6) => o.spec?.addresses?.find((a) => a.type === "InternalIP" && typeof a.ip === "string" && parseIp(a.ip)?.family === family)?.ip;
  const ip = internal(4) ?? o.spec?.addresses?.find((a) => a.type === "InternalIP" && typeof a.ip === "string" && parseIp(a.ip) !== undefined)?.ip;
  if (!ip) return "spec.addresses has no InternalIP";
  const cidrs = (o.spec?.ipam?.podCIDRs ?? []).map((c) => (typeof c === "string" ? parseCidr(c) : undefined));
  const cidr = cidrs.find((c) => c?.family === 4);
  if (!cidr) return "spec.ipam.podCIDRs has no IPv4 prefix";
  const ip6 = internal(6);
  const cidr6 = cidrs.find((c) => c?.family === 6);
  return { name, cluster: cluster.name, clusterId: cluster.id, ip, podCIDR: cidr.text, ...(ip6 && ip6 !== ip ? { ip6 } : {}), ...(cidr6 ? { podCIDRv6: cidr6.text } : {}) };
}

/**
 * A CiliumEndpoint back into a SharedEndpoint, its node named by `nodeOf(ip)`; a reason it is not one, or
 * undefined when its node is not known yet (R4).
 */
export function parseCiliumEndpoint(o: CiliumEndpoint, nodeOf: (ip: string) => string | undefined): SharedEndpoint | string | undefined {
  const { name, namespace } = o.metadata ?? {};
  if (!name || !namespace) return "metadata.name/namespace missing";
  const id = o.status?.identity?.id;
  if (typeof id !== "number" || !Number.isInteger(id) || id <= 0) return `status.identity.id ${JSON.stringify(id)} is not an identity`;
  const pair = o.status?.networking?.addressing?.find((a) => typeof a.ipv4 === "string");
  const ip = pair?.ipv4;
  if (!ip || parseIp(ip)?.family !== 4) return `status.networking.addressing has no IPv4 address`;
  // Dual stack: the same AddressPair's ipv6 (an invalid one is left out, the IPv4 address still counts).
  const ip6 = typeof pair?.ipv6 === "string" && parseIp(pair.ipv6)?.family === 6 ? pair.ipv6 : undefined;
  const hostIp = o.status?.networking?.node;
  if (typeof hostIp !== "string" || !parseIp(hostIp)) return `status.networking.node ${JSON.stringify(hostIp)} is not an address`;
  const labels: Record<string, string> = {};
  const namespaceLabels: Record<string, string> = {};
  let serviceAccount: string | undefined;
  for (const l of o.status?.identity?.labels ?? []) {
    if (typeof l !== "string" || !l.startsWith("k8s:")) continue;
    const eq = l.indexOf("=");
    const key = l.slice(4, eq < 0 ? undefined : eq);
    const value = eq < 0 ? "" : l.slice(eq + 1);
    if (key === LABEL_NAMESPACE || key === LABEL_CLUSTER) continue;
    if (key === LABEL_SERVICE_ACCOUNT) serviceAccount = value;
    else if (key.startsWith(`${LABEL_NAMESPACE_LABELS}.`)) namespaceLabels[key.slice(LABEL_NAMESPACE_LABELS.length + 1)] = value;
    else labels[key] = value;
  }
  const node = nodeOf(hostIp);
  if (node === undefined) return undefined;
  return { ip, ...(ip6 ? { ip6 } : {}), hostIp, identity: id, node, namespace, pod: name, labels, namespaceLabels, ...(serviceAccount && serviceAccount !== "default" ? { serviceAccount } : {}) };
}

const objectKey = (o: KubernetesObject) => `${o.metadata?.namespace ?? ""}/${o.metadata?.name ?? ""}`;

/** This agent's CiliumEndpoints and CiliumNode in the Kubernetes API, and every other agent's. */
export class CrdState {
  /** Keys: "ns/name" of a CiliumEndpoint, "/name" of the CiliumNode (R1). */
  private readonly writer: DeclarativeWriter<KubernetesObject>;
  private closed = false;
  private readonly changes = new ChangeNotifier();
  private endpoints?: CollectionInformer<CiliumEndpoint>;
  private nodes?: CollectionInformer<CiliumNode>;
  private readonly bad = new Set<string>();
  private readonly log: (msg: string) => void;
  private readonly nodeKey: string;

  constructor(private readonly opts: CrdStateOptions) {
    this.log = opts.log ?? (() => undefined);
    this.nodeKey = `/${opts.node.name}`;
    this.writer = new DeclarativeWriter<KubernetesObject>({
      put: (_k, o) => this.write(o),
      remove: (k) => this.remove(k),
      fingerprint: (o) => JSON.stringify(o),
      onError: (e) => this.log(`CiliumEndpoint/CiliumNode write failed (${e.message.split("\n")[0]}); retrying`),
      retryMs: opts.retryMs ?? 1000,
    });
    this.writer.set(new Map([[this.nodeKey, ciliumNodeOf(opts.node)]]));
  }

  /** Writes this node's CiliumNode, lists and watches both collections. Rejects when the API is unreachable. */
  async start(): Promise<void> {
    await this.writer.run();
    const onEvent = (verb: string, o: KubernetesObject, key: string) => {
      // R2: one of ours went away; write it again.
      if (verb === "delete") this.writer.lost(key);
      this.changes.notify();
    };
    const common = { log: (m: string) => !this.closed && this.log(m), startTimeoutMs: this.opts.startTimeoutMs };
    this.nodes = await watchCollection<CiliumNode>(this.opts.kubeConfig, NODES_PATH, { ...common, what: "CiliumNode", onEvent: (v, o) => onEvent(v, o, `/${o.metadata?.name}`) });
    this.endpoints = await watchCollection<CiliumEndpoint>(this.opts.kubeConfig, ENDPOINTS_PATH, { ...common, what: "CiliumEndpoint", onEvent: (v, o) => onEvent(v, o, objectKey(o)) });
  }

  /** Sets the endpoints this node has now (R1); returns at once, the writes follow. */
  publish(endpoints: SharedEndpoint[]): void {
    const want = new Map<string, KubernetesObject>([[this.nodeKey, ciliumNodeOf(this.opts.node)]]);
    for (const e of endpoints) want.set(`${e.namespace}/${e.pod}`, ciliumEndpointOf(e, this.opts.node.cluster, this.opts.podUid?.(e.namespace, e.pod)));
    this.writer.set(want);
  }

  /** Creates or patches one object (POST, then a merge patch when it exists). */
  private async write(o: KubernetesObject): Promise<void> {
    const ns = o.metadata?.namespace;
    const collection = ns ? endpointPath(ns) : NODES_PATH;
    try {
      await k8sRequest(this.opts.kubeConfig, "POST", collection, o);
    } catch (e) {
      if (!(e instanceof K8sHttpError && e.status === 409)) throw e;
      await k8sRequest(this.opts.kubeConfig, "PATCH", `${collection}/${encodeURIComponent(o.metadata!.name!)}`, o, "application/merge-patch+json");
    }
  }

  private async remove(key: string): Promise<void> {
    const slash = key.indexOf("/");
    const [ns, name] = [key.slice(0, slash), key.slice(slash + 1)];
    await k8sRequest(this.opts.kubeConfig, "DELETE", ns ? endpointPath(ns, name) : `${NODES_PATH}/${encodeURIComponent(name)}`).catch((e: unknown) => {
      if (!(e instanceof K8sHttpError && e.status === 404)) throw e;
    });
  }

  /** True when everything published is in the API (tests and diagnostics). */
  synced(): boolean {
    return this.writer.synced();
  }

  private ignore(key: string, why: string): void {
    if (!this.bad.has(key)) this.log(`crd state: ignoring ${key}: ${why}`);
    this.bad.add(key);
  }

  /** Other nodes of this cluster (R4). */
  remoteNodes(): SharedNode[] {
    const out: SharedNode[] = [];
    for (const o of this.nodes?.list() ?? []) {
      if (o.metadata?.name === this.opts.node.name) continue;
      const n = parseCiliumNode(o, { name: this.opts.node.cluster, id: this.opts.node.clusterId });
      if (typeof n === "string") this.ignore(`CiliumNode ${o.metadata?.name}`, n);
      else out.push(n);
    }
    return out;
  }

  /** Endpoints of other nodes (R4). */
  remoteEndpoints(): SharedEndpoint[] {
    const byIp = new Map(this.remoteNodes().map((n) => [n.ip, n.name]));
    const out: SharedEndpoint[] = [];
    for (const o of this.endpoints?.list() ?? []) {
      if (o.status?.networking?.node === this.opts.node.ip) continue;
      const e = parseCiliumEndpoint(o, (ip) => byIp.get(ip));
      if (typeof e === "string") this.ignore(`CiliumEndpoint ${objectKey(o)}`, e);
      else if (e) out.push(e);
    }
    return out;
  }

  /** Called (coalesced) after the remote view changed. */
  onChange(cb: () => void): void {
    this.changes.add(cb);
  }

  private stopWatching(): void {
    this.closed = true;
    this.changes.stop();
    this.endpoints?.stop();
    this.nodes?.stop();
  }

  /** Stops watching and deletes this agent's objects (R5). */
  async close(): Promise<void> {
    if (this.closed) return;
    this.stopWatching();
    await this.writer.stop(true);
  }

  /** Stops without deleting, as a killed agent leaves its objects (tests). */
  abandon(): void {
    this.stopWatching();
    void this.writer.stop(false);
  }
}
