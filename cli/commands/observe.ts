/*
 * `ciliate observe`: the node's flows from the agent, like `hubble observe`: compact lines (default) or
 * JSON lines with Hubble's field names (-o json). Filters --from-pod, --to-pod (ns/name, or name in
 * default), --verdict, --port; --last N (default 20) flows already seen, --follow for new ones until
 * interrupted. Exit 0, 2 on bad flags or when the agent cannot be reached.
 */
import type { Command } from "commander";
import { request } from "node:http";
import { compactLine, jsonLine, type FlowEvent } from "../../host/flows.ts";
import { DEFAULT_SOCKET } from "../../agent/defaults.ts";
import { outputOf, type GlobalOptions, type Out } from "../common.ts";
import { CliError } from "../errors.ts";

export interface ObserveFlags extends GlobalOptions {
  socket: string;
  fromPod?: string;
  toPod?: string;
  verdict?: string;
  port?: string;
  follow?: boolean;
  last: string;
}

const VERDICTS = ["FORWARDED", "DROPPED", "REDIRECTED", "AUDIT", "TRANSLATED"];

export async function runObserve(f: ObserveFlags, out: Out): Promise<number> {
  const fmt = outputOf(f, ["table", "compact", "json"]);
  const q = new URLSearchParams();
  if (f.fromPod) q.set("from_pod", f.fromPod);
  if (f.toPod) q.set("to_pod", f.toPod);
  if (f.verdict) {
    if (!VERDICTS.includes(f.verdict.toUpperCase())) throw new CliError(`invalid --verdict ${f.verdict}`, "BAD_OPTION", VERDICTS.join(", "));
    q.set("verdict", f.verdict.toUpperCase());
  }
  if (f.port !== undefined) {
    const p = Number(f.port);
    if (!Number.isInteger(p) || p < 0 || p > 65535) throw new CliError(`invalid --port ${f.port}`, "BAD_OPTION", "0-65535");
    q.set("port", String(p));
  }
  const last = Number(f.last);
  if (!Number.isInteger(last) || last < 0) throw new CliError(`invalid --last ${f.last}`, "BAD_OPTION", "a count, 0 = all kept");
  q.set("last", String(last));
  if (f.follow) q.set("follow", "1");
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
    if (f.follow) {
      const stop = () => {
        req.destroy();
        resolve();
      };
      process.once("SIGINT", stop);
      process.once("SIGTERM", stop);
    }
  });
  return 0;
}

export function registerObserve(program: Command, run: (fn: () => Promise<number>) => Promise<void>): void {
  program
    .command("observe")
    .description("the node's flows from the agent (drops, policy verdicts, traces), like `hubble observe`")
    .option("--socket <path>", "unix socket of the agent API", DEFAULT_SOCKET)
    .option("--from-pod <pod>", "only flows from this pod (ns/name or name)")
    .option("--to-pod <pod>", "only flows to this pod (ns/name or name)")
    .option("--verdict <verdict>", "only flows with this verdict (FORWARDED, DROPPED, …)")
    .option("--port <port>", "only flows with this source or destination port")
    .option("--follow", "keep printing new flows until interrupted")
    .option("--last <n>", "how many already-seen flows to print first (0 = all kept)", "20")
    .addHelpText("after", "\nExamples:\n  ciliate observe --verdict DROPPED --last 50\n  ciliate observe --to-pod default/server --follow -o json\n\nExit codes: 0, 2 bad flags or agent unreachable.")
    .action(async (_o, cmd: Command) => run(() => runObserve(cmd.optsWithGlobals(), (s) => process.stdout.write(s))));
}
