// The host firewall as the simulator's commands show it (scenarios/host-firewall; docs/multi-node.md, Host
// firewall): a CiliumClusterwideNetworkPolicy with a nodeSelector judges traffic to the node it selects at
// that node's fromNetwork and the node's own traffic at its toNetwork, naming the host endpoint and the
// rule; a node no host policy selects stays open; without the host firewall the policy only warns.
// Needs `npm run build`.
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { describe, expect, it } from "vitest";
import { ciliate, json } from "./run.ts";

const SCENARIO = ["-f", "scenarios/host-firewall"];
const NODE_1 = "192.168.56.41";
const NODE_2 = "192.168.56.42";
const OUTSIDE = "203.0.113.7";

function trace(from: string, to: string, port: string, ...extra: string[]) {
  return json(ciliate(...SCENARIO, "trace", "-o", "json", "--from", from, "--to", to, "--port", port, ...extra));
}

describe("host firewall in trace, check and simulate", () => {
  it("from outside: SSH to the selected node is allowed by the host policy, HTTP is denied at its fromNetwork", () => {
    const ssh = trace(OUTSIDE, NODE_1, "22");
    expect(ssh.verdict).toBe("allowed");
    expect(ssh.steps[0]).toMatchObject({ node: "node-1", entry: "fromNetwork", verdict: "FORWARDED" });
    expect(ssh.ingress.verdict).toBe("allowed");
    expect(JSON.stringify(ssh.ingress)).toContain("demo-host-policy");
    const http = trace(OUTSIDE, NODE_1, "80");
    expect(http.verdict).toBe("denied");
    expect(http.ingress.verdict).toBe("denied");
    expect(http.steps[0]).toMatchObject({ node: "node-1", entry: "fromNetwork", verdict: "DROPPED" });
    const text = ciliate(...SCENARIO, "trace", "--from", OUTSIDE, "--to", NODE_1, "--port", "80").stdout;
    expect(text).toContain("host node-1 is selected by a policy in ingress");
  });

  it("another node reaches the selected node on any port (remote-node is in cluster); the unselected node stays open", () => {
    const kubelet = trace(NODE_2, NODE_1, "10250");
    expect(kubelet.verdict).toBe("allowed");
    // The sender's own egress (node-2's toNetwork, no host policy) then node-1's ingress.
    expect(kubelet.steps.map((s: any) => `${s.node} ${s.entry}`).slice(0, 2)).toEqual(["node-2 toNetwork", "node-1 fromNetwork"]);
    expect(trace(OUTSIDE, NODE_2, "80").verdict).toBe("allowed");
    // The node's reply to an allowed connection passes its toNetwork as a reply.
    const back = kubelet.steps.find((s: any) => s.node === "node-1" && s.entry === "toNetwork");
    expect(back).toMatchObject({ reply: true, verdict: "FORWARDED" });
  });

  it("check passes every expectation; without the host firewall node flows are refused and the policy warned about", () => {
    const r = ciliate(...SCENARIO, "check", "-o", "json");
    expect(r.code, r.stderr).toBe(0);
    expect(json(r).failed).toBe(0);
    // The policy allows every pod (entity cluster) and has no egress: nothing about local pods goes unenforced.
    expect(r.stderr).toBe("");
    const dir = mkdtempSync(join(tmpdir(), "ciliate-hostfw-"));
    try {
      const cluster = readFileSync("scenarios/host-firewall/cluster.yaml", "utf8").replace("enableHostFirewall: true", "enableHostFirewall: false");
      writeFileSync(join(dir, "cluster.yaml"), cluster);
      writeFileSync(join(dir, "policy.yaml"), readFileSync("scenarios/host-firewall/policy.yaml", "utf8"));
      const off = ciliate("-f", dir, "trace", "--from", OUTSIDE, "--to", NODE_1, "--port", "80");
      expect(off.code).toBe(2);
      expect(off.stderr).toContain("nodeSelector rules (host policies) are not enforced: the host firewall is off");
      // --enable-host-firewall turns it on whatever the Config says.
      const on = json(ciliate("-f", dir, "--enable-host-firewall", "trace", "-o", "json", "--from", OUTSIDE, "--to", NODE_1, "--port", "80"));
      expect(on.verdict).toBe("denied");
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });

  it("reach and whatif judge host-networked pods on other nodes at the devices, as trace does", () => {
    // node-1 admits only SSH and sends only DNS: a pod on node-2 cannot reach a host-networked pod of
    // node-1 on 9100, nor that pod the node-2 pod on 80; node-1's own pod is not subject to either.
    const dir = mkdtempSync(join(tmpdir(), "ciliate-hostfw-reach-"));
    try {
      const pods = [
        "---\napiVersion: v1\nkind: Pod\nmetadata: { name: hostagent, namespace: web, labels: { app: hostagent } }\nspec:\n  nodeName: node-1\n  hostNetwork: true\n  containers: [{ name: a, image: busybox, ports: [{ containerPort: 9100 }] }]\n",
        "---\napiVersion: v1\nkind: Pod\nmetadata: { name: client, namespace: web, labels: { app: client } }\nspec:\n  nodeName: node-2\n  containers: [{ name: c, image: busybox, ports: [{ containerPort: 80 }] }]\n",
      ];
      writeFileSync(join(dir, "cluster.yaml"), readFileSync("scenarios/host-firewall/cluster.yaml", "utf8") + pods.join(""));
      writeFileSync(
        join(dir, "policy.yaml"),
        "apiVersion: cilium.io/v2\nkind: CiliumClusterwideNetworkPolicy\nmetadata: { name: host-strict }\nspec:\n  nodeSelector: { matchLabels: { node-access: ssh } }\n  ingress:\n    - toPorts: [{ ports: [{ port: \"22\", protocol: TCP }] }]\n  egress:\n    - toPorts: [{ ports: [{ port: \"53\", protocol: UDP }] }]\n",
      );
      const at = (port: string) => json(ciliate("-f", dir, "reach", "-o", "json", "--port", port)).probes[0].matrix;
      const m9100 = at("9100");
      const m80 = at("80");
      const traced = (from: string, to: string, port: string) => json(ciliate("-f", dir, "trace", "-o", "json", "--from", from, "--to", to, "--port", port)).verdict === "allowed";
      for (const [from, to, port, m] of [
        ["web/client", "web/hostagent", "9100", m9100],
        ["web/web-0", "web/hostagent", "9100", m9100],
        ["web/hostagent", "web/client", "80", m80],
        ["web/hostagent", "web/web-0", "80", m80],
      ] as const)
        expect(m[from][to], `${from} -> ${to}:${port}`).toBe(traced(from, to, port));
      expect(m9100["web/client"]["web/hostagent"]).toBe(false);
      expect(m80["web/hostagent"]["web/client"]).toBe(false);
      expect(m9100["web/web-0"]["web/hostagent"]).toBe(true);
      // Deleting the host policy opens both directions on both ports; whatif finds them (a host-policy edit is compared whole).
      const w = json(ciliate("-f", dir, "whatif", "-o", "json", "--port", "9100", "--port", "80", "--delete", "CiliumClusterwideNetworkPolicy/host-strict"));
      const changed = w.pairs.map((p: any) => `${p.from}>${p.to}:${p.port} ${p.before}->${p.after}`).sort();
      expect(changed).toEqual([
        "web/client>web/hostagent:80 denied->allowed",
        "web/client>web/hostagent:9100 denied->allowed",
        "web/hostagent>web/client:80 denied->allowed",
        "web/hostagent>web/client:9100 denied->allowed",
      ]);
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });

  it("the agent needs a --device for the host firewall: one clear line, exit 2", () => {
    const r = ciliate(...SCENARIO, "--enable-host-firewall", "agent", "--node-name", "node-1", "--pod-cidr", "10.244.1.0/24", "--node-ip", NODE_1);
    expect(r.code).toBe(2);
    expect(r.stderr.trim().split("\n")).toEqual(["ciliate: --enable-host-firewall needs at least one --device (the node devices facing the network, where from_network and to_network enforce host policies)"]);
  });
});
