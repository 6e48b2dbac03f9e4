/*
 * What a Cilium agent writes into one node's maps, done through the Datapath interface (so it works the
 * same on every engine): the configuration; the local endpoints (pods scheduled here, ids 1, 2, … in
 * namespace/name order); the ipcache (every pod IP with its identity and its node as tunnel endpoint,
 * every node IP as host on its own node and remote-node elsewhere, the CIDR identities of the policies,
 * and 0.0.0.0/0 and ::/0 as world); the per-endpoint policy entries compiled by policy/; and the services
 * (master entry, backend slots — active first, then terminating —, backends, reverse NAT, Maglev tables).
 * Mirrors pkg/endpointmanager, pkg/ipcache, pkg/maps/policymap and pkg/loadbalancer/reconciler upstream.
 */
import { MAP_SPECS } from "../host/codecs.gen.ts";
import * as C from "../host/constants.gen.ts";
import type { Datapath } from "../host/datapath.ts";
import { maglevHashString, maglevSeeds } from "../host/maglev.ts";
import type { CompiledPolicy } from "../policy/compile.ts";
import { encodeEntries } from "../policy/lookup.ts";
import type { SimCluster, SimNode, SimPod } from "./cluster.ts";
import { createWasmDatapath } from "./engines.ts";
import { addrBytes16, isIpv6, parseIpv4 } from "./packets.ts";
import { backendKey, frontendBackends, type LbModel } from "./services.ts";

const IPCACHE_F_HAS_TUNNEL_EP = 0x2;

function family(ip: string): number {
  return isIpv6(ip) ? C.FAMILY_IPV6 : C.FAMILY_IPV4;
}

export function ipcacheKey(cidr: string) {
  const [ip, len] = cidr.split("/");
  return { prefixlen: C.IPCACHE_STATIC_PREFIX + Number(len ?? (isIpv6(ip!) ? 128 : 32)), family: family(ip!), addr: addrBytes16(ip!) };
}

function protoNumber(p: string): number {
  return p === "TCP" ? C.IPPROTO_TCP : p === "UDP" ? C.IPPROTO_UDP : 132;
}

export class NodeAgent {
  /** ns/name → endpoint id on this node. */
  readonly epIds = new Map<string, number>();
  readonly localPods: SimPod[];

  constructor(
    readonly node: SimNode,
    readonly dp: Datapath,
    readonly cluster: SimCluster,
    public policy: CompiledPolicy,
    readonly lb: LbModel,
  ) {
    this.localPods = cluster.pods.filter((p) => p.node === node.name && !p.hostNetwork).sort((a, b) => (a.key < b.key ? -1 : 1));
    this.localPods.forEach((p, i) => this.epIds.set(p.key, i + 1));
  }

  /** Writes every map. */
  install(): void {
    this.writeConfig();
    this.writeEndpoints();
    this.writeIpcache();
    this.writePolicy();
    this.writeServices();
  }

  /**
   * Replaces the compiled policy (after the FQDN cache changed): CIDR identities that went away leave the
   * ipcache, every local endpoint's policy entries are rewritten. Pod identities do not depend on the
   * FQDN cache, so endpoints and pod ipcache entries stay.
   */
  replacePolicy(next: CompiledPolicy): void {
    const ipc = this.dp.map(MAP_SPECS.Ipcache);
    const keep = new Set(next.cidrIdentities.map((c) => c.prefix));
    for (const c of this.policy.cidrIdentities) if (!keep.has(c.prefix)) ipc.delete(ipcacheKey(c.prefix));
    const pm = this.dp.map(MAP_SPECS.Policy);
    for (const [k] of [...pm.entries()]) pm.delete(k);
    this.policy = next;
    for (const c of next.cidrIdentities) ipc.update(ipcacheKey(c.prefix), { secIdentity: c.identity });
    this.writePolicy();
  }

  writeConfig(): void {
    const cfg = this.cluster.config;
    const seeds = maglevSeeds(cfg.maglevSeed);
    const nodeIp = parseIpv4(isIpv6(this.node.ip) ? "0.0.0.0" : this.node.ip);
    this.dp.map(MAP_SPECS.Config).update(0, {
      ctSynTimeout: cfg.ct.syn,
      ctTcpLifetime: cfg.ct.tcp,
      ctCloseTimeout: cfg.ct.close,
      ctAnyLifetime: cfg.ct.any,
      ctServiceTcpLifetime: cfg.ct.svcTcp,
      ctServiceAnyLifetime: cfg.ct.svcAny,
      hashSeed: seeds.jhash0,
      maglevTableSize: cfg.maglevTableSize,
      flags: C.CONFIG_F_ENABLE_ICMP_RULE | C.CONFIG_F_ALLOW_ICMP_FRAG_NEEDED,
      hostIdentity: C.ID_HOST,
      worldIpv4Identity: C.ID_WORLD,
      worldIpv6Identity: C.ID_WORLD,
      serviceLoopbackIpv4: 0xa9fe2a01,
      nodePortMin: 30000,
      nodePortMax: 32767,
      nodeIpv4: ((nodeIp[0]! << 24) | (nodeIp[1]! << 16) | (nodeIp[2]! << 8) | nodeIp[3]!) >>> 0,
    } as never);
  }

