/*
 * Attaching programs to interfaces: tc (clsact qdisc, direct-action filter, through bpf_tc_hook_create /
 * bpf_tc_attach / bpf_tc_detach / bpf_tc_hook_destroy) on the ingress or egress of an interface, the way
 * Cilium attaches bpf_lxc and bpf_host (pkg/datapath/loader, tc filters with direct action), and XDP
 * (bpf_xdp_attach / bpf_xdp_detach). Interfaces are named by ifindex or by name, optionally inside a
 * named network namespace (see netns.ts). Each attach returns an attachment object whose detach() undoes
 * exactly that attachment.
 */
import { bpfError, BpfError, BpfErrorCode, errnoName } from "./errors.ts";
import { BpfTcHook, BpfTcOpts, koffi, libbpf } from "./libbpf.ts";
import { withLibbpfLog } from "./libbpf-log.ts";
import { ifindexOf, withNetns } from "./netns.ts";

export type TcDirection = "ingress" | "egress";

/** enum bpf_tc_attach_point. */
const BPF_TC_INGRESS = 1;
const BPF_TC_EGRESS = 2;
/** bpf_tc_attach flag: replace an existing filter with the same handle and priority. */
const BPF_TC_F_REPLACE = 1;

/** XDP attach flags (uapi linux/if_link.h). */
export const XDP_FLAGS = { UpdateIfNoExist: 1, SkbMode: 2, DrvMode: 4, HwMode: 8, Replace: 16 } as const;
export type XdpMode = "skb" | "drv" | "hw" | "auto";

export interface InterfaceRef {
  /** Interface index (in `netns`), or … */
  ifindex?: number;
  /** … interface name, resolved in `netns`. */
  ifname?: string;
  /** Named network namespace (/var/run/netns/<name>); default: the current one. */
  netns?: string;
}

export interface TcAttachOptions extends InterfaceRef {
  direction: TcDirection;
  /** tc filter handle (default 1) and priority (default 1); together they identify the filter. */
  handle?: number;
  priority?: number;
  /** Replace a filter with the same handle/priority instead of failing with EEXIST. */
  replace?: boolean;
}

function resolveIfindex(ref: InterfaceRef): number {
  if (ref.ifindex !== undefined && ref.ifindex > 0) return ref.ifindex;
  if (ref.ifname) return ifindexOf(ref.ifname, ref.netns);
  throw new BpfError(BpfErrorCode.BadArgument, "an interface needs ifindex or ifname");
}

/** Runs libbpf netlink calls in a namespace, collecting libbpf's messages (the kernel's extack text). */
function netlinkCall<T>(netns: string | undefined, fn: () => T): { value: T; log: string[] } {
  let log: string[] = [];
  const value = withNetns(netns, () =>
    withLibbpfLog((lines) => {
      log = lines;
      return fn();
    }),
  );
  return { value, log };
}

function tcHook(ifindex: number, attachPoint: number): Record<string, unknown> {
  return { sz: koffi.sizeof(BpfTcHook), ifindex, attach_point: attachPoint, parent: 0 };
}

function tcOpts(fields: { prog_fd?: number; flags?: number; handle: number; priority: number }): Record<string, unknown> {
  return { sz: koffi.sizeof(BpfTcOpts), prog_fd: fields.prog_fd ?? 0, flags: fields.flags ?? 0, prog_id: 0, handle: fields.handle, priority: fields.priority };
}

/** One tc filter created by attachTc. */
export class TcAttachment {
  private attached = true;
  constructor(
    readonly ifindex: number,
    readonly direction: TcDirection,
    readonly handle: number,
    readonly priority: number,
    /** Kernel id of the attached program. */
    readonly progId: number,
    readonly netns?: string,
  ) {}

  get isAttached(): boolean {
    return this.attached;
  }

