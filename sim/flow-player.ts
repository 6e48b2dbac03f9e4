/*
 * Plays a flow of a Traffic document packet by packet: resolves its two ends, plays each connection (TCP
 * handshake, request, response and close; UDP/SCTP request and response; ICMP echo), and sends each
 * packet through the entry points it meets on its way — the sender's fromEndpoint or the receiving node's
 * fromNetwork, toNetwork when masquerading, the overlay hop, the receiver's toEndpoint/fromOverlay —
 * with the L7 proxies in between (l7-proxy.ts).
 */
import type { TraceRecord } from "../host/codecs.gen.ts";
import * as C from "../host/constants.gen.ts";
import { hostPort } from "../host/ip.ts";
import type { EntryPoint, TunnelKey } from "../host/datapath.ts";
import { dropReasonText } from "../host/drop-reasons.gen.ts";
import type { FlowSpec } from "../node/cluster.ts";
import { SimError } from "../node/errors.ts";
import { EVENT_TRACE } from "../host/flows.ts";
import { protoNumber } from "../host/protocols.ts";
import type { Place } from "./places.ts";
import { buildFrame, decodeFrame, fragmentFrame, ipv4FragmentOf, TCP_FLAGS, type FrameSpec } from "./packets.ts";

/** The MTU of a simulated pod's interface: a larger UDP datagram (FlowSpec.size) leaves in fragments. */
export const SENDER_MTU = 1500;
import type { Frontend } from "../node/services.ts";
import { type DirectionOutcome, type FlowResult, type Ctx, POLICY_DROPS } from "./flow-result.ts";
import { L7Proxy } from "./l7-proxy.ts";

export class FlowPlayer extends L7Proxy {
  private frontendOf(ip: string, port: number, proto: number): Frontend | undefined {
    return this.lb.frontends.find((f) => f.ip === ip && f.fport === port && protoNumber(f.protocol) === proto);
  }

