/*
 * The agent's identity-allocation flags, named as Cilium's agent names them, checked into one
 * configuration before anything starts (a bad value is a one-line error naming the flag, or the file and
 * field of an etcd configuration file):
 *   --identity-allocation-mode local|kvstore|crd   (local: this node's own numbering, the default here)
 *   --kvstore etcd                                 (required by kvstore mode)
 *   --kvstore-opt etcd.config=FILE                 (Cilium's etcd configuration: endpoints, TLS files)
 *   --kvstore-opt etcd.endpoints=URL[,URL]         (ciliate's shorthand when there is no file)
 *   --kvstore-lease-ttl DURATION                   (the agent's lease; default 15m as Cilium's)
 *   --cluster-id N                                 (0..255; bits 16-23 of cluster-scoped identities)
 *   --identity-gc-interval DURATION                (how often this agent collects unused identities)
 *   --nodes-gc-interval DURATION                   (crd mode: how often the elected agent collects the
 *                                                   CiliumNodes and CiliumEndpoints of gone nodes, agent/crd-gc.ts;
 *                                                   Cilium operator's flag, default 5m as there)
 *   --leader-election-lease-duration DURATION      (crd mode: the Lease of that election; 15s as the operator's)
 */
import { readFileSync } from "node:fs";
import { parseDocument } from "yaml";
import { CLUSTER_ID_MAX } from "../host/identity-scopes.ts";
import type { IdentityAllocator } from "./identity-allocator.ts";

export const IDENTITY_MODES = ["local", "kvstore", "crd"] as const;
export type IdentityMode = (typeof IDENTITY_MODES)[number];

export interface IdentityFlags {
  identityAllocationMode?: string;
  kvstore?: string;
  kvstoreOpt?: string[];
  kvstoreLeaseTtl?: string;
  clusterId?: string;
  identityGcInterval?: string;
  nodesGcInterval?: string;
  leaderElectionLeaseDuration?: string;
  kubeconfig?: string;
}

export interface IdentityConfig {
  mode: IdentityMode;
  clusterId: number;
  /** kvstore mode: etcd endpoints and TLS material. */
  etcd?: { endpoints: string[]; credentials?: { rootCertificate: Buffer; privateKey?: Buffer; certChain?: Buffer } };
  leaseTtlSeconds: number;
  gcIntervalMs: number;
  /** crd mode: CiliumNode/CiliumEndpoint collection (agent/crd-gc.ts). */
  nodesGcIntervalMs: number;
  leaseDurationMs: number;
}

/** A Go-style duration (`15m`, `30s`, `1h`, `500ms`, `1m30s`) in milliseconds, or undefined. */
export function parseDuration(v: string): number | undefined {
  const m = /^((?:\d+(?:h|m|s|ms))+)$/.exec(v);
  if (!m) return undefined;
  const unit: Record<string, number> = { h: 3600_000, m: 60_000, s: 1000, ms: 1 };
  let total = 0;
  for (const [, n, u] of v.matchAll(/(\d+)(ms|h|m|s)/g)) total += Number(n) * unit[u!]!;
  return total;
}

/** An etcd client configuration file (Cilium's etcd.config format); errors name `flag`, the file and the field. */
export function etcdConfigFile(path: string, flag = "--kvstore-opt etcd.config"): NonNullable<IdentityConfig["etcd"]> {
  let text: string;
  try {
    text = readFileSync(path, "utf8");
  } catch (e) {
    throw new Error(`${flag}: cannot read ${path}: ${(e as NodeJS.ErrnoException).code ?? (e as Error).message}`);
  }
  const doc = parseDocument(text);
  if (doc.errors.length) throw new Error(`${path}: ${doc.errors[0]!.message.split("\n")[0]}`);
  const c = doc.toJS() as Record<string, unknown> | null;
  if (!c || typeof c !== "object") throw new Error(`${path}: expected a mapping with "endpoints"`);
  const endpoints = c.endpoints;
  if (!Array.isArray(endpoints) || endpoints.length === 0 || !endpoints.every((e) => typeof e === "string")) throw new Error(`${path}: field "endpoints": expected a list of URLs, e.g. [http://127.0.0.1:2379]`);
  const file = (field: string): Buffer | undefined => {
    const f = c[field];
    if (f === undefined) return undefined;
    if (typeof f !== "string") throw new Error(`${path}: field "${field}": expected a file path`);
    try {
      return readFileSync(f);
    } catch (e) {
      throw new Error(`${path}: field "${field}": cannot read ${f}: ${(e as NodeJS.ErrnoException).code ?? (e as Error).message}`);
    }
  };
  const ca = file("trusted-ca-file");
  const key = file("key-file");
  const cert = file("cert-file");
  if ((key || cert) && !ca) throw new Error(`${path}: field "trusted-ca-file": required with key-file/cert-file`);
  return { endpoints: endpoints.map((e) => checkEndpoint(e, `${path}: field "endpoints"`)), ...(ca ? { credentials: { rootCertificate: ca, privateKey: key, certChain: cert } } : {}) };
}

