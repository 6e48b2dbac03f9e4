/*
 * Transparent UDP sockets for the DNS proxy. Node's dgram can neither set IP_TRANSPARENT nor read a
 * datagram's original destination (IP_RECVORIGDSTADDR), so the few calls are made through koffi on libc:
 * per proxy port an IPv4 socket bound to 0.0.0.0:port and an IPv6 one bound to [::]:port (IPV6_V6ONLY),
 * both transparent (the datapath hands them datagrams addressed to other hosts with bpf_sk_assign, or a
 * TPROXY rule does) and asking for each datagram's original destination as a control message. Replies are sent from the original
 * destination: a short-lived IP_TRANSPARENT socket bound to that address, so the client sees its
 * resolver answer (as Cilium's DNS proxy does, pkg/fqdn/dnsproxy). Queries go to the resolver from the
 * client's own address and port (an upstream socket: IP_TRANSPARENT, bound to the client's address, connected
 * to the resolver, in the same poll set), as Cilium's transparent DNS proxy does, so the resolver and its
 * own ingress policy see the pod, not the node.
 *
 * Receiving: every socket is non-blocking; one poll() over all of them runs on libuv's thread pool
 * (koffi's async call), so any number of proxy ports costs one pool thread. An eventfd in the poll set
 * wakes it when sockets are added or closed. A host without IPv6 gets the IPv4 sockets only.
 */
import koffi from "koffi";
import { formatIp, parseIp } from "../../host/ip.ts";

const AF_INET = 2;
const AF_INET6 = 10;
const SOL_IPV6 = 41;
const IPV6_V6ONLY = 26;
const IPV6_RECVORIGDSTADDR = 74;
const IPV6_ORIGDSTADDR = 74;
const IPV6_TRANSPARENT = 75;
const SOCK_DGRAM = 2;
const SOCK_NONBLOCK = 0o4000;
const SOCK_CLOEXEC = 0o2000000;
const SOL_SOCKET = 1;
const SO_REUSEADDR = 2;
const SO_MARK = 36;
const SOL_IP = 0;
const IP_TRANSPARENT = 19;
const IP_RECVORIGDSTADDR = 20;
const IP_ORIGDSTADDR = 20;
const MSG_DONTWAIT = 0x40;
const POLLIN = 1;
const POLLERR = 8;
const EFD_NONBLOCK = 0o4000;
const EFD_CLOEXEC = 0o2000000;

export interface UdpPeer {
  ip: string;
  port: number;
}

export type UdpDatagramHandler = (msg: Buffer, from: UdpPeer, origDst: UdpPeer, proxyPort: number) => void;

interface Libc {
  socket: (d: number, t: number, p: number) => number;
  setsockopt: (fd: number, level: number, name: number, v: Buffer, len: number) => number;
  bind: (fd: number, sa: Buffer, len: number) => number;
  connect: (fd: number, sa: Buffer, len: number) => number;
  send: (fd: number, b: Buffer, n: number, flags: number) => number;
  recvmsg: (fd: number, m: Record<string, unknown>, flags: number) => number;
  sendto: (fd: number, b: Buffer, n: number, flags: number, sa: Buffer, len: number) => number;
  close: (fd: number) => number;
  poll: koffi.KoffiFunction;
  eventfd: (init: number, flags: number) => number;
  write: (fd: number, b: Buffer, n: number) => number;
  read: (fd: number, b: Buffer, n: number) => number;
  strerror: (e: number) => string;
}

let libcCache: Libc | undefined;

function libc(): Libc {
  if (libcCache) return libcCache;
  const lib = koffi.load("libc.so.6");
  const iovec = koffi.struct("ciliate_iovec", { iov_base: "void *", iov_len: "size_t" });
  koffi.struct("ciliate_msghdr", {
    msg_name: "void *",
    msg_namelen: "uint32",
    msg_iov: koffi.pointer(iovec),
    msg_iovlen: "size_t",
    msg_control: "void *",
    msg_controllen: "size_t",
    msg_flags: "int",
  });
  libcCache = {
    socket: lib.func("int socket(int, int, int)"),
    setsockopt: lib.func("int setsockopt(int, int, int, void *, uint32)"),
    bind: lib.func("int bind(int, void *, uint32)"),
    connect: lib.func("int connect(int, void *, uint32)"),
    send: lib.func("intptr_t send(int, void *, size_t, int)"),
    recvmsg: lib.func("intptr_t recvmsg(int, _Inout_ ciliate_msghdr *, int)"),
    sendto: lib.func("intptr_t sendto(int, void *, size_t, int, void *, uint32)"),
    close: lib.func("int close(int)"),
    poll: lib.func("int poll(void *, uint64, int)"),
    eventfd: lib.func("int eventfd(unsigned int, int)"),
    write: lib.func("intptr_t write(int, void *, size_t)"),
    read: lib.func("intptr_t read(int, void *, size_t)"),
    strerror: lib.func("const char *strerror(int)"),
  };
  return libcCache;
}

