/* `ciliate agent` identity-allocation flags: bad values are refused with one line and exit 2 before anything loads (no root needed). */
import { mkdtempSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { describe, expect, it } from "vitest";
import { parseDuration, parseIdentityFlags } from "../../agent/identity-options.ts";
import { ciliate } from "./run.ts";

const base = ["agent", "--node-ip", "192.0.2.1", "--pod-cidr", "10.244.1.0/24"];

function refused(args: string[], re: RegExp): void {
  const r = ciliate(...base, ...args);
  expect(r.code).toBe(2);
  expect(r.stderr.trim().split("\n")).toHaveLength(1);
  expect(r.stderr).toMatch(re);
}

describe("ciliate agent identity flags", () => {
  it("refuses an unknown mode, a kvstore other than etcd, missing endpoints and a bad cluster id", () => {
    refused(["--identity-allocation-mode", "consul"], /--identity-allocation-mode: expected one of local, kvstore, crd, got "consul"/);
    refused(["--identity-allocation-mode", "kvstore", "--kvstore", "consul"], /--kvstore: expected "etcd"/);
    refused(["--identity-allocation-mode", "kvstore", "--kvstore", "etcd"], /needs --kvstore-opt etcd.config=FILE or --kvstore-opt etcd.endpoints=URL/);
    refused(["--cluster-id", "256"], /--cluster-id: expected a whole number from 0 to 255, got "256"/);
    refused(["--identity-allocation-mode", "crd"], /crd needs --kubeconfig/);
    refused(["--kvstore", "etcd"], /need --identity-allocation-mode kvstore/);
  });

  it("names the file and field of a bad etcd configuration file", () => {
    const dir = mkdtempSync(join(tmpdir(), "ciliate-etcd-cfg-"));
    const f = join(dir, "etcd.yaml");
    writeFileSync(f, "endpoints: http://127.0.0.1:2379\n");
    refused(["--identity-allocation-mode", "kvstore", "--kvstore", "etcd", "--kvstore-opt", `etcd.config=${f}`], new RegExp(`${f}: field "endpoints": expected a list of URLs`));
    writeFileSync(f, "endpoints: [ftp://x]\n");
    refused(["--identity-allocation-mode", "kvstore", "--kvstore", "etcd", "--kvstore-opt", `etcd.config=${f}`], /must start with http:\/\/ or https:\/\//);
    refused(["--identity-allocation-mode", "kvstore", "--kvstore", "etcd", "--kvstore-opt", "etcd.qps=5"], /unknown option "etcd.qps"/);
  });

  it("refuses --clustermesh-config outside kvstore mode, or naming this cluster or a bad cluster name", () => {
    const dir = mkdtempSync(join(tmpdir(), "ciliate-mesh-cfg-"));
    const kv = ["--identity-allocation-mode", "kvstore", "--kvstore", "etcd", "--kvstore-opt", "etcd.endpoints=http://127.0.0.1:1"];
    refused(["--clustermesh-config", dir], /--clustermesh-config needs --identity-allocation-mode kvstore/);
    writeFileSync(join(dir, "east"), "endpoints: [http://127.0.0.1:2]\n");
    refused([...kv, "--cluster-name", "east", "--clustermesh-config", dir], /names this cluster \(--cluster-name east\)/);
    writeFileSync(join(dir, "West"), "endpoints: [http://127.0.0.1:3]\n");
    refused([...kv, "--cluster-name", "north", "--clustermesh-config", dir], /West: the file name is the remote cluster's name: invalid cluster name "West"/);
  });

  it("says when etcd cannot be reached", () => {
    refused(["--identity-allocation-mode", "kvstore", "--kvstore", "etcd", "--kvstore-opt", "etcd.endpoints=http://127.0.0.1:1"], /cannot reach the kvstore \(http:\/\/127.0.0.1:1\): connect ECONNREFUSED 127.0.0.1:1$/m);
  }, 60000);

  it("parses durations, endpoint lists and configuration files", () => {
    expect(parseDuration("15m")).toBe(900_000);
    expect(parseDuration("1m30s")).toBe(90_000);
    expect(parseDuration("15")).toBeUndefined();
    const dir = mkdtempSync(join(tmpdir(), "ciliate-etcd-cfg-"));
    const f = join(dir, "etcd.yaml");
    writeFileSync(f, "endpoints:\n  - http://10.0.0.1:2379\n  - http://10.0.0.2:2379\n");
    expect(parseIdentityFlags({ identityAllocationMode: "kvstore", kvstore: "etcd", kvstoreOpt: [`etcd.config=${f}`], clusterId: "3", kvstoreLeaseTtl: "30s" })).toEqual({
      mode: "kvstore",
      clusterId: 3,
      leaseTtlSeconds: 30,
      gcIntervalMs: 900_000,
      nodesGcIntervalMs: 300_000,
      leaseDurationMs: 15_000,
      etcd: { endpoints: ["http://10.0.0.1:2379", "http://10.0.0.2:2379"] },
    });
    expect(parseIdentityFlags({}).mode).toBe("local");
    expect(parseIdentityFlags({ nodesGcInterval: "30s", leaderElectionLeaseDuration: "5s" })).toMatchObject({ nodesGcIntervalMs: 30_000, leaseDurationMs: 5000 });
    expect(() => parseIdentityFlags({ nodesGcInterval: "0s" })).toThrow(/--nodes-gc-interval: expected a duration of at least 1s \(e.g. 5m\), got "0s"/);
    expect(() => parseIdentityFlags({ leaderElectionLeaseDuration: "15" })).toThrow(/--leader-election-lease-duration: expected a duration/);
  });
});
