// Calls on a Hubble Observer client that @grpc/proto-loader generated from observer.proto: every response
// of a GetFlows stream until it ends, and a unary call as a promise.
import type * as grpc from "@grpc/grpc-js";

export type ObserverTestClient = grpc.Client & Record<string, (...a: unknown[]) => unknown>;

/** Every response of GetFlows(req) until the stream ends; rejects with the stream's error status. */
export function getFlows<R>(c: ObserverTestClient, req: Record<string, unknown>): Promise<R[]> {
  return new Promise((resolve, reject) => {
    const out: R[] = [];
    const call = c.GetFlows!(req) as grpc.ClientReadableStream<R>;
    call.on("data", (r: R) => out.push(r));
    call.on("error", reject);
    call.on("end", () => resolve(out));
  });
}

/** A unary call with an empty request (ServerStatus, GetNodes). */
export const unary = <T>(c: ObserverTestClient, method: string): Promise<T> => new Promise((resolve, reject) => (c[method] as (r: object, cb: (e: Error | null, v: T) => void) => void)({}, (e, v) => (e ? reject(e) : resolve(v))));
