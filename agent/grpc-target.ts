/*
 * The addresses ciliate dials and serves the Hubble Observer API on, as text a user types: a unix socket
 * (`unix:///var/run/ciliate/hubble.sock`) or a TCP address (`host:port`, `[v6]:port`). Checked before
 * anything is dialled, so a typo is a one-line error instead of a connection that never comes up.
 * (Kept apart from the gRPC code so the command line checks flags without loading gRPC.)
 */

/**
 * Why `text` is not a gRPC target ciliate can dial (`unix:///abs/path`, `host:port`, `[v6]:port`), or
 * undefined when it is one. `flag` names the option in the message.
 */
export function targetProblem(text: string, flag: string): string | undefined {
  if (text.startsWith("unix:")) {
    return /^unix:\/\/\/[^\0]+$/.test(text) ? undefined : `${flag} ${JSON.stringify(text)}: expected unix:///absolute/path/to/hubble.sock`;
  }
  const m = /^(\[[0-9a-fA-F:.]+\]|[A-Za-z0-9.-]+):(\d{1,5})$/.exec(text);
  return m && Number(m[2]) >= 1 && Number(m[2]) <= 65535 ? undefined : `${flag} ${JSON.stringify(text)}: expected host:port, [v6]:port or unix:///path`;
}

/**
 * A bind address (`host:port`, `[v6]:port`, or `:port` for every address, as Cilium's `:4244`) in the
 * form grpc-js binds, or a one-line problem naming `flag`.
 */
export function bindAddress(text: string, flag: string): { address: string } | { problem: string } {
  const m = /^(\[[0-9a-fA-F:.]+\]|[A-Za-z0-9.-]*):(\d{1,5})$/.exec(text);
  if (!m || Number(m[2]) > 65535) return { problem: `${flag} ${JSON.stringify(text)}: expected host:port, [v6]:port or :port, e.g. 127.0.0.1:4245` };
  return { address: `${m[1] || "0.0.0.0"}:${m[2]}` };
}
