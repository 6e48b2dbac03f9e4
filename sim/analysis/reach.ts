/*
 * All-pairs reachability between pods, per probe (port/protocol) — the analysis behind `ciliate reach`. For each probe and
 * each (src, dst) pod pair, a new-connection packet (TCP SYN, a UDP/SCTP datagram, an ICMP echo) runs
 * through src's fromEndpoint and, when it passes, dst's toEndpoint on their nodes' datapaths. A pair is
 * allowed when both pass; an L7 redirect counts as allowed at L3/L4 (the request itself is judged by
 * `trace`/`simulate` with an HTTP request). Conntrack state never leaks between pairs: every pair has its
 * own address pair, and a probe's tuple is never the reverse of another pair's. A probe of one IP family
 * (ICMP is IPv4's, ICMPv6 IPv6's) between pods of which one has no address of that family is not
 * applicable (null), never allowed or denied.
 *
 * Answers stream: rows are produced one source pod at a time, and each half of a verdict (egress at the
 * source, ingress at the destination) is run through the datapath once per (entry list, how it names the
 * peer's identity) and shared by every pair it decides, so time and memory grow with the answer, not with
 * pairs × string keys.
 */
import { isIpv6 } from "../../host/ip.ts";
import type { FlowProtocol, SimPod } from "../../node/cluster.ts";
import { ID_WORLD as C_ID_WORLD } from "../../host/constants.gen.ts";
import { LOCAL_IDENTITY_SCOPE, MIN_CLUSTER_IDENTITY, type CompiledPolicy, type EndpointPolicy, type MapStateEntry } from "../../policy/index.ts";
import type { Simulation } from "../simulator.ts";
import { probeSourcePort, type Probe } from "./probes.ts";

export type Verdict = boolean | null;

/** A verdict as a small number for typed arrays: 1 allowed, 2 denied, 3 not applicable. */
export const verdictCode = (v: Verdict): number => (v === true ? 1 : v === false ? 2 : 3);

export interface ProbeMatrix {
  port: number;
  protocol: FlowProtocol;
  /** from → to → allowed (true), denied (false) or not applicable (null). */
  matrix: Record<string, Record<string, Verdict>>;
}

/** False when the probe's protocol belongs to an IP family the pod has no address of. */
export function applicable(p: SimPod, protocol: FlowProtocol): boolean {
  if (protocol === "ICMP" || protocol === "IGMP") return !isIpv6(p.ip);
  if (protocol === "ICMPv6") return isIpv6(p.ip);
  return true;
}

/**
 * Policy class of a pod: its identity and its endpoint's compiled policy entries. Two pods of the same
 * class are indistinguishable to the datapath's policy decision (identity in the ipcache, entries in the
 * policy map), so a probe between two classes is run through the datapath once and reused for every pair
 * of pods of those classes. Host-networked pods are never grouped.
 */
export function policyClass(policy: CompiledPolicy, p: SimPod): string {
  if (p.hostNetwork) return `host:${p.key}`;
  const ep = policy.endpoints.get(p.key);
  const entries = ep ? ep.entries.map((e) => `${e.key.direction}/${e.key.identity}/${e.key.protocol}/${e.key.port}/${e.key.portPrefix}/${e.deny ? 1 : 0}/${e.proxyPort ? 1 : 0}`).join(",") : "";
  return `${policy.identities.podIdentity.get(p.key) ?? C_ID_WORLD}|${entries}`;
}

/** The equivalence classes of a probe: pods grouped by (policy class, address family), in first-seen order. */
export interface ReachClasses {
  /** Class index of each pod (same order as the pods given). */
  of: Map<SimPod, number>;
  /** Members of each class. */
  members: SimPod[][];
}

export function reachClasses(sim: Simulation, pods: SimPod[]): ReachClasses {
  const index = new Map<string, number>();
  const of = new Map<SimPod, number>();
  const members: SimPod[][] = [];
  for (const p of pods) {
    const k = `${isIpv6(p.ip) ? 6 : 4}|${policyClass(sim.policy, p)}`;
    let i = index.get(k);
    if (i === undefined) {
      index.set(k, (i = members.length));
      members.push([]);
    }
    members[i]!.push(p);
    of.set(p, i);
  }
  return { of, members };
}

