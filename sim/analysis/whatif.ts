/*
 * The effect of a change — the analysis behind `ciliate whatif`. Given the current state and the edited
 * one (built with the addresses of the first pinned, so an edit never renumbers the cluster), it lists
 * every (src pod, dst pod, port, protocol) whose reachability changes (pods present in both versions) and
 * every Traffic flow whose verdict or backend changes, each with the explanation before and after; a flow
 * that exists in only one version (its Traffic document or one of its pods added or deleted) is reported as
 * added or removed.
 *
 * Only the pairs that can change are probed. A probe's verdict is decided by the source's egress entries,
 * the destination's ingress entries and the two identities (sim/analysis/reach.ts Halves); when the
 * change touches only policies' entries, a pair of pods whose entry lists are all unchanged keeps its
 * verdict, so only pairs with an endpoint whose lists changed are run, in both versions. Any other edit (pods, services,
 * nodes, config) changes what a class does not capture, and every pair is compared.
 */
import { allocationOf, POLICY_KINDS as CLUSTER_POLICY_KINDS, type BuildOptions, type FlowProtocol, type FlowSpec, type SimPod } from "../../node/cluster.ts";
import { SimError } from "../../node/errors.ts";
import { isIpv6 } from "../../host/ip.ts";
import { Diagnostics, INIT_ENDPOINT, type CompiledPolicy, type EndpointPolicy, type ManifestObject, type MapStateEntry, type Provenance } from "../../policy/index.ts";
import { loadFrom, type Loaded } from "../load.ts";
import { IncrementalClusterPolicy, jsonEqual } from "../policy.ts";
import { objectKey } from "../manifests.ts";
import type { FlowResult, Simulation } from "../simulator.ts";
import type { ReasonMemo } from "../probes.ts";
import { changeProbes, probeSourcePort, type Probe } from "./probes.ts";
import { Halves, knownHalves, reachProber, verdictCode, type KnownHalves, type Verdict } from "./reach.ts";

export interface PairChange {
  from: string;
  to: string;
  port: number;
  protocol: FlowProtocol;
  before: "allowed" | "denied";
  after: "allowed" | "denied";
  reasonBefore: string;
  reasonAfter: string;
}

export type FlowState = "allowed" | "denied" | "absent";

export interface FlowChange {
  name: string;
  /** "absent": the flow does not exist in that version (its document or one of its endpoints is gone). */
  before: FlowState;
  after: FlowState;
  backendBefore: string | null;
  backendAfter: string | null;
  reasonBefore: string;
  reasonAfter: string;
}

export interface WhatifResult {
  pairs: PairChange[];
  flows: FlowChange[];
  probes: Probe[];
}

const CLUSTER_SCOPED = new Set(["Namespace", "Node", "CiliumClusterwideNetworkPolicy"]);

/**
 * Applies `applied` objects (replacing the same kind/namespace/name, or adding) and `deletes` keys
 * (KIND/NAMESPACE/NAME, or KIND/NAME for cluster-scoped kinds) to the current objects. Throws SimError
 * BAD_OPTION on a malformed key and UNKNOWN_OBJECT on a key that names nothing.
 */
export function editObjects(current: ManifestObject[], applied: ManifestObject[], deletes: string[]): ManifestObject[] {
  const keyOf = (o: ManifestObject) => objectKey({ kind: o.kind, metadata: { name: o.metadata.name, namespace: CLUSTER_SCOPED.has(o.kind) ? "" : (o.metadata.namespace ?? "default") } });
  const out = new Map<string, ManifestObject>();
  for (const o of current) out.set(keyOf(o), o);
  for (const d of deletes) {
    const parts = d.split("/");
    let key: string;
    if (parts.length === 3 && parts.every(Boolean)) key = `${parts[0]}/${parts[1]}/${parts[2]}`;
    else if (parts.length === 2 && parts.every(Boolean)) key = `${parts[0]}/${CLUSTER_SCOPED.has(parts[0]!) ? "" : "default"}/${parts[1]}`;
    else throw new SimError("BAD_OPTION", `malformed --delete ${JSON.stringify(d)}`, "write KIND/NAMESPACE/NAME, or KIND/NAME for cluster-scoped kinds");
    if (!out.delete(key)) throw new SimError("UNKNOWN_OBJECT", `--delete ${d}: no such object in the current manifests`);
  }
  for (const o of applied) out.set(keyOf(o), o);
  return [...out.values()];
}

function backendText(r: FlowResult): string | null {
  return r.backend ? `${r.backend.pod ?? r.backend.ip}:${r.backend.port}` : null;
}

/** The objects other than policies, as sorted text (two versions differ only in policies when these are equal). */
function nonPolicyText(objs: ManifestObject[]): string[] {
  return objs
    .filter((o) => !CLUSTER_POLICY_KINDS.has(o.kind))
    .map((o) => JSON.stringify([o.kind, o.metadata.namespace ?? "", o.metadata.name, o.raw ?? null]))
    .sort();
}

