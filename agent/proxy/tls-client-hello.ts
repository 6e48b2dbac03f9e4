/*
 * Reads the server_name (SNI, RFC 6066 §3) from the first TLS handshake message of a connection, the
 * ClientHello (RFC 8446 §4.1.2), without terminating TLS. The handshake message may span several TLS
 * records; bytes are examined as they arrive and the answer is "need more", "not TLS / malformed", or the
 * ClientHello's server name (undefined when it names none). Every length is checked against the bytes
 * present, and the whole ClientHello is bounded (TLS_HELLO_MAX), so a peer cannot make the proxy buffer
 * without limit.
 */

export const TLS_HELLO_MAX = 64 * 1024;

export type HelloResult = { need: true } | { error: string } | { serverName: string | undefined };

const HANDSHAKE = 22;
const CLIENT_HELLO = 1;
const EXT_SERVER_NAME = 0;

/** Joins the handshake-record fragments at the start of `buf`; `need` when the message is not complete. */
function handshakeMessage(buf: Buffer): { need: true } | { error: string } | { msg: Buffer } {
  const frags: Buffer[] = [];
  let off = 0;
  let have = 0;
  // Refuse an oversized ClientHello from its header, before its records arrive.
  if (buf.length >= 9 && buf[0] === HANDSHAKE && buf[5] === CLIENT_HELLO && 4 + buf.readUIntBE(6, 3) > TLS_HELLO_MAX)
    return { error: `ClientHello of ${4 + buf.readUIntBE(6, 3)} bytes exceeds ${TLS_HELLO_MAX}` };
  for (;;) {
    if (buf.length < off + 5) return { need: true };
    if (buf[off] !== HANDSHAKE) return { error: off === 0 ? "not a TLS handshake" : "ClientHello interrupted by another record type" };
    if (buf[off + 1] !== 3) return { error: `unknown TLS record version ${buf[off + 1]}.${buf[off + 2]}` };
    const len = buf.readUInt16BE(off + 3);
    if (len === 0 || len > 16384 + 2048) return { error: `invalid TLS record length ${len}` };
    if (buf.length < off + 5 + len) return { need: true };
    frags.push(buf.subarray(off + 5, off + 5 + len));
    have += len;
    off += 5 + len;
    const joined = frags.length === 1 ? frags[0] : Buffer.concat(frags);
    if (have >= 4) {
      if (joined[0] !== CLIENT_HELLO) return { error: `first handshake message is type ${joined[0]}, not a ClientHello` };
      const want = 4 + joined.readUIntBE(1, 3);
      if (want > TLS_HELLO_MAX) return { error: `ClientHello of ${want} bytes exceeds ${TLS_HELLO_MAX}` };
      if (have >= want) return { msg: joined.subarray(0, want) };
    }
    if (off > TLS_HELLO_MAX) return { error: `ClientHello exceeds ${TLS_HELLO_MAX} bytes` };
  }
}

/** Looks for a complete ClientHello at the start of `buf` and returns its server name. */
export function readClientHello(buf: Buffer): HelloResult {
  const h = handshakeMessage(buf);
  if (!("msg" in h)) return h;
  const m = h.msg;
  let p = 4 + 2 + 32; // header, legacy_version, random
  const bad = (what: string): HelloResult => ({ error: `malformed ClientHello: ${what}` });
  if (m.length < p + 1) return bad("truncated before session id");
  p += 1 + m[p];
  if (m.length < p + 2) return bad("truncated before cipher suites");
  p += 2 + m.readUInt16BE(p);
  if (m.length < p + 1) return bad("truncated before compression methods");
  p += 1 + m[p];
  if (m.length === p) return { serverName: undefined }; // no extensions (old clients)
  if (m.length < p + 2) return bad("truncated extensions length");
  const end = p + 2 + m.readUInt16BE(p);
  if (end > m.length) return bad("extensions overrun the message");
  p += 2;
  while (p + 4 <= end) {
    const type = m.readUInt16BE(p);
    const len = m.readUInt16BE(p + 2);
    p += 4;
    if (p + len > end) return bad("extension overruns the extensions");
    if (type === EXT_SERVER_NAME) {
      if (len < 2) return bad("empty server_name extension");
      const listEnd = p + 2 + m.readUInt16BE(p);
      if (listEnd > p + len) return bad("server name list overruns its extension");
      let q = p + 2;
      while (q + 3 <= listEnd) {
        const nameType = m[q];
        const n = m.readUInt16BE(q + 1);
        q += 3;
        if (q + n > listEnd) return bad("server name overruns its list");
        if (nameType === 0) return { serverName: m.toString("ascii", q, q + n) };
        q += n;
      }
      return { serverName: undefined };
    }
    p += len;
  }
  return { serverName: undefined };
}
