/*
 * Child of proxy-manager.test.ts, run inside its network namespace: drives a ProxyManager with a fake
 * ProxyListeners map and prints what the map held at each step, as one JSON line.
 */
import { connect } from "node:net";
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
const tryConnect = (port: number) =>
  new Promise<string>((resolve) => {
    const s = connect({ host: "127.0.0.1", port });
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
  process.stdout.write(JSON.stringify(r) + "\n");
  process.exit(0);
})();
