// Property test of the incremental compiler (compile.ts PolicyCompiler): after every step of a random
// sequence of changes — policies added, changed and deleted, pods added and removed, pod labels and ports
// changed — one long-lived compiler's result equals a fresh full compilation of the same state, entry for
// entry (cookies, proxy ports, provenance, errors and warnings included), and every endpoint whose policy
// differs from the previous state's is among the endpoints it reports as changed. And the policy computed
// once per identity and shared by its endpoints equals every endpoint's policy computed on its own.
import { describe, expect, it } from "vitest";
import fc from "fast-check";
import { buildRules, clusterFromManifests, compilePolicy, parseManifests, PolicyCompiler, type CompiledPolicy, type EndpointPolicy } from "./index.ts";

type GPod = { ns: string; labels: Record<string, string>; port?: number };
type GPeer = { ep: Record<string, string> } | { entity: "world" | "cluster" | "all" } | { cidr: string };
type GElem = { peers: GPeer[]; port?: number | "web"; http?: boolean };
type GPolicy = { ns: string; subject: Record<string, string>; ingress: GElem[]; egress: GElem[]; ingressDeny: GElem[]; dd?: boolean };

const NS = ["n0", "n1"];
const labelsArb = fc.record({ app: fc.constantFrom("a", "b", "c"), tier: fc.constantFrom("x", "y") }, { requiredKeys: ["app"] });
const podArb: fc.Arbitrary<GPod> = fc.record({ ns: fc.constantFrom(...NS), labels: labelsArb, port: fc.option(fc.constantFrom(80, 8080), { nil: undefined }) });
const peerArb: fc.Arbitrary<GPeer> = fc.oneof(
  labelsArb.map((ep) => ({ ep })),
  fc.constantFrom("world" as const, "cluster" as const, "all" as const).map((entity) => ({ entity })),
  fc.constantFrom("10.0.0.0/8", "8.8.8.0/24").map((cidr) => ({ cidr })),
);
// One kind of L3 peer per element (Cilium refuses mixing endpoints and CIDRs in one element).
const peersArb = fc.oneof(fc.array(peerArb.filter((p) => "ep" in p), { maxLength: 2 }), fc.array(peerArb.filter((p) => !("ep" in p)), { maxLength: 1 }));
const elemArb: fc.Arbitrary<GElem> = fc.record({ peers: peersArb, port: fc.option(fc.constantFrom(80, 443, "web" as const), { nil: undefined }), http: fc.boolean() }, { requiredKeys: ["peers"] });
const policyArb: fc.Arbitrary<GPolicy> = fc.record(
  { ns: fc.constantFrom(...NS), subject: labelsArb, ingress: fc.array(elemArb, { maxLength: 2 }), egress: fc.array(elemArb, { maxLength: 1 }), ingressDeny: fc.array(elemArb.map((e) => ({ ...e, http: false })), { maxLength: 1 }), dd: fc.boolean() },
  { requiredKeys: ["ns", "subject", "ingress", "egress", "ingressDeny"] },
);

type Change = { op: "policy"; name: number; policy: GPolicy } | { op: "delete-policy"; name: number } | { op: "pod"; name: number; pod: GPod } | { op: "delete-pod"; name: number };
const changeArb: fc.Arbitrary<Change> = fc.oneof(
  fc.record({ op: fc.constant("policy" as const), name: fc.nat(3), policy: policyArb }),
  fc.record({ op: fc.constant("delete-policy" as const), name: fc.nat(3) }),
  fc.record({ op: fc.constant("pod" as const), name: fc.nat(5), pod: podArb }),
  fc.record({ op: fc.constant("delete-pod" as const), name: fc.nat(5) }),
);