  /** Removes the filter. Returns false when it was already gone. Throws BPF_ATTACH_FAILED otherwise. */
  detach(): boolean {
    if (!this.attached) return false;
    const point = this.direction === "ingress" ? BPF_TC_INGRESS : BPF_TC_EGRESS;
    const { value: ret, log } = netlinkCall(this.netns, () => libbpf().bpf_tc_detach(tcHook(this.ifindex, point), tcOpts({ handle: this.handle, priority: this.priority })));
    this.attached = false;
    if (ret === 0) return true;
    if (errnoName(-ret) === "ENOENT" || errnoName(-ret) === "ENODEV") return false;
    throw bpfError(BpfErrorCode.AttachFailed, `bpf_tc_detach(ifindex ${this.ifindex} ${this.direction})`, ret, undefined, { libbpfLog: log });
  }
}

/**
 * Attaches a loaded tc (sched_cls) program as a direct-action filter, creating the clsact qdisc when
 * needed. Throws BpfError: BPF_ATTACH_FAILED (EEXIST: a filter with this handle/priority exists and
 * replace is false; EINVAL: not a sched_cls program), BPF_NETNS_FAILED (unknown interface or namespace),
 * BPF_NOT_PERMITTED (needs CAP_NET_ADMIN).
 */
export function attachTc(prog: number | { fd: number }, opts: TcAttachOptions): TcAttachment {
  const progFd = typeof prog === "number" ? prog : prog.fd;
  const ifindex = resolveIfindex(opts);
  const handle = opts.handle ?? 1;
  const priority = opts.priority ?? 1;
  const point = opts.direction === "ingress" ? BPF_TC_INGRESS : BPF_TC_EGRESS;
  const hook = tcHook(ifindex, point);
  const o = tcOpts({ prog_fd: progFd, flags: opts.replace ? BPF_TC_F_REPLACE : 0, handle, priority });
  const { value, log } = netlinkCall(opts.netns, () => {
    const created = libbpf().bpf_tc_hook_create(hook);
    if (created < 0 && errnoName(-created) !== "EEXIST") return { step: "bpf_tc_hook_create", ret: created };
    return { step: "bpf_tc_attach", ret: libbpf().bpf_tc_attach(hook, o) };
  });
  if (value.ret < 0) {
    const name = errnoName(-value.ret);
    const hint =
      value.step === "bpf_tc_hook_create"
        ? "needs CAP_NET_ADMIN and a kernel with clsact (sch_clsact)"
        : name === "EEXIST"
          ? `a filter with handle ${handle} priority ${priority} exists: pass replace: true or detach it`
          : undefined;
    throw bpfError(BpfErrorCode.AttachFailed, `${value.step}(ifindex ${ifindex} ${opts.direction})`, value.ret, hint, { libbpfLog: log });
  }
  return new TcAttachment(ifindex, opts.direction, Number(o.handle), Number(o.priority), Number(o.prog_id), opts.netns);
}

/**
 * The id of the program attached as tc filter (handle, priority) on an interface, or undefined when there
 * is none. Throws BPF_ATTACH_FAILED on other errors.
 */
export function tcQuery(ref: InterfaceRef & { direction: TcDirection; handle?: number; priority?: number }): number | undefined {
  const ifindex = resolveIfindex(ref);
  const point = ref.direction === "ingress" ? BPF_TC_INGRESS : BPF_TC_EGRESS;
  const o = tcOpts({ handle: ref.handle ?? 1, priority: ref.priority ?? 1 });
  const { value: ret, log } = netlinkCall(ref.netns, () => libbpf().bpf_tc_query(tcHook(ifindex, point), o));
  if (ret === 0) return Number(o.prog_id);
  const name = errnoName(-ret);
  if (name === "ENOENT" || name === "EINVAL") return undefined;
  throw bpfError(BpfErrorCode.AttachFailed, `bpf_tc_query(ifindex ${ifindex} ${ref.direction})`, ret, undefined, { libbpfLog: log });
}

/**
 * Deletes the clsact qdisc of an interface, and with it every tc filter on both directions. Returns false
 * when there was none. Throws BPF_ATTACH_FAILED otherwise.
 */
