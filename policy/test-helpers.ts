// Helpers shared by the policy engine's tests: compile YAML text in one call and ask for verdicts.

import { buildRules, clusterFromManifests, compilePolicy, explainFlow, parseManifests, type CompileOptions, type EnforcementMode, type Flow } from "./index.ts";

export function compileYaml(yaml: string, opts: CompileOptions & { policyEnforcement?: EnforcementMode; clusterName?: string } = {}) {
  const load = parseManifests(yaml, "test.yaml");
  // A fixture the API server would refuse is a broken test, not a scenario.
  if (load.errors.length) throw new Error(`invalid fixture:\n${load.errors.map((e) => e.message).join("\n")}`);
  const cluster = clusterFromManifests(load.objects, { policyEnforcement: opts.policyEnforcement, clusterName: opts.clusterName });
  const rules = buildRules(load.objects, cluster.clusterName);
  const compiled = compilePolicy(cluster, rules.rules, opts);
  return { load, cluster, rules, compiled };
}

export function verdict(compiled: ReturnType<typeof compilePolicy>, from: Flow["from"] | string, to: Flow["to"] | string, protocol: Flow["protocol"], port: number): "allowed" | "denied" {
  const f = typeof from === "string" ? { pod: from } : from;
  const t = typeof to === "string" ? { pod: to } : to;
  return explainFlow(compiled, { from: f, to: t, protocol, port }).verdict;
}

/** Namespace + pods in YAML. */
export function podsYaml(pods: { ns: string; name: string; labels?: Record<string, string>; ports?: { name: string; port: number; protocol?: string }[]; ip?: string }[], namespaces: Record<string, Record<string, string>> = {}): string {
  const nss = new Set([...pods.map((p) => p.ns), ...Object.keys(namespaces)]);
  const docs: string[] = [];
  for (const n of nss) docs.push(JSON.stringify({ apiVersion: "v1", kind: "Namespace", metadata: { name: n, labels: namespaces[n] ?? {} } }));
  for (const p of pods)
    docs.push(
      JSON.stringify({
        apiVersion: "v1",
        kind: "Pod",
        metadata: { name: p.name, namespace: p.ns, labels: p.labels ?? {} },
        spec: { containers: [{ name: "c", ports: (p.ports ?? []).map((x) => ({ name: x.name, containerPort: x.port, protocol: x.protocol ?? "TCP" })) }] },
        ...(p.ip ? { status: { podIP: p.ip } } : {}),
      }),
    );
  return docs.join("\n---\n");
}