/** True when the two versions differ only in policy objects (`x` may be the first version's nonPolicyText). */
function onlyPoliciesChanged(a: ManifestObject[] | string[], b: ManifestObject[]): boolean {
  const x = typeof a[0] === "string" ? (a as string[]) : nonPolicyText(a as ManifestObject[]);
  const y = nonPolicyText(b);
  return x.length === y.length && x.every((v, i) => v === y[i]);
}

/** The namespace an object lives in, as buildCluster implies it (undefined for cluster-scoped kinds). */
function impliedNamespace(o: ManifestObject): string | undefined {
  if (o.kind === "Namespace") return o.metadata.name;
  return o.kind === "Node" || o.kind === "CiliumClusterwideNetworkPolicy" ? undefined : (o.metadata.namespace ?? "default");
}

/** The verdicts one policy state gives the changed pods' rows, and their columns over the unchanged
 * sources (by source class; per pod for the sources probed per pod). */
interface Side {
  /** Codes as reachProber's rowCodes: 1 allowed, 2 denied, 3 not applicable. */
  rows: Int8Array[];
  cols: { byClass: Int8Array; single: Map<number, Verdict> }[];
}

/** Each pod's source class — (egress list, identity and family) in `h` — or -1 for a host-networked pod. */
function sourceClasses(pods: SimPod[], h: Halves): { of: Int32Array; count: number } {
  const ids = new Map<number, number>();
  const of = new Int32Array(pods.length);
  pods.forEach((p, i) => {
    if (p.hostNetwork) return void (of[i] = -1);
    const k = h.eg[i]! * 2 ** 24 + h.idc[i]!;
    let c = ids.get(k);
    if (c === undefined) ids.set(k, (c = ids.size));
    of[i] = c;
  });
  return { of, count: ids.size };
}

/** One changed pair, before its explanations are known. */
interface Candidate {
  probe: Probe;
  s: SimPod;
  d: SimPod;
}

/** Policy entries as text, cookies and proxy ports included (the map's contents). */
function entriesListText(entries: MapStateEntry[]): string {
  return entries.map((e) => `${e.key.direction}/${e.key.identity}/${e.key.protocol}/${e.key.port}/${e.key.portPrefix}/${e.deny ? 1 : 0}/${e.proxyPort}/${e.proxyPortPriority}/${e.cookie}`).join(",");
}

/** The policy entries of an endpoint as text (entriesListText; empty without an endpoint). */
function entriesText(p: CompiledPolicy, key: string): string {
  const ep = p.endpoints.get(key);
  return ep ? entriesListText(ep.entries) : "";
}

/**
 * True when the two compiled policies differ only in pod endpoints' policy entries: same pod identities,
 * CIDR identities, proxy listeners, host endpoints' entries and reserved:init policy. Then the after state is the before state with
 * some endpoints' policy-map entries rewritten.
 */
function onlyEntriesDiffer(a: CompiledPolicy, b: CompiledPolicy, pods: SimPod[], sameIds?: WeakSet<object>): boolean {
  // An identity table once found equal stays equal (a compiler keeps its table while the cluster is kept).
  if (!sameIds?.has(b.identities.podIdentity)) {
    for (const p of pods) if (a.identities.podIdentity.get(p.key) !== b.identities.podIdentity.get(p.key)) return false;
    sameIds?.add(b.identities.podIdentity);
  }
  const proxies = (x: CompiledPolicy) => JSON.stringify([...x.proxies.entries()].sort((m, n) => m[0] - n[0]));
  // Host policies (nodeSelector) decide the pairs with a host-networked pod at an end, which the delta
  // does not track per endpoint: an edit that changes a host endpoint's entries is compared whole.
  if (a.hostEndpoints.size !== b.hostEndpoints.size) return false;
  for (const [name, ep] of a.hostEndpoints) {
    const other = b.hostEndpoints.get(name);
    if (!other || (other.entries !== ep.entries && entriesListText(other.entries) !== entriesListText(ep.entries))) return false;
  }
  return JSON.stringify(a.cidrIdentities) === JSON.stringify(b.cidrIdentities) && proxies(a) === proxies(b) && entriesText(a, INIT_ENDPOINT) === entriesText(b, INIT_ENDPOINT);
}

/** A provenance set as text (compiled provenance lists are sorted, so equal sets have equal text). */
function provenanceText(provs: Provenance[]): string {
  let t = "";
  for (const p of provs) t += `${p.kind}|${p.namespace}|${p.name}|${p.ruleIndex}|${p.element}|${p.peer}\n`;
  return t;
}

