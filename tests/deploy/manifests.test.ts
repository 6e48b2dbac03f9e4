/*
 * deploy/ as an operator applies it. Every Kubernetes object under deploy/ is validated against the
 * Kubernetes OpenAPI schemas (kubernetes-models, generated from the upstream OpenAPI document), and the
 * objects are checked against the code they deploy:
 *   - the ClusterRole bound to the DaemonSet's service account grants list and watch on every resource
 *     agent/k8s-source.ts watches (WATCHED_KINDS, read here, not copied: Nodes among them), and nothing else
 *     but `get` on nodes for the pod-CIDR init container and what the CiliumIdentity backend does;
 *   - a CRD serves each cilium.io kind the agent watches, under the plural and version it requests;
 *   - the DaemonSet mounts the agent's default bpffs and state paths, probes the metrics address it passes;
 *   - deploy/scripts/install-cni.sh installs a plugin that answers CNI VERSION and reaches for the socket
 *     named in its configuration; deploy/scripts/node-pod-cidr.mjs reads spec.podCIDR with the token;
 *   - `systemd-analyze verify` accepts the systemd unit with no warning. systemd-analyze is expected in CI
 *     (.ci/run installs systemd): there its absence fails; elsewhere the check is skipped with the reason.
 * Limit: the OpenAPI schemas do not refuse unknown fields (the API server's strict field validation does).
 */
import { spawnSync } from "node:child_process";
import { chmodSync, existsSync, mkdtempSync, readdirSync, readFileSync, rmSync, statSync, writeFileSync } from "node:fs";
import { createServer, type IncomingHttpHeaders } from "node:http";
import type { AddressInfo } from "node:net";
import { tmpdir } from "node:os";
import { dirname, join, relative, resolve } from "node:path";
import { fileURLToPath } from "node:url";
import { afterAll, describe, expect, it } from "vitest";
import { parseAllDocuments } from "yaml";
import { DEFAULT_BPFFS, DEFAULT_SOCKET, DEFAULT_STATE_DIR } from "../../agent/defaults.ts";
import { WATCHED_KINDS } from "../../agent/k8s-source.ts";
import { IDENTITY_PATH, IDENTITY_VERBS } from "../../agent/identity-crd.ts";
import { ENDPOINTS_PATH, NODES_PATH, STATE_VERBS } from "../../agent/crd-state.ts";
import { LEASE_PATH, LEASE_VERBS } from "../../agent/crd-gc.ts";
import { CNI_SUPPORTED_VERSIONS } from "../../cli/commands/cni.ts";
import { parseIdentityFlags } from "../../agent/identity-options.ts";
import { freePort, hasEtcd } from "../helpers/etcd.ts";
import { skipUnless } from "../helpers/tools.ts";

const root = resolve(dirname(fileURLToPath(import.meta.url)), "../..");
const deployDir = join(root, "deploy");
const tmp = mkdtempSync(join(tmpdir(), `ciliate-deploy-${process.pid}-`));
afterAll(() => rmSync(tmp, { recursive: true, force: true }));

interface K8sObject {
  apiVersion: string;
  kind: string;
  metadata: { name: string; namespace?: string };
  [k: string]: unknown;
}
interface Loaded {
  /** file:line of the document, for messages. */
  file: string;
  obj: K8sObject;
}

function yamlFiles(dir: string): string[] {
  return readdirSync(dir).flatMap((n) => {
    const p = join(dir, n);
    if (statSync(p).isDirectory()) return yamlFiles(p);
    return /\.ya?ml$/.test(n) ? [p] : [];
  });
}

function loadAll(): Loaded[] {
  const out: Loaded[] = [];
  for (const file of yamlFiles(deployDir)) {
    const text = readFileSync(file, "utf8");
    for (const doc of parseAllDocuments(text)) {
      const at = `${relative(root, file)}:${doc.contents ? text.slice(0, doc.contents.range[0]).split("\n").length : 1}`;
      if (doc.errors.length) throw new Error(`${at}: ${doc.errors[0].message}`);
      const obj = doc.toJS() as K8sObject | null;
      if (obj === null) continue;
      out.push({ file: at, obj });
    }
  }
  return out;
}

