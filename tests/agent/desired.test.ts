/*
 * agent/desired.ts without a kernel: which pods become endpoints, and the agent's stable numbering —
 * identities, backend ids and reverse-NAT indexes keep their numbers when the cluster grows in ways that
 * renumber the simulator's (a new label set sorting first, a backend with a lower address).
 */
import { describe, expect, it } from "vitest";
import { MAP_SPECS } from "../../host/codecs.gen.ts";
import * as C from "../../host/constants.gen.ts";
import { computeDesired, type LocalEndpoint, type Numbering } from "../../agent/desired.ts";
import { StableIdentities, StableNumbers } from "../../agent/identities.ts";
import { planReconcile } from "../../agent/reconcile.ts";
import { parseManifestText } from "../../sim/manifests.ts";

const node = { name: "node-1", ip: "192.168.56.11", podCIDR: "10.244.1.0/24" };
const pod = (name: string, app: string) => `apiVersion: v1\nkind: Pod\nmetadata: {name: ${name}, namespace: default, labels: {app: ${app}}}\nspec: {containers: [{name: c, image: x, ports: [{containerPort: 8080}]}]}\n---\n`;
const svc = `apiVersion: v1\nkind: Service\nmetadata: {name: web, namespace: default}\nspec: {clusterIP: 10.96.0.10, selector: {role: web}, ports: [{port: 80, targetPort: 8080}]}\n---\n`;
const webPod = (name: string, app: string) => pod(name, app).replace(`app: ${app}}`, `app: ${app}, role: web}`);
const policy = `apiVersion: cilium.io/v2\nkind: CiliumNetworkPolicy\nmetadata: {name: p, namespace: default}\nspec:\n  endpointSelector: {matchLabels: {app: zzz}}\n  ingress: [{fromEndpoints: [{matchLabels: {app: mmm}}]}]\n`;

function numbering(): Numbering {
  return { identities: new StableIdentities(), backends: new StableNumbers(1, 0xffffffff), revNat: new StableNumbers(1, 0xffff) };
}

function desired(yaml: string, eps: LocalEndpoint[], n: Numbering) {
  return computeDesired(parseManifestText(yaml, "test.yaml"), node, eps, n);
}

