// `ciliate trace --icmp-error` and Traffic's `icmpError`: an ICMP error about a flow's first packet goes back
// through the nodes, which translate its embedded header (core/nat.ts E1–E3 for masquerading, core/lb.ts
// lbRevNatIcmpError for services) and take it as related to the flow; the kernel engine must print the same.
import { mkdtempSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { describe, expect, it } from "vitest";
import { ciliate, json } from "./run.ts";
import { kernelSuite } from "../../datapath/preflight.ts";

const SCENARIO = ["-f", "scenarios/multi-node"];
const SERVICE = ["--from", "shop/frontend-0", "--to", "svc:shop/web", "--port", "80", "--icmp-error", "3/3"];
const MASQ = ["--enable-bpf-masquerade", "trace", "--from", "shop/web-0", "--to", "203.0.113.7", "--protocol", "UDP", "--port", "53", "--icmp-error", "3/4", "--icmp-error-from", "192.168.56.1"];

describe("trace --icmp-error", () => {
  it("a backend's port unreachable about a ClusterIP flow: related at both ends, the embedded header and the outer source back to the frontend", () => {
    const j = json(ciliate(...SCENARIO, "trace", "-o", "json", ...SERVICE));
    expect(j.verdict).toBe("allowed");
    expect(j.flow.icmpError).toEqual({ type: 3, code: 3 });
    const errors = j.steps.filter((s: any) => s.icmpError);
    expect(errors.map((s: any) => [s.node, s.entry, s.reply, s.ctState, s.verdict])).toEqual([
      ["node-c", "fromEndpoint", true, "related", "FORWARDED"],
      ["node-a", "fromOverlay", true, "related", "FORWARDED"],
    ]);
    // The backend sent it about the packet it received (the backend's address); the client's node puts the
    // service back, inside and as the sender.
    expect(errors[0].icmpError.inner).toEqual({ before: "10.244.1.10:40000 -> 10.244.3.11:8080 TCP", after: "10.244.1.10:40000 -> 10.244.3.11:8080 TCP" });
    expect(errors[1].icmpError.inner).toEqual({ before: "10.244.1.10:40000 -> 10.244.3.11:8080 TCP", after: "10.244.1.10:40000 -> 10.96.0.10:80 TCP" });
    expect(errors[1].output.src).toBe("10.96.0.10");
    const text = ciliate(...SCENARIO, "trace", ...SERVICE).stdout;
    expect(text).toContain("then ICMP error type 3 code 3 from where it arrived");
    expect(text).toContain("ICMP error type 3 code 3 about 10.244.1.10:40000 -> 10.244.3.11:8080 TCP; embedded header translated to 10.244.1.10:40000 -> 10.96.0.10:80 TCP; outer source 10.244.3.11 -> 10.96.0.10");
  });

  it("a router's fragmentation needed about a masqueraded flow: reverse-SNATed at the node, related at the pod", () => {
    const j = json(ciliate(...SCENARIO, ...MASQ, "-o", "json"));
    expect(j.verdict).toBe("allowed");
    const errors = j.steps.filter((s: any) => s.icmpError);
    expect(errors.map((s: any) => [s.entry, s.ctState, s.verdict, s.icmpError.type, s.icmpError.code])).toEqual([
      ["fromNetwork", "none", "FORWARDED", 3, 4],
      ["toEndpoint", "related", "FORWARDED", 3, 4],
    ]);
    expect(errors[0].icmpError.inner).toEqual({ before: "192.168.56.22:40000 -> 203.0.113.7:53 UDP", after: "10.244.2.10:40000 -> 203.0.113.7:53 UDP" });
    expect(errors[0].output).toMatchObject({ src: "192.168.56.1", dst: "10.244.2.10" });
    // Hubble's view: the error is an ICMPv4 flow of type 3 delivered to the pod.
    const last = j.flows.filter((f: any) => f.flow.l4?.ICMPv4).pop().flow;
    expect(last).toMatchObject({ l4: { ICMPv4: { type: 3 } }, IP: { source: "192.168.56.1", destination: "10.244.2.10" }, verdict: "FORWARDED" });
  });

  it("without masquerading the error comes back to the pod's own address, its embedded header untouched", () => {
    const j = json(ciliate(...SCENARIO, ...MASQ.slice(1), "-o", "json"));
    const errors = j.steps.filter((s: any) => s.icmpError);
    // Without masquerading the pod's packet left with its own address: the error comes back to the pod.
    expect(errors.map((s: any) => [s.entry, s.ctState])).toEqual([["toEndpoint", "related"]]);
    expect(errors.at(-1).icmpError.inner.before).toBe("10.244.2.10:40000 -> 203.0.113.7:53 UDP");
  });

  it.skipIf(kernelSuite("trace --icmp-error on the kernel engine", ["root", "libbpf", "bpffs"]).skip)("the kernel engine prints the same", () => {
    for (const args of [["trace", ...SERVICE], MASQ]) {
      const wasm = ciliate(...SCENARIO, ...args);
      const kernel = ciliate(...SCENARIO, "--engine", "kernel", ...args);
      expect(kernel.code, kernel.stderr).toBe(0);
      expect(kernel.stdout).toBe(wasm.stdout);
    }
  }, 300_000);

  it("a Traffic flow with icmpError plays the same in simulate", () => {
    const dir = mkdtempSync(join(tmpdir(), "ciliate-icmp-error-"));
    writeFileSync(join(dir, "traffic.yaml"), `apiVersion: ciliate.dev/v1alpha1
kind: Traffic
metadata: {name: errors, namespace: shop}
spec:
  flows:
  - {from: {pod: shop/frontend-0}, to: {service: shop/web}, port: 80, protocol: TCP, icmpError: {type: 3, code: 3}}
`);
    const r = ciliate("-f", "scenarios/multi-node/cluster.yaml", "-f", join(dir, "traffic.yaml"), "simulate", "-o", "json");
    expect(r.code, r.stderr).toBe(0);
    const flows = r.stdout.trim().split("\n").map((l) => JSON.parse(l).flow);
    const icmp = flows.filter((f: any) => f.l4?.ICMPv4?.type === 3);
    expect(icmp.length).toBeGreaterThan(0);
    expect(icmp.at(-1)).toMatchObject({ IP: { source: "10.96.0.10", destination: "10.244.1.10" }, verdict: "FORWARDED" });
  });

  it("bad input: one line naming the option or field, exit 2", () => {
    const bad = [
      [[...SCENARIO, "trace", "--from", "shop/frontend-0", "--to", "svc:shop/web", "--port", "80", "--icmp-error", "5/0"], /--icmp-error: ICMP error type 5 is not an ICMPv4 error/],
      [[...SCENARIO, "trace", "--from", "shop/frontend-0", "--to", "svc:shop/web", "--port", "80", "--icmp-error", "3/x"], /malformed --icmp-error "3\/x"/],
      [[...SCENARIO, "trace", "--from", "shop/frontend-0", "--to", "svc:shop/web", "--port", "80", "--icmp-error-from", "192.168.56.1"], /--icmp-error-from needs --icmp-error/],
      [[...SCENARIO, "trace", "--from", "shop/frontend-0", "--to", "svc:shop/web", "--port", "80", "--icmp-error", "3/3", "--icmp-error-from", "fd00::1"], /must be an IPv4 address/],
      [[...SCENARIO, "trace", "--from", "shop/frontend-0", "--to", "shop/web-0", "--protocol", "SCTP", "--port", "80", "--icmp-error", "3/3"], /about a TCP, UDP or ICMP echo flow, not SCTP/],
      [[...SCENARIO, "trace", "--from", "shop/frontend-0", "--to", "svc:shop/web", "--port", "80", "--http-method", "GET", "--icmp-error", "3/3"], /leave out http/],
    ] as const;
    for (const [args, message] of bad) {
      const r = ciliate(...args);
      expect(r.code, r.stdout).toBe(2);
      expect(r.stderr).toMatch(message);
      expect(r.stderr).not.toMatch(/\n\s+at /);
    }
    const dir = mkdtempSync(join(tmpdir(), "ciliate-icmp-error-"));
    writeFileSync(join(dir, "traffic.yaml"), `apiVersion: ciliate.dev/v1alpha1
kind: Traffic
metadata: {name: errors, namespace: shop}
spec:
  flows:
  - {from: {pod: shop/frontend-0}, to: {service: shop/web}, port: 80, icmpError: {type: 3, mtu: 1200}}
`);
    const r = ciliate("-f", "scenarios/multi-node/cluster.yaml", "-f", join(dir, "traffic.yaml"), "simulate");
    expect(r.code).toBe(2);
    expect(r.stderr).toMatch(/spec\.flows\[0\]\.icmpError\.mtu.*unknown field "mtu"/);
  });
});
