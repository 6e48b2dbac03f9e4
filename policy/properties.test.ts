// Property tests over random clusters and policies (fast-check):
//  P1 the compiled entries, evaluated with the datapath lookup, agree with a plain reference evaluator
//     of the rules written here from Cilium's documented semantics;
//  P2 adding an allow (in a policy that does not change default-deny) never denies an allowed flow;
//  P3 adding a deny never allows a denied flow;
//  P4 a matching deny always wins;
//  P5 a policy that selects nothing changes nothing.
import { describe, expect, it } from "vitest";
import fc from "fast-check";
import { parseCidr, ipInCidr, parseIp } from "./cidr.ts";
import { buildRules, clusterFromManifests, compilePolicy, explainFlow, parseManifests, type CompiledPolicy } from "./index.ts";

type Proto = "TCP" | "UDP" | "SCTP";
type GPeer = { kind: "ep"; labels: Record<string, string>; ns?: string } | { kind: "entity"; e: "all" | "world" | "cluster" | "host" } | { kind: "cidr"; cidr: string; except?: string };
type GPort = { port: number; endPort?: number; protocol: Proto | "ANY" };
type GElem = { peers: GPeer[]; ports?: GPort[] };
type GPolicy = {
  ns: string;
  name: string;
  subject: Record<string, string>;
  ingress: GElem[];
  egress: GElem[];
  ingressDeny: GElem[];
  egressDeny: GElem[];
  dd?: { ingress?: boolean; egress?: boolean };
};
type GPod = { ns: string; name: string; labels: Record<string, string>; ip: string };

const NS = ["n0", "n1"];
const labelsArb = fc.record({ app: fc.constantFrom("a", "b") }, { requiredKeys: [] }).chain((l) =>
  fc.option(fc.constantFrom("x", "y"), { nil: undefined }).map((tier) => (tier ? { ...l, tier } : l) as Record<string, string>),
);
const podsArb = fc.array(fc.tuple(fc.constantFrom(...NS), labelsArb), { minLength: 2, maxLength: 5 }).map((ps) =>
  ps.map(([ns, labels], i) => ({ ns, name: `p${i}`, labels, ip: `10.244.0.${i + 10}` }) as GPod),
);
const CIDRS: [string, string | undefined][] = [
  ["10.0.0.0/8", undefined],
  ["10.0.0.0/8", "10.1.0.0/16"],
  ["8.8.0.0/16", undefined],
  ["0.0.0.0/0", "10.0.0.0/8"],
];
const epPeerArb: fc.Arbitrary<GPeer> = fc.record({ kind: fc.constant("ep" as const), labels: labelsArb, ns: fc.option(fc.constantFrom(...NS), { nil: undefined }) });
const entityPeerArb: fc.Arbitrary<GPeer> = fc.record({ kind: fc.constant("entity" as const), e: fc.constantFrom("all" as const, "world" as const, "cluster" as const, "host" as const) });
const cidrPeerArb: fc.Arbitrary<GPeer> = fc.constantFrom(...CIDRS).map(([cidr, except]) => ({ kind: "cidr" as const, cidr, except }));
// Cilium refuses an element with two kinds of L3 peer ("Combining FromEndpoints and FromCIDR is not
// supported yet"), so the peers of one element are all of one kind.
const peersArb: fc.Arbitrary<GPeer[]> = fc.oneof(...[epPeerArb, entityPeerArb, cidrPeerArb].map((a) => fc.array(a, { maxLength: 2 })));
const portArb: fc.Arbitrary<GPort> = fc
  .record({
    port: fc.constantFrom(0, 80, 81, 443),
    span: fc.option(fc.constantFrom(1, 10, 57), { nil: undefined }),
    protocol: fc.constantFrom("TCP" as const, "UDP" as const, "ANY" as const),
  })
  .map(({ port, span, protocol }) => ({ port, protocol, ...(span && port ? { endPort: port + span } : {}) }));
