// A minimal Kubernetes API server for the agent's end-to-end test in Kubernetes mode (run inside a test
// network namespace: `node fake-apiserver.cjs STATE.json PORT`). It serves the collections the agent
// watches from STATE.json ({"<collection path>": [objects]}), re-read every 100 ms: lists answer the
// current objects; watches (?watch=true) stream ADDED / MODIFIED / DELETED events as the file changes.
// Collections listed in STATE.json's "writable" array (e.g. CiliumIdentities) also take writes, as the
// API server does: POST creates (409 AlreadyExists when the name is taken), GET/PATCH (JSON merge patch)/
// DELETE (409 when a resourceVersion precondition no longer holds, as for a PATCH that names one) on <collection>/<name>; those
// collections then belong to the server and the file no longer changes them. A namespaced writable
// collection (e.g. /apis/cilium.io/v2/ciliumendpoints) takes its writes under
// /apis/<group>/<version>/namespaces/<ns>/<plural>[/<name>], as the API server routes them, and is listed
// and watched across all namespaces at its own path.
// A watch with a resourceVersion first gets the events after that version (kept in memory), as a real
// API server replays them: what changed between a list and its watch is not lost.
// The written collections are kept in STATE.json.written (as a real API server keeps its objects in etcd):
// a server killed and started again serves what was written before; delete that file to start empty.
// Bounded: exits when STATE.json is deleted or after 10 minutes.
const http = require("http");
const fs = require("fs");
const [file, port] = process.argv.slice(2);
// Resource versions never repeat across restarts of this server, as a real API server's (etcd's revision)
// never go back: a restarted server starting again at the same number would hand out the very versions the
// agent cached for different contents.
let rv = Date.now();
let current = {};
const watchers = new Set();
/** Collections written through the API: the file's later contents for them are ignored. */
const owned = new Set();

/** Every event sent, for watches that start at a resourceVersion. */
const history = [];

function emitTo(path, type, o) {
  history.push({ path, rv: Number(o.metadata.resourceVersion), line: JSON.stringify({ type, object: o }) + "\n" });
  for (const w of watchers) if (w.path === path) w.res.write(JSON.stringify({ type, object: o }) + "\n");
}

function load() {
  let next;
  try {
    next = JSON.parse(fs.readFileSync(file, "utf8"));
  } catch (e) {
    if (e.code === "ENOENT") process.exit(0);
    return;
  }
  for (const path of next.writable || []) owned.add(path);
  delete next.writable;
  for (const path of owned) if (current[path]) next[path] = current[path];
  for (const [path, objs] of Object.entries(next)) {
    if (owned.has(path) && current[path]) continue;
    const before = new Map((current[path] || []).map((o) => [`${o.metadata.namespace || ""}/${o.metadata.name}`, o]));
    const after = new Map(objs.map((o) => [`${o.metadata.namespace || ""}/${o.metadata.name}`, o]));
    const emit = (type, o) => {
      rv++;
      emitTo(path, type, { ...o, metadata: { ...o.metadata, resourceVersion: String(rv) } });
    };
    for (const [k, o] of after) {
      const b = before.get(k);
      if (!b) emit("ADDED", o);
      else if (JSON.stringify(b) !== JSON.stringify(o)) emit("MODIFIED", o);
    }
    for (const [k, o] of before) if (!after.has(k)) emit("DELETED", o);
  }
  current = next;
}
const writtenFile = `${file}.written`;
try {
  const saved = JSON.parse(fs.readFileSync(writtenFile, "utf8"));
  for (const [path, objs] of Object.entries(saved)) {
    owned.add(path);
    current[path] = objs;
  }
} catch (e) {
  if (e.code !== "ENOENT") throw e;
}

/** After each write: the written collections to STATE.json.written (atomically). */
function save() {
  const out = {};
  for (const path of owned) if (current[path]) out[path] = current[path];
  fs.writeFileSync(`${writtenFile}.tmp`, JSON.stringify(out));
  fs.renameSync(`${writtenFile}.tmp`, writtenFile);
}

load();
setInterval(load, 100);
setTimeout(() => process.exit(0), 600000);

