/* agent/flow-export.ts: JSON-lines flow export with rotation (size limit, backups kept, oldest dropped) and Hubble-style allow/deny filters; no root. */
import { existsSync, mkdtempSync, readFileSync, rmSync, statSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterEach, describe, expect, it } from "vitest";
import { FlowExporter, exported, parseExportFilters } from "../../agent/flow-export.ts";
import { TraceRecordCodec, type TraceRecord } from "../../host/codecs.gen.ts";
import * as C from "../../host/constants.gen.ts";
import { jsonLine, type FlowEvent } from "../../host/flows.ts";
import { flowOf, type FlowNames } from "../../host/trace-flow.ts";

const names: FlowNames = {
  podByIp: new Map([
    ["10.244.1.2", { namespace: "default", name: "client", labels: { app: "client" } }],
    ["10.244.1.3", { namespace: "prod", name: "server", labels: { app: "server" } }],
  ]),
  identityLabels: new Map([[300, ["k8s:app=client"]], [301, ["k8s:app=server"]]]),
  nodeName: "node-1",
};
const a16 = (ip: string) => {
  const b = new Uint8Array(16);
  ip.split(".").forEach((x, i) => (b[i] = Number(x)));
  return b;
};
const flow = (over: Partial<TraceRecord>): FlowEvent =>
  flowOf({ ...TraceRecordCodec.zero(), family: C.FAMILY_IPV4, nexthdr: 6, saddr: a16("10.244.1.2"), newDaddr: a16("10.244.1.3"), origDaddr: a16("10.244.1.3"), sport: 40000, newDport: 8080, origDport: 8080, srcIdentity: 300, dstIdentity: 301, tcpFlags: 0x02, ...over }, names);
const drop = flow({ verdict: C.CTX_ACT_DROP, dropReason: 133, hook: C.HOOK_TO_ENDPOINT, traceFlags: C.TRACE_F_INGRESS_CHECKED, obsPoint: C.TRACE_TO_ENDPOINT });
const ok = flow({ hook: C.HOOK_FROM_ENDPOINT, sport: 41000, newDport: 53, origDport: 53, nexthdr: 17, tcpFlags: 0 });

let dir = "";
afterEach(() => rmSync(dir, { recursive: true, force: true }));
const lines = (p: string) => readFileSync(p, "utf8").split("\n").filter(Boolean);

describe("FlowExporter rotation", () => {
  it("writes `observe -o json` lines, rotates at the size limit, keeps max-backups and drops the oldest", () => {
    dir = mkdtempSync(join(tmpdir(), "ciliate-export-"));
    const path = join(dir, "flows.log");
    const lineBytes = Buffer.byteLength(`${jsonLine(drop)}\n`);
    // room for exactly 3 lines per file
    const ex = new FlowExporter({ path, maxBytes: lineBytes * 3, maxBackups: 2 });
    for (let i = 0; i < 3; i++) ex.write(drop);
    expect(existsSync(`${path}.1`)).toBe(false);
    expect(lines(path)).toEqual([jsonLine(drop), jsonLine(drop), jsonLine(drop)]);
    ex.write(drop); // 4th line: rotation
    expect(lines(`${path}.1`)).toHaveLength(3);
    expect(lines(path)).toHaveLength(1);
    for (let i = 0; i < 3 * 3; i++) ex.write(drop); // 13 lines in all → files of 3,3,3,3,1 → 2 backups kept
    ex.close();
    expect(lines(path)).toHaveLength(1);
    expect(lines(`${path}.1`)).toHaveLength(3);
    expect(lines(`${path}.2`)).toHaveLength(3);
    expect(existsSync(`${path}.3`)).toBe(false);
    for (const p of [path, `${path}.1`, `${path}.2`]) expect(statSync(p).size).toBeLessThanOrEqual(lineBytes * 3);
    expect(JSON.parse(lines(path)[0]!).flow).toMatchObject({ verdict: "DROPPED", drop_reason_desc: "POLICY_DENIED", source: { pod_name: "client" } });
  });

  it("keeps the newest flows in the newest backup, and appends to an existing file after a restart", () => {
    dir = mkdtempSync(join(tmpdir(), "ciliate-export-"));
    const path = join(dir, "flows.log");
    const lineBytes = Buffer.byteLength(`${jsonLine(drop)}\n`);
    const ex = new FlowExporter({ path, maxBytes: lineBytes * 2, maxBackups: 1 });
    ex.write(drop);
    ex.close();
    const again = new FlowExporter({ path, maxBytes: lineBytes * 2, maxBackups: 1 });
    again.write(drop);
    expect(lines(path)).toHaveLength(2);
    again.write(ok); // rotates: the two drops go to .1
    again.close();
    expect(lines(`${path}.1`).map((l) => JSON.parse(l).flow.verdict)).toEqual(["DROPPED", "DROPPED"]);
    expect(lines(path).map((l) => JSON.parse(l).flow.verdict)).toEqual(["FORWARDED"]);
  });
});

describe("export filters (Hubble FlowFilter JSON)", () => {
  it("allowlist any-of, fields all-of, denylist wins, pods by prefix", () => {
    const allow = parseExportFilters('[{"verdict":["DROPPED"]},{"destination_port":["53"],"protocol":["udp"]}]', "--export-allow");
    expect(exported(drop, allow)).toBe(true);
    expect(exported(ok, allow)).toBe(true);
    expect(exported(ok, parseExportFilters('{"destination_port":["53"],"protocol":["TCP"]}', "--export-allow"))).toBe(false);
    expect(exported(drop, allow, parseExportFilters('{"destination_pod":["prod/"]}', "--export-deny"))).toBe(false);
    expect(exported(drop, [], parseExportFilters('{"source_pod":["prod/"]}', "--export-deny"))).toBe(true);
    expect(exported(drop, parseExportFilters('{"source_label":["k8s:app=client"],"event_type":[{"type":1}]}', "x"))).toBe(true);
    expect(exported(ok, parseExportFilters('{"event_type":[{"type":1}]}', "x"))).toBe(false);
  });

  it("writes only what passes", () => {
    dir = mkdtempSync(join(tmpdir(), "ciliate-export-"));
    const path = join(dir, "flows.log");
    const ex = new FlowExporter({ path, maxBytes: 1 << 20, maxBackups: 1, allow: parseExportFilters('{"verdict":["DROPPED"]}', "--export-allow") });
    expect(ex.write(ok)).toBe(false);
    expect(ex.write(drop)).toBe(true);
    ex.close();
    expect(lines(path)).toHaveLength(1);
  });

  it("refuses bad filters with a one-line message naming the field", () => {
    expect(() => parseExportFilters("{verdict", "--export-allow")).toThrow(/^--export-allow: not JSON/);
    expect(() => parseExportFilters('{"pod":["x"]}', "--export-deny")).toThrow(/--export-deny: unknown FlowFilter field "pod"; expected one of source_pod/);
    expect(() => parseExportFilters('[{"verdict":"DROPPED"}]', "--export-allow")).toThrow(/--export-allow\[0\]\.verdict: expected a list/);
  });
});
