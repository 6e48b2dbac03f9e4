// Kafka L7 rules (`rules.kafka`) as Cilium defines and enforces them: the rule fields and their sanitize
// checks (cilium/proxy pkg/policy/api/kafka/kafka.go: role produce|consume expands to a fixed set of API
// keys, apiKey names one key, role and apiKey are mutually exclusive, apiVersion is an int16 >= 0, topic at
// most 255 characters of [a-zA-Z0-9._-]) and the matching of one request against a listener's rules
// (cilium/proxy proxylib/kafka/kafkalib/policy.go). A request that carries several topics is allowed only
// when every topic is allowed by some rule; the set of topics still to match is shared across all rules of
// the listener, as in Cilium. Denied requests are answered by the proxy with TOPIC_AUTHORIZATION_FAILED.
// This module is the one implementation the simulator, `ciliate trace` and the node's Kafka proxy use.

import type { CompiledPolicy } from "../compile.ts";
import type { KafkaRule, Provenance } from "../types.ts";
import { listenerRulesFor, type L7Context } from "./listener.ts";

/** Kafka protocol error code Cilium answers a denied request with (proto.ErrTopicAuthorizationFailed). */
export const KAFKA_TOPIC_AUTHORIZATION_FAILED = 29;
export const KAFKA_MAX_TOPIC_LEN = 255;

/** API key names as Cilium's rules spell them (apiKey is matched case-insensitively). */
export const KAFKA_API_KEYS: Record<string, number> = {
  produce: 0,
  fetch: 1,
  offsets: 2,
  metadata: 3,
  leaderandisr: 4,
  stopreplica: 5,
  updatemetadata: 6,
  controlledshutdown: 7,
  offsetcommit: 8,
  offsetfetch: 9,
  findcoordinator: 10,
  joingroup: 11,
  heartbeat: 12,
  leavegroup: 13,
  syncgroup: 14,
  describegroups: 15,
  listgroups: 16,
  saslhandshake: 17,
  apiversions: 18,
  createtopics: 19,
  deletetopics: 20,
  deleterecords: 21,
  initproducerid: 22,
  offsetforleaderepoch: 23,
  addpartitionstotxn: 24,
  addoffsetstotxn: 25,
  endtxn: 26,
  writetxnmarkers: 27,
  txnoffsetcommit: 28,
  describeacls: 29,
  createacls: 30,
  deleteacls: 31,
  describeconfigs: 32,
  alterconfigs: 33,
};

const KEY_NAMES = new Map(Object.entries(KAFKA_API_KEYS).map(([k, v]) => [v, k]));

/** Cilium's name of an API key, or the number as text when it has none. */
export function kafkaApiKeyName(key: number): string {
  return KEY_NAMES.get(key) ?? String(key);
}

/** An API key given by name (case-insensitive) or number, as flows and `trace` name them; undefined when unknown. */
export function kafkaApiKeyOf(v: unknown): number | undefined {
  if (typeof v === "number") return Number.isInteger(v) && v >= 0 && v <= 32767 ? v : undefined;
  if (typeof v !== "string") return undefined;
  if (/^\d+$/.test(v)) return kafkaApiKeyOf(Number(v));
  return KAFKA_API_KEYS[v.toLowerCase()];
}

/** The request a flow of a role stands for: the one carrying the role's data (a Produce, a Fetch). */
export const KAFKA_ROLE_REQUEST: Record<"produce" | "consume", number> = { produce: 0, consume: 1 };

/** The API keys a role needs (Cilium's GetAPIKeys). */
export const KAFKA_ROLE_KEYS: Record<"produce" | "consume", number[]> = {
  produce: [0, 3, 18],
  consume: [1, 2, 3, 8, 9, 10, 11, 12, 13, 14, 18],
};

/** Request kinds whose body carries topics: only for these does a rule's topic constrain the request. */
const TOPIC_API_KEYS = new Set([0, 1, 2, 3, 4, 5, 6, 8, 9, 19, 20, 21, 23, 24, 27, 28, 34, 35, 37]);

// Cilium's pattern is written `^[a-zA-Z0-9\\._\\-]+$` in a Go raw string, so a backslash is accepted too.
const TOPIC_CHARS = /^[a-zA-Z0-9\\._-]+$/;
const RULE_FIELDS = ["role", "apiKey", "apiVersion", "clientID", "topic"];

export interface KafkaRuleProblem {
  field?: string;
  detail: string;
  hint?: string;
}

/**
 * Validates one raw `rules.kafka[]` element as the CRD schema and Cilium's Sanitize do. Returns the rule
 * and every problem found (an empty list when the rule is valid).
 */
