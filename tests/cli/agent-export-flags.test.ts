/* `ciliate agent --export-*`: bad exporter flags are refused with one line and exit 2 before anything loads (no root needed). */
import { describe, expect, it } from "vitest";
import { ciliate } from "./run.ts";

const base = ["agent", "--node-ip", "192.0.2.1", "--pod-cidr", "10.244.1.0/24", "--export-file", `/tmp/ciliate-export-flags-${process.pid}.log`];

describe("ciliate agent export flags", () => {
  it("refuses an unknown FlowFilter field, naming the option and the field", () => {
    const r = ciliate(...base, "--export-allow", '{"pod":["x"]}');
    expect(r.code).toBe(2);
    expect(r.stderr.trim().split("\n")).toHaveLength(1);
    expect(r.stderr).toMatch(/--export-allow: unknown FlowFilter field "pod"/);
  });

  it("refuses a size limit that is not a positive number and a negative backup count", () => {
    expect(ciliate(...base, "--export-file-max-size-mb", "0").stderr).toMatch(/invalid --export-file-max-size-mb 0/);
    const r = ciliate(...base, "--export-file-max-backups", "-1");
    expect(r.code).toBe(2);
    expect(r.stderr).toMatch(/invalid --export-file-max-backups -1/);
  });
});
