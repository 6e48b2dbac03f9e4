/* `ciliate agent --enable-ipv6 --ipv6-range [--ipv6-node]`: bad dual-stack flags are refused with one line and exit 2 before anything loads (no root needed). */
import { describe, expect, it } from "vitest";
import { ciliate } from "./run.ts";

const base = ["agent", "--node-ip", "192.0.2.1", "--pod-cidr", "10.244.1.0/24"];

describe("ciliate agent IPv6 flags", () => {
  const refused = (args: string[], message: RegExp) => {
    const r = ciliate(...base, ...args);
    expect(r.code).toBe(2);
    expect(r.stderr.trim().split("\n")).toHaveLength(1);
    expect(r.stderr).toMatch(message);
  };

  it("needs both --enable-ipv6 and --ipv6-range", () => {
    refused(["--enable-ipv6"], /--enable-ipv6 needs --ipv6-range/);
    refused(["--ipv6-range", "fd00:10:244:1::/64"], /--ipv6-range needs --enable-ipv6/);
  });

  it("refuses an IPv4, malformed or too wide IPv6 range", () => {
    refused(["--enable-ipv6", "--ipv6-range", "10.0.0.0/24"], /invalid --ipv6-range 10\.0\.0\.0\/24: not an IPv6 prefix/);
    refused(["--enable-ipv6", "--ipv6-range", "fd00::zz/64"], /invalid --ipv6-range: invalid pod CIDR fd00::zz\/64/);
    refused(["--enable-ipv6", "--ipv6-range", "fd00::/48"], /invalid --ipv6-range: invalid pod CIDR fd00::\/48 \(IPv4 \/8 to \/30, or IPv6 \/64 to \/126\)/);
  });

  it("refuses --ipv6-node without --enable-ipv6, or that is not an IPv6 address", () => {
    refused(["--ipv6-node", "fd00:57::11"], /--ipv6-node needs --enable-ipv6/);
    refused(["--enable-ipv6", "--ipv6-range", "fd00:10:244:1::/64", "--ipv6-node", "192.168.57.11"], /invalid --ipv6-node 192\.168\.57\.11: not an IPv6 address/);
    refused(["--enable-ipv6", "--ipv6-range", "fd00:10:244:1::/64", "--ipv6-node", "fd00::zz"], /invalid --ipv6-node fd00::zz: not an IPv6 address/);
  });
});