  /**
   * Sends one packet from `sender` (addressed as in `spec`) through the datapath to wherever it ends.
   * Returns the frame as delivered, or undefined when it was dropped.
   */
  private sendPacket(ctx: Ctx, sender: Place, spec: FrameSpec | Uint8Array, reply: boolean, httpData: "request" | "response" | undefined): Uint8Array | undefined {
    let frame = spec instanceof Uint8Array ? spec : buildFrame(spec);
    let fromNode: string | undefined = sender.node;
    let carried = sender.kind === "pod" ? this.identityOfPod(sender.pod!) : (sender.carry ?? 0);
    const senderIdentity = carried;
    // The tunnel key the sender's fromEndpoint set: the packet crosses to another node encapsulated.
    let sent: TunnelKey | undefined;
    const initSender = sender.kind === "external" ? this.initByIp.get(sender.ip) : undefined;
    if (initSender) {
      // The reserved:init endpoint sends through its own endpoint program: its egress policy applies.
      const r = this.run(ctx, initSender, "fromEndpoint", frame, 0, reply);
      if (!this.report(ctx, initSender, "fromEndpoint", frame, r, reply)) return undefined;
      frame = r.output;
      fromNode = initSender;
    } else if (sender.kind === "pod") {
      const r = this.run(ctx, sender.node!, "fromEndpoint", frame, 0, reply);
      if (!this.report(ctx, sender.node!, "fromEndpoint", frame, r, reply)) return undefined;
      if (httpData === "response" && ctx.redirect && !ctx.l7Denied) this.l7Response(ctx, frame, { src: r.trace.srcIdentity, dst: r.trace.dstIdentity });
      if (httpData === "response" && ctx.dns && ctx.redirect && !ctx.l7Denied) this.dnsResponse(ctx, frame, { src: r.trace.srcIdentity, dst: r.trace.dstIdentity });
      this.noteService(ctx, r.trace, reply);
      frame = r.output;
      sent = r.tunnel;
      if (r.verdict === C.CTX_ACT_REDIRECT && httpData === "request" && ctx.redirect?.direction === "egress") {
        if (!this.proxyRequest(ctx, frame, { src: r.trace.srcIdentity, dst: r.trace.dstIdentity })) return undefined;
      }
      if (r.verdict === C.CTX_ACT_REDIRECT && httpData === "request" && ctx.dns && ctx.redirect?.direction === "egress") {
        if (!this.proxyDnsQuery(ctx, frame, { src: r.trace.srcIdentity, dst: r.trace.dstIdentity })) return undefined;
      }
      if (r.verdict === C.CTX_ACT_REDIRECT && httpData === "request" && !ctx.dns && ctx.redirect && this.policyAt(ctx.redirect.node).proxies.get(ctx.redirect.port)?.protocol === "dns") {
        this.proxyDropsNonDns(ctx);
        return undefined;
      }
    } else {
      // A resolver outside the cluster answers: the proxy sees (and learns from) the answer first.
      if (httpData === "response" && ctx.dns && ctx.redirect && !ctx.l7Denied) this.dnsResponse(ctx, frame, { src: 0, dst: 0 });
      const d = decodeFrame(frame)!;
      const f = this.frontendOf(d.dst, d.dport, d.proto);
      if (f) {
        const ingressNode = f.kind === "NodePort" ? this.places.nodeByIp.get(f.ip)!.name : (sender.kind === "host" ? sender.node! : this.cluster.nodes[0]!.name);
        const r = this.run(ctx, ingressNode, "fromNetwork", frame, 0, reply);
        if (!this.report(ctx, ingressNode, "fromNetwork", frame, r, reply)) return undefined;
        this.noteService(ctx, r.trace, reply);
        frame = r.output;
        fromNode = ingressNode;
        if (sender.kind === "external" && !carried) carried = r.trace.srcIdentity;
        if (!reply && r.trace.traceFlags & C.TRACE_F_SNAT) ctx.snatNode = ingressNode;
      } else if (sender.kind === "host" && sender.node && this.cluster.config.enableHostFirewall && this.placeOfIp(d.dst).node !== sender.node) {
        // The node's own packet leaves through its device: host egress policy (core/host-firewall.ts H3).
        const r = this.run(ctx, sender.node, "toNetwork", frame, 0, reply);
        if (!this.report(ctx, sender.node, "toNetwork", frame, r, reply)) return undefined;
        frame = r.output;
      }
    }
    let out = decodeFrame(frame)!;
    let target = this.placeOfIp(out.dst);
    // A pod's packet leaving the cluster passes its node's device, whose toNetwork masquerades it
    // (core/nat.ts M1–M6); the reply comes back to that node (below).
    if (this.masquerade && sender.kind === "pod" && fromNode && target.kind === "external" && !this.initByIp.has(out.dst)) {
      const r = this.run(ctx, fromNode, "toNetwork", frame, 0, reply);
      if (!this.report(ctx, fromNode, "toNetwork", frame, r, reply)) return undefined;
      if (r.trace.traceFlags & C.TRACE_F_SNAT && !reply) ctx.snatNode = fromNode;
      frame = r.output;
      out = decodeFrame(frame)!;
    }
    // The reply of a NodePort flow SNATed to this backend goes back to the node that translated it, whose
    // fromNetwork restores the client address and the frontend (pipeline R2).
    if (reply && ctx.snatNode && target.kind === "host" && target.node === ctx.snatNode) {
      const back = ctx.snatNode;
      const ids0 = { src: senderIdentity, dst: C.ID_WORLD };
      if (fromNode && fromNode !== back) {
        this.event(ctx, fromNode, frame, ids0, { event: "to-overlay", verdict: "FORWARDED", type: EVENT_TRACE, reply, obs: "to-overlay" });
        this.advance(1);
        this.event(ctx, back, frame, ids0, { event: "from-overlay", verdict: "FORWARDED", type: EVENT_TRACE, reply, obs: "from-overlay" });
      }
      const r = this.run(ctx, back, "fromNetwork", frame, 0, reply);
      if (!this.report(ctx, back, "fromNetwork", frame, r, reply)) return undefined;
      frame = r.output;
      fromNode = back;
      out = decodeFrame(frame)!;
      target = this.placeOfIp(out.dst);
    }
    // A packet for a node from elsewhere arrives through that node's device: host ingress policy
    // (core/host-firewall.ts H2). From the node itself or its own pods it never crosses the device.
    // A pod's packet its node sent through the tunnel (node addresses name their node as tunnel endpoint
    // with the host firewall) arrives at the target's fromOverlay instead (core/host-firewall.ts H10).
    if (target.kind === "host" && target.node && target.node !== fromNode && this.cluster.config.enableHostFirewall) {
      const overlay = sent && fromNode ? this.received(fromNode, sent) : undefined;
      if (overlay && fromNode) {
        const ids0 = { src: senderIdentity, dst: C.ID_HOST };
        const extra = { tunnel: this.tunnelView(fromNode, sent!) };
        this.event(ctx, fromNode, frame, ids0, { event: "to-overlay", verdict: "FORWARDED", type: EVENT_TRACE, reply, obs: "to-overlay", extra });
        this.advance(1);
        this.event(ctx, target.node, frame, ids0, { event: "from-overlay", verdict: "FORWARDED", type: EVENT_TRACE, reply, obs: "from-overlay", extra });
      }
      const entry: EntryPoint = overlay ? "fromOverlay" : "fromNetwork";
      const r = this.run(ctx, target.node, entry, frame, 0, reply, overlay);
      if (!this.report(ctx, target.node, entry, frame, r, reply)) return undefined;
      frame = r.output;
      fromNode = target.node;
    }
    // The reserved:init endpoint is delivered to like a pod: its ingress policy applies.
    const initNode = target.kind === "external" ? this.initByIp.get(out.dst) : undefined;
    if (target.kind !== "pod" && !initNode) {
      const obs = target.kind === "host" ? (target.node === fromNode ? "to-host" : "to-overlay") : "to-stack";
      this.event(ctx, fromNode ?? target.node ?? this.cluster.nodes[0]!.name, frame, { src: senderIdentity, dst: 0 }, { event: obs, verdict: "FORWARDED", type: EVENT_TRACE, reply, obs, direction: reply ? "INGRESS" : "EGRESS" });
      return frame;
    }
    const tnode = initNode ?? target.node!;
    if (sender.kind === "host") carried = fromNode === tnode ? C.ID_HOST : C.ID_REMOTE_NODE;
    carried = this.overlayIdentity(carried, out.src, tnode);
    // Without the overlay nothing carries the identity between nodes: the receiver looks the source up.
    if (sender.kind === "pod" && !this.tunnel && fromNode !== tnode) carried = 0;
    const ids = { src: carried, dst: initNode ? C.ID_INIT : this.identityOfPod(target.pod!) };
    // An encapsulated packet arrives through the receiver's tunnel device: its fromOverlay takes the
    // identity from the tunnel key (core/overlay.ts O4) and enforces the pod's ingress policy on it.
    const overlay = sent && fromNode && fromNode !== tnode ? this.received(fromNode, sent) : undefined;
    if (fromNode && fromNode !== tnode) {
      const extra = sent ? { tunnel: this.tunnelView(fromNode, sent) } : undefined;
      this.event(ctx, fromNode, frame, ids, { event: "to-overlay", verdict: "FORWARDED", type: EVENT_TRACE, reply, obs: "to-overlay", extra });
      this.advance(1);
      this.event(ctx, tnode, frame, ids, { event: "from-overlay", verdict: "FORWARDED", type: EVENT_TRACE, reply, obs: "from-overlay", extra });
    }
    const entry: EntryPoint = overlay ? "fromOverlay" : "toEndpoint";
    const r = this.run(ctx, tnode, entry, frame, overlay ? 0 : carried, reply, overlay);
    if (!this.report(ctx, tnode, entry, frame, r, reply)) return undefined;
    const t = r.trace;
    if (r.verdict === C.CTX_ACT_REDIRECT && httpData === "request" && ctx.redirect?.direction === "ingress") {
      if (!this.proxyRequest(ctx, r.output, { src: t.srcIdentity, dst: t.dstIdentity })) return undefined;
    }
    this.event(ctx, tnode, r.output, { src: t.srcIdentity, dst: t.dstIdentity }, { event: "to-endpoint", verdict: "FORWARDED", type: EVENT_TRACE, reply, obs: "to-endpoint", direction: "INGRESS" });
    return r.output;
  }

