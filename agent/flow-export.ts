/*
 * Flow export to a file, as Hubble's exporter does it (cilium/cilium pkg/hubble/exporter and its agent
 * options --hubble-export-file-path, --hubble-export-file-max-size-mb, --hubble-export-file-max-backups,
 * --hubble-export-allowlist, --hubble-export-denylist): every flow the observer sees that passes the
 * allowlist and not the denylist is appended as one JSON line, the same object `ciliate observe -o json`
 * prints. When the next line would take the file over the size limit the file is rotated: PATH becomes
 * PATH.1, PATH.1 becomes PATH.2, …, and the oldest backup beyond max-backups is deleted (Hubble's
 * lumberjack writer names backups by timestamp instead; numbers keep the order obvious).
 *
 * Filters are Hubble FlowFilter objects in JSON (flow/flow.proto FlowFilter field names). Within one filter
 * every given field must match (and one of each field's values); a flow passes a list when any filter
 * matches, as in pkg/hubble/filters. The fields understood are listed in FILTER_FIELDS; any other field is
 * refused with a message rather than ignored, so a filter never silently exports more than asked.
 */
import { closeSync, existsSync, fstatSync, openSync, renameSync, rmSync, writeSync } from "node:fs";
import { jsonLine, type FlowEndpoint, type FlowEvent } from "../host/flows.ts";
import { hubbleProtocol } from "./upstream-metrics.ts";

export interface FlowExportOptions {
  path: string;
  /** Rotate before the file would exceed this many bytes (Hubble: max-size-mb, default 10 MB). */
  maxBytes: number;
  /** Rotated files kept (Hubble default 5); 0 keeps none: the file is truncated on rotation. */
  maxBackups: number;
  allow?: ExportFilter[];
  deny?: ExportFilter[];
}

export type ExportFilter = Partial<Record<(typeof FILTER_FIELDS)[number], unknown[]>>;

const FILTER_FIELDS = ["source_pod", "destination_pod", "source_ip", "destination_ip", "source_label", "destination_label", "verdict", "event_type", "traffic_direction", "protocol", "source_port", "destination_port", "node_name"] as const;

/**
 * Parses one --export-allow/--export-deny value: a FlowFilter object or an array of them. Throws a
 * one-line message naming the option and the field on anything else.
 */
/** Why a FlowFilter object cannot be applied exactly (a field not understood, a value not a list), or undefined. */
export function filterProblem(f: unknown, where: string): string | undefined {
  if (typeof f !== "object" || f === null || Array.isArray(f)) return `${where}: expected a FlowFilter object, got ${JSON.stringify(f)}`;
  for (const [k, val] of Object.entries(f)) {
    if (!(FILTER_FIELDS as readonly string[]).includes(k)) return `${where}: unknown FlowFilter field "${k}"; expected one of ${FILTER_FIELDS.join(", ")}`;
    if (!Array.isArray(val)) return `${where}.${k}: expected a list, e.g. ["${k === "verdict" ? "DROPPED" : "…"}"]`;
  }
  return undefined;
}

export function parseExportFilters(text: string, option: string): ExportFilter[] {
  let v: unknown;
  try {
    v = JSON.parse(text);
  } catch (e) {
    throw new Error(`${option}: not JSON (${(e as Error).message}); expected a Hubble FlowFilter object such as {"verdict":["DROPPED"]}`);
  }
  const list = Array.isArray(v) ? v : [v];
  return list.map((f, i) => {
    const where = Array.isArray(v) ? `${option}[${i}]` : option;
    const problem = filterProblem(f, where);
    if (problem) throw new Error(problem);
    return f as ExportFilter;
  });
}

const podOf = (e: FlowEndpoint) => (e.pod_name ? `${e.namespace}/${e.pod_name}` : "");
const ipOf = (f: FlowEvent, side: "source" | "destination") => f.IP[side];

/** Whether one filter matches (every field given matches one of its values). Pods match by prefix, as Hubble's. */
export function filterMatches(f: FlowEvent, q: ExportFilter): boolean {
  const any = (vals: unknown[] | undefined, test: (v: string) => boolean) => vals === undefined || vals.some((v) => test(String(v)));
  const anyObj = (vals: unknown[] | undefined, test: (v: Record<string, unknown>) => boolean) => vals === undefined || vals.some((v) => typeof v === "object" && v !== null && test(v as Record<string, unknown>));
  return (
    any(q.source_pod, (p) => podOf(f.source).startsWith(p)) &&
    any(q.destination_pod, (p) => podOf(f.destination).startsWith(p)) &&
    any(q.source_ip, (ip) => ipOf(f, "source") === ip) &&
    any(q.destination_ip, (ip) => ipOf(f, "destination") === ip) &&
    any(q.source_label, (l) => f.source.labels.includes(l)) &&
    any(q.destination_label, (l) => f.destination.labels.includes(l)) &&
    any(q.verdict, (v) => f.verdict === v.toUpperCase()) &&
    // flow.proto EventTypeFilter: the sub_type counts when match_sub_type is set (0 is a valid sub_type) or when given.
    anyObj(q.event_type, (e) => e.type === f.event_type.type && (e.match_sub_type ? Number(e.sub_type ?? 0) === (f.event_type.sub_type ?? 0) : e.sub_type === undefined || e.sub_type === f.event_type.sub_type)) &&
    any(q.traffic_direction, (d) => f.traffic_direction === d.toUpperCase()) &&
    any(q.protocol, (p) => hubbleProtocol(f).toLowerCase() === p.toLowerCase()) &&
    any(q.source_port, (p) => String(f.src_port) === p) &&
    any(q.destination_port, (p) => String(f.dst_port) === p) &&
    any(q.node_name, (n) => f.node_name === n)
  );
}

/** Hubble's filters.Apply: an empty allowlist lets everything through; any denylist match keeps a flow out. */
export function exported(f: FlowEvent, allow: ExportFilter[] = [], deny: ExportFilter[] = []): boolean {
  if (allow.length && !allow.some((q) => filterMatches(f, q))) return false;
  return !deny.some((q) => filterMatches(f, q));
}

export class FlowExporter {
  private fd: number;
  private size: number;

  constructor(private readonly opts: FlowExportOptions) {
    this.fd = openSync(opts.path, "a", 0o600);
    this.size = fstatSync(this.fd).size;
  }

  /** Appends the flow when the filters let it through; returns whether it was written. */
  write(f: FlowEvent): boolean {
    if (!exported(f, this.opts.allow, this.opts.deny)) return false;
    const line = Buffer.from(`${jsonLine(f)}\n`);
    if (this.size > 0 && this.size + line.length > this.opts.maxBytes) this.rotate();
    writeSync(this.fd, line);
    this.size += line.length;
    return true;
  }

  private rotate(): void {
    closeSync(this.fd);
    const { path, maxBackups } = this.opts;
    rmSync(`${path}.${maxBackups}`, { force: true });
    for (let i = maxBackups - 1; i >= 1; i--) if (existsSync(`${path}.${i}`)) renameSync(`${path}.${i}`, `${path}.${i + 1}`);
    if (maxBackups > 0) renameSync(path, `${path}.1`);
    this.fd = openSync(path, "w", 0o600);
    this.size = 0;
  }

  close(): void {
    closeSync(this.fd);
  }
}
