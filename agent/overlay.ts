/*
 * Routing mode tunnel on a node: the agent's part of the overlay (docs/multi-node.md "Overlay"). As
 * Cilium's default tunnel mode, the node has one collect-metadata (`external`) VXLAN or Geneve device —
 * ours is named ciliate_vxlan / ciliate_geneve so it never takes over a Cilium node's cilium_vxlan — with
 * from_overlay at its tc ingress and from_host at its tc egress (the node's own traffic to other nodes' pods,
 * routed through the device, gets its tunnel key there: Cilium's cil_from_host on cilium_host); the programs redirect packets for pods on other nodes to it with the
 * sender's identity in the tunnel key (core/overlay.ts). The agent creates the device (or adopts the one a
 * previous run left, so a restart keeps the flows through it), attaches the program, and hands the device's
 * ifindex and protocol to node/desired.ts, which writes them into the Config map exactly as the simulator
 * does. Pods get the device MTU less the encapsulation overhead (host/tunnel.ts podMtu).
 *
 * Refusals are one line and stop the agent before it programs anything: a protocol this kernel has no
 * module for (Geneve on this machine), or a device that cannot be created. Nothing falls back to another
 * protocol or to unencapsulated forwarding.
 *
 * Teardown: stopping the agent leaves the device and its filter (as it leaves maps and programs), so
 * connections between nodes keep flowing while it restarts. An agent started in another routing mode
 * removes ciliate_vxlan / ciliate_geneve once its first reconcile has written a Config map without them.
 */
import { writeFileSync } from "node:fs";
import { attachTc, type BpfProgram } from "../datapath/index.ts";
import { ip } from "../datapath/endpoint-link.ts";
import { deleteTunnelDevice, ensureTunnelDevice, tunnelModuleProblem } from "../datapath/tunnel-device.ts";
import { isIpv6 } from "../host/ip.ts";
import { podMtu, tunnelPort, type TunnelProtocol } from "../host/tunnel.ts";
import { AgentError } from "./defaults.ts";

export const TUNNEL_PROTOCOLS = ["vxlan", "geneve"] as const;

/** The agent's tunnel device per protocol (Cilium's are cilium_vxlan / cilium_geneve). */
export const TUNNEL_DEVICE: Record<TunnelProtocol, string> = { vxlan: "ciliate_vxlan", geneve: "ciliate_geneve" };

/** Used when the node's address is on no interface the agent can see. */
const DEFAULT_UNDERLAY_MTU = 1500;

export interface OverlayPlan {
  protocol: TunnelProtocol;
  device: string;
  /** The underlay's MTU: the tunnel device keeps it. */
  deviceMtu: number;
  /** What pods get: deviceMtu less the overhead. */
  podMtu: number;
}

export interface NodeOverlay extends OverlayPlan {
  ifindex: number;
  port: number;
  /** The device was already there with these settings (a restart) rather than created. */
  adopted: boolean;
}

/** The MTU of the interface holding `nodeIp` (the underlay), else of the first device, else 1500. */
function underlayMtu(nodeIp: string, devices: string[]): number {
  try {
    const links = JSON.parse(ip(["-j", "addr", "show"]) || "[]") as { ifname: string; mtu: number; addr_info?: { local?: string }[] }[];
    const holder = links.find((l) => l.addr_info?.some((a) => a.local === nodeIp)) ?? links.find((l) => l.ifname === devices[0]);
    if (holder && Number.isInteger(holder.mtu)) return holder.mtu;
  } catch {
    // No iproute2 JSON: the default below.
  }
  return DEFAULT_UNDERLAY_MTU;
}

/**
 * What the node's overlay will be, checked before the agent loads or attaches anything. Throws AgentError
 * TUNNEL_UNSUPPORTED (one line) when this kernel cannot make a device of `protocol`, or when the underlay's
 * MTU leaves too little for pods (at least 1280 with `ipv6Pods`, dual stack).
 */
