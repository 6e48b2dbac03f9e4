#!/usr/bin/env node
// Prints this node's pod CIDR (Node spec.podCIDR, allocated by the controller manager) for the DaemonSet's
// agent, whose --pod-cidr the downward API cannot supply. Run in the agent's init container with the
// pod's service account (RBAC: get nodes, deploy/kubernetes/10-rbac.yaml):
//   node node-pod-cidr.mjs NODE_NAME [OUT_FILE]
// It writes the CIDR to OUT_FILE (renamed into place) or stdout and exits 0; on any failure it prints one
// line naming what is wrong and exits 1, so the pod restarts the init container instead of starting an
// agent without an address range.
// The API server is https://$KUBERNETES_SERVICE_HOST:$KUBERNETES_SERVICE_PORT with the service account's CA
// and token, or CILIATE_API_SERVER (then CILIATE_SA_DIR names the token's directory; tests use both).
import { readFileSync, renameSync, writeFileSync } from "node:fs";
import http from "node:http";
import https from "node:https";

const SA_DIR = process.env.CILIATE_SA_DIR ?? "/var/run/secrets/kubernetes.io/serviceaccount";

function fail(msg) {
  process.stderr.write(`node-pod-cidr: ${msg}\n`);
  process.exit(1);
}

function read(path, what) {
  try {
    return readFileSync(path, "utf8").trim();
  } catch (e) {
    return fail(`cannot read the ${what} ${path}: ${e.code ?? e.message}`);
  }
}

const [nodeName, outFile] = process.argv.slice(2);
if (!nodeName) fail("usage: node-pod-cidr.mjs NODE_NAME [OUT_FILE]");
const host = process.env.KUBERNETES_SERVICE_HOST;
const server = process.env.CILIATE_API_SERVER ?? (host ? `https://${host.includes(":") ? `[${host}]` : host}:${process.env.KUBERNETES_SERVICE_PORT ?? "443"}` : fail("not in a pod: KUBERNETES_SERVICE_HOST is not set (or set CILIATE_API_SERVER)"));
const url = new URL(`/api/v1/nodes/${encodeURIComponent(nodeName)}`, server);
const token = read(`${SA_DIR}/token`, "service account token");
const lib = url.protocol === "https:" ? https : http;
const options = { headers: { authorization: `Bearer ${token}`, accept: "application/json" }, timeout: 10_000 };
if (url.protocol === "https:") options.ca = read(`${SA_DIR}/ca.crt`, "service account CA");

const req = lib.get(url, options, (res) => {
  let body = "";
  res.setEncoding("utf8");
  res.on("data", (c) => (body += c));
  res.on("end", () => {
    if (res.statusCode !== 200) fail(`GET ${url.pathname}: HTTP ${res.statusCode}${res.statusCode === 403 ? " (the service account needs get on nodes)" : ""}`);
    let node;
    try {
      node = JSON.parse(body);
    } catch {
      fail(`GET ${url.pathname}: the answer is not JSON`);
    }
    const cidr = node?.spec?.podCIDR;
    if (typeof cidr !== "string" || !cidr) fail(`node ${nodeName} has no spec.podCIDR: start the controller manager with --allocate-node-cidrs, or run the agent with --pod-cidr`);
    if (!outFile) return void process.stdout.write(`${cidr}\n`);
    writeFileSync(`${outFile}.new`, `${cidr}\n`);
    renameSync(`${outFile}.new`, outFile);
  });
});
req.on("timeout", () => req.destroy(new Error("no answer within 10 s")));
req.on("error", (e) => fail(`GET ${url.href}: ${e.message}`));
