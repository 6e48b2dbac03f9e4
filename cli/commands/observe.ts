/*
 * `ciliate observe`: the node's flows from the agent, like `hubble observe`: compact lines (default) or
 * JSON lines with Hubble's field names (-o json). Filters --from-pod, --to-pod (ns/name, or name in
 * default), --verdict, --port; --last N (default 20) flows already seen, --follow for new ones until
 * interrupted. The flows come from the agent's HTTP flow API (--socket), or with --server from a Hubble
 * Observer gRPC API: an agent's hubble.sock, `ciliate relay`, or any Hubble server. Exit 0, 2 on bad flags
 * or when the agent or server cannot be reached.
 */
import { request } from "node:http";
import { compactLine, jsonLine, type FlowEvent } from "../../host/flows.ts";
import { flowEventOfHubble } from "../../host/hubble-flow-event.ts";
import { matches } from "../../agent/flows.ts";
import { targetProblem } from "../../agent/grpc-target.ts";
import { ObserverCallError, streamFlows, type FlowsResponseJson } from "../../agent/observer-client.ts";
import { outputOf, type GlobalOptions, type Out } from "../common.ts";
import { CliError } from "../errors.ts";

export interface ObserveFlags extends GlobalOptions {
  socket: string;
  server?: string;
  fromPod?: string;
  toPod?: string;
  verdict?: string;
  port?: string;
  follow?: boolean;
  last: string;
}

const VERDICTS = ["FORWARDED", "DROPPED", "REDIRECTED", "AUDIT", "TRANSLATED"];

interface Query {
  fromPod?: string;
  toPod?: string;
  verdict?: string;
  port?: number;
  last: number;
  follow: boolean;
}

/** The flags checked; throws a one-line CliError naming the first bad one. */
function queryOf(f: ObserveFlags): Query {
  const q: Query = { last: Number(f.last), follow: Boolean(f.follow), ...(f.fromPod ? { fromPod: f.fromPod } : {}), ...(f.toPod ? { toPod: f.toPod } : {}) };
  if (f.verdict) {
    if (!VERDICTS.includes(f.verdict.toUpperCase())) throw new CliError(`invalid --verdict ${f.verdict}`, "BAD_OPTION", VERDICTS.join(", "));
    q.verdict = f.verdict.toUpperCase();
  }
  if (f.port !== undefined) {
    const p = Number(f.port);
    if (!Number.isInteger(p) || p < 0 || p > 65535) throw new CliError(`invalid --port ${f.port}`, "BAD_OPTION", "0-65535");
    q.port = p;
  }
  if (!Number.isInteger(q.last) || q.last < 0) throw new CliError(`invalid --last ${f.last}`, "BAD_OPTION", "a count, 0 = all kept");
  return q;
}

/** Stops `cancel` on SIGINT/SIGTERM while following; returns the function that stops listening. */
function onInterrupt(follow: boolean, cancel: () => void): () => void {
  if (!follow) return () => {};
  process.once("SIGINT", cancel);
  process.once("SIGTERM", cancel);
  return () => {
    process.off("SIGINT", cancel);
    process.off("SIGTERM", cancel);
  };
}

export async function runObserve(f: ObserveFlags, out: Out, err: Out = (s) => process.stderr.write(s)): Promise<number> {
  const fmt = outputOf(f, ["table", "compact", "json"]);
  const query = queryOf(f);
  if (f.server !== undefined) return observeServer(f.server, query, fmt, out, err);
  const q = new URLSearchParams();
  if (query.fromPod) q.set("from_pod", query.fromPod);
  if (query.toPod) q.set("to_pod", query.toPod);
  if (query.verdict) q.set("verdict", query.verdict);
  if (query.port !== undefined) q.set("port", String(query.port));
  q.set("last", String(query.last));
  if (query.follow) q.set("follow", "1");
  const print = (line: string) => {
    if (!line.trim()) return;
    const flow = JSON.parse(line) as FlowEvent;
    out(`${fmt === "json" ? jsonLine(flow) : compactLine(flow)}\n`);
  };
  await new Promise<void>((resolve, reject) => {
    const req = request({ socketPath: f.socket, path: `/v1/flows?${q}`, method: "GET" }, (res) => {
      let buf = "";
      res.setEncoding("utf8");
      res.on("data", (d: string) => {
        buf += d;
        let i;
        while ((i = buf.indexOf("\n")) >= 0) {
          print(buf.slice(0, i));
          buf = buf.slice(i + 1);
        }
      });
      res.on("end", () => {
        print(buf);
        resolve();
      });
    });
    req.on("error", (e) => reject(new CliError(`cannot reach the ciliate agent at ${f.socket}: ${e.message}`, "AGENT_UNREACHABLE", "is `ciliate agent` running? (root only)")));
    req.end();
    onInterrupt(query.follow, () => {
      req.destroy();
      resolve();
    });
  });
  return 0;
}

