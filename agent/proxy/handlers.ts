/*
 * The protocol handlers this package provides, by the protocol a listener speaks (ProxyListener.protocol
 * in policy/compile.ts). The proxy manager picks the handler of each listener here; a listener whose
 * protocol has no handler must not be served at all (its redirected traffic is dropped, never passed).
 */
import { HttpProxyHandler } from "./http.ts";
import { KafkaProxyHandler } from "./kafka.ts";
import { TlsProxyHandler } from "./tls.ts";
import type { L7Protocol, ProxyHandler } from "./types.ts";

export function createProtocolHandlers(): Partial<Record<L7Protocol, ProxyHandler>> {
  return { http: new HttpProxyHandler(), kafka: new KafkaProxyHandler(), tls: new TlsProxyHandler() };
}