const elemArb: fc.Arbitrary<GElem> = fc.record({ peers: peersArb, ports: fc.option(fc.array(portArb, { minLength: 1, maxLength: 2 }), { nil: undefined }) });
const elems = fc.array(elemArb, { maxLength: 2 });
const policyArb = (name: string): fc.Arbitrary<GPolicy> =>
  fc.record({
    ns: fc.constantFrom(...NS),
    name: fc.constant(name),
    subject: labelsArb,
    ingress: elems,
    egress: elems,
    ingressDeny: fc.array(elemArb, { maxLength: 1 }),
    egressDeny: fc.array(elemArb, { maxLength: 1 }),
    dd: fc.option(fc.record({ ingress: fc.boolean(), egress: fc.boolean() }, { requiredKeys: [] }), { nil: undefined }),
  });
const policiesArb = fc.array(fc.nat(), { maxLength: 3 }).chain((xs) => fc.tuple(...xs.map((_, i) => policyArb(`pol${i}`))));

const EXTERNAL = ["8.8.8.8", "10.1.2.3", "10.2.0.1"];
type Remote = { pod: GPod } | { host: true } | { ip: string };
const flowArb = (pods: GPod[]) =>
  fc.record({
    src: fc.oneof(fc.constantFrom(...pods).map((p) => ({ pod: p }) as Remote), fc.constant({ host: true } as Remote), fc.constantFrom(...EXTERNAL).map((ip) => ({ ip }) as Remote)),
    dst: fc.oneof(fc.constantFrom(...pods).map((p) => ({ pod: p }) as Remote), fc.constantFrom(...EXTERNAL).map((ip) => ({ ip }) as Remote)),
    protocol: fc.constantFrom<Proto>("TCP", "UDP", "SCTP"),
    port: fc.constantFrom(79, 80, 81, 85, 443, 499, 1000),
  });

/* ---------------------------- YAML ---------------------------- */

function peerYaml(p: GPeer, dir: "from" | "to"): Record<string, unknown> {
  if (p.kind === "ep") return { [`${dir}Endpoints`]: [{ matchLabels: { ...p.labels, ...(p.ns ? { "k8s:io.kubernetes.pod.namespace": p.ns } : {}) } }] };
  if (p.kind === "entity") return { [`${dir}Entities`]: [p.e] };
  return { [`${dir}CIDRSet`]: [{ cidr: p.cidr, ...(p.except ? { except: [p.except] } : {}) }] };
}
function elemYaml(e: GElem, dir: "from" | "to"): Record<string, unknown> {
  const out: Record<string, unknown[]> = {};
  for (const p of e.peers) for (const [k, v] of Object.entries(peerYaml(p, dir))) out[k] = [...(out[k] ?? []), ...(v as unknown[])];
  const r: Record<string, unknown> = { ...out };
  if (e.ports) r.toPorts = [{ ports: e.ports.map((p) => ({ port: String(p.port), ...(p.endPort ? { endPort: p.endPort } : {}), protocol: p.protocol })) }];
  return r;
}
function policyYaml(p: GPolicy): string {
  const spec: Record<string, unknown> = { endpointSelector: { matchLabels: p.subject } };
  if (p.ingress.length) spec.ingress = p.ingress.map((e) => elemYaml(e, "from"));
  if (p.egress.length) spec.egress = p.egress.map((e) => elemYaml(e, "to"));
  if (p.ingressDeny.length) spec.ingressDeny = p.ingressDeny.map((e) => elemYaml(e, "from"));
  if (p.egressDeny.length) spec.egressDeny = p.egressDeny.map((e) => elemYaml(e, "to"));
  // Cilium's CRD schema wants at least one section present; an empty list touches no direction.
  if (!spec.ingress && !spec.egress && !spec.ingressDeny && !spec.egressDeny) spec.ingress = [];
  if (p.dd) spec.enableDefaultDeny = p.dd;
  return JSON.stringify({ apiVersion: "cilium.io/v2", kind: "CiliumNetworkPolicy", metadata: { name: p.name, namespace: p.ns }, spec });
}
function clusterYaml(pods: GPod[]): string[] {
  return [
    ...NS.map((n) => JSON.stringify({ apiVersion: "v1", kind: "Namespace", metadata: { name: n } })),
    ...pods.map((p) => JSON.stringify({ apiVersion: "v1", kind: "Pod", metadata: { name: p.name, namespace: p.ns, labels: p.labels }, status: { podIP: p.ip } })),
  ];
}
function compileAll(pods: GPod[], policies: GPolicy[]): CompiledPolicy {
  const load = parseManifests([...clusterYaml(pods), ...policies.map(policyYaml)].join("\n---\n"), "prop.yaml");
  expect(load.errors).toEqual([]);
  const cluster = clusterFromManifests(load.objects);
  const rules = buildRules(load.objects);
  expect(rules.problems.map(String)).toEqual([]);
  return compilePolicy(cluster, rules.rules);
}
function ref(r: Remote) {
  return "pod" in r ? { pod: `${r.pod.ns}/${r.pod.name}` } : "host" in r ? { entity: "host" } : { ip: r.ip };
}
function engineVerdict(c: CompiledPolicy, f: { src: Remote; dst: Remote; protocol: Proto; port: number }) {
  return explainFlow(c, { from: ref(f.src), to: ref(f.dst), protocol: f.protocol, port: f.port }).verdict;
}

