/*
 * `npx tsx bench/docs.ts [DIR]`: refreshes the generated part of docs/benchmarks.md — between the markers
 * `<!-- results:begin -->` and `<!-- results:end -->` — from the Markdown summaries in bench/results (or
 * DIR), with chart links pointing at the committed SVGs. The analysis above the markers is written by hand.
 */
import { existsSync, readFileSync, writeFileSync } from "node:fs";
import { fileURLToPath } from "node:url";
import { relative, resolve } from "node:path";
import { benchmarks } from "./cases/index.ts";

const root = fileURLToPath(new URL("..", import.meta.url));
const docPath = resolve(root, "docs/benchmarks.md");
const BEGIN = "<!-- results:begin -->";
const END = "<!-- results:end -->";

export function resultsSection(dir: string): string {
  const rel = relative(resolve(root, "docs"), dir);
  const parts: string[] = [];
  for (const b of benchmarks) {
    const md = resolve(dir, `${b.name}.md`);
    if (!existsSync(md)) {
      parts.push(`### ${b.title}`, "", `_No committed result (run \`npm run bench -- --only ${b.name}\`)._`, "");
      continue;
    }
    const text = readFileSync(md, "utf8")
      .replace(/^## /m, "### ")
      .replace(/!\[([^\]]*)\]\(([^)/]+\.svg)\)/g, (_m, alt: string, file: string) => `![${alt}](${rel}/${file})`);
    parts.push(text.trimEnd(), "");
  }
  return parts.join("\n");
}

const isMain = process.argv[1]?.endsWith("bench/docs.ts");
if (isMain) {
  const dir = resolve(process.argv[2] ?? resolve(root, "bench/results"));
  const doc = readFileSync(docPath, "utf8");
  const a = doc.indexOf(BEGIN);
  const z = doc.indexOf(END);
  if (a < 0 || z < a) throw new Error(`docs/benchmarks.md lacks the ${BEGIN} … ${END} markers`);
  writeFileSync(docPath, `${doc.slice(0, a + BEGIN.length)}\n\n${resultsSection(dir)}\n${doc.slice(z)}`);
  console.log(`updated ${relative(root, docPath)} from ${relative(root, dir) || "."}`);
}