function checkEndpoint(e: string, where: string): string {
  let u: URL;
  try {
    u = new URL(e);
  } catch {
    throw new Error(`${where}: "${e}" is not a URL (expected http://host:port or https://host:port)`);
  }
  if (u.protocol !== "http:" && u.protocol !== "https:") throw new Error(`${where}: "${e}" must start with http:// or https://`);
  return e;
}

/** Checks the flags. Throws an Error with a one-line message naming the flag (or file and field). */
export function parseIdentityFlags(f: IdentityFlags): IdentityConfig {
  const mode = (f.identityAllocationMode ?? "local") as IdentityMode;
  if (!IDENTITY_MODES.includes(mode)) throw new Error(`--identity-allocation-mode: expected one of ${IDENTITY_MODES.join(", ")}, got "${f.identityAllocationMode}"`);
  const clusterId = f.clusterId === undefined ? 0 : Number(f.clusterId);
  if (f.clusterId !== undefined && (!/^\d+$/.test(f.clusterId) || clusterId > CLUSTER_ID_MAX)) throw new Error(`--cluster-id: expected a whole number from 0 to ${CLUSTER_ID_MAX}, got "${f.clusterId}"`);
  const ttl = parseDuration(f.kvstoreLeaseTtl ?? "15m");
  if (ttl === undefined || ttl < 1000) throw new Error(`--kvstore-lease-ttl: expected a duration of at least 1s (e.g. 15m, 30s), got "${f.kvstoreLeaseTtl}"`);
  const gc = parseDuration(f.identityGcInterval ?? "15m");
  if (gc === undefined || gc < 1000) throw new Error(`--identity-gc-interval: expected a duration of at least 1s (e.g. 15m), got "${f.identityGcInterval}"`);
  const nodesGc = parseDuration(f.nodesGcInterval ?? "5m");
  if (nodesGc === undefined || nodesGc < 1000) throw new Error(`--nodes-gc-interval: expected a duration of at least 1s (e.g. 5m), got "${f.nodesGcInterval}"`);
  const lease = parseDuration(f.leaderElectionLeaseDuration ?? "15s");
  if (lease === undefined || lease < 1000) throw new Error(`--leader-election-lease-duration: expected a duration of at least 1s (e.g. 15s), got "${f.leaderElectionLeaseDuration}"`);
  const cfg: IdentityConfig = { mode, clusterId, leaseTtlSeconds: Math.ceil(ttl / 1000), gcIntervalMs: gc, nodesGcIntervalMs: nodesGc, leaseDurationMs: lease };
  const opts = f.kvstoreOpt ?? [];
  if (mode !== "kvstore") {
    if (f.kvstore !== undefined || opts.length) throw new Error(`--kvstore and --kvstore-opt need --identity-allocation-mode kvstore (the mode is ${mode})`);
    if (mode === "crd" && !f.kubeconfig) throw new Error("--identity-allocation-mode crd needs --kubeconfig (CiliumIdentity objects live in the Kubernetes API)");
    return cfg;
  }
  if (f.kvstore !== "etcd") throw new Error(`--kvstore: expected "etcd" with --identity-allocation-mode kvstore, got ${f.kvstore === undefined ? "nothing" : `"${f.kvstore}"`}`);
  let etcd: IdentityConfig["etcd"];
  for (const o of opts) {
    const eq = o.indexOf("=");
    const [k, v] = eq < 0 ? [o, ""] : [o.slice(0, eq), o.slice(eq + 1)];
    if (!v) throw new Error(`--kvstore-opt: expected KEY=VALUE, got "${o}"`);
    if (k === "etcd.config") etcd = etcdConfigFile(v);
    else if (k === "etcd.endpoints") etcd = { endpoints: v.split(",").map((e) => checkEndpoint(e.trim(), "--kvstore-opt etcd.endpoints")) };
    else throw new Error(`--kvstore-opt: unknown option "${k}" (expected etcd.config=FILE or etcd.endpoints=URL[,URL])`);
  }
  if (!etcd) throw new Error("--kvstore etcd needs --kvstore-opt etcd.config=FILE or --kvstore-opt etcd.endpoints=URL");
  return { ...cfg, etcd };
}

/** The allocator of a cluster-wide mode (undefined for local), not yet started. */
export async function createIdentityAllocator(cfg: IdentityConfig, nodeName: string, kubeconfig: () => import("@kubernetes/client-node").KubeConfig, log: (msg: string) => void): Promise<IdentityAllocator | undefined> {
  if (cfg.mode === "kvstore") {
    const { KvstoreAllocator } = await import("./identity-kvstore.ts");
    return new KvstoreAllocator({ endpoints: cfg.etcd!.endpoints, credentials: cfg.etcd!.credentials, nodeName, clusterId: cfg.clusterId, leaseTtl: cfg.leaseTtlSeconds, log });
  }
  if (cfg.mode === "crd") {
    const { CrdAllocator } = await import("./identity-crd.ts");
    return new CrdAllocator({ kubeConfig: kubeconfig(), nodeName, clusterId: cfg.clusterId, log });
  }
  return undefined;
}
