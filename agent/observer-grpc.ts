/*
 * Hubble's Observer gRPC API (host/proto/observer/observer.proto) served from the agent's flow ring, so the
 * Hubble CLI and anything generated from observer.proto can read a ciliate node as it reads a Cilium one
 * (Cilium serves it from pkg/hubble/observer/local_observer.go on unix:///var/run/cilium/hubble.sock and,
 * with --hubble-listen-address, on TCP).
 *
 *   GetFlows      the flows held (last `number`, or first `number` with `first`, or all; `since`/`until`
 *                 bound them by time), then with `follow` every new one until the client cancels; whitelist
 *                 and blacklist are flow.FlowFilter lists applied as the flow exporter applies them
 *                 (agent/flow-export.ts). A filter field ciliate does not implement is refused with
 *                 INVALID_ARGUMENT rather than ignored, so a filter never returns more than it says.
 *   ServerStatus  flows held, ring capacity, flows seen, uptime, version.
 *   GetNodes      this node (the relay, agent/relay.ts, lists every node it reaches).
 *   GetAgentEvents, GetDebugEvents: UNIMPLEMENTED (ciliate's agent has no such event streams).
 */
import { chmodSync, existsSync, mkdirSync, unlinkSync } from "node:fs";
import { dirname } from "node:path";
import * as grpc from "@grpc/grpc-js";
import * as protoLoader from "@grpc/proto-loader";
import { hubbleFlow, type FlowEvent } from "../host/flows.ts";
import { fromJsonForm, hubbleRoot, parseTimestamp, PROTO_DIR, PROTO_FILES } from "../host/hubble-proto.ts";
import { exported, filterProblem, type ExportFilter } from "./flow-export.ts";
import type { FlowStore } from "./flows.ts";

/** What the Observer serves: the node's flow ring and who it is. */
export interface ObserverSource {
  store: FlowStore;
  nodeName: string;
  version: string;
  startedAt: Date;
  /** The address clients reach this observer on, for GetNodes. */
  address: string;
}

/** Reading options shared by the server and test clients: .proto field names, enum names, 64-bit as strings. */
export const LOADER_OPTIONS: protoLoader.Options = { keepCase: true, longs: String, enums: String, defaults: false, oneofs: true, includeDirs: [PROTO_DIR] };

interface ObserverPackage {
  observer: { Observer: grpc.ServiceClientConstructor };
}

/** The observer package loaded from host/proto (the Observer service and its client constructor). */
export function loadObserverPackage(options: protoLoader.Options = LOADER_OPTIONS): ObserverPackage {
  // Registers the JSON forms of Timestamp and the wrappers before proto-loader builds its types.
  hubbleRoot();
  return grpc.loadPackageDefinition(protoLoader.loadSync(PROTO_FILES, options)) as unknown as ObserverPackage;
}

export interface Timestamp {
  seconds?: string | number;
  nanos?: number;
}
export interface GetFlowsRequest {
  number?: string | number;
  first?: boolean;
  follow?: boolean;
  whitelist?: unknown[];
  blacklist?: unknown[];
  since?: Timestamp;
  until?: Timestamp;
}

const ms = (t: Timestamp) => Number(t.seconds ?? 0) * 1000 + Math.floor((t.nanos ?? 0) / 1e6);
const flowMs = (f: FlowEvent) => {
  const t = parseTimestamp(f.time);
  return t.seconds * 1000 + Math.floor(t.nanos / 1e6);
};

/** A GetFlowsResponse as proto-loader writes it: the flow in Hubble's shape, Timestamps as {seconds, nanos}. */
export function flowResponse(f: FlowEvent): Record<string, unknown> {
  const T = hubbleRoot().lookupType("observer.GetFlowsResponse");
  return fromJsonForm(T, { flow: hubbleFlow(f), node_name: f.node_name, time: f.time }) as Record<string, unknown>;
}