/**
 * Compiled policies of a session's edits in the before state's cookie numbering. A compile numbers the
 * distinct provenance sets over the whole cluster in endpoint order (policy/compile.ts), so an edit that
 * adds a set early renumbers the entries of every endpoint after it, although their rules are the same.
 * Cookies only name rules: the datapath's verdict does not depend on their values, and explanations read
 * them through the policy's provenance map. So the comparison renumbers the after state as the agent does
 * (stable by provenance): each set keeps the before state's number, a set new to the session gets a number
 * of its own, and an endpoint whose entries are then the before state's gets the before state's objects —
 * which every per-list cache of the session (verdict halves, encoded entries, explanation runs) knows, and
 * which need no rewrite for an explanation. Results are kept by the compiled objects, which the session's
 * compiler hands out again while they stay the same (compiled objects are not changed once handed out).
 */
class Renumbering {
  /** Provenance set text → cookie: the before state's, then the sets met since. */
  private readonly bySet = new Map<string, number>();
  private readonly byList = new WeakMap<Provenance[], number>();
  private next = 1;
  /** cookie → provenance, for every number handed out (the before state's map, extended). */
  private readonly provenance: Map<number, Provenance[]>;
  private readonly lists = new WeakMap<MapStateEntry[], MapStateEntry[]>();
  private readonly endpoints = new WeakMap<EndpointPolicy, EndpointPolicy>();

  constructor(private readonly before: CompiledPolicy) {
    this.provenance = new Map(before.provenance);
    for (const [c, provs] of before.provenance) {
      this.bySet.set(provenanceText(provs), c);
      this.byList.set(provs, c);
      if (c >= this.next) this.next = c + 1;
    }
  }

  /** Provenance sets numbered. */
  get size(): number {
    return this.bySet.size;
  }

  /** `p` in the before state's numbering: the same compiled policy but for cookies and their provenance map. */
  policy(p: CompiledPolicy): CompiledPolicy {
    const endpoints = new Map<string, EndpointPolicy>();
    for (const [name, ep] of p.endpoints) endpoints.set(name, this.endpoint(ep, this.before.endpoints.get(name)));
    const hostEndpoints = new Map<string, EndpointPolicy>();
    for (const [name, ep] of p.hostEndpoints) hostEndpoints.set(name, this.endpoint(ep, this.before.hostEndpoints.get(name)));
    return { ...p, endpoints, hostEndpoints, provenance: this.provenance };
  }

  private cookieOf(provs: Provenance[]): number {
    let c = this.byList.get(provs);
    if (c === undefined) {
      const t = provenanceText(provs);
      c = this.bySet.get(t);
      if (c === undefined) {
        this.bySet.set(t, (c = this.next++));
        this.provenance.set(c, provs);
      }
      this.byList.set(provs, c);
    }
    return c;
  }

  /** `ep` renumbered; the before state's object (`was`) when that is what it becomes. */
  private endpoint(ep: EndpointPolicy, was: EndpointPolicy | undefined): EndpointPolicy {
    let out = this.endpoints.get(ep);
    if (out) return out;
    let entries = this.lists.get(ep.entries);
    if (!entries) {
      entries = was && this.equalRenumbered(was.entries, ep.entries) ? was.entries : this.renumbered(ep.entries);
      this.lists.set(ep.entries, entries);
    }
    if (was && was.entries === entries && was.endpoint === ep.endpoint && was.identity === ep.identity && was.enforced.ingress === ep.enforced.ingress && was.enforced.egress === ep.enforced.egress) out = was;
    else out = entries === ep.entries ? ep : { ...ep, entries };
    this.endpoints.set(ep, out);
    return out;
  }

  /** True when `b` renumbered is `a` (provenance follows from the cookie). */
  private equalRenumbered(a: MapStateEntry[], b: MapStateEntry[]): boolean {
    if (a === b) return true;
    if (a.length !== b.length) return false;
    for (let i = 0; i < a.length; i++) {
      const x = a[i]!;
      const y = b[i]!;
      const k = x.key;
      const l = y.key;
      if (k.direction !== l.direction || k.identity !== l.identity || k.protocol !== l.protocol || k.port !== l.port || k.portPrefix !== l.portPrefix) return false;
      if (x.deny !== y.deny || x.proxyPort !== y.proxyPort || x.proxyPortPriority !== y.proxyPortPriority || x.cookie !== this.cookieOf(y.provenance)) return false;
    }
    return true;
  }

  private renumbered(entries: MapStateEntry[]): MapStateEntry[] {
    let same = true;
    for (const e of entries) if (this.cookieOf(e.provenance) !== e.cookie) same = false;
    return same ? entries : entries.map((e) => ({ ...e, cookie: this.cookieOf(e.provenance) }));
  }
}

/**
 * whatif against one loaded "before" state kept in one simulation, for answers in milliseconds when the
 * same cluster is asked about many edits (an editor loop, a pre-merge check of several changes).
 *
 * For an edit that changes only policies, and only endpoints' policy entries, `compare` works on the delta:
 * the endpoints whose entries change, and from them only the (source, destination, probe) pairs that have
 * one of them at an end. Their verdicts before come from the session's simulation (cached across calls);
 * for the verdicts after, the changed endpoints' policy-map entries are rewritten in place to the after
 * state (conntrack emptied, so every probe is a new connection as in a fresh simulation), and written back
 * afterwards. A pair whose two endpoints keep their entries and identities keeps its verdict (the datapath
 * decides a probe from those alone), so the answer equals comparing every pair of two full simulations.
 * Traffic flows are stateful (conntrack, the FQDN cache, the clock), so they are played in two fresh
 * simulations as before. Any other edit falls back to two full simulations.
 */
