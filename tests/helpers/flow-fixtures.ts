// Datapath trace records and pod names for flow tests: a client (10.244.1.2, identity 300) talking TCP to a
// server (10.244.1.3, identity 301) on node-1, as the agent's observer would decode them.
import { TraceRecordCodec, type TraceRecord } from "../../host/codecs.gen.ts";
import * as C from "../../host/constants.gen.ts";
import type { FlowNames } from "../../host/trace-flow.ts";

export const flowNames: FlowNames = {
  podByIp: new Map([
    ["10.244.1.2", { namespace: "default", name: "client", labels: { app: "client" } }],
    ["10.244.1.3", { namespace: "default", name: "server", labels: { app: "server" } }],
  ]),
  identityLabels: new Map([[300, ["k8s:app=client"]], [301, ["k8s:app=server"]]]),
  nodeName: "node-1",
};

/** An IPv4 address in a record's 16-byte address field. */
export function a16(ip: string): Uint8Array {
  const b = new Uint8Array(16);
  ip.split(".").forEach((x, i) => (b[i] = Number(x)));
  return b;
}

/** A TCP SYN record from client:40000 to server:8080, with `over` changed. */
export function traceRecord(over: Partial<TraceRecord>): TraceRecord {
  return { ...TraceRecordCodec.zero(), family: C.FAMILY_IPV4, nexthdr: 6, saddr: a16("10.244.1.2"), newDaddr: a16("10.244.1.3"), origDaddr: a16("10.244.1.3"), sport: 40000, newDport: 8080, origDport: 8080, srcIdentity: 300, dstIdentity: 301, tcpFlags: 0x02, ...over };
}
