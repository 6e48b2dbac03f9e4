/*
 * host/service-map.ts: the graph `ciliate ui` draws, built from flows. The Star Wars scenario played by the
 * simulator (every event as an Observer API would send it) must give its workloads, the deathstar service
 * and the verdict of each edge with the rule that decided; hand-made Hubble flows (no `ciliate` key, as
 * from Cilium's own Hubble) pin what the scenario does not reach: denying rules named by Hubble policies,
 * entities, replies, workloads named by pod name, eviction keeping the counts.
 */
import fc from "fast-check";
import { describe, expect, it } from "vitest";
import { Diagnostics } from "../../policy/index.ts";
import { ServiceMap, workloadOfPodName, type MapFlowInput } from "../../host/service-map.ts";
import { addSimulatedFlows } from "../../sim/analysis/service-map.ts";
import { loadFrom } from "../../sim/load.ts";
import { loadManifests } from "../../sim/manifests.ts";
import { Simulation } from "../../sim/simulator.ts";
import { ROOT } from "../cli/run.ts";

async function starwars(only?: string[]): Promise<ServiceMap> {
  const d = new Diagnostics(false, () => {});
  const l = loadFrom(loadManifests([`${ROOT}/scenarios/starwars`], d), {}, d);
  const sim = await Simulation.create(l.cluster, l.policy, { engine: "js" });
  const map = new ServiceMap();
  try {
    addSimulatedFlows(map, sim, l.cluster.traffic.filter((f) => !only || only.includes(f.name)));
  } finally {
    sim.close();
  }
  return map;
}

const TIE = "workload:default/tiefighter";
const XWING = "workload:default/xwing";
const DS = "workload:default/deathstar";
const SVC = "service:default/deathstar";

describe("service map of the Star Wars scenario", () => {
  it("draws the workloads, the service and one edge per hop, coloured by verdict", async () => {
    const g = (await starwars()).graph();
    expect(g.namespaces).toEqual(["default"]);
    expect(g.nodes.map((n) => [n.id, n.kind, n.members])).toEqual([
      [SVC, "service", []],
      [DS, "workload", ["deathstar-0", "deathstar-1"]],
      [TIE, "workload", ["tiefighter"]],
      [XWING, "workload", ["xwing"]],
    ]);
    const edges = Object.fromEntries(g.edges.map((e) => [e.id, [e.status, e.forwarded, e.dropped, e.ports.join(",")]]));
    expect(edges).toEqual({
      [`${SVC}->${DS}`]: ["mixed", 1, 2, "80/TCP"],
      [`${TIE}->${SVC}`]: ["mixed", 1, 1, "80/TCP"],
      [`${XWING}->${SVC}`]: ["dropped", 0, 1, "80/TCP"],
    });
    expect(g.flows).toBeGreaterThan(40);
  });

  it("only the landing flows: tiefighter's edge is forwarded, xwing's dropped", async () => {
    const g = (await starwars(["tiefighter-lands", "xwing-lands"])).graph();
    expect(g.edges.find((e) => e.id === `${TIE}->${SVC}`)?.status).toBe("forwarded");
    expect(g.edges.find((e) => e.id === `${XWING}->${SVC}`)?.status).toBe("dropped");
  });

  it("each connection of an edge carries its deciding rule, events and the simulator's explanation", async () => {
    const m = await starwars();
    const [x] = m.connections(`${XWING}->${SVC}`);
    expect(x).toMatchObject({ verdict: "DROPPED", flowName: "xwing-lands", port: "80/TCP", client: "default/xwing", service: "default/deathstar" });
    expect(x!.server).toMatch(/^default\/deathstar-[01] via default\/deathstar$/);
    expect(x!.decidedBy).toBe("no rule allows it (default deny, POLICY_DENIED)");
    expect(x!.explanation).toMatch(/^DENIED — .*no entry allows identity 258/);
    expect(x!.events.some((l) => l.includes("Policy denied DROPPED"))).toBe(true);
    const [lands, exhaust] = m.connections(`${TIE}->${SVC}`);
    expect(lands).toMatchObject({ verdict: "FORWARDED", flowName: "tiefighter-lands" });
    expect(lands!.decidedBy).toBe("egress: allowed by derived allow-any-egress; ingress: allowed by CiliumNetworkPolicy default/rule1 rule 0 ingress[0]");
    expect(lands!.l7).toEqual(["HTTP/1.1 POST http://deathstar.default.svc.cluster.local/v1/request-landing", "HTTP/1.1 200 0ms (POST http://deathstar.default.svc.cluster.local/v1/request-landing)"]);
    expect(exhaust).toMatchObject({ verdict: "DROPPED", flowName: "tiefighter-exhaust-port" });
    expect(exhaust!.decidedBy).toBe("L7 request refused by the proxy (HTTP/1.1 PUT http://deathstar.default.svc.cluster.local/v1/exhaust-port); L3/L4 allowed by CiliumNetworkPolicy default/rule1 rule 0 ingress[0]");
    // The service → backend edge holds the same three connections.
    expect(m.connections(`${SVC}->${DS}`).map((c) => c.flowName)).toEqual(["tiefighter-lands", "xwing-lands", "tiefighter-exhaust-port"]);
  });
});

