// toFQDNs and rules.dns through the compiler: learned addresses become CIDR identities and egress
// entries to exactly those addresses; the DNS port becomes a DNS proxy listener judged by evaluateDns.
import { describe, expect, it } from "vitest";
import { evaluateDns, explainFlow, FqdnCache, DNS_RCODE_REFUSED } from "./index.ts";
import { compileYaml, podsYaml } from "./test-helpers.ts";

const pods = podsYaml([
  { ns: "default", name: "client", labels: { app: "client" }, ip: "10.244.0.10" },
  { ns: "kube-system", name: "kube-dns", labels: { "k8s-app": "kube-dns" }, ip: "10.244.0.53" },
]);
const policy = `
---
apiVersion: cilium.io/v2
kind: CiliumNetworkPolicy
metadata: {name: fqdn, namespace: default}
spec:
  endpointSelector: {matchLabels: {app: client}}
  egress:
  - toEndpoints: [{matchLabels: {"k8s:io.kubernetes.pod.namespace": kube-system, k8s-app: kube-dns}}]
    toPorts: [{ports: [{port: "53", protocol: ANY}], rules: {dns: [{matchPattern: "*.cilium.io"}, {matchName: api.github.com}]}}]
  - toFQDNs: [{matchPattern: "*.cilium.io"}]
  - toFQDNs: [{matchName: api.github.com}]
    toPorts: [{ports: [{port: "443", protocol: TCP}]}]
`;

const flow = (ip: string, port: number) => ({ from: { pod: "default/client" }, to: { ip }, protocol: "TCP" as const, port });

describe("toFQDNs", () => {
  it("selects nothing until the cache learns an address, then exactly the learned /32s", () => {
    const cold = compileYaml(pods + policy).compiled;
    expect(explainFlow(cold, flow("104.198.14.52", 443)).verdict).toBe("denied");
    const cache = new FqdnCache();
    cache.learn("docs.cilium.io", ["104.198.14.52"], 60, 0);
    cache.learn("api.github.com", ["140.82.112.5", "2001:db8::5"], 60, 0);
    cache.learn("evil.example.com", ["198.51.100.1"], 60, 0);
    const { compiled } = compileYaml(pods + policy, { fqdn: cache.state(1) });
    expect(compiled.cidrIdentities.map((c) => c.prefix).sort()).toEqual(["104.198.14.52/32", "140.82.112.5/32", "2001:db8::5/128"]);
    expect(explainFlow(compiled, flow("104.198.14.52", 443)).verdict).toBe("allowed");
    expect(explainFlow(compiled, flow("104.198.14.52", 8080)).verdict).toBe("allowed"); // L3-only toFQDNs
    expect(explainFlow(compiled, flow("104.198.14.53", 443)).verdict).toBe("denied");
    expect(explainFlow(compiled, flow("140.82.112.5", 443)).verdict).toBe("allowed");
    expect(explainFlow(compiled, flow("140.82.112.5", 80)).verdict).toBe("denied"); // toPorts 443 only
    expect(explainFlow(compiled, flow("198.51.100.1", 443)).verdict).toBe("denied"); // learned, but no selector
    const e = explainFlow(compiled, flow("104.198.14.52", 443));
    expect(JSON.stringify(e)).toMatch(/toFQDNs matchPattern: \*\.cilium\.io/);
    // Expired: the allow goes with it.
    const later = compileYaml(pods + policy, { fqdn: cache.state(60) }).compiled;
    expect(explainFlow(later, flow("104.198.14.52", 443)).verdict).toBe("denied");
  });
});

describe("rules.dns", () => {
  it("port 53 to kube-dns becomes a DNS proxy listener; evaluateDns allows matching names and refuses others", () => {
    const { compiled } = compileYaml(pods + policy);
    const listeners = [...compiled.proxies.values()].filter((l) => l.endpoint === "default/client");
    expect(listeners.map((l) => [l.protocol, l.l4Protocol, l.port]).sort()).toEqual([
      ["dns", 132, 53],
      ["dns", 17, 53],
      ["dns", 6, 53],
    ]);
    const udp = listeners.find((l) => l.l4Protocol === 17)!;
    const dnsId = compiled.identities.podIdentity.get("kube-system/kube-dns")!;
    const ask = (q: string) => evaluateDns(compiled, { proxyPort: udp.proxyPort, remoteIdentity: dnsId }, q);
    expect(ask("docs.cilium.io").allowed).toBe(true);
    expect(ask("docs.cilium.io").rule?.index).toBe(0);
    expect(ask("API.GITHUB.COM.").rule?.index).toBe(1);
    expect(ask("github.com")).toMatchObject({ allowed: false, rcode: DNS_RCODE_REFUSED });
    // Another resolver identity is not covered by this listener's rules.
    expect(evaluateDns(compiled, { proxyPort: udp.proxyPort, remoteIdentity: 2 }, "docs.cilium.io").allowed).toBe(false);
    // The map entry for UDP/53 to kube-dns redirects to that listener.
    const entry = compiled.endpoints.get("default/client")!.entries.find((x) => x.key.identity === dnsId && x.key.protocol === 17 && x.key.port === 53)!;
    expect(entry.proxyPort).toBe(udp.proxyPort);
  });
});