/**
 * The two halves of a probe verdict, each shared by many pairs. A pod-to-pod probe is allowed when the
 * source's egress and the destination's ingress both pass (core/policy.ts). The egress decision depends
 * only on the source endpoint's egress entries and, of the destination's identity, on which of those
 * entries name it exactly (an identity no entry names meets only the wildcard entries); the ingress
 * decision likewise on the destination's ingress entries and which of them name the source's identity.
 * So each half is run through the datapath once per (entry list, how that list names the peer), and a
 * pair's verdict is the two halves' conjunction. Identities outside the cluster range (reserved, local
 * CIDR scope) keep their number in the key. A pod probing itself, and host-networked pods, are probed
 * whole, once per pod pair kind (self) or every time (host network).
 */
export class Halves {
  /** Numbering of entry lists and slots by their text, shared with the Halves this one was derived from. */
  private readonly t: HalvesTables;
  /** Per pod: egress list, ingress list, index of (identity, address family). */
  readonly eg: Int32Array;
  readonly ing: Int32Array;
  readonly idc: Int32Array;

  /**
   * `base`: the Halves of another policy state of the same pods (whatif's before state). Lists and slots
   * are numbered by their text in tables shared with it, so a slot means the same (entry list, peer
   * naming) in both, and a slot's verdict found in one state holds in the other (see reachProber's
   * `slots`).
   */
  constructor(sim: Simulation | undefined, pods: SimPod[], base?: Halves, policy?: CompiledPolicy) {
    const t = (this.t = base?.t ?? new HalvesTables());
    this.eg = new Int32Array(pods.length);
    this.ing = new Int32Array(pods.length);
    this.idc = sim ? new Int32Array(pods.length) : base!.idc;
    const endpoints = (policy ?? sim!.policy).endpoints;
    pods.forEach((p, i) => {
      const l = t.listsOf(endpoints.get(p.key));
      this.eg[i] = l[0];
      this.ing[i] = l[1];
      // The peer's address family is part of its key: a pair is probed within one family.
      if (sim) this.idc[i] = t.identityIndex(sim.identityOfPod(p) * 2 + (isIpv6(p.ip) ? 1 : 0));
    });
  }

  /**
   * The halves of another policy of the same pods with the same identities (whatif's after state, whose
   * edit changed only endpoints' entries), numbered in this one's tables, without a simulation of it.
   */
  derive(policy: CompiledPolicy, pods: SimPod[]): Halves {
    return new Halves(undefined, pods, this, policy);
  }

  /** The slot of list `l` judging a peer of identity index `c`. */
  slot(l: number, c: number): number {
    return this.t.slot(l, c);
  }

  /** Key of a pod probing itself: both its lists and how each names its own identity. */
  selfKey(i: number): string {
    return `${this.slot(this.eg[i]!, this.idc[i]!)}|${this.slot(this.ing[i]!, this.idc[i]!)}`;
  }
}

/** The numbering behind Halves: entry lists by text, (identity, family) indexes, slots by text. */
class HalvesTables {
  private readonly listIds = new Map<string, number>();
  /** Each list's exact-identity entries, by identity. */
  private readonly named: Map<number, string>[] = [];
  /** By entry list: a compile shares one list among the endpoints of one identity (policy/compile.ts). */
  private readonly listsOfEntries = new WeakMap<MapStateEntry[], [number, number]>();
  private noPolicy?: [number, number];
  private readonly idIndex = new Map<number, number>();
  private readonly ids: number[] = [];
  /** (list, identity index) → slot + 1 (0: not yet known), row-major with `width` columns; grown as lists
   * and identities are added. A Map beyond 2²⁴ cells. */
  private dense = new Int32Array(0);
  private width = 0;
  private rows = 0;
  private readonly sparse = new Map<number, number>();
  private readonly slotIds = new Map<string, number>();

  listsOf(ep: EndpointPolicy | undefined): [number, number] {
    if (!ep) return (this.noPolicy ??= this.lists([]));
    let l = this.listsOfEntries.get(ep.entries);
    if (!l) this.listsOfEntries.set(ep.entries, (l = this.lists(ep.entries)));
    return l;
  }

  identityIndex(fk: number): number {
    let c = this.idIndex.get(fk);
    if (c === undefined) {
      this.idIndex.set(fk, (c = this.ids.length));
      this.ids.push(fk);
    }
    return c;
  }

