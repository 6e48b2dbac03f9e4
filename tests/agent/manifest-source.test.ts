/* agent/manifest-source.ts: changes are noticed, and acted on only once the files have settled. */
import { mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterAll, describe, expect, it } from "vitest";
import { ManifestSource } from "../../agent/manifest-source.ts";

const dir = mkdtempSync(join(tmpdir(), "ciliate-src-"));
afterAll(() => rmSync(dir, { recursive: true, force: true }));
const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));
const ns = (name: string) => `apiVersion: v1\nkind: Namespace\nmetadata: {name: ${name}}\n`;

describe("ManifestSource", () => {
  it("loads the directory and reports a change once the files stop changing", async () => {
    writeFileSync(join(dir, "a.yaml"), ns("one"));
    const src = new ManifestSource([dir]);
    expect(src.load().map((o) => o.metadata.name)).toEqual(["one"]);
    let calls = 0;
    src.watch(100, () => {
      calls++;
      src.load();
    });
    try {
      // Keep writing faster than the interval: nothing fires while the files are still changing.
      for (let i = 0; i < 5; i++) {
        writeFileSync(join(dir, "a.yaml"), ns(`n${i}`) + "#".repeat(i));
        await sleep(10);
      }
      expect(calls).toBe(0);
      await sleep(400);
      expect(calls).toBe(1);
      expect(src.load().map((o) => o.metadata.name)).toEqual(["n4"]);
      await sleep(300);
      expect(calls).toBe(1); // quiet: no more calls
    } finally {
      src.stop();
    }
  });
});
