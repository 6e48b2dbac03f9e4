// Unit tests (no kernel needed) for datapath/errors.ts: codes, errno text, hints.
import { describe, expect, it } from "vitest";
import { DatapathError } from "../host/datapath.ts";
import { bpfError, BpfError, BpfErrorCode, errnoName, errnoText } from "./errors.ts";

describe("BpfError", () => {
  it("is a DatapathError with code, errno name and text, and a default hint", () => {
    const e = bpfError(BpfErrorCode.MapFull, "update of map m", -7);
    expect(e).toBeInstanceOf(DatapathError);
    expect(e).toBeInstanceOf(BpfError);
    expect(e.code).toBe("BPF_MAP_FULL");
    expect(e.errno).toBe(7);
    expect(e.errnoName).toBe("E2BIG");
    expect(e.message).toMatch(/^update of map m: .+ \(E2BIG, errno 7\)$/);
    expect(e.hint).toMatch(/max_entries/);
  });

  it("turns EPERM into BPF_NOT_PERMITTED unless a verifier log explains a rejection", () => {
    expect(bpfError(BpfErrorCode.LoadFailed, "load", -1).code).toBe(BpfErrorCode.NotPermitted);
    expect(bpfError(BpfErrorCode.MapOpFailed, "lookup", 1).code).toBe(BpfErrorCode.NotPermitted);
    const v = bpfError(BpfErrorCode.LoadFailed, "load", -1, undefined, { verifierLog: "R1 invalid mem access" });
    expect(v.code).toBe(BpfErrorCode.LoadFailed);
    expect(v.message).toMatch(/--- verifier log ---\nR1 invalid mem access/);
  });

  it("keeps a call site's hint and the libbpf lines", () => {
    const e = bpfError(BpfErrorCode.PinFailed, "pin", -22, "custom", { libbpfLog: ["libbpf: couldn't reuse pinned map"] });
    expect(e.hint).toBe("custom");
    expect(e.message).toMatch(/couldn't reuse pinned map/);
  });

  it("names errnos", () => {
    expect(errnoName(-2)).toBe("ENOENT");
    expect(errnoName(13)).toBe("EACCES");
    expect(errnoText(2).length).toBeGreaterThan(0);
  });
});
