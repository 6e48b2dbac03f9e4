// ciliate's service map page (docs/observability.md#service-map-ciliate-ui): polls /api/graph, lays the
// graph out in namespace bands (one band per namespace, one for what is outside the cluster) and columns
// (a node's column is the longest chain of edges leading to it), draws it as SVG, and on a click on an edge
// lists its connections from /api/edge with the rule that decided each. Plain JavaScript, no build step.
"use strict";

const SVG = "http://www.w3.org/2000/svg";
const CARD_W = 190, CARD_H = 58, COL_GAP = 120, ROW_GAP = 18, BAND_PAD = 30, BAND_GAP = 24, MARGIN = 20;
const OUTSIDE = "outside the cluster";
let lastGraph = "";
let selected = null;

function el(name, attrs, parent, text) {
  const e = document.createElementNS(SVG, name);
  for (const [k, v] of Object.entries(attrs || {})) e.setAttribute(k, String(v));
  if (text !== undefined) e.textContent = text;
  if (parent) parent.appendChild(e);
  return e;
}

/** Column of every node: the longest chain of edges into it (cycles cut at the number of nodes). */
function columns(graph) {
  const col = new Map(graph.nodes.map((n) => [n.id, 0]));
  for (let round = 0; round < graph.nodes.length; round++) {
    let changed = false;
    for (const e of graph.edges) {
      if (e.from === e.to) continue;
      const want = col.get(e.from) + 1;
      if (want > col.get(e.to) && want < graph.nodes.length) {
        col.set(e.to, want);
        changed = true;
      }
    }
    if (!changed) break;
  }
  return col;
}

/** Positions: {nodes: Map id -> {x, y}, bands: [{name, x, y, w, h}], width, height}. */
function layout(graph) {
  const col = columns(graph);
  const maxCol = Math.max(0, ...col.values());
  const bandOf = (n) => (n.namespace === undefined ? OUTSIDE : n.namespace);
  const bands = [...new Set(graph.nodes.map(bandOf))].sort((a, b) => (a === OUTSIDE ? -1 : b === OUTSIDE ? 1 : a.localeCompare(b)));
  const pos = new Map();
  const out = [];
  let y = MARGIN;
  const width = MARGIN * 2 + BAND_PAD * 2 + (maxCol + 1) * CARD_W + maxCol * COL_GAP;
  for (const band of bands) {
    const inBand = graph.nodes.filter((n) => bandOf(n) === band);
    const rows = new Map();
    for (const n of inBand) {
      const c = col.get(n.id);
      const r = rows.get(c) || 0;
      rows.set(c, r + 1);
      pos.set(n.id, { x: MARGIN + BAND_PAD + c * (CARD_W + COL_GAP), y: y + BAND_PAD + r * (CARD_H + ROW_GAP) });
    }
    const h = BAND_PAD * 2 - ROW_GAP + Math.max(...rows.values()) * (CARD_H + ROW_GAP);
    out.push({ name: band, x: MARGIN, y, w: width - MARGIN * 2, h });
    y += h + BAND_GAP;
  }
  return { pos, bands: out, width, height: y + MARGIN };
}

function membersText(n) {
  if (n.kind === "service") return "service";
  const what = n.kind === "workload" ? (n.members.length === 1 ? "pod" : "pods") : n.members.length === 1 ? "address" : "addresses";
  const list = n.members.join(", ");
  return `${n.members.length} ${what}${list ? `: ${list.length > 28 ? `${list.slice(0, 27)}…` : list}` : ""}`;
}

