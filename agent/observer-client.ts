/*
 * A client of a Hubble Observer gRPC API (an agent's hubble.sock or TCP listener, `ciliate relay`, a Cilium
 * node's Hubble): GetFlows as a stream of GetFlowsResponse objects in proto3 JSON (RFC 3339 times, enum
 * names, bare wrapper values: what `hubble observe -o json` prints). `ciliate observe --server` and
 * `ciliate ui --server` read flows through it. gRPC is loaded on first use, so commands that never dial
 * start without it.
 */
import type * as grpc from "@grpc/grpc-js";
import type { HubbleFlowJson } from "../host/hubble-flow-event.ts";
import type { ObserverClient } from "./relay-peers.ts";

export interface FlowsResponseJson {
  flow?: HubbleFlowJson;
  node_name?: string;
  time?: string;
  node_status?: { state_change?: string; node_names?: string[]; message?: string };
}

/** Why a GetFlows call ended in error: the server could not be reached, or it refused the request. */
export class ObserverCallError extends Error {
  constructor(
    readonly unreachable: boolean,
    readonly details: string,
  ) {
    super(details);
  }
}

export interface FlowStream {
  /** Resolves when the server ends the stream or it is cancelled; rejects with an ObserverCallError. */
  done: Promise<void>;
  cancel(): void;
}

/** Opens GetFlows(`request`) on `target` (unix:///path or host:port, checked by the caller); `onResponse` gets every response. */
export async function streamFlows(target: string, request: Record<string, unknown>, onResponse: (r: FlowsResponseJson) => void): Promise<FlowStream> {
  const [grpcJs, { LOADER_OPTIONS, loadObserverPackage }] = await Promise.all([import("@grpc/grpc-js"), import("./observer-grpc.ts")]);
  const pkg = loadObserverPackage({ ...LOADER_OPTIONS, oneofs: false, json: true });
  const client = new pkg.observer.Observer(target, grpcJs.credentials.createInsecure()) as unknown as ObserverClient;
  const call = client.GetFlows!(request) as grpc.ClientReadableStream<FlowsResponseJson>;
  const done = new Promise<void>((resolve, reject) => {
    call.on("data", onResponse);
    call.on("end", resolve);
    call.on("error", (e: grpc.ServiceError) => {
      if (e.code === grpcJs.status.CANCELLED) resolve();
      else reject(new ObserverCallError(e.code === grpcJs.status.UNAVAILABLE, e.details));
    });
  }).finally(() => client.close());
  return { done, cancel: () => call.cancel() };
}
