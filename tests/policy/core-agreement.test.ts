// @ts-nocheck -- imports AssemblyScript core sources (run by vitest with the portable env); the root
// tsconfig cannot type-check core/ (it has its own, core/tsconfig.json).
// Cross-module check: the entries the policy engine compiles, encoded with encodeEntries and written to
// core's Policy LPM map, give the same decision in core/policy.ts policyCanAccess (JavaScript semantics)
// as the engine's own TS mirror (policy/lookup.ts): verdict, proxy port, cookie and match type.
import { beforeAll, describe, expect, it } from "vitest";
import fc from "fast-check";
import { policyCanAccess } from "../../core/policy";
import { allocStatic, arenaReset } from "../../core/alloc";
import { read8, read16, read32, write8 } from "../../core/runtime/env.portable"; // core/env is aliased to this file only for "./env" imports
import { mapCreate, mapUpdate } from "../../core/maps";
import { MapId, POLICY_RESULT_COOKIE, POLICY_RESULT_MATCH_TYPE, POLICY_RESULT_PROXY_PORT, POLICY_RESULT_SIZE } from "../../core/gen/layout";
import { PolicyEntryCodec, PolicyKeyCodec } from "../../host/codecs.gen.ts";
import { encodeEntries, policyLookup, type Direction } from "../../policy/index.ts";
import { compileYaml, podsYaml } from "../../policy/test-helpers.ts";

const K = allocStatic(64, 8);
const V = allocStatic(64, 8);
const RES = allocStatic(POLICY_RESULT_SIZE, 8);

const yaml =
  podsYaml(
    [
      { ns: "x", name: "a", labels: { app: "a" }, ports: [{ name: "http", port: 8080 }] },
      { ns: "x", name: "b", labels: { app: "b" } },
      { ns: "y", name: "c", labels: { app: "c" } },
    ],
    { x: {}, y: {} },
  ) +
  `
---
apiVersion: cilium.io/v2
kind: CiliumNetworkPolicy
metadata: {name: a, namespace: x}
spec:
  endpointSelector: {matchLabels: {app: a}}
  ingress:
  - fromEndpoints: [{matchLabels: {app: b}}]
    toPorts: [{ports: [{port: http, protocol: TCP}], rules: {http: [{method: GET}]}}]
  - fromEntities: [cluster]
    toPorts: [{ports: [{port: "1000", endPort: 1999}]}]
  - toPorts: [{ports: [{port: "53", protocol: UDP}]}]
  - fromCIDRSet: [{cidr: 0.0.0.0/0, except: [10.0.0.0/8]}]
  - icmps: [{fields: [{type: 8}, {family: IPv6, type: EchoRequest}]}]
  ingressDeny:
  - fromEndpoints: [{matchLabels: {k8s:io.kubernetes.pod.namespace: y}}]
    toPorts: [{ports: [{port: "1500", endPort: 1600, protocol: TCP}]}]
  egress:
  - toEndpoints: [{}]
  - toCIDR: [10.0.0.0/8]
    toPorts: [{ports: [{port: "443", protocol: TCP}]}]
  egressDeny:
  - toEntities: [world]
    toPorts: [{ports: [{port: "25"}]}]
---
apiVersion: cilium.io/v2
kind: CiliumClusterwideNetworkPolicy
metadata: {name: cc}
spec:
  endpointSelector: {matchLabels: {app: c}}
  enableDefaultDeny: {ingress: false}
  ingressDeny: [{fromEntities: [world], toPorts: [{ports: [{port: "22", protocol: TCP}]}]}]
  egress: [{toEntities: [all], toPorts: [{ports: [{port: "80", endPort: 90, protocol: ANY}]}]}]
`;

const { compiled } = compileYaml(yaml);
const eps = [...compiled.endpoints.keys()].sort();

beforeAll(() => {
  arenaReset();
  expect(mapCreate(MapId.Policy, 65536)).toBe(0);
  eps.forEach((name, i) => {
    for (const { key, value } of encodeEntries(i + 1, compiled.endpoints.get(name)!.entries)) {
      const kb = PolicyKeyCodec.encode(key);
      const vb = PolicyEntryCodec.encode(value);
      for (let j = 0; j < kb.length; j++) write8(K + j, kb[j]);
      for (let j = 0; j < vb.length; j++) write8(V + j, vb[j]);
      expect(mapUpdate(MapId.Policy, K, V, 0)).toBe(0);
    }
  });
});

describe("policy engine entries in core's policy map", () => {
  it("core policyCanAccess agrees with policy/lookup.ts", () => {
    const ids = [0, ...compiled.identities.all.map((i) => i.id), 99999];
    fc.assert(
      fc.property(
        fc.integer({ min: 0, max: eps.length - 1 }),
        fc.constantFrom<Direction>("ingress", "egress"),
        fc.constantFrom(...ids),
        fc.constantFrom(6, 17, 132, 1, 58),
        fc.oneof(fc.constantFrom(0, 8, 22, 25, 53, 80, 90, 91, 128, 443, 999, 1000, 1500, 1600, 1601, 1999, 2000, 8080), fc.integer({ min: 0, max: 65535 })),
        (epIdx, dir, remote, proto, port) => {
          const entries = compiled.endpoints.get(eps[epIdx])!.entries;
          const mine = policyLookup(entries, dir, remote, proto, port);
          arenaReset();
          const v = policyCanAccess(epIdx + 1, remote, dir === "egress" ? 1 : 0, proto, port, RES);
          const expected = mine.verdict === "denied" ? -mine.dropReason : mine.proxyPort;
          expect(v).toBe(expected);
          expect(read8(RES + POLICY_RESULT_MATCH_TYPE)).toBe(mine.matchType);
          expect(read32(RES + POLICY_RESULT_COOKIE)).toBe(mine.entry?.cookie ?? 0);
          if (mine.verdict === "allowed") expect(read16(RES + POLICY_RESULT_PROXY_PORT)).toBe(mine.proxyPort);
        },
      ),
      { numRuns: 2000 },
    );
  });
});
