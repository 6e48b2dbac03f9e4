// Reading a node's desired maps (agent/desired.ts) in tests: an address's ipcache entry, whether an
// endpoint's ingress policy admits an identity, and reconciling nodes until a condition holds.
import { hex, type DesiredState } from "../../agent/desired.ts";
import { MAP_SPECS } from "../../host/codecs.gen.ts";
import * as C from "../../host/constants.gen.ts";
import { ipcacheKey } from "../../host/ipcache.ts";

export function ipcache(d: DesiredState, ip: string) {
  const e = d.maps.Ipcache.get(hex(MAP_SPECS.Ipcache.key.encode(ipcacheKey(ip))));
  return e && MAP_SPECS.Ipcache.value.decode(e.value);
}

export function allows(d: DesiredState, epId: number, identity: number): boolean {
  return [...d.maps.Policy.values()].some((e) => {
    const k = MAP_SPECS.Policy.key.decode(e.key);
    const v = MAP_SPECS.Policy.value.decode(e.value);
    return k.epId === epId && k.egress === C.POLICY_INGRESS && k.secLabel === identity && !(v.flags & C.POLICY_F_DENY);
  });
}

/** Reconciles every node each `pauseMs` (the agent reconciles on each change) until `done`; the time taken. */
export async function reconcileUntil(nodes: { reconcile(): unknown }[], done: () => boolean, ms = 15000, pauseMs = 20): Promise<number> {
  const t0 = performance.now();
  while (performance.now() - t0 < ms) {
    for (const n of nodes) n.reconcile();
    if (done()) return performance.now() - t0;
    await new Promise((r) => setTimeout(r, pauseMs));
  }
  throw new Error("did not converge");
}
