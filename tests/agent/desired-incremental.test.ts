/*
 * The agent's incremental desired state (agent/desired.ts computeDesired with `previous`) against a full
 * recomputation: after every step of a random sequence of changes — policies added, changed and deleted,
 * pods added, removed and relabelled — the state computed from the previous one holds exactly the bytes a
 * computation without a usable memo gives with the same numbering, in every map, and the reconcile plan
 * from the previous state to it is the same as to the full one.
 */
import fc from "fast-check";
import { describe, expect, it } from "vitest";
import { computeDesired, type DesiredState, type LocalEndpoint, type Numbering } from "../../agent/desired.ts";
import { StableIdentities, StableNumbers } from "../../agent/identities.ts";
import { planReconcile } from "../../agent/reconcile.ts";
import { parseManifestText } from "../../sim/manifests.ts";

const node = { name: "node-1", ip: "192.168.56.11", podCIDR: "10.244.1.0/24" };
const APPS = ["a", "b", "c"] as const;
const PODS = 4;
const POLICIES = 3;

type App = (typeof APPS)[number];
interface Pol {
  subject: App;
  from: App | "world";
  port?: 80 | 443 | 8080;
  egressTo?: App;
}
type Change = { op: "policy"; i: number; p: Pol } | { op: "delete-policy"; i: number } | { op: "pod"; i: number; app: App } | { op: "delete-pod"; i: number };

const app = fc.constantFrom(...APPS);
const pol: fc.Arbitrary<Pol> = fc.record({ subject: app, from: fc.constantFrom(...APPS, "world" as const), port: fc.option(fc.constantFrom(80 as const, 443 as const, 8080 as const), { nil: undefined }), egressTo: fc.option(app, { nil: undefined }) });
const change: fc.Arbitrary<Change> = fc.oneof(
  fc.record({ op: fc.constant("policy" as const), i: fc.nat(POLICIES - 1), p: pol }),
  fc.record({ op: fc.constant("delete-policy" as const), i: fc.nat(POLICIES - 1) }),
  fc.record({ op: fc.constant("pod" as const), i: fc.nat(PODS - 1), app }),
  fc.record({ op: fc.constant("delete-pod" as const), i: fc.nat(PODS - 1) }),
);

function policyDoc(i: number, p: Pol): unknown {
  const ports = p.port ? [{ ports: [{ port: String(p.port), protocol: "TCP" }] }] : undefined;
  const ingress = [{ ...(p.from === "world" ? { fromEntities: ["world"] } : { fromEndpoints: [{ matchLabels: { app: p.from } }] }), ...(ports ? { toPorts: ports } : {}) }];
  const egress = p.egressTo ? [{ toEndpoints: [{ matchLabels: { app: p.egressTo } }] }] : undefined;
  return { apiVersion: "cilium.io/v2", kind: "CiliumNetworkPolicy", metadata: { name: `q${i}`, namespace: "default" }, spec: { endpointSelector: { matchLabels: { app: p.subject } }, ingress, ...(egress ? { egress } : {}) } };
}

function manifests(pods: Map<number, App>, policies: Map<number, Pol>): string {
  const docs: unknown[] = [{ apiVersion: "v1", kind: "Service", metadata: { name: "web", namespace: "default" }, spec: { clusterIP: "10.96.0.10", selector: { app: "a" }, ports: [{ port: 80, targetPort: 8080 }] } }];
  for (const [i, a] of [...pods].sort((x, y) => x[0] - y[0])) docs.push({ apiVersion: "v1", kind: "Pod", metadata: { name: `p${i}`, namespace: "default", labels: { app: a } }, spec: { containers: [{ name: "c", image: "x", ports: [{ containerPort: 8080 }] }] } });
  for (const [i, p] of [...policies].sort((x, y) => x[0] - y[0])) docs.push(policyDoc(i, p));
  return docs.map((d) => JSON.stringify(d)).join("\n---\n");
}

function endpoints(pods: Map<number, App>): LocalEndpoint[] {
  return [...pods.keys()].sort((x, y) => x - y).map((i) => ({ epId: i + 1, pod: `default/p${i}`, ip: `10.244.1.${10 + i}`, ifindex: 100 + i }));
}

const bytes = (d: DesiredState) => Object.fromEntries(Object.entries(d.maps).map(([m, c]) => [m, [...c].map(([k, e]) => [k, Buffer.from(e.value).toString("hex")]).sort()]));
const plan = (from: DesiredState, to: DesiredState) => planReconcile(from.maps, to.maps).map((o) => `${o.map}:${o.op}:${Buffer.from(o.key).toString("hex")}:${o.value ? Buffer.from(o.value).toString("hex") : ""}`);

describe("computeDesired with the previous state", () => {
  it("equals a full recomputation after random sequences of policy and pod changes", () => {
    fc.assert(
      fc.property(fc.array(change, { minLength: 1, maxLength: 6 }), (changes) => {
        const n: Numbering = { identities: new StableIdentities(), backends: new StableNumbers(1, 0xffffffff), revNat: new StableNumbers(1, 0xffff) };
        const pods = new Map<number, App>([
          [0, "a"],
          [1, "b"],
          [2, "c"],
        ]);
        const policies = new Map<number, Pol>([[0, { subject: "a", from: "b" }]]);
        let current = computeDesired(parseManifestText(manifests(pods, policies), "s0.yaml"), node, endpoints(pods), n);
        changes.forEach((c, step) => {
          if (c.op === "policy") policies.set(c.i, c.p);
          else if (c.op === "delete-policy") policies.delete(c.i);
          else if (c.op === "pod") pods.set(c.i, c.app);
          else pods.delete(c.i);
          const text = manifests(pods, policies);
          const eps = endpoints(pods);
          const next = computeDesired(parseManifestText(text, `s${step + 1}.yaml`), node, eps, n, { previous: current });
          // The memo's inputs made not to match: nothing of the previous computation is reused.
          const full = computeDesired(parseManifestText(text, `f${step + 1}.yaml`), node, eps, n, { previous: { maps: current.maps, memo: current.memo && { ...current.memo, inputs: { head: "", objects: [] } } } });
          expect(bytes(next)).toEqual(bytes(full));
          expect(plan(current, next)).toEqual(plan(current, full));
          current = next;
        });
      }),
      { numRuns: 40 },
    );
  });
});
