// The docs as a user meets them: every `ciliate …` command in a code block of README.md and docs/*.md, and
// every example a command's --help shows, is run as written (from a scratch directory that sees the repository's scenarios/ and tests/, so files an
// example writes, like --junit reports, land there), and must succeed; where the docs show its output — a
// block right after `<!-- output of: COMMAND -->` — the output must say what the docs say ("…" stands for
// any text; JSON is compared field by field, each documented array element matching some actual one).
// Every YAML manifest the docs show is valid. Skipped, each with its reason: the node side (agent, cni,
// observe, relay, ui: they need root, a node's interfaces and a running agent; tests/agent/ runs them end to end) and,
// outside CI only, the kernel engine without root/libbpf/bpffs.
import { spawnSync } from "node:child_process";
import { existsSync, mkdtempSync, readdirSync, readFileSync, rmSync, symlinkSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterAll, describe, expect, it } from "vitest";
import { kernelSuite } from "../../datapath/preflight.ts";
import { parseManifests } from "../../policy/index.ts";
import { ROOT } from "../cli/run.ts";

const DOCS = ["README.md", ...readdirSync(join(ROOT, "docs")).filter((f) => f.endsWith(".md")).sort().map((f) => `docs/${f}`)];
const NODE_SIDE: Record<string, string> = {
  agent: "needs root, a node's pod interfaces and bpffs (tests/agent/e2e*.test.ts runs it)",
  cni: "is called by a container runtime with CNI_* variables, through a running agent (tests/agent/)",
  observe: "reads a running agent's flows (tests/agent/ runs it against one)",
  relay: "serves until stopped and connects to running agents' Observer APIs (tests/observe/relay.test.ts runs it)",
  ui: "serves its page until stopped (tests/ui/service-map-browser.test.ts runs it in chromium)",
};

interface Example {
  where: string;
  text: string;
  args: string[];
  /** What the shell would do with stdout: `| jq …`, `| dot …`. */
  pipe?: string;
}
interface Shown {
  where: string;
  command: string;
  lang: string;
  text: string;
}

/** Splits a command line as sh would for our examples: quotes, `#` comments, and where a pipe starts. */
function shellWords(line: string): { words: string[]; pipe?: string } {
  const words: string[] = [];
  let cur = "";
  let inWord = false;
  for (let i = 0; i < line.length; i++) {
    const c = line[i]!;
    if (c === "'" || c === '"') {
      const end = line.indexOf(c, i + 1);
      cur += line.slice(i + 1, end);
      inWord = true;
      i = end;
    } else if (c === " " || c === "\t") {
      if (inWord) words.push(cur);
      cur = "";
      inWord = false;
    } else if (c === "#" && !inWord) break;
    else if ((c === "|" || c === ">") && !inWord) return { words, pipe: line.slice(i).trim() };
    else {
      cur += c;
      inWord = true;
    }
  }
  if (inWord) words.push(cur);
  return { words };
}

function commandOf(text: string): { args: string[]; pipe?: string } | undefined {
  const { words, pipe } = shellWords(text);
  if (words[0] === "ciliate") return { args: words.slice(1), pipe };
  if (words[0] === "node" && words[1] === "bin/ciliate.js") return { args: words.slice(2), pipe };
  return undefined;
}

function readDocs(): { examples: Example[]; shown: Shown[]; manifests: { where: string; text: string }[] } {
  const examples: Example[] = [];
  const shown: Shown[] = [];
  const manifests: { where: string; text: string }[] = [];
  for (const file of DOCS) {
    const lines = readFileSync(join(ROOT, file), "utf8").split("\n");
    let marker: string | undefined;
    for (let i = 0; i < lines.length; i++) {
      const m = /^<!-- output of: (.*) -->$/.exec(lines[i]!);
      if (m) marker = m[1];
      const fence = /^```(\S*)/.exec(lines[i]!);
      if (!fence) continue;
      const lang = fence[1]!;
      const start = i + 1;
      let end = start;
      while (end < lines.length && !lines[end]!.startsWith("```")) end++;
      const body = lines.slice(start, end);
      if (marker) shown.push({ where: `${file}:${start}`, command: marker, lang, text: body.join("\n") });
      else if (lang === "yaml") manifests.push({ where: `${file}:${start}`, text: body.join("\n") });
      else if (lang === "" || lang === "sh" || lang === "bash" || lang === "console")
        for (let j = 0; j < body.length; j++) {
          let text = body[j]!;
          const at = `${file}:${start + j + 1}`;
          while (text.endsWith("\\") && j + 1 < body.length) text = `${text.slice(0, -1)} ${body[++j]!.trim()}`;
          const c = commandOf(text.trim());
          if (c) examples.push({ where: at, text: text.trim(), ...c });
        }
      marker = undefined;
      i = end;
    }
  }
  return { examples, shown, manifests };
}

const { examples, shown, manifests } = readDocs();

/**
 * The examples each command's --help shows (the block after "Examples:"), as users meet them on the
 * terminal: run as the docs' examples are. Commands are read from `ciliate --help`.
 */
