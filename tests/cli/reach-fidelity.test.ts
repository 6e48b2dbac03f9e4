// reach must agree with trace: a probe is a new flow. ICMP types other than echo have no identifier in
// Cilium's conntrack tuple (bpf/lib/conntrack.h), so without care a→b's entry makes b→a look like a reply.
import { mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterAll, describe, expect, it } from "vitest";
import { ciliate, json } from "./run.ts";

const dir = mkdtempSync(join(tmpdir(), "ciliate-icmp-"));
afterAll(() => rmSync(dir, { recursive: true, force: true }));
const f = join(dir, "c.yaml");
writeFileSync(
  f,
  `apiVersion: v1
kind: Pod
metadata: {name: a, labels: {app: a}}
spec: {containers: [{name: c}]}
---
apiVersion: v1
kind: Pod
metadata: {name: b, labels: {app: b}}
spec: {containers: [{name: c}]}
---
apiVersion: cilium.io/v2
kind: CiliumNetworkPolicy
metadata: {name: b-egress-nothing}
spec:
  endpointSelector: {matchLabels: {app: b}}
  egress: [{}]
`,
);

describe("bpf/lib/conntrack.h: non-echo ICMP probes are new flows, so reach agrees with trace", () => {
  it("timestamp (13): a→b allowed, b→a denied by b's egress, in reach and in trace", () => {
    const m = json(ciliate("reach", "-f", f, "--port", "13/ICMP", "-o", "json")).probes[0].matrix;
    expect(m["default/a"]["default/b"]).toBe(true);
    expect(m["default/b"]["default/a"]).toBe(false);
    const t = json(ciliate("trace", "-f", f, "--from", "default/b", "--to", "default/a", "--protocol", "ICMP", "--icmp-type", "13", "-o", "json"));
    expect(t.egress.verdict).toBe("denied");
  });
});

describe("reach without --port probes what the policies name, plus 80/TCP", () => {
  it("a policy naming 53/UDP and 8080/TCP gives probes 53/UDP, 80/TCP and 8080/TCP", () => {
    const g = join(dir, "ports.yaml");
    writeFileSync(
      g,
      `apiVersion: v1
kind: Pod
metadata: {name: a, labels: {app: a}}
spec: {containers: [{name: c}]}
---
apiVersion: cilium.io/v2
kind: CiliumNetworkPolicy
metadata: {name: p}
spec:
  endpointSelector: {matchLabels: {app: a}}
  ingress: [{toPorts: [{ports: [{port: "53", protocol: UDP}, {port: "8080", protocol: TCP}]}]}]
`,
    );
    const probes = json(ciliate("reach", "-f", g, "-o", "json")).probes.map((p: { port: number; protocol: string }) => `${p.port}/${p.protocol}`);
    expect(probes).toEqual(["80/TCP", "8080/TCP", "53/UDP"]);
  });
});

describe("pkg/policy/repository.go: an endpoint with the reserved:init identity is enforced in both directions", () => {
  const init = join(dir, "init.yaml");
  writeFileSync(
    init,
    `apiVersion: cilium.io/v2
kind: CiliumClusterwideNetworkPolicy
metadata: {name: init-dns}
spec:
  endpointSelector: {matchLabels: {"reserved:init": ""}}
  ingress: [{fromEntities: [cluster], toPorts: [{ports: [{port: "53", protocol: UDP}]}]}]
`,
  );
  const trace = (...a: string[]) => json(ciliate("trace", "-f", f, ...a, "-o", "json"));

  it("default mode, no policy selects it: traffic to it and from it is denied", () => {
    expect(trace("--from", "default/a", "--to", "entity:init", "--port", "53", "--protocol", "UDP")).toMatchObject({ verdict: "denied", ingress: { verdict: "denied", dropReason: 133 } });
    expect(trace("--from", "entity:init", "--to", "default/a", "--port", "80")).toMatchObject({ verdict: "denied", egress: { verdict: "denied", dropReason: 133 } });
  });

  it("a policy selecting reserved:init allows what it names, nothing else", () => {
    expect(trace("-f", init, "--from", "default/a", "--to", "entity:init", "--port", "53", "--protocol", "UDP").verdict).toBe("allowed");
    expect(trace("-f", init, "--from", "default/a", "--to", "entity:init", "--port", "54", "--protocol", "UDP").verdict).toBe("denied");
  });

  it("--policy-enforcement never: nothing is enforced, not even for reserved:init", () => {
    expect(trace("--policy-enforcement", "never", "--from", "default/a", "--to", "entity:init", "--port", "53", "--protocol", "UDP").verdict).toBe("allowed");
  });
});
