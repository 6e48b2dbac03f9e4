/*
 * What the simulator returns for a flow (sim/flow-player.ts): its verdict, events and the core's steps,
 * each direction's policy outcome and the L7 proxy's; and the state of one connection while it is played.
 */
import type { TraceRecord } from "../host/codecs.gen.ts";
import * as C from "../host/constants.gen.ts";
import type { EntryPoint, TunnelKey } from "../host/datapath.ts";
import type { DnsRule, L7Verdict, Provenance } from "../policy/index.ts";
import type { DnsSpec, HttpSpec, KafkaSpec, TlsSpec } from "../node/cluster.ts";
import type { FlowEvent } from "../host/flows.ts";
import type { Place } from "./places.ts";

/** One invocation of a core entry point, for `trace`. */
export interface Step {
  node: string;
  entry: EntryPoint;
  packet: string;
  reply: boolean;
  srcIdentityIn: number;
  result: { verdict: number; dropReason: number };
  trace: TraceRecord;
  output: { src: string; dst: string; sport: number; dport: number };
  /** The frame after the program ran. */
  frame: Uint8Array;
  /** The packet was an IPv4 fragment: its identification, byte offset and more-fragments flag. */
  fragment?: { id: number; offset: number; more: boolean };
  /** The tunnel key: set by fromEndpoint (encapsulated towards another node), or carried into fromOverlay. */
  tunnel?: TunnelKey;
  /** An ICMPv4 error: its type and code, and the packet it embeds before and after the program ran. */
  icmpError?: { type: number; code: number; before: IcmpInner; after: IcmpInner };
}

/** The packet an ICMP error embeds (for an ICMP echo, its identifier as `sport`). */
export interface IcmpInner {
  src: string;
  dst: string;
  proto: number;
  sport: number;
  dport: number;
}

export interface DirectionOutcome {
  verdict: "allowed" | "denied";
  node: string;
  endpoint?: string;
  remoteIdentity: number;
  matchType: string;
  cookie: number;
  rules: Provenance[];
  dropReason: number;
  reason: string;
  proxyPort?: number;
}

export interface L7Outcome {
  protocol: L7Verdict["protocol"];
  verdict: "allowed" | "denied";
  /** HTTP status the client sees (200 passed on, 403 from the proxy). */
  status?: number;
  /** Kafka error code of the proxy's answer (0 passed on, 29 denied). */
  errorCode?: number;
  direction: "ingress" | "egress";
  proxyPort: number;
  reason: string;
  rule?: NonNullable<L7Verdict["rule"]> & { dns?: DnsRule };
  /** DNS: the response code the client gets (0 NOERROR, 5 REFUSED by the proxy). */
  rcode?: number;
  /** DNS: the addresses of the answer, learned into the FQDN cache. */
  learned?: string[];
}

export interface FlowResult {
  name: string;
  verdict: "allowed" | "denied";
  reason: string;
  events: FlowEvent[];
  steps: Step[];
  source: Place;
  destination: Place;
  service?: { namespace: string; name: string; frontend: string; kind: string };
  backend?: { ip: string; port: number; pod?: string };
  egress?: DirectionOutcome;
  ingress?: DirectionOutcome;
  l7?: L7Outcome;
  dropReason: number;
  srcIdentity: number;
  dstIdentity: number;
}

export interface Ctx {
  result: FlowResult;
  flowName: string;
  http?: HttpSpec;
  kafka?: KafkaSpec;
  tls?: TlsSpec;
  dns?: DnsSpec;
  stopped: boolean;
  /** The node that SNATed this connection — its fromNetwork towards a remote backend, or its toNetwork
   * masquerading a pod's flow to the outside — where its replies go back. */
  snatNode?: string;
  /** Proxy port and direction of an L7 redirect seen on the way. */
  redirect?: { port: number; direction: "ingress" | "egress"; remoteIdentity: number; node: string };
  l7Denied: boolean;
}

export const POLICY_DROPS = new Set([C.DROP_POLICY, C.DROP_POLICY_DENY, 189]);
