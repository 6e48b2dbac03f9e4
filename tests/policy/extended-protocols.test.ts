// VRRP and IGMP in toPorts, end to end, each test named after the upstream behaviour it mirrors: Cilium's
// agent option enable-extended-ip-protocols (Config enableExtendedIPProtocols) decides whether policies may
// name them and whether the datapath tracks them (otherwise DROP_CT_UNKNOWN_PROTO, 137); the policy map
// keys them by IP protocol number with every port; core gives the same verdict in JS and WASM (the kernel
// is covered by tests/differential, whose packets and maps include both protocols and the option).
import { readFileSync } from "node:fs";
import { describe, expect, it } from "vitest";
import { IPPROTO_IGMP, IPPROTO_VRRP, DROP_CT_UNKNOWN_PROTO, DROP_POLICY } from "../../host/constants.gen.ts";
import { buildCluster } from "../../node/cluster.ts";
import { buildRules, policyLookup } from "../../policy/index.ts";
import { parseManifests } from "../../policy/manifest-loader.ts";
import { compileClusterPolicy } from "../../sim/policy.ts";
import { Simulation } from "../../sim/simulator.ts";
import { kernelSuite } from "../../datapath/preflight.ts";

const cnp = (ports: string) =>
  `apiVersion: cilium.io/v2\nkind: CiliumNetworkPolicy\nmetadata: {name: p, namespace: default}\nspec:\n  endpointSelector: {matchLabels: {app: b}}\n  ingress: [{toPorts: [{ports: ${ports}}]}]`;
const rules = (yaml: string, extendedIPProtocols: boolean) => buildRules(parseManifests(yaml, "p.yaml").objects, "default", { extendedIPProtocols });
const messages = (r: ReturnType<typeof rules>) => r.problems.map((p) => p.message).join("\n");

describe("validation (pkg/policy/api l4.go ProtoVRRP/ProtoIGMP, rule_validation.go PortProtocol)", () => {
  it("the CRD schema admits VRRP and IGMP; without enable-extended-ip-protocols the policy is refused, naming the option", () => {
    const r = rules(cnp("[{protocol: VRRP}]"), false);
    expect(r.refused).toHaveLength(1);
    expect(messages(r)).toMatch(/protocol VRRP needs the agent option "enable-extended-ip-protocols"/);
    expect(r.problems.map((p) => p.code)).not.toContain("schema");
  });

  it("with the option a port may be left out (pkg/policy/api: port must be specified only without it)", () => {
    expect(rules(cnp("[{protocol: VRRP}, {protocol: IGMP}]"), true).applied).toHaveLength(1);
    expect(rules(cnp("[{protocol: TCP}]"), true).applied).toHaveLength(1);
    expect(messages(rules(cnp("[{protocol: TCP}]"), false))).toMatch(/Port must be specified/);
  });

  it('"port must be empty or 0" for VRRP and IGMP', () => {
    expect(messages(rules(cnp("[{port: '80', protocol: VRRP}]"), true))).toMatch(/port must be empty or 0/);
    expect(rules(cnp("[{port: '0', protocol: IGMP}]"), true).applied).toHaveLength(1);
  });

  it("L7 rules stay TCP-only: VRRP with rules.http is refused", () => {
    const y = `apiVersion: cilium.io/v2\nkind: CiliumNetworkPolicy\nmetadata: {name: p, namespace: default}\nspec:\n  endpointSelector: {}\n  ingress: [{toPorts: [{ports: [{port: '0', protocol: VRRP}], rules: {http: [{}]}}]}]`;
    expect(messages(rules(y, true))).toMatch(/L7 rules can only apply to TCP \(not VRRP\)|L7 rules can not be used when a port is 0/);
  });

  it("Cilium's host-firewall example allow-extended-protocols.yaml: refused without the option, accepted (host policy warned) with it", () => {
    const text = readFileSync(new URL("./corpus/cilium/host_allow-extended-protocols.yaml", import.meta.url), "utf8");
    expect(rules(text, false).refused).toHaveLength(1);
    const on = rules(text, true);
    expect(on.problems).toEqual([]);
    expect(on.warnings.map((w) => w.code)).toEqual(["host-policy-not-enforced"]);
  });
});

const CLUSTER = (on: boolean, policy: string) =>
  [
    `apiVersion: ciliate.dev/v1alpha1\nkind: Config\nmetadata: {name: c}\nspec: {enableExtendedIPProtocols: ${on}}`,
    `apiVersion: v1\nkind: Pod\nmetadata: {name: a, namespace: default, labels: {app: a}}\nspec: {containers: [{name: c}]}`,
    `apiVersion: v1\nkind: Pod\nmetadata: {name: b, namespace: default, labels: {app: b}}\nspec: {containers: [{name: c}]}`,
    policy,
  ].join("\n---\n");

async function flow(on: boolean, policy: string, protocol: "VRRP" | "IGMP", engine: "js" | "wasm") {
  const l = parseManifests(CLUSTER(on, policy), "c.yaml");
  if (l.errors.length) throw new Error(l.errors.map((e) => e.message).join("\n"));
  const c = buildCluster(l.objects);
  const compiled = compileClusterPolicy(c);
  const sim = await Simulation.create(c, compiled, { engine });
  const r = sim.runFlow({ name: "f", from: { pod: "default/a" }, to: { pod: "default/b" }, port: 0, protocol, count: 1, where: "test" });
  return { r, compiled };
}