export class WhatifSession {
  private readonly pods: SimPod[];
  /** Verdict probers of the before state, by probe, and what they share. */
  private readonly before = new Map<string, ReturnType<typeof reachProber>>();
  private halvesBefore?: Halves;
  /** Per probe, the half verdicts the datapath gave (shared by the before prober and every after prober). */
  private readonly known = new Map<string, KnownHalves>();
  /** Per pod, its source class in the before state (egress list, identity and family); -1 host-networked. */
  private sourceClass?: { of: Int32Array; count: number };
  /** Pod identity tables of edits found to give every pod its before identity. */
  private readonly sameIdentities = new WeakSet<object>();
  /** Per pod: whether its address is IPv6. */
  private v6?: boolean[];
  private readonly nonPolicy: string[];
  private readonly entries = new Map<string, string>();
  /** The compiler every edit of this session is compiled with (see load). */
  private readonly policies = new IncrementalClusterPolicy();
  /** The before state's objects other than policies, in order, and the namespaces they imply. */
  private readonly nonPolicyObjects: ManifestObject[];
  private readonly nonPolicyNamespaces = new Set<string>();
  private readonly namespaces: string;
  /** Versions built by load on the before state's cluster: they differ from it in policies alone. */
  private readonly policyOnly = new WeakSet<Loaded>();
  /** Edits' compiled policies in the before state's cookie numbering. */
  private renumbering: Renumbering;
  /** The explanations' numbering of entry lists: by text, and by list object (see compare). */
  private listIds = new Map<string, number>();
  private listNumbers = new WeakMap<MapStateEntry[], number>();

  private constructor(
    readonly loaded: Loaded,
    private readonly sim: Simulation,
    private readonly simulate: (l: Loaded) => Promise<Simulation>,
    private readonly build: BuildOptions,
    strict: boolean,
  ) {
    this.pods = [...loaded.cluster.pods].sort((x, y) => (x.key < y.key ? -1 : 1));
    this.nonPolicy = nonPolicyText(loaded.objects);
    this.nonPolicyObjects = loaded.objects.filter((o) => !CLUSTER_POLICY_KINDS.has(o.kind));
    for (const o of this.nonPolicyObjects) {
      const ns = impliedNamespace(o);
      if (ns !== undefined) this.nonPolicyNamespaces.add(ns);
    }
    this.namespaces = loaded.cluster.namespaces.map((n) => n.name).join("/");
    // The before state once through the session's compiler (its diagnostics were reported when it was
    // loaded): later versions recompute only what their changed policies touch.
    // Its result renumbered once (see Renumbering): the provenance sets and lists an edit shares with the
    // before state are then known from the first edit on.
    this.renumbering = new Renumbering(loaded.policy);
    this.renumbering.policy(this.policies.compile(loaded.cluster, new Diagnostics(strict, () => {})));
  }

  /**
   * The edited version `objects` (the session's state with some objects applied or deleted, see
   * editObjects), as loadFrom would build it with the session's addresses pinned. When the objects other
   * than policies are those of the session's state (same contents, same order) and imply the same
   * namespaces, the session's cluster is reused and only the policies are compiled, incrementally: each
   * changed policy translated, the selectors and identities it touches recomputed. Any other edit is built
   * from scratch. Diagnostics and errors as loadFrom's.
   */
  load(objects: ManifestObject[], diag?: Diagnostics): Loaded {
    const before = this.loaded;
    const policies = objects.filter((o) => CLUSTER_POLICY_KINDS.has(o.kind));
    const same = objects.length - policies.length === this.nonPolicyObjects.length && this.sameNonPolicy(objects) && this.sameNamespaces(policies);
    if (!same) return loadFrom(objects, { ...this.build, pinned: allocationOf(before.cluster) }, diag);
    const cluster = { ...before.cluster, policies, objects };
    const l: Loaded = { objects, cluster, policy: this.policies.compile(cluster, diag) };
    this.policyOnly.add(l);
    return l;
  }

  private sameNonPolicy(objects: ManifestObject[]): boolean {
    let i = 0;
    for (const o of objects) {
      if (CLUSTER_POLICY_KINDS.has(o.kind)) continue;
      const b = this.nonPolicyObjects[i++]!;
      if (o !== b && !(o.kind === b.kind && o.apiVersion === b.apiVersion && jsonEqual(o.metadata, b.metadata) && jsonEqual(o.raw, b.raw))) return false;
    }
    return true;
  }

