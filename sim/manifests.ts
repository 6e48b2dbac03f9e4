/*
 * Reading manifests for the simulator and the CLI: policy/'s loader (files or directories, multi-document
 * YAML and JSON, `kind: List`, every object tagged with its file, document and line) with the simulator's
 * error contract — a missing path or any invalid document is a SimError listing every problem, one per
 * line, each naming file, document, line and field; unknown kinds are skipped with a warning.
 */
import { existsSync } from "node:fs";
import { loadManifests as loadWithPolicy, parseManifests, type ManifestError, type ManifestObject } from "../policy/index.ts";
import { SimError } from "../node/errors.ts";

export type WarningSink = (message: string) => void;

const stderrWarning: WarningSink = (m) => process.stderr.write(`ciliate: warning: ${m}\n`);

function settle(r: { objects: ManifestObject[]; warnings: ManifestError[]; errors: ManifestError[] }, warn: WarningSink): ManifestObject[] {
  for (const w of r.warnings) warn(w.message);
  if (r.errors.length > 0) {
    const code = r.errors.some((e) => e.code === "yaml-syntax") ? "INVALID_YAML" : "INVALID_MANIFEST";
    const text = (e: ManifestError) => (e.code === "yaml-syntax" ? `${e.file}: document ${e.doc}, line ${e.line}: invalid YAML: ${e.detail}` : e.message);
    throw new SimError(code, r.errors.map(text).join("\n"));
  }
  return r.objects;
}

/** Parses the text of one file into manifest objects. Throws SimError on invalid input. */
export function parseManifestText(text: string, file: string, warn: WarningSink = stderrWarning): ManifestObject[] {
  return settle(parseManifests(text, file), warn);
}

/** Loads every manifest under the given files/directories, in path order. */
export function loadManifests(paths: string[], warn: WarningSink = stderrWarning): ManifestObject[] {
  for (const p of paths) if (!existsSync(p)) throw new SimError("FILE_NOT_FOUND", `${p}: no such file or directory`);
  return settle(loadWithPolicy(paths), warn);
}

/** kind/namespace/name, the identity of an object for --apply and --delete. */
export function objectKey(o: { kind: string; metadata: { name: string; namespace?: string } }): string {
  return `${o.kind}/${o.metadata.namespace ?? ""}/${o.metadata.name}`;
}
