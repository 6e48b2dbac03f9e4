/*
 * Child of proxy-manager.test.ts, run inside its network namespace: drives a ProxyManager with a fake
 * ProxyListeners map and prints what the map held at each step, as one JSON line.
 */
import { connect, createServer, type Server } from "node:net";
import { ProxyManager } from "../../agent/proxy/manager.ts";
import type { ProxyListener } from "../../policy/index.ts";

const map = new Map<number, string>();
const logs: string[] = [];
let handlerCalls = 0;
const listener = (proxyPort: number, protocol: ProxyListener["protocol"], l4 = 6): ProxyListener => ({ proxyPort, endpoint: "default/server", direction: "ingress", protocol, l4Protocol: l4, port: 80, portPrefix: 16, rules: [] });
let want = new Map<number, ProxyListener>([
  [41001, listener(41001, "http")],
  [41002, listener(41002, "kafka")],
  [41003, listener(41003, "dns", 17)],
]);
const m = new ProxyManager({
  map: { set: (p, d) => void map.set(p, d), delete: (p) => void map.delete(p), ports: () => [...map.keys()] },
  listeners: () => want,
  policy: () => ({ proxies: want }) as never,
  identityOf: () => 2,
  // A DNS handler too, so that port 41003 is refused for being UDP, not for lacking a handler.
  handlers: { http: { protocol: "http", handle: () => void handlerCalls++ }, dns: { protocol: "dns", handle: () => void handlerCalls++ } },
  emit: () => {},
  log: (_l, msg) => void logs.push(msg),
});
const ports = () => [...map.keys()].sort((a, b) => a - b);
const settle = () => new Promise((r) => setTimeout(r, 200));
const tryConnect = (port: number, host = "127.0.0.1") =>
  new Promise<string>((resolve) => {
    const s = connect({ host, port });
    s.on("close", () => resolve("closed"));
    s.on("error", (e: NodeJS.ErrnoException) => resolve(e.code ?? "error"));
    setTimeout(() => (s.destroy(), resolve("open")), 1000);
  });

(async () => {
  map.set(41999, "ingress"); // left by a dead agent
  m.sync();
  await settle();
  const r: Record<string, unknown> = { afterSync: ports() };
  r.kafkaLogged = logs.some((l) => l.includes("41002") && l.includes("no kafka proxy"));
  r.udpLogged = logs.some((l) => l.includes("41003") && l.includes("UDP"));
  r.staleRemoved = !map.has(41999);
  r.directClosed = (await tryConnect(41001)) === "closed";
  r.handlerCalls = handlerCalls;
  m.announce(41004, "egress");
  m.sync();
  r.announced = ports();
  want = new Map();
  m.sync();
  await settle();
  r.afterRemove = ports();
  r.refusedAfterRemove = (await tryConnect(41001)) === "ECONNREFUSED";
  // A TCP listener closing on a port number the UDP proxy announced meanwhile (proxy ports renumbered by a
  // policy change) leaves the UDP proxy's entry in place.
  want = new Map([[41004, listener(41004, "http")]]);
  m.sync();
  await settle();
  want = new Map();
  m.sync();
  r.announcedAfterTcpClose = ports();
  m.withdraw(41004);
  r.afterWithdraw = ports();
  want = new Map([[41001, listener(41001, "http")]]);
  m.sync();
  await settle();
  m.close();
  r.afterClose = ports();

  // Dual stack: an IPv4 and an IPv6 listener per port. A family whose listener cannot open (here [::]:41012
  // and both families of 41013 are taken by plain sockets) is logged and counted once, its port announced
  // for the other family (the programs' socket lookup drops the failed family: PROXY_LOOKUP_FAILED) or not
  // at all when neither opens; retried at every sync, it opens once the port is free.
  const blockers: Server[] = [];
  const block = (port: number, host: string) =>
    new Promise<void>((resolve, reject) => {
      const b = createServer(() => {}).on("error", reject);
      blockers.push(b);
      b.listen({ port, host, ipv6Only: host === "::" }, () => resolve());
    });
  await block(41012, "::");
  await block(41013, "::");
  await block(41013, "0.0.0.0");
  const errors: string[] = [];
  logs.length = 0;
  const m6 = new ProxyManager({
    map: { set: (p, d) => void map.set(p, d), delete: (p) => void map.delete(p), ports: () => [...map.keys()] },
    listeners: () => want,
    policy: () => ({ proxies: want }) as never,
    identityOf: () => 2,
    handlers: { http: { protocol: "http", handle: () => void handlerCalls++ } },
    emit: () => {},
    metrics: { request: () => {}, upstreamError: () => {}, listenerError: (f) => void errors.push(f) },
    log: (_l, msg) => void logs.push(msg),
    families: [4, 6],
  });
  want = new Map([41011, 41012, 41013].map((p) => [p, listener(p, "http")]));
  m6.sync();
  await settle();
  m6.sync();
  await settle();
  r.dual = {
    announced: ports(),
    errors: [...errors].sort(),
    v6FailLogged: logs.filter((l) => l.includes("41012") && l.includes("IPv6") && l.includes("PROXY_LOOKUP_FAILED")).length,
    // The proxy's own IPv6 listener takes a connection to its port and closes it; the blocker holds it open.
    direct6: await tryConnect(41011, "::1"),
    direct4: await tryConnect(41011),
    blocked6: await tryConnect(41012, "::1"),
  };
  await Promise.all(blockers.splice(0, 1).map((b) => new Promise((res) => b.close(res))));
  m6.sync();
  await settle();
  (r.dual as Record<string, unknown>).reopened6 = await tryConnect(41012, "::1");
  (r.dual as Record<string, unknown>).reopenLogged = logs.some((l) => l.includes("41012") && l.includes("opened after failing"));
  m6.close();
  for (const b of blockers) b.close();
  (r.dual as Record<string, unknown>).afterClose = ports();
  process.stdout.write(JSON.stringify(r) + "\n");
  process.exit(0);
})();
