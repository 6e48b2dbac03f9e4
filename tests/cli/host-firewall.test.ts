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

  it("the agent needs a --device for the host firewall: one clear line, exit 2", () => {
    const r = ciliate(...SCENARIO, "--enable-host-firewall", "agent", "--node-name", "node-1", "--pod-cidr", "10.244.1.0/24", "--node-ip", NODE_1);
    expect(r.code).toBe(2);
    expect(r.stderr.trim().split("\n")).toEqual(["ciliate: --enable-host-firewall needs at least one --device (the node devices facing the network, where from_network and to_network enforce host policies)"]);
  });
});
