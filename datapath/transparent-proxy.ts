/*
 * What the kernel needs from the node for transparent L7 proxying, where Node has no API: sockets with
 * IP_TRANSPARENT / IPV6_TRANSPARENT and SO_MARK (through koffi, as the rest of datapath/ reaches libc), and
 * the policy routing rule that delivers packets the programs marked for the proxy to the local stack.
 *
 *   - A transparent listener (0.0.0.0:<proxy port> with IP_TRANSPARENT, or [::]:<proxy port> with
 *     IPV6_TRANSPARENT and IPV6_V6ONLY: one socket per family, so an IPv4 connection never arrives as a
 *     v4-mapped address) accepts connections whose destination is not a local address: the programs assign
 *     the redirected packets to it (bpf_sk_assign, looking the listener up in the packet's family), and the
 *     accepted socket's local address is the client's original destination.
 *   - A transparent upstream socket is bound to the client's own address and port before it connects, so
 *     the destination sees the client (Cilium's proxy does the same: pkg/proxy, Envoy's original source).
 *   - Both carry a mark (SO_MARK) that tells the programs the packets are the proxy's
 *     (MARK_MAGIC_FROM_*_PROXY in core/constants.ts).
 *   - `ip rule fwmark MARK_MAGIC_TO_PROXY/MARK_MAGIC_MASK lookup <table>` with `local 0.0.0.0/0 dev lo` in
 *     that table (and with IPv6 the same pair, `local ::/0`): a packet the programs assigned to a proxy
 *     socket is routed to the local stack even though its destination is a pod address (Cilium installs the
 *     same pairs for its proxy: pkg/datapath/linux/routing, table 2004). Without it the kernel would try to
 *     forward the packet, and a packet carrying an assigned socket is dropped by the forwarding path.
 *   - Early demux off (net.ipv4.ip_early_demux, tcp_early_demux, udp_early_demux = 0): the proxy's sockets
 *     share their 4-tuples with the flows the node forwards between its pods (the accepted socket has the
 *     client's flow's addresses, the upstream socket the same the other way). Early demux would attach such
 *     a socket to a packet the node must forward (client → server through the stack), and the kernel then
 *     neither forwards it nor delivers it. Without early demux the forwarded packet reaches the
 *     destination's to-endpoint program, which hands it to the proxy itself. (IPv6 early demux obeys the
 *     same net.ipv4 switches: the kernel's ip6_rcv_finish_core reads them.)
 * Sockets are returned as file descriptors for `server.listen({ fd })` and `new net.Socket({ fd })`.
 */
import { execFileSync } from "node:child_process";
import { writeFileSync } from "node:fs";
import koffi from "koffi";
import * as C from "../host/constants.gen.ts";
import { parseIp } from "../host/ip.ts";
import { BpfError, BpfErrorCode } from "./errors.ts";

const AF_INET = 2;
const AF_INET6 = 10;
const SOCK_STREAM = 1;
const SOCK_NONBLOCK = 0o4000;
const SOCK_CLOEXEC = 0o2000000;
const SOL_SOCKET = 1;
const SO_REUSEADDR = 2;
const SO_ERROR = 4;
const SO_MARK = 36;
const SOL_IP = 0;
const IP_TRANSPARENT = 19;
const SOL_IPV6 = 41;
const IPV6_V6ONLY = 26;
const IPV6_TRANSPARENT = 75;
const EINPROGRESS = 115;
const POLLOUT = 4;

/** The routing table for packets marked for the proxy (Cilium's is 2004 too). */
export const PROXY_ROUTE_TABLE = 2004;
const RULE_PRIORITY = 9;

interface SockApi {
  socket: (domain: number, type: number, proto: number) => number;
  setsockopt: (fd: number, level: number, name: number, val: Buffer, len: number) => number;
  getsockopt: (fd: number, level: number, name: number, val: Buffer, len: number[]) => number;
  bind: (fd: number, addr: Buffer, len: number) => number;
  listen: (fd: number, backlog: number) => number;
  connect: (fd: number, addr: Buffer, len: number) => number;
  close: (fd: number) => number;
  poll: { async: (fds: Buffer, n: number, timeout: number, cb: (err: unknown, res: number) => void) => void };
}

