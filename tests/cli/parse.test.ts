// What users type: probes (--port) and endpoint references (--from/--to), parsed without running anything.
import { describe, expect, it } from "vitest";
import fc from "fast-check";
import { parseProbe, parseRef } from "../../cli/common.ts";
import { CliError } from "../../cli/errors.ts";

describe("parseProbe", () => {
  it("reads PORT[/PROTOCOL] and ICMP types", () => {
    expect(parseProbe("80")).toEqual({ port: 80, protocol: "TCP" });
    expect(parseProbe("53/udp")).toEqual({ port: 53, protocol: "UDP" });
    expect(parseProbe("9000/SCTP")).toEqual({ port: 9000, protocol: "SCTP" });
    expect(parseProbe("8/ICMP")).toEqual({ port: 8, protocol: "ICMP" });
    expect(parseProbe("128/icmpv6")).toEqual({ port: 128, protocol: "ICMPv6" });
  });
  it("refuses anything else with a CliError (exit 2)", () => {
    for (const bad of ["", "http", "80/XYZ", "0", "65536", "300/ICMP", "80/TCP/1", "-1", "80 TCP"]) {
      expect(() => parseProbe(bad), bad).toThrow(CliError);
      try {
        parseProbe(bad);
      } catch (e) {
        expect((e as CliError).exitCode).toBe(2);
      }
    }
  });
  it("round-trips every valid TCP/UDP port", () => {
    fc.assert(fc.property(fc.integer({ min: 1, max: 65535 }), fc.constantFrom("TCP", "UDP", "SCTP"), (port, protocol) => {
      expect(parseProbe(`${port}/${protocol.toLowerCase()}`)).toEqual({ port, protocol });
    }));
  });
});

describe("parseRef", () => {
  it("reads pods, services, addresses, prefixes and entities", () => {
    expect(parseRef("default/xwing", "--from")).toEqual({ pod: "default/xwing" });
    expect(parseRef("xwing", "--from")).toEqual({ pod: "default/xwing" });
    expect(parseRef("pod:x/a", "--from")).toEqual({ pod: "x/a" });
    expect(parseRef("svc:default/deathstar", "--to")).toEqual({ service: "default/deathstar" });
    expect(parseRef("10.0.0.1", "--to")).toEqual({ ip: "10.0.0.1" });
    expect(parseRef("2001:db8::1", "--to")).toEqual({ ip: "2001:db8::1" });
    expect(parseRef("10.0.0.0/8", "--to")).toEqual({ cidr: "10.0.0.0/8" });
    expect(parseRef("entity:world", "--from")).toEqual({ entity: "world" });
  });
  it("refuses unknown entities, bad addresses and junk", () => {
    for (const bad of ["entity:galaxy", "ip:10.0.0.300", "cidr:10.0.0.0/40", "Not A Pod!", "svc:"]) expect(() => parseRef(bad, "--to"), bad).toThrow(CliError);
  });
});
