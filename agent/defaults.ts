/*
 * What the light commands (`ciliate cni`, `ciliate observe`) share with the agent without loading it: the
 * default paths and the error type the API answers with. Kept apart so a CNI invocation — which the
 * container runtime makes for every pod — does not load libbpf, prom-client or the Kubernetes client.
 */
export const DEFAULT_STATE_DIR = "/var/run/ciliate";
export const DEFAULT_SOCKET = "/var/run/ciliate/agent.sock";
/** datapath/bpf-object.ts DEFAULT_PIN_ROOT (not imported: that module loads libbpf). */
export const DEFAULT_BPFFS = "/sys/fs/bpf/ciliate";

export class AgentError extends Error {
  constructor(
    readonly code: string,
    message: string,
    /** The CNI error code to answer with. */
    readonly cniCode = 999,
  ) {
    super(message);
    this.name = "AgentError";
  }
}
