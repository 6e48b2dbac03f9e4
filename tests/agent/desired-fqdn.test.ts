/*
 * toFQDNs on the node's maps without a kernel: what the DNS proxy learned (an FqdnCache state) becomes a
 * CIDR identity in the ipcache and an egress policy entry of the selecting endpoint, with a stable number
 * across reconciles; once expired, both are gone from the desired state.
 */
import { describe, expect, it } from "vitest";
import { MAP_SPECS } from "../../host/codecs.gen.ts";
import { computeDesired, type LocalEndpoint, type Numbering } from "../../agent/desired.ts";
import { StableIdentities, StableNumbers } from "../../agent/identities.ts";
import { FqdnCache } from "../../policy/index.ts";
import { parseManifestText } from "../../sim/manifests.ts";

const node = { name: "node-1", ip: "192.168.56.11", podCIDR: "10.244.1.0/24" };
const yaml = `apiVersion: v1
kind: Pod
metadata: {name: client, namespace: default, labels: {app: client}}
spec: {containers: [{name: c, image: x}]}
---
apiVersion: cilium.io/v2
kind: CiliumNetworkPolicy
metadata: {name: fqdn, namespace: default}
spec:
  endpointSelector: {matchLabels: {app: client}}
  egress:
  - toFQDNs: [{matchName: api.example.com}]
    toPorts: [{ports: [{port: "443", protocol: TCP}]}]
`;
const eps: LocalEndpoint[] = [{ epId: 3, pod: "default/client", ip: "10.244.1.5", ifindex: 9 }];
const numbering = (): Numbering => ({ identities: new StableIdentities(), backends: new StableNumbers(1, 0xffffffff), revNat: new StableNumbers(1, 0xffff) });

function ipcacheIdentity(d: ReturnType<typeof computeDesired>, ip: string): number | undefined {
  for (const { key, value } of d.maps.Ipcache.values()) {
    const k = MAP_SPECS.Ipcache.key.decode(key);
    const addr = [...k.addr.slice(0, 4)].join(".");
    if (addr === ip && k.prefixlen % 32 === 0 && k.prefixlen > 32) return MAP_SPECS.Ipcache.value.decode(value).secIdentity;
  }
  return undefined;
}

function egressIdentities(d: ReturnType<typeof computeDesired>): number[] {
  return [...d.maps.Policy.values()]
    .map(({ key }) => MAP_SPECS.Policy.key.decode(key))
    .filter((k) => k.epId === 3 && k.egress === 1 && k.dport === 443)
    .map((k) => k.secLabel);
}

describe("computeDesired with the FQDN cache", () => {
  it("a learned address gets a CIDR identity in the ipcache and an egress entry; expired, both go", () => {
    const n = numbering();
    const objects = parseManifestText(yaml, "t.yaml");
    const cold = computeDesired(objects, node, eps, n);
    expect(ipcacheIdentity(cold, "192.0.2.10")).toBeUndefined();
    expect(egressIdentities(cold)).toEqual([]);
    const cache = new FqdnCache();
    cache.learn("api.example.com", ["192.0.2.10"], 30, 1000);
    const warm = computeDesired(objects, node, eps, n, { fqdn: cache.state(1000) });
    const id = ipcacheIdentity(warm, "192.0.2.10")!;
    expect(id).toBeGreaterThanOrEqual(1 << 24);
    expect(egressIdentities(warm)).toEqual([id]);
    // A second learned name does not renumber the first address's identity.
    cache.learn("api.example.com", ["192.0.2.1"], 30, 1000);
    const more = computeDesired(objects, node, eps, n, { fqdn: cache.state(1000) });
    expect(ipcacheIdentity(more, "192.0.2.10")).toBe(id);
    expect(egressIdentities(more).sort()).toEqual([id, ipcacheIdentity(more, "192.0.2.1")!].sort());
    const expired = computeDesired(objects, node, eps, n, { fqdn: cache.state(1030) });
    expect(ipcacheIdentity(expired, "192.0.2.10")).toBeUndefined();
    expect(egressIdentities(expired)).toEqual([]);
  });
});