describe("computeDesired", () => {
  it("makes endpoints only of pods with a local interface, leaves pending pods out, and turns on flow events", () => {
    const eps: LocalEndpoint[] = [{ epId: 7, pod: "default/mmm", ip: "10.244.1.2", ifindex: 42 }];
    const d = desired(pod("mmm", "mmm") + pod("zzz", "zzz") + policy, eps, numbering());
    const endpoints = [...d.maps.Endpoints.values()].map((e) => MAP_SPECS.Endpoints.value.decode(e.value));
    expect(endpoints).toMatchObject([{ epId: 7, ifindex: 42 }]);
    expect(d.cluster.pods.map((p) => p.key)).toEqual(["default/mmm"]); // zzz has no address yet: pending
    const cfg = MAP_SPECS.Config.value.decode([...d.maps.Config.values()][0]!.value);
    expect(cfg.flags & C.CONFIG_F_EVENTS).toBe(C.CONFIG_F_EVENTS);
  });

  it("passes --trace-sample to the datapath as the trace sampling rate", () => {
    const eps: LocalEndpoint[] = [{ epId: 7, pod: "default/mmm", ip: "10.244.1.2", ifindex: 42 }];
    const cfgOf = (n: Numbering) => MAP_SPECS.Config.value.decode([...desired(pod("mmm", "mmm"), eps, n).maps.Config.values()][0]!.value);
    expect(cfgOf({ ...numbering(), traceSample: 100 }).traceSampleRate).toBe(100);
    expect(cfgOf(numbering()).traceSampleRate).toBe(0);
  });

  it("says which rules every Policy entry's cookie stands for (what the agent's flows name), also after an incremental change", () => {
    const n = numbering();
    const eps: LocalEndpoint[] = [
      { epId: 1, pod: "default/mmm", ip: "10.244.1.2", ifindex: 2 },
      { epId: 2, pod: "default/zzz", ip: "10.244.1.3", ifindex: 3 },
    ];
    const check = (d: ReturnType<typeof desired>) => {
      const cookies = [...d.maps.Policy.values()].map((e) => MAP_SPECS.Policy.value.decode(e.value).cookie).filter((c) => c !== 0);
      expect(cookies.length).toBeGreaterThan(0);
      for (const c of cookies) expect(d.provenanceByCookie.get(c)?.length, `cookie ${c}`).toBeGreaterThan(0);
      return cookies.flatMap((c) => d.provenanceByCookie.get(c)!.map((p) => `${p.kind} ${p.namespace}/${p.name} ${p.element}`));
    };
    const a = desired(pod("mmm", "mmm") + pod("zzz", "zzz") + policy, eps, n);
    expect(check(a)).toContain("CiliumNetworkPolicy default/p ingress[0]");
    const b = computeDesired(parseManifestText(pod("mmm", "mmm") + pod("zzz", "zzz") + policy.replace("name: p,", "name: q,"), "test.yaml"), node, eps, n, { previous: a });
    expect(check(b)).toContain("CiliumNetworkPolicy default/q ingress[0]");
    expect(check(b)).not.toContain("CiliumNetworkPolicy default/p ingress[0]");
  });

  it("gives an endpoint without a Pod manifest an identity of its own", () => {
    const d = desired("", [{ epId: 1, pod: "default/lonely", ip: "10.244.1.9", ifindex: 3 }], numbering());
    expect(d.podIdentity.get("default/lonely")).toBeGreaterThanOrEqual(256);
  });

  it("keeps identities when a new label set that sorts first appears", () => {
    const n = numbering();
    const eps: LocalEndpoint[] = [
      { epId: 1, pod: "default/mmm", ip: "10.244.1.2", ifindex: 2 },
      { epId: 2, pod: "default/zzz", ip: "10.244.1.3", ifindex: 3 },
    ];
    const a = desired(pod("mmm", "mmm") + pod("zzz", "zzz") + policy, eps, n);
    const b = desired(pod("aaa", "aaa") + pod("mmm", "mmm") + pod("zzz", "zzz") + policy, [...eps, { epId: 3, pod: "default/aaa", ip: "10.244.1.4", ifindex: 4 }], n);
    expect(b.podIdentity.get("default/mmm")).toBe(a.podIdentity.get("default/mmm"));
    expect(b.podIdentity.get("default/zzz")).toBe(a.podIdentity.get("default/zzz"));
    // The policy entries of zzz are the same bytes: nothing to rewrite on the node.
    const zzzPolicy = (d: typeof a) => [...d.maps.Policy.keys()].filter((k) => MAP_SPECS.Policy.key.decode(Buffer.from(k, "hex")).epId === 2).sort();
    expect(zzzPolicy(b)).toEqual(zzzPolicy(a));
    // and the ipcache agrees with the endpoint map.
    const ipc = [...b.maps.Ipcache.values()].map((e) => [MAP_SPECS.Ipcache.key.decode(e.key), MAP_SPECS.Ipcache.value.decode(e.value)] as const);
    const aaaEntry = ipc.find(([k]) => k.addr[0] === 10 && k.addr[3] === 4)!;
    expect(aaaEntry[1].secIdentity).toBe(b.podIdentity.get("default/aaa"));
  });

  it("keeps backend ids and reverse-NAT indexes when a backend with a lower address joins", () => {
    const n = numbering();
    const ep = (name: string, ip: string, id: number): LocalEndpoint => ({ epId: id, pod: `default/${name}`, ip, ifindex: id });
    const backends = (d: ReturnType<typeof desired>) => new Map([...d.maps.Backends.values()].map((e) => [MAP_SPECS.Backends.value.decode(e.value).addr[3], MAP_SPECS.Backends.key.decode(e.key).backendId]));
    const revnat = (d: ReturnType<typeof desired>) => [...d.maps.RevNat.values()].map((e) => MAP_SPECS.RevNat.key.decode(e.key).revNatIndex);
    const a = desired(webPod("w2", "w") + svc, [ep("w2", "10.244.1.20", 1)], n);
    const b = desired(webPod("w1", "w") + webPod("w2", "w") + svc, [ep("w2", "10.244.1.20", 1), ep("w1", "10.244.1.10", 2)], n);
    expect(backends(b).get(20)).toBe(backends(a).get(20));
    expect(backends(b).get(10)).not.toBe(backends(b).get(20));
    expect(revnat(b)).toEqual(revnat(a));
    // The service's slots point at the stable ids.
    const slotIds = [...b.maps.Services.values()].map((e) => [MAP_SPECS.Services.key.decode(e.key), MAP_SPECS.Services.value.decode(e.value)] as const).filter(([k]) => k.backendSlot > 0).map(([, v]) => v.backendId).sort();
    expect(slotIds).toEqual([...backends(b).values()].sort());
  });

  it("keeps an endpoint over the policy-map budget at its last good policy, and reports it", () => {
    const n = numbering();
    const eps: LocalEndpoint[] = [
      { epId: 1, pod: "default/mmm", ip: "10.244.1.2", ifindex: 2 },
      { epId: 2, pod: "default/zzz", ip: "10.244.1.3", ifindex: 3 },
    ];
    const manyPorts = `apiVersion: cilium.io/v2\nkind: CiliumNetworkPolicy\nmetadata: {name: p, namespace: default}\nspec:\n  endpointSelector: {matchLabels: {app: zzz}}\n  ingress: [{fromEndpoints: [{matchLabels: {app: mmm}}], toPorts: [{ports: [${Array.from({ length: 40 }, (_, i) => `{port: "${1000 + i}", protocol: TCP}`).join(", ")}]}]}]\n`;
    const good = computeDesired(parseManifestText(pod("mmm", "mmm") + pod("zzz", "zzz") + policy, "a.yaml"), node, eps, n, { policyMapMax: 20 });
    expect(good.overflow).toEqual([]);
    const over = computeDesired(parseManifestText(pod("mmm", "mmm") + pod("zzz", "zzz") + manyPorts, "b.yaml"), node, eps, n, { policyMapMax: 20, previous: good });
    expect(over.overflow.map((e) => e.endpoint)).toEqual(["default/zzz"]);
    const ofEp = (d: typeof good, id: number) => [...d.maps.Policy.keys()].filter((k) => MAP_SPECS.Policy.key.decode(Buffer.from(k, "hex")).epId === id).sort();
    expect(ofEp(over, 2)).toEqual(ofEp(good, 2));
    expect(ofEp(over, 1).length).toBeGreaterThan(0);
  });

  it("after a policy change, reuses the other maps and equals a full recomputation with the same numbering", () => {
    const n = numbering();
    const eps: LocalEndpoint[] = [
      { epId: 1, pod: "default/mmm", ip: "10.244.1.2", ifindex: 2 },
      { epId: 2, pod: "default/zzz", ip: "10.244.1.3", ifindex: 3 },
      { epId: 3, pod: "default/web", ip: "10.244.1.4", ifindex: 4 },
    ];
    const other = `apiVersion: cilium.io/v2\nkind: CiliumNetworkPolicy\nmetadata: {name: q, namespace: default}\nspec:\n  endpointSelector: {matchLabels: {app: mmm}}\n  ingress: [{fromEndpoints: [{matchLabels: {app: zzz}}], toPorts: [{ports: [{port: "8080", protocol: TCP}]}]}]\n---\n`;
    const base = pod("mmm", "mmm") + pod("zzz", "zzz") + webPod("web", "web") + svc + other;
    const a = computeDesired(parseManifestText(base + policy, "a.yaml"), node, eps, n);
    const changed = policy.replace("{matchLabels: {app: mmm}}]}]", '{matchLabels: {app: mmm}}], toPorts: [{ports: [{port: "443", protocol: TCP}]}]}]');
    const objects = parseManifestText(base + changed, "b.yaml");
    const b = computeDesired(objects, node, eps, n, { previous: a });
    for (const m of ["Config", "Ipcache", "Endpoints", "Services", "Backends", "RevNat"] as const) expect(b.maps[m]).toBe(a.maps[m]);
    // Only the entries of zzz (epId 2), the endpoint the changed policy selects, are to be written.
    const ops = planReconcile(a.maps, b.maps);
    expect(ops.length).toBeGreaterThan(0);
    expect(new Set(ops.map((o) => `${o.map}:${MAP_SPECS.Policy.key.decode(o.key).epId}`))).toEqual(new Set(["Policy:2"]));
    // A full computation (the memo's inputs made not to match) gives the same bytes.
    const full = computeDesired(objects, node, eps, n, { previous: { maps: a.maps, memo: { ...a.memo!, inputs: { head: "", objects: [] } } } });
    const bytes = (d: typeof a) => Object.fromEntries(Object.entries(d.maps).map(([m, c]) => [m, [...c].map(([k, e]) => [k, Buffer.from(e.value).toString("hex")]).sort()]));
    expect(bytes(b)).toEqual(bytes(full));
  });

  it("after a compute that threw past the compile, the next one still equals a full recomputation", () => {
    const n = numbering();
    const eps: LocalEndpoint[] = [
      { epId: 1, pod: "default/mmm", ip: "10.244.1.2", ifindex: 2 },
      { epId: 2, pod: "default/zzz", ip: "10.244.1.3", ifindex: 3 },
    ];
    const l7 = (name: string, rules: string) => `apiVersion: cilium.io/v2\nkind: CiliumNetworkPolicy\nmetadata: {name: ${name}, namespace: default}\nspec:\n  endpointSelector: {matchLabels: {app: mmm}}\n  ingress: [{toPorts: [{ports: [{port: "80", protocol: TCP}], rules: ${rules}}]}]\n---\n`;
    const conflict = l7("h", "{http: [{method: GET}]}") + l7("k", "{kafka: [{topic: t}]}");
    const base = pod("mmm", "mmm") + pod("zzz", "zzz");
    const a = computeDesired(parseManifestText(base + policy, "a.yaml"), node, eps, n);
    const changed = policy.replace("{matchLabels: {app: mmm}}]}]", '{matchLabels: {app: mmm}}], toPorts: [{ports: [{port: "443", protocol: TCP}]}]}]');
    // zzz's policy changes here, and the L7 conflict on mmm refuses the whole input after the compile.
    expect(() => computeDesired(parseManifestText(conflict + base + changed, "b.yaml"), node, eps, n, { previous: a })).toThrow();
    const objects = parseManifestText(base + changed, "c.yaml");
    const c = computeDesired(objects, node, eps, n, { previous: a });
    const full = computeDesired(objects, node, eps, n, { previous: { maps: a.maps, memo: { ...a.memo!, inputs: { head: "", objects: [] } } } });
    const bytes = (d: typeof a) => Object.fromEntries(Object.entries(d.maps).map(([m, x]) => [m, [...x].map(([k, e]) => [k, Buffer.from(e.value).toString("hex")]).sort()]));
    expect(bytes(c)).toEqual(bytes(full));
    expect(bytes(c)).not.toEqual(bytes(a));
  });

  it("throws on invalid input (the agent then keeps its running state)", () => {
    const bad = `apiVersion: cilium.io/v2\nkind: CiliumNetworkPolicy\nmetadata: {name: p, namespace: default}\nspec: {endpointSelector: {matchLabels: {app: x}}, ingress: [{fromEndpoints: 7}]}\n`;
    expect(() => desired(bad, [], numbering())).toThrow();
  });
});