/** A flow as Cilium's Hubble sends it (no `ciliate` key). */
function hubble(o: { src: object; dst: object; sport?: number; dport?: number; verdict?: string; type?: number; reply?: boolean; extra?: object; ip?: [string, string] }): MapFlowInput {
  const [s, d] = o.ip ?? ["10.0.0.1", "10.0.0.2"];
  return {
    flow: {
      time: "2026-01-01T00:00:00Z",
      verdict: o.verdict ?? "FORWARDED",
      IP: { source: s, destination: d, ipVersion: "IPv4" },
      l4: { TCP: { source_port: o.sport ?? 40000, destination_port: o.dport ?? 80 } },
      source: o.src,
      destination: o.dst,
      event_type: { type: o.type ?? 5 },
      is_reply: o.reply ?? false,
      Summary: "TCP Flags: SYN",
      ...o.extra,
    } as MapFlowInput["flow"],
    node_name: "node-1",
  };
}
const pod = (ns: string, name: string, labels: string[] = []) => ({ identity: 300, namespace: ns, pod_name: name, labels: [`k8s:io.kubernetes.pod.namespace=${ns}`, ...labels] });

describe("service map of Hubble flows", () => {
  it("a denying policy named by Hubble's Policy message decides; egress allowed + ingress denied is one dropped connection", () => {
    const m = new ServiceMap();
    const a = pod("shop", "web-7d4b9c8f6-x2x9q");
    const b = pod("db", "pg-0", ["k8s:app=postgres"]);
    m.add(hubble({ src: a, dst: b, extra: { traffic_direction: "EGRESS", egress_allowed_by: [{ kind: "NetworkPolicy", namespace: "shop", name: "out" }] } }));
    m.add(hubble({ src: a, dst: b, verdict: "DROPPED", extra: { traffic_direction: "INGRESS", drop_reason_desc: "POLICY_DENY", ingress_denied_by: [{ kind: "CiliumNetworkPolicy", namespace: "db", name: "lockdown" }] } }));
    const g = m.graph();
    expect(g.namespaces).toEqual(["db", "shop"]);
    expect(g.edges).toEqual([{ id: "workload:shop/web->workload:db/postgres", from: "workload:shop/web", to: "workload:db/postgres", status: "dropped", forwarded: 0, dropped: 1, ports: ["80/TCP"] }]);
    expect(m.connections(g.edges[0]!.id)[0]!.decidedBy).toBe("ingress: denied by CiliumNetworkPolicy db/lockdown");
  });

  it("one connection across two nodes: the service from the translating node, the backend and the drop from the other", () => {
    const m = new ServiceMap();
    const client = pod("default", "xwing", ["k8s:app.kubernetes.io/name=xwing"]);
    const backend = pod("default", "deathstar-1", ["k8s:app.kubernetes.io/name=deathstar"]);
    const svc = { destination_service: { name: "deathstar", namespace: "default" } };
    m.add(hubble({ src: client, dst: { identity: 2, labels: ["reserved:world"] }, ip: ["10.0.0.1", "10.96.0.10"], extra: { ...svc, traffic_direction: "EGRESS", policy_match_type: 4 } }));
    m.add(hubble({ src: client, dst: backend, ip: ["10.0.0.1", "10.0.1.7"], verdict: "DROPPED", type: 1, extra: { node_name: "node-2", drop_reason_desc: "POLICY_DENIED" } }));
    const g = m.graph();
    expect(g.nodes.map((n) => n.id)).toEqual(["service:default/deathstar", "workload:default/deathstar", "workload:default/xwing"]);
    expect(g.edges.map((e) => [e.id, e.status])).toEqual([
      ["service:default/deathstar->workload:default/deathstar", "dropped"],
      ["workload:default/xwing->service:default/deathstar", "dropped"],
    ]);
    expect(m.connections("workload:default/xwing->service:default/deathstar")[0]!.server).toBe("default/deathstar-1 via default/deathstar");
  });

  it("a verdict that names no policy (an agent's datapath record) is told by its match type, egress first", () => {
    const m = new ServiceMap();
    const a = pod("default", "client-0");
    const b = pod("default", "server-0");
    m.add(hubble({ src: a, dst: b, extra: { traffic_direction: "INGRESS", policy_match_type: 2, node_name: "node-2" } }));
    m.add(hubble({ src: a, dst: b, extra: { traffic_direction: "EGRESS", policy_match_type: 4 } }));
    const [c] = m.connections("workload:default/client->workload:default/server");
    expect(c!.decidedBy).toBe("egress: allowed by an all match (the flow names no policy); ingress: allowed by an L3-L4 match (the flow names no policy)");
  });

  it("replies count on the connection they answer; entities are drawn by their reserved label", () => {
    const m = new ServiceMap();
    const web = pod("shop", "web-1", ["k8s:app.kubernetes.io/name=web"]);
    const world = { identity: 2, labels: ["reserved:world"] };
    const host = { identity: 1, labels: ["reserved:host"] };
    m.add(hubble({ src: world, dst: web, ip: ["203.0.113.9", "10.0.0.2"], sport: 5555, type: 4 }));
    m.add(hubble({ src: web, dst: world, ip: ["10.0.0.2", "203.0.113.9"], sport: 80, dport: 5555, reply: true, type: 4 }));
    m.add(hubble({ src: host, dst: web, ip: ["10.0.0.254", "10.0.0.2"], sport: 6000, type: 4 }));
    m.add(hubble({ src: { identity: 16777217, labels: ["cidr:198.51.100.0/24"] }, dst: web, ip: ["198.51.100.7", "10.0.0.2"], verdict: "DROPPED", type: 1, extra: { drop_reason_desc: "POLICY_DENIED" } }));
    const g = m.graph();
    expect(g.nodes.map((n) => [n.id, n.members])).toEqual([
      ["entity:host", ["10.0.0.254"]],
      ["entity:world", ["198.51.100.7", "203.0.113.9"]],
      ["workload:shop/web", ["web-1"]],
    ]);
    expect(g.edges.map((e) => [e.id, e.status, e.forwarded, e.dropped])).toEqual([
      ["entity:host->workload:shop/web", "forwarded", 1, 0],
      ["entity:world->workload:shop/web", "mixed", 1, 1],
    ]);
    const conns = m.connections("entity:world->workload:shop/web");
    expect(conns.map((c) => [c.client, c.events.length, c.decidedBy])).toEqual([
      ["203.0.113.9 (world)", 2, "no policy decision seen (trace events only)"],
      ["198.51.100.7 (world)", 1, "no rule allows it (default deny, POLICY_DENIED)"],
    ]);
  });

  it("names workloads by app label, else by pod name without the controller's suffix", () => {
    expect(["web-7d4b9c8f6-x2x9q", "db-0", "api-5c9mz", "standalone", "my-pod"].map(workloadOfPodName)).toEqual(["web", "db", "api", "standalone", "my-pod"]);
  });

  const ep = fc.constantFrom(pod("a", "x-0"), pod("a", "y-0"), pod("b", "z-0"), { identity: 2, labels: ["reserved:world"] });
  const flow = fc.record({ src: ep, dst: ep, sport: fc.integer({ min: 1000, max: 1005 }), type: fc.constantFrom(1, 4, 5), verdict: fc.constantFrom("FORWARDED", "DROPPED") });
  const input = (f: { src: object; dst: object; sport: number; type: number; verdict: string }) => hubble({ ...f, verdict: f.type === 1 ? "DROPPED" : f.type === 4 ? "FORWARDED" : f.verdict });

  it("always: every connection is on its edge once, the counts add up and the status follows them", () => {
    fc.assert(
      fc.property(fc.array(flow, { maxLength: 40 }), (flows) => {
        const m = new ServiceMap();
        for (const f of flows) m.add(input(f));
        const g = m.graph();
        expect(g.flows).toBe(flows.length);
        let conns = 0;
        for (const e of g.edges) {
          const cs = m.connections(e.id);
          conns += cs.length;
          expect(cs.length).toBe(e.forwarded + e.dropped);
          expect(cs.filter((c) => c.verdict === "DROPPED").length).toBe(e.dropped);
          expect(e.status).toBe(e.dropped === 0 ? "forwarded" : e.forwarded === 0 ? "dropped" : "mixed");
        }
        // One connection per (client, port), none on two edges (no services here).
        expect(conns).toBe(new Set(flows.map((f) => `${f.sport}`)).size);
      }),
    );
  });

  it("always: forgetting old connections keeps the edges and their counts; only the held ones are listed", () => {
    fc.assert(
      fc.property(fc.array(flow, { maxLength: 40 }), fc.integer({ min: 1, max: 8 }), (flows, cap) => {
        const full = new ServiceMap();
        const small = new ServiceMap({ maxConnections: cap });
        // Every flow its own connection (a distinct client port), so forgetting one never splits another.
        flows.forEach((f, i) => {
          full.add(input({ ...f, sport: 1000 + i }));
          small.add(input({ ...f, sport: 1000 + i }));
        });
        expect(small.graph()).toEqual(full.graph());
        const held = small.graph().edges.reduce((n, e) => n + small.connections(e.id).length, 0);
        expect(held).toBe(Math.min(cap, flows.length));
      }),
    );
  });
});
