// The simulator's Cluster Mesh model (sim/mesh.ts) on the bundled two-cluster scenario (scenarios/clustermesh,
// the topology of tests/agent/e2e-clustermesh.test.ts): identities numbered as each cluster's allocator
// would (cluster id in bits 16–23), the same number for a label set in every cluster's view, cross-cluster
// verdicts by io.cilium.k8s.policy.cluster, a global service balanced over both clusters, failover with
// affinity local, and bad input refused with one line naming the file and field (K1–K3).
import { readFileSync } from "node:fs";
import { describe, expect, it } from "vitest";
import { clusterIdentityRange, clusterIdOf } from "../../host/identity-scopes.ts";
import { loadManifests } from "../../sim/manifests.ts";
import { loadFrom } from "../../sim/load.ts";
import { MeshSimulation } from "../../sim/mesh.ts";
import { parseManifests, type ManifestObject } from "../../policy/index.ts";

const DIR = "scenarios/clustermesh";
const scenario = () => loadManifests([DIR], () => {});
const flow = (l: ReturnType<typeof loadFrom>, name: string) => l.cluster.traffic.find((f) => f.name === name)!;

describe("Cluster Mesh in the simulator", () => {
  it("numbers each cluster's identities in its own range, the same in every cluster's view", () => {
    const l = loadFrom(scenario(), {});
    expect(l.mesh!.clusters.map((c) => [c.name, c.id])).toEqual([["east", 1], ["west", 2]]);
    const [east, west] = l.mesh!.clusters;
    const id = (c: typeof east, key: string) => c!.policy.identities.podIdentity.get(key)!;
    // A fresh allocator of cluster 1 hands out 65536, 65537, … in label-set order (app=api, client, web).
    expect([id(east, "default/eapi"), id(east, "default/eclient"), id(east, "default/eweb")]).toEqual([65536, 65537, 65538]);
    for (const p of ["wapi", "wclient", "wweb"]) {
      expect(clusterIdOf(id(west, `default/${p}`))).toBe(2);
      expect(id(east, `west/default/${p}`)).toBe(id(west, `default/${p}`));
    }
    for (const p of ["eapi", "eclient", "eweb"]) expect(id(west, `east/default/${p}`)).toBe(id(east, `default/${p}`));
    const r2 = clusterIdentityRange(2);
    expect(id(west, "default/wclient")).toBeGreaterThanOrEqual(r2.min);
  });

  it("plays cross-cluster flows through both clusters' engines: allowed and denied by the cluster label", async () => {
    const l = loadFrom(scenario(), {});
    const sim = await MeshSimulation.create(l.mesh!);
    try {
      const ok = sim.runFlow(flow(l, "east-client-to-west-web"));
      expect(ok.verdict).toBe("allowed");
      expect(ok.ingress?.node).toBe("west/node-4");
      expect(ok.ingress?.rules.map((r) => r.name)).toEqual(["web-from-east"]);
      expect(ok.events.some((e) => e.source.cluster_name === "east" && e.destination.cluster_name === "west" && e.event_type?.type !== undefined)).toBe(true);
      const denied = sim.runFlow(flow(l, "west-client-to-west-web"));
      expect(denied.verdict).toBe("denied");
      expect(denied.ingress?.verdict).toBe("denied");
      expect(denied.ingress?.reason).toMatch(/west\/default\/wweb is selected by a policy in ingress/);
    } finally {
      sim.close();
    }
  });

  it("balances the global service over both clusters and fails over with affinity local", async () => {
    const l = loadFrom(scenario(), {});
    const sim = await MeshSimulation.create(l.mesh!);
    try {
      const web = flow(l, "east-client-to-global-web");
      const seen = new Set<string>();
      for (let i = 0; i < 12; i++) seen.add(sim.runFlow({ ...web, count: 1 }).backend!.pod!);
      expect([...seen].sort()).toEqual(["east/default/eweb", "west/default/wweb"]);
      // api: affinity local, east's api pod not ready → west's api serves.
      const api = sim.runFlow(flow(l, "east-client-to-api-failover"));
      expect(api.verdict).toBe("allowed");
      expect(api.backend?.pod).toBe("west/default/wapi");
    } finally {
      sim.close();
    }
    // With east's api pod ready, affinity local keeps east's clients on it.
    const ready = scenario().map((o) => (o.kind === "Pod" && o.metadata.name === "eapi" ? { ...o, raw: { ...o.raw, status: {} } } : o));
    const l2 = loadFrom(ready, {});
    const sim2 = await MeshSimulation.create(l2.mesh!);
    try {
      for (let i = 0; i < 4; i++) expect(sim2.runFlow(flow(l2, "east-client-to-api-failover")).backend?.pod).toBe("east/default/eapi");
    } finally {
      sim2.close();
    }
  });

  const config = (name: string, id: unknown, cidr: string) => `apiVersion: ciliate.dev/v1alpha1
kind: Config
metadata: {name: ${name}}
spec: {clusterName: ${name}, clusterId: ${JSON.stringify(id)}, podCIDR: ${cidr}}
`;
  const objs = (text: string): ManifestObject[] => parseManifests(text, "mesh.yaml").objects;

  it("refuses bad clusters with one line naming the file and field", () => {
    const two = (a: unknown, b: unknown) => `${config("east", a, "10.1.0.0/16")}---\n${config("west", b, "10.2.0.0/16")}`;
    expect(() => loadFrom(objs(two(1, 1)), {})).toThrow(/^mesh\.yaml: document 1: Config west spec\.clusterId: clusterId 1 of cluster west is already cluster east's/);
    expect(() => loadFrom(objs(two(1, 256)), {})).toThrow(/^mesh\.yaml: document 1: Config west spec\.clusterId: invalid clusterId 256 \(an integer 1-255/);
    expect(() => loadFrom(objs(two(0, 2)), {})).toThrow(/^mesh\.yaml: document 0: Config east spec\.clusterId: invalid clusterId 0/);
    const unknown = `${two(1, 2)}---\napiVersion: v1\nkind: Pod\nmetadata: {name: p, annotations: {ciliate.dev/cluster: north}}\n`;
    expect(() => loadFrom(objs(unknown), {})).toThrow(/^mesh\.yaml: document 2: Pod p metadata\.annotations\.ciliate\.dev\/cluster: unknown cluster "north" \(the scenario's clusters: east, west/);
    const overlap = `${config("east", 1, "10.1.0.0/16")}---\n${config("west", 2, "10.1.0.0/16")}`;
    expect(() => loadFrom(objs(overlap), {})).toThrow(/cluster west's node node-1 \(pod CIDR 10\.1\.0\.0\/24\) overlaps cluster east's node node-1/);
    for (const f of [() => loadFrom(objs(two(1, 1)), {}), () => loadFrom(objs(unknown), {})]) {
      try {
        f();
      } catch (e) {
        expect((e as Error).message).not.toContain("\n");
      }
    }
  });

  it("leaves single-cluster scenarios as they were", () => {
    const l = loadFrom(loadManifests(["scenarios/starwars"], () => {}), {});
    expect(l.mesh).toBeUndefined();
    expect(Math.min(...[...l.policy.identities.podIdentity.values()].filter((i) => i >= 256))).toBe(256);
    expect(readFileSync(`${DIR}/east.yaml`, "utf8")).toContain("clusterId: 1");
  });
});
