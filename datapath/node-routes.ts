/*
 * Native routing between nodes: one route per remote node, its pod CIDR via its node IP, in the agent's
 * network namespace — what Cilium installs with auto-direct-node-routes (pkg/datapath/linux/node.go, the
 * direct node routes of the linux node handler). Tunnel mode: the same pod CIDRs through the tunnel device
 * (`dev`, with the node's address as source and the pods' MTU), whose from_host program encapsulates them. The routes the agent owns carry their own route protocol
 * number (NODE_ROUTE_PROTO), IPv4 and IPv6 alike (an IPv6 pod CIDR via the node's IPv6 address), so a sync removes exactly the stale ones it installed and never an operator's
 * route. Done with iproute2 (`ip -j route`), like datapath/endpoint-link.ts.
 */
import { execFileSync } from "node:child_process";
import { BpfError, BpfErrorCode } from "./errors.ts";

/** Route protocol of the agent's node routes (`proto 193` in `ip route`); unused by the kernel and iproute2. */
export const NODE_ROUTE_PROTO = 193;

export interface NodeRoute {
  /** A remote node's pod CIDR, in canonical form (e.g. 10.244.2.0/24, fd00:10:244:2::/64). */
  cidr: string;
  /** That node's address of the CIDR's family: the next hop ("" for a route through `dev`). */
  via: string;
  /** Tunnel mode: the device the CIDR is routed through instead of a next hop (the tunnel device). */
  dev?: string;
  /** With `dev`: the source address the node's own connections take, and the route's MTU. */
  src?: string;
  mtu?: number;
  /** The node's name, for messages. */
  node: string;
}

/** How a route is compared with what the kernel has: its next hop, or its device, source and MTU. */
export function routeTarget(r: NodeRoute): string {
  return r.dev ? `dev ${r.dev}${r.src ? ` src ${r.src}` : ""}${r.mtu ? ` mtu ${r.mtu}` : ""}` : r.via;
}

export interface NodeRouteSync {
  added: NodeRoute[];
  removed: string[];
  /** Routes that could not be installed (e.g. the next hop is not on a connected network), with the reason. */
  failed: { route: NodeRoute; error: string }[];
}

function ip(args: string[]): string {
  try {
    return execFileSync("ip", args, { encoding: "utf8", stdio: ["ignore", "pipe", "pipe"] });
  } catch (e) {
    const err = e as { stderr?: string; message: string };
    throw new BpfError(BpfErrorCode.NetnsFailed, `ip ${args.join(" ")}: ${(err.stderr ?? err.message).trim()}`, "run as root with iproute2 installed");
  }
}

/** The node routes installed now, IPv4 and IPv6: destination → gateway, or for a route without one
 * `dev <device>[ src <address>][ mtu <n>]` (routeTarget). */
export function listNodeRoutes(): Map<string, string> {
  const out = new Map<string, string>();
  for (const [flag, host] of [["-4", "/32"], ["-6", "/128"]] as const) {
    const rows = JSON.parse(ip(["-j", flag, "route", "show", "proto", String(NODE_ROUTE_PROTO)]) || "[]") as
      { dst: string; gateway?: string; dev?: string; prefsrc?: string; metrics?: { mtu?: number }[] }[];
    for (const r of rows) {
      const mtu = r.metrics?.find((m) => m.mtu !== undefined)?.mtu;
      const target = r.gateway ?? routeTarget({ cidr: r.dst, via: "", dev: r.dev ?? "", src: r.prefsrc, mtu, node: "" });
      // iproute2 prints a host route without its prefix length.
      out.set(r.dst.includes("/") ? r.dst : `${r.dst}${host}`, target);
    }
  }
  return out;
}

/** iproute2's family flag for a prefix. */
const familyFlag = (cidr: string) => (cidr.includes(":") ? "-6" : "-4");

/**
 * Makes the node routes exactly `want`: adds or replaces what is missing or points elsewhere, then removes
 * the agent's routes to CIDRs no longer wanted (new routes first, so a node that moves keeps a route).
 * A route the kernel refuses is reported in `failed` and the others are still applied.
 */
export function syncNodeRoutes(want: NodeRoute[]): NodeRouteSync {
  const have = listNodeRoutes();
  const out: NodeRouteSync = { added: [], removed: [], failed: [] };
  const wanted = new Set<string>();
  for (const r of want) {
    wanted.add(r.cidr);
    if (have.get(r.cidr) === routeTarget(r)) continue;
    const target = r.dev
      ? ["dev", r.dev, ...(r.src ? ["src", r.src] : []), ...(r.mtu ? ["mtu", String(r.mtu)] : [])]
      : ["via", r.via];
    try {
      ip([familyFlag(r.cidr), "route", "replace", r.cidr, ...target, "proto", String(NODE_ROUTE_PROTO)]);
      out.added.push(r);
    } catch (e) {
      out.failed.push({ route: r, error: (e as Error).message });
    }
  }
  for (const dst of have.keys()) {
    if (wanted.has(dst)) continue;
    try {
      ip([familyFlag(dst), "route", "del", dst, "proto", String(NODE_ROUTE_PROTO)]);
      out.removed.push(dst);
    } catch (e) {
      out.failed.push({ route: { cidr: dst, via: have.get(dst)!, node: "(stale)" }, error: (e as Error).message });
    }
  }
  return out;
}