  /** True when the policies imply no namespace the before state lacks and keep every one it has. */
  private sameNamespaces(policies: ManifestObject[]): boolean {
    const all = new Set(this.nonPolicyNamespaces);
    for (const o of policies) {
      const ns = impliedNamespace(o);
      if (ns !== undefined) all.add(ns);
    }
    return [...all].sort().join("/") === this.namespaces;
  }


  /** True when `after` has the entries of the before state for pod `key`. */
  private sameEntries(after: CompiledPolicy, key: string): boolean {
    const a = this.loaded.policy.endpoints.get(key);
    const b = after.endpoints.get(key);
    if (a === b) return true;
    let t = this.entries.get(key);
    if (t === undefined) this.entries.set(key, (t = entriesText(this.loaded.policy, key)));
    return t === entriesText(after, key);
  }

  /**
   * `build`: the options `before` was built with; `strict`: whether it was loaded with a strict Diagnostics;
   * `warm`: for a session that will answer many edits (an editor loop, a check service), rehearse one edit
   * while opening (see warm), so that the first answer costs what the later ones do.
   */
  static async open(before: Loaded, simulate: (l: Loaded) => Promise<Simulation>, opts: { build?: BuildOptions; strict?: boolean; warm?: boolean } = {}): Promise<WhatifSession> {
    const { pinned: _, ...build } = opts.build ?? {};
    const session = new WhatifSession(before, await simulate(before), simulate, build, opts.strict ?? false);
    // What every policy-only comparison needs of the before state, prepared with it.
    session.sourceClass = sourceClasses(session.pods, (session.halvesBefore = new Halves(session.sim, session.pods)));
    if (opts.warm) await session.warm();
    return session;
  }

  /**
   * Rehearses an edit, its answer thrown away: the before state's objects loaded again as an editor sends
   * them (copies, compiled by the session's compiler), then a comparison with a made-up after state in
   * which one pod has another pod's entry lists — every step of a real policy-only comparison (probes,
   * the before state's verdicts of the policies' ports, entries rewritten and restored, explanations). The
   * first comparison of a process otherwise pays for V8 compiling that code and for the before state's
   * verdicts; both stay with the session. The made-up state only holds entry lists of the before state, so
   * the verdicts learned are the datapath's for those lists; nothing of it is kept as an answer.
   */
  private async warm(): Promise<void> {
    const before = this.loaded;
    this.load(before.objects.map((o) => ({ ...o, metadata: structuredClone(o.metadata), raw: structuredClone(o.raw) })));
    const eps = before.policy.endpoints;
    const withEp = this.pods.filter((p) => !p.hostNetwork && eps.has(p.key));
    const a = withEp[0];
    const b = a && withEp.find((p) => isIpv6(p.ip) === isIpv6(a.ip) && eps.get(p.key)!.entries !== eps.get(a.key)!.entries);
    if (!a || !b) return;
    const endpoints = new Map(eps);
    endpoints.set(a.key, { ...eps.get(a.key)!, entries: eps.get(b.key)!.entries });
    const rehearsal: Loaded = { ...before, policy: { ...before.policy, endpoints } };
    this.policyOnly.add(rehearsal);
    await this.compare(rehearsal, changeProbes(before));
  }

  close(): void {
    this.sim.close();
  }

