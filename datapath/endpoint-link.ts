/*
 * The plumbing that joins a pod's network namespace to the node, as Cilium's CNI plugin does
 * (plugins/cilium-cni: a veth pair, the host side named lxc<hash> in the node's namespace, the other side
 * moved into the pod and renamed; pkg/datapath/linux/route for the routes). Done with iproute2 (`ip`),
 * in the caller's network namespace for the host side and via nsenter for the pod side, so it also works
 * for namespaces that are only a path (/proc/<pid>/ns/net, as container runtimes pass in CNI_NETNS).
 *
 * Addressing (Cilium's default for veth endpoints):
 *   pod:  <ip>/32 on its interface; 169.254.1.1 as an on-link gateway with a permanent neighbour entry for
 *         the host side's MAC; the default route via it. IPv6 off on the interface unless the pod is
 *         dual-stack.
 *   node: a /32 route to <ip> on the host-side interface and a permanent neighbour entry for the pod's MAC,
 *         so no ARP crosses the datapath.
 * Dual stack (an `ip6`): the same for IPv6 — <ip6>/128 (no duplicate address detection: IPAM made it
 * unique), fe80::1 as the on-link gateway with a permanent neighbour entry for the host side's MAC and the
 * default route via it; on the node a /128 route and a permanent neighbour entry for the pod's MAC. So no
 * neighbour discovery crosses the datapath, as no ARP does: where Cilium's bpf_lxc answers the pod's
 * neighbour solicitation for its router address (bpf/lib/icmp6.h icmp6_handle_ns), the pod here already
 * knows the router's MAC. Neither side makes a link-local address (addr_gen_mode 1) nor sends router
 * solicitations, so no DAD, RS or MLD chatter reaches the programs as drops.
 */
import { execFileSync } from "node:child_process";
import { createHash } from "node:crypto";
import { existsSync, writeFileSync } from "node:fs";
import { BpfError, BpfErrorCode } from "./errors.ts";
import { netnsPath } from "./netns.ts";

export const POD_GATEWAY = "169.254.1.1";
/** The pods' IPv6 gateway: link-local, known to each pod by a permanent neighbour entry. */
export const POD_GATEWAY6 = "fe80::1";

export interface EndpointLinkSpec {
  /** Name of the host-side interface (≤ 15 bytes); hostIfnameFor() derives one from the container id. */
  hostIfname: string;
  /** The pod's network namespace: a name under /var/run/netns or a path. */
  netns: string;
  /** Interface name inside the pod (CNI_IFNAME, usually eth0). */
  ifname: string;
  /** The pod's IPv4 address. */
  ip: string;
  /** The pod's IPv6 address (dual stack); absent: IPv6 stays off on the pod's interface. */
  ip6?: string;
  mtu?: number;
}

export interface EndpointLink {
  hostIfname: string;
  hostIfindex: number;
  hostMac: string;
  podMac: string;
  podIfindex: number;
}

/** Runs `ip ARGS` in the caller's namespace or, via nsenter, in `netns`; BPF_NETNS_FAILED with ip's message on failure. */
export function ip(args: string[], netns?: string): string {
  const cmd = netns ? "nsenter" : "ip";
  const argv = netns ? [`--net=${netnsPath(netns)}`, "ip", ...args] : args;
  try {
    return execFileSync(cmd, argv, { encoding: "utf8", stdio: ["ignore", "pipe", "pipe"] });
  } catch (e) {
    const err = e as { stderr?: string; message: string };
    throw new BpfError(BpfErrorCode.NetnsFailed, `ip ${args.join(" ")}${netns ? ` (netns ${netns})` : ""}: ${(err.stderr ?? err.message).trim()}`, "run as root with iproute2 installed");
  }
}

/** The host-side interface name Cilium-style: lxc + 11 hex digits of the container id's hash. */
export function hostIfnameFor(containerId: string): string {
  return `lxc${createHash("sha256").update(containerId).digest("hex").slice(0, 11)}`;
}