function peerYaml(p: GPeer, dir: "from" | "to"): Record<string, unknown> {
  if ("ep" in p) return { [`${dir}Endpoints`]: [{ matchLabels: p.ep }] };
  if ("entity" in p) return { [`${dir}Entities`]: [p.entity] };
  return { [`${dir}CIDR`]: [p.cidr] };
}
function elemYaml(e: GElem, dir: "from" | "to"): Record<string, unknown> {
  const r: Record<string, unknown> = {};
  for (const p of e.peers) for (const [k, v] of Object.entries(peerYaml(p, dir))) r[k] = [...((r[k] as unknown[]) ?? []), ...(v as unknown[])];
  if (e.port !== undefined) r.toPorts = [{ ports: [{ port: String(e.port), protocol: "TCP" }], ...(e.http ? { rules: { http: [{ method: "GET", path: "/a" }] } } : {}) }];
  return r;
}
function manifests(pods: Map<number, GPod>, policies: Map<number, GPolicy>): string {
  const docs: unknown[] = NS.map((name) => ({ apiVersion: "v1", kind: "Namespace", metadata: { name } }));
  for (const [i, p] of pods)
    docs.push({
      apiVersion: "v1",
      kind: "Pod",
      metadata: { name: `p${i}`, namespace: p.ns, labels: p.labels },
      spec: { containers: [{ name: "c", ports: p.port ? [{ name: "web", containerPort: p.port }] : [] }] },
      status: { podIP: `10.244.0.${i + 10}` },
    });
  for (const [i, p] of policies) {
    const spec: Record<string, unknown> = { endpointSelector: { matchLabels: p.subject } };
    if (p.ingress.length) spec.ingress = p.ingress.map((e) => elemYaml(e, "from"));
    if (p.egress.length) spec.egress = p.egress.map((e) => elemYaml(e, "to"));
    if (p.ingressDeny.length) spec.ingressDeny = p.ingressDeny.map((e) => elemYaml(e, "from"));
    if (!spec.ingress && !spec.egress && !spec.ingressDeny) spec.ingress = [];
    if (p.dd === false) spec.enableDefaultDeny = { ingress: false };
    docs.push({ apiVersion: "cilium.io/v2", kind: "CiliumNetworkPolicy", metadata: { name: `pol${i}`, namespace: p.ns }, spec });
  }
  return docs.map((d) => JSON.stringify(d)).join("\n---\n");
}

/** Everything a compile produces, as plain data. */
function view(c: CompiledPolicy) {
  return {
    identities: c.identities.all.map((i) => [i.id, i.labels, i.pods]),
    cidrs: c.cidrIdentities,
    endpoints: [...c.endpoints.values()],
    provenance: [...c.provenance],
    proxies: [...c.proxies],
    errors: c.errors.map((e) => e.message),
    warnings: c.warnings.map((e) => e.message),
  };
}

/** One endpoint's policy with cookies replaced by what they stand for (numbering-independent). */
function endpointView(c: CompiledPolicy, ep: string): string {
  const e = c.endpoints.get(ep);
  if (!e) return "none";
  const proxies = [...c.proxies.values()].filter((l) => l.endpoint === ep);
  return JSON.stringify([e.identity, e.enforced, e.entries.map((x) => ({ ...x, cookie: c.provenance.get(x.cookie) })), proxies]);
}