  private noteService(ctx: Ctx, t: TraceRecord, reply: boolean): void {
    if (reply || !(t.traceFlags & C.TRACE_F_DNAT)) return;
    const f = this.lb.frontends.find((x) => x.revNat === t.revNatIndex);
    if (f && !ctx.result.service) ctx.result.service = { namespace: f.svc.namespace, name: f.svc.name, frontend: `${hostPort(f.ip, f.fport)}/${f.protocol}`, kind: f.kind };
    const b = this.lb.backendById.get(t.backendId);
    if (b) ctx.result.backend = { ip: b.ip, port: b.port, pod: b.pod && this.meshCluster && !b.cluster ? `${this.meshCluster}/${b.pod}` : b.pod };
  }

  /** Resolves both ends of a flow without sending anything; throws SimError for a bad reference. */
  resolveFlow(spec: FlowSpec): { src: Place; dst: { place: Place; port: number; frontend?: Frontend } } {
    const what = spec.where;
    // The destination first when the source is relative to it (entity: host).
    // A problem with one end names that end's field (spec.flows[0].from.pod, --to).
    const whereFrom = spec.whereEnds?.from ?? what;
    const whereTo = spec.whereEnds?.to ?? what;
    const srcPre = "entity" in spec.from ? undefined : this.resolveSource(spec.from, undefined, whereFrom);
    const srcHint: Place | undefined = srcPre ?? ("entity" in spec.from ? { kind: spec.from.entity === "host" ? "host" : "external", ip: "" } : undefined);
    let dst = this.resolveDestination(spec.to, srcHint, spec.port, spec.protocol, whereTo);
    const peerNode = dst.frontend ? (dst.frontend.port.backends[0]?.node ?? this.cluster.nodes[0]!.name) : dst.place.node;
    let src = srcPre ?? this.resolveSource(spec.from, peerNode, whereFrom);
    // Dual-stack ends (pods, services) take the flow's family: ICMPv6 or ipFamily IPv6 or the family of the
    // end given as an address; an end without an address of that family keeps its own (and fails below).
    const fixedV6 = (p: Place, f: Frontend | undefined) => (p.ip && !f && p.kind !== "pod" ? p.ip.includes(":") : undefined);
    const wantV6 = spec.protocol === "ICMPv6" || spec.ipFamily === "IPv6" ? true : spec.ipFamily === "IPv4" ? false : (fixedV6(dst.place, dst.frontend) ?? fixedV6(src, undefined));
    if (wantV6 !== undefined) {
      const d = this.places.inFamily(dst.place, dst.frontend, wantV6);
      if (d) dst = { ...dst, place: d.place, frontend: d.frontend, port: d.frontend ? d.frontend.fport : dst.port };
      src = this.places.inFamily(src, undefined, wantV6)?.place ?? src;
    }
    // With the host firewall a node is an end of its own: its host policies judge the flow.
    const hostEnd = this.cluster.config.enableHostFirewall && (src.kind === "host" || dst.place.kind === "host");
    if (src.kind !== "pod" && dst.place.kind !== "pod" && !dst.frontend && !hostEnd)
      throw new SimError("BAD_REFERENCE", `${what}: neither end of the flow is a pod or a service; ciliate simulates traffic that reaches or leaves the cluster's pods`);
    // A packet has one address family; a flow from an IPv4 address to an IPv6 one cannot be sent at all.
    const family = (ip: string) => (ip.includes(":") ? "IPv6" : "IPv4");
    if (src.ip && dst.place.ip && family(src.ip) !== family(dst.place.ip))
      throw new SimError("BAD_REFERENCE", `${what}: the source ${src.ip} is ${family(src.ip)} and the destination ${dst.place.ip} is ${family(dst.place.ip)}; a flow stays within one address family`);
    // ICMP and IGMP are IPv4's, ICMPv6 IPv6's: between addresses of the other family the flow is not
    // applicable (reach reports such pairs as "-"), never allowed or denied.
    const needs = spec.protocol === "ICMPv6" ? "IPv6" : spec.protocol === "ICMP" || spec.protocol === "IGMP" ? "IPv4" : undefined;
    const ip = src.ip || dst.place.ip;
    if (needs && ip && family(ip) !== needs)
      throw new SimError("BAD_REFERENCE", `${what}: ${spec.protocol} is carried by ${needs} only, and this flow's addresses are ${family(ip)} (${src.ip || "?"} -> ${dst.place.ip || "?"}): not applicable`, `use ${needs === "IPv6" ? "ICMP" : "ICMPv6"} between ${family(ip)} addresses`);
    return { src, dst };
  }