interface IpLink {
  ifindex: number;
  ifname: string;
  address: string;
}

/** `ip -j link show dev X` in a namespace; undefined when absent. */
export function linkShow(ifname: string, netns?: string): IpLink | undefined {
  try {
    const out = ip(["-j", "link", "show", "dev", ifname], netns);
    const links = JSON.parse(out) as IpLink[];
    return links[0];
  } catch {
    return undefined;
  }
}

/** Creates the veth pair, moves and addresses the pod side, and sets routes and neighbours on both. */
export function createEndpointLink(spec: EndpointLinkSpec): EndpointLink {
  if (!existsSync(netnsPath(spec.netns))) throw new BpfError(BpfErrorCode.NetnsFailed, `network namespace ${spec.netns} does not exist`);
  const tmp = `tmp${spec.hostIfname.slice(3, 14)}`;
  const mtu = String(spec.mtu ?? 1500);
  if (linkShow(spec.hostIfname)) ip(["link", "del", spec.hostIfname]);
  ip(["link", "add", spec.hostIfname, "mtu", mtu, "type", "veth", "peer", "name", tmp, "mtu", mtu]);
  try {
    ip(["link", "set", tmp, "netns", netnsPath(spec.netns)]);
    ip(["link", "set", tmp, "name", spec.ifname], spec.netns);
    if (spec.ip6) {
      for (const [k, v] of [["disable_ipv6", "0"], ["addr_gen_mode", "1"], ["accept_dad", "0"], ["accept_ra", "0"], ["router_solicitations", "0"]]) podSysctl(spec.netns, `net.ipv6.conf.${spec.ifname}.${k}`, v!);
    } else podSysctl(spec.netns, `net.ipv6.conf.${spec.ifname}.disable_ipv6`, "1");
    const host = linkShow(spec.hostIfname)!;
    hostSysctls(spec.hostIfname, spec.ip6 !== undefined);
    ip(["link", "set", spec.hostIfname, "up"]);
    ip(["link", "set", "lo", "up"], spec.netns);
    ip(["addr", "add", `${spec.ip}/32`, "dev", spec.ifname], spec.netns);
    ip(["link", "set", spec.ifname, "up"], spec.netns);
    ip(["route", "replace", POD_GATEWAY, "dev", spec.ifname, "scope", "link"], spec.netns);
    ip(["route", "replace", "default", "via", POD_GATEWAY, "dev", spec.ifname], spec.netns);
    ip(["neigh", "replace", POD_GATEWAY, "lladdr", host.address, "dev", spec.ifname, "nud", "permanent"], spec.netns);
    const pod = linkShow(spec.ifname, spec.netns)!;
    ip(["route", "replace", `${spec.ip}/32`, "dev", spec.hostIfname]);
    ip(["neigh", "replace", spec.ip, "lladdr", pod.address, "dev", spec.hostIfname, "nud", "permanent"]);
    if (spec.ip6) {
      ip(["-6", "addr", "add", `${spec.ip6}/128`, "dev", spec.ifname, "nodad"], spec.netns);
      ip(["-6", "route", "replace", `${POD_GATEWAY6}/128`, "dev", spec.ifname], spec.netns);
      ip(["-6", "neigh", "replace", POD_GATEWAY6, "lladdr", host.address, "dev", spec.ifname, "nud", "permanent"], spec.netns);
      ip(["-6", "route", "replace", "default", "via", POD_GATEWAY6, "dev", spec.ifname], spec.netns);
      ip(["-6", "route", "replace", `${spec.ip6}/128`, "dev", spec.hostIfname]);
      ip(["-6", "neigh", "replace", spec.ip6, "lladdr", pod.address, "dev", spec.hostIfname, "nud", "permanent"]);
    }
    return { hostIfname: spec.hostIfname, hostIfindex: host.ifindex, hostMac: host.address, podMac: pod.address, podIfindex: pod.ifindex };
  } catch (e) {
    deleteEndpointLink(spec.hostIfname);
    throw e;
  }
}

