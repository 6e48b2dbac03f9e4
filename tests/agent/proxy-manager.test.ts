/*
 * The proxy manager's promise to the datapath (agent/proxy/manager.ts): a proxy port is in ProxyListeners
 * only while a listener really listens on it — written after listen, deleted before close, never for a
 * protocol without a handler or a UDP listener, stale entries (a dead agent's) removed, ports announced by
 * a proxy with its own sockets kept. Real transparent sockets (root), in a network namespace of its own
 * so that its ports never meet another test's. A connection to the proxy port itself (not redirected) is
 * closed without reaching a handler. Dual stack: an IPv4 and an IPv6 listener per port, a family that
 * cannot open logged and counted once and retried, the port announced while either family listens.
 * Redirected connections are covered by tests/agent/e2e-l7.test.ts and (IPv6) e2e-ipv6.test.ts.
 */
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { kernelSuite } from "../../datapath/index.ts";
import { sh } from "./e2e-helpers.ts";

const suite = kernelSuite("proxy-manager", ["root", "iproute2"]);
const NS = `cipm-${process.pid % 10000}${Math.floor(Math.random() * 1000)}`;

describe.skipIf(suite.skip)("proxy manager: ProxyListeners names exactly the ports that listen", () => {
  beforeAll(() => {
    sh("ip", ["netns", "add", NS]);
    sh("ip", ["-n", NS, "link", "set", "lo", "up"]);
  });
  afterAll(() => {
    sh("ip", ["netns", "del", NS], true);
  });

  it("opens, announces, withdraws and closes", async () => {
    // The manager runs in a child process inside the namespace: sockets belong to the creating netns.
    const out = sh("ip", ["netns", "exec", NS, process.execPath, "--import", "tsx", new URL("./proxy-manager.child.ts", import.meta.url).pathname]);
    const r = JSON.parse(out.trim().split("\n").pop()!) as Record<string, unknown>;
    expect(r).toEqual({
      afterSync: [41001],
      kafkaLogged: true,
      udpLogged: true,
      staleRemoved: true,
      directClosed: true,
      handlerCalls: 0,
      announced: [41001, 41004],
      afterRemove: [41004],
      refusedAfterRemove: true,
      announcedAfterTcpClose: [41004],
      afterWithdraw: [],
      afterClose: [],
      dual: {
        announced: [41011, 41012],
        errors: ["IPv4", "IPv6", "IPv6"],
        v6FailLogged: 1,
        direct6: "closed",
        direct4: "closed",
        blocked6: "open",
        reopened6: "closed",
        reopenLogged: true,
        afterClose: [],
      },
    });
  }, 60_000);

});