  /** Plays one flow of a Traffic document (or an Expectation) and returns its events and verdict. */
  runFlow(spec: FlowSpec, opts: { sport?: number } = {}): FlowResult {
    const { src, dst } = this.resolveFlow(spec);
    if (spec.wait) this.advance(spec.wait * 1000);
    this.expireFqdn();
    const result: FlowResult = {
      name: spec.name,
      verdict: "allowed",
      reason: "",
      events: [],
      steps: [],
      source: src,
      destination: dst.place,
      dropReason: 0,
      srcIdentity: src.kind === "pod" ? this.identityOfPod(src.pod!) : (src.carry ?? 0),
      dstIdentity: dst.place.kind === "pod" ? this.identityOfPod(dst.place.pod!) : 0,
    };
    if (dst.frontend) result.service = { namespace: dst.frontend.svc.namespace, name: dst.frontend.svc.name, frontend: `${hostPort(dst.frontend.ip, dst.frontend.fport)}/${dst.frontend.protocol}`, kind: dst.frontend.kind };
    let played = 0;
    for (let i = 0; i < spec.count && result.verdict === "allowed"; i++) {
      // The outcome describes one connection, the last one played (the denied one, if any): never the
      // backend of one connection with the policy verdicts of another.
      result.egress = result.ingress = result.l7 = result.backend = undefined;
      played = i + 1;
      const ctx: Ctx = { result, flowName: spec.name, http: spec.http, kafka: spec.kafka, tls: spec.tls, dns: spec.dns, stopped: false, l7Denied: false };
      this.playConnection(ctx, spec, src, dst.place.ip, dst.port, opts.sport);
      this.advance(100);
    }
    if (result.backend) result.destination = this.placeOfIp(result.backend.ip);
    // Identities as the datapath saw them.
    const first = result.steps.find((s) => !s.reply);
    if (first && !result.srcIdentity) result.srcIdentity = first.trace.srcIdentity;
    const deliver = result.steps.find((s) => !s.reply && (s.entry === "toEndpoint" || s.entry === "fromOverlay"));
    if (deliver) result.dstIdentity = deliver.trace.dstIdentity;
    else if (first && !result.dstIdentity) result.dstIdentity = first.trace.dstIdentity;
    result.reason = (spec.count > 1 ? `connection ${played} of ${spec.count}: ` : "") + this.reasonOf(result);
    return result;
  }

