// Regenerates policy/schemas/*.json from upstream schema files (run by hand when upgrading; the output is
// committed as data). Upstream files are read, never fetched here:
//   node scripts/import-schemas.mjs <kubernetes swagger.json> <ciliumnetworkpolicy_v2.json> <ciliumclusterwidenetworkpolicy_v2.json>
// Kubernetes: the OpenAPI v2 document of kubernetes/kubernetes (api/openapi-spec/swagger.json). Only the
// definitions reachable from the kinds ciliate reads are kept. Cilium: the openAPIV3Schema of the CRDs in
// cilium/cilium pkg/k8s/apis/cilium.io/client/crds/v2/ as JSON Schema (datreeio/CRDs-catalog conversion).
// Both are made "strict" the way `kubectl apply --validate=strict` is: an object schema that lists its
// properties refuses any other field. Descriptions and x-kubernetes-* annotations are dropped (size);
// int-or-string and Quantity become "integer or string" / "number or string" as the API server decodes them.
import { readFileSync, writeFileSync } from "node:fs";

const [swaggerPath, cnpPath, ccnpPath] = process.argv.slice(2);
if (!ccnpPath) {
  console.error("usage: node scripts/import-schemas.mjs SWAGGER.json CNP.json CCNP.json");
  process.exit(2);
}
const OUT = new URL("../policy/schemas/", import.meta.url);

const KINDS = [
  ["v1", "Namespace", "io.k8s.api.core.v1.Namespace"],
  ["v1", "Node", "io.k8s.api.core.v1.Node"],
  ["v1", "Pod", "io.k8s.api.core.v1.Pod"],
  ["v1", "Service", "io.k8s.api.core.v1.Service"],
  ["discovery.k8s.io/v1", "EndpointSlice", "io.k8s.api.discovery.v1.EndpointSlice"],
  ["networking.k8s.io/v1", "NetworkPolicy", "io.k8s.api.networking.v1.NetworkPolicy"],
  ["apps/v1", "Deployment", "io.k8s.api.apps.v1.Deployment"],
  ["apps/v1", "ReplicaSet", "io.k8s.api.apps.v1.ReplicaSet"],
  ["apps/v1", "StatefulSet", "io.k8s.api.apps.v1.StatefulSet"],
  ["apps/v1", "DaemonSet", "io.k8s.api.apps.v1.DaemonSet"],
];
const OBJECT_META = "io.k8s.apimachinery.pkg.apis.meta.v1.ObjectMeta";

// Go's RE2 writes Unicode classes as \\pL / \\PC; JavaScript needs \\p{L} / \\P{C}.
function goPattern(p) {
  return p.replace(/\\([pP])([A-Z])/g, "\\$1{$2}");
}

// A oneOf/anyOf branch such as `{properties: {endpointSelector: {}}, required: [endpointSelector]}` only
// states which field must be present; it must not refuse the object's other fields.
function clean(s, branch = false) {
  if (Array.isArray(s)) return s.map((x) => clean(x));
  if (!s || typeof s !== "object") return s;
  if (s.format === "int-or-string" || s["x-kubernetes-int-or-string"]) {
    const out = { anyOf: [{ type: "integer" }, { type: "string" }] };
    if (s.pattern) out.anyOf[1].pattern = s.pattern;
    return out;
  }
  const out = {};
  for (const [k, v] of Object.entries(s)) {
    if (k === "description" || k === "format" || k.startsWith("x-kubernetes-") || k === "default" || k === "example") continue;
    if (k === "properties" || k === "definitions" || k === "patternProperties") out[k] = Object.fromEntries(Object.entries(v).map(([n, p]) => [n, clean(p)]));
    else if (k === "pattern" && typeof v === "string") out[k] = goPattern(v);
    // The PortProtocol enum also admits the extended IP protocols of Cilium's pkg/policy/api/l4.go
    // (ProtoVRRP, ProtoIGMP): whether a policy may use them is the agent option
    // enable-extended-ip-protocols, checked after the schema (policy/validate.ts), not the CRD's enum.
    else if (k === "enum" && Array.isArray(v) && v.join() === "TCP,UDP,SCTP,ANY") out[k] = ["TCP", "UDP", "SCTP", "VRRP", "IGMP", "ANY"];
    else if (k === "oneOf" || k === "anyOf" || k === "allOf") out[k] = v.map((x) => clean(x, true));
    else out[k] = clean(v);
  }
  // A port-less protocol needs no port: PortProtocol's `port` is optional, as in Cilium's CRD since the
  // extended IP protocols; Cilium's own check (port must be specified unless enable-extended-ip-protocols)
  // is policy/validate.ts's.
  if (out.properties?.protocol?.enum?.includes("VRRP") && Array.isArray(out.required)) {
    out.required = out.required.filter((r) => r !== "port");
    if (!out.required.length) delete out.required;
  }
  if (branch) {
    if (out.additionalProperties === false) delete out.additionalProperties;
    return out;
  }
  if (s["x-kubernetes-preserve-unknown-fields"]) delete out.additionalProperties;
  else if (out.properties && out.additionalProperties === undefined) out.additionalProperties = false;
  return out;
}

// Kubernetes: the closure of definitions reachable from the kinds.
const swagger = JSON.parse(readFileSync(swaggerPath, "utf8"));
const defs = {};
const todo = [...KINDS.map((k) => k[2]), OBJECT_META];
while (todo.length) {
  const name = todo.pop();
  if (defs[name]) continue;
  const d = swagger.definitions[name];
  if (!d) throw new Error(`definition ${name} missing`);
  defs[name] = d;
  JSON.stringify(d, (k, v) => {
    if (k === "$ref") todo.push(v.replace("#/definitions/", ""));
    return v;
  });
}
const cleaned = Object.fromEntries(Object.keys(defs).sort().map((n) => [n, clean(defs[n])]));
cleaned["io.k8s.apimachinery.pkg.util.intstr.IntOrString"] = { anyOf: [{ type: "integer" }, { type: "string" }] };
cleaned["io.k8s.apimachinery.pkg.api.resource.Quantity"] = { anyOf: [{ type: "number" }, { type: "string" }] };
const kinds = KINDS.map(([apiVersion, kind, def]) => ({ apiVersion, kind, definition: def }));
writeFileSync(new URL("kubernetes.json", OUT), JSON.stringify({ kinds, objectMeta: OBJECT_META, definitions: cleaned }) + "\n");

// Cilium: the CRD schemas; metadata is validated as ObjectMeta (as the API server does for every object).
for (const [path, kind, file] of [
  [cnpPath, "CiliumNetworkPolicy", "ciliumnetworkpolicy-v2.json"],
  [ccnpPath, "CiliumClusterwideNetworkPolicy", "ciliumclusterwidenetworkpolicy-v2.json"],
]) {
  const s = clean(JSON.parse(readFileSync(path, "utf8")));
  delete s.properties.metadata;
  writeFileSync(new URL(file, OUT), JSON.stringify({ apiVersion: "cilium.io/v2", kind, schema: s }) + "\n");
}
console.log(`wrote ${Object.keys(cleaned).length} Kubernetes definitions and 2 Cilium schemas`);
