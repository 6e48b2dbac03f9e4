/*
 * Chaos on the agent's maps, with the real `ciliate agent` in a node namespace (three pods joined by
 * `ciliate cni`, bounded TCP from tests/agent/pod-tool.cjs):
 *   1. Pins removed under a running agent: every pin of the pin directory is unlinked while a connection is
 *      held. The maps live on (the programs hold them); the agent pins them again from its own fds within
 *      its check interval and counts it (ciliate_bpf_map_pin_repairs_total). A restart then reuses those
 *      very maps: its start reconcile adds nothing, the conntrack entries are still there and the held
 *      connection never loses a reply.
 *   2. A map filled to capacity: the endpoints (lxc) map is filled with entries nobody desired, then a pod
 *      is added. Its entry cannot be written (the map is full), the reconcile reports map errors (metric
 *      outcome map_errors) and the foreign entries are deleted; the retry with backoff then admits the pod,
 *      which reaches the server — no new manifest or CNI call needed.
 * Kernel suite: needs root, libbpf, bpffs and iproute2 (fails in CI without them); everything is removed in
 * afterAll.
 */
import { readdirSync, unlinkSync } from "node:fs";
import { join } from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { kernelSuite, openPinnedMap } from "../../datapath/index.ts";
import { MAP_SPECS } from "../../host/codecs.gen.ts";
import { cni, E2eNode, eventually, podYaml, serve, stopProcess, tool, toolAsync } from "./e2e-helpers.ts";

const suite = kernelSuite("agent-chaos-maps", ["root", "libbpf", "bpffs", "iproute2"]);
const PODS = ["client", "server", "late"];
const METRICS = "127.0.0.1:19973";
const h = new E2eNode({ prefix: "cim", nodeIp: "192.168.61.1", podCidr: "10.244.12.0/24", metricsAddr: METRICS, pods: PODS.map((name) => ({ name })) });
const NS = (n: string) => h.ns(n);

const POLICY = `apiVersion: cilium.io/v2
kind: CiliumNetworkPolicy
metadata: {name: web, namespace: default}
spec:
  endpointSelector: {matchLabels: {app: server}}
  ingress:
  - fromEndpoints: [{matchLabels: {role: client}}]
    toPorts: [{ports: [{port: "8080", protocol: TCP}]}]
`;
const PODS_YAML = [podYaml("client", "default", "app: client, role: client"), podYaml("server"), podYaml("late", "default", "app: late, role: client")].join("---\n");

const tcp = (from: string) => tool(NS(from), "tcp", h.podIp.get("server")!, 8080) as { ok: boolean };

/** The value of one metric series (0 when absent). */
function metric(text: string, series: string): number {
  const line = text.split("\n").find((l) => l.startsWith(`${series} `));
  return line ? Number(line.split(" ").pop()) : 0;
}