export function planOverlay(protocol: TunnelProtocol, nodeIp: string, devices: string[], ipv6Pods = false): OverlayPlan {
  const problem = tunnelModuleProblem(protocol);
  if (problem) throw new AgentError("TUNNEL_UNSUPPORTED", `--routing-mode tunnel --tunnel-protocol ${protocol}: ${problem}; the agent does not start (it never falls back to another protocol or to unencapsulated forwarding)`);
  const deviceMtu = underlayMtu(nodeIp, devices);
  try {
    // The outer header's family is the underlay's (the node address the tunnel runs between); dual-stack
    // pods need IPv6's minimum MTU after the overhead.
    return { protocol, device: TUNNEL_DEVICE[protocol], deviceMtu, podMtu: podMtu(deviceMtu, isIpv6(nodeIp) ? 6 : 4, ipv6Pods) };
  } catch (e) {
    throw new AgentError("TUNNEL_UNSUPPORTED", `--routing-mode tunnel: the underlay's ${(e as Error).message}`);
  }
}

/**
 * Creates or adopts the device and attaches from_overlay at its tc ingress and from_host at its tc egress
 * (replacing an earlier run's filters), with ARP off. Throws AgentError TUNNEL_DEVICE_FAILED with iproute2's or libbpf's reason when either fails:
 * the agent must not start in tunnel mode without its device.
 */
export function setupOverlay(plan: OverlayPlan, fromOverlay: BpfProgram, fromHost: BpfProgram): NodeOverlay {
  let dev;
  try {
    dev = ensureTunnelDevice({ protocol: plan.protocol, name: plan.device, port: tunnelPort(plan.protocol), mtu: plan.deviceMtu });
    attachTc(fromOverlay, { ifindex: dev.ifindex, direction: "ingress", replace: true });
    // What the node's stack routes through the device (the other nodes' pod CIDRs, agent routing.ts
    // tunnelNodeRoutes) gets its tunnel key at the device's egress, or is dropped there.
    attachTc(fromHost, { ifindex: dev.ifindex, direction: "egress", replace: true });
    // No neighbour resolution through the tunnel: the stack addresses the inner frame to the device's own
    // MAC (a NOARP device's neighbours), and the receiving from_overlay takes any frame for the host. An
    // ARP request would be a frame without a tunnel key, which from_host drops.
    ip(["link", "set", plan.device, "arp", "off"]);
  } catch (e) {
    throw new AgentError("TUNNEL_DEVICE_FAILED", `--routing-mode tunnel: cannot set up ${plan.protocol} device ${plan.device}: ${(e as Error).message.split("\n")[0]}`);
  }
  // Decapsulated packets arrive on the device from pod addresses the node has no route to in tunnel mode:
  // reverse-path filtering would drop them, so it is off for the device and for `all` (the kernel uses the
  // larger of the two), as Cilium sets net.ipv4.conf.all.rp_filter=0 (pkg/datapath/linux/sysctl users).
  for (const d of ["all", plan.device]) {
    try {
      writeFileSync(`/proc/sys/net/ipv4/conf/${d}/rp_filter`, "0");
    } catch {
      // A read-only /proc/sys: the operator's setting stands.
    }
  }
  return { ...plan, ifindex: dev.ifindex, port: dev.port, adopted: dev.adopted };
}

/** Removes the agent's tunnel devices other than `keep`; one log line per device removed. */
export function removeStaleOverlay(keep: string | undefined): string[] {
  const out: string[] = [];
  for (const name of Object.values(TUNNEL_DEVICE)) {
    if (name === keep) continue;
    try {
      if (deleteTunnelDevice(name)) out.push(`overlay: removed ${name} left by an earlier run in tunnel mode`);
    } catch (e) {
      out.push(`overlay: cannot remove ${name}: ${(e as Error).message}`);
    }
  }
  return out;
}