/* ---------------------------- reference evaluator ---------------------------- */

function labelsMatch(want: Record<string, string>, have: Record<string, string>) {
  return Object.entries(want).every(([k, v]) => have[k] === v);
}
function peerMatches(p: GPeer, policyNs: string, remote: Remote): boolean {
  if (p.kind === "ep") return "pod" in remote && remote.pod.ns === (p.ns ?? policyNs) && labelsMatch(p.labels, remote.pod.labels);
  if (p.kind === "entity") {
    if (p.e === "all") return true;
    if (p.e === "world") return "ip" in remote;
    if (p.e === "cluster") return !("ip" in remote);
    return "host" in remote;
  }
  if (!("ip" in remote)) return false; // a CIDR never selects pods or the host
  const a = parseIp(remote.ip)!;
  const inside = (c: string) => ipInCidr(parseCidr(c)!, a.family, a.addr);
  return inside(p.cidr) && !(p.except && inside(p.except));
}
function portMatches(ports: GPort[] | undefined, proto: Proto, port: number) {
  if (!ports) return true;
  return ports.some((p) => (p.protocol === "ANY" || p.protocol === proto) && (p.port === 0 ? true : port >= p.port && port <= (p.endPort ?? p.port)));
}
function elemMatches(e: GElem, policyNs: string, remote: Remote, proto: Proto, port: number) {
  if (e.peers.length === 0 && !e.ports) return false; // an empty element allows nothing
  const l3 = e.peers.length === 0 || e.peers.some((p) => peerMatches(p, policyNs, remote));
  return l3 && portMatches(e.ports, proto, port);
}
function refDecision(policies: GPolicy[], ep: GPod, dir: "ingress" | "egress", remote: Remote, proto: Proto, port: number): boolean {
  const sel = policies.filter((p) => p.ns === ep.ns && labelsMatch(p.subject, ep.labels));
  const denyKey = dir === "ingress" ? "ingressDeny" : "egressDeny";
  const touching = sel.filter((p) => p[dir].length > 0 || p[denyKey].length > 0);
  if (touching.length === 0) return true;
  if (sel.some((p) => p[denyKey].some((e) => elemMatches(e, p.ns, remote, proto, port)))) return false;
  if (dir === "ingress" && "host" in remote) return true; // allow-localhost
  if (touching.every((p) => p.dd?.[dir] === false)) return true;
  return sel.some((p) => p[dir].some((e) => elemMatches(e, p.ns, remote, proto, port)));
}
function refVerdict(policies: GPolicy[], f: { src: Remote; dst: Remote; protocol: Proto; port: number }) {
  const eg = "pod" in f.src ? refDecision(policies, f.src.pod, "egress", f.dst, f.protocol, f.port) : true;
  const ing = "pod" in f.dst ? refDecision(policies, f.dst.pod, "ingress", f.src, f.protocol, f.port) : true;
  return eg && ing ? "allowed" : "denied";
}

const scenario = podsArb.chain((pods) => fc.tuple(fc.constant(pods), policiesArb, fc.array(flowArb(pods), { minLength: 5, maxLength: 15 })));
const RUNS = { numRuns: 100 };

