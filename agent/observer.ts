/*
 * The agent's flow observer: polls the datapath's events ring buffer, turns the records into flows
 * (flows.ts), counts policy verdicts for the metrics, and serves them on the API:
 *   GET /v1/flows?last=N&from_pod=&to_pod=&verdict=&port=&follow=1
 * answers newline-delimited JSON flows (FlowEvent objects): the last N matching ones, then, with follow,
 * every new matching flow until the client goes away.
 */
import type { ServerResponse } from "node:http";
import { MAP_SPECS } from "../host/codecs.gen.ts";
import { openEventReader, type EventReader } from "../datapath/ring-buffer.ts";
import { EVENT_DROP, EVENT_POLICY_VERDICT, type FlowEvent } from "../host/flows.ts";
import type { Agent } from "./agent.ts";
import type { StreamRoute } from "./api.ts";
import { flowOf } from "../host/trace-flow.ts";
import { FlowStore, matches, namesFrom, type FlowFilter } from "./flows.ts";

export class FlowObserver {
  readonly store = new FlowStore();
  private reader?: EventReader;
  private timer?: NodeJS.Timeout;
  onFlow?: (f: FlowEvent) => void;

  constructor(private readonly agent: Agent) {}

  /** Starts polling every intervalMs. Returns false when the object has no events map. */
  start(intervalMs = 100): boolean {
    try {
      this.reader = openEventReader(this.agent.obj.map(MAP_SPECS.Events.bpfName).fd);
    } catch {
      return false;
    }
    this.timer = setInterval(() => this.pollOnce(), intervalMs);
    return true;
  }

  pollOnce(): number {
    if (!this.reader) return 0;
    const records = this.reader.drain();
    if (!records.length) return 0;
    const names = namesFrom(this.agent.desired, this.agent.opts.nodeName);
    for (const r of records) this.publish(flowOf(r, names));
    return records.length;
  }

  /**
   * Takes a flow that did not come from the ring buffer (an L7 proxy's access log) the same way as the
   * datapath's: stored for `observe` and handed to onFlow, so it is counted in the Hubble metrics too.
   */
  publish(f: FlowEvent): void {
    this.store.push(f);
    this.onFlow?.(f);
  }

  stop(): void {
    if (this.timer) clearInterval(this.timer);
    this.reader?.close();
    this.reader = undefined;
  }

  route(): StreamRoute {
    return (url: URL, res: ServerResponse) => {
      const q: FlowFilter = {
        fromPod: url.searchParams.get("from_pod") ?? undefined,
        toPod: url.searchParams.get("to_pod") ?? undefined,
        verdict: url.searchParams.get("verdict") ?? undefined,
        port: url.searchParams.has("port") ? Number(url.searchParams.get("port")) : undefined,
      };
      const last = Number(url.searchParams.get("last") ?? "20");
      res.writeHead(200, { "content-type": "application/x-ndjson" });
      for (const f of this.store.last(last, q)) res.write(`${JSON.stringify(f)}\n`);
      if (url.searchParams.get("follow") !== "1") return void res.end();
      const unsubscribe = this.store.subscribe((f) => {
        if (matches(f, q)) res.write(`${JSON.stringify(f)}\n`);
      });
      res.on("close", unsubscribe);
    };
  }
}

/** Hubble-style names of what a flow counts as in ciliate_policy_verdict_total. */
export function verdictLabels(f: FlowEvent): { direction: string; match: string; action: string } | undefined {
  if (f.event_type.type !== EVENT_POLICY_VERDICT && f.event_type.type !== EVENT_DROP) return undefined;
  if (f.event_type.type === EVENT_DROP && !(f.drop_reason_desc ?? "").startsWith("POLICY")) return undefined;
  const match = f.event.startsWith("policy-verdict:") ? f.event.slice(15).split(" ")[0]! : "none";
  return { direction: f.traffic_direction, match, action: f.verdict === "DROPPED" ? "denied" : f.verdict === "AUDIT" ? "audited" : "allowed" };
}