  /** The effect of going from the session's state to `after` (built with the session's addresses pinned). */
  async compare(after: Loaded, probesIn: Probe[] = []): Promise<WhatifResult> {
    const before = this.loaded;
    const probes = probesIn.length ? probesIn : changeProbes(before, after);
    const policyOnly = this.policyOnly.has(after) || onlyPoliciesChanged(this.nonPolicy.length ? this.nonPolicy : before.objects, after.objects);
    if (!policyOnly) return computeFull(before, after, this.simulate, probes);
    if (this.renumbering.size > 2 * before.policy.provenance.size + 4096) {
      // A long session that met many provenance sets starts its numbering (and what depends on it) again.
      this.renumbering = new Renumbering(before.policy);
      this.listIds = new Map();
      this.listNumbers = new WeakMap();
    }
    // The after state in the before state's cookie numbering: cookies only name rules, and the answer
    // reads them only through the policy's provenance (see Renumbering).
    const afterPolicy = this.renumbering.policy(after.policy);
    if (!onlyEntriesDiffer(before.policy, afterPolicy, this.pods, this.sameIdentities)) return computeFull(before, after, this.simulate, probes);
    const sim = this.sim;
    const n = this.pods.length;
    // The before state's halves (prepared when the session opened) and the after state's, numbered in the
    // same tables: a list means the same entries in both, and a half the datapath decided in one state is
    // known in the other.
    const halvesBefore = (this.halvesBefore ??= new Halves(sim, this.pods));
    const halvesAfter = halvesBefore.derive(afterPolicy, this.pods);
    // Endpoints whose verdict-relevant entries change (an egress or ingress list, cookies and proxy port
    // numbers aside): only pairs with one of these at an end are probed, with these endpoints' entries
    // rewritten to the after state. Cookies only name rules, so the other ends of the pairs that change are
    // rewritten for the explanations alone.
    const changedIdx: number[] = [];
    const isChanged = new Uint8Array(n);
    for (let i = 0; i < n; i++)
      if (halvesBefore.eg[i] !== halvesAfter.eg[i] || halvesBefore.ing[i] !== halvesAfter.ing[i]) {
        changedIdx.push(i);
        isChanged[i] = 1;
      }
    const candidates: Candidate[] = [];
    const pairs: PairChange[] = [];
    const flows = before.cluster.traffic.length || after.cluster.traffic.length ? await playFlows(before, after, this.simulate) : [];
    if (!changedIdx.length) return { pairs, flows, probes };
    const knownOf = (pr: Probe) => {
      const k = `${pr.port}/${pr.protocol}`;
      let v = this.known.get(k);
      if (!v) this.known.set(k, (v = knownHalves()));
      return v;
    };
    const verdictsA = (pr: Probe) => {
      const k = `${pr.port}/${pr.protocol}`;
      let v = this.before.get(k);
      if (!v) this.before.set(k, (v = reachProber(sim, this.pods, pr, { halves: halvesBefore, known: knownOf(pr) })));
      return v;
    };
    // A changed pod's column over the unchanged sources: an unchanged source's verdict towards it depends
    // only on the source's egress list and (identity, family) — the same in both states — so it is found
    // once per such source class, from one unchanged member; and on the column only through its ingress
    // lists and (identity, family), so changed pods alike in these share one column. Host-networked
    // sources and pairs across families are probed whole, per pod.
    const sc = (this.sourceClass ??= sourceClasses(this.pods, halvesBefore));
    const reps = new Int32Array(sc.count).fill(-1);
    for (let i = 0; i < n; i++) if (!isChanged[i] && sc.of[i]! >= 0 && reps[sc.of[i]!]! < 0) reps[sc.of[i]!] = i;
    const v6 = (this.v6 ??= this.pods.map((p) => p.ip.includes(":")));
    // Unchanged sources probed per pod: host-networked ones, and all sources when a changed pod is
    // host-networked or of the other family (pairs across families are probed whole).
    const perPod: number[] = [];
    const hostChanged = changedIdx.some((j) => this.pods[j]!.hostNetwork);
    const families = new Set(changedIdx.map((j) => v6[j]));
    for (let i = 0; i < n; i++) if (!isChanged[i] && (sc.of[i]! < 0 || hostChanged || families.has(!v6[i]))) perPod.push(i);
    const colGroup = new Map<string, number>();
    const groupOf = changedIdx.map((j) => {
      const k = `${halvesBefore.ing[j]}|${halvesAfter.ing[j]}|${halvesBefore.idc[j]}`;
      let g = colGroup.get(k);
      if (g === undefined) colGroup.set(k, (g = colGroup.size));
      return g;
    });
    const side = (v: ReturnType<typeof reachProber>): Side => {
      const byGroup: Int8Array[] = [];
      return {
        rows: changedIdx.map((i) => v.rowCodes(i)),
        cols: changedIdx.map((j, k) => {
          let byClass = byGroup[groupOf[k]!];
          if (!byClass) {
            byGroup[groupOf[k]!] = byClass = new Int8Array(sc.count);
            for (let c = 0; c < sc.count; c++) if (reps[c]! >= 0 && v6[reps[c]!] === v6[j]) byClass[c] = verdictCode(v.at(reps[c]!, j));
          }
          return { byClass, single: new Map(perPod.map((i) => [i, v.at(i, j)])) };
        }),
      };
    };
    const afterBy = new Map<Probe, Side>();
    let rewrite = changedIdx.map((i) => this.pods[i]!.key);
    sim.forgetConnections();
    sim.replaceEndpointPolicy(afterPolicy, rewrite);
    try {
      // After: the rewritten state. Only pairs with a changed endpoint at an end can differ: the rows of
      // the changed sources, and the changed columns of the other rows.
      for (const pr of probes) afterBy.set(pr, side(reachProber(sim, this.pods, pr, { halves: halvesAfter, known: knownOf(pr) })));
    } finally {
      sim.forgetConnections();
      sim.replaceEndpointPolicy(before.policy, rewrite);
    }
    // Before: the session's state; keep the pairs whose verdict differs, in (probe, source, destination) order.
    // An unchanged source probed per pod is compared column by column, any other through its class's
    // differing columns.
    const isPerPod = new Uint8Array(n);
    for (const i of perPod) isPerPod[i] = 1;
    for (const pr of probes) {
      const b = afterBy.get(pr)!;
      const a = side(verdictsA(pr));
      const differing: number[][] = Array.from({ length: sc.count }, () => []);
      for (let k = 0; k < changedIdx.length; k++) {
        const ca = a.cols[k]!.byClass;
        const cb = b.cols[k]!.byClass;
        for (let c = 0; c < sc.count; c++) if (ca[c] !== cb[c]) differing[c]!.push(k);
      }
      let r = 0;
      for (let i = 0; i < n; i++) {
        if (isChanged[i]) {
          const ra = a.rows[r]!;
          const rb = b.rows[r++]!;
          for (let j = 0; j < n; j++) if (ra[j] !== rb[j]) candidates.push({ probe: pr, s: this.pods[i]!, d: this.pods[j]! });
        } else if (isPerPod[i]) {
          for (let k = 0; k < changedIdx.length; k++) if (a.cols[k]!.single.get(i) !== b.cols[k]!.single.get(i)) candidates.push({ probe: pr, s: this.pods[i]!, d: this.pods[changedIdx[k]!]! });
        } else for (const k of differing[sc.of[i]!]!) candidates.push({ probe: pr, s: this.pods[i]!, d: this.pods[changedIdx[k]!]! });
      }
    }
    if (!candidates.length) return { pairs, flows, probes };
    // Explanations: a fresh source port so they start new connections too, after then before. The datapath's
    // result for a pod pair is decided by the source's entries, the destination's entries (cookies and proxy
    // ports included), the two identities and families, whether the pods share a node and whether it is one
    // pod; pairs alike in all of these share one run, and each gets its own sentence from it. Host-networked
    // pods are run every time.
    // Entry lists numbered by their text (cookies and proxy ports included) in tables the session keeps:
    // compiled lists are not changed once handed out, and an edit hands out the before state's lists for
    // the endpoints it leaves unchanged (see the constructor), so most are numbered once per session.
    if (this.listIds.size > 4 * n + 1024) {
      this.listIds = new Map();
      this.listNumbers = new WeakMap();
    }
    const { listIds, listNumbers } = this;
    const explainer = (policy: CompiledPolicy) => {
      const runs = new Map<string, ReturnType<Simulation["probe"]>>();
      // Pairs that share a run share each direction's reason too (per endpoint: it names the endpoint).
      const reasons: ReasonMemo = new WeakMap();
      const listOf = (key: string) => {
        const ep = policy.endpoints.get(key);
        if (!ep) return -1;
        let l = listNumbers.get(ep.entries);
        if (l === undefined) {
          const t = entriesListText(ep.entries);
          l = listIds.get(t);
          if (l === undefined) listIds.set(t, (l = listIds.size));
          listNumbers.set(ep.entries, l);
        }
        return l;
      };
      return (c: Candidate) => {
        const k = c.s.hostNetwork || c.d.hostNetwork ? undefined : `${c.probe.port}/${c.probe.protocol}|${listOf(c.s.key)}|${sim.identityOfPod(c.s)}|${c.s.ip.includes(":") ? 6 : 4}|${listOf(c.d.key)}|${sim.identityOfPod(c.d)}|${c.d.ip.includes(":") ? 6 : 4}|${c.s.node === c.d.node ? 1 : 0}|${c.s === c.d ? 1 : 0}`;
        let r = k === undefined ? undefined : runs.get(k);
        if (!r) {
          r = sim.probe(c.s, c.d, c.probe.port, c.probe.protocol, probeSourcePort(c.probe.port) + 2);
          if (k !== undefined) runs.set(k, r);
        }
        return { allowed: r.allowed, reason: sim.probeReason(c.s, c.d, r, reasons) };
      };
    };
    const ends = new Set(candidates.flatMap((c) => [c.s.key, c.d.key]));
    for (const i of changedIdx) ends.delete(this.pods[i]!.key);
    rewrite = [...rewrite, ...[...ends].filter((k) => !this.sameEntries(afterPolicy, k))];
    sim.forgetConnections();
    sim.replaceEndpointPolicy(afterPolicy, rewrite);
    let afterX: { allowed: boolean; reason: string }[];
    try {
      afterX = candidates.map(explainer(afterPolicy));
    } finally {
      sim.forgetConnections();
      sim.replaceEndpointPolicy(before.policy, rewrite);
    }
    const beforeX = candidates.map(explainer(before.policy));
    sim.forgetConnections();
    candidates.forEach((c, k) => {
      const a = beforeX[k]!;
      const b = afterX[k]!;
      pairs.push({ from: c.s.key, to: c.d.key, port: c.probe.port, protocol: c.probe.protocol, before: a.allowed ? "allowed" : "denied", after: b.allowed ? "allowed" : "denied", reasonBefore: a.reason, reasonAfter: b.reason });
    });
    return { pairs, flows, probes };
  }
}

