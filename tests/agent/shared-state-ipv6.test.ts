/*
 * IPv6 between nodes without a kernel (issue #13 item 6): what a dual-stack node publishes of itself and its
 * endpoints in the kvstore (types.Node IPAddresses/IPv6AllocCIDR, one IPIdentityPair key per address) and
 * as CRDs (CiliumNode spec.addresses/spec.ipam.podCIDRs, CiliumEndpoint addressing[].ipv6), read back by
 * another node into pods with status.podIPs and Nodes with spec.podCIDRs (agent/shared-state.ts); from
 * there the remote pod's IPv6 address reaches the ipcache with its identity and its node as tunnel
 * endpoint (agent/desired.ts), and native routing wants a route to the node's IPv6 pod CIDR via its IPv6
 * InternalIP (agent/routing.ts). Also the pod MTU behind the overlay with IPv6 pods (host/tunnel.ts).
 */
import { describe, expect, it } from "vitest";
import { ciliumEndpointOf, ciliumNodeOf, parseCiliumEndpoint, parseCiliumNode } from "../../agent/crd-state.ts";
import { computeDesired, type Numbering } from "../../agent/desired.ts";
import { StableIdentities, StableNumbers } from "../../agent/identities.ts";
import { endpointEntries, IP_PREFIX, mergeEndpointAddresses, NODES_PREFIX, nodeValue, parseEndpoint, parseNode, type SharedEndpoint, type SharedNode } from "../../agent/kvstore-state.ts";
import { remoteNodeRoutes } from "../../agent/routing.ts";
import { localSharedEndpoints, withSharedState } from "../../agent/shared-state.ts";
import * as C from "../../host/constants.gen.ts";
import { formatAddr } from "../../host/ip.ts";
import { podMtu } from "../../host/tunnel.ts";
import { parseManifestText } from "../../sim/manifests.ts";
import { ipcache } from "../helpers/desired-maps.ts";

const node1: SharedNode = { name: "node-1", cluster: "default", clusterId: 0, ip: "192.168.57.11", podCIDR: "10.244.1.0/24", ip6: "fd00:57::11", podCIDRv6: "fd00:10:244:1::/64" };
const node2 = { name: "node-2", ip: "192.168.57.12", podCIDR: "10.244.2.0/24", podCIDRv6: "fd00:10:244:2::/64", ip6: "fd00:57::12" };
const web: SharedEndpoint = { ip: "10.244.1.10", ip6: "fd00:10:244:1::a", hostIp: node1.ip, identity: 41000, node: "node-1", namespace: "shop", pod: "web", labels: { app: "web" }, namespaceLabels: {} };
const fresh = (): Numbering => ({ identities: new StableIdentities(), backends: new StableNumbers(1, 0xffffffff), revNat: new StableNumbers(1, 0xffff) });
const nodeYaml = (name: string, cidrs: string[], ips: string[]) =>
  `apiVersion: v1\nkind: Node\nmetadata: {name: ${name}}\nspec: {podCIDR: ${cidrs[0]}, podCIDRs: [${cidrs.map((c) => JSON.stringify(c)).join(", ")}]}\nstatus: {addresses: [${ips.map((a) => `{type: InternalIP, address: "${a}"}`).join(", ")}]}\n---\n`;

