// `ciliate trace --size` (docs/cli.md): a UDP datagram larger than the sender's 1500-byte MTU leaves in
// IPv4 fragments and every fragment runs the datapath; trace shows each one, the first recording its ports
// and the later ones judged with them (core/frag.ts F1–F3), and with --first-fragment-lost the later
// fragments dropped with 175. Needs `npm run build`.
import { describe, expect, it } from "vitest";
import { ciliate, json } from "./run.ts";

const SCENARIO = ["-f", "scenarios/multi-node"];
const trace = (...args: string[]) => ciliate(...SCENARIO, "trace", "--protocol", "UDP", ...args);

describe("trace of a fragmented UDP datagram", () => {
  it("an allowed datagram: three fragments through each node's hook, the later ones established on the first one's ports, then the reply", () => {
    const r = json(trace("-o", "json", "--from", "shop/db-0", "--to", "shop/frontend-0", "--port", "8080", "--size", "4000"));
    expect(r.verdict).toBe("allowed");
    const frags = r.steps.filter((s: any) => s.fragment);
    // 4,008 bytes of UDP in 1,480-byte pieces: offsets 0, 1480, 2960, at the sender's fromEndpoint and the receiver's fromOverlay.
    expect(frags.map((s: any) => `${s.node} ${s.entry} ${s.fragment.offset}${s.fragment.last ? " last" : ""} ${s.ctState}`)).toEqual([
      "node-c fromEndpoint 0 new", "node-a fromOverlay 0 new",
      "node-c fromEndpoint 1480 established", "node-a fromOverlay 1480 established",
      "node-c fromEndpoint 2960 last established", "node-a fromOverlay 2960 last established",
    ]);
    // One datagram: one IP id; a later fragment has no ports of its own.
    expect(new Set(frags.map((s: any) => s.fragment.id)).size).toBe(1);
    expect(frags[2].packet).toBe("10.244.3.10 -> 10.244.1.10 UDP");
    expect(frags.every((s: any) => s.verdict === "FORWARDED")).toBe(true);
    expect(r.steps.at(-1)).toMatchObject({ reply: true, verdict: "FORWARDED" });
    const text = trace("--from", "shop/db-0", "--to", "shop/frontend-0", "--port", "8080", "--size", "4000").stdout;
    expect(text).toContain("IPv4 fragment (IP id 40000, offset 0): the first; its ports are recorded for the later fragments");
    expect(text).toContain("IPv4 fragment (IP id 40000, offset 2960, last): takes the ports, service translation and verdict of its first fragment");
  });

  it("a datagram the receiver's policy denies stops at its first fragment; a small one is not fragmented", () => {
    const denied = json(trace("-o", "json", "--from", "shop/frontend-0", "--to", "shop/db-0", "--port", "5432", "--size", "4000"));
    expect(denied.verdict).toBe("denied");
    expect(denied.steps.at(-1)).toMatchObject({ entry: "fromOverlay", verdict: "DROPPED", fragment: { offset: 0 } });
    const small = json(trace("-o", "json", "--from", "shop/db-0", "--to", "shop/frontend-0", "--port", "8080", "--size", "1472"));
    expect(small.steps.some((s: any) => s.fragment)).toBe(false);
  });

  it("--first-fragment-lost: the later fragment has no first to take its ports from and drops with 175", () => {
    const r = json(trace("-o", "json", "--from", "shop/db-0", "--to", "shop/frontend-0", "--port", "8080", "--size", "4000", "--first-fragment-lost"));
    expect(r.verdict).toBe("denied");
    expect(r.dropReason).toBe(175);
    expect(r.steps).toHaveLength(1);
    expect(r.steps[0]).toMatchObject({ node: "node-c", entry: "fromEndpoint", verdict: "DROPPED", dropReason: 175, fragment: { offset: 1480 } });
    const text = trace("--from", "shop/db-0", "--to", "shop/frontend-0", "--port", "8080", "--size", "4000", "--first-fragment-lost").stdout;
    expect(text).toContain("DROPPED (First logical datagram fragment not found)");
    expect(text).toContain("its first fragment was not seen, so it has no ports (drop 175)");
  });

  it("bad input: one line, exit 2", () => {
    for (const [args, msg] of [
      [["--size", "4000", "--protocol", "TCP"], "--size is for a UDP datagram"],
      [["--size", "4k"], 'malformed --size "4k"'],
      [["--first-fragment-lost"], "--first-fragment-lost needs --size larger than 1472"],
      [["--size", "1000", "--first-fragment-lost"], "--first-fragment-lost needs --size larger than 1472"],
    ] as const) {
      const r = ciliate(...SCENARIO, "trace", "--from", "shop/db-0", "--to", "shop/frontend-0", "--port", "8080", ...((args as readonly string[]).includes("--protocol") ? [] : ["--protocol", "UDP"]), ...args);
      expect(r.code, r.stderr).toBe(2);
      expect(r.stderr.trim().split("\n")[0]).toContain(msg);
    }
  });
});
