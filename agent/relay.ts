/*
 * The relay: one Hubble Observer API in front of several nodes' (what Hubble Relay does, cilium/cilium
 * pkg/hubble/relay/observer/server.go), so a cluster is observed from one place with the same clients.
 *
 *   GetFlows      forwards the request to every peer it can reach and merges their flows in time order
 *                 through a bounded sort buffer (agent/relay-sort.ts). As Hubble Relay: `number` counts per
 *                 node (the last 20 of each node with number 20), the stream opens with node_status events
 *                 naming the nodes connected and unavailable, and a peer whose stream fails is reported
 *                 with a node_status event (NODE_UNAVAILABLE when it cannot be reached, else NODE_ERROR)
 *                 while the others go on. Following, a peer that comes back (or was down when the request
 *                 began) joins the stream at the next peer update (every 2 s, Hubble's
 *                 PeerUpdateInterval) from just after the last flow it sent in this request. A request
 *                 ciliate cannot answer exactly (a filter field it does not implement, first with follow,
 *                 number with since/until) is refused with INVALID_ARGUMENT before any peer is asked.
 *   ServerStatus  the peers' counters summed (num_flows, max_flows, seen_flows, flows_rate), the longest
 *                 uptime, num_connected_nodes and num_unavailable_nodes, and the first 10 unavailable
 *                 nodes' names, as Hubble Relay's.
 *   GetNodes      every peer with its state (NODE_CONNECTED, NODE_UNAVAILABLE when it cannot be reached,
 *                 NODE_ERROR when it answers with an error) and, when connected, its counters.
 *   GetAgentEvents, GetDebugEvents: UNIMPLEMENTED, as Hubble Relay's.
 */
import { hostname } from "node:os";
import * as grpc from "@grpc/grpc-js";
import { checkFlowsRequest, refuse, serveObserverService, type GetFlowsRequest, type ObserverServer } from "./observer-grpc.ts";
import { RelayPeer, type PeerOptions, type PeerStatus } from "./relay-peers.ts";
import { SortBuffer, timestampNs, type TimestampObject } from "./relay-sort.ts";

export interface RelayOptions extends PeerOptions {
  /** Flows held for sorting per request (Hubble Relay's --sort-buffer-len-max, 100). */
  sortBufferLenMax: number;
  /** The sort window when following (Hubble Relay's --sort-buffer-drain-timeout, 1 s). */
  sortBufferDrainTimeoutMs: number;
  /** How often a following request looks for peers that came back (ms; Hubble Relay's 2 s). */
  peerUpdateIntervalMs: number;
  version: string;
}

export const RELAY_DEFAULTS: Omit<RelayOptions, "version"> = { sortBufferLenMax: 100, sortBufferDrainTimeoutMs: 1000, peerUpdateIntervalMs: 2000, retryTimeoutMs: 30_000, dialTimeoutMs: 5000 };

/** Hubble Relay reports at most this many unavailable nodes by name in ServerStatus. */
const UNAVAILABLE_NAMES_MAX = 10;

interface FlowsResponse {
  flow?: { time?: TimestampObject };
  node_status?: unknown;
  time?: TimestampObject;
}

const nowTimestamp = (): TimestampObject => {
  const ms = Date.now();
  return { seconds: String(Math.floor(ms / 1000)), nanos: (ms % 1000) * 1e6 };
};
const isError = (v: unknown): v is grpc.ServiceError => v instanceof Error;
const sum = (xs: (string | undefined)[]) => String(xs.reduce((a, x) => a + BigInt(x ?? 0), 0n));

export class Relay {
  readonly peers: RelayPeer[];
  private readonly startedAt = Date.now();
  private readonly name = hostname();

  constructor(
    targets: string[],
    readonly opts: RelayOptions,
  ) {
    this.peers = targets.map((t) => new RelayPeer(t, opts));
  }

  close(): void {
    for (const p of this.peers) p.close();
  }

