// A minimal Kubernetes API server for the agent's end-to-end test in Kubernetes mode (run inside a test
// network namespace: `node fake-apiserver.cjs STATE.json PORT`). It serves the collections the agent
// watches from STATE.json ({"<collection path>": [objects]}), re-read every 100 ms: lists answer the
// current objects; watches (?watch=true) stream ADDED / MODIFIED / DELETED events as the file changes.
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

function load() {
  let next;
  try {
    next = JSON.parse(fs.readFileSync(file, "utf8"));
  } catch (e) {
    if (e.code === "ENOENT") process.exit(0);
    return;
  }
  for (const [path, objs] of Object.entries(next)) {
    const before = new Map((current[path] || []).map((o) => [`${o.metadata.namespace || ""}/${o.metadata.name}`, o]));
    const after = new Map(objs.map((o) => [`${o.metadata.namespace || ""}/${o.metadata.name}`, o]));
    const emit = (type, o) => {
      rv++;
      const obj = { ...o, metadata: { ...o.metadata, resourceVersion: String(rv) } };
      for (const w of watchers) if (w.path === path) w.res.write(JSON.stringify({ type, object: obj }) + "\n");
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
load();
setInterval(load, 100);
setTimeout(() => process.exit(0), 600000);

http
  .createServer((req, res) => {
    const url = new URL(req.url, "http://x");
    const objs = current[url.pathname];
    if (!objs) {
      res.writeHead(404).end(JSON.stringify({ kind: "Status", code: 404 }));
      return;
    }
    if (url.searchParams.get("watch") === "true") {
      res.writeHead(200, { "content-type": "application/json" });
      const w = { path: url.pathname, res };
      watchers.add(w);
      req.on("close", () => watchers.delete(w));
      return;
    }
    res.writeHead(200, { "content-type": "application/json" });
    res.end(JSON.stringify({ kind: "List", apiVersion: "v1", metadata: { resourceVersion: String(rv) }, items: objs.map((o) => ({ ...o, metadata: { ...o.metadata, resourceVersion: String(rv) } })) }));
  })
  .listen(Number(port), "0.0.0.0");
