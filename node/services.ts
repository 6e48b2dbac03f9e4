/*
 * The load-balancing view of the cluster, computed once and shared by every node agent: one frontend per
 * (service, port, address) — the ClusterIP, each node IP for a NodePort, each LoadBalancer status IP, each
 * external IP — with its reverse-NAT index and flags, and one backend id per distinct (address, port,
 * protocol). Numbers are assigned in service order so every node uses the same ones, as Cilium's agents
 * agree on service ids (pkg/loadbalancer: one ID per frontend, backend IDs per backend address).
 */
import * as C from "../host/constants.gen.ts";
import { isIpv6 } from "../host/ip.ts";
import type { SimBackend, SimCluster, SimService, SimServicePort, L4 } from "./cluster.ts";

export type FrontendKind = "ClusterIP" | "NodePort" | "LoadBalancer" | "ExternalIP";

export interface Frontend {
  svc: SimService;
  port: SimServicePort;
  kind: FrontendKind;
  ip: string;
  /** The port the frontend listens on (service port, or the NodePort). */
  fport: number;
  protocol: L4;
  revNat: number;
  /** SVC_F_* flags. */
  flags: number;
  flags2: number;
  /** Only node-local backends are used (externalTrafficPolicy / internalTrafficPolicy Local). */
  localOnly: boolean;
}

export interface LbModel {
  frontends: Frontend[];
  backendIds: Map<string, number>;
  backendById: Map<number, SimBackend>;
}

export function backendKey(b: { ip: string; port: number; protocol: string }): string {
  return `${b.ip}:${b.port}/${b.protocol}`;
}

export function buildLbModel(c: SimCluster): LbModel {
  const frontends: Frontend[] = [];
  const backendIds = new Map<string, number>();
  const backendById = new Map<number, SimBackend>();
  let revNat = 1;
  for (const svc of c.services) {
    if (svc.type === "ExternalName" || svc.headless) continue;
    for (const port of svc.ports) {
      for (const b of port.backends) {
        const k = backendKey(b);
        if (!backendIds.has(k)) {
          const id = backendIds.size + 1;
          backendIds.set(k, id);
          backendById.set(id, b);
        }
      }
      const aff = svc.affinityTimeout ? C.SVC_F_AFFINITY : 0;
      const add = (kind: FrontendKind, ip: string, fport: number, flags: number, localOnly: boolean, flags2 = 0) =>
        frontends.push({ svc, port, kind, ip, fport, protocol: port.protocol, revNat: revNat++, flags: flags | aff, flags2, localOnly });
      for (const ip of svc.clusterIPs) add("ClusterIP", ip, port.port, 0, svc.internalLocal, svc.internalLocal ? C.SVC_F2_INT_LOCAL_SCOPE : 0);
      // A NodePort on every node address of the service's families: the IPv4 InternalIP, and the IPv6 one
      // of a dual-stack node when the service has an IPv6 ClusterIP (Cilium makes a NodePort frontend per
      // node address of each family the service has; a single-stack service is not reachable over the
      // other family).
      const v6Service = svc.clusterIPs.some(isIpv6);
      if (port.nodePort !== undefined)
        for (const n of c.nodes) for (const ip of n.ip6 && v6Service ? [n.ip, n.ip6] : [n.ip]) add("NodePort", ip, port.nodePort, C.SVC_F_NODEPORT | C.SVC_F_ROUTABLE | (svc.externalLocal ? C.SVC_F_EXT_LOCAL_SCOPE : 0), svc.externalLocal);
      for (const ip of svc.loadBalancerIPs) add("LoadBalancer", ip, port.port, C.SVC_F_LOADBALANCER | C.SVC_F_ROUTABLE | (svc.externalLocal ? C.SVC_F_EXT_LOCAL_SCOPE : 0), svc.externalLocal);
      for (const ip of svc.externalIPs) add("ExternalIP", ip, port.port, C.SVC_F_EXTERNAL_IP | C.SVC_F_ROUTABLE | (svc.externalLocal ? C.SVC_F_EXT_LOCAL_SCOPE : 0), svc.externalLocal);
    }
  }
  return { frontends, backendIds, backendById };
}

/**
 * The backends a node uses for a frontend: those of the frontend's address family (a dual-stack service's
 * IPv4 ClusterIP goes to the pods' IPv4 addresses, its IPv6 one to their IPv6 addresses: no NAT46/64, as
 * Cilium's per-family lb4/lb6 maps), and local ones only when its traffic policy is Local.
 */
export function frontendBackends(f: Frontend, nodeName: string): SimBackend[] {
  const v6 = isIpv6(f.ip);
  const same = f.port.backends.filter((b) => isIpv6(b.ip) === v6);
  return f.localOnly ? same.filter((b) => b.node === nodeName) : same;
}