  private list(entries: MapStateEntry[]): number {
    const text = entries.map((e) => `${e.key.identity}/${entryShape(e)}`).join(",");
    let id = this.listIds.get(text);
    if (id === undefined) {
      this.listIds.set(text, (id = this.named.length));
      const named = new Map<number, string>();
      for (const e of entries) if (e.key.identity !== 0) named.set(e.key.identity, `${named.get(e.key.identity) ?? ""}${entryShape(e)},`);
      this.named.push(named);
    }
    return id;
  }

  private lists(entries: MapStateEntry[]): [number, number] {
    return [this.list(entries.filter((e) => e.key.direction === "egress")), this.list(entries.filter((e) => e.key.direction !== "egress"))];
  }

  /** The dense index of (l, c), the table grown to every list and identity known; -1 beyond 2²⁴ cells. */
  private cell(l: number, c: number): number {
    const width = this.ids.length;
    const rows = this.named.length;
    if (width !== this.width || rows > this.rows) {
      if (width * rows > 1 << 24) return -1;
      const cap = Math.min(Math.max(rows, Math.ceil(this.rows * 1.5)), Math.floor((1 << 24) / width));
      const next = new Int32Array(width * cap);
      for (let r = 0; r < this.rows; r++) next.set(this.dense.subarray(r * this.width, (r + 1) * this.width), r * width);
      this.dense = next;
      this.width = width;
      this.rows = cap;
    }
    return l * this.width + c;
  }

  slot(l: number, c: number): number {
    const k = this.cell(l, c);
    let s = k >= 0 ? this.dense[k]! - 1 : (this.sparse.get(l * 2 ** 26 + c) ?? -1);
    if (s < 0) {
      const fk = this.ids[c]!;
      const id = Math.floor(fk / 2);
      const scope = id >= MIN_CLUSTER_IDENTITY && id < LOCAL_IDENTITY_SCOPE ? "c" : String(id);
      const text = `${l}|${fk % 2 ? 6 : 4}|${scope}|${this.named[l]!.get(id) ?? ""}`;
      let found = this.slotIds.get(text);
      if (found === undefined) this.slotIds.set(text, (found = this.slotIds.size));
      s = found;
      if (k >= 0) this.dense[k] = s + 1;
      else this.sparse.set(l * 2 ** 26 + c, s);
    }
    return s;
  }
}

const entryShape = (e: MapStateEntry) => `${e.key.direction}/${e.key.protocol}/${e.key.port}/${e.key.portPrefix}/${e.deny ? 1 : 0}/${e.proxyPort ? 1 : 0}/${e.proxyPortPriority}`;

/**
 * What the datapath has decided for one probe, by Halves slot: each slot's half verdict (0 or absent
 * unknown, 1 pass, 2 drop) and each self-probe key's verdict. A slot is defined by text (entry list, peer
 * naming), so probers of several policy states whose Halves are derived from one another (`new Halves(sim,
 * pods, base)`) may share one (whatif's before and after): a verdict found in one state holds in the other.
 */
export interface KnownHalves {
  slots: number[];
  self: Map<string, boolean>;
}

export function knownHalves(): KnownHalves {
  return { slots: [], self: new Map() };
}

/**
 * Verdicts of one probe with the datapath run once per half (see Halves). `dedupe: false` runs every pair
 * through the datapath whole (a check of the deduplication). `row(i)` gives the verdicts of source
 * pods[i] towards every pod, in the order of `pods`; `classes` are the display classes.
 */