describe("native routes to IPv6 pod CIDRs", () => {
  const self = { name: "node-1", ip: "192.168.57.11", podCIDR: "10.244.1.0/24", podCIDRv6: "fd00:10:244:1::/64", ip6: "fd00:57::11" };

  it("routes each other node's IPv6 pod CIDR via its IPv6 InternalIP, beside the IPv4 route", () => {
    const r = remoteNodeRoutes(parseManifestText(nodeYaml("node-1", ["10.244.1.0/24", "fd00:10:244:1::/64"], ["192.168.57.11", "fd00:57::11"]) + nodeYaml("node-2", ["10.244.2.0/24", "fd00:10:244:2::/64"], ["192.168.57.12", "fd00:57:0:0::12"]), "n.yaml"), self);
    expect(r).toEqual({
      routes: [
        { cidr: "10.244.2.0/24", via: "192.168.57.12", node: "node-2" },
        { cidr: "fd00:10:244:2::/64", via: "fd00:57::12", node: "node-2" },
      ],
      problems: [],
    });
  });

  it("gives no IPv6 route, with the reason, without an IPv6 address, prefix, or when it clashes; none at all on an IPv4-only node", () => {
    const objs = parseManifestText(
      nodeYaml("a-noip6", ["10.244.2.0/24", "fd00:10:244:2::/64"], ["192.168.57.12"]) +
        nodeYaml("b-nocidr6", ["10.244.3.0/24"], ["192.168.57.13", "fd00:57::13"]) +
        nodeYaml("c-mine", ["10.244.4.0/24", "fd00:10:244:1::/80"], ["192.168.57.14", "fd00:57::14"]) +
        nodeYaml("d-selfip", ["10.244.5.0/24", "fd00:10:244:5::/64"], ["192.168.57.15", "fd00:57::11"]) +
        nodeYaml("e-ok", ["10.244.6.0/24", "fd00:10:244:6::/64"], ["192.168.57.16", "fd00:57::16"]) +
        nodeYaml("f-clash", ["10.244.7.0/24", "fd00:10:244:6::/72"], ["192.168.57.17", "fd00:57::17"]),
      "n.yaml",
    );
    const r = remoteNodeRoutes(objs, self);
    expect(r.routes.filter((x) => x.cidr.includes(":"))).toEqual([{ cidr: "fd00:10:244:6::/64", via: "fd00:57::16", node: "e-ok" }]);
    expect(r.routes.filter((x) => !x.cidr.includes(":")).length).toBe(6); // IPv4 routes are unaffected
    expect(r.problems).toEqual([
      "node a-noip6: no IPv6 route, status.addresses has no IPv6 InternalIP",
      "node b-nocidr6: no IPv6 route, spec.podCIDRs has no IPv6 prefix",
      "node c-mine: no IPv6 route, its pod CIDR fd00:10:244:1::/80 overlaps this node's fd00:10:244:1::/64",
      "node d-selfip: no IPv6 route, its InternalIP fd00:57::11 is this node's",
      "node f-clash: no IPv6 route, its pod CIDR fd00:10:244:6::/72 overlaps node e-ok's fd00:10:244:6::/64",
    ]);
    const v4only = remoteNodeRoutes(objs, { name: "node-1", ip: "192.168.57.11", podCIDR: "10.244.1.0/24" });
    expect(v4only.routes.every((x) => !x.cidr.includes(":"))).toBe(true);
    expect(v4only.problems).toEqual([]);
  });
});

