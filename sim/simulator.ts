/*
 * The packet-level simulator: one datapath instance per node (WASM by default, or the JS build), its maps
 * written with its desired state (node/desired.ts) as a Cilium agent on that node would, a virtual clock, and traffic played packet
 * by packet through the core's entry points:
 *
 *   pod → anything:   fromEndpoint on the sender's node (service DNAT, conntrack, egress policy);
 *   outside / host →  fromNetwork on the receiving node when the address is a service frontend (NodePort,
 *                     LoadBalancer, external IP, ClusterIP from the host);
 *   host firewall:    with the Config's enableHostFirewall, a node's own packet leaving it runs toNetwork on
 *                     that node and a packet for a node from anywhere else runs fromNetwork on it (host
 *                     policies, core/host-firewall.ts);
 *   → pod:            toEndpoint on the receiver's node, with the sender's identity carried as the VXLAN
 *                     VNI carries it between nodes (to-overlay / from-overlay events), or 0 so the
 *                     receiver looks the source address up in its ipcache (traffic from outside).
 *
 * TCP is played as SYN, SYN-ACK, ACK, a request (the HTTP request when given) and a response, FIN/ACK in
 * both directions and a last ACK; UDP and SCTP as request and response; ICMP as echo request and reply.
 * The first drop ends the flow. When a policy entry redirects to the L7 proxy, the flow's L7 request (HTTP,
 * Kafka, or a TLS ClientHello) is judged by policy/'s rules of that proxy port, the implementation the
 * node's proxies use (a denial is an L7 REQUEST DROPPED, then the proxy's answer: an HTTP 403, a Kafka
 * TOPIC_AUTHORIZATION_FAILED response, or a closed TLS connection, as Hubble shows them); the proxy's own
 * connection is modelled as the same packet continuing.
 * A DNS query (a flow with `dns`) redirected to the DNS proxy is judged by policy/'s rules.dns; a denied
 * query is answered REFUSED by the proxy, an allowed one goes on to the resolver, and the answer's
 * addresses are learned into the FQDN cache before the answer reaches the client: the policy is
 * recompiled with the cache's state and every node's ipcache and policy map rewritten, so a later flow
 * to a learned address meets the new toFQDNs entries. Cache entries expire with the virtual clock.
 * Every verdict comes from the core's verdict and trace record; policy/ is only asked which rules stand
 * behind a cookie and what the proxy does with a request.
 */
import type { CompiledPolicy } from "../policy/index.ts";
import type { SimCluster } from "../node/cluster.ts";
import { createSimDatapath, type SimEngineName } from "./engines.ts";
import { desiredMaps, positionalNumbering } from "../node/desired.ts";
import { wasmMaglevBuilder } from "../host/wasm-core.ts";
import { ENTITY_OFFSETS, KUBE_APISERVER_IP, WORLD_IP, type Place } from "./places.ts";
import { type EncodedMaps, writeDesired, capacitiesFor } from "./engine-maps.ts";
import type { SimulationOptions } from "./state.ts";
import { Probes } from "./probes.ts";

export type { Place };
export { KUBE_APISERVER_IP, WORLD_IP };
export type { DirectionOutcome, FlowResult, L7Outcome, Step } from "./flow-result.ts";
export { CLOCK_ORIGIN_MS, FIRST_SOURCE_PORT, type SimulationOptions } from "./state.ts";
export { retargetIpv4 } from "./probes.ts";

/**
 * The simulation of a cluster: its state (state.ts) with the layers that play traffic on it — packets and
 * their Hubble events (flow-events.ts), the L7 proxies (l7-proxy.ts), flows of Traffic documents
 * (flow-player.ts) and reachability probes (probes.ts) — built by `create`, which writes every node's
 * desired state into its engine (engine-maps.ts).
 */
export class Simulation extends Probes {
  private constructor(cluster: SimCluster, policy: CompiledPolicy, engine: SimEngineName, opts: SimulationOptions) {
    super(cluster, policy, engine, opts);
  }

  static async create(cluster: SimCluster, policy: CompiledPolicy, opts: SimulationOptions = {}): Promise<Simulation> {
    const sim = new Simulation(cluster, policy, opts.engine ?? "wasm", opts);
    const shared: EncodedMaps = {};
    for (const n of cluster.nodes) {
      if (!sim.ownsNode(n)) continue;
      const numbering = positionalNumbering(cluster, n.name, sim.lb);
      // Maglev tables first (core's builder in a small shared instance), so the engine's maps can be sized
      // to what this node holds.
      const desired = desiredMaps(cluster, policy, sim.lb, n.name, numbering, wasmMaglevBuilder, sim.desiredOptions);
      const dp = opts.createDatapath ? await opts.createDatapath() : await createSimDatapath(sim.engine, { capacities: capacitiesFor(desired, 1 + ENTITY_OFFSETS.length * cluster.nodes.length) });
      writeDesired(dp, desired, shared);
      sim.extraIpcache(n, dp);
      sim.initEndpoint(n, dp);
      sim.nodes.set(n.name, { node: n, dp, epIds: numbering.epIds });
    }
    return sim;
  }
}