/** A GetFlows request the server refuses with INVALID_ARGUMENT; the message names the field. */
export class BadRequest extends Error {}

/** The request's filters, checked; throws BadRequest naming the first problem. */
function filtersOf(list: unknown[] | undefined, name: string): ExportFilter[] {
  return (list ?? []).map((f, i) => {
    const problem = filterProblem(f, `${name}[${i}]`);
    if (problem) throw new BadRequest(problem);
    return f as ExportFilter;
  });
}

/**
 * The request's whitelist and blacklist, after checking what ciliate can answer exactly: every filter field
 * understood, `first` not with `follow`, `number` not with `since`/`until`. Throws BadRequest naming the
 * first problem.
 */
export function checkFlowsRequest(req: GetFlowsRequest): { allow: ExportFilter[]; deny: ExportFilter[] } {
  const allow = filtersOf(req.whitelist, "whitelist");
  const deny = filtersOf(req.blacklist, "blacklist");
  if (req.first && req.follow) throw new BadRequest("first and follow cannot be combined (observer.proto GetFlowsRequest)");
  if (Number(req.number ?? 0) && (req.since || req.until)) throw new BadRequest("number cannot be combined with since/until (observer.proto GetFlowsRequest)");
  return { allow, deny };
}

/** Ends a server stream with INVALID_ARGUMENT (grpc-js ends a server stream with a status through an "error" event). */
export function refuse(call: grpc.ServerWritableStream<unknown, unknown>, e: unknown): void {
  if (!(e instanceof BadRequest)) throw e;
  call.emit("error", { code: grpc.status.INVALID_ARGUMENT, details: e.message });
}

/** The flows a GetFlows request asks for from what is held now (Hubble's number/first/since/until rules). */
export function selectFlows(held: readonly FlowEvent[], req: GetFlowsRequest, allow: ExportFilter[], deny: ExportFilter[]): FlowEvent[] {
  const number = Number(req.number ?? 0);
  checkFlowsRequest(req);
  let out = held.filter((f) => exported(f, allow, deny));
  if (req.since) out = out.filter((f) => flowMs(f) >= ms(req.since!));
  if (req.until) out = out.filter((f) => flowMs(f) <= ms(req.until!));
  if (number) out = req.first ? out.slice(0, number) : out.slice(-number);
  // Following without a number or a start time starts from now, as `hubble observe --follow` does.
  else if (req.follow && !req.since) out = [];
  return out;
}

/** The Observer service's handlers over one source. */
export function observerHandlers(src: ObserverSource): grpc.UntypedServiceImplementation {
  const uptimeNs = () => String(BigInt(Date.now() - src.startedAt.getTime()) * 1_000_000n);
  return {
    GetFlows(call: grpc.ServerWritableStream<GetFlowsRequest, unknown>) {
      const req = call.request;
      let allow: ExportFilter[], deny: ExportFilter[], backlog: FlowEvent[];
      try {
        ({ allow, deny } = checkFlowsRequest(req));
        backlog = selectFlows(src.store.all(), req, allow, deny);
      } catch (e) {
        return refuse(call, e);
      }
      for (const f of backlog) call.write(flowResponse(f));
      if (!req.follow) return void call.end();
      const untilMs = req.until ? ms(req.until) : Infinity;
      const unsubscribe = src.store.subscribe((f) => {
        if (!exported(f, allow, deny)) return;
        if (flowMs(f) > untilMs) {
          unsubscribe();
          return void call.end();
        }
        call.write(flowResponse(f));
      });
      call.on("cancelled", unsubscribe);
      call.on("close", unsubscribe);
    },
    ServerStatus(_call: grpc.ServerUnaryCall<unknown, unknown>, cb: grpc.sendUnaryData<unknown>) {
      cb(null, { num_flows: String(src.store.size), max_flows: String(src.store.capacity), seen_flows: String(src.store.seen), uptime_ns: uptimeNs(), num_connected_nodes: { value: 1 }, num_unavailable_nodes: { value: 0 }, version: src.version });
    },
    GetNodes(_call: grpc.ServerUnaryCall<unknown, unknown>, cb: grpc.sendUnaryData<unknown>) {
      cb(null, { nodes: [{ name: src.nodeName, version: src.version, address: src.address, state: "NODE_CONNECTED", tls: { enabled: false }, uptime_ns: uptimeNs(), num_flows: String(src.store.size), max_flows: String(src.store.capacity), seen_flows: String(src.store.seen) }] });
    },
    GetAgentEvents(call: grpc.ServerWritableStream<unknown, unknown>) {
      call.emit("error", { code: grpc.status.UNIMPLEMENTED, details: "ciliate's agent has no agent event stream" });
    },
    GetDebugEvents(call: grpc.ServerWritableStream<unknown, unknown>) {
      call.emit("error", { code: grpc.status.UNIMPLEMENTED, details: "ciliate's datapath has no debug event stream" });
    },
  };
}

