/*
 * Prometheus metrics of the agent (prom-client), named after Cilium's (pkg/metrics):
 *   ciliate_drop_count_total{reason,direction}        packets dropped by the datapath (Metrics map)
 *   ciliate_drop_bytes_total{reason,direction}        their bytes
 *   ciliate_forward_count_total{direction}            packets forwarded (Metrics map, reason 0)
 *   ciliate_forward_bytes_total{direction}            their bytes
 *   ciliate_policy_verdict_total{direction,match,action}  policy verdicts of new flows (from the events)
 *   ciliate_bpf_map_pressure{map_name}                fill level of each map, entries / max_entries
 *   ciliate_bpf_map_entries{map_name}                 entries in each map
 *   ciliate_endpoint{}                                local endpoints
 *   ciliate_policy_regeneration_seconds               histogram of reconcile durations
 *   ciliate_reconcile_total{outcome}                  reconciles: ok, invalid_input, map_errors
 *   ciliate_invalid_input{}                           1 while the desired state is invalid (the last good one is kept)
 *   ciliate_policy_overflow_endpoints{}               endpoints over the policy-map budget (kept at their last good policy)
 *   ciliate_proxy_redirect_drops_total{reason,direction}  packets the datapath would have given to an L7 proxy and
 *                                                     dropped because none took them (PROXY_LOOKUP_FAILED, PROXY_SET_FAILED)
 *   ciliate_proxy_requests_total{protocol,verdict}    L7 requests judged by the node's proxy (agent/proxy)
 *   ciliate_proxy_upstream_errors_total{protocol}     the proxy's failed upstream connections and I/O
 *   ciliate_proxy_listeners{}                         proxy ports listening
 *   ciliate_proxy_listener_errors_total{family}       proxy listeners (IPv4, IPv6) that could not be opened; their
 *                                                     family's traffic to the port is dropped (PROXY_LOOKUP_FAILED)
 *   ciliate_bpf_map_pin_repairs_total{}               map pins found removed under the running agent and restored
 *   ciliate_policy_fail_closed_total{action}          failed policy operations closed: fence (a stale allow overwritten
 *                                                     with a deny), quarantine (an endpoint held out), fail_open (neither)
 *   ciliate_k8s_informer_errors_total{kind}           Kubernetes watch/list failures (each informer restarts, state kept)
 *   ciliate_kvstore_errors_total{component}           kvstore faults (watch errors, lost leases, failed allocations, writes, resyncs)
 * The datapath counters are read from the kernel's Metrics map when Prometheus scrapes. Cilium's and
 * Hubble's names (cilium_*, hubble_*) are served beside these from the same reads (upstream-metrics.ts).
 */
import type { FailClosedResult } from "./reconcile.ts";
import { createServer, type Server } from "node:http";
import { Counter, Gauge, Histogram, Registry } from "prom-client";
import { MAP_SPECS, MapType, type MapSpec } from "../host/codecs.gen.ts";
import * as C from "../host/constants.gen.ts";
import { dropReasonHubble } from "../host/drop-reasons.gen.ts";
import type { Agent, ReconcileReport } from "./agent.ts";
import { UpstreamMetrics, type UpstreamSource } from "./upstream-metrics.ts";
import type { ProxyMetricsSink } from "./proxy/manager.ts";

const DIRS: Record<number, string> = { [C.METRIC_DIR_INGRESS]: "INGRESS", [C.METRIC_DIR_EGRESS]: "EGRESS", [C.METRIC_DIR_SERVICE]: "SERVICE" };

export class AgentMetrics {
  readonly registry = new Registry();
  readonly policyVerdicts: Counter;
  /** cilium_* and hubble_* names; the observer feeds flows to upstream.observeFlow. */
  readonly upstream: UpstreamMetrics;
  private readonly regen: Histogram;
  private readonly reconciles: Counter;
  private readonly invalid: Gauge;
  private readonly overflow: Gauge;
  private readonly proxyRequests: Counter;
  private readonly proxyUpstreamErrors: Counter;
  private readonly proxyListenerErrors: Counter;
  /** Pins restored by Agent.repairPins. */
  readonly pinRepairs: Counter;
  readonly policyFailClosed: Counter;
  /** Failures of the Kubernetes informers (KubernetesSourceOptions.onError). */
  readonly k8sInformerErrors: Counter;
  /** Faults the kvstore clients report (identities: the allocator; state: shared endpoints and nodes). */
  readonly kvstoreErrors: Counter;
  private server?: Server;

