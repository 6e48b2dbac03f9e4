// docs/policy.md says exactly what is refused and warned: its "Refused because ciliate cannot enforce it"
// and "Warned" tables list the same codes as policy/not-enforced.ts, and every code the policy validators
// emit for an unsupported feature (an `unsupported-*` problem, a warning) is in that list.
import { readdirSync, readFileSync } from "node:fs";
import { join } from "node:path";
import { describe, expect, it } from "vitest";
import { REFUSED_NOT_ENFORCEABLE, WARNED } from "../../policy/not-enforced.ts";

const ROOT = new URL("../../", import.meta.url).pathname;
const doc = readFileSync(join(ROOT, "docs/policy.md"), "utf8");

/** The first-column codes of the table under the heading that starts with `heading`. */
function tableCodes(heading: string): string[] {
  const start = doc.indexOf(`### ${heading}`);
  expect(start, `docs/policy.md has no "### ${heading}" section`).toBeGreaterThan(-1);
  const end = doc.indexOf("\n### ", start + 4);
  const section = doc.slice(start, end === -1 ? undefined : end);
  return [...section.matchAll(/^\| `([a-z0-9-]+)` \|/gm)].map((m) => m[1]!);
}

/** Every code passed to `warn(ctx, …)` and every `unsupported-*` / `extended-protocol-disabled` problem code in policy/. */
function emittedCodes(): { warned: Set<string>; refused: Set<string> } {
  const warned = new Set<string>();
  const refused = new Set<string>();
  const walk = (dir: string) => {
    for (const e of readdirSync(dir, { withFileTypes: true })) {
      const p = join(dir, e.name);
      if (e.isDirectory() && e.name !== "schemas") walk(p);
      else if (e.name.endsWith(".ts") && !e.name.endsWith(".test.ts") && e.name !== "not-enforced.ts") {
        const src = readFileSync(p, "utf8");
        for (const m of src.matchAll(/\bwarn\(ctx, (?:\[[^\]]*\]|\w+), "([a-z0-9-]+)"/g)) warned.add(m[1]!);
        for (const m of src.matchAll(/new PolicyError\(\s*"([a-z0-9-]+)"/g)) warned.add(m[1]!);
        for (const m of src.matchAll(/\bbad\(ctx,.*?"((?:unsupported-(?!api-version)[a-z0-9-]+)|extended-protocol-disabled)"/g)) refused.add(m[1]!);
      }
    }
  };
  walk(join(ROOT, "policy"));
  return { warned, refused };
}

describe("docs/policy.md lists exactly what is refused and warned", () => {
  it("the Refused table is policy/not-enforced.ts's REFUSED_NOT_ENFORCEABLE", () => {
    expect(tableCodes("Refused because ciliate cannot enforce it").sort()).toEqual(REFUSED_NOT_ENFORCEABLE.map((x) => x.code).sort());
  });

  it("the Warned table is policy/not-enforced.ts's WARNED", () => {
    expect(tableCodes("Warned").sort()).toEqual(WARNED.map((x) => x.code).sort());
  });

  it("every code the validators emit for an unsupported feature or a warning is listed, and every listed code is emitted", () => {
    const { warned, refused } = emittedCodes();
    expect([...refused].sort()).toEqual(REFUSED_NOT_ENFORCEABLE.map((x) => x.code).sort());
    expect([...warned].sort()).toEqual(WARNED.map((x) => x.code).sort());
  });
});
