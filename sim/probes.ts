/*
 * Reachability probes (reach / whatif, sim/analysis/): one new connection from a pod to another pod's
 * address, judged by the datapath without events, its frame built once per source and re-addressed;
 * whatif's delta rewrites the policy entries of the endpoints a change touches.
 */
import { AbiDatapath } from "../host/abi-datapath.ts";
import { MAP_SPECS, type MapSpec, type TraceRecord } from "../host/codecs.gen.ts";
import * as C from "../host/constants.gen.ts";
import { clearMap, type RunResult } from "../host/datapath.ts";
import { encodeEntries, type CompiledPolicy, type MapStateEntry } from "../policy/index.ts";
import type { FlowProtocol, SimPod } from "../node/cluster.ts";
import { buildFrame, TCP_FLAGS, type FrameSpec } from "./packets.ts";
import { FlowPlayer } from "./flow-player.ts";

const NO_ENTRIES: MapStateEntry[] = [];

/** Reasons of probe results already explained (Probes.probeReason): by result, then by endpoint. */
export type ReasonMemo = WeakMap<RunResult, Map<string, string>>;
const POLICY_SPEC = MAP_SPECS.Policy as MapSpec;

export class Probes extends FlowPlayer {
  /* ------------------------------------------------------------------------------------------------ */
  /* Reachability probes (reach / whatif): one new connection from a pod to another pod's IP. */

  /**
   * Is a new connection from `src` to `dst`'s pod IP allowed end to end (egress at src, ingress at dst)?
   * An L7 redirect counts as allowed at L3/L4. `sport` should be unique per (src, dst) within a probe run.
   */
  probe(src: SimPod, dst: SimPod, port: number, proto: FlowProtocol, sport: number): { allowed: boolean; egress: RunResult; ingress?: RunResult } {
    const r = this.probeOnce(src, dst, port, proto, sport);
    // ICMP types other than echo carry no identifier in the conntrack tuple (bpf/lib/conntrack.h), so a
    // later probe b→a of the same type would look like a reply to a→b. Each probe must be judged as
    // `trace` judges it — a new flow — so its conntrack entries are removed again.
    // VRRP and IGMP have no ports at all: the same holds for them.
    const icmpNonEcho = (proto === "ICMP" && port !== 8) || (proto === "ICMPv6" && port !== 128) || proto === "VRRP" || proto === "IGMP";
    if (icmpNonEcho) this.forgetIcmpConntrack([src.node, dst.node]);
    return r;
  }

  /**
   * Both halves of a probe between two pods with an endpoint (not host-networked), each judged on its own:
   * the source's egress decision, and the destination's ingress decision for the packet egress forwarded
   * (or, when egress dropped it, for the packet as sent: a pod-to-pod packet reaches the destination
   * unchanged). reach combines halves of different pairs (sim/analysis/reach.ts); `probe` is this with the
   * ingress half only when egress passed.
   */
  probeSides(src: SimPod, dst: SimPod, port: number, proto: FlowProtocol, sport: number): { egress: boolean; ingress: boolean } {
    const frame = this.probeFrame(src, dst, port, proto, sport);
    const now = this.now();
    const egress = this.nodes.get(src.node)!.dp.run("fromEndpoint", frame, { now, srcIdentity: 0 });
    const out = egress.verdict === C.CTX_ACT_DROP ? frame : egress.output;
    const ingress = this.nodes.get(dst.node)!.dp.run("toEndpoint", out, { now, srcIdentity: this.identityOfPod(src) });
    if ((proto === "ICMP" && port !== 8) || (proto === "ICMPv6" && port !== 128)) this.forgetIcmpConntrack([src.node, dst.node]);
    return { egress: egress.verdict !== C.CTX_ACT_DROP, ingress: ingress.verdict !== C.CTX_ACT_DROP };
  }

  /**
   * Makes `policy` the simulation's policy and rewrites the policy-map entries of the endpoints of
   * `podKeys` from it (whatif's delta, sim/analysis/whatif.ts). Only for a policy that differs from the
   * current one in those endpoints' entries alone: identities, the ipcache and proxy listeners stay.
   */
  replaceEndpointPolicy(policy: CompiledPolicy, podKeys: Iterable<string>): void {
    for (const key of podKeys) {
      const pod = this.places.podByKey(key);
      const rt = pod && this.nodes.get(pod.node);
      const epId = rt?.epIds.get(key);
      if (!rt || epId === undefined) continue;
      const from = this.policy.endpoints.get(key)?.entries ?? NO_ENTRIES;
      const to = policy.endpoints.get(key)?.entries ?? NO_ENTRIES;
      if (rt.dp instanceof AbiDatapath) {
        // WASM/JS: the bytes of each (entry list, endpoint) encoded once and kept with the list; whatif
        // writes the same lists back and forth several times per comparison.
        rt.dp.deleteEncoded(POLICY_SPEC, this.encodedPolicy(epId, from).keys);
        const e = this.encodedPolicy(epId, to);
        rt.dp.updateEncoded(POLICY_SPEC, e.keys, e.values);
        continue;
      }
      const pm = rt.dp.map(MAP_SPECS.Policy);
      for (const e of encodeEntries(epId, from)) pm.delete(e.key);
      for (const e of encodeEntries(epId, to)) pm.update(e.key, e.value);
    }
    this.policy = policy;
  }

