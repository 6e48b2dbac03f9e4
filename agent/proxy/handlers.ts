/*
 * The protocol handlers of the node's proxy, by the protocol a listener speaks (ProxyListener's protocol in
 * policy/compile.ts). The proxy manager serves a listener only when its protocol has a handler here; any
 * other listener's redirected traffic is dropped, never passed.
 */
import { MinimalHttpHandler } from "./http-minimal.ts";
import type { L7Protocol, ProxyHandler } from "./types.ts";

export function createProtocolHandlers(): Partial<Record<L7Protocol, ProxyHandler>> {
  return { http: new MinimalHttpHandler() };
}
