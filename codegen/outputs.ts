/*
 * The list of generated files and how each is produced. One place, so that `npm run gen`, `--check` and
 * the golden tests agree on what is generated.
 */
import {
  emitCConstants,
  emitCLayout,
  emitCodecs,
  emitCoreLayout,
  emitDropReasonsMd,
  emitDropReasonsTs,
  emitHostConstants,
  readLayoutModel,
} from "./layout.ts";
import { emitCoreHeader } from "./functions.ts";
import { emitCodegenExample } from "./example.ts";

export function generateAll(root: string): Map<string, string> {
  const model = readLayoutModel(root);
  const out = new Map<string, string>();
  out.set("core/gen/layout.ts", emitCoreLayout(model));
  out.set("host/codecs.gen.ts", emitCodecs(model));
  out.set("host/drop-reasons.gen.ts", emitDropReasonsTs(model));
  out.set("host/constants.gen.ts", emitHostConstants(model));
  out.set("bpf/gen/layout.h", emitCLayout(model));
  out.set("bpf/gen/constants.h", emitCConstants(model));
  out.set("bpf/gen/core.h", emitCoreHeader(root, model));
  out.set("docs/codegen-example.md", emitCodegenExample(root, model));
  out.set("docs/drop-reasons.md", emitDropReasonsMd(model));
  return out;
}
