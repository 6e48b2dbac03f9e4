// A CiliumNetworkPolicy port string read as Cilium reads it (cilium/cilium pkg/policy/api/rule_validation.go
// PortProtocol.sanitize): an IANA service name (pkg/iana/svcname.go IsSvcName: at most 15 characters,
// letters, digits and single inner dashes, at least one letter; case-insensitive, so it is lower-cased) is
// a named port; anything else is a number as Go's strconv.ParseUint(s, 0, 16) reads it — base prefixes
// (a leading 0 is octal, so "010" is port 8), digit-separating underscores ("1_000") — and a string it
// refuses is refused with Go's message. Kubernetes NetworkPolicy ports follow the API server instead
// (policy/k8s-netpol.ts checkK8sPort).

const SVC_NAME = /^([a-zA-Z0-9]-?)*[a-zA-Z](-?[a-zA-Z0-9])*$/;

/** pkg/iana IsSvcName. */
export function isSvcName(s: string): boolean {
  return s.length > 0 && s.length <= 15 && SVC_NAME.test(s);
}

/** Go's strconv underscoreOK: underscores only between digits (or after a base prefix). */
function underscoreOK(s: string): boolean {
  let saw = "^";
  let i = 0;
  if (s.length >= 1 && (s[0] === "-" || s[0] === "+")) s = s.slice(1);
  let hex = false;
  if (s.length >= 2 && s[0] === "0" && "box".includes(s[1]!.toLowerCase())) {
    i = 2;
    saw = "0";
    hex = s[1]!.toLowerCase() === "x";
  }
  for (; i < s.length; i++) {
    const c = s[i]!;
    const lc = c.toLowerCase();
    if ((c >= "0" && c <= "9") || (hex && lc >= "a" && lc <= "f")) {
      saw = "0";
      continue;
    }
    if (c === "_") {
      if (saw !== "0") return false;
      saw = "_";
      continue;
    }
    if (saw === "_") return false;
    saw = "!";
  }
  return saw !== "_";
}

/** Go's strconv.ParseUint(s, 0, bits): the number, or the error text Go gives. */
export function goParseUint(s0: string, bits = 16): number | { error: string } {
  const syntax = { error: `strconv.ParseUint: parsing ${JSON.stringify(s0)}: invalid syntax` };
  const range = { error: `strconv.ParseUint: parsing ${JSON.stringify(s0)}: value out of range` };
  if (s0 === "") return syntax;
  let s = s0;
  let base = 10;
  if (s[0] === "0") {
    const p = s.length >= 3 ? s[1]!.toLowerCase() : "";
    if (p === "b" || p === "o" || p === "x") {
      base = p === "b" ? 2 : p === "o" ? 8 : 16;
      s = s.slice(2);
    } else {
      base = 8;
      s = s.slice(1);
    }
  }
  const max = 2 ** bits - 1;
  let n = 0;
  let underscores = false;
  for (const c of s) {
    if (c === "_") {
      underscores = true;
      continue;
    }
    const lc = c.toLowerCase();
    const d = c >= "0" && c <= "9" ? c.charCodeAt(0) - 48 : lc >= "a" && lc <= "z" ? lc.charCodeAt(0) - 87 : 99;
    if (d >= base) return syntax;
    n = n * base + d;
    if (n > max) return range;
  }
  if (underscores && !underscoreOK(s0)) return syntax;
  return n;
}

/** A CNP port string → number or lower-cased name, or Cilium's error ("Unable to parse port: …"). */
export function parseCiliumPort(s: string): { port: number | string } | { error: string } {
  if (isSvcName(s)) return { port: s.toLowerCase() };
  const n = goParseUint(s);
  return typeof n === "number" ? { port: n } : { error: `Unable to parse port: ${n.error}` };
}
