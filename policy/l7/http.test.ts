import { describe, expect, it } from "vitest";
import { headerRule, httpHeaderEdits, httpRuleMatches } from "./http.ts";

describe("httpRuleMatches", () => {
  const req = { method: "GET", path: "/api/v1/users", host: "shop.example.com", headers: { "X-Env": "prod" } };
  it("empty rule matches everything", () => expect(httpRuleMatches({}, req)).toBe(true));
  it("method and path are anchored regexes", () => {
    expect(httpRuleMatches({ method: "GET", path: "/api/.*" }, req)).toBe(true);
    expect(httpRuleMatches({ path: "/api" }, req)).toBe(false);
    expect(httpRuleMatches({ method: "GE" }, req)).toBe(false);
    expect(httpRuleMatches({ method: "GET|POST" }, req)).toBe(true);
  });
  it("host regex", () => {
    expect(httpRuleMatches({ host: ".*\\.example\\.com" }, req)).toBe(true);
    expect(httpRuleMatches({ host: "example\\.com" }, req)).toBe(false);
  });
  it("headers: presence and exact value, case-insensitive names", () => {
    expect(httpRuleMatches({ headers: ["x-env"] }, req)).toBe(true);
    expect(httpRuleMatches({ headers: ["X-Env: prod"] }, req)).toBe(true);
    expect(httpRuleMatches({ headers: ["X-Env: dev"] }, req)).toBe(false);
    expect(httpRuleMatches({ headers: ["X-Missing"] }, req)).toBe(false);
  });
  it("headerMatches: required unless a mismatch action is set", () => {
    expect(httpRuleMatches({ headerMatches: [{ name: "X-Env", value: "prod" }] }, req)).toBe(true);
    expect(httpRuleMatches({ headerMatches: [{ name: "X-Env", value: "dev" }] }, req)).toBe(false);
    expect(httpRuleMatches({ headerMatches: [{ name: "X-Env", value: "dev", mismatch: "LOG" }] }, req)).toBe(true);
  });
  it("headerMatches: an empty value is a presence match", () => {
    expect(httpRuleMatches({ headerMatches: [{ name: "X-Env", value: "" }] }, req)).toBe(true);
    expect(httpRuleMatches({ headerMatches: [{ name: "X-None", value: "" }] }, req)).toBe(false);
  });
  it("headerMatches mismatch actions ask for edits as cilium/proxy's HeaderMatch", () => {
    const rule = {
      headerMatches: [
        { name: "X-Env", value: "dev", mismatch: "REPLACE" },
        { name: "X-Team", value: "blue", mismatch: "ADD" },
        { name: "X-Env", value: "qa", mismatch: "DELETE" },
        { name: "X-Gone", value: "1", mismatch: "DELETE" },
        { name: "X-Log", value: "1", mismatch: "LOG" },
        { name: "X-Env", value: "prod", mismatch: "REPLACE" },
      ],
    };
    expect(httpHeaderEdits(rule, req)).toEqual([
      { action: "REPLACE", name: "X-Env", value: "dev" },
      { action: "ADD", name: "X-Team", value: "blue" },
      { action: "DELETE", name: "X-Env", value: "qa" },
    ]);
  });
  it("headers entries split at the first space, as Cilium translates them for Envoy", () => {
    expect(headerRule("X-Env: prod")).toEqual({ name: "X-Env", value: "prod" });
    expect(headerRule("X-Env prod")).toEqual({ name: "X-Env", value: "prod" });
    expect(headerRule("X-Env:prod")).toEqual({ name: "X-Env:prod" });
    expect(headerRule("X-Env: a b")).toEqual({ name: "X-Env", value: "a b" });
    expect(httpRuleMatches({ headers: ["X-Env prod"] }, req)).toBe(true);
    expect(httpRuleMatches({ headers: ["X-Env:prod"] }, req)).toBe(false);
  });
});
