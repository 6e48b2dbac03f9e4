// `ciliate agent`: its flags and help, read on every start (`ciliate --help` loads every definition);
// the implementation, cli/commands/agent.ts, is imported only when the command runs.
import type { Command } from "commander";
import { DEFAULT_BPFFS, DEFAULT_SOCKET, DEFAULT_STATE_DIR } from "../../agent/defaults.ts";
import { repoPath } from "../../host/paths.ts";

/** datapath/kernel-engine.ts KERNEL_OBJECT (not imported here: the agent's modules load only when it runs). */
const KERNEL_OBJECT = repoPath("build/bpf/ciliate.bpf.o");

export function registerAgent(program: Command, run: (fn: () => Promise<number>) => Promise<void>): void {
  program
    .command("agent")
    .description("run the node agent: load the datapath, join pods (CNI), keep the maps in step with the manifests")
    .option("--node-name <name>", "this node's name (default: the hostname)")
    .option("--node-ip <ip>", "this node's InternalIP")
    .option("--pod-cidr <cidr>", "this node's pod CIDR (IPAM range)")
    .option("--enable-ipv6", "dual-stack pods: each also gets an IPv6 address from --ipv6-range (Cilium's enable-ipv6)")
    .option("--ipv6-range <cidr>", "with --enable-ipv6: this node's IPv6 pod CIDR, /64 to /126 (Cilium's ipv6-range)")
    .option("--ipv6-node <ip>", "with --enable-ipv6: this node's IPv6 InternalIP, the other nodes' next hop to its IPv6 pod CIDR in native routing (Cilium's ipv6-node)")
    .option("--bpffs <dir>", "bpffs directory for the pinned maps", DEFAULT_BPFFS)
    .option("--state-dir <dir>", "agent state (endpoints, IPAM, identities)", DEFAULT_STATE_DIR)
    .option("--socket <path>", "unix socket of the agent API (root only)", DEFAULT_SOCKET)
    .option("--metrics-addr <host:port>", "serve Prometheus metrics on this address")
    .option("--object <path>", "the generated eBPF object", KERNEL_OBJECT)
    .option("--device <ifname>", "node device facing the outside, for NodePort/LoadBalancer (repeatable)", (v: string, p: string[] = []) => [...p, v])
    .option("--xdp-acceleration", "run from-network at XDP (driver mode) on the --device interfaces instead of tc (Cilium loadBalancer.acceleration=native)")
    .option("--kubeconfig <path>", "take the desired state from the Kubernetes API (a kubeconfig file, or `in-cluster`) instead of -f")
    .option("--k8s-resync <seconds>", "with --kubeconfig: reconcile the whole cache this often", "300")
    .option("--policy-map-max <n>", "policy entries allowed per endpoint (Cilium bpf-policy-map-max)")
    .option("--no-dns-proxy", "do not run the DNS proxy (nothing is learned for toFQDNs)")
    .option("--trace-sample <n>", "also send about 1 in N forwarded packets to `ciliate observe` as trace events (1..65535)")
    .option("--trace-all", "send every packet to `ciliate observe`, not only drops and new flows' policy verdicts")
    .option("--export-file <path>", "also write every observed flow to this file as JSON lines (what `observe -o json` prints)")
    .option("--export-file-max-size-mb <n>", "with --export-file: rotate the file at this size", "10")
    .option("--export-file-max-backups <n>", "with --export-file: rotated files kept (PATH.1 newest); older ones are deleted", "5")
    .option("--export-allow <json>", "with --export-file: export only flows matching this Hubble FlowFilter (repeatable; any matches)", (v: string, p: string[] = []) => [...p, v])
    .option("--export-deny <json>", "with --export-file: never export flows matching this Hubble FlowFilter (repeatable)", (v: string, p: string[] = []) => [...p, v])
    .option("--routing-mode <mode>", "reach pods on other nodes: native (a route to each node's pod CIDR via its node IP) or tunnel (VXLAN/Geneve overlay, the sender's identity in the VNI); default: no routes between nodes")
    .option("--hubble-socket <path>", "unix socket of the Hubble Observer gRPC API, root only (default: hubble.sock beside --socket)")
    .option("--hubble-listen-address <host:port>", "also serve the Hubble Observer API on TCP, without TLS (Cilium's --hubble-listen-address; \":4244\" is every address)")
    .option("--resync-interval <ms>", "how often to check the manifests for changes", "500")
    .option("--identity-allocation-mode <mode>", "security identities: local (this node numbers them), kvstore (etcd, cluster-wide) or crd (CiliumIdentity objects, cluster-wide)", "local")
    .option("--kvstore <type>", "with --identity-allocation-mode kvstore: the kvstore (etcd)")
    .option("--kvstore-opt <key=value>", "kvstore option: etcd.config=FILE (endpoints, TLS files) or etcd.endpoints=URL[,URL] (repeatable)", (v: string, p: string[] = []) => [...p, v])
    .option("--kvstore-lease-ttl <duration>", "TTL of this agent's kvstore lease: its identity references go this long after it dies", "15m")
    .option("--cluster-id <n>", "cluster id 0..255 (bits 16-23 of cluster-scoped identities)", "0")
    .option("--identity-gc-interval <duration>", "how often this agent removes identities no node references", "15m")
    .option("--nodes-gc-interval <duration>", "crd mode: how often the elected agent deletes the CiliumNodes of deleted Nodes and the CiliumEndpoints of gone pods and nodes", "5m")
    .option("--leader-election-lease-duration <duration>", "crd mode: the Lease electing the agent that collects them (kube-system/ciliate-operator-resource-lock)", "15s")
    .option("--clustermesh-config <dir>", "Cluster Mesh: a directory with one etcd configuration per remote cluster, each file named after its cluster (kvstore mode)")
    .addHelpText(
      "after",
      `
Examples:
  ciliate agent -f /etc/ciliate/manifests --node-ip 192.168.56.11 --pod-cidr 10.244.1.0/24 --metrics-addr 127.0.0.1:9962
  ciliate agent -f manifests/ --node-ip 192.168.56.11 --pod-cidr 10.244.1.0/24 --identity-allocation-mode kvstore --kvstore etcd --kvstore-opt etcd.config=/etc/ciliate/etcd.yaml --cluster-id 1
  ciliate agent -f manifests/ --node-ip 192.168.56.11 --pod-cidr 10.244.1.0/24 --device eth0 --routing-mode tunnel --tunnel-protocol vxlan
  ciliate agent -f manifests/ --node-ip 192.168.56.11 --pod-cidr 10.244.1.0/24 --export-file /var/log/ciliate/flows.log --export-allow '{"verdict":["DROPPED"]}'

See docs/agent.md. Exit codes: 0 stopped by a signal, 2 bad flags or the datapath could not be loaded.`,
    )
    .action(async (_o, cmd: Command) => run(async () => (await import("../commands/agent.ts")).runAgent(cmd.optsWithGlobals())));
}