/**
 * The GetFlows request for the flags, with Hubble CLI's meaning: --from-pod/--to-pod as source_pod /
 * destination_pod, --port as a source_port or a destination_port filter, --last as `number` (0: every
 * flow held, asked for with a since at the epoch when following, since following without a number starts
 * from now).
 */
function flowsRequest(q: Query): Record<string, unknown> {
  const pod = (p: string) => (p.includes("/") ? p : `default/${p}`);
  const base: Record<string, string[]> = { ...(q.fromPod ? { source_pod: [pod(q.fromPod)] } : {}), ...(q.toPod ? { destination_pod: [pod(q.toPod)] } : {}), ...(q.verdict ? { verdict: [q.verdict] } : {}) };
  const whitelist = q.port !== undefined ? [{ ...base, source_port: [String(q.port)] }, { ...base, destination_port: [String(q.port)] }] : Object.keys(base).length ? [base] : [];
  return { whitelist, follow: q.follow, ...(q.last ? { number: q.last } : q.follow ? { since: { seconds: 0 } } : {}) };
}

/** `observe --server`: the flows of a Hubble Observer API, printed as from the agent's flow API. */
async function observeServer(target: string, q: Query, fmt: string, out: Out, err: Out): Promise<number> {
  const problem = targetProblem(target, "--server");
  if (problem) throw new CliError(problem, "BAD_OPTION");
  const print = (r: FlowsResponseJson) => {
    if (r.node_status) {
      // The relay says which nodes answer; one that does not is worth a line on stderr, never fatal.
      const s = r.node_status;
      if (s.state_change !== "NODE_CONNECTED") err(`ciliate: ${s.state_change ?? "node status"}: ${(s.node_names ?? []).join(", ")}${s.message ? ` (${s.message})` : ""}\n`);
      return;
    }
    if (!r.flow) return;
    const flow = flowEventOfHubble(r.flow, r.node_name, r.time);
    // Hubble's pod filters are prefixes (default/web matches default/web-2): ciliate's --from-pod names one pod.
    if (!matches(flow, { ...(q.fromPod ? { fromPod: q.fromPod } : {}), ...(q.toPod ? { toPod: q.toPod } : {}) })) return;
    out(`${fmt === "json" ? JSON.stringify(r) : compactLine(flow)}\n`);
  };
  const stream = await streamFlows(target, flowsRequest(q), print);
  const forget = onInterrupt(q.follow, () => stream.cancel());
  try {
    await stream.done;
  } catch (e) {
    if (!(e instanceof ObserverCallError)) throw e;
    if (e.unreachable) throw new CliError(`cannot reach the Hubble Observer API at ${target}: ${grpcDetails(e.details)}`, "OBSERVER_UNREACHABLE", "is `ciliate agent` or `ciliate relay` serving there? The agent's socket is root only");
    throw new CliError(`the Hubble Observer API at ${target} refused the request: ${grpcDetails(e.details)}`, "OBSERVER_ERROR");
  } finally {
    forget();
  }
  return 0;
}

/** grpc-js's details as one sentence: "No connection established. Last error: Error: connect ECONNREFUSED …" → the cause. */
function grpcDetails(d: string): string {
  const last = d.includes("Last error: ") ? d.slice(d.indexOf("Last error: ") + 12) : d;
  return last.replace(/^Error: /, "").replace(/\.?\s*Resolution note:.*$/s, "").trim() || d;
}