const objects = loadAll();
const byKind = (kind: string) => objects.filter((o) => o.obj.kind === kind).map((o) => o.obj);
const one = (kind: string) => {
  const all = byKind(kind);
  expect(all, `exactly one ${kind} in deploy/`).toHaveLength(1);
  return all[0];
};

/** API group and resource (plural) of a collection path: /api/v1/pods, /apis/GROUP/VERSION/PLURAL. */
function groupResource(path: string): { group: string; version: string; resource: string } {
  const core = /^\/api\/(v[^/]+)\/([^/]+)$/.exec(path);
  if (core) return { group: "", version: core[1], resource: core[2] };
  const named = /^\/apis\/([^/]+)\/([^/]+)\/([^/]+)$/.exec(path);
  if (!named) throw new Error(`agent/k8s-source.ts: unexpected collection path ${path}`);
  return { group: named[1], version: named[2], resource: named[3] };
}

type Rule = { apiGroups?: string[]; resources?: string[]; verbs: string[] };

describe("deploy/ Kubernetes manifests", () => {
  it("parse, and each object is valid against the Kubernetes OpenAPI schema of its kind", async () => {
    expect(objects.length).toBeGreaterThanOrEqual(6);
    const errors: string[] = [];
    for (const { file, obj } of objects) {
      const [group, version] = obj.apiVersion.includes("/") ? obj.apiVersion.split("/") : ["", obj.apiVersion];
      // kubernetes-models lays its classes out as <group>/<version>/<Kind> (core: v1/<Kind>).
      const module = `kubernetes-models/${group ? `${group}/` : ""}${version}/${obj.kind}`;
      let Model: new (o: unknown) => { validate(): void };
      try {
        Model = ((await import(module)) as { default?: unknown; [k: string]: unknown })[obj.kind] as typeof Model;
      } catch {
        errors.push(`${file}: ${obj.apiVersion} ${obj.kind} is not a Kubernetes kind`);
        continue;
      }
      try {
        new Model(obj).validate();
      } catch (e) {
        errors.push(`${file}: ${obj.kind} ${obj.metadata?.name}: ${(e as Error).message}`);
      }
    }
    expect(errors).toEqual([]);
  });

  it("the validation refuses a wrong object (so the check above can fail)", async () => {
    const ds = structuredClone(one("DaemonSet")) as unknown as { spec: { template: { spec: { containers: { ports?: unknown }[] } } } };
    ds.spec.template.spec.containers[0].ports = [{ containerPort: "metrics" }];
    const { DaemonSet } = await import("kubernetes-models/apps/v1/DaemonSet");
    expect(() => new DaemonSet(ds as never).validate()).toThrow(/containerPort must be integer/);
  });

  it("RBAC: the agent's service account may list and watch every watched resource, and nothing more", () => {
    const ds = one("DaemonSet") as K8sObject & { spec: { template: { spec: { serviceAccountName: string; initContainers: { command: string[] }[]; containers: { name: string; command: string[] }[] } } } };
    const sa = one("ServiceAccount");
    expect(ds.spec.template.spec.serviceAccountName).toBe(sa.metadata.name);
    expect(ds.metadata.namespace).toBe(sa.metadata.namespace);
    const bindings = byKind("ClusterRoleBinding").filter((b) =>
      (b.subjects as { kind: string; name: string; namespace: string }[]).some((s) => s.kind === "ServiceAccount" && s.name === sa.metadata.name && s.namespace === sa.metadata.namespace),
    );
    expect(bindings.length).toBeGreaterThan(0);
    const rules: Rule[] = bindings.flatMap((b) => {
      const ref = b.roleRef as { kind: string; name: string };
      const role = byKind(ref.kind).find((r) => r.metadata.name === ref.name);
      expect(role, `ClusterRoleBinding ${b.metadata.name}: role ${ref.kind}/${ref.name} is in deploy/`).toBeDefined();
      return (role as unknown as { rules: Rule[] }).rules;
    });
    const granted = new Set<string>();
    for (const r of rules) for (const g of r.apiGroups ?? []) for (const res of r.resources ?? []) for (const v of r.verbs) granted.add(`${g}/${res}:${v}`);
    expect([...granted].filter((g) => g.includes("*")), "no wildcards").toEqual([]);

    const needed = new Set<string>();
    for (const k of WATCHED_KINDS) {
      const { group, resource } = groupResource(k.path);
      // ListWatch lists then watches (agent/k8s-source.ts); it never gets single objects.
      for (const verb of ["list", "watch"]) needed.add(`${group}/${resource}:${verb}`);
    }
    // The pod-CIDR init container reads its own Node object; grant it only while the DaemonSet runs it.
    const runsPodCidr = ds.spec.template.spec.initContainers.some((c) => c.command.some((a) => a.endsWith("node-pod-cidr.mjs")));
    expect(runsPodCidr).toBe(true);
    needed.add("/nodes:get");
    // Cluster-wide identities as CiliumIdentity objects: what the CRD backend does with them.
    const agent = ds.spec.template.spec.containers.find((c) => c.name === "agent")!;
    expect(agent.command.join(" ")).toMatch(/--identity-allocation-mode crd/);
    const ids = groupResource(IDENTITY_PATH);
    for (const verb of IDENTITY_VERBS) needed.add(`${ids.group}/${ids.resource}:${verb}`);
    // crd mode's shared state: this node's CiliumEndpoints and CiliumNode, every other node's watched.
    for (const path of [ENDPOINTS_PATH, NODES_PATH]) {
      const r = groupResource(path);
      for (const verb of STATE_VERBS) needed.add(`${r.group}/${r.resource}:${verb}`);
    }
    // The Lease electing the agent that collects gone nodes' objects (it lists nodes and pods, granted above).
    const lease = groupResource(LEASE_PATH);
    for (const verb of LEASE_VERBS) needed.add(`${lease.group}/${lease.resource}:${verb}`);

    expect([...needed].filter((n) => !granted.has(n)), "missing grants").toEqual([]);
    expect([...granted].filter((g) => !needed.has(g)), "grants nothing the agent does not use").toEqual([]);
  });

  it("a CRD serves every cilium.io kind the agent watches, as it requests them", () => {
    const crds = byKind("CustomResourceDefinition") as (K8sObject & {
      spec: { group: string; scope: string; names: { kind: string; plural: string }; versions: { name: string; served: boolean; storage: boolean }[] };
    })[];
    const watchedCrds = WATCHED_KINDS.filter((k) => !k.path.startsWith("/api/") && groupResource(k.path).group.endsWith("cilium.io"));
    expect(watchedCrds.length).toBeGreaterThanOrEqual(2);
    for (const k of watchedCrds) {
      const { group, version, resource } = groupResource(k.path);
      const crd = crds.find((c) => c.spec.names.kind === k.kind);
      expect(crd, `a CRD for ${k.kind}`).toBeDefined();
      expect(crd!.metadata.name).toBe(`${resource}.${group}`);
      expect([crd!.spec.group, crd!.spec.names.plural]).toEqual([group, resource]);
      expect(k.apiVersion).toBe(`${group}/${version}`);
      expect(crd!.spec.versions.find((v) => v.name === version)).toMatchObject({ served: true, storage: true });
    }
    const scope = (kind: string) => crds.find((c) => c.spec.names.kind === kind)?.spec.scope;
    expect([scope("CiliumNetworkPolicy"), scope("CiliumClusterwideNetworkPolicy")]).toEqual(["Namespaced", "Cluster"]);
    // CiliumIdentity as the CRD backend requests it; without a status subresource, since each agent
    // merge-patches its reference into status on the object itself.
    const ids = groupResource(IDENTITY_PATH);
    const identity = crds.find((c) => c.spec.names.kind === "CiliumIdentity");
    expect(identity?.metadata.name).toBe(`${ids.resource}.${ids.group}`);
    expect([identity!.spec.scope, identity!.spec.names.plural]).toEqual(["Cluster", ids.resource]);
    expect(identity!.spec.versions.find((v) => v.name === ids.version)).toMatchObject({ served: true, storage: true });
    expect((identity!.spec.versions[0] as { subresources?: { status?: unknown } }).subresources?.status).toBeUndefined();
    // CiliumEndpoint and CiliumNode as crd mode's shared state writes them (agent/crd-state.ts): a
    // CiliumEndpoint is namespaced and written with its status, so no status subresource may swallow it.
    for (const [path, scope, kind] of [[ENDPOINTS_PATH, "Namespaced", "CiliumEndpoint"], [NODES_PATH, "Cluster", "CiliumNode"]] as const) {
      const r = groupResource(path);
      const crd = crds.find((c) => c.spec.names.kind === kind);
      expect(crd?.metadata.name, `a CRD for ${kind}`).toBe(`${r.resource}.${r.group}`);
      expect([crd!.spec.scope, crd!.spec.names.plural]).toEqual([scope, r.resource]);
      expect(crd!.spec.versions.find((v) => v.name === r.version)).toMatchObject({ served: true, storage: true });
    }
    expect((crds.find((c) => c.spec.names.kind === "CiliumEndpoint")!.spec.versions[0] as { subresources?: { status?: unknown } }).subresources?.status).toBeUndefined();
  });

  it("the DaemonSet runs on every node in the host network with the agent's paths mounted and a probe on its metrics", () => {
    type Mount = { name: string; mountPath: string; mountPropagation?: string };
    type Container = { name: string; command: string[]; volumeMounts: Mount[]; env?: { name: string; value?: string }[]; securityContext?: { privileged?: boolean; capabilities?: { add?: string[] } }; resources?: { requests?: object }; readinessProbe?: { httpGet: { host: string; port: number; path: string } }; livenessProbe?: { httpGet: { host: string; port: number; path: string } } };
    const ds = one("DaemonSet") as K8sObject & { spec: { template: { spec: { hostNetwork: boolean; tolerations: { operator: string; key?: string }[]; containers: Container[]; initContainers: Container[]; volumes: { name: string; hostPath?: { path: string } }[] } } } };
    const pod = ds.spec.template.spec;
    expect(pod.hostNetwork).toBe(true);
    expect(pod.tolerations).toContainEqual({ operator: "Exists" });
    const agent = pod.containers.find((c) => c.name === "agent")!;
    const script = agent.command.join(" ");
    expect(script).toMatch(/ciliate\.js agent --kubeconfig in-cluster/);
    expect(agent.securityContext?.privileged).toBe(true);
    expect(agent.securityContext?.capabilities?.add?.sort()).toEqual(["BPF", "NET_ADMIN", "PERFMON", "SYS_ADMIN", "SYS_RESOURCE"]);
    expect(agent.resources?.requests).toBeDefined();
    const hostPathOf = (c: Container, path: string) => {
      const m = c.volumeMounts.find((v) => path === v.mountPath || path.startsWith(`${v.mountPath}/`));
      return m && { mount: m, host: pod.volumes.find((v) => v.name === m.name)?.hostPath?.path };
    };
    const bpffs = hostPathOf(agent, DEFAULT_BPFFS);
    expect(bpffs).toMatchObject({ host: "/sys/fs/bpf", mount: { mountPropagation: "Bidirectional" } });
    expect(hostPathOf(agent, DEFAULT_STATE_DIR)?.host).toBe(DEFAULT_STATE_DIR);
    expect(hostPathOf(agent, DEFAULT_SOCKET)?.host).toBe(DEFAULT_STATE_DIR);
    const metrics = /--metrics-addr (\S+):(\d+)/.exec(script)!;
    for (const probe of [agent.readinessProbe, agent.livenessProbe]) expect(probe?.httpGet).toEqual({ host: metrics[1], port: Number(metrics[2]), path: "/metrics" });
    // The pod CIDR the init container writes is the file the agent reads, on a volume both mount.
    const podCidr = pod.initContainers.find((c) => c.command.some((a) => a.endsWith("node-pod-cidr.mjs")))!;
    const cidrFile = podCidr.command[podCidr.command.length - 1];
    expect(script).toContain(`--pod-cidr "$(cat ${cidrFile})"`);
    expect(hostPathOf(podCidr, cidrFile)?.mount.name).toBe(hostPathOf(agent, cidrFile)?.mount.name);
    // The CNI installer writes to the host's CNI directories and points the plugin at the agent's socket.
    const cni = pod.initContainers.find((c) => c.command.some((a) => a.endsWith("install-cni.sh")))!;
    const env = Object.fromEntries((cni.env ?? []).map((e) => [e.name, e.value ?? ""]));
    expect(env.CILIATE_SOCKET).toBe(DEFAULT_SOCKET);
    expect(hostPathOf(cni, env.CNI_BIN_DIR)?.host).toBe(env.HOST_CNI_BIN_DIR);
    expect(hostPathOf(cni, env.CNI_CONF_DIR)?.host).toBe("/etc/cni/net.d");
  });
});

