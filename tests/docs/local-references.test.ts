/*
 * The repository must make sense to someone who has only the repository. Comments, docs and benchmark
 * anchors cite public sources (upstream file paths, papers, URLs) or pages in docs/, never a file that
 * existed only on a developer's machine: the design notes and reference notes the project was planned
 * with, or any absolute path of the machine it was built on. This suite scans every file in the tree
 * (git's list, so ignored output is left out; node_modules and build never) for such references, and
 * checks that every anchor id the benchmarks cite (A1, A2 …) is defined in docs/benchmarks.md's
 * "Published anchors" table with a public source.
 */
import { describe, expect, it } from "vitest";
import { execFileSync } from "node:child_process";
import { readdirSync, readFileSync } from "node:fs";
import { join, relative, resolve } from "node:path";

const ROOT = resolve(import.meta.dirname, "../..");
const SKIP_DIRS = new Set(["node_modules", "build", ".git", "coverage", ".vitest-cache"]);

/*
 * The forbidden strings are assembled from pieces so that this file, which is scanned like any other,
 * does not match itself. Each names something a reader of the repository does not have.
 */
const j = (...parts: string[]) => parts.join("");
const FORBIDDEN: { text: string; why: string }[] = [
  { text: j("perf", "-anchors"), why: "the local performance notes; cite an anchor id of docs/benchmarks.md or the public source" },
  { text: j("cilium", "-internals"), why: "the local Cilium notes; cite the upstream file (e.g. cilium/cilium bpf/lib/policy.h)" },
  { text: j("..", "/shared"), why: "a path outside the repository" },
  { text: j("/wo", "rk/"), why: "an absolute path of the development machine" },
  { text: j("shared", "/reference"), why: "the local reference notes" },
  { text: j("shared", "/DESIGN"), why: "the local design notes; cite docs/architecture.md, docs/cli.md, docs/scenarios.md or docs/agent.md" },
  { text: j("DESIGN", ".md"), why: "the design notes are not in the repository; cite the docs/ page that documents the contract" },
  { text: j("DESIGN", " §"), why: "a section of the design notes, which are not in the repository; cite the docs/ page" },
  { text: j("reference", " §"), why: "a section of the local reference notes; cite the upstream file or the public source" },
];

/* In the benchmark sources, results and their doc, a bare section number ("(§6", ", §3", "/§7.1") was a
 * section of the local performance notes; anchors are cited by id now. "issue #11 §3" and "paper §4.1"
 * (a named source before the sign) stay allowed. */
const BARE_SECTION = /(^|[("'`/,;:]\s*)§\s?\d/m;
const isBenchText = (rel: string) => rel.startsWith("bench/") || rel === "docs/benchmarks.md";

function listFiles(): string[] {
  try {
    const out = execFileSync("git", ["-C", ROOT, "ls-files", "-z", "--cached", "--others", "--exclude-standard"], { encoding: "utf8", maxBuffer: 64 << 20 });
    return out.split("\0").filter((f) => f !== "" && !f.split("/").some((d) => SKIP_DIRS.has(d)));
  } catch {
    // Not a git checkout (an unpacked tarball): walk the tree instead.
    const files: string[] = [];
    const walk = (dir: string) => {
      for (const e of readdirSync(dir, { withFileTypes: true })) {
        if (SKIP_DIRS.has(e.name)) continue;
        const p = join(dir, e.name);
        if (e.isDirectory()) walk(p);
        else if (e.isFile()) files.push(relative(ROOT, p));
      }
    };
    walk(ROOT);
    return files;
  }
}

/** Every offending line of one file's text, as "file:line: what (why)". */
function localReferences(rel: string, text: string): string[] {
  const found: string[] = [];
  const lines = text.split("\n");
  lines.forEach((line, i) => {
    for (const f of FORBIDDEN) if (line.includes(f.text)) found.push(`${rel}:${i + 1}: "${f.text}" — ${f.why}`);
    if (isBenchText(rel) && BARE_SECTION.test(line)) found.push(`${rel}:${i + 1}: a bare § section number — cite an anchor id (A1 …) of docs/benchmarks.md`);
  });
  return found;
}

function readText(rel: string): string | undefined {
  let buf: Buffer;
  try {
    buf = readFileSync(join(ROOT, rel));
  } catch {
    return undefined; // listed by git but deleted in the working tree
  }
  return buf.includes(0) ? undefined : buf.toString("utf8");
}

const files = listFiles();

describe("no references to files a reader of the repository does not have", () => {
  it("the scan covers the tree", () => {
    expect(files.length).toBeGreaterThan(300);
    for (const f of ["docs/benchmarks.md", "bench/harness.ts", "core/layout.ts", "package.json"]) expect(files).toContain(f);
  });

  it("the matcher flags each kind of reference", () => {
    for (const f of FORBIDDEN) expect(localReferences("x.ts", `// see ${f.text}x`), f.text).toHaveLength(1);
    expect(localReferences("bench/cases/x.ts", 'anchor: "§7.1: ratio"')).toHaveLength(1);
    expect(localReferences("docs/benchmarks.md", "### 2. Scaling (§1.6, §3)")).toHaveLength(1);
    expect(localReferences("docs/benchmarks.md", "the delta work (issue #11 §3)")).toEqual([]);
    expect(localReferences("agent/proxy/dns.ts", "RFC 1035 §4.2.2 length prefix")).toEqual([]);
  });

  it("no file references them", () => {
    const found = files.flatMap((rel) => {
      const text = readText(rel);
      return text === undefined ? [] : localReferences(rel, text);
    });
    expect(found, found.join("\n")).toEqual([]);
  });
});

describe("benchmark anchors", () => {
  const doc = readFileSync(join(ROOT, "docs/benchmarks.md"), "utf8");
  const start = doc.indexOf("## Published anchors");
  const end = doc.indexOf("\n## ", start + 1);
  const section = start < 0 ? "" : doc.slice(start, end < 0 ? undefined : end);
  const rows = section.split("\n").filter((l) => /^\| A\d+ \|/.test(l)).map((l) => l.split("|").slice(1, -1).map((c) => c.trim()));

  it("docs/benchmarks.md defines each anchor once, with what, figure, conditions and source", () => {
    expect(rows.length).toBeGreaterThan(0);
    const ids = rows.map((r) => r[0]);
    expect(new Set(ids).size, `duplicate ids: ${ids.join(", ")}`).toBe(ids.length);
    for (const r of rows) {
      expect(r, `row ${r[0]}`).toHaveLength(5);
      for (const cell of r) expect(cell, `row ${r[0]}`).not.toBe("");
    }
  });

  it("every anchor id cited by bench/ and docs/benchmarks.md is defined there", () => {
    const defined = new Set(rows.map((r) => r[0]));
    const cited = new Map<string, string>();
    // Source, Markdown and JSON only: an SVG path's arc command ("A10,10 …") is not a citation.
    for (const rel of files.filter((f) => isBenchText(f) && /\.(ts|c|md|json)$/.test(f))) {
      const text = readText(rel);
      if (text === undefined) continue;
      for (const m of text.matchAll(/\bA(\d{1,2})\b/g)) cited.set(`A${m[1]}`, rel);
    }
    expect(cited.size).toBeGreaterThan(0);
    const missing = [...cited].filter(([id]) => !defined.has(id)).map(([id, rel]) => `${id} (cited in ${rel})`);
    expect(missing, missing.join("\n")).toEqual([]);
  });
});
