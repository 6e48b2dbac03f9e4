/*
 * One packet through one node's entry point, and what Hubble would show of it: the core's step (for
 * `trace`), each direction's policy outcome with the rules behind its cookie, and the flow events
 * (trace points, policy verdicts, drops, redirects to the proxy) in Hubble's flow.proto shape.
 */
import { hostPort } from "../host/ip.ts";
import type { TraceRecord } from "../host/codecs.gen.ts";
import * as C from "../host/constants.gen.ts";
import type { EntryPoint, RunResult, TunnelKey } from "../host/datapath.ts";
import { dropReasonHubble, dropReasonText } from "../host/drop-reasons.gen.ts";
import { describe as describeRules, INIT_ENDPOINT } from "../policy/index.ts";
import { EVENT_DROP, EVENT_POLICY_VERDICT, EVENT_TRACE, MATCH_TYPE_NAMES, OBS_POINT_NAMES, tcpFlagNames, type FlowEndpoint, type FlowEvent, type PolicyRef, type Verdict } from "../host/flows.ts";
import { decodeFrame, icmpErrorInner, ipv4FragmentOf } from "./packets.ts";
import { type DirectionOutcome, type Ctx, type IcmpInner, POLICY_DROPS } from "./flow-result.ts";
import { CLOCK_ORIGIN_MS, SimulationState } from "./state.ts";

export class FlowEvents extends SimulationState {
  /* ------------------------------------------------------------------------------------------------ */
  /* Flow events. */

  private endpointOf(ip: string, identity: number): FlowEndpoint {
    const pod = this.places.podByIp.get(ip);
    const labels = (this.policy.identities.byId.get(identity)?.labels ?? []).map((l) => `${l.source}:${l.key}${l.value !== "" || l.source === "k8s" ? `=${l.value}` : ""}`);
    if (pod) {
      const epId = this.nodes.get(pod.node)?.epIds.get(pod.key);
      const cluster = pod.cluster ?? this.meshCluster;
      return { ID: epId, identity, namespace: pod.namespace, labels, pod_name: pod.name, ...(cluster ? { cluster_name: cluster } : {}) };
    }
    const f = this.lb.frontends.find((x) => x.ip === ip && x.kind !== "NodePort");
    return { identity, labels, ip, ...(f ? { service: `${f.svc.namespace}/${f.svc.name}` } : {}) };
  }

  private l4Of(d: { proto: number; sport: number; dport: number; tcpFlags: number; icmpType: number; icmpCode: number }): Record<string, unknown> {
    if (d.proto === 6) {
      const flags: Record<string, boolean> = {};
      for (const f of tcpFlagNames(d.tcpFlags)) flags[f] = true;
      return { TCP: { source_port: d.sport, destination_port: d.dport, flags } };
    }
    if (d.proto === 17) return { UDP: { source_port: d.sport, destination_port: d.dport } };
    if (d.proto === 132) return { SCTP: { source_port: d.sport, destination_port: d.dport } };
    if (d.proto === 1) return { ICMPv4: { type: d.icmpType, code: d.icmpCode } };
    if (d.proto === 58) return { ICMPv6: { type: d.icmpType, code: d.icmpCode } };
    return {};
  }

  private summaryOf(d: { proto: number; tcpFlags: number; icmpType: number }): string {
    if (d.proto === 6) return `TCP Flags: ${tcpFlagNames(d.tcpFlags).join(", ")}`;
    if (d.proto === 17) return "UDP";
    if (d.proto === 132) return "SCTP";
    if (d.proto === 112) return "VRRP";
    if (d.proto === 2) return "IGMP";
    if (d.proto === 1) return `ICMPv4 ${d.icmpType === 8 ? "EchoRequest" : d.icmpType === 0 ? "EchoReply" : `type ${d.icmpType}`}`;
    if (d.proto === 58) return `ICMPv6 ${d.icmpType === 128 ? "EchoRequest" : d.icmpType === 129 ? "EchoReply" : `type ${d.icmpType}`}`;
    return `protocol ${d.proto}`;
  }

  /** The rules behind a cookie of node `node`'s policy map (default: this cluster's policy). */
  policyRefs(cookie: number, node?: string): PolicyRef[] {
    return ((node ? this.policyAt(node) : this.policy).provenance.get(cookie) ?? []).map((p) => ({ kind: p.kind, name: p.name, namespace: p.namespace, rule_index: p.ruleIndex, element: p.element }));
  }