let api: SockApi | undefined;
function sock(): SockApi {
  if (api) return api;
  const lib = koffi.load("libc.so.6");
  api = {
    socket: lib.func("int socket(int domain, int type, int protocol)"),
    setsockopt: lib.func("int setsockopt(int fd, int level, int name, const void *val, uint32_t len)"),
    getsockopt: lib.func("int getsockopt(int fd, int level, int name, _Out_ void *val, _Inout_ uint32_t *len)"),
    bind: lib.func("int bind(int fd, const void *addr, uint32_t len)"),
    listen: lib.func("int listen(int fd, int backlog)"),
    connect: lib.func("int connect(int fd, const void *addr, uint32_t len)"),
    close: lib.func("int close(int fd)"),
    poll: lib.func("int poll(void *fds, unsigned long n, int timeout)"),
  } as unknown as SockApi;
  return api;
}

function fail(what: string, errno = koffi.errno()): never {
  throw new BpfError(BpfErrorCode.NetnsFailed, `${what}: errno ${errno}`, "the L7 proxy needs root (CAP_NET_ADMIN for IP_TRANSPARENT and SO_MARK)", { errno });
}

/** struct sockaddr_in or sockaddr_in6 (by the address's family) of an address and port. */
function sockaddr(ip: string, port: number): Buffer {
  const a = parseIp(ip);
  if (!a) throw new BpfError(BpfErrorCode.NetnsFailed, `not an IP address: ${ip}`, "an IPv4 or IPv6 address");
  if (a.family === 4) {
    const b = Buffer.alloc(16);
    b.writeUInt16LE(AF_INET, 0);
    b.writeUInt16BE(port, 2);
    b.writeUInt32BE(Number(a.addr), 4);
    return b;
  }
  // sin6_flowinfo and sin6_scope_id stay 0: the proxy's addresses are global pod and peer addresses.
  const b = Buffer.alloc(28);
  b.writeUInt16LE(AF_INET6, 0);
  b.writeUInt16BE(port, 2);
  for (let i = 0; i < 8; i++) b.writeUInt16BE(Number((a.addr >> BigInt(112 - 16 * i)) & 0xffffn), 8 + 2 * i);
  return b;
}

function int(v: number): Buffer {
  const b = Buffer.alloc(4);
  b.writeInt32LE(v);
  return b;
}

/**
 * A TCP socket of `family` with IP_TRANSPARENT (IPv6: IPV6_TRANSPARENT and IPV6_V6ONLY), SO_REUSEADDR and
 * SO_MARK set; closed again if any of it fails.
 */
function transparentSocket(family: 4 | 6, mark: number, nonblock: boolean): number {
  const s = sock();
  const fd = s.socket(family === 6 ? AF_INET6 : AF_INET, SOCK_STREAM | SOCK_CLOEXEC | (nonblock ? SOCK_NONBLOCK : 0), 0);
  if (fd < 0) fail(`socket(${family === 6 ? "AF_INET6" : "AF_INET"}, SOCK_STREAM)`);
  const opts: [number, number, number, string][] =
    family === 6
      ? [
          [SOL_IPV6, IPV6_TRANSPARENT, 1, "IPV6_TRANSPARENT"],
          // Only IPv6 on the IPv6 socket: IPv4 has its own listener on 0.0.0.0, and a dual-stack socket
          // would hand IPv4 peers over as v4-mapped addresses.
          [SOL_IPV6, IPV6_V6ONLY, 1, "IPV6_V6ONLY"],
        ]
      : [[SOL_IP, IP_TRANSPARENT, 1, "IP_TRANSPARENT"]];
  opts.push([SOL_SOCKET, SO_REUSEADDR, 1, "SO_REUSEADDR"], [SOL_SOCKET, SO_MARK, mark | 0, "SO_MARK"]);
  for (const [level, name, v, label] of opts) {
    if (s.setsockopt(fd, level, name, int(v), 4) !== 0) {
      const errno = koffi.errno();
      s.close(fd);
      fail(`setsockopt(${label})`, errno);
    }
  }
  return fd;
}

/**
 * A listening transparent socket on 0.0.0.0:`port` (family 4) or [::]:`port` (family 6, IPv6 only) whose
 * accepted connections carry `mark`. Returns its fd (for `server.listen({ fd })`). Throws BpfError when the
 * port is taken, the host has no IPv6, or the caller lacks privileges.
 */
export function transparentListener(port: number, mark: number, family: 4 | 6 = 4): number {
  const s = sock();
  const fd = transparentSocket(family, mark, true);
  const any = family === 6 ? "::" : "0.0.0.0";
  const addr = sockaddr(any, port);
  if (s.bind(fd, addr, addr.length) !== 0 || s.listen(fd, 511) !== 0) {
    const errno = koffi.errno();
    s.close(fd);
    fail(`bind/listen ${family === 6 ? "[::]" : "0.0.0.0"}:${port} (transparent)`, errno);
  }
  return fd;
}