/**
 * Compares two versions. `simulate` starts a simulation of one version (the caller chooses the engine);
 * every simulation is closed before this returns. `full` compares every pair of two full simulations (the
 * reference the delta is checked against); otherwise a WhatifSession works on the delta.
 */
export async function computeWhatif(before: Loaded, after: Loaded, simulate: (l: Loaded) => Promise<Simulation>, probesIn: Probe[] = [], opts: { full?: boolean } = {}): Promise<WhatifResult> {
  if (opts.full) return computeFull(before, after, simulate, probesIn.length ? probesIn : changeProbes(before, after));
  const session = await WhatifSession.open(before, simulate);
  try {
    return await session.compare(after, probesIn);
  } finally {
    session.close();
  }
}

/** Every Traffic flow of either version, played in two fresh simulations. */
async function playFlows(before: Loaded, after: Loaded, simulate: (l: Loaded) => Promise<Simulation>): Promise<FlowChange[]> {
  const simA = await simulate(before);
  try {
    const simB = await simulate(after);
    try {
      return compareFlows(simA, simB, before.cluster.traffic, after.cluster.traffic);
    } finally {
      simB.close();
    }
  } finally {
    simA.close();
  }
}

/** Two full simulations, every pair of pods present in both compared (verdicts deduplicated as reach does). */
async function computeFull(before: Loaded, after: Loaded, simulate: (l: Loaded) => Promise<Simulation>, probes: Probe[]): Promise<WhatifResult> {
  const simA = await simulate(before);
  let simB: Simulation | undefined;
  try {
    simB = await simulate(after);
    const podB = new Map(after.cluster.pods.map((p) => [p.key, p]));
    const pods = before.cluster.pods.filter((p) => podB.has(p.key)).sort((x, y) => (x.key < y.key ? -1 : 1));
    const podsB = pods.map((p) => podB.get(p.key)!);
    const pairs: PairChange[] = [];
    for (const pr of probes) {
      const sport = probeSourcePort(pr.port);
      const va = reachProber(simA, pods, pr);
      const vb = reachProber(simB, podsB, pr);
      // A fresh source port for the explaining probes, so they start new connections too.
      const explainPort = sport + 2;
      for (let i = 0; i < pods.length; i++) {
        const ra = va.row(i);
        const rb = vb.row(i);
        for (let j = 0; j < pods.length; j++) {
          if (ra[j] === rb[j]) continue;
          const [s, d, s2, d2] = [pods[i]!, pods[j]!, podsB[i]!, podsB[j]!];
          const a = simA.probe(s, d, pr.port, pr.protocol, explainPort);
          const b = simB.probe(s2, d2, pr.port, pr.protocol, explainPort);
          pairs.push({
            from: s.key,
            to: d.key,
            port: pr.port,
            protocol: pr.protocol,
            before: a.allowed ? "allowed" : "denied",
            after: b.allowed ? "allowed" : "denied",
            reasonBefore: simA.probeReason(s, d, a),
            reasonAfter: simB.probeReason(s2, d2, b),
          });
        }
      }
    }
    return { pairs, flows: compareFlows(simA, simB, before.cluster.traffic, after.cluster.traffic), probes };
  } finally {
    simA.close();
    simB?.close();
  }
}