describe("map keys and verdicts (pkg/policy/l4.go: a port-less protocol is keyed by its number, every port)", () => {
  it("toPorts protocol VRRP compiles to protocol 112 / port 0 / prefix 0, IGMP to 2", () => {
    const l = parseManifests(CLUSTER(true, cnp("[{protocol: VRRP}, {protocol: IGMP}]")), "c.yaml");
    const compiled = compileClusterPolicy(buildCluster(l.objects));
    const keys = compiled.endpoints.get("default/b")!.entries.filter((e) => e.provenance[0]!.kind !== "derived").map((e) => e.key);
    expect(keys).toEqual([
      { identity: 0, direction: "ingress", protocol: IPPROTO_IGMP, port: 0, portPrefix: 0 },
      { identity: 0, direction: "ingress", protocol: IPPROTO_VRRP, port: 0, portPrefix: 0 },
    ]);
    expect(policyLookup(compiled.endpoints.get("default/b")!.entries, "ingress", 300, IPPROTO_VRRP, 0).verdict).toBe("allowed");
    expect(policyLookup(compiled.endpoints.get("default/b")!.entries, "ingress", 300, 6, 0).verdict).toBe("denied");
  });

  for (const engine of ["js", "wasm"] as const) {
    it(`${engine}: with the option a VRRP flow the policy allows is delivered, one it does not allow is dropped 133`, async () => {
      const allowed = await flow(true, cnp("[{protocol: VRRP}]"), "VRRP", engine);
      expect([allowed.r.verdict, allowed.r.reason]).toEqual(["allowed", expect.anything()]);
      const igmp = await flow(true, cnp("[{protocol: VRRP}]"), "IGMP", engine);
      expect(igmp.r.verdict).toBe("denied");
      expect(igmp.r.dropReason).toBe(DROP_POLICY);
    });

    it(`${engine}: without the option VRRP is dropped DROP_CT_UNKNOWN_PROTO (137), as Cilium's datapath does`, async () => {
      const { r } = await flow(false, "", "VRRP", engine);
      expect(r.verdict).toBe("denied");
      expect(r.dropReason).toBe(DROP_CT_UNKNOWN_PROTO);
    });
  }
});

describe("reach probes the protocols the policies name (scenarios/vrrp)", () => {
  it("a VRRP rule adds the probe 0/VRRP; only the keepalived peers reach each other with it", async () => {
    const { ciliate, json } = await import("../cli/run.ts");
    const r = ciliate("reach", "-f", "scenarios/vrrp", "-o", "json");
    expect([r.code, r.stderr]).toEqual([0, ""]);
    const out = json<{ probes: { port: number; protocol: string; matrix: Record<string, Record<string, boolean>> }[] }>(r);
    const vrrp = out.probes.find((p) => p.protocol === "VRRP")!;
    expect(vrrp.port).toBe(0);
    expect(vrrp.matrix["edge/keepalived-0"]!["edge/keepalived-1"]).toBe(true);
    expect(vrrp.matrix["edge/client"]!["edge/keepalived-1"]).toBe(false);
    expect(vrrp.matrix["edge/keepalived-1"]!["edge/client"]).toBe(true); // client: no ingress policy
  });
});

describe("probes are new flows (reach and trace agree)", () => {
  it("conntrack has no ports for VRRP: a probe b→a after a→b is judged by policy, not taken as a reply", async () => {
    const aDeniesAll = `apiVersion: cilium.io/v2\nkind: CiliumNetworkPolicy\nmetadata: {name: a, namespace: default}\nspec:\n  endpointSelector: {matchLabels: {app: a}}\n  ingress: [{fromEntities: [host], toPorts: [{ports: [{port: '1', protocol: TCP}]}]}]`;
    const l = parseManifests(CLUSTER(true, `${cnp("[{protocol: VRRP}]")}\n---\n${aDeniesAll}`), "c.yaml");
    const c = buildCluster(l.objects);
    const sim = await Simulation.create(c, compileClusterPolicy(c), { engine: "wasm" });
    const a = c.pods.find((p) => p.name === "a")!;
    const b = c.pods.find((p) => p.name === "b")!;
    expect(sim.probe(a, b, 0, "VRRP", 40000).allowed).toBe(true);
    expect(sim.probe(b, a, 0, "VRRP", 40000).allowed).toBe(false);
  });
});

// The generated eBPF, through the CLI: the same scenario checked with --engine kernel.
const k = kernelSuite("VRRP scenario on the kernel engine", ["root", "libbpf", "bpffs", "clang"]);
describe.skipIf(k.skip)("the kernel engine agrees (scenarios/vrrp, --engine kernel)", () => {
  it("every expectation holds when the generated eBPF decides", async () => {
    const { ciliate, json } = await import("../cli/run.ts");
    const r = ciliate("check", "-f", "scenarios/vrrp", "--engine", "kernel", "-o", "json");
    const out = json<{ results: { name: string; passed: boolean }[]; failed: number; passed: number }>(r);
    expect(out.results.filter((x) => !x.passed)).toEqual([]);
    expect(out.passed).toBe(4);
    expect(r.code).toBe(0);
  }, 120_000);
});