  /** Encoded policy-map entries of an entry list (compiled entry lists are not changed once handed out). */
  private readonly encodedLists = new WeakMap<MapStateEntry[], Map<number, { keys: Uint8Array[]; values: Uint8Array[] }>>();

  private encodedPolicy(epId: number, entries: MapStateEntry[]): { keys: Uint8Array[]; values: Uint8Array[] } {
    let byEp = this.encodedLists.get(entries);
    if (!byEp) this.encodedLists.set(entries, (byEp = new Map()));
    let e = byEp.get(epId);
    if (!e) {
      const list = encodeEntries(epId, entries);
      byEp.set(epId, (e = { keys: list.map((x) => POLICY_SPEC.key.encode(x.key)), values: list.map((x) => POLICY_SPEC.value.encode(x.value)) }));
    }
    return e;
  }

  /** Empties every node's conntrack, so the next probes are new connections as in a fresh simulation. */
  forgetConnections(): void {
    for (const n of this.nodes.values()) clearMap(n.dp.map(MAP_SPECS.Conntrack));
  }

  private forgetIcmpConntrack(nodes: string[]): void {
    for (const n of new Set(nodes)) {
      const ct = this.nodes.get(n)!.dp.map(MAP_SPECS.Conntrack);
      for (const [k] of [...ct.entries()]) if (k.nexthdr === 1 || k.nexthdr === 58 || k.nexthdr === 112 || k.nexthdr === 2) ct.delete(k);
    }
  }

  private probeOnce(src: SimPod, dst: SimPod, port: number, proto: FlowProtocol, sport: number): { allowed: boolean; egress: RunResult; ingress?: RunResult } {
    const frame = this.probeFrame(src, dst, port, proto, sport);
    const now = this.now();
    // With the host firewall on, a packet between a node and another node's pod or host crosses the
    // network devices, where host policy judges it: toNetwork at a sending node, fromNetwork at a
    // receiving one (core/host-firewall.ts H2/H3), as the flow player sends it (sim/flow-player.ts);
    // between a node and its own pods no device is crossed.
    const hostFw = this.cluster.config.enableHostFirewall && src.node !== dst.node;
    if (src.hostNetwork) {
      let out = frame;
      let egress = fakeOk(frame);
      if (hostFw) {
        egress = this.nodes.get(src.node)!.dp.run("toNetwork", frame, { now, srcIdentity: 0 });
        if (egress.verdict === C.CTX_ACT_DROP) return { allowed: false, egress };
        out = egress.output;
      }
      if (dst.hostNetwork) {
        if (!hostFw) return { allowed: true, egress };
        const ingress = this.nodes.get(dst.node)!.dp.run("fromNetwork", out, { now, srcIdentity: 0 });
        return { allowed: ingress.verdict !== C.CTX_ACT_DROP, egress, ingress };
      }
      const carried = this.identityOfIp(src.ip, dst.node);
      const ingress = this.nodes.get(dst.node)!.dp.run("toEndpoint", out, { now, srcIdentity: carried });
      return { allowed: ingress.verdict !== C.CTX_ACT_DROP, egress, ingress };
    }
    const egress = this.nodes.get(src.node)!.dp.run("fromEndpoint", frame, { now, srcIdentity: 0 });
    if (egress.verdict === C.CTX_ACT_DROP) return { allowed: false, egress };
    if (dst.hostNetwork) {
      if (!hostFw) return { allowed: true, egress };
      const ingress = this.nodes.get(dst.node)!.dp.run("fromNetwork", egress.output, { now, srcIdentity: 0 });
      return { allowed: ingress.verdict !== C.CTX_ACT_DROP, egress, ingress };
    }
    const ingress = egress.tunnel
      ? this.nodes.get(dst.node)!.dp.run("fromOverlay", egress.output, { now, tunnel: this.received(src.node, egress.tunnel) })
      : this.nodes.get(dst.node)!.dp.run("toEndpoint", egress.output, { now, srcIdentity: src.node === dst.node || this.tunnel ? this.identityOfPod(src) : 0 });
    return { allowed: ingress.verdict !== C.CTX_ACT_DROP, egress, ingress };
  }

  private probeTemplate?: { key: string; frame: Uint8Array };