/**
 * Connects to `remote` from `local` (any address, here the client's own: IP(V6)_TRANSPARENT) with `mark`,
 * waiting at most `timeoutMs` without blocking the event loop. Both addresses are of one family (IPv4 or
 * IPv6; the socket is of that family). Resolves to the connected fd (for `new net.Socket({ fd })`);
 * rejects with the errno text when the connection fails or the families differ.
 */
export function transparentConnect(local: { ip: string; port: number }, remote: { ip: string; port: number }, mark: number, timeoutMs = 5000): Promise<number> {
  const s = sock();
  const lf = parseIp(local.ip)?.family;
  const rf = parseIp(remote.ip)?.family;
  if (!lf || lf !== rf) return Promise.reject(new Error(`connect ${local.ip} → ${remote.ip}: not two addresses of one family`));
  const fd = transparentSocket(lf, mark, true);
  const la = sockaddr(local.ip, local.port);
  if (s.bind(fd, la, la.length) !== 0) {
    const errno = koffi.errno();
    s.close(fd);
    return Promise.reject(new Error(`bind ${local.ip}:${local.port}: errno ${errno}`));
  }
  const ra = sockaddr(remote.ip, remote.port);
  if (s.connect(fd, ra, ra.length) === 0) return Promise.resolve(fd);
  const errno = koffi.errno();
  if (errno !== EINPROGRESS) {
    s.close(fd);
    return Promise.reject(new Error(`connect ${remote.ip}:${remote.port}: errno ${errno}`));
  }
  // struct pollfd { int fd; short events; short revents; }, polled on a koffi worker thread.
  const pfd = Buffer.alloc(8);
  pfd.writeInt32LE(fd, 0);
  pfd.writeInt16LE(POLLOUT, 4);
  return new Promise((resolve, reject) => {
    s.poll.async(pfd, 1, timeoutMs, (err: unknown, n: number) => {
      const soErr = Buffer.alloc(4);
      if (err || n <= 0 || s.getsockopt(fd, SOL_SOCKET, SO_ERROR, soErr, [4]) !== 0 || soErr.readInt32LE(0) !== 0) {
        const code = err ? String(err) : n === 0 ? "timeout" : `errno ${soErr.readInt32LE(0)}`;
        s.close(fd);
        reject(new Error(`connect ${remote.ip}:${remote.port}: ${code}`));
        return;
      }
      resolve(fd);
    });
  });
}

/** Closes a descriptor that was never handed to Node. */
export function closeFd(fd: number): void {
  sock().close(fd);
}

function ipCmd(args: string[]): void {
  try {
    execFileSync("ip", args, { stdio: ["ignore", "ignore", "pipe"] });
  } catch (e) {
    const stderr = String((e as { stderr?: Buffer }).stderr ?? (e as Error).message).trim();
    throw new BpfError(BpfErrorCode.NetnsFailed, `ip ${args.join(" ")}: ${stderr}`, "run as root with iproute2 installed");
  }
}

/**
 * Installs (idempotently) the rule and route that deliver packets marked MARK_MAGIC_TO_PROXY to the local
 * stack, and turns early demux off, in the caller's network namespace (the node's). `ipv6`: the IPv6 pair
 * too (a dual-stack node, whose IPv6 connections are redirected to the proxy's IPv6 listeners).
 */
export function installProxyRouting(ipv6 = false): void {
  for (const k of ["ip_early_demux", "tcp_early_demux", "udp_early_demux"]) {
    try {
      writeFileSync(`/proc/sys/net/ipv4/${k}`, "0");
    } catch (e) {
      throw new BpfError(BpfErrorCode.NetnsFailed, `cannot turn off net.ipv4.${k}: ${(e as Error).message}`, "run as root");
    }
  }
  const mark = `0x${C.MARK_MAGIC_TO_PROXY.toString(16)}/0x${C.MARK_MAGIC_MASK.toString(16)}`;
  for (const family of ipv6 ? (["-4", "-6"] as const) : (["-4"] as const)) {
    ipCmd([family, "route", "replace", "local", family === "-6" ? "::/0" : "0.0.0.0/0", "dev", "lo", "table", String(PROXY_ROUTE_TABLE)]);
    const rules = execFileSync("ip", [family, "-j", "rule", "show"], { encoding: "utf8" });
    const present = (JSON.parse(rules) as { priority?: number; table?: string }[]).some((r) => r.priority === RULE_PRIORITY && r.table === String(PROXY_ROUTE_TABLE));
    if (!present) ipCmd([family, "rule", "add", "fwmark", mark, "lookup", String(PROXY_ROUTE_TABLE), "pref", String(RULE_PRIORITY)]);
  }
}