/**
 * The host side's sysctls, as Cilium sets them on lxc devices: IPv6 off unless the pod is dual-stack (then
 * on, but without a link-local address or router solicitations, whose packets would only be dropped), no
 * reverse-path filter, and accept_local — a NodePort reply
 * from a local backend is reverse-NATed at from-endpoint to the node's own address and then forwarded by
 * the stack, which otherwise drops a packet arriving with a local source address as a martian.
 */
function hostSysctls(ifname: string, ipv6: boolean): void {
  const set = (path: string, v: string) => {
    try {
      writeFileSync(path, v);
    } catch {
      // IPv6 disabled on the node altogether, or a read-only /proc/sys: nothing to do.
    }
  };
  if (ipv6) {
    set(`/proc/sys/net/ipv6/conf/${ifname}/addr_gen_mode`, "1");
    set(`/proc/sys/net/ipv6/conf/${ifname}/accept_ra`, "0");
    set(`/proc/sys/net/ipv6/conf/${ifname}/router_solicitations`, "0");
  }
  set(`/proc/sys/net/ipv6/conf/${ifname}/disable_ipv6`, ipv6 ? "0" : "1");
  set(`/proc/sys/net/ipv4/conf/${ifname}/rp_filter`, "0");
  set(`/proc/sys/net/ipv4/conf/${ifname}/accept_local`, "1");
}

/**
 * A sysctl inside the pod's namespace. The datapath is IPv4-only, so the pod's interface gets no IPv6
 * (Cilium does the same when IPv6 is disabled): no router solicitations or MLD reports to drop, and no
 * noise in the flows. Best effort: a kernel without IPv6 has nothing to disable.
 */
function podSysctl(netns: string, key: string, value: string): void {
  try {
    execFileSync("nsenter", [`--net=${netnsPath(netns)}`, "sysctl", "-q", "-w", `${key}=${value}`], { stdio: "ignore" });
  } catch {
    // no IPv6 in this kernel
  }
}

/** Removes the pair (deleting the host side deletes the pod side too) and with it its routes. Idempotent. */
export function deleteEndpointLink(hostIfname: string): boolean {
  if (!linkShow(hostIfname)) return false;
  try {
    ip(["link", "del", hostIfname]);
    return true;
  } catch {
    return false;
  }
}

/** Whether the pod side still looks as createEndpointLink left it (CNI CHECK). Returns the problems. */
export function checkEndpointLink(spec: EndpointLinkSpec): string[] {
  const problems: string[] = [];
  const host = linkShow(spec.hostIfname);
  if (!host) problems.push(`host interface ${spec.hostIfname} is missing`);
  if (!existsSync(netnsPath(spec.netns))) return [...problems, `network namespace ${spec.netns} is gone`];
  const pod = linkShow(spec.ifname, spec.netns);
  if (!pod) return [...problems, `interface ${spec.ifname} is missing in ${spec.netns}`];
  try {
    const addrs = JSON.parse(ip(["-j", "addr", "show", "dev", spec.ifname], spec.netns)) as { addr_info: { local: string }[] }[];
    for (const a of [spec.ip, ...(spec.ip6 ? [spec.ip6] : [])]) if (!addrs[0]?.addr_info.some((x) => x.local === a)) problems.push(`${spec.ifname} does not have ${a}`);
  } catch (e) {
    problems.push((e as Error).message);
  }
  return problems;
}

/** Turns on IPv4 forwarding in the caller's namespace (the node), and IPv6 forwarding for dual stack. */
export function enableIpForwarding(ipv6 = false): void {
  writeFileSync("/proc/sys/net/ipv4/ip_forward", "1");
  if (ipv6) writeFileSync("/proc/sys/net/ipv6/conf/all/forwarding", "1");
}