function fail(what: string): Error {
  const e = koffi.errno();
  return new Error(`${what}: ${libc().strerror(e)} (errno ${e})`);
}

/** struct sockaddr_in / sockaddr_in6 of an address and port. */
function sockaddr(p: UdpPeer): Buffer {
  const a = parseIp(p.ip);
  if (!a) throw new Error(`not an IP address: ${p.ip}`);
  if (a.family === 4) {
    const sa = Buffer.alloc(16);
    sa.writeUInt16LE(AF_INET, 0);
    sa.writeUInt16BE(p.port, 2);
    sa.writeUInt32BE(Number(a.addr), 4);
    return sa;
  }
  const sa = Buffer.alloc(28);
  sa.writeUInt16LE(AF_INET6, 0);
  sa.writeUInt16BE(p.port, 2);
  for (let i = 0; i < 8; i++) sa.writeUInt16BE(Number((a.addr >> BigInt(112 - 16 * i)) & 0xffffn), 8 + 2 * i);
  return sa;
}

function peerOf(sa: Buffer, off = 0): UdpPeer {
  const port = sa.readUInt16BE(off + 2);
  if (sa.readUInt16LE(off) === AF_INET) return { ip: formatIp(4, BigInt(sa.readUInt32BE(off + 4))), port };
  let addr = 0n;
  for (let i = 0; i < 8; i++) addr = (addr << 16n) | BigInt(sa.readUInt16BE(off + 8 + 2 * i));
  return { ip: formatIp(6, addr), port };
}

function setInt(fd: number, level: number, name: number, what: string, value = 1): void {
  const one = Buffer.alloc(4);
  one.writeUInt32LE(value >>> 0);
  if (libc().setsockopt(fd, level, name, one, 4) !== 0) throw fail(what);
}

/** The original destination carried in the control messages of one recvmsg (IP_ORIGDSTADDR). */
function origDstOf(ctl: Buffer, len: number): UdpPeer | undefined {
  let off = 0;
  while (off + 16 <= len) {
    const cmsgLen = Number(ctl.readBigUInt64LE(off));
    const level = ctl.readInt32LE(off + 8);
    const type = ctl.readInt32LE(off + 12);
    if (cmsgLen < 16) return undefined;
    if ((level === SOL_IP && type === IP_ORIGDSTADDR) || (level === SOL_IPV6 && type === IPV6_ORIGDSTADDR)) return peerOf(ctl, off + 16);
    off += (cmsgLen + 7) & ~7;
  }
  return undefined;
}

/**
 * Sends `msg` to `to` from the address `from` (not local to this host: IP_TRANSPARENT allows it). `mark`
 * (SO_MARK) tells the datapath the packet comes from the proxy, so it is not redirected to it again.
 */
export function sendUdpFrom(from: UdpPeer, to: UdpPeer, msg: Buffer, mark = 0): void {
  const c = libc();
  const fd = transparentSocket(from, mark, 0);
  try {
    const dst = sockaddr(to);
    if (c.sendto(fd, msg, msg.length, 0, dst, dst.length) < 0) throw fail(`sendto ${to.ip}:${to.port}`);
  } finally {
    c.close(fd);
  }
}

/** A UDP socket bound to `local` (IP_TRANSPARENT: any address; SO_REUSEADDR; SO_MARK `mark` unless 0). */
function transparentSocket(local: UdpPeer, mark: number, flags: number): number {
  const c = libc();
  const v6 = local.ip.includes(":");
  const fd = c.socket(v6 ? AF_INET6 : AF_INET, SOCK_DGRAM | SOCK_CLOEXEC | flags, 0);
  if (fd < 0) throw fail("socket");
  try {
    if (v6) setInt(fd, SOL_IPV6, IPV6_TRANSPARENT, "setsockopt IPV6_TRANSPARENT");
    else setInt(fd, SOL_IP, IP_TRANSPARENT, "setsockopt IP_TRANSPARENT");
    setInt(fd, SOL_SOCKET, SO_REUSEADDR, "setsockopt SO_REUSEADDR");
    if (mark) setInt(fd, SOL_SOCKET, SO_MARK, "setsockopt SO_MARK", mark);
    const sa = sockaddr(local);
    if (c.bind(fd, sa, sa.length) !== 0) throw fail(`bind ${local.ip}:${local.port}`);
  } catch (e) {
    c.close(fd);
    throw e;
  }
  return fd;
}

