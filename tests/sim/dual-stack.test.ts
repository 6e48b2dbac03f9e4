// Dual-stack pods and services in the cluster model (node/cluster.ts), the desired maps (node/desired.ts)
// and the simulator: pods get an IPv6 address from status.podIPs, their node's spec.podCIDRs or the
// Config's podCIDRv6; services get an IPv6 ClusterIP from spec.clusterIPs or ipFamilies/ipFamilyPolicy;
// every address of a pod is an endpoint key and an ipcache entry with the pod's identity; each ClusterIP
// is load-balanced to backends of its own family. The same IPv6 flows give the same events on the wasm,
// js and (as root) kernel engines.
import { describe, expect, it } from "vitest";
import { spawnSync } from "node:child_process";
import { existsSync, mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { parseManifestText } from "../../sim/manifests.ts";
import { allocationOf, buildCluster, type FlowSpec } from "../../node/cluster.ts";
import { buildLbModel, frontendBackends } from "../../node/services.ts";
import { desiredMaps, positionalNumbering } from "../../node/desired.ts";
import { compileClusterPolicy } from "../../sim/policy.ts";
import { Simulation } from "../../sim/simulator.ts";
import { formatAddr } from "../../host/ip.ts";

const doc = (s: string) => parseManifestText(s, "ds.yaml");

const MANIFESTS = `
apiVersion: ciliate.dev/v1alpha1
kind: Config
metadata: { name: c }
spec: { podCIDRv6: "fd00:10:244::/56" }
---
apiVersion: v1
kind: Node
metadata: { name: n1 }
---
apiVersion: v1
kind: Node
metadata: { name: n2 }
spec: { podCIDRs: ["10.9.0.0/24", "fd00:99::/64"] }
---
apiVersion: v1
kind: Pod
metadata: { name: client, namespace: default, labels: { app: client } }
spec: { nodeName: n1, containers: [{ name: c }] }
---
apiVersion: v1
kind: Pod
metadata: { name: other, namespace: default, labels: { app: other } }
spec: { nodeName: n1, containers: [{ name: c }] }
---
apiVersion: v1
kind: Pod
metadata: { name: server, namespace: default, labels: { app: server } }
spec: { nodeName: n2, containers: [{ name: c, ports: [{ containerPort: 8080 }] }] }
---
apiVersion: v1
kind: Pod
metadata: { name: fixed, namespace: default, labels: { app: fixed } }
spec: { nodeName: n1, containers: [{ name: c }] }
status: { podIP: "10.244.0.99", podIPs: [{ ip: "10.244.0.99" }, { ip: "fd00:abcd::99" }] }
---
apiVersion: v1
kind: Service
metadata: { name: web, namespace: default }
spec:
  ipFamilyPolicy: PreferDualStack
  ipFamilies: [IPv4, IPv6]
  selector: { app: server }
  ports: [{ port: 80, targetPort: 8080 }]
---
apiVersion: v1
kind: Service
metadata: { name: v4only, namespace: default }
spec:
  selector: { app: server }
  ports: [{ port: 81, targetPort: 8080 }]
---
apiVersion: cilium.io/v2
kind: CiliumNetworkPolicy
metadata: { name: server-ingress, namespace: default }
spec:
  endpointSelector: { matchLabels: { app: server } }
  ingress:
    - fromEndpoints: [{ matchLabels: { app: client } }]
      toPorts: [{ ports: [{ port: "8080", protocol: TCP }, { port: "8080", protocol: UDP }] }]
    - fromEndpoints: [{ matchLabels: { app: client } }]
      icmps: [{ fields: [{ family: IPv6, type: EchoRequest }] }]
---
apiVersion: cilium.io/v2
kind: CiliumNetworkPolicy
metadata: { name: other-egress, namespace: default }
spec:
  endpointSelector: { matchLabels: { app: other } }
  egress:
    - toCIDR: ["2001:db8:1::/48"]
`;

const flow = (f: Partial<FlowSpec>): FlowSpec => ({ name: "f", from: { pod: "default/client" }, to: { pod: "default/server" }, port: 8080, protocol: "TCP", count: 1, where: "test", ...f });

describe("dual-stack cluster model", () => {
  const c = buildCluster(doc(MANIFESTS));
  const pod = (k: string) => c.pods.find((p) => p.key === `default/${k}`)!;

  it("gives pods an IPv6 address from their node's podCIDRs, the Config's podCIDRv6 or status.podIPs", () => {
    expect(c.nodes.map((n) => [n.name, n.podCIDR, n.podCIDRv6])).toEqual([
      ["n1", "10.244.0.0/24", "fd00:10:244::/64"],
      ["n2", "10.9.0.0/24", "fd00:99::/64"],
    ]);
    expect(pod("client").ips).toEqual(["10.244.0.10", "fd00:10:244::a"]);
    expect(pod("other").ips).toEqual(["10.244.0.11", "fd00:10:244::b"]);
    expect(pod("server").ips).toEqual(["10.9.0.10", "fd00:99::a"]);
    expect(pod("fixed").ips).toEqual(["10.244.0.99", "fd00:abcd::99"]);
    expect(pod("client").ip).toBe("10.244.0.10");
  });

  it("gives a dual-stack service an IPv6 ClusterIP whose frontend uses the IPv6 backends only", () => {
    const web = c.services.find((s) => s.name === "web")!;
    expect(web.clusterIPs).toEqual(["10.96.0.11", "fd00:10:96::a"]);
    expect(c.services.find((s) => s.name === "v4only")!.clusterIPs).toEqual(["10.96.0.10"]);
    const lb = buildLbModel(c);
    const fronts = lb.frontends.filter((f) => f.svc === web);
    expect(fronts.map((f) => [f.ip, frontendBackends(f, "n1").map((b) => b.ip)])).toEqual([
      ["10.96.0.11", ["10.9.0.10"]],
      ["fd00:10:96::a", ["fd00:99::a"]],
    ]);
    // A single-stack service does not carry the pods' IPv6 addresses as backends.
    expect(c.services.find((s) => s.name === "v4only")!.ports[0]!.backends.map((b) => b.ip)).toEqual(["10.9.0.10"]);
  });

  it("writes an endpoint and an ipcache entry for every address of a pod, with the pod's identity", () => {
    const policy = compileClusterPolicy(c);
    const lb = buildLbModel(c);
    const maps = desiredMaps(c, policy, lb, "n1", positionalNumbering(c, "n1", lb), () => new Uint32Array(0));
    const eps = maps.Endpoints.map((e) => `${formatAddr(e.key.addr!, e.key.family === 2 ? 6 : 4)}#${e.value.epId}`);
    expect(eps).toEqual(expect.arrayContaining(["10.244.0.10#1", "fd00:10:244::a#1", "10.244.0.99#2", "fd00:abcd::99#2"]));
    const id = policy.identities.podIdentity.get("default/server")!;
    const v6 = maps.Ipcache.find((e) => e.key.family === 2 && formatAddr(e.key.addr!, 6) === "fd00:99::a")!;
    expect(v6.value.secIdentity).toBe(id);
    expect(v6.value.flags).toBeGreaterThan(0); // remote: tunnel endpoint n2
    expect(maps.Services.some((s) => s.key.family === 2 && formatAddr(s.key.addr!, 6) === "fd00:10:96::a")).toBe(true);
  });

  it("keeps every address pinned across a rebuild (whatif)", () => {
    const again = buildCluster(doc(MANIFESTS), { pinned: allocationOf(c) });
    expect(again.pods.map((p) => p.ips)).toEqual(c.pods.map((p) => p.ips));
    expect(again.services.map((s) => s.clusterIPs)).toEqual(c.services.map((s) => s.clusterIPs));
  });

  it("refuses inconsistent dual-stack input with one line naming the field", () => {
    const pod = (status: string) => `apiVersion: v1\nkind: Pod\nmetadata: { name: p }\nspec: { containers: [{ name: c }] }\nstatus: ${status}\n`;
    expect(() => buildCluster(doc(pod(`{ podIP: 10.0.0.1, podIPs: [{ ip: 10.0.0.2 }] }`)))).toThrow(/status\.podIPs\[0\]\.ip: status\.podIPs\[0\] \(10\.0\.0\.2\) must be status\.podIP/);
    expect(() => buildCluster(doc(pod(`{ podIPs: [{ ip: 10.0.0.2 }, { ip: 10.0.0.3 }] }`)))).toThrow(/two IPv4 addresses/);
    expect(() => buildCluster(doc(pod(`{ podIPs: [{ ip: 10.0.0.2 }, { ip: "fd00::zz" }] }`)))).toThrow(/invalid pod IP "fd00::zz"/);
    const node = `apiVersion: v1\nkind: Node\nmetadata: { name: n }\nspec: { podCIDRs: ["fd00:1::/64", "fd00:2::/64"] }\n`;
    expect(() => buildCluster(doc(node))).toThrow(/more than one IPv6 CIDR/);
    const svc = `apiVersion: v1\nkind: Service\nmetadata: { name: s }\nspec: { ipFamilies: [IPv7], ports: [{ port: 80 }] }\n`;
    expect(() => buildCluster(doc(svc))).toThrow(/unknown IP family "IPv7"/);
    const cfg = `apiVersion: ciliate.dev/v1alpha1\nkind: Config\nmetadata: { name: c }\nspec: { podCIDRv6: 10.0.0.0/8 }\n`;
    expect(() => buildCluster(doc(cfg))).toThrow(/invalid IPv6 CIDR "10\.0\.0\.0\/8"/);
  });
});

describe("IPv6 flows in the simulator", () => {
  const cases: [string, Partial<FlowSpec>, "allowed" | "denied"][] = [
    ["TCP by identity", { ipFamily: "IPv6" }, "allowed"],
    ["UDP by identity", { ipFamily: "IPv6", protocol: "UDP" }, "allowed"],
    ["TCP from an identity the policy does not name", { ipFamily: "IPv6", from: { pod: "default/other" } }, "denied"],
    ["ICMPv6 echo by identity", { protocol: "ICMPv6", port: 128, icmp: { type: 128, code: 0 } }, "allowed"],
    ["ICMPv6 echo from another identity", { protocol: "ICMPv6", port: 128, icmp: { type: 128, code: 0 }, from: { pod: "default/other" } }, "denied"],
    ["IPv6 ClusterIP", { ipFamily: "IPv6", to: { service: "default/web" }, port: 80 }, "allowed"],
    ["IPv6 CIDR rule", { from: { pod: "default/other" }, to: { ip: "2001:db8:1::5" }, port: 443 }, "allowed"],
    ["outside the IPv6 CIDR rule", { from: { pod: "default/other" }, to: { ip: "2001:db8:2::5" }, port: 443 }, "denied"],
  ];

  async function run(engine: "wasm" | "js" | "kernel") {
    const c = buildCluster(doc(MANIFESTS));
    const policy = compileClusterPolicy(c);
    let s: Simulation;
    if (engine === "kernel") {
      const { KernelDatapath } = await import("../../datapath/kernel-engine.ts");
      s = await Simulation.create(c, policy, { engine: "wasm", engineName: "kernel", createDatapath: async () => new KernelDatapath({ capacities: { ct: 65536, snat: 16384, ipcache: 65536, lb_maglev: 262144, policy: 65536 } }) });
    } else s = await Simulation.create(c, policy, { engine });
    try {
      return cases.map(([, f]) => s.runFlow(flow(f)));
    } finally {
      s.close();
    }
  }

  it("carries TCP, UDP, ICMPv6, a ClusterIP and CIDR rules over IPv6 with the expected verdicts", async () => {
    const results = await run("wasm");
    results.forEach((r, i) => {
      expect({ flow: cases[i]![0], verdict: r.verdict }).toEqual({ flow: cases[i]![0], verdict: cases[i]![2] });
      expect(r.events[0]!.IP.ipVersion).toBe("IPv6");
    });
    const svc = results[5]!;
    expect(svc.events[0]!.IP.destination).toBe("fd00:10:96::a");
    expect(svc.events.some((e) => e.IP.destination === "fd00:99::a")).toBe(true);
  });

  it("gives the same events on the js engine and, as root, on the kernel", async () => {
    const strip = (rs: Awaited<ReturnType<typeof run>>) => rs.map((r) => r.events.map((e) => JSON.stringify(e)));
    const wasm = strip(await run("wasm"));
    expect(strip(await run("js"))).toEqual(wasm);
    const { KERNEL_OBJECT } = await import("../../datapath/kernel-engine.ts");
    if (process.getuid?.() === 0 && existsSync(KERNEL_OBJECT)) expect(strip(await run("kernel"))).toEqual(wasm);
  }, 120_000);
});

describe("ciliate trace --ip-family", () => {
  const dir = mkdtempSync(join(tmpdir(), "ciliate-ds-"));
  const file = join(dir, "ds.yaml");
  writeFileSync(file, MANIFESTS);
  const trace = (...args: string[]) => spawnSync(process.execPath, ["bin/ciliate.js", "trace", "-f", file, ...args], { encoding: "utf8", timeout: 90_000 });

  it("traces a dual-stack service over IPv6 and prints IPv6 address:port in brackets", () => {
    const r = trace("--from", "default/client", "--to", "svc:default/web", "--port", "80", "--ip-family", "IPv6", "-o", "json");
    expect(r.status, r.stderr).toBe(0);
    const j = JSON.parse(r.stdout) as { verdict: string; service: { frontend: string }; flows: { flow: { IP: { source: string } } }[] };
    expect(j.verdict).toBe("allowed");
    expect(j.service.frontend).toBe("[fd00:10:96::a]:80/TCP");
    expect(j.flows[0]!.flow.IP.source).toBe("fd00:10:244::a");
    const text = trace("--from", "default/other", "--to", "default/server", "--port", "8080", "--ip-family", "ipv6");
    expect(text.stdout).toMatch(/\[fd00:10:244::b\]:\d+ -> \[fd00:99::a\]:8080/);
    // 6 is IPv6's short spelling, 4 IPv4's.
    expect(JSON.parse(trace("--from", "default/client", "--to", "svc:default/web", "--port", "80", "--ip-family", "6", "-o", "json").stdout)).toEqual(j);
    const v4 = JSON.parse(trace("--from", "default/client", "--to", "svc:default/web", "--port", "80", "--ip-family", "4", "-o", "json").stdout) as typeof j;
    expect(v4.flows[0]!.flow.IP.source).not.toContain(":");
  }, 120_000);

  it("refuses an unknown family with one line, exit 2", () => {
    const r = trace("--from", "default/client", "--to", "default/server", "--port", "80", "--ip-family", "IPv7");
    expect(r.status).toBe(2);
    expect(r.stderr.trim().split("\n")).toEqual(['ciliate: unknown --ip-family "IPv7" (IPv4 or IPv6 (or 4, 6))']);
    rmSync(dir, { recursive: true, force: true });
  }, 120_000);
});
