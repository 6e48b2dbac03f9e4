// Load balancing as the simulator plays it through the core: Maglev spreads new connections, ClientIP
// affinity pins them, a terminating backend gets no new connection, and a service without backends drops
// with "Service backend not found".
import { describe, expect, it } from "vitest";
import { ciliate } from "./run.ts";

describe("lb scenario", () => {
  const r = ciliate("simulate", "-f", "scenarios/lb", "-o", "json");
  // The Traffic document's name is ciliate's own fact, beside Hubble's flow under `ciliate`.
  const flows = r.stdout
    .trim()
    .split("\n")
    .map((l) => JSON.parse(l))
    .map((j) => ({ ...j.flow, flow_name: j.ciliate?.flow_name }));
  const synTargets = (name: string) =>
    flows.filter((f) => f.flow_name === name && f.trace_observation_point === "TO_ENDPOINT" && !f.is_reply && f.l4.TCP?.flags?.SYN).map((f) => f.destination.pod_name);

  it("runs", () => expect([r.code, r.stderr]).toEqual([0, ""]));
  it("never opens a new connection to the terminating backend", () => {
    expect([...synTargets("client-to-web"), ...synTargets("client-to-web-sticky")]).not.toContain("web-old");
  });
  it("pins every connection of one client to one backend with ClientIP affinity", () => {
    const t = synTargets("client-to-web-sticky");
    expect(t).toHaveLength(3);
    expect(new Set(t).size).toBe(1);
  });
  it("delivers every connection to the Maglev service to a web replica", () => {
    const t = synTargets("client-to-web");
    expect(t).toHaveLength(3);
    for (const p of t) expect(p).toMatch(/^web-\d$/);
  });
  it("summarises one connection of a count > 1 flow: the last one's backend, and that backend's ingress verdict", () => {
    const text = ciliate("simulate", "-f", "scenarios/lb", "--flow", "client-to-web");
    const summary = text.stdout.split("\n").find((l) => l.startsWith("# client-to-web:"))!;
    const m = /^# client-to-web: ALLOWED — connection 3 of 3: service lb\/web \([^)]*\) → backend lb\/(web-\d):8080; egress: .*; ingress: no policy selects lb\/(web-\d) in ingress: allowed$/.exec(summary);
    expect(m, summary).not.toBeNull();
    expect(m![2]).toBe(m![1]);
    expect(m![1]).toBe(synTargets("client-to-web").at(-1));
  });
  it("drops traffic to a service without backends", () => {
    const drop = flows.find((f) => f.flow_name === "client-to-empty-service" && f.verdict === "DROPPED");
    expect(drop).toMatchObject({ drop_reason: 158, drop_reason_desc: "SERVICE_BACKEND_NOT_FOUND", destination_service: { name: "nothing-behind", namespace: "lb" } });
  });
});