describe("incremental compile", () => {
  it("equals a full recomputation after every change, and reports every endpoint whose policy changed", () => {
    fc.assert(
      fc.property(fc.array(podArb, { minLength: 1, maxLength: 4 }), fc.array(changeArb, { minLength: 1, maxLength: 8 }), (initialPods, changes) => {
        const pods = new Map(initialPods.map((p, i) => [i, p]));
        const policies = new Map<number, GPolicy>();
        const compiler = new PolicyCompiler();
        let previous: CompiledPolicy | undefined;
        let handedBefore: Map<string, { ep: EndpointPolicy; text: string }> | undefined;
        for (const ch of [undefined, ...changes]) {
          if (ch?.op === "policy") policies.set(ch.name, ch.policy);
          else if (ch?.op === "delete-policy") policies.delete(ch.name);
          else if (ch?.op === "pod") pods.set(ch.name, ch.pod);
          else if (ch?.op === "delete-pod") pods.delete(ch.name);
          const load = parseManifests(manifests(pods, policies), "prop.yaml");
          expect(load.errors.map(String)).toEqual([]);
          const cluster = clusterFromManifests(load.objects);
          const rules = buildRules(load.objects);
          expect(rules.problems.map(String)).toEqual([]);
          const inc = compiler.compile(cluster, rules.rules);
          const full = compilePolicy(cluster, rules.rules);
          expect(view(inc.policy)).toEqual(view(full));
          if (previous) {
            const names = new Set([...previous.endpoints.keys(), ...full.endpoints.keys()]);
            for (const ep of names) if (endpointView(previous, ep) !== endpointView(full, ep)) expect(inc.changedEndpoints).toContain(ep);
          } else expect(inc.changedEndpoints.size).toBe(full.endpoints.size);
          // Objects handed out again are never stale: the previous compile's lists were not changed since,
          // and an endpoint gets its previous list or EndpointPolicy object back only when its entries
          // (cookies and proxy ports included) are those of the previous compile.
          if (handedBefore) {
            for (const [name, was] of handedBefore) {
              expect(JSON.stringify(was.ep)).toBe(was.text);
              const now = inc.policy.endpoints.get(name);
              if (!now) continue;
              if (now.entries === was.ep.entries || now === was.ep) expect(JSON.stringify(now)).toBe(was.text);
              if (JSON.stringify(full.endpoints.get(name)) !== was.text) {
                expect(now).not.toBe(was.ep);
                expect(now.entries).not.toBe(was.ep.entries);
              }
            }
          }
          handedBefore = new Map([...inc.policy.endpoints].map(([k, ep]) => [k, { ep, text: JSON.stringify(ep) }]));
          previous = full;
        }
      }),
      { numRuns: 60 },
    );
  });

  it("recomputes only the identities a policy change touches", () => {
    const pods = new Map<number, GPod>([0, 1, 2, 3, 4, 5].map((i) => [i, { ns: "n0", labels: { app: ["a", "b", "c"][i % 3]! } }]));
    const pol = (port: number): GPolicy => ({ ns: "n0", subject: { app: "a" }, ingress: [{ peers: [{ ep: { app: "b" } }], port }], egress: [], ingressDeny: [] });
    const other: GPolicy = { ns: "n0", subject: { app: "c" }, ingress: [{ peers: [{ ep: { app: "b" } }], port: 80 }], egress: [], ingressDeny: [] };
    const compiler = new PolicyCompiler();
    const run = (p: GPolicy) => {
      const load = parseManifests(manifests(pods, new Map([[0, p], [1, other]])), "x.yaml");
      const cluster = clusterFromManifests(load.objects);
      return compiler.compile(cluster, buildRules(load.objects).rules);
    };
    const first = run(pol(80));
    const a = first.policy.endpoints.get("n0/p0")!.identity;
    const second = run(pol(443));
    expect([...second.recomputedIdentities]).toEqual([a]);
    expect([...second.changedEndpoints].sort()).toEqual(["n0/p0", "n0/p3"]);
    expect(second.policy.endpoints.get("n0/p0")!.entries.some((e) => e.key.port === 443)).toBe(true);
    // The endpoints the change did not touch get the same objects back (consumers' caches keyed by them
    // keep serving), the changed ones new ones.
    for (const ep of ["n0/p1", "n0/p2", "n0/p4", "n0/p5"]) expect(second.policy.endpoints.get(ep)).toBe(first.policy.endpoints.get(ep));
    for (const ep of ["n0/p0", "n0/p3"]) {
      expect(second.policy.endpoints.get(ep)).not.toBe(first.policy.endpoints.get(ep));
      expect(second.policy.endpoints.get(ep)!.entries).not.toBe(first.policy.endpoints.get(ep)!.entries);
    }
    // Back to the first version: the identity's policy is computed again, so it is a new list again.
    const third = run(pol(80));
    expect(third.policy.endpoints.get("n0/p0")!.entries).not.toBe(second.policy.endpoints.get("n0/p0")!.entries);
    expect(third.policy.endpoints.get("n0/p0")!.entries).toEqual(first.policy.endpoints.get("n0/p0")!.entries);
  });

  it("computes an identity's policy once for its endpoints with the same result as each endpoint on its own", () => {
    // Pods of one identity differ in the number of their "web" port (ingress named ports resolve per pod,
    // egress ones per peer identity) and get proxy ports of their own for HTTP rules.
    fc.assert(
      fc.property(fc.array(podArb, { minLength: 1, maxLength: 8 }), fc.array(policyArb, { minLength: 1, maxLength: 4 }), (podList, policyList) => {
        const load = parseManifests(manifests(new Map(podList.map((p, i) => [i, p])), new Map(policyList.map((p, i) => [i, p]))), "shared.yaml");
        expect(load.errors.map(String)).toEqual([]);
        const cluster = clusterFromManifests(load.objects);
        const rules = buildRules(load.objects).rules;
        const shared = compilePolicy(cluster, rules);
        expect(view(shared)).toEqual(view(compilePolicy(cluster, rules, { perEndpoint: true })));
      }),
      { numRuns: 150 },
    );
  });
});