  /** Takes the Agent, or (in tests) an object with the parts the metrics read. */
  constructor(private readonly agent: Pick<Agent, "obj" | "endpointList"> & UpstreamSource) {
    const reg = [this.registry];
    const agentRef = agent;
    const readDatapath = () => {
      const out: { reason: number; dir: number; packets: number; bytes: number }[] = [];
      // The Metrics map is an array: every (reason, dir) slot exists; only counted ones are series.
      for (const [k, v] of agentRef.obj.typedMap(MAP_SPECS.Metrics).entries()) {
        if (v.packets !== 0n) out.push({ reason: k.reason, dir: k.dir, packets: Number(v.packets), bytes: Number(v.bytes) });
      }
      return out;
    };
    // Registered first: its collect refreshes all four datapath counters from one walk of the map, before
    // the registry serialises any of them.
    const dropCount: Counter = new Counter({
      name: "ciliate_drop_count_total",
      help: "Packets dropped by the datapath, by reason and direction",
      labelNames: ["reason", "direction"],
      registers: reg,
      collect() {
        try {
          collectDatapath();
        } catch {
          // the object is closed: keep the last values
        }
      },
    });
    const dropBytes = new Counter({ name: "ciliate_drop_bytes_total", help: "Bytes dropped by the datapath, by reason and direction", labelNames: ["reason", "direction"], registers: reg });
    const fwdCount = new Counter({ name: "ciliate_forward_count_total", help: "Packets forwarded by the datapath, by direction", labelNames: ["direction"], registers: reg });
    const fwdBytes = new Counter({ name: "ciliate_forward_bytes_total", help: "Bytes forwarded by the datapath, by direction", labelNames: ["direction"], registers: reg });
    const redirectDrops = new Counter({ name: "ciliate_proxy_redirect_drops_total", help: "Packets redirected to an L7 proxy that no proxy socket took (dropped), by reason and direction", labelNames: ["reason", "direction"], registers: reg });
    const collectDatapath = () => {
      redirectDrops.reset();
      dropCount.reset();
      dropBytes.reset();
      fwdCount.reset();
      fwdBytes.reset();
      upstream.resetDatapath();
      for (const m of readDatapath()) {
        const direction = DIRS[m.dir] ?? String(m.dir);
        upstream.datapathRow(m.reason, direction, m.packets, m.bytes);
        if (m.reason === 0) {
          fwdCount.inc({ direction }, m.packets);
          fwdBytes.inc({ direction }, m.bytes);
        } else {
          const reason = dropReasonHubble(m.reason);
          dropCount.inc({ reason, direction }, m.packets);
          dropBytes.inc({ reason, direction }, m.bytes);
          if (m.reason === C.DROP_PROXY_LOOKUP_FAILED || m.reason === C.DROP_PROXY_SET_FAILED) redirectDrops.inc({ reason, direction }, m.packets);
        }
      }
    };
    this.policyVerdicts = new Counter({ name: "ciliate_policy_verdict_total", help: "Policy verdicts of new flows, from the datapath's events", labelNames: ["direction", "match", "action"], registers: reg });
    new Gauge({
      name: "ciliate_bpf_map_pressure",
      help: "Fill level of each BPF map (entries / max_entries)",
      labelNames: ["map_name"],
      registers: reg,
      collect() {
        for (const spec of Object.values(MAP_SPECS) as MapSpec[]) {
          if (spec.type === MapType.RingBuf || spec.type === MapType.Array || spec.type === MapType.PercpuArray) continue;
          try {
            const m = agentRef.obj.map(spec.bpfName);
            const fill = m.count() / m.info.maxEntries;
            this.set({ map_name: spec.bpfName }, fill);
            upstream.mapPressure(spec.bpfName, fill);
          } catch {
            // map not in this object
          }
        }
      },
    });
    new Gauge({
      name: "ciliate_endpoint",
      help: "Local endpoints managed by the agent",
      registers: reg,
      collect() {
        this.set(agentRef.endpointList().length);
      },
    });
    this.regen = new Histogram({ name: "ciliate_policy_regeneration_seconds", help: "Duration of a reconcile of the maps with the desired state", buckets: [0.001, 0.005, 0.01, 0.05, 0.1, 0.5, 1, 5], registers: reg });
    this.reconciles = new Counter({ name: "ciliate_reconcile_total", help: "Reconciles by outcome (ok, invalid_input, map_errors)", labelNames: ["outcome"], registers: reg });
    this.overflow = new Gauge({ name: "ciliate_policy_overflow_endpoints", help: "Local endpoints whose policy is over the policy-map budget and kept at their last good policy", registers: reg });
    this.proxyRequests = new Counter({ name: "ciliate_proxy_requests_total", help: "L7 requests judged by the node's proxy, by protocol and verdict", labelNames: ["protocol", "verdict"], registers: reg });
    this.proxyListenerErrors = new Counter({ name: "ciliate_proxy_listener_errors_total", help: "Proxy listeners that could not be opened, by address family (IPv4, IPv6); that family's traffic to the port is dropped with PROXY_LOOKUP_FAILED until one opens", labelNames: ["family"], registers: reg });
    this.proxyUpstreamErrors = new Counter({ name: "ciliate_proxy_upstream_errors_total", help: "Upstream connection or I/O errors of the node's proxy, by protocol", labelNames: ["protocol"], registers: reg });
    this.policyFailClosed = new Counter({ name: "ciliate_policy_fail_closed_total", help: "Failed policy-map operations closed by the agent: fence (a stale allow overwritten with a deny), quarantine (an endpoint held out of the endpoints map), fail_open (neither could be written)", labelNames: ["action"], registers: reg });
    this.pinRepairs = new Counter({ name: "ciliate_bpf_map_pin_repairs_total", help: "Map pins found removed under the running agent and pinned again", registers: reg });
    this.k8sInformerErrors = new Counter({ name: "ciliate_k8s_informer_errors_total", help: "Kubernetes list/watch failures by kind (the informer restarts and relists; the state is kept)", labelNames: ["kind"], registers: reg });
    this.kvstoreErrors = new Counter({ name: "ciliate_kvstore_errors_total", help: "kvstore faults by component (identities, state): watch errors, lost leases, failed allocations, writes and resyncs, unreadable keys", labelNames: ["component"], registers: reg });
    const self = this;
    new Gauge({
      name: "ciliate_proxy_listeners",
      help: "L7 proxy ports listening on this node",
      registers: reg,
      collect() {
        this.set(self.proxyListening());
      },
    });
    this.invalid = new Gauge({ name: "ciliate_invalid_input", help: "1 while the desired state is invalid and the last good one is kept", registers: reg });
    // Registered after ours: a scrape serialises in registration order, so the collects above have
    // filled the upstream counters from their single reads before these are written out.
    const upstream = (this.upstream = new UpstreamMetrics(this.registry, agent));
  }

