/*
 * The TLS SNI proxy handler (PortRule.serverNames): it buffers the client's first bytes until the TLS
 * ClientHello is complete (bounded, tls-client-hello.ts), judges its server name with policy/'s
 * evaluateTls at this listener for the remote identity, and then either connects upstream, replays the
 * buffered bytes and splices both directions without terminating TLS, or refuses the connection with a
 * TCP reset. Bytes that are not a TLS ClientHello are refused the same way: serverNames requires TLS. A
 * client that sends nothing within HELLO_TIMEOUT_MS is reset too.
 */
import { evaluateTls } from "../../policy/index.ts";
import { flowEvent, l7ContextOf, nowNs, ruleReason } from "./common.ts";
import { readClientHello } from "./tls-client-hello.ts";
import type { ProxyHandler, ProxyHandlerContext, RedirectedConnection } from "./types.ts";

export const HELLO_TIMEOUT_MS = 10_000;

export class TlsProxyHandler implements ProxyHandler {
  readonly protocol = "tls" as const;

  constructor(private readonly helloTimeoutMs = HELLO_TIMEOUT_MS) {}

  handle(conn: RedirectedConnection, ctx: ProxyHandlerContext): void {
    const client = conn.client;
    const chunks: Buffer[] = [];
    let decided = false;
    const start = nowNs();
    const refuse = (verdict: "DROPPED" | "ERROR", reason: string, serverName?: string) => {
      decided = true;
      ctx.emit({ ...flowEvent(conn, "tls", "REQUEST", verdict, reason), tls: { serverName: serverName ?? "" } });
      client.resetAndDestroy();
    };
    const timer = setTimeout(() => !decided && refuse("ERROR", `no complete ClientHello within ${this.helloTimeoutMs} ms`), this.helloTimeoutMs);
    client.on("close", () => clearTimeout(timer));
    client.on("error", () => clearTimeout(timer));
    const onData = (d: Buffer) => {
      if (decided) return;
      chunks.push(d);
      const buf = chunks.length === 1 ? chunks[0] : Buffer.concat(chunks);
      const r = readClientHello(buf);
      if ("need" in r) return;
      clearTimeout(timer);
      client.off("data", onData);
      client.pause();
      if ("error" in r) return refuse("ERROR", `${r.error}: connection refused`);
      const v = evaluateTls(ctx.policy(), l7ContextOf(conn), { serverName: r.serverName });
      const reason = ruleReason(v);
      if (!v.allowed) return refuse("DROPPED", reason, r.serverName);
      decided = true;
      ctx.emit({ ...flowEvent(conn, "tls", "REQUEST", "FORWARDED", reason), tls: { serverName: r.serverName ?? "" } });
      conn.connectUpstream().then(
        (up) => {
          if (client.destroyed) return up.destroy();
          ctx.emit({ ...flowEvent(conn, "tls", "RESPONSE", "FORWARDED", reason), latencyNs: Number(nowNs() - start), tls: { serverName: r.serverName ?? "" } });
          up.write(buf);
          client.pipe(up);
          up.pipe(client);
          client.resume();
          // Half-closes travel with pipe(); a reset or error on one side resets the other.
          up.on("error", () => client.destroy());
          client.on("error", () => up.destroy());
          client.on("close", () => up.destroy());
        },
        () => {
          ctx.upstreamError("tls");
          client.resetAndDestroy();
        },
      );
    };
    client.on("data", onData);
  }
}