describe("deploy/scripts/install-cni.sh", () => {
  const cliDir = join(root, "build/cli");
  it("installs a plugin the runtime can execute, named by the configuration, talking to the configured socket", () => {
    if (!existsSync(join(cliDir, "ciliate.mjs"))) throw new Error("build/cli/ciliate.mjs is missing: run `npm run build` first");
    const bin = join(tmp, "opt/cni/bin");
    const conf = join(tmp, "etc/cni/net.d");
    const socket = join(tmp, "no-agent.sock");
    const env = { PATH: process.env.PATH, CNI_BIN_DIR: bin, CNI_CONF_DIR: conf, CILIATE_SOCKET: socket, CILIATE_CLI_DIR: cliDir, NODE_BIN: process.execPath };
    for (let i = 0; i < 2; i++) {
      // Twice: a reinstall replaces the first one in place.
      const r = spawnSync("sh", [join(deployDir, "scripts/install-cni.sh")], { env, encoding: "utf8" });
      expect(r.stderr).toBe("");
      expect(r.status).toBe(0);
    }
    expect(readdirSync(bin).sort()).toEqual(["ciliate-cni", "ciliate-cni.d"]);
    const list = JSON.parse(readFileSync(join(conf, "05-ciliate.conflist"), "utf8")) as { cniVersion: string; name: string; plugins: { type: string; socket: string }[] };
    expect(list.plugins).toEqual([{ type: "ciliate-cni", socket }]);
    const plugin = join(bin, list.plugins[0].type);
    expect(statSync(plugin).mode & 0o111).toBe(0o111);
    // The runtime's environment: no PATH to node, no repository around the copied bundle.
    const runtimeEnv = { CNI_PATH: bin };
    const version = spawnSync(plugin, [], { env: { ...runtimeEnv, CNI_COMMAND: "VERSION" }, encoding: "utf8", cwd: tmp });
    expect(version.status, version.stderr).toBe(0);
    expect(JSON.parse(version.stdout)).toEqual({ cniVersion: "1.0.0", supportedVersions: CNI_SUPPORTED_VERSIONS });
    const netconf = JSON.stringify({ ...list, ...list.plugins[0] });
    const add = spawnSync(plugin, [], { env: { ...runtimeEnv, CNI_COMMAND: "ADD", CNI_CONTAINERID: "c1", CNI_NETNS: "/var/run/netns/x", CNI_IFNAME: "eth0" }, input: netconf, encoding: "utf8", cwd: tmp });
    expect(add.status).toBe(1);
    expect(JSON.parse(add.stdout)).toMatchObject({ code: 11, msg: `cannot reach the ciliate agent at ${socket}` });
  });

  it("refuses to install without a built CLI, in one line", () => {
    const r = spawnSync("sh", [join(deployDir, "scripts/install-cni.sh")], { env: { PATH: process.env.PATH, CNI_BIN_DIR: join(tmp, "b2"), CNI_CONF_DIR: join(tmp, "c2"), CILIATE_CLI_DIR: join(tmp, "nowhere") }, encoding: "utf8" });
    expect(r.status).toBe(1);
    expect(r.stderr).toBe(`install-cni: ${join(tmp, "nowhere")}/ciliate.mjs not found: run \`npm run build\` or set CILIATE_CLI_DIR\n`);
    expect(existsSync(join(tmp, "b2"))).toBe(false);
  });
});