  /** The proxy manager's sink (agent/proxy/manager.ts). */
  readonly proxy: ProxyMetricsSink = {
    request: (protocol, verdict) => this.proxyRequests.inc({ protocol, verdict }),
    upstreamError: (protocol) => this.proxyUpstreamErrors.inc({ protocol }),
    listenerError: (family) => this.proxyListenerErrors.inc({ family }),
  };

  /** Where ciliate_proxy_listeners reads the number of listening proxy ports from. */
  proxyListening: () => number = () => 0;

  observeReconcile(r: ReconcileReport): void {
    this.regen.observe(r.durationMs / 1000);
    this.upstream.observeRegeneration(r.durationMs / 1000, r.ok);
    const outcome = r.ok ? "ok" : r.applied && r.applied.failed.length ? "map_errors" : "invalid_input";
    this.reconciles.inc({ outcome });
    this.invalid.set(outcome === "invalid_input" ? 1 : 0);
    if (r.overflow) this.overflow.set(r.overflow.length);
    const closed = r.applied as Partial<FailClosedResult> | undefined;
    if (closed?.fenced) this.policyFailClosed.inc({ action: "fence" }, closed.fenced);
    if (closed?.quarantined?.length) this.policyFailClosed.inc({ action: "quarantine" }, closed.quarantined.length);
    if (closed?.failOpen?.length) this.policyFailClosed.inc({ action: "fail_open" }, closed.failOpen.length);
  }

  async text(): Promise<string> {
    return this.registry.metrics();
  }

  /** Serves /metrics on host:port. */
  listen(addr: string): Promise<Server> {
    const i = addr.lastIndexOf(":");
    const host = i > 0 ? addr.slice(0, i) : "0.0.0.0";
    const port = Number(addr.slice(i + 1));
    this.server = createServer(async (req, res) => {
      if (req.url?.startsWith("/metrics")) {
        const body = await this.text();
        res.writeHead(200, { "content-type": this.registry.contentType });
        res.end(body);
      } else {
        res.writeHead(404).end();
      }
    });
    return new Promise((resolve, reject) => {
      this.server!.once("error", reject);
      this.server!.listen(port, host, () => resolve(this.server!));
    });
  }

  close(): void {
    this.server?.close();
  }
}
