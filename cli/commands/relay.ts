/*
 * `ciliate relay`: one Hubble Observer API in front of several nodes' (agent/relay.ts; Hubble Relay's
 * `hubble-relay serve`), so `ciliate observe --server`, the Hubble CLI or any client generated from
 * observer.proto sees the whole cluster's flows merged in time order. Peers are given with --peer (Hubble
 * Relay discovers them through the peer service, which ciliate does not have). Serves on TCP
 * (--listen-address, 127.0.0.1:4245 when neither it nor --socket is given) and/or a root-only unix socket
 * (--socket), until SIGINT/SIGTERM. Exit 0 on a signal, 2 on bad flags or an address that cannot be bound.
 */
import { bindAddress, targetProblem } from "../../agent/grpc-target.ts";
import { parseDuration } from "../../agent/identity-options.ts";
import type { GlobalOptions } from "../common.ts";
import { DEFAULT_RELAY_LISTEN } from "../definitions/relay.ts";
import { CliError } from "../errors.ts";
import { agentVersion } from "./agent.ts";

export interface RelayFlags extends GlobalOptions {
  peer?: string[];
  listenAddress?: string;
  socket?: string;
  sortBufferLenMax: string;
  sortBufferDrainTimeout: string;
  retryTimeout: string;
  dialTimeout: string;
}

function duration(v: string, flag: string, minMs: number): number {
  const ms = parseDuration(v);
  if (ms === undefined || ms < minMs) throw new CliError(`invalid ${flag} ${JSON.stringify(v)}`, "BAD_OPTION", `a duration of at least ${minMs}ms, e.g. 1s, 500ms, 30s`);
  return ms;
}

/** The relay's options, checked: every bad flag is a one-line CliError. */
export function relayOptions(f: RelayFlags) {
  const peers = f.peer ?? [];
  if (!peers.length) throw new CliError("ciliate relay needs at least one --peer", "BAD_OPTION", "e.g. --peer unix:///var/run/ciliate/hubble.sock --peer 192.168.56.12:4244");
  for (const p of peers) {
    const problem = targetProblem(p, "--peer");
    if (problem) throw new CliError(problem, "BAD_OPTION");
  }
  if (new Set(peers).size !== peers.length) throw new CliError(`--peer ${peers.find((p, i) => peers.indexOf(p) !== i)} is given twice`, "BAD_OPTION");
  let tcp: string | undefined;
  if (f.listenAddress !== undefined || f.socket === undefined) {
    const b = bindAddress(f.listenAddress ?? DEFAULT_RELAY_LISTEN, "--listen-address");
    if ("problem" in b) throw new CliError(b.problem, "BAD_OPTION");
    tcp = b.address;
  }
  if (f.socket !== undefined && !f.socket.startsWith("/")) throw new CliError(`--socket ${JSON.stringify(f.socket)}: expected an absolute path`, "BAD_OPTION");
  const len = Number(f.sortBufferLenMax);
  if (!Number.isInteger(len) || len < 1) throw new CliError(`invalid --sort-buffer-len-max ${JSON.stringify(f.sortBufferLenMax)}`, "BAD_OPTION", "a count of at least 1 (Hubble Relay's default 100)");
  return {
    peers,
    tcp,
    socket: f.socket,
    options: {
      sortBufferLenMax: len,
      sortBufferDrainTimeoutMs: duration(f.sortBufferDrainTimeout, "--sort-buffer-drain-timeout", 1),
      retryTimeoutMs: duration(f.retryTimeout, "--retry-timeout", 1),
      dialTimeoutMs: duration(f.dialTimeout, "--dial-timeout", 1),
      peerUpdateIntervalMs: 2000,
      version: `ciliate-relay ${agentVersion()}`,
    },
  };
}

export async function runRelay(f: RelayFlags): Promise<number> {
  const o = relayOptions(f);
  const { serveRelay } = await import("../../agent/relay.ts");
  const { relay, server } = await serveRelay(o.peers, o.options, o.socket, o.tcp).catch((e: Error) => {
    throw new CliError(e.message, "BAD_OPTION", "a free --listen-address and a writable --socket directory");
  });
  process.stderr.write(`${new Date().toISOString()} info ciliate relay on ${server.addresses.join(" and ")} for ${o.peers.join(", ")}\n`);
  await new Promise<void>((resolve) => {
    process.once("SIGINT", () => resolve());
    process.once("SIGTERM", () => resolve());
  });
  relay.close();
  await server.close();
  return 0;
}