describe("deploy/scripts/node-pod-cidr.mjs", () => {
  async function run(answer: { status: number; body: unknown }, args: string[]) {
    const seen: { url?: string; headers?: IncomingHttpHeaders } = {};
    const server = createServer((req, res) => {
      seen.url = req.url;
      seen.headers = req.headers;
      res.writeHead(answer.status, { "content-type": "application/json" }).end(JSON.stringify(answer.body));
    });
    await new Promise<void>((r) => server.listen(0, "127.0.0.1", r));
    const sa = mkdtempSync(join(tmp, "sa-"));
    writeFileSync(join(sa, "token"), "t0ken\n");
    const env = { PATH: process.env.PATH, CILIATE_API_SERVER: `http://127.0.0.1:${(server.address() as AddressInfo).port}`, CILIATE_SA_DIR: sa };
    // Asynchronous: the server answers in this process.
    const { spawn } = await import("node:child_process");
    const child = spawn(process.execPath, [join(deployDir, "scripts/node-pod-cidr.mjs"), ...args], { env });
    let stdout = "";
    let stderr = "";
    child.stdout.on("data", (d) => (stdout += d));
    child.stderr.on("data", (d) => (stderr += d));
    const status = await new Promise<number | null>((r) => child.on("close", r));
    server.close();
    return { status, stdout, stderr, seen };
  }

  it("writes the node's spec.podCIDR, asking with the service account token", async () => {
    const out = join(tmp, "pod-cidr");
    const r = await run({ status: 200, body: { kind: "Node", metadata: { name: "node-1" }, spec: { podCIDR: "10.244.3.0/24" } } }, ["node-1", out]);
    expect(r.stderr).toBe("");
    expect(r.status).toBe(0);
    expect(readFileSync(out, "utf8")).toBe("10.244.3.0/24\n");
    expect(r.seen.url).toBe("/api/v1/nodes/node-1");
    expect(r.seen.headers?.authorization).toBe("Bearer t0ken");
  });

  it("fails in one line when the node has no pod CIDR or the API refuses", async () => {
    const none = await run({ status: 200, body: { kind: "Node", spec: {} } }, ["node-2"]);
    expect(none.status).toBe(1);
    expect(none.stderr).toMatch(/^node-pod-cidr: node node-2 has no spec\.podCIDR: .*\n$/);
    const forbidden = await run({ status: 403, body: { kind: "Status" } }, ["node-3"]);
    expect(forbidden.status).toBe(1);
    expect(forbidden.stderr).toBe("node-pod-cidr: GET /api/v1/nodes/node-3: HTTP 403 (the service account needs get on nodes)\n");
  });
});