  private reasonOf(r: FlowResult): string {
    const parts: string[] = [];
    if (r.service) parts.push(`service ${r.service.namespace}/${r.service.name} (${r.service.frontend})${r.backend ? ` → backend ${r.backend.pod ?? r.backend.ip}:${r.backend.port}` : ""}`);
    if (r.verdict === "denied" && r.dropReason && !POLICY_DROPS.has(r.dropReason)) parts.push(`dropped: ${dropReasonText(r.dropReason)}`);
    if (r.egress) parts.push(`egress: ${r.egress.reason}`);
    if (r.ingress) parts.push(`ingress: ${r.ingress.reason}`);
    if (r.l7) parts.push(`L7 ${r.l7.protocol} ${r.l7.direction} proxy: ${r.l7.verdict === "allowed" ? "allowed" : "denied"} (${r.l7.reason})`);
    return parts.join("; ") || (r.verdict === "allowed" ? "allowed" : "denied");
  }

  private playConnection(ctx: Ctx, spec: FlowSpec, src: Place, dstIp: string, dport: number, fixedSport?: number): void {
    const sport = fixedSport ?? this.nextSourcePort();
    const proto = spec.protocol;
    const fwd = (extra: Partial<FrameSpec>): FrameSpec => ({ src: src.ip, dst: dstIp, proto, sport, dport, ...extra });
    // The reply goes from wherever the request was delivered back to the sender's address.
    let server: Place | undefined;
    let serverPort = dport;
    // Where the server sees the client (after any SNAT): replies are addressed there.
    let clientIp = src.ip;
    let clientPort = sport;
    // The first packet as it was delivered (translated on the way): what an ICMP error is about.
    let delivered: Uint8Array | undefined;
    const send = (spec2: FrameSpec | Uint8Array, reply: boolean, http?: "request" | "response"): boolean => {
      if (ctx.stopped) return false;
      const from = reply ? server! : src;
      const out = this.sendPacket(ctx, from, spec2, reply, http);
      this.advance(1);
      if (!out) return false;
      delivered ??= out;
      if (!reply && !server && !ipv4FragmentOf(out)?.offset) {
        const d = decodeFrame(out)!;
        server = this.placeOfIp(d.dst);
        serverPort = d.dport;
        clientIp = d.src;
        clientPort = d.proto === 1 || d.proto === 58 ? sport : d.sport;
      }
      return true;
    };
    const rev = (extra: Partial<FrameSpec>): FrameSpec => ({ src: server!.ip, dst: clientIp, proto, sport: serverPort, dport: clientPort, ...extra });
    const enc = new TextEncoder();
    const { SYN, ACK, FIN, PSH } = TCP_FLAGS;
    if (spec.icmpError) {
      // The first packet, then an ICMP error about it from a router (icmpError.from) or from where it was
      // delivered, addressed to its source as delivered and embedding its IP header and first 8 bytes
      // (RFC 792). The nodes on the way back translate the embedded header (core/nat.ts E1–E3,
      // core/lb.ts lbRevNatIcmpError) and take the error as related to the flow.
      const first: FrameSpec = proto === "TCP" ? fwd({ tcpFlags: SYN }) : proto === "UDP" ? fwd({ payload: enc.encode("ping") })
        : { src: src.ip, dst: dstIp, proto, icmpType: 8, icmpCode: 0, icmpId: sport };
      if (!send(first, false) || ctx.stopped) return;
      const ip = delivered!.subarray(14);
      const e = spec.icmpError;
      const sender: Place = e.from ? this.placeOfIp(e.from) : server!;
      const error: FrameSpec = { src: sender.ip, dst: clientIp, proto: "ICMP", icmpType: e.type, icmpCode: e.code, embedded: ip.slice(0, (ip[0]! & 0xf) * 4 + 8) };
      this.sendPacket(ctx, sender, error, true, undefined);
      this.advance(1);
      return;
    }
    if (proto === "TCP") {
      if (!send(fwd({ tcpFlags: SYN }), false)) return;
      if (!send(rev({ tcpFlags: SYN | ACK }), true)) return;
      if (!send(fwd({ tcpFlags: ACK }), false)) return;
      const req = spec.http ? `${spec.http.method} ${spec.http.path} HTTP/1.1\r\nHost: ${spec.http.host ?? "x"}\r\n\r\n` : spec.dns ? `dns ${spec.dns.query}` : "ping";
      if (!send(fwd({ tcpFlags: PSH | ACK, payload: enc.encode(req) }), false, "request")) return;
      if (!send(rev({ tcpFlags: PSH | ACK, payload: enc.encode(spec.http ? "HTTP/1.1 200 OK\r\n\r\n" : "pong") }), true, "response")) return;
      if (!send(fwd({ tcpFlags: FIN | ACK }), false)) return;
      if (!send(rev({ tcpFlags: FIN | ACK }), true)) return;
      send(fwd({ tcpFlags: ACK }), false);
    } else if (proto === "VRRP" || proto === "IGMP") {
      // One message, no answer: VRRP advertisements and IGMP reports are not request/response.
      send(fwd({}), false);
    } else if (proto === "UDP" && spec.size !== undefined && src.ip && !src.ip.includes(":")) {
      // A datagram larger than the sender's MTU leaves as IPv4 fragments (the sender's stack cuts it; the
      // identification is the source port's, so a trace is reproducible). Each fragment runs the datapath
      // on its own: later ones take their first fragment's ports and verdict (core/frag.ts F1–F3), or are
      // dropped with 175 when it was lost.
      const frags = fragmentFrame(buildFrame(fwd({ payload: new Uint8Array(spec.size).fill(0x61) })), SENDER_MTU - 20, sport & 0xffff);
      for (const f of spec.firstFragmentLost ? frags.slice(1) : frags) if (!send(f, false, "request")) return;
      if (spec.firstFragmentLost) return;
      send(rev({ payload: enc.encode("pong") }), true, "response");
    } else if (proto === "UDP" || proto === "SCTP") {
      if (!send(fwd({ payload: enc.encode(spec.dns ? `dns ${spec.dns.query}` : "ping") }), false, "request")) return;
      send(rev({ payload: enc.encode("pong") }), true, "response");
    } else {
      const v6 = proto === "ICMPv6";
      const type = spec.icmp?.type ?? (v6 ? 128 : 8);
      const code = spec.icmp?.code ?? 0;
      const echo = type === (v6 ? 128 : 8);
      const req: FrameSpec = { src: src.ip, dst: dstIp, proto, icmpType: type, icmpCode: code, icmpId: sport };
      if (!send(req, false)) return;
      if (echo) send({ src: server!.ip, dst: clientIp, proto, icmpType: v6 ? 129 : 0, icmpCode: 0, icmpId: sport }, true);
    }
  }

  /**
   * For a flow dropped at egress: what the destination's ingress policy would decide for the same packet
   * (run once through its toEndpoint). Undefined when the packet was not headed to a pod.
   */
  ingressWouldBe(r: FlowResult): DirectionOutcome | undefined {
    const step = [...r.steps].reverse().find((s) => s.entry === "fromEndpoint" && s.result.verdict === C.CTX_ACT_DROP);
    if (!step) return undefined;
    const target = this.placeOfIp(decodeFrame(step.frame)!.dst);
    if (target.kind !== "pod") return undefined;
    const res = this.run(undefined, target.node!, "toEndpoint", step.frame, step.trace.srcIdentity, false);
    return this.outcome(target.node!, "ingress", res.trace, res, this.podName(target.pod!));
  }
}
