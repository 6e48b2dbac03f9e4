/*
 * The node's overlay device: one collect-metadata ("external") VXLAN or Geneve interface, as Cilium
 * creates cilium_vxlan / cilium_geneve (pkg/datapath/linux/devices, `ip link add … type vxlan external`).
 * In external mode the device has no fixed remote or VNI: the programs set both per packet with
 * bpf_skb_set_tunnel_key (core/overlay.ts, bpf/include/ciliate_tunnel.h) and read them from received
 * packets with bpf_skb_get_tunnel_key. The device's MTU is the underlay's; pods get that minus the
 * overlay's overhead (host/tunnel.ts podMtu).
 *
 * A helper for the agent and the multi-node harness: it creates (or, on an agent restart, adopts) and
 * removes the device in a namespace; attaching from_overlay to its ingress and writing its ifindex into
 * ConfigValue.tunnelIfindex is the caller's part. Needs root and iproute2; the Geneve form also needs the
 * kernel's geneve module.
 */
import { existsSync } from "node:fs";
import { BpfError, BpfErrorCode } from "./errors.ts";
import { ip, linkShow } from "./endpoint-link.ts";

export type TunnelDeviceProtocol = "vxlan" | "geneve";

export interface TunnelDeviceSpec {
  protocol?: TunnelDeviceProtocol;
  /** Interface name (≤ 15 bytes); Cilium's cilium_vxlan / cilium_geneve by default. */
  name?: string;
  /** Network namespace (a name under /var/run/netns or a path); the caller's when absent. */
  netns?: string;
  /** UDP port: 8472 for VXLAN, 6081 for Geneve by default (Cilium's tunnel-port defaults). */
  port?: number;
  /** Device MTU (the underlay's); the kernel's default when absent. */
  mtu?: number;
}

export interface TunnelDevice {
  name: string;
  ifindex: number;
  protocol: TunnelDeviceProtocol;
  port: number;
  netns?: string;
}

const DEFAULT_PORT: Record<TunnelDeviceProtocol, number> = { vxlan: 8472, geneve: 6081 };

/**
 * Creates the device up and in external mode, replacing one of the same name (a restarted agent gets a
 * fresh device with the settings asked for). Throws BpfError BPF_NETNS_FAILED with iproute2's message
 * when it cannot (no such namespace, not root, module missing) or BPF_BAD_ARGUMENT for a bad spec.
 */
export function createTunnelDevice(spec: TunnelDeviceSpec = {}): TunnelDevice {
  const protocol = spec.protocol ?? "vxlan";
  const name = spec.name ?? `cilium_${protocol}`;
  const port = spec.port ?? DEFAULT_PORT[protocol];
  if (protocol !== "vxlan" && protocol !== "geneve") throw new BpfError(BpfErrorCode.BadArgument, `tunnel protocol ${JSON.stringify(protocol)}: expected vxlan or geneve`);
  if (!/^[A-Za-z0-9_.-]{1,15}$/.test(name)) throw new BpfError(BpfErrorCode.BadArgument, `tunnel device name ${JSON.stringify(name)}: expected 1–15 letters, digits, '_', '.' or '-'`);
  if (!Number.isInteger(port) || port < 1 || port > 65535) throw new BpfError(BpfErrorCode.BadArgument, `tunnel port ${port}: expected 1–65535`);
  if (spec.mtu !== undefined && (!Number.isInteger(spec.mtu) || spec.mtu < 576)) throw new BpfError(BpfErrorCode.BadArgument, `tunnel device MTU ${spec.mtu}: expected an integer ≥ 576`);
  if (linkShow(name, spec.netns)) ip(["link", "del", name], spec.netns);
  ip(["link", "add", name, "type", protocol, "external", "dstport", String(port)], spec.netns);
  // No IPv6 link-local address: the stack would otherwise send neighbour discovery and MLD through the
  // device, frames for no pod that the from_host program at its egress can only drop.
  ip(["link", "set", name, "addrgenmode", "none"], spec.netns);
  if (spec.mtu !== undefined) ip(["link", "set", name, "mtu", String(spec.mtu)], spec.netns);
  ip(["link", "set", name, "up"], spec.netns);
  const link = linkShow(name, spec.netns);
  if (!link) throw new BpfError(BpfErrorCode.NetnsFailed, `tunnel device ${name} vanished after creation`);
  return { name, ifindex: link.ifindex, protocol, port, netns: spec.netns };
}

interface LinkDetails {
  ifindex: number;
  mtu: number;
  operstate?: string;
  flags?: string[];
  linkinfo?: { info_kind?: string; info_data?: { external?: boolean; port?: number } };
}

/**
 * The device as `spec` asks for it, keeping one that is already there when it has the same kind, is in
 * external mode and uses the same port (its MTU is set and it is brought up): an agent that restarts keeps
 * its ifindex, its from_overlay filter and the flows through it, as Cilium keeps cilium_vxlan across
 * restarts. Anything else of that name is replaced (createTunnelDevice). `adopted` says which happened.
 */
export function ensureTunnelDevice(spec: TunnelDeviceSpec = {}): TunnelDevice & { adopted: boolean } {
  const protocol = spec.protocol ?? "vxlan";
  const name = spec.name ?? `cilium_${protocol}`;
  const port = spec.port ?? DEFAULT_PORT[protocol];
  let have: LinkDetails | undefined;
  try {
    have = (JSON.parse(ip(["-d", "-j", "link", "show", "dev", name], spec.netns)) as LinkDetails[])[0];
  } catch {
    have = undefined;
  }
  const info = have?.linkinfo;
  if (have && info?.info_kind === protocol && info.info_data?.external === true && info.info_data.port === port) {
    if (spec.mtu !== undefined && have.mtu !== spec.mtu) ip(["link", "set", name, "mtu", String(spec.mtu)], spec.netns);
    if (!have.flags?.includes("UP")) ip(["link", "set", name, "up"], spec.netns);
    return { name, ifindex: have.ifindex, protocol, port, netns: spec.netns, adopted: true };
  }
  return { ...createTunnelDevice(spec), adopted: false };
}

/**
 * Why this kernel cannot make a device of `protocol`, or undefined when it can (the module is loaded, or
 * loadable: a trial device in a throw-away name is created and removed). This machine's kernel, for one,
 * has vxlan and no geneve.
 */
export function tunnelModuleProblem(protocol: TunnelDeviceProtocol, netns?: string): string | undefined {
  if (existsSync(`/sys/module/${protocol}`)) return undefined;
  const probe = `ciliate_probe${process.pid % 100}`.slice(0, 15);
  try {
    ip(["link", "add", probe, "type", protocol, "external"], netns);
    ip(["link", "del", probe], netns);
    return undefined;
  } catch (e) {
    return `this kernel has no ${protocol} module (${(e as Error).message.replace(/^ip [^:]*: /, "")})`;
  }
}

/** Removes the device; false when it was not there. */
export function deleteTunnelDevice(name: string, netns?: string): boolean {
  if (!linkShow(name, netns)) return false;
  ip(["link", "del", name], netns);
  return true;
}