describe("deploy/systemd/ciliate-agent.service", () => {
  it("passes `systemd-analyze verify` without a warning, as installed under /opt/ciliate", () => {
    const available = spawnSync("systemd-analyze", ["--version"], { stdio: "ignore" }).status === 0;
    if (skipUnless(available, "systemd-analyze (Debian package systemd)")) return;
    const unitDir = mkdtempSync(join(tmp, "unit-"));
    const envFile = join(unitDir, "agent.env");
    writeFileSync(envFile, readFileSync(join(deployDir, "systemd/ciliate-agent.env")));
    // The unit names /opt/ciliate and /etc/ciliate; point them at this checkout so verify can check the
    // executables exist.
    const unit = readFileSync(join(deployDir, "systemd/ciliate-agent.service"), "utf8").replaceAll("/etc/ciliate/agent.env", envFile).replaceAll("/opt/ciliate/", `${root}/`);
    expect(unit).not.toContain("/opt/ciliate/");
    const path = join(unitDir, "ciliate-agent.service");
    writeFileSync(path, unit);
    chmodSync(path, 0o644);
    const r = spawnSync("systemd-analyze", ["verify", "--man=no", path], { encoding: "utf8" });
    expect(r.stderr).toBe("");
    expect(r.status).toBe(0);
    // The same check with a misspelt directive fails, so the empty output above means something.
    const bad = join(unitDir, "bad.service");
    writeFileSync(bad, unit.replace("ProtectHome=yes", "ProtectHome=yess"));
    expect(spawnSync("systemd-analyze", ["verify", "--man=no", bad], { encoding: "utf8" }).stderr).toMatch(/protect home value/);
  });
});

