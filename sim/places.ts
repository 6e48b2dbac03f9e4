/*
 * Where the simulator's traffic comes from and goes to: endpoint references of Traffic flows and of the
 * CLI (a pod, a selector, a service, an address, a prefix, an entity) resolved to places in the cluster —
 * a pod, a node (host) or an address outside — and a service to the frontend its source would use.
 */
import * as C from "../host/constants.gen.ts";
import { formatIp, isIpv6 } from "../host/ip.ts";
import { canonicalIp, type EndpointRefSpec, type FlowProtocol, type SimCluster, type SimNode, type SimPod, type SimService } from "../node/cluster.ts";
import { SimError } from "../node/errors.ts";
import type { Frontend, LbModel } from "../node/services.ts";
import { parseCidr } from "../policy/index.ts";

/** Address the simulator gives entity world (TEST-NET-3). */
export const WORLD_IP = "203.0.113.10";
/** Address of kube-apiserver when it runs outside the cluster (written to every ipcache as identity 7). */
export const KUBE_APISERVER_IP = "192.168.56.5";

/** One place traffic comes from or goes to. */
export interface Place {
  kind: "pod" | "host" | "external";
  ip: string;
  node?: string;
  pod?: SimPod;
  /** Identity the sender carries (VNI) when it is not looked up from its address. */
  carry?: number;
  /** Reserved entity this place stands for. */
  entity?: string;
}

export const ENTITY_IDS: Record<string, number> = { health: C.ID_HEALTH, ingress: C.ID_INGRESS, unmanaged: C.ID_UNMANAGED, init: C.ID_INIT };
/** Host offsets in each node's pod CIDR of the reserved entities' addresses (pods start at .10). */
export const ENTITY_OFFSETS: [number, number][] = [
  [2, C.ID_HEALTH],
  [3, C.ID_INGRESS],
  [4, C.ID_UNMANAGED],
  [5, C.ID_INIT],
];

export function entityIp(n: SimNode, off: number): string {
  const c = parseCidr(n.podCIDR)!;
  return formatIp(4, c.addr + BigInt(off));
}

export class Places {
  readonly podByIp = new Map<string, SimPod>();
  readonly nodeByIp = new Map<string, SimNode>();

  constructor(
    private readonly cluster: SimCluster,
    private readonly lb: LbModel,
  ) {
    for (const p of cluster.pods) if (!p.hostNetwork) for (const ip of p.ips) this.podByIp.set(ip, p);
    for (const n of cluster.nodes) for (const ip of n.ip6 ? [n.ip, n.ip6] : [n.ip]) this.nodeByIp.set(ip, n);
  }

  podByKey(key: string): SimPod | undefined {
    return this.cluster.pods.find((p) => p.key === key);
  }

  serviceByKey(key: string): SimService | undefined {
    return this.cluster.services.find((s) => s.key === key);
  }

  private placeOfPod(p: SimPod): Place {
    if (p.hostNetwork) return { kind: "host", ip: p.ip, node: p.node, pod: p, carry: C.ID_HOST };
    return { kind: "pod", ip: p.ip, node: p.node, pod: p };
  }

  /** Place of an address: a pod, a node (host), or outside the cluster. */
  placeOfIp(ip: string): Place {
    const pod = this.podByIp.get(ip);
    if (pod) return { ...this.placeOfPod(pod), ip };
    const node = this.nodeByIp.get(ip);
    if (node) return { kind: "host", ip, node: node.name, carry: C.ID_HOST };
    return { kind: "external", ip };
  }

  private selectPod(sel: { namespace?: string; matchLabels?: Record<string, string> }, what: string): SimPod {
    const ns = sel.namespace ?? "default";
    const labels = sel.matchLabels ?? {};
    const pod = this.cluster.pods.find((p) => p.namespace === ns && Object.entries(labels).every(([k, v]) => p.labels[k] === v));
    if (!pod) throw new SimError("UNKNOWN_POD", `${what}: no pod in namespace ${ns} matches ${JSON.stringify(labels)}`);
    return pod;
  }

  private requirePod(key: string, what: string): SimPod {
    const p = this.podByKey(key);
    if (!p) throw new SimError("UNKNOWN_POD", `${what}: unknown pod ${key}`, `pods: ${this.cluster.pods.map((x) => x.key).slice(0, 8).join(", ")}${this.cluster.pods.length > 8 ? ", …" : ""}`);
    return p;
  }

  private firstIp(cidr: string): string {
    const c = parseCidr(cidr)!;
    const width = c.family === 4 ? 32 : 128;
    const addr = c.bits === width ? c.addr : c.addr + 1n;
    return formatIp(c.family, addr);
  }

  private otherNode(node: string | undefined): SimNode | undefined {
    return this.cluster.nodes.find((n) => n.name !== node);
  }

  /** Resolves a source reference; `peerNode` is where the destination lives (for entity: host). */
  resolveSource(ref: EndpointRefSpec, peerNode: string | undefined, what: string): Place {
    if ("pod" in ref) return this.placeOfPod(this.requirePod(ref.pod, what));
    if ("selector" in ref) return this.placeOfPod(this.selectPod(ref.selector, what));
    if ("service" in ref) throw new SimError("BAD_REFERENCE", `${what}: a service (${ref.service}) cannot send traffic; name a pod, an IP or an entity`);
    if ("ip" in ref || "cidr" in ref) {
      const ip = "ip" in ref ? canonicalIp(ref.ip)! : this.firstIp(ref.cidr);
      return this.placeOfIp(ip);
    }
    return this.entityPlace(ref.entity, peerNode);
  }

