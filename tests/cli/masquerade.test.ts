// Masquerading as `ciliate trace` and `ciliate simulate` show it on the bundled multi-node scenario
// (--enable-bpf-masquerade, --ipv4-native-routing-cidr): a pod's flow to the world passes its node's
// toNetwork, which SNATs it to the node's address, and the reply's fromNetwork on that node restores the
// pod before its toEndpoint finds the flow's conntrack entry; the exclusion CIDR and the flag's absence
// leave the pod's address; the kernel engine agrees with WASM. Needs `npm run build`.
import { mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { describe, expect, it } from "vitest";
import { ciliate, json } from "./run.ts";
import { kernelSuite } from "../../datapath/preflight.ts";

const SCENARIO = ["-f", "scenarios/multi-node"];
const NODE_A = "192.168.56.21";
const FLOW = ["--from", "shop/frontend-0", "--to", "203.0.113.7", "--port", "443"];

function trace(...args: string[]) {
  return json(ciliate(...SCENARIO, ...args, "trace", "-o", "json", ...FLOW));
}

describe("masquerading in trace and simulate", () => {
  it("trace shows the SNAT at toNetwork and the reverse SNAT of the reply at fromNetwork", () => {
    const j = trace("--enable-bpf-masquerade");
    expect(j.verdict).toBe("allowed");
    const [out, snat, back, deliver] = j.steps;
    expect(out).toMatchObject({ node: "node-a", entry: "fromEndpoint", verdict: "FORWARDED" });
    expect(snat).toMatchObject({ node: "node-a", entry: "toNetwork", verdict: "FORWARDED", snat: { direction: "snat", field: "source", from: "10.244.1.10:40000", to: `${NODE_A}:40000` } });
    expect(back).toMatchObject({ node: "node-a", entry: "fromNetwork", reply: true, snat: { direction: "rev-snat", field: "destination", from: `${NODE_A}:40000`, to: "10.244.1.10:40000" } });
    expect(deliver).toMatchObject({ node: "node-a", entry: "toEndpoint", reply: true, ctState: "reply" });
    const text = ciliate(...SCENARIO, "--enable-bpf-masquerade", "trace", ...FLOW).stdout;
    expect(text).toContain(`SNAT of the source: 10.244.1.10:40000 -> ${NODE_A}:40000`);
    expect(text).toContain(`reverse SNAT of the destination: ${NODE_A}:40000 -> 10.244.1.10:40000`);
  });

  it("no masquerading without the flag, for the exclusion CIDR, and between pods", () => {
    for (const j of [trace(), trace("--enable-bpf-masquerade", "--ipv4-native-routing-cidr", "203.0.113.0/24")]) {
      expect(j.verdict).toBe("allowed");
      expect(j.steps.filter((s: any) => s.snat)).toEqual([]);
    }
    const pods = json(ciliate(...SCENARIO, "--enable-bpf-masquerade", "trace", "-o", "json", "--from", "shop/web-0", "--to", "shop/db-0", "--port", "5432"));
    expect(pods.steps.filter((s: any) => s.entry === "toNetwork")).toEqual([]);
  });

  it("simulate emits the to-network event with the node's address, and the pod gets its reply", () => {
    const dir = mkdtempSync(join(tmpdir(), "ciliate-masq-"));
    try {
      writeFileSync(join(dir, "traffic.yaml"), `apiVersion: ciliate.dev/v1alpha1
kind: Traffic
metadata: { name: out, namespace: shop }
spec:
  flows:
    - { name: frontend-to-world, from: { pod: shop/frontend-0 }, to: { ip: 203.0.113.7 }, port: 443, protocol: TCP }
`);
      const lines = (flag: string[]) => {
        const r = ciliate("-f", "scenarios/multi-node/cluster.yaml", "-f", dir, ...flag, "simulate", "-o", "json");
        expect(r.code, r.stderr).toBe(0);
        return r.stdout.trim().split("\n").map((l) => JSON.parse(l)).filter((l) => l.ciliate?.flow_name === "frontend-to-world");
      };
      const on = lines(["--enable-bpf-masquerade"]);
      const toNet = on.filter((l) => l.flow.trace_observation_point === "TO_NETWORK");
      expect(toNet.length).toBeGreaterThan(0);
      for (const l of toNet) expect(l.flow.IP).toMatchObject({ source: NODE_A, destination: "203.0.113.7" });
      // Replies reach the pod (to-endpoint, is_reply) with the pod's address as destination.
      expect(on.some((l) => l.flow.is_reply && l.flow.trace_observation_point === "TO_ENDPOINT" && l.flow.IP.destination === "10.244.1.10")).toBe(true);
      expect(on.some((l) => l.flow.verdict === "DROPPED")).toBe(false);
      expect(lines([]).filter((l) => l.flow.trace_observation_point === "TO_NETWORK")).toEqual([]);
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });

  it("a bad --ipv4-native-routing-cidr is one line and exit 2", () => {
    const r = ciliate(...SCENARIO, "--enable-bpf-masquerade", "--ipv4-native-routing-cidr", "10.0.0/8", "trace", ...FLOW);
    expect(r.code).toBe(2);
    expect(r.stderr.trim().split("\n")).toHaveLength(1);
    expect(r.stderr).toContain("invalid --ipv4-native-routing-cidr");
  });

  it("a bad --ipv6-native-routing-cidr (or an IPv4 one) is one line and exit 2", () => {
    for (const bad of ["fd00::/129", "10.0.0.0/8"]) {
      const r = ciliate(...SCENARIO, "--enable-bpf-masquerade", "--ipv6-native-routing-cidr", bad, "trace", ...FLOW);
      expect(r.code).toBe(2);
      expect(r.stderr.trim().split("\n")).toHaveLength(1);
      expect(r.stderr).toContain("invalid --ipv6-native-routing-cidr");
    }
  });

  it("over IPv6: a dual-stack pod's flow to the world is SNATed to its node's IPv6 InternalIP, except to --ipv6-native-routing-cidr", () => {
    const dir = mkdtempSync(join(tmpdir(), "ciliate-masq6-"));
    try {
      writeFileSync(join(dir, "cluster.yaml"), `apiVersion: ciliate.dev/v1alpha1
kind: Config
metadata: {name: c}
spec: {podCIDRv6: "fd00:10:244::/56"}
---
apiVersion: v1
kind: Node
metadata: {name: node-a}
spec: {podCIDR: 10.244.1.0/24}
status: {addresses: [{type: InternalIP, address: 192.168.56.21}, {type: InternalIP, address: "fd00:56::21"}]}
---
apiVersion: v1
kind: Pod
metadata: {name: a, namespace: default, labels: {app: a}}
spec: {nodeName: node-a, containers: [{name: c, image: x}]}
`);
      const run = (...flags: string[]) => {
        const r = ciliate("-f", dir, ...flags, "trace", "-o", "json", "--from", "default/a", "--to", "2001:db8::7", "--port", "443");
        expect(r.code, r.stderr).toBe(0);
        return JSON.parse(r.stdout);
      };
      const j = run("--enable-bpf-masquerade");
      expect(j.verdict).toBe("allowed");
      const snat = j.steps.find((s: any) => s.entry === "toNetwork");
      expect(snat.snat).toMatchObject({ direction: "snat", field: "source" });
      expect(snat.snat.to).toMatch(/^\[?fd00:56::21\]?:\d+$/);
      const back = j.steps.find((s: any) => s.entry === "fromNetwork");
      expect(back).toMatchObject({ reply: true, snat: { direction: "rev-snat", field: "destination" } });
      for (const j2 of [run(), run("--enable-bpf-masquerade", "--ipv6-native-routing-cidr", "2001:db8::/32")]) {
        expect(j2.steps.filter((s: any) => s.snat)).toEqual([]);
      }
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });

  it.skipIf(kernelSuite("masquerade trace on the kernel engine", ["root", "libbpf", "bpffs"]).skip)("the kernel engine translates the same way", () => {
    const wasm = trace("--enable-bpf-masquerade");
    const kernel = trace("--enable-bpf-masquerade", "--engine", "kernel");
    expect(kernel.steps.map((s: any) => [s.entry, s.verdict, s.snat, s.output])).toEqual(wasm.steps.map((s: any) => [s.entry, s.verdict, s.snat, s.output]));
  });
});