describe("deploy/ etcd for kvstore mode", () => {
  type Container = { name: string; command: string[]; ports: { name: string; containerPort: number }[] };
  const etcdObjects = objects.filter((o) => o.file.startsWith("deploy/kubernetes/kvstore/"));
  const sts = etcdObjects.find((o) => o.obj.kind === "StatefulSet")!.obj as K8sObject & { spec: { serviceName: string; replicas: number; template: { spec: { hostNetwork: boolean; containers: Container[] } } } };
  const svc = etcdObjects.find((o) => o.obj.kind === "Service")!.obj as K8sObject & { spec: { clusterIP: string; ports: { name: string; port: number; targetPort: number }[] } };
  const cm = etcdObjects.find((o) => o.obj.kind === "ConfigMap")!.obj as K8sObject & { data: Record<string, string> };
  const flag = (c: Container, name: string) => c.command.find((a) => a.startsWith(`--${name}=`))?.slice(name.length + 3);

  it("the StatefulSet's members, peer names and ports agree with its headless Service and the agent's etcd configuration", () => {
    expect(sts.spec.serviceName).toBe(svc.metadata.name);
    expect(svc.spec.clusterIP).toBe("None");
    // In the host network: the agents reach it before any pod network exists.
    expect(sts.spec.template.spec.hostNetwork).toBe(true);
    const etcd = sts.spec.template.spec.containers[0];
    const port = (name: string) => etcd.ports.find((p) => p.name === name)!.containerPort;
    for (const p of svc.spec.ports) expect([p.port, p.targetPort]).toEqual([port(p.name), port(p.name)]);
    const members = Array.from({ length: sts.spec.replicas }, (_, i) => `${sts.metadata.name}-${i}`);
    const peer = (m: string) => `http://${m}.${svc.metadata.name}.${sts.metadata.namespace}.svc:${port("peer")}`;
    expect(flag(etcd, "initial-cluster")).toBe(members.map((m) => `${m}=${peer(m)}`).join(","));
    expect(flag(etcd, "initial-advertise-peer-urls")).toBe(peer("$(POD_NAME)"));
    expect(flag(etcd, "listen-client-urls")).toBe(`http://0.0.0.0:${port("client")}`);
    // The agent's configuration: endpoints on the client port, and flags the agent accepts with it.
    const file = join(tmp, "etcd.config");
    writeFileSync(file, cm.data["etcd.config"]);
    const args = cm.data["agent-flags"].split(" ");
    const opt = (name: string) => args[args.indexOf(name) + 1];
    expect(opt("--kvstore-opt")).toMatch(/^etcd\.config=\/etc\/ciliate\/etcd\/etcd\.config$/);
    const cfg = parseIdentityFlags({ identityAllocationMode: opt("--identity-allocation-mode"), kvstore: opt("--kvstore"), kvstoreOpt: [`etcd.config=${file}`] });
    expect(cfg.mode).toBe("kvstore");
    expect(cfg.etcd!.endpoints.length).toBe(sts.spec.replicas);
    for (const e of cfg.etcd!.endpoints) expect(new URL(e).port).toBe(String(port("client")));
  });

  it("systemd: ciliate-etcd.service passes `systemd-analyze verify`; etcd starts with ciliate-etcd.env and answers; the agent accepts etcd.config", async () => {
    const cfg = parseIdentityFlags({ identityAllocationMode: "kvstore", kvstore: "etcd", kvstoreOpt: [`etcd.config=${join(deployDir, "systemd/etcd.config")}`] });
    const env = Object.fromEntries(
      readFileSync(join(deployDir, "systemd/ciliate-etcd.env"), "utf8")
        .split("\n")
        .filter((l) => /^[A-Z_]+=/.test(l))
        .map((l) => [l.slice(0, l.indexOf("=")), l.slice(l.indexOf("=") + 1)]),
    );
    // The agent's file names the member's advertised client address.
    expect(cfg.etcd!.endpoints).toEqual(env.ETCD_ADVERTISE_CLIENT_URLS!.split(","));
    const available = spawnSync("systemd-analyze", ["--version"], { stdio: "ignore" }).status === 0;
    if (!skipUnless(available, "systemd-analyze (Debian package systemd)")) {
      const unitDir = mkdtempSync(join(tmp, "etcd-unit-"));
      const envFile = join(unitDir, "etcd.env");
      writeFileSync(envFile, readFileSync(join(deployDir, "systemd/ciliate-etcd.env")));
      const unit = readFileSync(join(deployDir, "systemd/ciliate-etcd.service"), "utf8").replaceAll("/etc/ciliate/etcd.env", envFile).replaceAll("/opt/ciliate/", `${root}/`);
      const path = join(unitDir, "ciliate-etcd.service");
      writeFileSync(path, unit);
      chmodSync(path, 0o644);
      const r = spawnSync("systemd-analyze", ["verify", "--man=no", path], { encoding: "utf8" });
      // verify wants ExecStart's binary; without Debian's etcd-server it names only that.
      const lines = r.stderr.split("\n").filter((l) => l && !(!hasEtcd() && /\/usr\/bin\/etcd/.test(l)));
      expect(lines).toEqual([]);
    }
    if (skipUnless(hasEtcd(), "etcd (Debian etcd-server)")) return;
    // The same variables with loopback addresses on free ports: etcd must take every one of them.
    const [client, peer] = [await freePort(), await freePort()];
    const local = Object.fromEntries(Object.entries(env).map(([k, v]) => [k, v.replace(/http:\/\/[0-9.]+:2379/g, `http://127.0.0.1:${client}`).replace(/http:\/\/[0-9.]+:2380/g, `http://127.0.0.1:${peer}`)]));
    local.ETCD_DATA_DIR = mkdtempSync(join(tmp, "etcd-data-"));
    const { spawn } = await import("node:child_process");
    const etcd = spawn("etcd", [], { env: { PATH: process.env.PATH, ...local } });
    let stderr = "";
    etcd.stderr.on("data", (d) => (stderr += d));
    try {
      const deadline = Date.now() + 30_000;
      let healthy = false;
      while (!healthy && Date.now() < deadline && etcd.exitCode === null) {
        healthy = await fetch(`http://127.0.0.1:${client}/health`).then((r) => r.ok, () => false);
        if (!healthy) await new Promise((r) => setTimeout(r, 200));
      }
      expect(healthy, stderr).toBe(true);
      expect(stderr).not.toMatch(/unrecognized environment variable/);
    } finally {
      etcd.kill("SIGKILL");
    }
  }, 60_000);
});