  private entityPlace(entity: string, peerNode: string | undefined): Place {
    const node = this.cluster.nodes.find((n) => n.name === peerNode) ?? this.cluster.nodes[0]!;
    switch (entity) {
      case "world":
        return { kind: "external", ip: WORLD_IP, entity };
      case "host":
        return { kind: "host", ip: node.ip, node: node.name, carry: C.ID_HOST, entity };
      case "remote-node": {
        const other = this.otherNode(node.name);
        return { kind: "external", ip: other ? other.ip : "192.168.56.250", carry: C.ID_REMOTE_NODE, entity };
      }
      case "kube-apiserver":
        return { kind: "external", ip: KUBE_APISERVER_IP, carry: C.ID_KUBE_APISERVER, entity };
      default: {
        const e = ENTITY_OFFSETS.find(([, id]) => id === ENTITY_IDS[entity]);
        return { kind: "external", ip: entityIp(node, e ? e[0] : 2), carry: ENTITY_IDS[entity], entity };
      }
    }
  }

  /** Resolves a destination; a service becomes the frontend the source would use. */
  /**
   * The same place in another address family: a dual-stack pod at its address of that family, a service
   * frontend at the service's frontend of that family; undefined when it has none. Other places are as given.
   */
  inFamily(place: Place, frontend: Frontend | undefined, v6: boolean): { place: Place; frontend?: Frontend } | undefined {
    if (!place.ip || isIpv6(place.ip) === v6) return { place, frontend };
    if (frontend) {
      // A NodePort stays on its node: the same node's address of the other family.
      const sameNode = (x: Frontend) => x.kind !== "NodePort" || this.nodeByIp.get(x.ip) === this.nodeByIp.get(frontend.ip);
      const f = this.lb.frontends.find((x) => x.svc === frontend.svc && x.port === frontend.port && x.kind === frontend.kind && isIpv6(x.ip) === v6 && sameNode(x));
      return f ? { place: { ...place, ip: f.ip }, frontend: f } : undefined;
    }
    if (place.kind !== "pod" || !place.pod) return undefined;
    const ip = place.pod.ips.find((x) => isIpv6(x) === v6);
    return ip ? { place: { ...place, ip } } : undefined;
  }

  resolveDestination(ref: EndpointRefSpec, src: Place | undefined, port: number, proto: FlowProtocol, what: string): { place: Place; port: number; frontend?: Frontend } {
    if ("pod" in ref) return { place: this.placeOfPod(this.requirePod(ref.pod, what)), port };
    if ("selector" in ref) return { place: this.placeOfPod(this.selectPod(ref.selector, what)), port };
    if ("service" in ref) {
      const svc = this.serviceByKey(ref.service);
      if (!svc) throw new SimError("UNKNOWN_SERVICE", `${what}: unknown service ${ref.service}`, `services: ${this.cluster.services.map((s) => s.key).join(", ") || "none"}`);
      const fronts = this.lb.frontends.filter((f) => f.svc === svc && f.port.port === port && f.protocol === proto);
      if (!fronts.length) {
        const ports = svc.ports.map((p) => `${p.port}/${p.protocol}`).join(", ");
        throw new SimError("UNKNOWN_SERVICE_PORT", `${what}: service ${ref.service} has no port ${port}/${proto}${svc.headless ? " (it is headless)" : ""} (ports: ${ports || "none"})`);
      }
      let f: Frontend | undefined;
      // From outside: a LoadBalancer IP, else a NodePort, else an external IP. From a host: its own
      // node's NodePort (Cilium reaches a ClusterIP from the host with socket LB, which is not modelled).
      if (src?.kind === "external") f = fronts.find((x) => x.kind === "LoadBalancer") ?? fronts.find((x) => x.kind === "NodePort") ?? fronts.find((x) => x.kind === "ExternalIP");
      else if (src?.kind === "host") f = fronts.find((x) => x.kind === "NodePort" && (!src.ip || x.ip === src.ip)) ?? fronts.find((x) => x.kind === "NodePort");
      f ??= fronts.find((x) => x.kind === "ClusterIP") ?? fronts[0]!;
      return { place: { kind: "external", ip: f.ip }, port: f.fport, frontend: f };
    }
    if ("ip" in ref || "cidr" in ref) {
      const ip = "ip" in ref ? canonicalIp(ref.ip)! : this.firstIp(ref.cidr);
      const f = this.lb.frontends.find((x) => x.ip === ip && x.fport === port && x.protocol === proto);
      if (f) return { place: { kind: "external", ip }, port, frontend: f };
      return { place: this.placeOfIp(ip), port };
    }
    const e = this.entityPlace(ref.entity, src?.node);
    if (ref.entity === "host" || ref.entity === "remote-node") return { place: this.placeOfIp(e.ip), port };
    return { place: e, port };
  }
}