  handlers(): grpc.UntypedServiceImplementation {
    return {
      GetFlows: (call: grpc.ServerWritableStream<GetFlowsRequest, unknown>) => this.getFlows(call),
      ServerStatus: (_call: grpc.ServerUnaryCall<unknown, unknown>, cb: grpc.sendUnaryData<unknown>) => void this.serverStatus().then((r) => cb(null, r)),
      GetNodes: (_call: grpc.ServerUnaryCall<unknown, unknown>, cb: grpc.sendUnaryData<unknown>) => void this.nodes().then((r) => cb(null, r)),
      GetAgentEvents(call: grpc.ServerWritableStream<unknown, unknown>) {
        call.emit("error", { code: grpc.status.UNIMPLEMENTED, details: "the relay has no agent event stream (as Hubble Relay)" });
      },
      GetDebugEvents(call: grpc.ServerWritableStream<unknown, unknown>) {
        call.emit("error", { code: grpc.status.UNIMPLEMENTED, details: "the relay has no debug event stream (as Hubble Relay)" });
      },
    };
  }

  private async statuses(): Promise<(PeerStatus | grpc.ServiceError | undefined)[]> {
    return Promise.all(this.peers.map((p) => (p.available ? p.status() : undefined)));
  }

  private async serverStatus(): Promise<Record<string, unknown>> {
    const st = await this.statuses();
    const ok = st.filter((s): s is PeerStatus => s !== undefined && !isError(s));
    const down = this.peers.filter((_p, i) => st[i] === undefined || isError(st[i])).map((p) => p.name);
    const uptime = ok.reduce((a, s) => (BigInt(s.uptime_ns ?? 0) > a ? BigInt(s.uptime_ns ?? 0) : a), 0n);
    return {
      num_flows: sum(ok.map((s) => s.num_flows)),
      max_flows: sum(ok.map((s) => s.max_flows)),
      seen_flows: sum(ok.map((s) => s.seen_flows)),
      // Summing uptimes means nothing: the oldest peer's, as Hubble Relay reports.
      uptime_ns: String(uptime),
      flows_rate: ok.reduce((a, s) => a + (s.flows_rate ?? 0), 0),
      version: this.opts.version,
      num_connected_nodes: { value: this.peers.length - down.length },
      num_unavailable_nodes: { value: down.length },
      unavailable_nodes: down.slice(0, UNAVAILABLE_NAMES_MAX),
    };
  }

  private async nodes(): Promise<Record<string, unknown>> {
    const st = await this.statuses();
    return {
      nodes: this.peers.map((p, i) => {
        const s = st[i];
        const base = { name: p.name, address: p.target, tls: { enabled: false } };
        if (s === undefined) return { ...base, state: "NODE_UNAVAILABLE" };
        if (isError(s)) return { ...base, state: s.code === grpc.status.UNAVAILABLE || s.code === grpc.status.DEADLINE_EXCEEDED ? "NODE_UNAVAILABLE" : "NODE_ERROR" };
        return { ...base, state: "NODE_CONNECTED", version: s.version, uptime_ns: s.uptime_ns, num_flows: s.num_flows, max_flows: s.max_flows, seen_flows: s.seen_flows };
      }),
    };
  }