  /**
   * The probe packet from src to dst. Probes of one source differ only in the destination address, so
   * the frame is built once per (source, port, protocol) and re-addressed with RFC 1624 incremental
   * checksum updates (IPv4); IPv6 frames are built whole.
   */
  private probeFrame(src: SimPod, dst: SimPod, port: number, proto: FlowProtocol, sport: number): Uint8Array {
    const icmp = proto === "ICMP" || proto === "ICMPv6";
    const spec: FrameSpec = icmp ? { src: src.ip, dst: dst.ip, proto, icmpType: port, icmpCode: 0, icmpId: sport } : { src: src.ip, dst: dst.ip, proto, sport, dport: port, tcpFlags: proto === "TCP" ? TCP_FLAGS.SYN : undefined };
    if (src.ip.includes(":") || dst.ip.includes(":")) return buildFrame(spec);
    const key = `${src.ip}|${port}|${proto}|${sport}`;
    if (this.probeTemplate?.key !== key) this.probeTemplate = { key, frame: buildFrame(spec) };
    return retargetIpv4(this.probeTemplate.frame, dst.ip);
  }

  /**
   * One sentence for a probe result: which direction decided and the rules behind the entry. `memo` keeps
   * each direction's reason by run result and endpoint, for a caller that explains many pairs with shared
   * results (whatif); it must not outlive the policy the results were run under.
   */
  probeReason(src: SimPod, dst: SimPod, p: { allowed: boolean; egress: RunResult; ingress?: RunResult }, memo?: ReasonMemo): string {
    const e = this.directionReason(src.node, "egress", p.egress, src.key, memo);
    if (p.egress.verdict === C.CTX_ACT_DROP) return `egress at ${src.key}: ${e}`;
    if (!p.ingress) return `egress at ${src.key}: ${e}`;
    const i = this.directionReason(dst.node, "ingress", p.ingress, dst.key, memo);
    if (p.ingress.verdict === C.CTX_ACT_DROP) return `ingress at ${dst.key}: ${i}`;
    return `egress at ${src.key}: ${e}; ingress at ${dst.key}: ${i}`;
  }

  private directionReason(node: string, direction: "ingress" | "egress", r: RunResult, endpoint: string, memo: ReasonMemo | undefined): string {
    if (!memo) return this.outcome(node, direction, r.trace, r, endpoint).reason;
    let byEndpoint = memo.get(r);
    if (!byEndpoint) memo.set(r, (byEndpoint = new Map()));
    // The endpoint names its node, and a result is one direction's.
    let reason = byEndpoint.get(endpoint);
    if (reason === undefined) byEndpoint.set(endpoint, (reason = this.outcome(node, direction, r.trace, r, endpoint).reason));
    return reason;
  }
}

/** One's-complement 16-bit checksum update for a 32-bit field change (RFC 1624, eqn. 3). */
function csumUpdate32(csum: number, from: number, to: number): number {
  let sum = ~csum & 0xffff;
  sum += (~(from >>> 16) & 0xffff) + (~from & 0xffff) + (to >>> 16) + (to & 0xffff);
  while (sum > 0xffff) sum = (sum & 0xffff) + (sum >>> 16);
  return ~sum & 0xffff;
}

/** A copy of an IPv4 frame (Ethernet + 20-byte IP header) with a new destination address and fixed checksums. */
export function retargetIpv4(template: Uint8Array, dst: string): Uint8Array {
  const f = template.slice();
  const dv = new DataView(f.buffer);
  const parts = dst.split(".");
  const to = ((Number(parts[0]) << 24) | (Number(parts[1]) << 16) | (Number(parts[2]) << 8) | Number(parts[3])) >>> 0;
  const from = dv.getUint32(14 + 16);
  dv.setUint32(14 + 16, to);
  dv.setUint16(14 + 10, csumUpdate32(dv.getUint16(14 + 10), from, to));
  const proto = f[14 + 9];
  const l4 = 14 + (f[14]! & 0xf) * 4;
  const csumOff = proto === 6 ? l4 + 16 : proto === 17 ? l4 + 6 : -1;
  if (csumOff > 0 && !(proto === 17 && dv.getUint16(csumOff) === 0)) {
    let c = csumUpdate32(dv.getUint16(csumOff), from, to);
    if (proto === 17 && c === 0) c = 0xffff;
    dv.setUint16(csumOff, c);
  }
  return f;
}

function fakeOk(frame: Uint8Array): RunResult {
  return { verdict: C.CTX_ACT_OK, dropReason: 0, output: frame, trace: { srcIdentity: C.ID_HOST, dstIdentity: 0, egressCookie: 0, ingressCookie: 0, egressMatchType: 0, ingressMatchType: 0, traceFlags: 0, proxyPort: 0, ctState: 0 } as TraceRecord };
}
