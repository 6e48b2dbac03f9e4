// TLS SNI (serverNames): name matching and the tls listener compiled from a port rule.
import { describe, expect, it } from "vitest";
import { explainFlow } from "../index.ts";
import { compileYaml, podsYaml } from "../test-helpers.ts";
import { checkServerName, serverNameMatches } from "./tls.ts";

describe("serverNameMatches (cilium/proxy SniPattern)", () => {
  it("exact names compare case-insensitively", () => {
    expect(serverNameMatches("api.example.com", "API.example.com")).toBe(true);
    expect(serverNameMatches("api.example.com", "example.com")).toBe(false);
  });
  it("* is any DNS characters within one label, ** one or more labels, a lone * any name", () => {
    expect(serverNameMatches("*.example.com", "a.example.com")).toBe(true);
    expect(serverNameMatches("*.example.com", "a.b.example.com")).toBe(false);
    expect(serverNameMatches("*.example.com", "example.com")).toBe(false);
    expect(serverNameMatches("*.example.com", "badexample.com")).toBe(false);
    expect(serverNameMatches("**.example.com", "a.b.example.com")).toBe(true);
    expect(serverNameMatches("api-*.example.com", "api-eu.example.com")).toBe(true);
    expect(serverNameMatches("*", "anything.at.all")).toBe(true);
  });
  it("checkServerName accepts what the proxy accepts", () => {
    expect(checkServerName("*.example.com")).toBeUndefined();
    expect(checkServerName("**.example.com")).toBeUndefined();
    expect(checkServerName("a.*.com")).toBeUndefined();
    expect(checkServerName("***.example.com")).toMatch(/invalid server name/);
    expect(checkServerName("example.com.")).toMatch(/invalid server name/);
    expect(checkServerName("a..com")).toMatch(/invalid server name/);
    expect(checkServerName("")).toMatch(/non-empty/);
  });
});

describe("a port with serverNames is a tls redirect", () => {
  const y =
    podsYaml([
      { ns: "x", name: "client", labels: { app: "client" } },
      { ns: "x", name: "other", labels: { app: "other" } },
    ]) +
    `\n---\napiVersion: cilium.io/v2\nkind: CiliumNetworkPolicy\nmetadata: {name: sni, namespace: x}
spec:
  endpointSelector: {matchLabels: {app: client}}
  egress:
  - toCIDR: [198.51.100.0/24]
    toPorts: [{ports: [{port: '443', protocol: TCP}], serverNames: [api.example.com, '*.cdn.example.com']}]
`;
  const { compiled } = compileYaml(y);
  const t = (serverName?: string) => explainFlow(compiled, { from: { pod: "x/client" }, to: { ip: "198.51.100.7" }, protocol: "TCP", port: 443, tls: { serverName } });
  it("listed names pass, others and a missing SNI are refused", () => {
    expect([...compiled.proxies.values()].map((l) => l.protocol)).toEqual(["tls"]);
    expect(t("api.example.com").verdict).toBe("allowed");
    expect(t("api.example.com").egress.l7).toMatchObject({ protocol: "tls", rule: { index: 0, serverName: "api.example.com" } });
    expect(t("img.cdn.example.com").verdict).toBe("allowed");
    expect(t("evil.example.org").verdict).toBe("denied");
    expect(t(undefined).egress.reason).toMatch(/names no server/);
  });
  it("serverNames on ANY: only TCP is allowed (through the proxy); UDP to that port is not", () => {
    const any = compileYaml(y.replace("[{port: '443', protocol: TCP}]", "[{port: '443'}]")).compiled;
    const flow = (protocol: "TCP" | "UDP") => explainFlow(any, { from: { pod: "x/client" }, to: { ip: "198.51.100.7" }, protocol, port: 443 });
    expect(flow("TCP").egress.lookup!.proxyPort).toBeGreaterThan(0);
    expect(flow("UDP").verdict).toBe("denied");
  });
  it("a connection without a described ClientHello is still redirected (the proxy decides)", () => {
    const e = explainFlow(compiled, { from: { pod: "x/client" }, to: { ip: "198.51.100.7" }, protocol: "TCP", port: 443 });
    expect(e.egress.lookup!.proxyPort).toBeGreaterThan(0);
  });
});