/**
 * Plays every Traffic flow of either version in both, in the order of the union of their names, each from
 * the same source-port cursor and clock: a flow present in only one version does not shift the source
 * ports (and so the hash-chosen backends) of the flows after it.
 */
function compareFlows(simA: Simulation, simB: Simulation, flowsA: FlowSpec[], flowsB: FlowSpec[]): FlowChange[] {
  const a = new Map(flowsA.map((f) => [f.name, f]));
  const b = new Map(flowsB.map((f) => [f.name, f]));
  const names = [...new Set([...a.keys(), ...b.keys()])];
  const out: FlowChange[] = [];
  for (const name of names) {
    const start = simA.cursor;
    simB.cursor = start;
    const ra = play(simA, a.get(name));
    const rb = play(simB, b.get(name));
    const endA = simA.cursor;
    const endB = simB.cursor;
    const end = { port: Math.max(endA.port, endB.port), clockMs: Math.max(endA.clockMs, endB.clockMs) };
    simA.cursor = end;
    simB.cursor = end;
    const state = (r: FlowResult | Error | undefined): FlowState => (r instanceof Error || r === undefined ? "absent" : r.verdict);
    const sa = state(ra);
    const sb = state(rb);
    if (sa === "absent" && sb === "absent") continue;
    const backend = (r: FlowResult | Error | undefined) => (r instanceof Error || r === undefined ? null : backendText(r));
    const reason = (r: FlowResult | Error | undefined) => (r === undefined ? "no such Traffic flow" : r instanceof Error ? r.message : r.reason);
    if (sa === sb && backend(ra) === backend(rb)) continue;
    out.push({ name, before: sa, after: sb, backendBefore: backend(ra), backendAfter: backend(rb), reasonBefore: reason(ra), reasonAfter: reason(rb) });
  }
  return out;
}

/** A flow's result, or the error that makes it unplayable in this version (an endpoint that is gone). */
function play(sim: Simulation, f: FlowSpec | undefined): FlowResult | Error | undefined {
  if (!f) return undefined;
  try {
    return sim.runFlow(f);
  } catch (e) {
    if (e instanceof SimError) return e;
    throw e;
  }
}