http
  .createServer((req, res) => {
    const url = new URL(req.url, "http://x");
    const nsd = /^(\/apis\/[^/]+\/[^/]+)\/namespaces\/([^/]+)\/([^/]+)(?:\/([^/]+))?$/.exec(url.pathname);
    if (nsd && owned.has(`${nsd[1]}/${nsd[3]}`)) {
      const collection = `${nsd[1]}/${nsd[3]}`;
      const ns = decodeURIComponent(nsd[2]);
      if (nsd[4] === undefined && req.method === "POST") return body(req, (o) => create(collection, o && { ...o, metadata: { ...o.metadata, namespace: ns } }, res));
      if (nsd[4] !== undefined) return body(req, (o) => item(req.method, collection, decodeURIComponent(nsd[4]), o, res, ns));
    }
    const slash = url.pathname.lastIndexOf("/");
    const parent = url.pathname.slice(0, slash);
    if (owned.has(url.pathname) && req.method === "POST") return body(req, (o) => create(url.pathname, o, res));
    if (owned.has(parent)) return body(req, (o) => item(req.method, parent, url.pathname.slice(slash + 1), o, res));
    const objs = current[url.pathname];
    if (!objs) {
      res.writeHead(404).end(JSON.stringify({ kind: "Status", code: 404 }));
      return;
    }
    if (url.searchParams.get("watch") === "true") {
      res.writeHead(200, { "content-type": "application/json" });
      const from = Number(url.searchParams.get("resourceVersion") || NaN);
      if (Number.isFinite(from)) for (const h of history) if (h.path === url.pathname && h.rv > from) res.write(h.line);
      const w = { path: url.pathname, res };
      watchers.add(w);
      req.on("close", () => watchers.delete(w));
      return;
    }
    res.writeHead(200, { "content-type": "application/json" });
    res.end(JSON.stringify({ kind: "List", apiVersion: "v1", metadata: { resourceVersion: String(rv) }, items: objs.map((o) => ({ ...o, metadata: { ...o.metadata, resourceVersion: o.metadata.resourceVersion || String(rv) } })) }));
  })
  .listen(Number(port), "0.0.0.0");

function body(req, then) {
  let text = "";
  req.on("data", (d) => (text += d));
  req.on("end", () => {
    let o;
    try {
      o = text ? JSON.parse(text) : undefined;
    } catch {
      o = undefined;
    }
    then(o);
  });
}

function status(res, code, reason, message) {
  res.writeHead(code, { "content-type": "application/json" }).end(JSON.stringify({ kind: "Status", apiVersion: "v1", status: "Failure", code, reason, message }));
}

function create(path, o, res) {
  const objs = current[path];
  if (!o || !o.metadata || !o.metadata.name) return status(res, 422, "Invalid", "metadata.name: Required value");
  if (objs.some((x) => x.metadata.name === o.metadata.name && (x.metadata.namespace || "") === (o.metadata.namespace || ""))) return status(res, 409, "AlreadyExists", `"${o.metadata.name}" already exists`);
  rv++;
  const obj = { ...o, metadata: { ...o.metadata, resourceVersion: String(rv) } };
  current[path] = [...objs, obj];
  save();
  emitTo(path, "ADDED", obj);
  res.writeHead(201, { "content-type": "application/json" }).end(JSON.stringify(obj));
}

/** RFC 7386 JSON merge patch: null removes a member. */
function merge(target, patch) {
  if (patch === null || typeof patch !== "object" || Array.isArray(patch)) return patch;
  const out = target && typeof target === "object" && !Array.isArray(target) ? { ...target } : {};
  for (const [k, v] of Object.entries(patch)) {
    if (v === null) delete out[k];
    else out[k] = merge(out[k], v);
  }
  return out;
}

function item(method, path, name, o, res, ns) {
  const objs = current[path];
  const i = objs.findIndex((x) => x.metadata.name === name && (x.metadata.namespace || "") === (ns || ""));
  if (i < 0) return status(res, 404, "NotFound", `"${name}" not found`);
  if (method === "GET") return res.writeHead(200, { "content-type": "application/json" }).end(JSON.stringify(objs[i]));
  if (method === "PATCH") {
    // A patch naming a resourceVersion is an optimistic lock, as the API server checks it (409 Conflict).
    const want = o && o.metadata && o.metadata.resourceVersion;
    if (want && want !== objs[i].metadata.resourceVersion) return status(res, 409, "Conflict", "the object has been modified; please apply your changes to the latest version and try again");
    rv++;
    const obj = merge(objs[i], o || {});
    obj.metadata = { ...obj.metadata, name, ...(ns ? { namespace: ns } : {}), resourceVersion: String(rv) };
    current[path] = objs.map((x, j) => (j === i ? obj : x));
    save();
    emitTo(path, "MODIFIED", obj);
    return res.writeHead(200, { "content-type": "application/json" }).end(JSON.stringify(obj));
  }
  if (method === "DELETE") {
    const want = o && o.preconditions && o.preconditions.resourceVersion;
    if (want && want !== objs[i].metadata.resourceVersion) return status(res, 409, "Conflict", "the resourceVersion precondition failed");
    rv++;
    current[path] = objs.filter((_, j) => j !== i);
    save();
    emitTo(path, "DELETED", { ...objs[i], metadata: { ...objs[i].metadata, resourceVersion: String(rv) } });
    return res.writeHead(200, { "content-type": "application/json" }).end(JSON.stringify(objs[i]));
  }
  status(res, 405, "MethodNotAllowed", `${method} is not supported`);
}