function draw(graph) {
  const map = document.getElementById("map");
  map.textContent = "";
  if (!graph.nodes.length) {
    map.innerHTML = '<div id="empty">waiting for flows…</div>';
    return;
  }
  const { pos, bands, width, height } = layout(graph);
  const svg = el("svg", { width, height, viewBox: `0 0 ${width} ${height}`, id: "service-map" }, map);
  const defs = el("defs", {}, svg);
  for (const [status, color] of [["forwarded", "#2e9e44"], ["dropped", "#d62d20"], ["mixed", "#f08c00"]]) {
    const m = el("marker", { id: `arrow-${status}`, viewBox: "0 0 10 10", refX: 9, refY: 5, markerUnits: "userSpaceOnUse", markerWidth: 12, markerHeight: 12, orient: "auto-start-reverse" }, defs);
    el("path", { d: "M0,0 L10,5 L0,10 z", fill: color }, m);
  }
  for (const b of bands) {
    const g = el("g", { class: "ns", "data-namespace": b.name }, svg);
    el("rect", { x: b.x, y: b.y, width: b.w, height: b.h, rx: 10 }, g);
    el("text", { x: b.x + 10, y: b.y + 18 }, g, b.name === OUTSIDE ? OUTSIDE : `namespace ${b.name}`);
  }
  const edges = el("g", { class: "edges" }, svg);
  for (const e of graph.edges) {
    const a = pos.get(e.from), b = pos.get(e.to);
    let d, lx = 0, ly = 0;
    if (e.from === e.to) {
      const x = a.x + CARD_W, y = a.y + CARD_H / 2;
      d = `M${x},${y - 10} C${x + 60},${y - 50} ${x + 60},${y + 50} ${x},${y + 10}`;
      lx = x + 48; ly = y;
    } else {
      const forward = b.x > a.x;
      const x1 = forward ? a.x + CARD_W : a.x + CARD_W / 2, y1 = forward ? a.y + CARD_H / 2 : a.y + (b.y > a.y ? CARD_H : 0);
      const x2 = forward ? b.x : b.x + CARD_W / 2, y2 = forward ? b.y + CARD_H / 2 : b.y + (b.y > a.y ? 0 : CARD_H);
      const dx = forward ? Math.max(40, (x2 - x1) / 2) : 0, dy = forward ? 0 : (y2 - y1) / 2;
      d = `M${x1},${y1} C${x1 + dx},${y1 + dy} ${x2 - dx},${y2 - dy} ${x2},${y2}`;
    }
    const g = el("g", { class: "edge-group", "data-edge": e.id }, edges);
    const hit = el("path", { d, class: "edge-hit", "data-edge": e.id }, g);
    el("title", {}, hit, `${e.from} → ${e.to}: ${e.status} (${e.forwarded} forwarded, ${e.dropped} dropped)`);
    el("path", { d, class: `edge ${e.status}${selected === e.id ? " selected" : ""}`, "data-edge": e.id, "data-status": e.status, "marker-end": `url(#arrow-${e.status})` }, g);
    // The label sits on the curve's middle (edges into one card meet at its side, their middles apart).
    const mid = e.from === e.to ? { x: lx, y: ly } : hit.getPointAtLength(hit.getTotalLength() / 2);
    el("text", { x: mid.x, y: mid.y - 6, class: "edge-label", "text-anchor": "middle" }, g, `${e.ports.join(" ")} ${e.forwarded}✓ ${e.dropped}✗`);
    g.addEventListener("click", () => showEdge(e.id));
  }
  for (const n of graph.nodes) {
    const p = pos.get(n.id);
    const g = el("g", { class: `node ${n.kind}`, "data-node": n.id, transform: `translate(${p.x},${p.y})` }, svg);
    el("rect", { width: CARD_W, height: CARD_H }, g);
    el("text", { x: 12, y: 23, class: "title" }, g, n.name);
    el("text", { x: 12, y: 42, class: "sub" }, g, membersText(n));
    el("title", {}, g, `${n.id}\n${n.members.join("\n")}`);
  }
}

function text(tag, cls, value) {
  const e = document.createElement(tag);
  if (cls) e.className = cls;
  e.textContent = value;
  return e;
}

async function showEdge(id) {
  selected = id;
  for (const p of document.querySelectorAll("path.edge")) p.classList.toggle("selected", p.dataset.edge === id);
  const aside = document.getElementById("flows");
  aside.classList.add("open");
  // The panel says which edge it shows only once it shows it (a reader never sees the previous edge's).
  delete aside.dataset.edge;
  const res = await fetch(`api/edge?id=${encodeURIComponent(id)}`);
  const body = await res.json();
  if (selected !== id) return; // another edge was clicked meanwhile
  aside.textContent = "";
  const close = text("button", "close", "close");
  close.addEventListener("click", () => {
    selected = null;
    aside.classList.remove("open");
    for (const p of document.querySelectorAll("path.edge")) p.classList.remove("selected");
  });
  aside.appendChild(close);
  if (!res.ok) {
    aside.appendChild(text("p", "", body.error || `HTTP ${res.status}`));
    return;
  }
  const e = body.edge;
  aside.appendChild(text("h2", "", `${e.from.replace(/^\w+:/, "")} → ${e.to.replace(/^\w+:/, "")}`));
  aside.appendChild(text("p", "", `${e.status}: ${e.forwarded} forwarded, ${e.dropped} dropped connection(s) on ${e.ports.join(", ")}`));
  for (const c of body.connections) {
    const div = document.createElement("div");
    div.className = "conn";
    div.dataset.connection = c.id;
    div.dataset.verdict = c.verdict;
    const head = document.createElement("div");
    head.appendChild(text("span", `verdict ${c.verdict}`, c.verdict));
    head.appendChild(document.createTextNode(` ${c.client} → ${c.server} ${c.port}${c.flowName ? ` (${c.flowName})` : ""}`));
    div.appendChild(head);
    const rule = text("div", "rule", "");
    rule.appendChild(text("b", "", "decided by: "));
    rule.appendChild(text("span", "decided-by", c.decidedBy));
    div.appendChild(rule);
    if (c.explanation) div.appendChild(text("div", "explanation", c.explanation));
    for (const l of c.l7) div.appendChild(text("div", "l7", l));
    const details = document.createElement("details");
    details.appendChild(text("summary", "", `${c.events.length} event(s)`));
    details.appendChild(text("pre", "", c.events.join("\n")));
    div.appendChild(details);
    aside.appendChild(div);
  }
  aside.dataset.edge = id;
}

async function poll() {
  try {
    const res = await fetch("api/graph");
    const body = await res.json();
    document.getElementById("source").textContent = body.source;
    const status = document.getElementById("status");
    status.textContent = body.error ? `${body.state}: ${body.error}` : body.state;
    status.className = body.error ? "error" : "";
    document.getElementById("count").textContent = `${body.graph.flows} flows`;
    const s = JSON.stringify(body.graph.nodes) + JSON.stringify(body.graph.edges);
    if (s !== lastGraph) {
      lastGraph = s;
      draw(body.graph);
      document.body.dataset.rendered = String(Number(document.body.dataset.rendered || 0) + 1);
      if (selected) showEdge(selected);
    }
  } catch (err) {
    const status = document.getElementById("status");
    status.textContent = `ciliate ui is not answering (${err.message})`;
    status.className = "error";
  }
}

poll();
setInterval(poll, 2000);
