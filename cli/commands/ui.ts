/*
 * `ciliate ui`: the service map page (docs/observability.md#service-map-ciliate-ui), served on
 * 127.0.0.1:--port (12000, the port `cilium hubble ui` forwards Hubble UI to) until interrupted. The flows
 * come from a simulation of the manifests' Traffic (-f, optionally --flow) or from a Hubble Observer API
 * (--server: an agent's hubble.sock, `ciliate relay`, or Cilium's Hubble), followed as they come. Exit 0
 * when interrupted, 2 on bad flags or input, or when the port is taken.
 */
import { ServiceMap } from "../../host/service-map.ts";
import { targetProblem } from "../../agent/grpc-target.ts";
import { ObserverCallError, streamFlows } from "../../agent/observer-client.ts";
import { serveServiceMap, type ServiceMapServer } from "../../agent/service-map-server.ts";
import { addSimulatedFlows } from "../../sim/analysis/service-map.ts";
import { load, simulation, type GlobalOptions, type Out } from "../common.ts";
import { CliError } from "../errors.ts";

export interface UiFlags extends GlobalOptions {
  server?: string;
  port: string;
  flow?: string[];
}

/** Seconds between two attempts to reach an Observer API that is down. */
const RETRY_MS = 2000;

function portOf(text: string): number {
  const p = Number(text);
  if (!/^\d+$/.test(text) || p > 65535) throw new CliError(`invalid --port ${text}`, "BAD_OPTION", "0-65535 (0: any free port)");
  return p;
}

/** The map of the simulation of the manifests' Traffic (all of it, or the --flow ones). */
async function simulatedMap(f: UiFlags): Promise<ServiceMap> {
  const l = load(f);
  for (const name of f.flow ?? [])
    if (!l.cluster.traffic.some((t) => t.name === name))
      throw new CliError(`--flow ${name}: no Traffic flow has this name`, "UNKNOWN_FLOW", `flows: ${l.cluster.traffic.map((t) => t.name).join(", ") || "none"}`);
  if (!l.cluster.traffic.length) throw new CliError("no Traffic in the manifests: nothing to draw", "NO_TRAFFIC", "add a Traffic document (docs/scenarios.md) or use --server");
  const sim = await simulation(l, f);
  const map = new ServiceMap();
  try {
    addSimulatedFlows(map, sim, f.flow?.length ? l.cluster.traffic.filter((t) => f.flow!.includes(t.name)) : l.cluster.traffic);
  } finally {
    sim.close();
  }
  return map;
}

/**
 * Follows GetFlows on `target` into `map` (every flow held, then new ones), dialling again every RETRY_MS
 * while it is down — from just after the last flow seen — until `stopped()`.
 */
function follow(target: string, map: ServiceMap, state: { state: string; error?: string }, stopped: () => boolean, err: Out): { cancel(): void } {
  let current: { cancel(): void } | undefined;
  let since: { seconds: string; nanos: number } = { seconds: "0", nanos: 0 };
  let reported = "";
  const loop = async () => {
    while (!stopped()) {
      state.state = "connecting";
      try {
        const stream = await streamFlows(target, { follow: true, since }, (r) => {
          if (!r.flow) return;
          state.state = "following";
          delete state.error;
          map.add(r);
          const ms = Date.parse(r.flow.time ?? r.time ?? "");
          // Resume after the last flow seen (to the millisecond) when the stream has to be opened again.
          if (Number.isFinite(ms)) since = { seconds: String(Math.floor((ms + 1) / 1000)), nanos: ((ms + 1) % 1000) * 1e6 };
        });
        current = stream;
        if (state.state === "connecting") state.state = "following";
        await stream.done;
        if (!stopped()) state.error = "the server ended the stream";
      } catch (e) {
        if (!(e instanceof ObserverCallError)) throw e;
        state.error = e.unreachable ? `cannot reach ${target}: ${e.details}` : `${target} refused the request: ${e.details}`;
      }
      if (stopped()) break;
      state.state = "retrying";
      if (state.error && state.error !== reported) err(`ciliate: ui: ${state.error} (trying again every ${RETRY_MS / 1000}s)\n`);
      reported = state.error ?? "";
      await new Promise((r) => setTimeout(r, RETRY_MS));
    }
  };
  void loop();
  return { cancel: () => current?.cancel() };
}

export async function runUi(f: UiFlags, out: Out, err: Out, until: Promise<void> = interrupted()): Promise<number> {
  const port = portOf(f.port);
  if (f.server !== undefined && f.file?.length) throw new CliError("give -f (a simulation) or --server (an Observer API), not both", "BAD_OPTION");
  if (f.server === undefined && !f.file?.length) throw new CliError("nothing to draw", "NO_INPUT", "pass -f FILE|DIR (a simulation of its Traffic) or --server unix:///path|host:port (a live agent or relay)");
  if (f.server !== undefined) {
    const problem = targetProblem(f.server, "--server");
    if (problem) throw new CliError(problem, "BAD_OPTION");
    if (f.flow?.length) throw new CliError("--flow selects simulated Traffic: it needs -f", "BAD_OPTION");
  }
  let stopped = false;
  const state: { state: string; error?: string } = { state: "complete" };
  const map = f.server === undefined ? await simulatedMap(f) : new ServiceMap();
  let server: ServiceMapServer;
  try {
    server = await serveServiceMap({ map, source: f.server ?? `simulation of ${f.file!.join(", ")}`, status: () => ({ ...state }) }, port);
  } catch (e) {
    throw new CliError(`cannot serve on 127.0.0.1:${port}: ${(e as Error).message}`, "PORT_UNAVAILABLE", "choose another --port (0: any free port)");
  }
  const live = f.server !== undefined ? follow(f.server, map, state, () => stopped, err) : undefined;
  out(`ciliate ui: the service map of ${f.server ?? f.file!.join(", ")} on ${server.url} (Ctrl-C to stop)\n`);
  await until;
  stopped = true;
  live?.cancel();
  await server.close();
  return 0;
}

/** Resolves on SIGINT or SIGTERM. */
function interrupted(): Promise<void> {
  return new Promise((resolve) => {
    const stop = () => {
      process.off("SIGINT", stop);
      process.off("SIGTERM", stop);
      resolve();
    };
    process.once("SIGINT", stop);
    process.once("SIGTERM", stop);
  });
}