/**
 * A set of transparent UDP listeners (one per proxy port) served by one poll loop. Needs CAP_NET_ADMIN
 * (IP_TRANSPARENT); `listen` throws with the reason when the kernel refuses.
 */
export class TransparentUdpListeners {
  /** Proxy port → its sockets (IPv4, and IPv6 when the host has it). */
  private readonly fds = new Map<number, number[]>();
  private readonly wake: number;
  private polling = false;
  private closed = false;
  /** Upstream sockets (openUpstream) → what to do with their datagrams. */
  private readonly upstreams = new Map<number, (msg: Buffer) => void>();
  private readonly data = Buffer.alloc(65535);
  private readonly name = Buffer.alloc(28);
  private readonly ctl = Buffer.alloc(128);

  constructor(private readonly onDatagram: UdpDatagramHandler, private readonly onError: (e: Error) => void = () => undefined) {
    this.wake = libc().eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC);
    if (this.wake < 0) throw fail("eventfd");
  }

  ports(): number[] {
    return [...this.fds.keys()].sort((a, b) => a - b);
  }

  /** Opens the listener on 0.0.0.0:port (no-op when open). */
  listen(port: number): void {
    if (this.closed) throw new Error("listeners closed");
    if (this.fds.has(port)) return;
    const c = libc();
    const fds: number[] = [];
    try {
      fds.push(this.open(AF_INET, port));
      const fd6 = c.socket(AF_INET6, SOCK_DGRAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
      if (fd6 >= 0) {
        c.close(fd6);
        fds.push(this.open(AF_INET6, port));
      }
    } catch (e) {
      for (const fd of fds) c.close(fd);
      throw e;
    }
    this.fds.set(port, fds);
    this.kick();
  }

  private open(family: number, port: number): number {
    const c = libc();
    const fd = c.socket(family, SOCK_DGRAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    if (fd < 0) throw fail("socket");
    try {
      if (family === AF_INET6) {
        setInt(fd, SOL_IPV6, IPV6_V6ONLY, "setsockopt IPV6_V6ONLY");
        setInt(fd, SOL_IPV6, IPV6_TRANSPARENT, "setsockopt IPV6_TRANSPARENT (needs CAP_NET_ADMIN)");
        setInt(fd, SOL_IPV6, IPV6_RECVORIGDSTADDR, "setsockopt IPV6_RECVORIGDSTADDR");
      } else {
        setInt(fd, SOL_IP, IP_TRANSPARENT, "setsockopt IP_TRANSPARENT (needs CAP_NET_ADMIN)");
        setInt(fd, SOL_IP, IP_RECVORIGDSTADDR, "setsockopt IP_RECVORIGDSTADDR");
      }
      const sa = sockaddr({ ip: family === AF_INET6 ? "::" : "0.0.0.0", port });
      if (c.bind(fd, sa, sa.length) !== 0) throw fail(`bind ${family === AF_INET6 ? "[::]" : "0.0.0.0"}:${port}/udp`);
    } catch (e) {
      c.close(fd);
      throw e;
    }
    return fd;
  }

  /**
   * An upstream socket from `local` (an address of another host: IP_TRANSPARENT) connected to `remote`:
   * `send` writes a datagram to `remote`, every datagram `remote` sends back goes to `onMessage`, `close`
   * closes it. `mark` (SO_MARK) is the proxy's mark, so the datapath treats its packets as the proxy's.
   * Several sockets may share `local` (SO_REUSEADDR); a reply goes to the one connected to its source.
   */
  openUpstream(local: UdpPeer, remote: UdpPeer, mark: number, onMessage: (msg: Buffer) => void): { send(msg: Buffer): void; close(): void } {
    if (this.closed) throw new Error("listeners closed");
    const c = libc();
    const fd = transparentSocket(local, mark, SOCK_NONBLOCK);
    try {
      const dst = sockaddr(remote);
      if (c.connect(fd, dst, dst.length) !== 0) throw fail(`connect ${remote.ip}:${remote.port}`);
    } catch (e) {
      c.close(fd);
      throw e;
    }
    this.upstreams.set(fd, onMessage);
    this.kick();
    let open = true;
    return {
      send: (msg) => {
        if (!open) throw new Error("upstream socket closed");
        if (c.send(fd, msg, msg.length, MSG_DONTWAIT) < 0) throw fail(`send to ${remote.ip}:${remote.port}`);
      },
      close: () => {
        if (!open) return;
        open = false;
        this.upstreams.delete(fd);
        c.close(fd);
        if (!this.closed) this.kick();
      },
    };
  }

  /** Closes the listeners whose port is not in `keep`. */
  retain(keep: Set<number>): void {
    for (const [port, fds] of [...this.fds])
      if (!keep.has(port)) {
        this.fds.delete(port);
        for (const fd of fds) libc().close(fd);
      }
    if (!this.closed) this.kick();
  }

  close(): void {
    if (this.closed) return;
    this.closed = true;
    this.retain(new Set());
    for (const fd of this.upstreams.keys()) libc().close(fd);
    this.upstreams.clear();
    this.kick();
  }

  /** Wakes the poll loop (or starts it) so it sees the current socket set. */
  private kick(): void {
    if (this.polling) {
      const one = Buffer.alloc(8);
      one.writeBigUInt64LE(1n);
      libc().write(this.wake, one, 8);
      return;
    }
    if (this.closed) {
      libc().close(this.wake);
      return;
    }
    if (this.fds.size || this.upstreams.size) this.poll();
  }

  private poll(): void {
    // Port -1: the wake-up eventfd; 0: an upstream socket; else the listener's proxy port.
    const entries = [[this.wake, -1] as const, ...[...this.fds].flatMap(([port, fds]) => fds.map((fd) => [fd, port] as const)), ...[...this.upstreams.keys()].map((fd) => [fd, 0] as const)];
    const pfds = Buffer.alloc(8 * entries.length);
    entries.forEach(([fd], i) => {
      pfds.writeInt32LE(fd, i * 8);
      pfds.writeInt16LE(POLLIN, i * 8 + 4);
    });
    this.polling = true;
    libc().poll.async(pfds, entries.length, -1, (err: unknown, n: number) => {
      this.polling = false;
      if (err || n < 0) this.onError(err instanceof Error ? err : fail("poll"));
      entries.forEach(([fd, port], i) => {
        const revents = pfds.readInt16LE(i * 8 + 6);
        // A connected upstream socket reports an ICMP error (POLLERR) until it is read.
        if (port === 0 && revents & (POLLIN | POLLERR)) return this.drainUpstream(fd);
        if (!(revents & POLLIN)) return;
        if (port < 0) libc().read(this.wake, Buffer.alloc(8), 8);
        else if (this.fds.get(port)?.includes(fd)) this.drain(fd, port);
      });
      if (this.closed) {
        libc().close(this.wake);
        return;
      }
      if (this.fds.size || this.upstreams.size) this.poll();
    });
  }

  /** Reads the datagrams waiting on an upstream socket (its handler may close it meanwhile). */
  private drainUpstream(fd: number): void {
    const c = libc();
    for (let i = 0; i < 256; i++) {
      const onMessage = this.upstreams.get(fd);
      if (!onMessage) return;
      const m = { msg_name: null, msg_namelen: 0, msg_iov: [{ iov_base: this.data, iov_len: this.data.length }], msg_iovlen: 1, msg_control: null, msg_controllen: 0, msg_flags: 0 };
      const n = Number(c.recvmsg(fd, m, MSG_DONTWAIT));
      if (n < 0) return; // EAGAIN, or an ICMP error (ECONNREFUSED) consumed: the exchange times out
      try {
        onMessage(Buffer.from(this.data.subarray(0, n)));
      } catch (e) {
        this.onError(e as Error);
      }
    }
  }

  private drain(fd: number, port: number): void {
    const c = libc();
    for (let i = 0; i < 256; i++) {
      const m = { msg_name: this.name, msg_namelen: this.name.length, msg_iov: [{ iov_base: this.data, iov_len: this.data.length }], msg_iovlen: 1, msg_control: this.ctl, msg_controllen: this.ctl.length, msg_flags: 0 };
      const n = Number(c.recvmsg(fd, m, MSG_DONTWAIT));
      if (n < 0) return; // EAGAIN: drained (or the socket went away)
      const orig = origDstOf(this.ctl, Number(m.msg_controllen));
      if (!orig) {
        this.onError(new Error(`datagram on proxy port ${port} without its original destination; dropped`));
        continue;
      }
      try {
        this.onDatagram(Buffer.from(this.data.subarray(0, n)), peerOf(this.name), orig, port);
      } catch (e) {
        this.onError(e as Error);
      }
    }
  }
}
