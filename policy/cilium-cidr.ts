// CIDRs as Cilium's sanitize reads them (cilium/cilium pkg/policy/api/rule_validation.go CIDR.sanitize and
// CIDRRule.sanitize), which parse with Go's net/netip: an IPv4 octet with a leading zero ("010.0.0.1"),
// a prefix length with a leading zero or sign ("/08") and an IPv6 zone are refused, and so are their
// messages worded, as netip words them (ParseAddr / netip.ParsePrefix errors, wrapped in Cilium's text).
// fromCIDR/toCIDR take a prefix or a bare address (a host); fromCIDRSet/toCIDRSet need a prefix; an except
// is valid when its address lies in the allowed prefix (Prefix.Contains(except.Addr())), so an except wider
// than its CIDR is accepted — and then leaves nothing of it. Kubernetes ipBlocks follow the API server
// instead (policy/k8s-netpol.ts).

import { ipInCidr, parseCidr, parseIp, type Cidr } from "./cidr.ts";

const q = (s: string) => JSON.stringify(s);

/** Go's netip.ParseAddr: undefined when valid, else its error text. */
export function goParseAddrError(s: string): string | undefined {
  const err = (msg: string, at?: string) => `ParseAddr(${q(s)}): ${msg}${at === undefined ? "" : ` (at ${q(at)})`}`;
  for (let i = 0; i < s.length; i++) {
    if (s[i] === ".") return ipv4Error(s, err);
    if (s[i] === ":") return parseIp(s) ? undefined : err("unable to parse IP");
    if (s[i] === "%") return err("missing IPv6 address");
  }
  return err("unable to parse IP");
}

function ipv4Error(s: string, err: (msg: string, at?: string) => string): string | undefined {
  let val = 0;
  let pos = 0;
  let digits = 0;
  for (let i = 0; i < s.length; i++) {
    const c = s[i]!;
    if (c >= "0" && c <= "9") {
      if (digits === 1 && val === 0) return err("IPv4 field has octet with leading zero");
      val = val * 10 + Number(c);
      digits++;
      if (val > 255) return err("IPv4 field has value >255");
    } else if (c === ".") {
      if (i === 0 || i === s.length - 1 || s[i - 1] === ".") return err("IPv4 field must have at least one digit", s.slice(i));
      if (pos === 3) return err("IPv4 address too long");
      pos++;
      val = 0;
      digits = 0;
    } else return err("unexpected character", s.slice(i));
  }
  return pos < 3 ? err("IPv4 address too short") : undefined;
}

/** Go's netip.ParsePrefix: the prefix (host bits masked) and the address as written, or its error text. */
export function goParsePrefix(s: string): { cidr: Cidr; addr: { family: 4 | 6; addr: bigint } } | { error: string } {
  const err = (msg: string) => ({ error: `netip.ParsePrefix(${q(s)}): ${msg}` });
  const i = s.lastIndexOf("/");
  if (i < 0) return err("no '/'");
  const addrErr = goParseAddrError(s.slice(0, i));
  if (addrErr) return err(addrErr);
  const bits = s.slice(i + 1);
  if (!/^(0|[1-9]\d*)$/.test(bits)) return err(`bad bits after slash: ${q(bits)}`);
  const cidr = parseCidr(s);
  if (!cidr) return err("prefix length out of range");
  return { cidr, addr: parseIp(s.slice(0, i))! };
}

/** CIDR.sanitize (fromCIDR/toCIDR): a prefix or a bare address. */
export function ciliumCidr(s: string): Cidr | { error: string } {
  if (s === "") return { error: "IP must be specified" };
  const p = goParsePrefix(s);
  if ("cidr" in p) return p.cidr;
  const addrErr = goParseAddrError(s);
  return addrErr ? { error: `unable to parse CIDR: ${addrErr}` } : parseCidr(s)!;
}

/** CIDRRule.sanitize (fromCIDRSet/toCIDRSet): the prefix and each except, every problem in Cilium's words. */
export function ciliumCidrRule(cidr: string, except: string[]): { cidr?: Cidr; except: (Cidr | undefined)[]; problems: { index?: number; message: string }[] } {
  const problems: { index?: number; message: string }[] = [];
  const p = goParsePrefix(cidr);
  if ("error" in p) problems.push({ message: `Unable to parse CIDRRule ${q(cidr)}: ${p.error}` });
  const ex = except.map((e, index) => {
    const x = goParsePrefix(e);
    if ("error" in x) {
      problems.push({ index, message: x.error });
      return undefined;
    }
    if (!("cidr" in p)) return undefined;
    const inside = ipInCidr(p.cidr, x.addr.family, x.addr.addr);
    if (!inside) {
      problems.push({ index, message: `allow CIDR prefix ${cidr} does not contain exclude CIDR prefix ${e}` });
      return undefined;
    }
    return x.cidr;
  });
  return { ...("cidr" in p ? { cidr: p.cidr } : {}), except: ex, problems };
}