export function checkKafkaRule(raw: unknown): { rule: KafkaRule; problems: KafkaRuleProblem[] } {
  const problems: KafkaRuleProblem[] = [];
  const rule: KafkaRule = {};
  if (raw === null || typeof raw !== "object" || Array.isArray(raw)) return { rule, problems: [{ detail: "a Kafka rule must be an object" }] };
  const r = raw as Record<string, unknown>;
  for (const k of Object.keys(r))
    if (!RULE_FIELDS.includes(k)) problems.push({ field: k, detail: `unknown Kafka rule field ${JSON.stringify(k)}`, hint: `fields: ${RULE_FIELDS.join(", ")}` });
  for (const k of RULE_FIELDS) {
    const v = r[k];
    if (v === undefined || v === null || v === "") continue;
    if (typeof v !== "string") {
      problems.push({ field: k, detail: `must be a string, got ${JSON.stringify(v)}`, hint: k === "apiVersion" ? "quote the number, e.g. apiVersion: \"2\"" : "" });
      continue;
    }
    (rule as Record<string, string>)[k] = v;
  }
  if (rule.role !== undefined && rule.apiKey !== undefined)
    problems.push({ detail: `cannot set both role ${JSON.stringify(rule.role)} and apiKey ${JSON.stringify(rule.apiKey)} together`, hint: "a role already expands to its API keys" });
  // The CRD enum admits the lower-case spellings only.
  if (rule.role !== undefined && rule.role !== "produce" && rule.role !== "consume") problems.push({ field: "role", detail: `invalid Kafka role ${JSON.stringify(rule.role)}`, hint: "use produce or consume" });
  if (rule.apiKey !== undefined && KAFKA_API_KEYS[rule.apiKey.toLowerCase()] === undefined)
    problems.push({ field: "apiKey", detail: `invalid Kafka apiKey ${JSON.stringify(rule.apiKey)}`, hint: `one of ${Object.keys(KAFKA_API_KEYS).join(", ")}` });
  if (rule.apiVersion !== undefined && !(/^\+?\d+$/.test(rule.apiVersion) && Number(rule.apiVersion) <= 32767))
    problems.push({ field: "apiVersion", detail: `invalid Kafka apiVersion ${JSON.stringify(rule.apiVersion)}`, hint: "a number from 0 to 32767, as a string" });
  if (rule.topic !== undefined) {
    if (rule.topic.length > KAFKA_MAX_TOPIC_LEN) problems.push({ field: "topic", detail: `Kafka topic exceeds the maximum length of ${KAFKA_MAX_TOPIC_LEN}` });
    else if (!TOPIC_CHARS.test(rule.topic)) problems.push({ field: "topic", detail: `invalid Kafka topic name ${JSON.stringify(rule.topic)}`, hint: "letters, digits, '.', '_' and '-'" });
  }
  return { rule, problems };
}

/** API keys a (valid) rule allows; empty = every key. */
export function kafkaRuleApiKeys(rule: KafkaRule): number[] {
  if (rule.role === "produce" || rule.role === "consume") return KAFKA_ROLE_KEYS[rule.role];
  if (rule.apiKey !== undefined) return [KAFKA_API_KEYS[rule.apiKey.toLowerCase()]];
  return [];
}

/** One Kafka request as the proxy reads it from the wire (or a Traffic flow describes it). */
export interface KafkaRequest {
  apiKey: number;
  apiVersion: number;
  /** Empty when the request has none (Cilium reads no client id from version-0 requests). */
  clientID: string;
  /** Topics named in the request body (empty for kinds without topics, or a Metadata request for all). */
  topics: string[];
  correlationId?: number;
}

/**
 * Whether one rule matches the request. `remaining` is the set of request topics not yet matched; a rule
 * with a topic on a topic-carrying kind removes its topic and matches only when that emptied the set.
 */
export function kafkaRuleMatches(rule: KafkaRule, req: KafkaRequest, remaining: Set<string>): boolean {
  const keys = kafkaRuleApiKeys(rule);
  if (keys.length && !keys.includes(req.apiKey)) return false;
  if (rule.apiVersion !== undefined && Number(rule.apiVersion) !== req.apiVersion) return false;
  if (rule.clientID !== undefined && rule.clientID !== req.clientID) return false;
  if (rule.topic !== undefined && TOPIC_API_KEYS.has(req.apiKey)) {
    if (!remaining.delete(rule.topic)) return false;
    return remaining.size === 0;
  }
  return true;
}

export interface KafkaVerdict {
  allowed: boolean;
  /** 0 when allowed; TOPIC_AUTHORIZATION_FAILED when denied. */
  errorCode: number;
  rule?: { provenance: Provenance; index: number; rule?: KafkaRule };
  reason: string;
}

/** Judges a Kafka request at a proxy listener for a remote identity. */
export function evaluateKafka(compiled: CompiledPolicy, ctx: L7Context, req: KafkaRequest): KafkaVerdict {
  const denied = (reason: string): KafkaVerdict => ({ allowed: false, errorCode: KAFKA_TOPIC_AUTHORIZATION_FAILED, reason });
  const found = listenerRulesFor(compiled, ctx, "kafka");
  if ("error" in found) return denied(found.error);
  const remaining = new Set(req.topics);
  const what = `${kafkaApiKeyName(req.apiKey)} v${req.apiVersion}${req.topics.length ? ` topic ${req.topics.join(",")}` : ""}`;
  for (const r of found.rules) {
    if (r.kafka === null || r.kafka.length === 0) return { allowed: true, errorCode: 0, rule: { provenance: r.provenance, index: -1 }, reason: "peer allowed without Kafka restrictions" };
    for (let i = 0; i < r.kafka.length; i++)
      if (kafkaRuleMatches(r.kafka[i], req, remaining))
        return { allowed: true, errorCode: 0, rule: { provenance: r.provenance, index: i, rule: r.kafka[i] }, reason: `${what} matches kafka[${i}]` };
  }
  const left = remaining.size && remaining.size < req.topics.length ? ` (topic ${[...remaining].join(",")} not allowed)` : "";
  return denied(`no Kafka rule allows ${what}${left}: TOPIC_AUTHORIZATION_FAILED`);
}