export function reachProber(sim: Simulation, pods: SimPod[], probe: Probe, opts: { dedupe?: boolean; halves?: Halves; known?: KnownHalves } = {}) {
  const sport = probeSourcePort(probe.port);
  const dedupe = opts.dedupe ?? true;
  let classes: ReachClasses | undefined;
  let position: Map<SimPod, number> | undefined;
  // `halves` may be shared by the probes of one policy state (it depends on the policy, not the probe).
  const h = dedupe ? (opts.halves ?? new Halves(sim, pods)) : undefined;
  const { slots: vv, self } = opts.known ?? knownHalves();
  const ok = pods.map((p) => applicable(p, probe.protocol));
  const host = pods.map((p) => p.hostNetwork);
  const v6 = pods.map((p) => isIpv6(p.ip));
  const whole = (si: number, di: number): boolean => sim.probe(pods[si]!, pods[di]!, probe.port, probe.protocol, sport).allowed;
  const byIndex = (si: number, di: number): Verdict => {
    if (!ok[si] || !ok[di]) return null;
    if (!h || host[si] || host[di] || v6[si] !== v6[di]) return whole(si, di);
    if (si === di) {
      const k = h.selfKey(si);
      let v = self.get(k);
      if (v === undefined) self.set(k, (v = whole(si, di)));
      return v;
    }
    return halves(h, si, di);
  };
  /** Two distinct pods with an endpoint, of one family: the conjunction of the two halves. */
  const halves = (h: Halves, si: number, di: number): boolean => {
    const e = h.slot(h.eg[si]!, h.idc[di]!);
    if (vv[e] === 2) return false;
    const i = h.slot(h.ing[di]!, h.idc[si]!);
    if (!vv[e] || !vv[i]) {
      const r = sim.probeSides(pods[si]!, pods[di]!, probe.port, probe.protocol, sport);
      vv[e] = r.egress ? 1 : 2;
      vv[i] = r.ingress ? 1 : 2;
    }
    return vv[e] === 1 && vv[i] === 1;
  };
  // Sources with the same egress list and (identity, family) have the same row but for their own cell and
  // the cells probed whole: one template per such source (0 probe whole, 1 allowed, 2 denied, 3 n/a).
  const templates = new Map<number, Int8Array>();
  const template = (h: Halves, si: number): Int8Array => {
    const key = h.eg[si]! * pods.length + h.idc[si]!;
    let t = templates.get(key);
    if (!t) {
      t = new Int8Array(pods.length);
      for (let di = 0; di < pods.length; di++) t[di] = !ok[di] ? 3 : host[di] || v6[si] !== v6[di] ? 0 : halves(h, si, di) ? 1 : 2;
      templates.set(key, t);
    }
    return t;
  };
  const verdict = (s: SimPod, d: SimPod): Verdict => {
    if (!position) pods.forEach((p, i) => (position ??= new Map()).set(p, i));
    return byIndex(position!.get(s)!, position!.get(d)!);
  };
  /** The row of pods[si] as codes (1 allowed, 2 denied, 3 not applicable), a fresh array. */
  const rowCodes = (si: number): Int8Array => {
    if (!h || host[si] || !ok[si]) return Int8Array.from(pods, (_, di) => verdictCode(byIndex(si, di)));
    const out = template(h, si).slice();
    for (let di = 0; di < pods.length; di++) if (out[di] === 0) out[di] = verdictCode(byIndex(si, di));
    out[si] = verdictCode(byIndex(si, si));
    return out;
  };
  const row = (si: number): Verdict[] => {
    const out = new Array<Verdict>(pods.length);
    if (!h || host[si] || !ok[si]) {
      for (let di = 0; di < pods.length; di++) out[di] = byIndex(si, di);
      return out;
    }
    const t = template(h, si);
    for (let di = 0; di < pods.length; di++) {
      const c = t[di]!;
      out[di] = c === 1 ? true : c === 2 ? false : c === 3 ? null : byIndex(si, di);
    }
    out[si] = byIndex(si, si);
    return out;
  };
  return {
    get classes(): ReachClasses {
      return (classes ??= reachClasses(sim, pods));
    },
    verdict,
    /** The verdict of pods[si] → pods[di]. */
    at: byIndex,
    row,
    rowCodes,
  };
}

/** The rows of one probe's matrix, one source pod at a time (verdicts in the order of `pods`). */
export function* reachRows(sim: Simulation, pods: SimPod[], probe: Probe, opts: { dedupe?: boolean } = {}): Generator<{ from: SimPod; verdicts: Verdict[] }> {
  const { row } = reachProber(sim, pods, probe, opts);
  for (let i = 0; i < pods.length; i++) yield { from: pods[i]!, verdicts: row(i) };
}

/** The whole matrix of one probe as an object (small clusters and tests; the CLI streams reachRows). */
export function reachMatrix(sim: Simulation, pods: SimPod[], probe: Probe, opts: { dedupe?: boolean } = {}): ProbeMatrix {
  const matrix: Record<string, Record<string, Verdict>> = {};
  for (const { from, verdicts } of reachRows(sim, pods, probe, opts)) {
    const row: Record<string, Verdict> = {};
    pods.forEach((d, i) => (row[d.key] = verdicts[i]!));
    matrix[from.key] = row;
  }
  return { port: probe.port, protocol: probe.protocol, matrix };
}
