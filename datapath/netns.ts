/*
 * Network namespaces for tc/XDP attachment. libbpf's tc and XDP calls talk netlink in the network namespace
 * of the calling thread, and interface names resolve there too. withNetns(name, fn) moves the calling
 * (main) thread into /var/run/netns/<name> (as `ip netns add` creates it) with setns(2), runs fn
 * synchronously, and always moves back. Only the calling thread moves: Node's worker threads and libuv
 * pool stay where they were, so fn must not await.
 */
import { closeSync, openSync } from "node:fs";
import { bpfError, BpfError, BpfErrorCode } from "./errors.ts";
import { lastErrno, libc } from "./libbpf.ts";

const CLONE_NEWNET = 0x40000000;

/** Path of a named network namespace (iproute2 convention). */
export function netnsPath(name: string): string {
  return name.startsWith("/") ? name : `/var/run/netns/${name}`;
}

/**
 * Runs fn inside a network namespace (`undefined`: the current one, no switch). Throws BpfError
 * BPF_NETNS_FAILED when the namespace does not exist or setns fails (needs CAP_SYS_ADMIN); fn's own
 * errors propagate after switching back.
 */
export function withNetns<T>(name: string | undefined, fn: () => T): T {
  if (name === undefined) return fn();
  let target: number;
  try {
    target = openSync(netnsPath(name), "r");
  } catch (e) {
    throw new BpfError(BpfErrorCode.NetnsFailed, `network namespace ${name}: ${(e as Error).message}`, "create it with `ip netns add`");
  }
  let home: number | undefined;
  try {
    home = openSync("/proc/thread-self/ns/net", "r");
    if (libc().setns(target, CLONE_NEWNET) !== 0) {
      throw bpfError(BpfErrorCode.NetnsFailed, `setns(${name})`, lastErrno(), "run as root (CAP_SYS_ADMIN)");
    }
    try {
      return fn();
    } finally {
      if (libc().setns(home, CLONE_NEWNET) !== 0) {
        // Cannot happen with a valid fd we opened; staying in the wrong namespace would be worse than dying.
        throw bpfError(BpfErrorCode.NetnsFailed, "setns back to the original namespace", lastErrno());
      }
    }
  } finally {
    closeSync(target);
    if (home !== undefined) closeSync(home);
  }
}

/** if_nametoindex in a namespace. Throws BPF_NETNS_FAILED for an unknown interface. */
export function ifindexOf(ifname: string, netns?: string): number {
  const idx = withNetns(netns, () => libc().if_nametoindex(ifname));
  if (!idx) throw new BpfError(BpfErrorCode.NetnsFailed, `no interface ${ifname}${netns ? ` in netns ${netns}` : ""}`, "check the name with `ip link`");
  return idx;
}
