// The overlay as `ciliate simulate` and `ciliate trace` show it on the bundled multi-node scenario: the
// encapsulated hop with its outer addresses and VNI (the sender's identity), the receiving node's ingress
// verdict on that carried identity, Geneve through the same path, the overlay switched off, and the kernel
// engine agreeing with WASM (BPF_PROG_TEST_RUN through the tunnel-key harness). Needs `npm run build`.
import { describe, expect, it } from "vitest";
import { ciliate, json } from "./run.ts";
import { kernelSuite } from "../../datapath/preflight.ts";

const SCENARIO = ["-f", "scenarios/multi-node"];
const NODE_A = "192.168.56.21";
const NODE_B = "192.168.56.22";
const NODE_C = "192.168.56.23";

function trace(...args: string[]) {
  return json(ciliate(...SCENARIO, "trace", "-o", "json", ...args));
}

describe("overlay in simulate and trace", () => {
  it("trace shows the encapsulation and the receiver's ingress verdict on the carried identity", () => {
    const j = trace("--tunnel-protocol", "vxlan", "--from", "shop/web-0", "--to", "shop/db-0", "--port", "5432");
    expect(j.verdict).toBe("allowed");
    const webId = j.identities.source;
    const [encap, decap] = j.steps;
    expect(encap).toMatchObject({ node: "node-b", entry: "fromEndpoint", tunnel: { direction: "encap", protocol: "VXLAN", outer: { source: NODE_B, destination: NODE_C }, vni: webId } });
    expect(decap).toMatchObject({ node: "node-c", entry: "fromOverlay", srcIdentity: webId, tunnel: { direction: "decap", outer: { source: NODE_B, destination: NODE_C }, vni: webId } });
    expect(j.ingress).toMatchObject({ verdict: "allowed", node: "node-c" });
    // The reply goes back through the tunnel with db's identity.
    const reply = j.steps.find((s: any) => s.reply && s.entry === "fromEndpoint");
    expect(reply.tunnel).toMatchObject({ outer: { source: NODE_C, destination: NODE_B }, vni: j.identities.destination });
  });

  it("a denied identity is dropped by the receiving node's fromOverlay", () => {
    const j = trace("--from", "shop/frontend-0", "--to", "shop/db-0", "--port", "5432");
    expect(j.verdict).toBe("denied");
    const last = j.steps.at(-1);
    expect(last).toMatchObject({ node: "node-c", entry: "fromOverlay", verdict: "DROPPED", dropReason: 133, srcIdentity: j.identities.source });
    expect(last.tunnel).toMatchObject({ outer: { source: NODE_A, destination: NODE_C }, vni: j.identities.source });
    const text = ciliate(...SCENARIO, "trace", "--from", "shop/frontend-0", "--to", "shop/db-0", "--port", "5432");
    expect(text.stdout).toContain(`encapsulated: VXLAN ${NODE_A} -> ${NODE_C} VNI ${j.identities.source}`);
    expect(text.stdout).toMatch(/\[node-c\] fromOverlay .* DROPPED \(Policy denied\)/);
  });

  it("simulate prints the tunnel hop in compact and JSON output; Geneve shares the path", () => {
    const compact = ciliate(...SCENARIO, "simulate");
    expect(compact.stdout).toMatch(new RegExp(`to-overlay \\[VXLAN ${NODE_A.replace(/\./g, "\\.")} -> ${NODE_C.replace(/\./g, "\\.")} VNI \\d+\\] FORWARDED`));
    const lines = ciliate(...SCENARIO, "--tunnel-protocol", "geneve", "simulate", "-o", "json").stdout.trim().split("\n").map((l) => JSON.parse(l)).filter((x) => x.flow).map((x) => ({ ...x.flow, vni: x.ciliate?.tunnel_vni }));
    // Pod to pod across nodes is encapsulated (traffic to a node's own address, e.g. a NodePort reply to
    // the node that SNATed it, is routed on the underlay, as in Cilium, and carries no tunnel record).
    const hops = lines.filter((e) => e.trace_observation_point === "TO_OVERLAY" && e.source.identity >= 256 && e.destination.identity >= 256);
    expect(hops.length).toBeGreaterThan(0);
    for (const h of hops) {
      expect(h.tunnel.protocol).toBe("GENEVE");
      expect(h.tunnel.l4.UDP.destination_port).toBe(6081);
      expect(h.vni).toBe(h.source.identity);
    }
  });

  it("with the overlay disabled nothing is encapsulated and the receiver looks the identity up", () => {
    const j = trace("--tunnel-protocol", "disabled", "--from", "shop/web-0", "--to", "shop/db-0", "--port", "5432");
    expect(j.verdict).toBe("allowed");
    expect(j.steps.map((s: any) => s.entry).slice(0, 2)).toEqual(["fromEndpoint", "toEndpoint"]);
    expect(j.steps.every((s: any) => s.tunnel === undefined)).toBe(true);
    expect(j.steps[1].srcIdentity).toBe(j.identities.source);
  });

  const k = kernelSuite("overlay on the kernel engine", ["root", "libbpf", "bpffs", "clang"]);
  it.skipIf(k.skip)("the kernel engine gives the same overlay hops and verdicts", () => {
    for (const args of [["--from", "shop/web-0", "--to", "shop/db-0", "--port", "5432"], ["--from", "shop/frontend-0", "--to", "shop/db-0", "--port", "5432"]]) {
      const w = trace(...args);
      const kj = json(ciliate(...SCENARIO, "--engine", "kernel", "trace", "-o", "json", ...args));
      expect(kj.verdict).toBe(w.verdict);
      expect(kj.steps).toEqual(w.steps);
    }
  }, 120_000);
});