export function destroyClsact(ref: InterfaceRef): boolean {
  const ifindex = resolveIfindex(ref);
  const { value: ret, log } = netlinkCall(ref.netns, () => libbpf().bpf_tc_hook_destroy(tcHook(ifindex, BPF_TC_INGRESS | BPF_TC_EGRESS)));
  if (ret === 0) return true;
  const name = errnoName(-ret);
  if (name === "ENOENT" || name === "EINVAL" || name === "ENODEV") return false;
  throw bpfError(BpfErrorCode.AttachFailed, `bpf_tc_hook_destroy(ifindex ${ifindex})`, ret, undefined, { libbpfLog: log });
}

export interface XdpAttachOptions extends InterfaceRef {
  /** skb (generic), drv (native), hw (offload) or auto (kernel's choice; default). */
  mode?: XdpMode;
  /** Replace a program already attached (otherwise fail with EBUSY/EEXIST). */
  replace?: boolean;
}

function xdpModeFlags(mode: XdpMode | undefined): number {
  switch (mode ?? "auto") {
    case "skb":
      return XDP_FLAGS.SkbMode;
    case "drv":
      return XDP_FLAGS.DrvMode;
    case "hw":
      return XDP_FLAGS.HwMode;
    default:
      return 0;
  }
}

/** One XDP program attached by attachXdp. */
export class XdpAttachment {
  private attached = true;
  constructor(
    readonly ifindex: number,
    readonly modeFlags: number,
    readonly netns?: string,
  ) {}

  get isAttached(): boolean {
    return this.attached;
  }

  /** Detaches the XDP program. Returns false when already detached. Throws BPF_ATTACH_FAILED. */
  detach(): boolean {
    if (!this.attached) return false;
    this.attached = false;
    const { value: ret, log } = netlinkCall(this.netns, () => libbpf().bpf_xdp_detach(this.ifindex, this.modeFlags, null));
    if (ret === 0) return true;
    if (errnoName(-ret) === "ENODEV") return false;
    throw bpfError(BpfErrorCode.AttachFailed, `bpf_xdp_detach(ifindex ${this.ifindex})`, ret, undefined, { libbpfLog: log });
  }
}

/**
 * Attaches a loaded XDP program. Throws BpfError BPF_ATTACH_FAILED (EBUSY/EEXIST: a program is attached
 * and replace is false; EOPNOTSUPP: the driver lacks native XDP — use mode "skb"), BPF_NETNS_FAILED,
 * BPF_NOT_PERMITTED.
 */
export function attachXdp(prog: number | { fd: number }, opts: XdpAttachOptions): XdpAttachment {
  const progFd = typeof prog === "number" ? prog : prog.fd;
  const ifindex = resolveIfindex(opts);
  const modeFlags = xdpModeFlags(opts.mode);
  const flags = modeFlags | (opts.replace ? 0 : XDP_FLAGS.UpdateIfNoExist);
  const { value: ret, log } = netlinkCall(opts.netns, () => libbpf().bpf_xdp_attach(ifindex, progFd, flags, null));
  if (ret < 0) {
    const name = errnoName(-ret);
    const hint = name === "EBUSY" || name === "EEXIST" ? "an XDP program is already attached: pass replace: true" : name === "EOPNOTSUPP" ? "the driver has no native XDP: use mode 'skb'" : undefined;
    throw bpfError(BpfErrorCode.AttachFailed, `bpf_xdp_attach(ifindex ${ifindex})`, ret, hint, { libbpfLog: log });
  }
  return new XdpAttachment(ifindex, modeFlags, opts.netns);
}

/** The id of the XDP program on an interface (0 when none). `mode` selects which one to report. */
export function xdpQuery(ref: InterfaceRef & { mode?: XdpMode }): number {
  const ifindex = resolveIfindex(ref);
  const id = new Uint32Array(1);
  const { value: ret, log } = netlinkCall(ref.netns, () => libbpf().bpf_xdp_query_id(ifindex, xdpModeFlags(ref.mode), id));
  if (ret < 0) throw bpfError(BpfErrorCode.AttachFailed, `bpf_xdp_query_id(ifindex ${ifindex})`, ret, undefined, { libbpfLog: log });
  return id[0]!;
}
