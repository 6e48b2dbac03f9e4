// The rules of one proxy listener that apply to one remote identity: the common first step of every L7
// protocol's evaluation. A listener carries the rules of exactly one L7 protocol (compile.ts refuses an
// endpoint port that would mix kinds, as Cilium does); asking a listener for another protocol's rules is
// an answer in itself (the proxy on that port speaks another protocol and cannot parse the request).

import type { CompiledPolicy } from "../compile.ts";
import type { L7Protocol, ProxyListener } from "../types.ts";

/** Which listener judges the request and who sent it. */
export interface L7Context {
  proxyPort: number;
  remoteIdentity: number;
}

/** Rules of the listener on `ctx.proxyPort` for the remote identity (identity 0 in a rule = any peer). */
export function listenerRulesFor(compiled: CompiledPolicy, ctx: L7Context, protocol: L7Protocol): { listener: ProxyListener; rules: ProxyListener["rules"] } | { error: string } {
  const l = compiled.proxies.get(ctx.proxyPort);
  if (!l) return { error: `no proxy listener on port ${ctx.proxyPort}` };
  if (l.protocol !== protocol) return { error: `the proxy on port ${ctx.proxyPort} is a ${l.protocol} proxy and cannot parse a ${protocol} request` };
  return { listener: l, rules: l.rules.filter((r) => r.identities.includes(ctx.remoteIdentity) || r.identities.includes(0)) };
}