  protected event(
    ctx: Ctx,
    node: string,
    frame: Uint8Array,
    ids: { src: number; dst: number },
    o: { event: string; verdict: Verdict; type: number; direction?: FlowEvent["traffic_direction"]; reply: boolean; obs?: string; extra?: Partial<FlowEvent> },
  ): FlowEvent {
    const d = decodeFrame(frame)!;
    // Identities the program did not report are those the node's ipcache gives the addresses.
    if (!ids.src) ids = { ...ids, src: this.identityOfIp(d.src, node) };
    if (!ids.dst) ids = { ...ids, dst: this.identityOfIp(d.dst, node) };
    const ev: FlowEvent = {
      time: new Date(CLOCK_ORIGIN_MS + this.clockMs).toISOString(),
      verdict: o.verdict,
      IP: { source: d.src, destination: d.dst, ipVersion: d.family === 4 ? "IPv4" : "IPv6" },
      l4: this.l4Of(d),
      source: this.endpointOf(d.src, ids.src),
      destination: this.endpointOf(d.dst, ids.dst),
      Type: "L3_L4",
      // Hubble names a node cluster/node in a Cluster Mesh; the other clusters' nodes already are.
      node_name: this.meshCluster && !node.includes("/") ? `${this.meshCluster}/${node}` : node,
      event_type: { type: o.type },
      traffic_direction: o.direction ?? "TRAFFIC_DIRECTION_UNKNOWN",
      is_reply: o.reply,
      Summary: this.summaryOf(d),
      event: o.event,
      src_port: d.sport,
      dst_port: d.dport,
      flow_name: ctx.flowName,
    };
    if (o.obs) ev.trace_observation_point = OBS_POINT_NAMES[o.obs];
    const f = ctx.result.service;
    if (f) ev.destination_service = { name: f.name, namespace: f.namespace };
    Object.assign(ev, o.extra ?? {});
    ctx.result.events.push(ev);
    return ev;
  }

  /* ------------------------------------------------------------------------------------------------ */
  /* Running packets. */

  protected run(ctx: Ctx | undefined, node: string, entry: EntryPoint, frame: Uint8Array, srcIdentity: number, reply: boolean, tunnel?: TunnelKey): RunResult {
    const rt = this.nodes.get(node)!;
    const r = rt.dp.run(entry, frame, { now: this.now(), srcIdentity, tunnel });
    if (ctx) {
      const d = decodeFrame(frame)!;
      const o = decodeFrame(r.output);
      // A later fragment has no ports (decodeFrame would read payload there): addresses only.
      const frag = ipv4FragmentOf(frame);
      const inner = icmpErrorInner(frame);
      if (frag?.offset) {
        d.sport = d.dport = 0;
        if (o) o.sport = o.dport = 0;
      }
      ctx.result.steps.push({
        node,
        entry,
        packet: frag?.offset ? `${d.src} -> ${d.dst} ${this.summaryOf(d)}` : `${hostPort(d.src, d.sport)} -> ${hostPort(d.dst, d.dport)} ${this.summaryOf(d)}`,
        reply,
        srcIdentityIn: srcIdentity,
        result: { verdict: r.verdict, dropReason: r.dropReason },
        trace: r.trace,
        output: o ? { src: o.src, dst: o.dst, sport: o.sport, dport: o.dport } : { src: d.src, dst: d.dst, sport: d.sport, dport: d.dport },
        frame: r.output,
        ...(frag ? { fragment: frag } : {}),
        ...(inner ? { icmpError: { type: inner.type, code: inner.code, before: innerOf(inner), after: innerOf(icmpErrorInner(r.output) ?? inner) } } : {}),
        ...(entry === "fromOverlay" ? { tunnel } : r.tunnel ? { tunnel: r.tunnel } : {}),
      });
    }
    return r;
  }

  protected outcome(node: string, direction: "ingress" | "egress", t: TraceRecord, r: RunResult, endpoint: string | undefined): DirectionOutcome {
    const cookie = direction === "egress" ? t.egressCookie : t.ingressCookie;
    const mt = direction === "egress" ? t.egressMatchType : t.ingressMatchType;
    const rules = this.policyAt(node).provenance.get(cookie) ?? [];
    const remote = direction === "egress" ? t.dstIdentity : t.srcIdentity;
    const dropped = r.verdict === C.CTX_ACT_DROP;
    let reason: string;
    if (dropped) {
      const text = dropReasonText(r.dropReason);
      if (r.dropReason === C.DROP_POLICY && !rules.length) reason = `${text}: ${endpoint ?? node} is selected by a policy in ${direction}, but no entry allows identity ${remote} on this port (default deny)`;
      else reason = `${text}${rules.length ? `: ${describeRules(rules)}` : ""}`;
    } else if (!rules.length) reason = "allowed";
    else if (rules.every((p) => p.kind === "derived" && p.element.startsWith("allow-any"))) reason = `no policy selects ${endpoint ?? "the endpoint"} in ${direction}: allowed`;
    else reason = `allowed by ${describeRules(rules)}`;
    if (!dropped && t.proxyPort) reason += `; redirected to the L7 proxy on port ${t.proxyPort}`;
    return {
      verdict: dropped ? "denied" : "allowed",
      node,
      endpoint,
      remoteIdentity: remote,
      matchType: MATCH_TYPE_NAMES[mt] ?? String(mt),
      cookie,
      rules,
      dropReason: dropped ? r.dropReason : 0,
      reason,
      proxyPort: t.proxyPort || undefined,
    };
  }

