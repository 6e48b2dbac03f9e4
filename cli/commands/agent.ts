/*
 * `ciliate agent`: run the node agent (agent/, docs/agent.md). Needs root. Loads the generated
 * datapath with its maps pinned, reconciles the maps with the manifests (watched for changes), serves the
 * CNI API on a root-only unix socket and Prometheus metrics over HTTP, until SIGINT/SIGTERM. Exits 0 on a
 * signal, 2 on bad flags or when the datapath cannot be loaded.
 */
import { readFileSync } from "node:fs";
import { hostname } from "node:os";
import { dirname, join } from "node:path";
import { repoPath } from "../../host/paths.ts";
import { buildOptions, fqdnMinTtlOf, masqueradeOption, type GlobalOptions } from "../common.ts";
import type { MasqueradeOptions } from "../../node/desired.ts";
import { CliError } from "../errors.ts";
import type { IdentityFlags } from "../../agent/identity-options.ts";

export interface AgentFlags extends GlobalOptions, IdentityFlags {
  nodeName?: string;
  nodeIp?: string;
  podCidr?: string;
  enableIpv6?: boolean;
  ipv6Range?: string;
  ipv6Node?: string;
  bpffs: string;
  stateDir: string;
  socket: string;
  metricsAddr?: string;
  object: string;
  resyncInterval: string;
  device?: string[];
  xdpAcceleration?: boolean;
  traceAll?: boolean;
  traceSample?: string;
  kubeconfig?: string;
  policyMapMax?: string;
  k8sResync: string;
  exportFile?: string;
  exportFileMaxSizeMb: string;
  exportFileMaxBackups: string;
  exportAllow?: string[];
  exportDeny?: string[];
  dnsProxy?: boolean;
  routingMode?: string;
  hubbleSocket?: string;
  hubbleListenAddress?: string;
  clustermeshConfig?: string;
}


