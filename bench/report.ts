/*
 * Writes benchmark results: bench/results/<name>.json (machine + rows + ratios), a Markdown summary and
 * SVG line charts, so docs/benchmarks.md can show the latest committed results.
 */
import { mkdirSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import type { BenchResult, Chart, MachineInfo } from "./harness.ts";

function fmt(n: number): string {
  if (!Number.isFinite(n)) return String(n);
  if (Math.abs(n) >= 100) return n.toFixed(0);
  if (Math.abs(n) >= 10) return n.toFixed(1);
  return n.toFixed(2);
}

export function markdown(result: BenchResult, machine: MachineInfo): string {
  const out: string[] = [];
  out.push(`## ${result.title}`, "");
  out.push(`Machine: ${machine.cpuModel}, ${machine.cores} cores, kernel ${machine.kernel}, Node ${machine.node}, ${machine.clang}, BPF JIT ${machine.jit}; ${machine.date}.`, "");
  if (result.rows.length) {
    const keys = [...new Set(result.rows.flatMap((r) => Object.keys(r.params)))];
    out.push(`| measurement | ${keys.join(" | ")}${keys.length ? " | " : ""}median | min | max | runs |`);
    out.push(`|---|${keys.map(() => "---|").join("")}---:|---:|---:|---:|`);
    for (const r of result.rows) {
      const p = keys.map((k) => String(r.params[k] ?? ""));
      out.push(`| ${r.name} | ${p.join(" | ")}${p.length ? " | " : ""}${fmt(r.stat.median)} ${r.unit} | ${fmt(r.stat.min)} | ${fmt(r.stat.max)} | ${r.stat.runs} |`);
    }
    out.push("");
  }
  if (result.ratios.length) {
    out.push("| ratio | value | anchor |", "|---|---:|---|");
    for (const r of result.ratios) out.push(`| ${r.name} | ${fmt(r.value)}× | ${r.anchor ?? ""} |`);
    out.push("");
  }
  for (const c of result.charts) out.push(`![${c.title}](${chartFile(result.name, c)})`, "");
  for (const s of result.skipped) out.push(`- Skipped: ${s.what} — ${s.reason}`);
  for (const n of result.notes) out.push(`- ${n}`);
  out.push("");
  return out.join("\n");
}

function chartFile(name: string, c: Chart): string {
  return `${name}-${c.title.toLowerCase().replace(/[^a-z0-9]+/g, "-").replace(/^-|-$/g, "")}.svg`;
}

const COLORS = ["#1f77b4", "#d62728", "#2ca02c", "#ff7f0e", "#9467bd", "#8c564b"];

/** A small dependency-free line chart. */
export function svgChart(c: Chart): string {
  const W = 640;
  const H = 360;
  const L = 70;
  const R = 150;
  const T = 40;
  const B = 50;
  const pts = c.series.flatMap((s) => s.points);
  const xs = pts.map(([x]) => (c.logX ? Math.log10(Math.max(x, 1e-9)) : x));
  const ys = pts.map(([, y]) => y);
  const [x0, x1] = [Math.min(...xs), Math.max(...xs)];
  const y1 = Math.max(...ys, 1e-9) * 1.1;
  const sx = (x: number) => L + ((c.logX ? Math.log10(Math.max(x, 1e-9)) : x) - x0) / (x1 - x0 || 1) * (W - L - R);
  const sy = (y: number) => H - B - (y / y1) * (H - T - B);
  const out: string[] = [];
  out.push(`<svg xmlns="http://www.w3.org/2000/svg" width="${W}" height="${H}" font-family="sans-serif" font-size="12">`);
  out.push(`<rect width="${W}" height="${H}" fill="white"/>`);
  out.push(`<text x="${W / 2}" y="20" text-anchor="middle" font-size="14">${esc(c.title)}</text>`);
  out.push(`<line x1="${L}" y1="${H - B}" x2="${W - R}" y2="${H - B}" stroke="black"/>`);
  out.push(`<line x1="${L}" y1="${T}" x2="${L}" y2="${H - B}" stroke="black"/>`);
  for (let i = 0; i <= 4; i++) {
    const y = (y1 * i) / 4;
    out.push(`<text x="${L - 6}" y="${sy(y) + 4}" text-anchor="end">${fmt(y)}</text>`);
    out.push(`<line x1="${L}" y1="${sy(y)}" x2="${W - R}" y2="${sy(y)}" stroke="#eee"/>`);
  }
  const xticks = [...new Set(pts.map(([x]) => x))].sort((a, b) => a - b);
  for (const x of xticks) out.push(`<text x="${sx(x)}" y="${H - B + 16}" text-anchor="middle">${fmt(x)}</text>`);
  out.push(`<text x="${(L + W - R) / 2}" y="${H - 10}" text-anchor="middle">${esc(c.xLabel)}</text>`);
  out.push(`<text x="16" y="${(T + H - B) / 2}" text-anchor="middle" transform="rotate(-90 16 ${(T + H - B) / 2})">${esc(c.yLabel)}</text>`);
  c.series.forEach((s, i) => {
    const color = COLORS[i % COLORS.length];
    const d = s.points.map(([x, y], j) => `${j ? "L" : "M"}${sx(x).toFixed(1)},${sy(y).toFixed(1)}`).join(" ");
    out.push(`<path d="${d}" fill="none" stroke="${color}" stroke-width="2"/>`);
    for (const [x, y] of s.points) out.push(`<circle cx="${sx(x).toFixed(1)}" cy="${sy(y).toFixed(1)}" r="3" fill="${color}"/>`);
    out.push(`<text x="${W - R + 10}" y="${T + 16 * i + 10}" fill="${color}">${esc(s.name)}</text>`);
  });
  out.push("</svg>");
  return out.join("\n");
}

function esc(s: string): string {
  return s.replace(/&/g, "&amp;").replace(/</g, "&lt;").replace(/>/g, "&gt;");
}

/** Writes <dir>/<name>.json, <name>.md and one SVG per chart; returns the Markdown. */
export function writeResult(dir: string, result: BenchResult, machine: MachineInfo): string {
  mkdirSync(dir, { recursive: true });
  writeFileSync(join(dir, `${result.name}.json`), JSON.stringify({ machine, ...result }, null, 2) + "\n");
  const md = markdown(result, machine);
  writeFileSync(join(dir, `${result.name}.md`), md);
  for (const c of result.charts) writeFileSync(join(dir, chartFile(result.name, c)), svgChart(c));
  return md;
}