describe("dual-stack shared state values", () => {
  it("kvstore node: both InternalIPs and IPv6AllocCIDR as types.Node marshals them, read back whole; an IPv4-only node unchanged", () => {
    const key = `${NODES_PREFIX}/default/node-1`;
    const v = JSON.parse(nodeValue(node1));
    expect(v.IPAddresses).toEqual([{ Type: "InternalIP", IP: "192.168.57.11" }, { Type: "InternalIP", IP: "fd00:57::11" }]);
    expect(v.IPv4AllocCIDR).toEqual({ IP: "10.244.1.0", Mask: Buffer.from([255, 255, 255, 0]).toString("base64") });
    expect(v.IPv6AllocCIDR).toEqual({ IP: "fd00:10:244:1::", Mask: Buffer.from([...Array(8).fill(255), ...Array(8).fill(0)]).toString("base64") });
    expect(parseNode(key, nodeValue(node1))).toEqual(node1);
    const { ip6: _a, podCIDRv6: _b, ...v4 } = node1;
    expect(JSON.parse(nodeValue(v4)).IPv6AllocCIDR).toBeUndefined();
    expect(parseNode(key, nodeValue(v4))).toEqual(v4);
    // An IPv6AllocCIDR that is not IPv6 is left out; the node still counts.
    const { podCIDRv6: _c, ...noCidr6 } = node1;
    expect(parseNode(key, JSON.stringify({ ...v, IPv6AllocCIDR: v.IPv4AllocCIDR }))).toEqual(noCidr6);
  });

  it("kvstore endpoints: one IPIdentityPair key per address, merged back into one dual-stack endpoint", () => {
    const entries = endpointEntries(web);
    expect(entries.map(([k]) => k)).toEqual([`${IP_PREFIX}/10.244.1.10`, `${IP_PREFIX}/fd00:10:244:1::a`]);
    const parsed = entries.map(([k, v]) => parseEndpoint(k, v) as SharedEndpoint);
    expect(parsed.map((e) => [e.ip, e.identity, e.hostIp])).toEqual([["10.244.1.10", 41000, node1.ip], ["fd00:10:244:1::a", 41000, node1.ip]]);
    expect(mergeEndpointAddresses(parsed)).toEqual([web]);
    expect(mergeEndpointAddresses([...parsed].reverse())).toEqual([web]);
    // Only the IPv6 key so far: an endpoint with that address alone; the IPv4 key then takes `ip`.
    const { ip6: _x, ...v4 } = web;
    expect(mergeEndpointAddresses([parsed[1]!])).toEqual([{ ...v4, ip: web.ip6 }]);
    expect(mergeEndpointAddresses([parsed[1]!, parsed[0]!])).toEqual([web]);
    // Two keys of one pod with different identities (one stale) are not merged into one endpoint.
    expect(mergeEndpointAddresses([parsed[0]!, { ...parsed[1]!, identity: 41001 }])).toEqual([parsed[0]]);
  });

  it("CRDs: CiliumNode addresses and ipam.podCIDRs, CiliumEndpoint addressing[{ipv4, ipv6}], read back whole", () => {
    const cn = ciliumNodeOf(node1);
    expect(cn.spec).toEqual({ addresses: [{ type: "InternalIP", ip: "192.168.57.11" }, { type: "InternalIP", ip: "fd00:57::11" }], ipam: { podCIDRs: ["10.244.1.0/24", "fd00:10:244:1::/64"] } });
    expect(parseCiliumNode(cn, { name: "default", id: 0 })).toEqual(node1);
    const cep = ciliumEndpointOf(web, "default");
    expect(cep.status!.networking!.addressing).toEqual([{ ipv4: "10.244.1.10", ipv6: "fd00:10:244:1::a" }]);
    expect(parseCiliumEndpoint(cep, (ip) => (ip === node1.ip ? "node-1" : undefined))).toEqual(web);
    cep.status!.networking!.addressing = [{ ipv4: "10.244.1.10", ipv6: "10.0.0.1" }];
    expect((parseCiliumEndpoint(cep, () => "node-1") as SharedEndpoint).ip6).toBeUndefined();
  });

  it("a remote dual-stack endpoint and node become a pod with status.podIPs and a Node with spec.podCIDRs: its IPv6 address is in the ipcache with its node as tunnel endpoint, and its IPv6 pod CIDR is routed", () => {
    const policy = `apiVersion: cilium.io/v2\nkind: CiliumNetworkPolicy\nmetadata: {name: p, namespace: shop}\nspec:\n  endpointSelector: {matchLabels: {app: db}}\n  ingress: [{fromEndpoints: [{matchLabels: {app: web}}]}]\n`;
    const objs = withSharedState(parseManifestText(`apiVersion: v1\nkind: Namespace\nmetadata: {name: shop}\n---\n${policy}`, "m.yaml"), { endpoints: [web], nodes: [node1] });
    const pod = objs.find((o) => o.kind === "Pod")!;
    expect(pod.raw.status).toEqual({ podIP: "10.244.1.10", podIPs: [{ ip: "10.244.1.10" }, { ip: "fd00:10:244:1::a" }] });
    const n = objs.find((o) => o.kind === "Node")!;
    expect(n.raw.spec).toEqual({ podCIDR: "10.244.1.0/24", podCIDRs: ["10.244.1.0/24", "fd00:10:244:1::/64"] });
    const d = computeDesired(objs, node2, [], fresh());
    const id = d.podIdentity.get("shop/web")!;
    for (const ip of [web.ip, web.ip6!]) {
      const e = ipcache(d, ip)!;
      expect(e.secIdentity, ip).toBe(id);
      expect(e.flags & C.IPCACHE_F_HAS_TUNNEL_EP, ip).toBe(C.IPCACHE_F_HAS_TUNNEL_EP);
      expect(formatAddr(e.tunnelEndpoint, 4), ip).toBe(node1.ip); // IPv6 pods over the IPv4 underlay
    }
    expect(remoteNodeRoutes(objs, node2).routes).toEqual([
      { cidr: "10.244.1.0/24", via: "192.168.57.11", node: "node-1" },
      { cidr: "fd00:10:244:1::/64", via: "fd00:57::11", node: "node-1" },
    ]);
  });

  it("a local dual-stack endpoint is published with both addresses", () => {
    const objs = parseManifestText(`apiVersion: v1\nkind: Pod\nmetadata: {name: db, namespace: shop, labels: {app: db}}\nspec: {nodeName: node-2, containers: [{name: c, image: x}]}\n`, "m.yaml");
    const eps = [{ epId: 1, pod: "shop/db", ip: "10.244.2.10", ip6: "fd00:10:244:2::a", ifindex: 10 }];
    const d = computeDesired(objs, node2, eps, fresh());
    const [e] = localSharedEndpoints(d, eps, node2);
    expect([e!.ip, e!.ip6, e!.hostIp]).toEqual(["10.244.2.10", "fd00:10:244:2::a", node2.ip]);
  });
});

describe("pod MTU behind the overlay", () => {
  it("the overhead is the underlay's (50 over IPv4, 70 over IPv6) whatever the pods' family; IPv6 pods need 1280", () => {
    expect(podMtu(1500)).toBe(1450);
    expect(podMtu(1500, 4, true)).toBe(1450);
    expect(podMtu(1500, 6, true)).toBe(1430);
    expect(podMtu(1330, 4, true)).toBe(1280);
    expect(() => podMtu(1329, 4, true)).toThrow("device MTU 1329 leaves 1279 bytes for pods behind the overlay; at least 1280 are needed for IPv6 pods");
    expect(podMtu(1329, 4, false)).toBe(1279);
    expect(() => podMtu(1349, 6, true)).toThrow(/1279 bytes .*\(IPv6 underlay\)/);
  });
});