export async function runAgent(f: AgentFlags): Promise<number> {
  const routingMode = parseRoutingMode(f.routingMode);
  const tunnelProtocol = parseTunnelProtocol(f.tunnelProtocol, routingMode);
  // Loaded here, not at the top: libbpf, prom-client and the Kubernetes client stay out of every other command.
  const [{ Agent }, { agentRoutes, serveApi }, { ManifestSource }, { AgentMetrics }, { FlowObserver, verdictLabels }, { ProxyManager }, { createProtocolHandlers }, { l7FlowOf, namesFrom }] = await Promise.all([
    import("../../agent/agent.ts"),
    import("../../agent/api.ts"),
    import("../../agent/manifest-source.ts"),
    import("../../agent/metrics.ts"),
    import("../../agent/observer.ts"),
    import("../../agent/proxy/manager.ts"),
    import("../../agent/proxy/handlers.ts"),
    import("../../agent/flows.ts"),
  ]);
  if (!f.podCidr) throw new CliError("--pod-cidr is required", "BAD_OPTION", "the node's pod CIDR, e.g. 10.244.1.0/24");
  if (!f.nodeIp) throw new CliError("--node-ip is required", "BAD_OPTION", "the node's InternalIP");
  if (f.enableIpv6 && !f.ipv6Range) throw new CliError("--enable-ipv6 needs --ipv6-range", "BAD_OPTION", "this node's IPv6 pod CIDR, e.g. fd00:10:244:1::/64");
  if (f.ipv6Range && !f.enableIpv6) throw new CliError("--ipv6-range needs --enable-ipv6", "BAD_OPTION", "add --enable-ipv6 for dual-stack pods");
  if (f.ipv6Range) {
    const { parsePodCidr } = await import("../../agent/ipam.ts");
    let family: number;
    try {
      family = parsePodCidr(f.ipv6Range).family;
    } catch (e) {
      throw new CliError(`invalid --ipv6-range: ${(e as Error).message}`, "BAD_OPTION", "an IPv6 prefix /64 to /126, e.g. fd00:10:244:1::/64");
    }
    if (family !== 6) throw new CliError(`invalid --ipv6-range ${f.ipv6Range}: not an IPv6 prefix`, "BAD_OPTION", "an IPv6 prefix /64 to /126, e.g. fd00:10:244:1::/64");
  }
  if (f.ipv6Node !== undefined) {
    if (!f.enableIpv6) throw new CliError("--ipv6-node needs --enable-ipv6", "BAD_OPTION", "add --enable-ipv6 --ipv6-range for dual-stack pods");
    if ((await import("../../host/ip.ts")).parseIp(f.ipv6Node)?.family !== 6) throw new CliError(`invalid --ipv6-node ${f.ipv6Node}: not an IPv6 address`, "BAD_OPTION", "this node's IPv6 InternalIP, e.g. fd00:57::11");
  }
  if (f.policyMapMax !== undefined && !(Number.isInteger(Number(f.policyMapMax)) && Number(f.policyMapMax) > 0)) throw new CliError(`invalid --policy-map-max ${f.policyMapMax}`, "BAD_OPTION", "a positive count");
  const fqdnMinTtl = fqdnMinTtlOf(f);
  const interval = Number(f.resyncInterval);
  if (!Number.isFinite(interval) || interval < 50) throw new CliError(`invalid --resync-interval ${f.resyncInterval}`, "BAD_OPTION", "milliseconds, at least 50");
  const identityOptions = await import("../../agent/identity-options.ts");
  let identityConfig: import("../../agent/identity-options.ts").IdentityConfig;
  try {
    identityConfig = identityOptions.parseIdentityFlags(f);
  } catch (e) {
    throw new CliError((e as Error).message, "BAD_OPTION");
  }
  const meshConfigs = await clusterMeshConfigs(f, identityConfig.mode);
  const masquerade = parseMasquerade(f);
  if (f.enableHostFirewall && !f.device?.length) throw new CliError("--enable-host-firewall needs at least one --device", "BAD_OPTION", "the node devices facing the network, where from_network and to_network enforce host policies");
  if (f.xdpAcceleration && !f.device?.length) throw new CliError("--xdp-acceleration needs at least one --device", "BAD_OPTION", "the node devices facing the outside, where from-network runs at XDP");
  const hubbleTcp = f.hubbleListenAddress === undefined ? undefined : hubbleListenAddress(f.hubbleListenAddress);
  const exporter = f.exportFile ? await flowExporter(f) : undefined;
  const source = new ManifestSource(f.file ?? []);
  // In crd mode -f may come with --kubeconfig: the manifests are the desired state and the API holds only
  // the cluster-wide objects (CiliumIdentity, CiliumEndpoint, CiliumNode).
  if (f.kubeconfig && f.file?.length && identityConfig.mode !== "crd") throw new CliError("-f and --kubeconfig are exclusive", "BAD_OPTION", "the desired state comes from one source (both together only with --identity-allocation-mode crd)");
  const k8sMod = f.kubeconfig ? await import("../../agent/k8s-source.ts") : undefined;
  // The metrics exist only once the agent does; informer failures before that are counted when they exist.
  let informerError: (kind: string) => void = () => {};
  const k8s = k8sMod && !f.file?.length ? new k8sMod.KubernetesSource(k8sMod.kubeConfig(f.kubeconfig!), { resyncMs: Number(f.k8sResync) * 1000 || undefined, onError: (kind) => informerError(kind) }) : undefined;
  const nodeName = f.nodeName ?? hostname();
  const log = (level: string, msg: string) => process.stderr.write(`${new Date().toISOString()} ${level} ${msg}\n`);
  // Cluster-wide identities: connected and listed before the first reconcile (docs/agent.md).
  // What the kvstore clients report is a fault (a watch error, a lost lease, a failed write or resync, an
  // unreadable key): logged, and counted once the metrics exist.
  let kvstoreError: (component: "identities" | "state") => void = () => {};
  const identityAllocator = await identityOptions.createIdentityAllocator(identityConfig, nodeName, () => k8sMod!.kubeConfig(f.kubeconfig!), (m) => {
    log("warn", m);
    if (identityConfig.mode === "kvstore") kvstoreError("identities");
  });
  try {
    await identityAllocator?.start();
  } catch (e) {
    // gRPC's message carries the socket error after "Last error:"; that part is what the operator needs.
    const m = (e as Error).message.split("\n")[0]!;
    const why = /Last error: (?:Error: )?(.*?)\.?(?: Resolution note:.*)?$/.exec(m)?.[1] ?? m;
    throw new CliError(`--identity-allocation-mode ${identityConfig.mode}: cannot reach the ${identityConfig.mode === "kvstore" ? `kvstore (${identityConfig.etcd!.endpoints.join(", ")})` : "Kubernetes API"}: ${why}`, "BAD_OPTION");
  }
  // The uid of each pod the source lists (from the Kubernetes API; manifests usually carry none): crd mode's
  // CiliumEndpoints are owned by their Pod, so the API's garbage collector deletes them with it.
  let podUids = new Map<string, string>();
  // kvstore and crd modes: this node's endpoints and node are published (etcd keys, agent/kvstore-state.ts;
  // CiliumEndpoint/CiliumNode objects, agent/crd-state.ts) and every other node's are watched; they join
  // the desired state as pods and nodes (agent/shared-state.ts), whichever the backend.
  const kvState =
    identityConfig.mode === "kvstore"
      ? await startKvstoreState(identityAllocator!, identityConfig, nodeName, f, () => kvstoreError("state"))
      : identityConfig.mode === "crd"
        ? await startCrdState(k8sMod!.kubeConfig(f.kubeconfig!), identityConfig, nodeName, f, (ns, name) => podUids.get(`${ns}/${name}`))
        : undefined;
  // crd mode: the operator's garbage collection of gone nodes' CiliumNodes and CiliumEndpoints, run by the
  // agent that holds the Lease (agent/crd-gc.ts, docs/agent.md).
  const crdGc = identityConfig.mode === "crd" ? await startCrdGc(k8sMod!.kubeConfig(f.kubeconfig!), identityConfig, nodeName, (m) => log("info", m)) : undefined;
  const sharedState = kvState && (await import("../../agent/shared-state.ts"));
  // Cluster Mesh: the other clusters' etcds, watched read-only (agent/clustermesh.ts, docs/clustermesh.md).
  const mesh = meshConfigs ? await startClusterMesh(meshConfigs, f, identityConfig.clusterId, (m) => log("info", m)) : undefined;
  const clusterAllocator = mesh && identityAllocator ? new (await import("../../agent/clustermesh.ts")).MeshIdentityAllocator(identityAllocator, mesh) : identityAllocator;
  const baseSource = () => (k8s ? k8s.objects() : source.load());
  const sharedSource = () => {
    const objects = baseSource();
    // crd mode names each CiliumEndpoint's Pod as its owner when the source knows the pod's uid.
    podUids = sharedState!.podUidsOf(objects);
    return sharedState!.withSharedState(objects, { endpoints: kvState!.remoteEndpoints(), nodes: kvState!.remoteNodes() });
  };
  const agent = new Agent({
    nodeName,
    nodeIp: f.nodeIp,
    podCIDR: f.podCidr,
    ...(f.ipv6Range ? { podCIDRv6: f.ipv6Range } : {}),
    ...(f.ipv6Node ? { nodeIp6: f.ipv6Node } : {}),
    pinRoot: f.bpffs,
    stateDir: f.stateDir,
    objectPath: f.object,
    source: mesh ? () => sharedState!.withClusterMesh(sharedSource(), mesh.state()) : kvState ? sharedSource : baseSource,
    buildOptions: buildOptions(f),
    devices: f.device ?? [],
    xdpAcceleration: f.xdpAcceleration === true,
    eventsAll: f.traceAll === true,
    traceSample: f.traceSample === undefined ? undefined : parseTraceSample(f.traceSample),
    policyMapMax: f.policyMapMax === undefined ? undefined : Number(f.policyMapMax),
    fqdnMinTtl,
    routingMode,
    tunnelProtocol,
    masquerade,
    identityAllocator: clusterAllocator,
    clusterId: identityConfig.clusterId,
    onIdentityError: () => {
      if (identityConfig.mode === "kvstore") kvstoreError("identities");
    },
  });
  const identityGc = identityAllocator ? setInterval(() => void identityAllocator.gc().then((ids) => ids.length && log("info", `identity gc released ${ids.join(", ")}`), (e: Error) => log("warn", `identity gc: ${e.message}`)), identityConfig.gcIntervalMs) : undefined;
  const metrics = new AgentMetrics(agent);
  informerError = (kind) => metrics.k8sInformerErrors.inc({ kind });
  kvstoreError = (component) => metrics.kvstoreErrors.inc({ component });
  // Pins removed under the running agent are restored (docs/reliability.md), checked at the resync pace.
  const pinCheck = setInterval(() => {
    try {
      const n = agent.repairPins().length;
      if (n) metrics.pinRepairs.inc(n);
    } catch (e) {
      log("error", `restoring removed pins under ${f.bpffs}: ${(e as Error).message}`);
    }
  }, Math.max(interval, 1000));
  const observer = new FlowObserver(agent);
  const emit = (e: import("../../agent/proxy/types.ts").L7FlowEvent) => observer.publish(l7FlowOf(e, namesFrom(agent.desired, agent.opts.nodeName)));
  // What every proxy judges with: the policy with this node's listeners in the agent's stable numbering, the
  // numbers the ipcache gives a connection's peers (agent.identityOf).
  const policy = () => ({ ...agent.desired!.policy, proxies: agent.desired!.proxies });
  const handlers = createProtocolHandlers();
  if (f.dnsProxy !== false) handlers.dns = (await import("../../agent/proxy/dns.ts")).createDnsTcpHandler((name, ips, ttl) => agent.learnDns(name, ips, ttl));
  // The node's L7 proxy: one listener per proxy port of the local endpoints' policy (agent/proxy).
  const proxy = new ProxyManager({
    map: agent.proxyListenerMap(),
    listeners: () => agent.desired?.proxies ?? new Map(),
    policy,
    identityOf: (ip) => agent.identityOf(ip),
    handlers,
    emit,
    metrics: metrics.proxy,
    log,
    // Dual stack: IPv6 listeners beside the IPv4 ones, so IPv6 L7 flows are proxied as IPv4 ones are.
    families: f.enableIpv6 ? [4, 6] : [4],
  });
  metrics.proxyListening = () => proxy.listening().length;
  // The DNS proxy over UDP: its own transparent sockets, announced to the manager once they listen
  // (otherwise the datapath drops DNS with PROXY_LOOKUP_FAILED) (docs/l7.md).
  const dns = f.dnsProxy === false ? undefined : await startDnsProxy(agent, proxy, policy, emit, metrics.proxy, log);
  agent.events.onReconcile = (r) => {
    metrics.observeReconcile(r);
    dns?.sync();
    proxy.sync();
    kvState?.publish(
      sharedState!.localSharedEndpoints(agent.desired, agent.localEndpoints(), { name: agent.opts.nodeName, ip: agent.opts.nodeIp }),
      sharedState!.localClusterServices(agent.desired, { name: f.clusterName ?? "default", id: identityConfig.clusterId }),
    );
  };
  kvState?.onChange(() => agent.reconcile(`${identityConfig.mode} state changed`));
  mesh?.onChange(() => agent.reconcile("clustermesh state changed"));
  if (k8s) await k8s.start(() => agent.reconcile("kubernetes"));
  agent.reconcile("start");
  observer.onFlow = (fl) => {
    const l = verdictLabels(fl);
    if (l) metrics.policyVerdicts.inc(l);
    metrics.upstream.observeFlow(fl);
    exporter?.write(fl);
  };
  if (!observer.start()) process.stderr.write(`${new Date().toISOString()} warn the datapath object has no events ring buffer: \`ciliate observe\` will show nothing\n`);
  const server = await serveApi(f.socket, agentRoutes(agent), new Map([["GET /v1/flows", observer.route()]]));
  if (f.metricsAddr) await metrics.listen(f.metricsAddr);
  const { serveObserver } = await import("../../agent/observer-grpc.ts");
  // Beside the agent socket unless named (/var/run/ciliate/hubble.sock, as Cilium's /var/run/cilium/hubble.sock).
  const hubbleSocket = f.hubbleSocket ?? join(dirname(f.socket), "hubble.sock");
  const hubble = await serveObserver({ store: observer.store, nodeName: agent.opts.nodeName, version: `ciliate ${agentVersion()}`, startedAt: new Date() }, hubbleSocket, hubbleTcp).catch((e: Error) => {
    throw new CliError(e.message, "BAD_OPTION", "a free --hubble-listen-address and a writable --hubble-socket directory");
  });
  if (!k8s) source.watch(interval, () => agent.reconcile("manifests changed"));
  process.stderr.write(`${new Date().toISOString()} info ciliate agent on ${agent.opts.nodeName} (${f.podCidr}): API ${f.socket}, Hubble Observer ${hubble.addresses.join(" and ")}${f.metricsAddr ? `, metrics http://${f.metricsAddr}/metrics` : ""}\n`);
  await new Promise<void>((resolve) => {
    const stop = () => resolve();
    process.once("SIGINT", stop);
    process.once("SIGTERM", stop);
  });
  clearInterval(pinCheck);
  // The shared state first: its watchers stop (no reconcile after the agent closed) and this node's entries
  // go (kvstore: the lease is revoked; crd: its CiliumEndpoints and CiliumNode are deleted).
  await mesh?.close();
  await crdGc?.close();
  await kvState?.close();
  source.stop();
  k8s?.stop();
  // Listeners close and the ProxyListeners entries go: redirected traffic is dropped while the agent is away.
  proxy.close();
  observer.stop();
  await hubble.close();
  server.closeAllConnections?.();
  server.close();
  metrics.close();
  exporter?.close();
  dns?.close();
  agent.close();
  clearInterval(identityGc);
  // A graceful stop releases this node's identity references at once (kvstore: the lease is revoked).
  await identityAllocator?.close();
  return 0;
}

/** What a node publishes of its addresses (kvstore and crd modes): its InternalIP and pod CIDR of each family. */
function sharedNodeAddresses(f: AgentFlags) {
  return { ip: f.nodeIp!, podCIDR: f.podCidr!, ...(f.ipv6Node ? { ip6: f.ipv6Node } : {}), ...(f.ipv6Range ? { podCIDRv6: f.ipv6Range } : {}) };
}

/** The kvstore's shared state on the identity allocator's etcd client, started (lists and watches). */
async function startKvstoreState(allocator: import("../../agent/identity-allocator.ts").IdentityAllocator, cfg: import("../../agent/identity-options.ts").IdentityConfig, nodeName: string, f: AgentFlags, onError: () => void) {
  const [{ KvstoreState }, { KvstoreAllocator }] = await Promise.all([import("../../agent/kvstore-state.ts"), import("../../agent/identity-kvstore.ts")]);
  if (!(allocator instanceof KvstoreAllocator)) throw new Error("kvstore mode without a kvstore allocator");
  const log = (m: string) => {
    process.stderr.write(`${new Date().toISOString()} warn ${m}\n`);
    onError();
  };
  const st = new KvstoreState({ client: allocator.client, node: { name: nodeName, cluster: f.clusterName ?? "default", clusterId: cfg.clusterId, ...sharedNodeAddresses(f) }, leaseTtl: cfg.leaseTtlSeconds, log });
  await st.start();
  return st;
}

/** The CiliumEndpoint/CiliumNode shared state (crd mode), started (lists and watches). */
async function startCrdState(kubeConfig: import("@kubernetes/client-node").KubeConfig, cfg: import("../../agent/identity-options.ts").IdentityConfig, nodeName: string, f: AgentFlags, podUid: (namespace: string, name: string) => string | undefined) {
  const { CrdState } = await import("../../agent/crd-state.ts");
  const st = new CrdState({ kubeConfig, podUid, node: { name: nodeName, cluster: f.clusterName ?? "default", clusterId: cfg.clusterId, ...sharedNodeAddresses(f) }, log: (m) => process.stderr.write(`${new Date().toISOString()} warn ${m}\n`) });
  try {
    await st.start();
  } catch (e) {
    throw new CliError(`--identity-allocation-mode crd: cannot publish or watch CiliumEndpoint/CiliumNode objects: ${(e as Error).message.split("\n")[0]}`, "BAD_OPTION");
  }
  return st;
}

/** The elected collector of gone nodes' CiliumNodes and CiliumEndpoints (crd mode), started. */
async function startCrdGc(kubeConfig: import("@kubernetes/client-node").KubeConfig, cfg: import("../../agent/identity-options.ts").IdentityConfig, nodeName: string, log: (m: string) => void) {
  const { CrdGarbageCollector } = await import("../../agent/crd-gc.ts");
  const gc = new CrdGarbageCollector({ kubeConfig, nodeName, intervalMs: cfg.nodesGcIntervalMs, leaseDurationMs: cfg.leaseDurationMs, log });
  gc.start();
  return gc;
}

/** --clustermesh-config, checked before anything starts (undefined without the flag). */
async function clusterMeshConfigs(f: AgentFlags, mode: string) {
  if (f.clustermeshConfig === undefined) return undefined;
  if (mode !== "kvstore") throw new CliError("--clustermesh-config needs --identity-allocation-mode kvstore", "BAD_OPTION", "Cluster Mesh shares state through each cluster's etcd");
  const { readClusterMeshConfig } = await import("../../agent/clustermesh.ts");
  try {
    return readClusterMeshConfig(f.clustermeshConfig, f.clusterName ?? "default");
  } catch (e) {
    throw new CliError((e as Error).message, "BAD_OPTION", "a directory with one etcd configuration file per remote cluster, named after it");
  }
}

/** Every remote cluster's etcd, connecting in the background (agent/clustermesh.ts M3). */
async function startClusterMesh(configs: import("../../agent/clustermesh.ts").RemoteClusterConfig[], f: AgentFlags, clusterId: number, log: (m: string) => void) {
  const { ClusterMesh } = await import("../../agent/clustermesh.ts");
  const own = f.clusterName ?? "default";
  if (!configs.length) log(`clustermesh: no remote cluster configuration in ${f.clustermeshConfig} (a file named after the cluster, with endpoints:)`);
  const mesh = new ClusterMesh(configs, { name: own, id: clusterId }, log);
  mesh.start();
  // Files added, changed or removed afterwards connect, reconnect or disconnect their cluster (M5).
  mesh.watch(f.clustermeshConfig!);
  return mesh;
}

/** --export-file and its options (Hubble's --hubble-export-file-* and allow/deny lists), checked before anything starts. */
async function flowExporter(f: AgentFlags) {
  const { FlowExporter, parseExportFilters } = await import("../../agent/flow-export.ts");
  const mb = Number(f.exportFileMaxSizeMb);
  if (!(Number.isFinite(mb) && mb > 0)) throw new CliError(`invalid --export-file-max-size-mb ${f.exportFileMaxSizeMb}`, "BAD_OPTION", "a positive number of megabytes");
  const backups = Number(f.exportFileMaxBackups);
  if (!(Number.isInteger(backups) && backups >= 0)) throw new CliError(`invalid --export-file-max-backups ${f.exportFileMaxBackups}`, "BAD_OPTION", "a count, 0 or more");
  const filters = (list: string[] | undefined, option: string) => {
    try {
      return (list ?? []).flatMap((t) => parseExportFilters(t, option));
    } catch (e) {
      throw new CliError((e as Error).message, "BAD_OPTION", `a Hubble FlowFilter in JSON, e.g. ${option} '{"verdict":["DROPPED"]}'`);
    }
  };
  const allow = filters(f.exportAllow, "--export-allow");
  const deny = filters(f.exportDeny, "--export-deny");
  try {
    return new FlowExporter({ path: f.exportFile!, maxBytes: mb * 1024 * 1024, maxBackups: backups, allow, deny });
  } catch (e) {
    throw new CliError(`cannot open --export-file ${f.exportFile}: ${(e as Error).message}`, "BAD_OPTION", "a writable file path");
  }
}

/**
 * Starts the node's DNS proxy over UDP; its ports follow the policy after every reconcile, and each port is
 * announced to the proxy manager (the ProxyListeners map) only while its socket listens.
 */
async function startDnsProxy(
  agent: import("../../agent/agent.ts").Agent,
  manager: import("../../agent/proxy/manager.ts").ProxyManager,
  policy: () => import("../../policy/index.ts").CompiledPolicy,
  emit: (e: import("../../agent/proxy/types.ts").L7FlowEvent) => void,
  metrics: import("../../agent/proxy/manager.ts").ProxyMetricsSink | undefined,
  log: (level: string, msg: string) => void,
): Promise<{ sync(): void; close(): void }> {
  const { DnsUdpProxy } = await import("../../agent/proxy/dns-udp.ts");
  const C = await import("../../host/constants.gen.ts");
  const udp = new DnsUdpProxy({
    ctx: {
      policy,
      emit: (e) => {
        if (e.type === "REQUEST") metrics?.request(e.protocol, e.verdict);
        emit(e);
      },
      upstreamError: (p) => metrics?.upstreamError(p),
      learn: (name, ips, ttl) => agent.learnDns(name, ips, ttl),
    },
    identityOf: (ip) => agent.identityOf(ip),
    // The answers carry the egress proxy's mark, so the datapath delivers them instead of redirecting them.
    replyMark: C.MARK_MAGIC_FROM_EGRESS_PROXY,
    log,
  });
  const announced = new Set<number>();
  const sync = () => {
    try {
      udp.sync(agent.dnsProxyPorts());
    } catch (e) {
      log("error", `dns proxy: ${(e as Error).message}; its DNS traffic is dropped (PROXY_LOOKUP_FAILED)`);
    }
    const listening = new Set(udp.ports());
    for (const port of announced) if (!listening.has(port)) (manager.withdraw(port), announced.delete(port));
    for (const port of listening) {
      manager.announce(port, agent.desired?.proxies.get(port)?.direction ?? "egress");
      announced.add(port);
    }
  };
  return {
    sync,
    close: () => {
      for (const port of announced) manager.withdraw(port);
      udp.close();
    },
  };
}

/** The global --enable-bpf-masquerade and --ipv4/--ipv6-native-routing-cidr on a node: they need a device. */
function parseMasquerade(f: AgentFlags): MasqueradeOptions | undefined {
  const m = masqueradeOption(f);
  if (m && !f.device?.length) throw new CliError("--enable-bpf-masquerade needs at least one --device", "BAD_OPTION", "the node devices facing the outside, where to_network SNATs at tc egress");
  return m;
}

/** --routing-mode: native, tunnel, or undefined (no routes between nodes, no overlay). */
function parseRoutingMode(v: string | undefined): "native" | "tunnel" | undefined {
  if (v === undefined || v === "native" || v === "tunnel") return v;
  throw new CliError(`invalid --routing-mode ${JSON.stringify(v)}`, "BAD_OPTION", "native or tunnel");
}

/**
 * --tunnel-protocol (the global option the simulator uses too, so vxlan when not given) in tunnel mode:
 * vxlan or geneve. Other modes run no overlay and ignore it, as Cilium ignores tunnel-protocol in native
 * routing.
 */
function parseTunnelProtocol(v: string | undefined, mode: string | undefined): "vxlan" | "geneve" | undefined {
  if (mode !== "tunnel") return undefined;
  if (v !== undefined && v !== "vxlan" && v !== "geneve") throw new CliError(`invalid --tunnel-protocol ${JSON.stringify(v)} for --routing-mode tunnel`, "BAD_OPTION", "vxlan or geneve");
  return v ?? "vxlan";
}

/** The version GetNodes and ServerStatus report: package.json's. */
export function agentVersion(): string {
  try {
    return String((JSON.parse(readFileSync(repoPath("package.json"), "utf8")) as { version?: string }).version ?? "unknown");
  } catch {
    return "unknown";
  }
}

/** --hubble-listen-address: host:port, [v6]:port or :port (every address, as Cilium's ":4244"). */
function hubbleListenAddress(v: string): string {
  const m = /^(\[[0-9a-fA-F:.]+\]|[A-Za-z0-9.-]*):(\d{1,5})$/.exec(v);
  if (!m || Number(m[2]) > 65535) throw new CliError(`invalid --hubble-listen-address ${JSON.stringify(v)}`, "BAD_OPTION", "host:port, [v6]:port or :port, e.g. 127.0.0.1:4244");
  return `${m[1] || "0.0.0.0"}:${m[2]}`;
}

/** --trace-sample: a whole number 1..65535 (the datapath keeps it in a u16). */
function parseTraceSample(v: string): number {
  const n = Number(v);
  if (!/^\d+$/.test(v) || n < 1 || n > 65535) throw new CliError(`--trace-sample: expected a whole number from 1 to 65535, got "${v}"`);
  return n;
}