describe("policy properties", () => {
  it("P1: compiled entries + datapath lookup agree with the reference evaluator", () => {
    fc.assert(
      fc.property(scenario, ([pods, policies, flows]) => {
        const c = compileAll(pods, policies);
        for (const f of flows) expect(engineVerdict(c, f)).toBe(refVerdict(policies, f));
        // Exhaustively: every source × destination × port × protocol.
        const srcs: Remote[] = [...pods.map((pod) => ({ pod })), { host: true }, ...EXTERNAL.map((ip) => ({ ip }))];
        const dsts: Remote[] = [...pods.map((pod) => ({ pod })), ...EXTERNAL.map((ip) => ({ ip }))];
        for (const src of srcs)
          for (const dst of dsts)
            for (const port of [80, 81, 443, 1000])
              for (const protocol of ["TCP", "UDP"] as Proto[]) {
                const f = { src, dst, port, protocol };
                expect(engineVerdict(c, f), JSON.stringify(f)).toBe(refVerdict(policies, f));
              }
      }),
      RUNS,
    );
  });
  it("P2: adding an allow never denies an allowed flow", () => {
    fc.assert(
      fc.property(scenario, policyArb("extra"), ([pods, policies, flows], extra0) => {
        const extra = { ...extra0, ingressDeny: [], egressDeny: [], dd: { ingress: false, egress: false } };
        const before = compileAll(pods, policies);
        const after = compileAll(pods, [...policies, extra]);
        for (const f of flows) if (engineVerdict(before, f) === "allowed") expect(engineVerdict(after, f)).toBe("allowed");
      }),
      RUNS,
    );
  });
  it("P3: adding a deny never allows a denied flow", () => {
    fc.assert(
      fc.property(scenario, policyArb("extra"), ([pods, policies, flows], extra0) => {
        const extra = { ...extra0, ingress: [], egress: [] };
        const before = compileAll(pods, policies);
        const after = compileAll(pods, [...policies, extra]);
        for (const f of flows) if (engineVerdict(before, f) === "denied") expect(engineVerdict(after, f)).toBe("denied");
      }),
      RUNS,
    );
  });
  it("P4: a matching deny always wins", () => {
    fc.assert(
      fc.property(scenario, ([pods, policies, flows]) => {
        const f = flows.find((x) => "pod" in x.dst)!;
        if (!f) return;
        const dst = (f.dst as { pod: GPod }).pod;
        const deny: GPolicy = {
          ns: dst.ns,
          name: "deny",
          subject: dst.labels,
          ingress: [],
          egress: [],
          ingressDeny: [{ peers: [{ kind: "entity", e: "all" }], ports: [{ port: f.port, protocol: f.protocol }] }],
          egressDeny: [],
        };
        const c = compileAll(pods, [...policies, deny]);
        const e = explainFlow(c, { from: ref(f.src), to: ref(f.dst), protocol: f.protocol, port: f.port });
        expect(e.verdict).toBe("denied");
        if (e.egress.verdict === "allowed") expect(e.ingress.dropReason).toBe(181);
      }),
      RUNS,
    );
  });
  it("P5: a policy that selects nothing changes nothing", () => {
    fc.assert(
      fc.property(scenario, policyArb("nothing"), ([pods, policies, flows], extra0) => {
        const extra = { ...extra0, subject: { app: "nobody" } };
        const before = compileAll(pods, policies);
        const after = compileAll(pods, [...policies, extra]);
        for (const f of flows) expect(engineVerdict(after, f)).toBe(engineVerdict(before, f));
        // Entries are unchanged too, except those for CIDR identities the new policy's prefixes brought
        // into existence (Cilium allocates them as well; `world` selects them; no verdict changes).
        const keys = (c: CompiledPolicy, n: string) => c.endpoints.get(n)!.entries.filter((e) => e.key.identity < 1 << 24).map((e) => [e.key, e.deny]);
        for (const name of before.endpoints.keys()) expect(keys(after, name)).toEqual(keys(before, name));
      }),
      RUNS,
    );
  });
});
