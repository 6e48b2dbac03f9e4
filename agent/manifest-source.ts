/*
 * The default source of desired state: a directory (or files) of manifests, watched for changes. The
 * watch is a poll of (path, size, mtime) of every YAML/JSON file: cheap for a directory of manifests,
 * reliable across editors that replace files and across bind mounts where inotify events go missing.
 * A change is acted on once the files have been quiet for one poll interval, so a tool that rewrites
 * several files (or one file in several writes) is seen in its final state, not half-way — a half-written
 * Service would otherwise look deleted for a moment.
 */
import { readdirSync, statSync } from "node:fs";
import { join } from "node:path";
import { loadManifests, type ManifestObject } from "../policy/index.ts";
import { AgentError } from "./defaults.ts";

function walk(p: string, out: string[]): void {
  let st;
  try {
    st = statSync(p);
  } catch {
    return;
  }
  if (st.isDirectory()) {
    for (const e of readdirSync(p).sort()) if (!e.startsWith(".")) walk(join(p, e), out);
  } else if (/\.(ya?ml|json)$/i.test(p)) out.push(`${p}:${st.size}:${st.mtimeMs}`);
}

/** A signature of the files under `paths`; it changes whenever a file is added, removed or written. */
export function manifestSignature(paths: string[]): string {
  const out: string[] = [];
  for (const p of paths) walk(p, out);
  return out.join("\n");
}

export class ManifestSource {
  private timer?: NodeJS.Timeout;
  private last = "";
  private pending?: string;

  constructor(
    readonly paths: string[],
    private readonly warn: (message: string) => void = (m) => process.stderr.write(`ciliate: warning: ${m}\n`),
  ) {}

  /**
   * Reads every manifest with policy/'s loader. Throws AgentError INVALID_MANIFEST listing every problem
   * (one per line, each naming file, document, line and field) when any file is missing or invalid.
   */
  load(): ManifestObject[] {
    this.last = manifestSignature(this.paths);
    if (!this.paths.length) return [];
    const r = loadManifests(this.paths);
    for (const w of r.warnings) this.warn(w.message);
    if (r.errors.length) throw new AgentError("INVALID_MANIFEST", r.errors.map((e) => e.message).join("\n"));
    return r.objects;
  }

  /** Calls onChange when the files change, checking every intervalMs. */
  watch(intervalMs: number, onChange: () => void): void {
    this.stop();
    this.timer = setInterval(() => {
      const sig = manifestSignature(this.paths);
      if (sig === this.last) {
        this.pending = undefined;
        return;
      }
      if (sig !== this.pending) {
        this.pending = sig; // changed since the last poll: wait until it settles
        return;
      }
      this.pending = undefined;
      onChange(); // load() records the signature it read
    }, intervalMs);
    this.timer.unref?.();
  }

  stop(): void {
    if (this.timer) clearInterval(this.timer);
    this.timer = undefined;
  }
}