  writeEndpoints(): void {
    const m = this.dp.map(MAP_SPECS.Endpoints);
    for (const p of this.localPods) {
      const epId = this.epIds.get(p.key)!;
      m.update({ addr: addrBytes16(p.ip), family: family(p.ip) }, { epId, secIdentity: this.identityOf(p), ifindex: 100 + epId });
    }
  }

  identityOf(p: SimPod): number {
    return this.policy.identities.podIdentity.get(p.key) ?? C.ID_WORLD;
  }

  writeIpcache(): void {
    const m = this.dp.map(MAP_SPECS.Ipcache);
    m.update(ipcacheKey("0.0.0.0/0"), { secIdentity: C.ID_WORLD });
    m.update(ipcacheKey("::/0"), { secIdentity: C.ID_WORLD });
    for (const c of this.policy.cidrIdentities) m.update(ipcacheKey(c.prefix), { secIdentity: c.identity });
    for (const n of this.cluster.nodes) m.update(ipcacheKey(n.ip), { secIdentity: n.name === this.node.name ? C.ID_HOST : C.ID_REMOTE_NODE });
    for (const p of this.cluster.pods) {
      if (p.hostNetwork) continue;
      const node = this.cluster.nodes.find((n) => n.name === p.node)!;
      const remote = node.name !== this.node.name;
      m.update(ipcacheKey(p.ip), { secIdentity: this.identityOf(p), tunnelEndpoint: remote ? addrBytes16(node.ip) : new Uint8Array(16), flags: remote ? IPCACHE_F_HAS_TUNNEL_EP : 0 } as never);
    }
  }

  writePolicy(): void {
    const m = this.dp.map(MAP_SPECS.Policy);
    for (const p of this.localPods) {
      const ep = this.policy.endpoints.get(p.key);
      if (!ep) continue;
      for (const { key, value } of encodeEntries(this.epIds.get(p.key)!, ep.entries)) m.update(key, value);
    }
  }

  writeServices(): void {
    const svcs = this.dp.map(MAP_SPECS.Services);
    const backends = this.dp.map(MAP_SPECS.Backends);
    const revnat = this.dp.map(MAP_SPECS.RevNat);
    const maglev = this.dp.map(MAP_SPECS.Maglev);
    const cfg = this.cluster.config;
    const seeds = maglevSeeds(cfg.maglevSeed);
    const written = new Set<number>();
    for (const f of this.lb.frontends) {
      const list = frontendBackends(f, this.node.name);
      const active = list.filter((b) => b.state === "active");
      const inactive = list.filter((b) => b.state !== "active");
      const key = { addr: addrBytes16(f.ip), dport: f.fport, proto: protoNumber(f.protocol), scope: C.LB_LOOKUP_SCOPE_EXT, family: family(f.ip) };
      const alg = f.svc.maglev ? C.LB_ALG_MAGLEV : C.LB_ALG_RANDOM;
      svcs.update(
        { ...key, backendSlot: 0 },
        { backendId: ((alg << 24) | (f.svc.affinityTimeout & 0xffffff)) >>> 0, count: active.length, qcount: inactive.length, revNatIndex: f.revNat, flags: f.flags, flags2: f.flags2 },
      );
      [...active, ...inactive].forEach((b, i) => {
        const id = this.lb.backendIds.get(backendKey(b))!;
        svcs.update({ ...key, backendSlot: i + 1 }, { backendId: id, revNatIndex: f.revNat });
        if (!written.has(id)) {
          written.add(id);
          backends.update({ backendId: id }, { addr: addrBytes16(b.ip), port: b.port, proto: protoNumber(b.protocol), state: b.state === "active" ? C.BE_STATE_ACTIVE : C.BE_STATE_TERMINATING, family: family(b.ip) });
        }
      });
      revnat.update({ revNatIndex: f.revNat }, { addr: addrBytes16(f.ip), port: f.fport, family: family(f.ip) });
      if (f.svc.maglev && active.length) {
        const list = active.map((b) => ({ id: this.lb.backendIds.get(backendKey(b))!, addr: b.ip, port: b.port, protocol: b.protocol }));
        // core/maglev.ts builds every table: in the engine itself when it can (wasm, js), otherwise (kernel)
        // in a small WASM instance of core, as the node agent does before writing the kernel map.
        const table = maglevBuilder(this.dp).maglevTable(
          list.map((b) => ({ id: b.id, hashString: maglevHashString({ addr: b.addr, port: b.port, protocol: b.protocol }) })),
          cfg.maglevTableSize,
          seeds.murmur,
        );
        for (let slot = 0; slot < table.length; slot++) maglev.update({ revNatIndex: f.revNat, slot }, { backendId: table[slot]! });
      }
    }
  }
}

type TableBuilder = { maglevTable(b: { id: number; hashString: string }[], m: number, seed: number): Uint32Array };
let wasmBuilder: TableBuilder | undefined;

/** The engine itself when it builds Maglev tables, else a shared WASM instance of core (tiny maps). */
function maglevBuilder(dp: Datapath): TableBuilder {
  const own = dp as Datapath & Partial<TableBuilder>;
  if (typeof own.maglevTable === "function") return own as TableBuilder;
  wasmBuilder ??= createWasmDatapath({ capacities: Object.fromEntries(["ipcache", "lxc", "policy", "lb_services", "lb_backends", "lb_reverse_nat", "lb_maglev", "lb_affinity", "ct", "snat", "metrics", "events"].map((n) => [n, 64])) });
  return wasmBuilder;
}
