import { describe, expect, it } from "vitest";
import { httpRuleMatches } from "./http.ts";

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
});
