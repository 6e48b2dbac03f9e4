/*
 * Reading manifests for the simulator and the CLI: policy/'s loader (files or directories, multi-document
 * YAML and JSON, `kind: List`, every object tagged with its file, document and line) with the simulator's
 * error contract. With a Diagnostics (the CLI's), objects the API server would refuse are reported there and
 * left out, and the rest is returned; without one, any invalid document is a SimError listing every problem,
 * one per line, each naming file, document, line and field. A missing path or invalid YAML always stops
 * the load.
 */
import { existsSync } from "node:fs";
import { loadManifests as loadWithPolicy, parseManifests, type Diagnostics, type ManifestError, type ManifestObject } from "../policy/index.ts";
import { SimError } from "../node/errors.ts";

export type WarningSink = (message: string) => void;

const stderrWarning: WarningSink = (m) => process.stderr.write(`ciliate: warning: ${m}\n`);

/** Problems of a whole file (unreadable, too large, too deep, not YAML): nothing in it can be applied. */
const FILE_LEVEL = new Set(["yaml-syntax", "manifest-too-large", "manifest-too-deep", "file-not-found"]);

function settle(r: { objects: ManifestObject[]; warnings: ManifestError[]; errors: ManifestError[]; refused: string[] }, sink: WarningSink | Diagnostics): ManifestObject[] {
  const text = (e: ManifestError) => (e.code === "yaml-syntax" ? `${e.file}: document ${e.doc}, line ${e.line}: invalid YAML: ${e.detail}` : e.message);
  // A file that cannot be read as manifests at all stops the run; a refused object does not (the rest applies).
  const syntax = r.errors.filter((e) => FILE_LEVEL.has(e.code));
  if (syntax.length) throw new SimError("INVALID_YAML", syntax.map(text).join("\n"));
  if (typeof sink !== "function") {
    for (const w of r.warnings) sink.warning(w);
    for (const e of r.errors) sink.error(e);
    for (const o of r.refused) sink.refuse(o);
    return r.objects;
  }
  for (const w of r.warnings) sink(w.message);
  if (r.errors.length > 0) throw new SimError("INVALID_MANIFEST", r.errors.map(text).join("\n"));
  return r.objects;
}

/** Parses the text of one file into manifest objects. Throws SimError on invalid input. */
export function parseManifestText(text: string, file: string, warn: WarningSink | Diagnostics = stderrWarning): ManifestObject[] {
  return settle(parseManifests(text, file), warn);
}

/** Loads every manifest under the given files/directories, in path order. */
export function loadManifests(paths: string[], warn: WarningSink | Diagnostics = stderrWarning): ManifestObject[] {
  for (const p of paths) if (!existsSync(p)) throw new SimError("FILE_NOT_FOUND", `${p}: no such file or directory`);
  const r = loadWithPolicy(paths);
  // Nothing at all to read (an empty directory or file, a wrong path): as `kubectl apply` says, an error.
  if (!r.objects.length && !r.errors.length && !r.refused.length && !r.warnings.length)
    throw new SimError("NO_OBJECTS", `${paths.join(", ")}: no objects found`, "a directory is read for *.yaml, *.yml and *.json files; a file needs at least one document with apiVersion and kind");
  return settle(r, warn);
}

/** kind/namespace/name, the identity of an object for --apply and --delete. */
export function objectKey(o: { kind: string; metadata: { name: string; namespace?: string } }): string {
  return `${o.kind}/${o.metadata.namespace ?? ""}/${o.metadata.name}`;
}
