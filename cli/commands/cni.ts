/*
 * `ciliate cni`: the CNI plugin (CNI spec 1.0: ADD, DEL, CHECK, VERSION). The runtime executes it with the
 * network configuration on stdin and CNI_COMMAND, CNI_CONTAINERID, CNI_NETNS, CNI_IFNAME, CNI_ARGS,
 * CNI_PATH in the environment; it forwards the request to the agent over its unix socket (configuration
 * key "socket", default /var/run/ciliate/agent.sock) and prints the result (ADD) or nothing, exit 0; on
 * failure it prints a CNI error {cniVersion, code, msg, details} on stdout and exits 1.
 * Error codes: 1 incompatible version, 4 invalid environment, 6 cannot decode the configuration,
 * 7 invalid configuration, 11 try again later (the agent is not reachable), 999 agent-side failures.
 * DEL is idempotent: deleting an unknown container, or with the agent's state already gone, succeeds.
 */
import { callApi } from "../../agent/api.ts";
import { DEFAULT_SOCKET } from "../../agent/defaults.ts";
import { endpointNamesProblem } from "../../agent/endpoint-names.ts";

export const CNI_SUPPORTED_VERSIONS = ["0.3.0", "0.3.1", "0.4.0", "1.0.0", "1.1.0"];

class CniError extends Error {
  constructor(
    readonly cniCode: number,
    message: string,
    readonly details = "",
  ) {
    super(message);
  }
}

function parseArgs(s: string | undefined): Record<string, string> {
  const out: Record<string, string> = {};
  for (const kv of (s ?? "").split(";")) {
    const i = kv.indexOf("=");
    if (i > 0) out[kv.slice(0, i)] = kv.slice(i + 1);
  }
  return out;
}

export async function runCni(env: NodeJS.ProcessEnv, stdin: string, out: (s: string) => void): Promise<number> {
  let cniVersion = "1.0.0";
  try {
    const cmd = env.CNI_COMMAND;
    if (cmd === "VERSION") {
      out(`${JSON.stringify({ cniVersion: "1.0.0", supportedVersions: CNI_SUPPORTED_VERSIONS })}\n`);
      return 0;
    }
    let conf: Record<string, unknown>;
    try {
      conf = JSON.parse(stdin) as Record<string, unknown>;
    } catch (e) {
      throw new CniError(6, "cannot decode the network configuration", (e as Error).message);
    }
    // null, a list or a scalar is valid JSON but no configuration (it used to fail as a TypeError, 999).
    if (!conf || typeof conf !== "object" || Array.isArray(conf)) throw new CniError(6, "cannot decode the network configuration", "it must be a JSON object");
    if (typeof conf.cniVersion === "string") cniVersion = conf.cniVersion;
    if (!CNI_SUPPORTED_VERSIONS.includes(cniVersion)) throw new CniError(1, `unsupported cniVersion ${cniVersion}`, `supported: ${CNI_SUPPORTED_VERSIONS.join(", ")}`);
    if (typeof conf.name !== "string" || !conf.name) throw new CniError(7, "the network configuration has no name");
    const socket = typeof conf.socket === "string" ? conf.socket : DEFAULT_SOCKET;
    const containerId = env.CNI_CONTAINERID ?? "";
    if (!["ADD", "DEL", "CHECK"].includes(cmd ?? "")) throw new CniError(4, `unknown CNI_COMMAND ${JSON.stringify(cmd ?? "")}`);
    if (!containerId) throw new CniError(4, "CNI_CONTAINERID is not set");
    const args = parseArgs(env.CNI_ARGS);
    // Without Kubernetes arguments the pod is named after the container (a runtime's ids are hex).
    const fallbackName = containerId.slice(0, 12).toLowerCase().replace(/[^a-z0-9]/g, "0");
    const pod = args.K8S_POD_NAMESPACE && args.K8S_POD_NAME ? `${args.K8S_POD_NAMESPACE}/${args.K8S_POD_NAME}` : `default/${fallbackName}`;
    const body = { containerId, netns: env.CNI_NETNS ?? "", ifname: env.CNI_IFNAME ?? "eth0", pod, cniVersion };
    if (cmd === "ADD" || cmd === "CHECK") {
      if (!env.CNI_NETNS) throw new CniError(4, "CNI_NETNS is not set");
      if (!env.CNI_IFNAME) throw new CniError(4, "CNI_IFNAME is not set");
      const problem = endpointNamesProblem(body);
      if (problem) throw new CniError(4, problem);
    }
    let res;
    try {
      res = await callApi(socket, "POST", `/v1/cni/${cmd!.toLowerCase()}`, body);
    } catch (e) {
      throw new CniError(11, `cannot reach the ciliate agent at ${socket}`, (e as Error).message);
    }
    if (res.status !== 200) {
      const b = res.body as { code?: number; msg?: string; details?: string };
      throw new CniError(b.code ?? 999, b.msg ?? `agent answered HTTP ${res.status}`, b.details ?? "");
    }
    if (cmd === "ADD") out(`${JSON.stringify({ ...(res.body as object), cniVersion })}\n`);
    return 0;
  } catch (e) {
    const err = e instanceof CniError ? e : new CniError(999, (e as Error).message);
    out(`${JSON.stringify({ cniVersion, code: err.cniCode, msg: err.message, details: err.details })}\n`);
    return 1;
  }
}
