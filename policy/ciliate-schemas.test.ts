// ciliate's own kinds are strict: the schemas refuse unknown fields and wrong types with their path and a
// "did you mean" for near misses, accept every documented field, and register into any ajv registry. They
// are validated by policy/schema.ts's registry, the one every kind goes through.
import { Ajv } from "ajv";
import { describe, expect, it } from "vitest";
import { ciliateSchemas, didYouMean, registerCiliateSchemas } from "./ciliate-schemas.ts";
import { validateAgainstSchema as validateCiliateObject } from "./schema.ts";

const api = "ciliate.dev/v1alpha1";
const flow = { name: "f", from: { pod: "a/b" }, to: { service: "a/web" }, port: 80, protocol: "TCP", http: { method: "GET", path: "/", host: "web", headers: { "X-A": "1" } }, count: 3 };

describe("ciliate kind schemas", () => {
  it("accept every documented field", () => {
    expect(validateCiliateObject({ apiVersion: api, kind: "Traffic", metadata: { name: "t", namespace: "a" }, spec: { flows: [flow, { from: { entity: "world" }, to: { ip: "10.0.0.1" }, protocol: "ICMP", icmp: { type: 8, code: 0 } }, { from: { selector: { namespace: "a", matchLabels: { app: "x" } } }, to: { cidr: "10.0.0.0/8" }, port: "443" }] } })).toEqual([]);
    expect(validateCiliateObject({ apiVersion: api, kind: "Expectation", metadata: { name: "e" }, spec: { ...flow, verdict: "denied" } })).toEqual([]);
    const spec = { clusterName: "c", policyEnforcement: "always", podCIDR: "10.244.0.0/16", clusterCIDR: "10.244.0.0/16", serviceCIDR: "10.96.0.0/12", maglevTableSize: 16381, maglevSeed: "JLfvgnHc2kaSUFaI", maglev: { tableSize: 251, seed: "JLfvgnHc2kaSUFaI" }, ctTimeouts: { syn: 60, tcp: 8000, close: 10, any: 60, svcTcp: 8000, svcAny: 60 } };
    expect(validateCiliateObject({ apiVersion: api, kind: "Config", metadata: { name: "cluster" }, spec })).toEqual([]);
    expect(validateCiliateObject({ apiVersion: "v1", kind: "NoSuchKind" })).toBeUndefined();
  });

  it("refuse unknown fields, wrong types and values with their path", () => {
    const p = validateCiliateObject({ apiVersion: api, kind: "Traffic", metadata: { name: "t" }, spec: { flows: [{ from: { pod: "a/b" }, to: { pod: "a/c" }, port: 70000, protocl: "UDP", count: "3", icmp: { type: 300 } }] } })!;
    expect(p.map((x) => [x.path.join("."), x.code])).toEqual([
      ["spec.flows.0.protocl", "unknown-field"],
      ["spec.flows.0.port", "invalid-value"],
      ["spec.flows.0.icmp.type", "invalid-value"],
      ["spec.flows.0.count", "invalid-type"],
    ]);
    expect(p[0]!.detail).toMatch(/^unknown field "protocl" \(did you mean "protocol"\?\)/);
    expect(validateCiliateObject({ apiVersion: "ciliate.dev/v1", kind: "Config", metadata: { name: "c" } })).toEqual([
      { path: ["apiVersion"], code: "unsupported-api-version", detail: 'apiVersion "ciliate.dev/v1" is not supported for kind Config; use ciliate.dev/v1alpha1' },
    ]);
  });

  it("did you mean: case, prefixes, small edits; nothing for far words", () => {
    expect(didYouMean("protocl", ["port", "protocol"])).toBe("protocol");
    expect(didYouMean("tcp", ["TCP", "UDP"])).toBe("TCP");
    expect(didYouMean("allow", ["allowed", "denied"])).toBe("allowed");
    expect(didYouMean("sepc", ["metadata", "spec"])).toBe("spec");
    expect(didYouMean("ConfigMap", ["Config", "Pod"])).toBeUndefined();
    expect(didYouMean("xyz", ["port"])).toBeUndefined();
  });

  it("register into another validator's registry and validate the same there", () => {
    const ajv = new Ajv({ allErrors: true, strict: false });
    const seen: string[] = [];
    registerCiliateSchemas((apiVersion, kind, schema) => {
      seen.push(`${apiVersion}/${kind}`);
      const v = ajv.compile(schema);
      expect(v({ apiVersion, kind, metadata: { name: "x" }, spec: kind === "Traffic" ? { flows: [] } : kind === "Expectation" ? { from: { pod: "a" }, to: { pod: "b" }, verdict: "allowed" } : {} })).toBe(true);
      expect(v({ apiVersion, kind, metadata: { name: "x" }, spce: {} })).toBe(false);
    });
    expect(seen).toEqual(ciliateSchemas().map((k) => `${api}/${k.kind}`));
  });
});
