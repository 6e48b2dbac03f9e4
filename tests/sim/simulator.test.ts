// The packet-level simulator driven directly (no CLI): the packet sequence of each protocol, overlay
// events and the identity carried across nodes, reserved sources, and determinism. Needs `npm run build`.
import { describe, expect, it } from "vitest";
import { parseManifestText } from "../../sim/manifests.ts";
import { buildCluster, type FlowSpec } from "../../node/cluster.ts";
import { compileClusterPolicy } from "../../sim/policy.ts";
import { Simulation } from "../../sim/simulator.ts";

const MANIFESTS = `
apiVersion: v1
kind: Node
metadata: { name: n1 }
---
apiVersion: v1
kind: Node
metadata: { name: n2 }
---
apiVersion: v1
kind: Pod
metadata: { name: a, namespace: default, labels: { app: a } }
spec: { nodeName: n1, containers: [{ name: c }] }
---
apiVersion: v1
kind: Pod
metadata: { name: b, namespace: default, labels: { app: b } }
spec: { nodeName: n2, containers: [{ name: c }] }
---
apiVersion: cilium.io/v2
kind: CiliumNetworkPolicy
metadata: { name: b-from-a, namespace: default }
spec:
  endpointSelector: { matchLabels: { app: b } }
  ingress:
    - fromEndpoints: [{ matchLabels: { app: a } }]
    - fromEntities: [health]
`;

async function sim(engine: "wasm" | "js" = "wasm") {
  const c = buildCluster(parseManifestText(MANIFESTS, "t.yaml"));
  return Simulation.create(c, compileClusterPolicy(c), { engine });
}

const flow = (f: Partial<FlowSpec>): FlowSpec => ({ name: "f", from: { pod: "default/a" }, to: { pod: "default/b" }, port: 80, protocol: "TCP", count: 1, where: "test", ...f });

describe("Simulation", () => {
  it("plays TCP as handshake, data and FIN both ways across the overlay, carrying the source identity", async () => {
    const s = await sim();
    const r = s.runFlow(flow({}));
    expect(r.verdict).toBe("allowed");
    const entries = r.steps.map((x) => `${x.node}:${x.entry}${x.reply ? "<" : ">"}`);
    expect(entries).toEqual(
      ["n1:fromEndpoint>", "n2:fromOverlay>", "n2:fromEndpoint<", "n1:fromOverlay<"].concat(
        ["n1:fromEndpoint>", "n2:fromOverlay>"], // ACK
        ["n1:fromEndpoint>", "n2:fromOverlay>", "n2:fromEndpoint<", "n1:fromOverlay<"], // request, response
        ["n1:fromEndpoint>", "n2:fromOverlay>", "n2:fromEndpoint<", "n1:fromOverlay<", "n1:fromEndpoint>", "n2:fromOverlay>"], // FINs, last ACK
      ),
    );
    // The identity travels in the tunnel key, not beside the packet.
    const idA = s.identityOfPod(s.podByKey("default/a")!);
    expect(r.steps[0]!.tunnel?.tunnelId).toBe(idA);
    const ingress = r.steps[1]!;
    expect(ingress.srcIdentityIn).toBe(0);
    expect(ingress.tunnel?.tunnelId).toBe(idA);
    expect(ingress.trace.srcIdentity).toBe(idA);
    expect(r.events.filter((e) => e.event === "to-overlay")).toHaveLength(8);
    expect(r.events.filter((e) => e.event === "to-overlay").every((e) => e.tunnel?.protocol === "VXLAN")).toBe(true);
    expect(r.events.filter((e) => e.event === "from-overlay").every((e) => e.node_name === "n2" || e.is_reply)).toBe(true);
    expect(r.ingress?.rules[0]).toMatchObject({ name: "b-from-a", element: "ingress[0]" });
    s.close();
  });

  it("plays UDP, SCTP and ICMP echo as request and reply", async () => {
    const s = await sim();
    for (const [protocol, extra] of [["UDP", {}], ["SCTP", {}], ["ICMP", { icmp: { type: 8, code: 0 }, port: 8 }]] as const) {
      const r = s.runFlow(flow({ protocol, ...extra }));
      expect(r.verdict).toBe("allowed");
      expect(r.steps.map((x) => x.reply)).toEqual([false, false, true, true]);
    }
    s.close();
  });

  it("stops at the first drop and reports the policy drop at ingress", async () => {
    const s = await sim();
    const r = s.runFlow(flow({ from: { pod: "default/b" }, to: { pod: "default/a" } }));
    expect(r.verdict).toBe("allowed"); // a has no policy
    const d = s.runFlow(flow({ from: { entity: "world" }, to: { pod: "default/b" } }));
    expect(d.verdict).toBe("denied");
    expect(d.steps).toHaveLength(1);
    expect(d.events.at(-1)).toMatchObject({ verdict: "DROPPED", drop_reason: 133, traffic_direction: "INGRESS" });
    s.close();
  });

  it("gives reserved sources their identity: health allowed, remote-node denied", async () => {
    const s = await sim();
    expect(s.runFlow(flow({ from: { entity: "health" } })).verdict).toBe("allowed");
    const r = s.runFlow(flow({ from: { entity: "remote-node" } }));
    expect(r.verdict).toBe("denied");
    expect(r.steps[0]!.trace.srcIdentity).toBe(6);
    s.close();
  });

  it("a pod whose status.podIP is a reserved entity's modelled address (.2, health) keeps its own identity there", async () => {
    // An agent's IPAM hands out .2 first, and `ciliate check` on its manifests must judge that pod as the pod.
    const text = MANIFESTS.replace("spec: { nodeName: n1, containers: [{ name: c }] }", "spec: { nodeName: n1, containers: [{ name: c }] }\nstatus: { podIP: 10.244.0.2 }");
    const c = buildCluster(parseManifestText(text, "t.yaml"));
    expect(c.pods.find((p) => p.key === "default/a")!.ip).toBe("10.244.0.2");
    // Without the overlay the receiving node looks the source's identity up in its ipcache by address.
    const s = await Simulation.create(c, compileClusterPolicy(c), { tunnel: "disabled" });
    const r = s.runFlow(flow({}));
    expect(r.verdict).toBe("allowed");
    expect(r.steps[1]!.srcIdentityIn).toBe(0);
    expect(r.steps[1]!.trace.srcIdentity).toBe(s.identityOfPod(s.podByKey("default/a")!));
    // The other node's .2 is still health's.
    expect(s.runFlow(flow({ from: { entity: "health" } })).verdict).toBe("allowed");
    s.close();
  });

  it("is deterministic and the js engine agrees with wasm", async () => {
    const [a, b, j] = [await sim(), await sim(), await sim("js")];
    const strip = (r: ReturnType<Simulation["runFlow"]>) => r.events.map((e) => JSON.stringify(e));
    const f = flow({});
    const ra = strip(a.runFlow(f));
    expect(ra.length).toBeGreaterThan(10);
    expect(strip(b.runFlow(f))).toEqual(ra);
    expect(strip(j.runFlow(f))).toEqual(ra);
    a.close();
    b.close();
    j.close();
  });
});