export interface ObserverServer {
  /** Addresses bound, as gRPC targets (unix:///…, host:port). */
  addresses: string[];
  close(): Promise<void>;
}

/**
 * Serves the Observer on a unix socket (mode 0600, as the agent API: only root can read the flows) and,
 * when `tcp` is given (`host:port`, Cilium's --hubble-listen-address), on TCP without TLS. Rejects with a
 * one-line message when an address cannot be bound.
 */
export async function serveObserver(src: Omit<ObserverSource, "address">, socketPath: string, tcp?: string): Promise<ObserverServer> {
  return serveObserverService((address) => observerHandlers({ ...src, address }), socketPath, tcp);
}

/**
 * Serves Observer handlers (the agent's, or the relay's) on a unix socket (mode 0600 in a 0700 directory
 * created when missing), on TCP without TLS, or both; at least one must be given. `handlers` learns the
 * address clients reach it on (the TCP one when there is one). Rejects with a one-line message when an
 * address cannot be bound.
 */
export async function serveObserverService(handlers: (address: string) => grpc.UntypedServiceImplementation, socketPath: string | undefined, tcp?: string): Promise<ObserverServer> {
  const pkg = loadObserverPackage();
  const server = new grpc.Server();
  const addresses = [...(socketPath ? [`unix://${socketPath}`] : []), ...(tcp ? [tcp] : [])];
  if (!addresses.length) throw new Error("the Observer API needs a unix socket or a TCP address to serve on");
  server.addService(pkg.observer.Observer.service, handlers(tcp ?? addresses[0]!));
  const bind = (addr: string) =>
    new Promise<number>((resolve, reject) => server.bindAsync(addr, grpc.ServerCredentials.createInsecure(), (err, port) => (err ? reject(new Error(`cannot serve the Hubble Observer API on ${addr}: ${err.message}`)) : resolve(port))));
  try {
    if (socketPath) {
      if (!existsSync(dirname(socketPath))) mkdirSync(dirname(socketPath), { recursive: true, mode: 0o700 });
      if (existsSync(socketPath)) unlinkSync(socketPath);
      // The socket is created 0600 (umask 0177 while it is bound): no moment at which another user could connect.
      const umask = process.umask(0o177);
      try {
        await bind(addresses[0]!);
      } finally {
        process.umask(umask);
      }
      chmodSync(socketPath, 0o600);
    }
    if (tcp) {
      const port = await bind(tcp);
      addresses[addresses.length - 1] = tcp.replace(/:\d+$/, `:${port}`);
    }
  } catch (e) {
    // Nothing stays bound when one address fails.
    server.forceShutdown();
    throw e;
  }
  return {
    addresses,
    close: () =>
      new Promise<void>((resolve) => {
        server.tryShutdown(() => resolve());
        // Followers never end on their own: cut them after a short grace.
        setTimeout(() => server.forceShutdown(), 500).unref();
      }),
  };
}
