import fc from "fast-check";
import { describe, expect, it } from "vitest";
import { dnsSelectorMatches, dnsSelectorProblems, patternRegExp, toFqdn } from "./dns.ts";

const label = fc.stringMatching(/^[a-z0-9][-a-z0-9_]{0,9}$/);
const name = fc.array(label, { minLength: 1, maxLength: 4 }).map((ls) => ls.join("."));

describe("matchName", () => {
  it("is exact, case-insensitive, with or without the trailing dot", () => {
    expect(dnsSelectorMatches({ matchName: "api.github.com" }, "API.GitHub.com.")).toBe(true);
    expect(dnsSelectorMatches({ matchName: "api.github.com." }, "api.github.com")).toBe(true);
    expect(dnsSelectorMatches({ matchName: "api.github.com" }, "xapi.github.com")).toBe(false);
    expect(dnsSelectorMatches({ matchName: "github.com" }, "api.github.com")).toBe(false);
  });
  it("a name matches itself and only names equal to it ignoring case (property)", () =>
    fc.assert(
      fc.property(name, name, (a, b) => {
        expect(dnsSelectorMatches({ matchName: a }, a.toUpperCase())).toBe(true);
        expect(dnsSelectorMatches({ matchName: a }, b)).toBe(toFqdn(a) === toFqdn(b));
      }),
    ));
});

describe("matchPattern (cilium pkg/fqdn/matchpattern examples)", () => {
  const m = (p: string, n: string) => dnsSelectorMatches({ matchPattern: p }, n);
  it("*.cilium.io matches one level only", () => {
    expect(m("*.cilium.io", "www.cilium.io")).toBe(true);
    expect(m("*.cilium.io", "blog.cilium.io.")).toBe(true);
    expect(m("*.cilium.io", "cilium.io")).toBe(false);
    expect(m("*.cilium.io", "a.b.cilium.io")).toBe(false);
    expect(m("*.cilium.io", "google.com")).toBe(false);
  });
  it("*cilium.io matches cilium.io and names ending in it within the label", () => {
    expect(m("*cilium.io", "cilium.io")).toBe(true);
    expect(m("*cilium.io", "sub-cilium.io")).toBe(true);
    expect(m("*cilium.io", "www.cilium.io")).toBe(false);
  });
  it("sub*.cilium.io", () => {
    expect(m("sub*.cilium.io", "sub.cilium.io")).toBe(true);
    expect(m("sub*.cilium.io", "subdomain.cilium.io")).toBe(true);
    expect(m("sub*.cilium.io", "www.cilium.io")).toBe(false);
  });
  it("a lone * (or **, *.) matches every name", () => {
    for (const p of ["*", "**", "*.", "***."]) {
      expect(m(p, "a.b.c.example.com")).toBe(true);
      expect(m(p, "x")).toBe(true);
    }
  });
  it("**. matches one or more labels", () => {
    expect(m("**.cilium.io", "a.cilium.io")).toBe(true);
    expect(m("**.cilium.io", "a.b.c.cilium.io")).toBe(true);
    expect(m("**.cilium.io", "cilium.io")).toBe(false);
  });
  it("is case-insensitive and dots are literal", () => {
    expect(m("*.Cilium.IO", "WWW.cilium.io")).toBe(true);
    expect(m("a.b", "axb")).toBe(false);
  });
  it("a wildcard never crosses a dot (property)", () =>
    fc.assert(
      fc.property(label, name, name, (l, rest, other) => {
        expect(m(`*.${rest}`, `${l}.${rest}`)).toBe(true);
        expect(m(`*.${rest}`, `${l}.${other}`)).toBe(toFqdn(rest) === toFqdn(other));
        expect(m(`*.${rest}`, `${l}.${l}.${rest}`)).toBe(false);
      }),
    ));
  it("a pattern without * behaves as matchName (property)", () =>
    fc.assert(
      fc.property(name, name, (a, b) => {
        expect(m(a, b)).toBe(dnsSelectorMatches({ matchName: a }, b));
      }),
    ));
  it("regexps are anchored", () => expect(patternRegExp("cilium.io").source.startsWith("^")).toBe(true));
});

describe("selector validation (cilium pkg/policy/api/fqdn.go sanitize)", () => {
  it("accepts names and patterns of DNS characters", () => {
    expect(dnsSelectorProblems({ matchName: "api.github.com" })).toEqual([]);
    expect(dnsSelectorProblems({ matchName: "_srv._tcp.x.io" })).toEqual([]);
    expect(dnsSelectorProblems({ matchPattern: "*.cilium.io" })).toEqual([]);
  });
  it("refuses other characters, both fields, neither field, too long", () => {
    expect(dnsSelectorProblems({ matchName: "*.io" })[0]!.field).toBe("matchName");
    expect(dnsSelectorProblems({ matchPattern: "a[b]" })[0]!.field).toBe("matchPattern");
    expect(dnsSelectorProblems({ matchName: "a.io", matchPattern: "*" })).toHaveLength(1);
    expect(dnsSelectorProblems({})).toHaveLength(1);
    expect(dnsSelectorProblems({ matchName: "a".repeat(256) })[0]!.message).toMatch(/longer than 255/);
  });
});