describe.skipIf(suite.skip)("ciliate agent: chaos on its maps (network namespaces)", () => {
  beforeAll(async () => {
    h.setUp({ "pods.yaml": PODS_YAML, "policy.yaml": POLICY });
    await h.startAgent();
    // "late" joins in the capacity test.
    for (const p of ["client", "server"]) {
      const r = cni(h.socket, "ADD", { containerId: `cim-${h.tag}-${p}`, netns: `/var/run/netns/${NS(p)}`, pod: p });
      expect(r.code, JSON.stringify(r.out)).toBe(0);
      h.podIp.set(p, (r.out.ips as { address: string }[])[0]!.address.split("/")[0]!);
    }
    h.children.push(serve(NS("server"), "server", 300_000));
    await new Promise((r) => setTimeout(r, 700));
  }, 60_000);

  afterAll(() => h.tearDown(), 60_000);

  it("pins removed under the running agent are restored, and a restart reuses the same maps", async () => {
    expect(tcp("client").ok, h.log).toBe(true);
    const held = toolAsync(NS("client"), "hold", h.podIp.get("server")!, 8080, 12_000);
    await new Promise((r) => setTimeout(r, 500));
    const pins = readdirSync(h.pin).filter((n) => n.startsWith("ciliate_"));
    expect(pins.length).toBeGreaterThan(5);
    for (const p of pins) unlinkSync(join(h.pin, p));
    expect(readdirSync(h.pin).filter((n) => n.startsWith("ciliate_"))).toEqual([]);

    // The agent checks every max(resync, 1 s).
    await eventually(() => readdirSync(h.pin).filter((n) => n.startsWith("ciliate_")).length === pins.length, 10_000, () => h.log);
    expect(readdirSync(h.pin).filter((n) => n.startsWith("ciliate_")).sort()).toEqual([...pins].sort());
    await eventually(() => /pins removed under .* were restored: /.test(h.log), 5_000, () => h.log);
    expect(metric(h.metrics(), "ciliate_bpf_map_pin_repairs_total")).toBe(pins.length);

    // The restored pins are the maps the programs use: a restart finds its state there.
    await stopProcess(h.agent);
    const from = h.log.length;
    await h.startAgent();
    await new Promise((r) => setTimeout(r, 1000));
    const after = h.log.slice(from);
    expect(after, after).not.toMatch(/reconcile \(start\): \+[1-9]/);
    const ct = openPinnedMap(join(h.pin, MAP_SPECS.Conntrack.bpfName), MAP_SPECS.Conntrack);
    try {
      expect(ct.count()).toBeGreaterThan(0);
    } finally {
      ct.raw.close();
    }
    expect(tcp("client").ok, h.log).toBe(true);
    const r = (await held) as { sent: number; recv: number; error: string | null };
    expect(r.error, JSON.stringify(r)).toBeNull();
    expect(r.recv, JSON.stringify(r)).toBe(r.sent);
    expect(r.sent).toBeGreaterThan(50);
  }, 90_000);

  it("a full endpoints map: map errors counted, foreign entries deleted, the retry admits the pod", async () => {
    const lxc = openPinnedMap(join(h.pin, MAP_SPECS.Endpoints.bpfName), MAP_SPECS.Endpoints);
    let foreign = 0;
    try {
      // Fill every free slot with endpoints nobody desired (172.16.0.0/12 is not this node's pod CIDR).
      const free = MAP_SPECS.Endpoints.maxEntries - lxc.count();
      const keys: Uint8Array[] = [];
      const values: Uint8Array[] = [];
      for (let i = 0; i < free; i++) {
        const addr = new Uint8Array(16);
        addr.set([172, 16 + (i >> 16), (i >> 8) & 255, i & 255]);
        keys.push(MAP_SPECS.Endpoints.key.encode({ addr, family: 4, key: 0, clusterId: 0 }));
        values.push(MAP_SPECS.Endpoints.value.encode({ ifindex: 1, epId: 60000, pad0: 0, flags: 0, secIdentity: 2, mac: new Uint8Array(6), nodeMac: new Uint8Array(6) }));
      }
      foreign = lxc.raw.updateBatch(keys, values);
      expect(lxc.count()).toBe(MAP_SPECS.Endpoints.maxEntries);
    } finally {
      lxc.raw.close();
    }
    expect(foreign).toBeGreaterThan(60_000);
    const before = metric(h.metrics(), 'ciliate_reconcile_total{outcome="map_errors"}');

    const from = h.log.length;
    const r = cni(h.socket, "ADD", { containerId: `cim-${h.tag}-late`, netns: `/var/run/netns/${NS("late")}`, pod: "late" });
    expect(r.code, JSON.stringify(r.out)).toBe(0);
    h.podIp.set("late", (r.out.ips as { address: string }[])[0]!.address.split("/")[0]!);

    // The ADD's reconcile could not write the new endpoint; the retry did.
    await eventually(() => tcp("late").ok, 20_000, () => h.log.slice(from));
    // The agent's output arrives through a pipe; tool() blocks this process while it runs.
    await eventually(() => /reconcile \(retry after map errors\): \+1 /.test(h.log.slice(from)), 5_000, () => h.log.slice(from));
    expect(h.log.slice(from)).toMatch(/map operations failed: Endpoints add: update of map ciliate_lxc_v1: .*E2BIG.*; retrying in 500 ms/);
    expect(metric(h.metrics(), 'ciliate_reconcile_total{outcome="map_errors"}')).toBeGreaterThan(before);
    const after = openPinnedMap(join(h.pin, MAP_SPECS.Endpoints.bpfName), MAP_SPECS.Endpoints);
    try {
      // Only what the agent wants is left: the three pods (and nothing of the foreign fill).
      const addrs = [...after.entries()].map(([k]) => [...k.addr.slice(0, 4)].join("."));
      expect(addrs.filter((a) => a.startsWith("172."))).toEqual([]);
      for (const p of ["client", "server", "late"]) expect(addrs).toContain(h.podIp.get(p));
    } finally {
      after.raw.close();
    }
    expect(tcp("client").ok, h.log).toBe(true);
  }, 90_000);
});