function helpExamples(): Example[] {
  const help = (args: string[]) => spawnSync(process.execPath, [join(ROOT, "bin/ciliate.js"), ...args], { cwd: ROOT, encoding: "utf8", env: { ...process.env, COLUMNS: "" } }).stdout;
  const commands = [...help(["--help"]).split("Commands:")[1]!.matchAll(/^ {2}([a-z]+)\b/gm)].map((m) => m[1]!).filter((c) => c !== "help");
  const found: Example[] = [];
  for (const c of commands) {
    const lines = help([c, "--help"]).split("\n");
    const at = lines.findIndex((l) => l.trim() === "Examples:");
    if (at < 0) continue;
    for (let j = at + 1; j < lines.length && lines[j]!.trim(); j++) {
      let text = lines[j]!.trim();
      while (text.endsWith("\\") && j + 1 < lines.length) text = `${text.slice(0, -1)} ${lines[++j]!.trim()}`;
      const cmd = commandOf(text);
      if (cmd) found.push({ where: `ciliate ${c} --help`, text, ...cmd });
    }
  }
  return found;
}
examples.push(...helpExamples());
const scratch = mkdtempSync(join(tmpdir(), "ciliate-docs-"));
for (const d of ["scenarios", "tests"]) symlinkSync(join(ROOT, d), join(scratch, d));
afterAll(() => rmSync(scratch, { recursive: true, force: true }));

function run(args: string[]) {
  const r = spawnSync(process.execPath, [join(ROOT, "bin/ciliate.js"), ...args], { cwd: scratch, encoding: "utf8", maxBuffer: 256 << 20, env: { ...process.env, CILIATE_DEBUG: "", COLUMNS: "" } });
  return { code: r.status ?? -1, stdout: r.stdout, stderr: r.stderr };
}

const pattern = (doc: string) => new RegExp(`^${doc.split("…").map((p) => p.replace(/[.*+?^${}()|[\]\\]/g, "\\$&")).join(".*")}$`, "s");

/** Does the actual JSON say what the documented JSON says? Strings with "…" are patterns. */
function says(doc: unknown, act: unknown): boolean {
  if (typeof doc === "string") return typeof act === "string" && (doc.includes("…") ? pattern(doc).test(act) : doc === act);
  if (Array.isArray(doc)) return Array.isArray(act) && doc.every((d) => act.some((a) => says(d, a)));
  if (doc && typeof doc === "object") return !!act && typeof act === "object" && Object.entries(doc).every(([k, v]) => says(v, (act as Record<string, unknown>)[k]));
  return doc === act;
}

const kernel = kernelSuite("the documented --engine kernel example", ["root", "libbpf", "bpffs"]);

describe("the docs' examples", () => {
  it("are found: README and docs/cli.md show every simulator command, and so does each command's --help", () => {
    const commands = new Set(examples.map((e) => e.args[0]));
    const inHelp = new Set(examples.filter((e) => e.where.endsWith("--help")).map((e) => e.args[0]));
    for (const c of ["simulate", "reach", "trace", "whatif", "check", "agent", "observe"]) expect(commands, c).toContain(c);
    for (const c of ["simulate", "reach", "trace", "whatif", "check"]) expect(inHelp, c).toContain(c);
    expect(shown.length).toBeGreaterThanOrEqual(6);
  });

  for (const e of examples) {
    const sub = e.args[0]!;
    if (NODE_SIDE[sub]) {
      it.skip(`${e.where}: ${e.text} — not run here: \`ciliate ${sub}\` ${NODE_SIDE[sub]}`, () => {});
      continue;
    }
    const needsKernel = e.args.includes("kernel");
    it.skipIf(needsKernel && kernel.skip)(`${e.where}: ${e.text}`, () => {
      const r = run(e.args);
      expect(r.stderr, r.stderr).toBe("");
      expect(r.code).toBe(0);
      expect(r.stdout.length).toBeGreaterThan(0);
      if (e.pipe?.startsWith("| jq")) for (const l of r.stdout.trim().split("\n")) expect(() => JSON.parse(l)).not.toThrow();
      if (e.pipe?.startsWith("| dot")) expect(r.stdout).toMatch(/^digraph /);
      const junit = e.args[e.args.indexOf("--junit") + 1];
      if (e.args.includes("--junit")) expect(readFileSync(join(scratch, junit!), "utf8")).toContain("<testsuites");
    });
  }

  for (const s of shown)
    it(`${s.where}: shows what \`${s.command}\` prints`, () => {
      const c = commandOf(s.command);
      expect(c, "the marker names a ciliate command").toBeDefined();
      const r = run(c!.args);
      if (s.lang === "json") {
        expect(r.code).toBe(0);
        const doc = JSON.parse(s.text) as unknown;
        const act = JSON.parse(r.stdout) as unknown;
        expect(says(doc, act), `${JSON.stringify(doc)}\nis not what\n${r.stdout.slice(0, 4000)}`).toBe(true);
        return;
      }
      const documented = s.text.split("\n").filter((l) => l.trim());
      // Errors are shown as printed on stderr; they exit 2.
      if (documented[0]!.startsWith("ciliate: ")) expect(r.code).toBe(2);
      else expect(r.code).toBe(0);
      // Each documented line, in order, is a line of the output.
      const actual = `${r.stdout}${r.stderr}`.split("\n");
      let from = 0;
      for (const d of documented) {
        const at = actual.findIndex((a, i) => i >= from && pattern(d).test(a));
        expect(at, `documented line not printed (in order):\n${d}`).toBeGreaterThanOrEqual(0);
        from = at + 1;
      }
    });

  it("every YAML manifest shown in the docs is valid (schema, kinds)", () => {
    expect(manifests.length).toBeGreaterThanOrEqual(3);
    for (const m of manifests) expect(parseManifests(m.text, m.where).errors.map((e) => e.message)).toEqual([]);
  });

  it("every file an example reads is shipped", () => {
    // A node-side command's --help names files on the node it runs on (manifests/, /etc/ciliate/…).
    for (const e of examples.filter((x) => !(x.where.endsWith("--help") && NODE_SIDE[x.args[0]!])))
      e.args.forEach((a, i) => {
        if (["-f", "--file", "--apply"].includes(e.args[i - 1] ?? "") && !a.startsWith("/")) expect(existsSync(join(ROOT, a)), `${e.where}: ${a}`).toBe(true);
      });
  });
});