  private getFlows(call: grpc.ServerWritableStream<GetFlowsRequest, unknown>): void {
    const req = call.request;
    try {
      checkFlowsRequest(req);
    } catch (e) {
      return refuse(call, e);
    }
    const o = this.opts;
    // With until, a follow ends when every peer has passed it; without, it runs until the client leaves.
    const endless = Boolean(req.follow) && !req.until;
    const buffer = new SortBuffer<FlowsResponse>(o.sortBufferLenMax);
    const streams = new Map<RelayPeer, grpc.ClientReadableStream<FlowsResponse>>();
    const sending = new Set<string>();
    const lastMs = new Map<RelayPeer, number>();
    const timers: NodeJS.Timeout[] = [];
    let done = false;

    let paused = false;
    const write = (r: unknown) => {
      if (done) return;
      // The client reads slower than the peers send: hold the peers (gRPC flow control) until it drains.
      if (!call.write(r) && !paused) {
        paused = true;
        for (const s of streams.values()) s.pause();
        call.once("drain", () => {
          paused = false;
          streams.forEach((s) => s.resume());
        });
      }
    };
    const status = (state: string, names: string[], message?: string) => {
      if (names.length) write({ node_name: this.name, time: nowTimestamp(), node_status: { state_change: state, node_names: names, ...(message ? { message } : {}) } });
    };
    const stop = () => {
      done = true;
      timers.forEach(clearInterval);
      for (const s of streams.values()) s.cancel();
      streams.clear();
    };
    const settle = () => {
      for (const r of buffer.ready(sending)) write(r);
      if (!endless && sending.size === 0 && !done) {
        stop();
        call.end();
      }
    };
    const closed = (p: RelayPeer, s: grpc.ClientReadableStream<FlowsResponse>) => {
      if (streams.get(p) !== s) return;
      streams.delete(p);
      sending.delete(p.target);
      settle();
    };
    const open = (p: RelayPeer, r: GetFlowsRequest) => {
      const s = p.client.GetFlows!(r) as grpc.ClientReadableStream<FlowsResponse>;
      if (paused) s.pause();
      streams.set(p, s);
      sending.add(p.target);
      s.on("data", (resp: FlowsResponse) => {
        if (done) return;
        // A relay behind this one says which of its nodes answer: passed on as it comes.
        if (!resp.flow) return void write(resp);
        const ns = timestampNs(resp.time ?? resp.flow.time);
        lastMs.set(p, Number(ns / 1_000_000n));
        buffer.push(p.target, ns, resp);
        for (const x of buffer.ready(sending)) write(x);
      });
      s.on("error", (e: grpc.ServiceError) => {
        // Cancelled by this request's end (stop sets done first), or a failure of the peer's.
        if (done) return closed(p, s);
        p.failed(e);
        status(e.code === grpc.status.UNAVAILABLE ? "NODE_UNAVAILABLE" : "NODE_ERROR", [p.name], e.details);
        closed(p, s);
      });
      s.on("end", () => closed(p, s));
    };

    const connected: string[] = [];
    const unavailable: string[] = [];
    for (const p of this.peers) {
      if (!p.available) {
        unavailable.push(p.name);
        continue;
      }
      connected.push(p.name);
      open(p, req);
    }
    status("NODE_CONNECTED", connected);
    status("NODE_UNAVAILABLE", unavailable);
    call.on("cancelled", stop);
    call.on("close", stop);
    if (req.follow) {
      const windowNs = BigInt(o.sortBufferDrainTimeoutMs) * 1_000_000n;
      timers.push(setInterval(() => buffer.olderThan(BigInt(Date.now()) * 1_000_000n - windowNs).forEach(write), o.sortBufferDrainTimeoutMs));
      // A peer that was down, or whose stream failed, joins again once it answers.
      timers.push(
        setInterval(() => {
          for (const p of this.peers) {
            if (streams.has(p) || !p.connected) continue;
            const last = lastMs.get(p);
            // From just after the last flow it sent (`since` is read to the millisecond); never streamed: the request as asked.
            const r: GetFlowsRequest = last === undefined ? req : { follow: true, whitelist: req.whitelist, blacklist: req.blacklist, until: req.until, since: { seconds: String(Math.floor((last + 1) / 1000)), nanos: ((last + 1) % 1000) * 1e6 } };
            open(p, r);
            status("NODE_CONNECTED", [p.name]);
          }
        }, o.peerUpdateIntervalMs),
      );
    }
    settle();
  }
}

/** A relay over `targets`, served on a unix socket and/or TCP (agent/observer-grpc.ts serveObserverService). */
export async function serveRelay(targets: string[], opts: RelayOptions, socketPath: string | undefined, tcp: string | undefined): Promise<{ relay: Relay; server: ObserverServer }> {
  const relay = new Relay(targets, opts);
  try {
    const server = await serveObserverService(() => relay.handlers(), socketPath, tcp);
    return { relay, server };
  } catch (e) {
    relay.close();
    throw e;
  }
}
