/*
 * The agent's routing mode and, in native routing, the routes it wants: each remote node's pod CIDR via
 * that node's address, read from the Node objects of the desired state (spec.podCIDR and the InternalIP of
 * status.addresses, as Cilium reads them from its CiliumNode/Node objects, pkg/node). Only what a Node
 * object declares is routed: the cluster model fills a Node without a pod CIDR or address with made-up
 * ones for the simulator, which must never become a route on a real node. Pure: datapath/node-routes.ts
 * installs the result.
 */
import { formatIp, parseIp } from "../host/ip.ts";
import { parseCidr, type ManifestObject } from "../policy/index.ts";
import type { NodeInfo } from "./desired.ts";
import type { NodeRoute } from "../datapath/node-routes.ts";

export const ROUTING_MODES = ["native", "tunnel"] as const;
export type RoutingMode = (typeof ROUTING_MODES)[number];

export interface WantedRoutes {
  routes: NodeRoute[];
  /** Remote Node objects that get no route, and why (one line each). */
  problems: string[];
}

/** True when the two prefixes share an address (one contains the other). */
function overlaps(a: string, b: string): boolean {
  const ca = parseCidr(a)!;
  const cb = parseCidr(b)!;
  const [outer, inner] = ca.bits <= cb.bits ? [ca, cb] : [cb, ca];
  return parseCidr(`${inner.text.split("/")[0]}/${outer.bits}`)!.text === outer.text;
}

/** An address in its canonical spelling (IPv6 compressed), or undefined. */
function canonical(ip: string): string | undefined {
  const a = parseIp(ip);
  return a && formatIp(a.family, a.addr);
}

type NodeAddress = { type?: string; address?: string };

/** The node's InternalIP of a family (Cilium GetNodeIP(ipv6)), or undefined. */
function internalIp(o: ManifestObject, family: 4 | 6): string | undefined {
  const addrs = ((o.raw?.status as { addresses?: NodeAddress[] } | undefined)?.addresses ?? []);
  const a = addrs.find((x) => x.type === "InternalIP" && typeof x.address === "string" && parseIp(x.address)?.family === family)?.address;
  return a === undefined ? undefined : canonical(a);
}

/** A Node's IPv6 pod CIDR: the IPv6 entry of spec.podCIDRs (the API server allows one per family). */
function podCidr6(o: ManifestObject): string | undefined {
  const list = (o.raw?.spec as { podCIDRs?: unknown } | undefined)?.podCIDRs;
  for (const x of Array.isArray(list) ? list : []) {
    const c = typeof x === "string" ? parseCidr(x) : undefined;
    if (c?.family === 6) return c.text;
  }
  return undefined;
}

/**
 * The routes to every other node that declares an IPv4 pod CIDR and an IPv4 InternalIP. A Node that lacks
 * either, whose pod CIDR overlaps this node's or an earlier node's (in name order), or whose address is this
 * node's, gets no route and a problem line instead.
 *
 * Dual stack (this node has an IPv6 pod CIDR): also a route to every other node's IPv6 pod CIDR (the IPv6
 * entry of spec.podCIDRs) via its IPv6 InternalIP, with the same checks in that family — as Cilium's
 * direct node routes take the node's IP of the CIDR's family (pkg/datapath/linux/node.go, GetNodeIP(ipv6)).
 * An IPv6 pod CIDR is never routed via an IPv4 next hop.
 */
export function remoteNodeRoutes(objects: ManifestObject[], self: NodeInfo): WantedRoutes {
  const out: WantedRoutes = { routes: [], problems: [] };
  const nodes = objects.filter((o) => o.kind === "Node" && o.metadata.name !== self.name).sort((a, b) => (a.metadata.name < b.metadata.name ? -1 : 1));
  const add = (name: string, family: 4 | 6, cidr: string, via: string, own: string | undefined, ownIp: string | undefined): void => {
    const what = family === 6 ? "no IPv6 route" : "no route";
    if (via === ownIp) return void out.problems.push(`node ${name}: ${what}, its InternalIP ${via} is this node's`);
    if (own && overlaps(cidr, own)) return void out.problems.push(`node ${name}: ${what}, its pod CIDR ${cidr} overlaps this node's ${own}`);
    const clash = out.routes.find((r) => parseCidr(r.cidr)!.family === family && overlaps(r.cidr, cidr));
    if (clash) return void out.problems.push(`node ${name}: ${what}, its pod CIDR ${cidr} overlaps node ${clash.node}'s ${clash.cidr}`);
    out.routes.push({ cidr, via, node: name });
  };
  for (const o of nodes) {
    const name = o.metadata.name;
    const spec = (o.raw?.spec ?? {}) as { podCIDR?: unknown };
    const cidr = typeof spec.podCIDR === "string" ? parseCidr(spec.podCIDR) : undefined;
    const via = internalIp(o, 4);
    if (!cidr || cidr.family !== 4) out.problems.push(`node ${name}: no route, spec.podCIDR is ${spec.podCIDR === undefined ? "missing" : `not an IPv4 prefix (${JSON.stringify(spec.podCIDR)})`}`);
    else if (!via) out.problems.push(`node ${name}: no route, status.addresses has no IPv4 InternalIP`);
    else add(name, 4, cidr.text, via, self.podCIDR, self.ip);
    if (!self.podCIDRv6) continue;
    const cidr6 = podCidr6(o);
    const via6 = internalIp(o, 6);
    if (!cidr6) out.problems.push(`node ${name}: no IPv6 route, spec.podCIDRs has no IPv6 prefix`);
    else if (!via6) out.problems.push(`node ${name}: no IPv6 route, status.addresses has no IPv6 InternalIP`);
    else add(name, 6, cidr6, via6, self.podCIDRv6, self.ip6 === undefined ? undefined : canonical(self.ip6));
  }
  return out;
}

/**
 * Tunnel mode: the route to every other node's IPv4 pod CIDR goes through the node's tunnel device, whose
 * egress program (from_host, core/pipeline.ts fromHost) encapsulates what the stack sends there — the
 * node's own connections, its L7 proxy's upstream connections, NodePort flows to a remote backend — as
 * Cilium routes the other nodes' pod CIDRs through cilium_host in tunnel mode. Pods' own packets never take
 * these routes (from_endpoint redirects them to the device). The routes carry the node's address as source
 * (the other node's pod answers it over the underlay) and the pods' MTU (the overlay's overhead). Same
 * checks as remoteNodeRoutes, whose tunnel endpoint is the same InternalIP; IPv6 pod CIDRs get no route
 * (the node's own IPv6 traffic to remote pods is not encapsulated yet: docs/multi-node.md).
 */
export function tunnelNodeRoutes(objects: ManifestObject[], self: NodeInfo, device: string, mtu: number): WantedRoutes {
  const v4 = remoteNodeRoutes(objects, { ...self, podCIDRv6: undefined });
  return { routes: v4.routes.map((r) => ({ cidr: r.cidr, via: "", dev: device, src: self.ip, mtu, node: r.node })), problems: v4.problems };
}