  /** Emits events for one entry-point result; returns false when the packet was dropped. */
  protected report(ctx: Ctx, node: string, entry: EntryPoint, frame: Uint8Array, r: RunResult, reply: boolean): boolean {
    const t = r.trace;
    const ids = { src: t.srcIdentity, dst: t.dstIdentity };
    // The host firewall judged the packet at the node's device (core/host-firewall.ts): the host endpoint's
    // egress at toNetwork, its ingress at fromNetwork.
    // In tunnel mode a pod's packet for another node arrives at that node's fromOverlay (H10).
    const hostFw = (entry === "toNetwork" && (t.traceFlags & C.TRACE_F_EGRESS_CHECKED) !== 0) || (entry === "fromNetwork" && (t.traceFlags & C.TRACE_F_INGRESS_CHECKED) !== 0) ||
      (entry === "fromOverlay" && t.dstIdentity === C.ID_HOST && (t.traceFlags & C.TRACE_F_INGRESS_CHECKED) !== 0);
    const egress = entry === "fromEndpoint" || (hostFw && entry === "toNetwork");
    const toPod = entry === "toEndpoint" || entry === "fromOverlay" || (hostFw && entry === "fromNetwork");
    const dirName: FlowEvent["traffic_direction"] = toPod ? "INGRESS" : "EGRESS";
    const checked = egress ? (t.traceFlags & C.TRACE_F_EGRESS_CHECKED) !== 0 : toPod && (t.traceFlags & C.TRACE_F_INGRESS_CHECKED) !== 0;
    const cookie = egress ? t.egressCookie : t.ingressCookie;
    const matchType = egress ? t.egressMatchType : t.ingressMatchType;
    const dropped = r.verdict === C.CTX_ACT_DROP;
    const podKey = (ip: string) => {
      const p = this.places.podByIp.get(ip);
      return p ? this.podName(p) : this.initByIp.has(ip) ? `the ${INIT_ENDPOINT} endpoint` : undefined;
    };
    const d = decodeFrame(frame)!;
    if (!reply && (entry !== "fromNetwork" || hostFw) && (t.ctState === C.CT_NEW || dropped)) {
      const side = egress ? "egress" : "ingress";
      const o = this.outcome(node, side, t, r, hostFw ? `host ${node}` : egress ? podKey(d.src) : podKey(d.dst));
      if (side === "egress") ctx.result.egress ??= o;
      else ctx.result.ingress ??= o;
    }
    if (entry === "fromEndpoint") this.event(ctx, node, frame, ids, { event: "from-endpoint", verdict: "FORWARDED", type: EVENT_TRACE, reply, obs: "from-endpoint" });
    if (entry === "fromNetwork") this.event(ctx, node, frame, ids, { event: "from-network", verdict: "FORWARDED", type: EVENT_TRACE, reply, obs: "from-network" });
    if (entry === "toNetwork" && !dropped) this.event(ctx, node, r.output, ids, { event: "to-network", verdict: "FORWARDED", type: EVENT_TRACE, reply, obs: "to-network", direction: "EGRESS" });
    if (checked && (t.ctState === C.CT_NEW || dropped) && (!dropped || POLICY_DROPS.has(r.dropReason))) {
      const refs = this.policyRefs(cookie, node);
      const key = `${egress ? "egress" : "ingress"}_${dropped ? "denied" : "allowed"}_by` as const;
      this.event(ctx, node, frame, ids, {
        event: `policy-verdict:${MATCH_TYPE_NAMES[matchType] ?? matchType} ${dirName}`,
        verdict: dropped ? "DROPPED" : r.verdict === C.CTX_ACT_REDIRECT ? "REDIRECTED" : "FORWARDED",
        type: EVENT_POLICY_VERDICT,
        direction: dirName,
        reply,
        extra: { policy_match_type: matchType, ...(refs.length ? { [key]: refs } : {}), ...(dropped ? { drop_reason: r.dropReason, drop_reason_desc: dropReasonHubbleName(r.dropReason) } : {}) },
      });
    }
    if (dropped) {
      this.event(ctx, node, frame, ids, {
        event: dropReasonText(r.dropReason),
        verdict: "DROPPED",
        type: EVENT_DROP,
        direction: dirName,
        reply,
        extra: { drop_reason: r.dropReason, drop_reason_desc: dropReasonHubbleName(r.dropReason) },
      });
      ctx.result.dropReason = r.dropReason;
      ctx.result.verdict = "denied";
      ctx.stopped = true;
      return false;
    }
    if (r.verdict === C.CTX_ACT_REDIRECT) {
      const outFrame = r.output;
      this.event(ctx, node, outFrame, ids, { event: "to-proxy", verdict: "FORWARDED", type: EVENT_TRACE, direction: dirName, reply, obs: "to-proxy", extra: { proxy_port: t.proxyPort } });
      ctx.redirect ??= { port: t.proxyPort, direction: egress ? "egress" : "ingress", remoteIdentity: egress ? t.dstIdentity : t.srcIdentity, node };
    }
    return true;
  }
}

function dropReasonHubbleName(code: number): string {
  return dropReasonHubble(code);
}

function innerOf(i: IcmpInner): IcmpInner {
  return { src: i.src, dst: i.dst, proto: i.proto, sport: i.sport, dport: i.dport };
}
