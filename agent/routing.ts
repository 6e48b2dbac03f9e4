/*
 * The agent's routing mode and, in native routing, the routes it wants: each remote node's pod CIDR via
 * that node's address, read from the Node objects of the desired state (spec.podCIDR and the InternalIP of
 * status.addresses, as Cilium reads them from its CiliumNode/Node objects, pkg/node). Only what a Node
 * object declares is routed: the cluster model fills a Node without a pod CIDR or address with made-up
 * ones for the simulator, which must never become a route on a real node. Pure: datapath/node-routes.ts
 * installs the result.
 */
import { parseIp } from "../host/ip.ts";
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

/**
 * The routes to every other node that declares an IPv4 pod CIDR and an IPv4 InternalIP. A Node that lacks
 * either, whose pod CIDR overlaps this node's or an earlier node's (in name order), or whose address is this
 * node's, gets no route and a problem line instead.
 */
export function remoteNodeRoutes(objects: ManifestObject[], self: NodeInfo): WantedRoutes {
  const out: WantedRoutes = { routes: [], problems: [] };
  const nodes = objects.filter((o) => o.kind === "Node" && o.metadata.name !== self.name).sort((a, b) => (a.metadata.name < b.metadata.name ? -1 : 1));
  for (const o of nodes) {
    const name = o.metadata.name;
    const spec = (o.raw?.spec ?? {}) as { podCIDR?: unknown };
    const addrs = ((o.raw?.status as { addresses?: { type?: string; address?: string }[] } | undefined)?.addresses ?? []);
    const cidr = typeof spec.podCIDR === "string" ? parseCidr(spec.podCIDR) : undefined;
    const via = addrs.find((a) => a.type === "InternalIP" && typeof a.address === "string" && parseIp(a.address)?.family === 4)?.address;
    if (!cidr || cidr.family !== 4) {
      out.problems.push(`node ${name}: no route, spec.podCIDR is ${spec.podCIDR === undefined ? "missing" : `not an IPv4 prefix (${JSON.stringify(spec.podCIDR)})`}`);
      continue;
    }
    if (!via) {
      out.problems.push(`node ${name}: no route, status.addresses has no IPv4 InternalIP`);
      continue;
    }
    if (via === self.ip) {
      out.problems.push(`node ${name}: no route, its InternalIP ${via} is this node's`);
      continue;
    }
    if (overlaps(cidr.text, self.podCIDR)) {
      out.problems.push(`node ${name}: no route, its pod CIDR ${cidr.text} overlaps this node's ${self.podCIDR}`);
      continue;
    }
    const clash = out.routes.find((r) => overlaps(r.cidr, cidr.text));
    if (clash) {
      out.problems.push(`node ${name}: no route, its pod CIDR ${cidr.text} overlaps node ${clash.node}'s ${clash.cidr}`);
      continue;
    }
    out.routes.push({ cidr: cidr.text, via, node: name });
  }
  return out;
}
