// Traffic inside a test network namespace (run with `ip netns exec <ns> node pod-tool.cjs …`); the box has no
// nc/ping/curl. Every mode is bounded in time and prints one JSON line.
//   serve NAME MS [PORTS]    TCP :8080 (or the comma-separated PORTS) and UDP :5353 answer "NAME", over IPv4
//                            and, where the namespace has IPv6, over IPv6 too; exits after MS
//   tcp HOST PORT            one connection → {ok, reply} (1.5 s timeout); HOST may be IPv6
//   udp HOST PORT            one datagram   → {ok, reply} (1 s timeout); HOST may be IPv6
//   loop HOST PORT MS GAP    a new connection every GAP ms for MS ms → {ok, fail, replies}
//   hold HOST PORT MS        one connection, a request every 100 ms (one at a time) for MS ms → {sent, recv, error, maxGapMs}
//   pair LPORT MS H1 P1 H2 P2  two held connections (as hold) from the one local port LPORT: to H1:P1 first and,
//                            once it has its first reply, to H2:P2 → {first, second}, each {sent, recv, error,
//                            maxGapMs, localPort}
//   http-serve NAME MS PORT  HTTP on PORT: every request gets 200 and JSON {server: NAME, method, url, peer}
//                            (and `body`, the request body, when there is one)
//   peer-serve MS PORT       TCP and UDP on PORT answer the sender's address and port as "ADDR:PORT" (what
//                            the server sees: a masqueraded pod shows its node; over IPv6 "[ADDR]:PORT",
//                            where the namespace has IPv6); a UDP datagram of more
//                            than 1,000 bytes gets "ADDR:PORT LEN" padded with spaces to LEN bytes
//   udp-size HOST PORT SIZE  one datagram of SIZE bytes (fragmented by the sender's stack when larger than
//                            the MTU) → {ok, reply, replyBytes} (2 s timeout)
//   udp-connected HOST PORT  a connected UDP socket sends one datagram → {ok, reply} or {ok: false, error}:
//                            ECONNREFUSED when an ICMP port unreachable about that datagram came back (the
//                            stack matches it to the socket by the addresses and ports inside the error)
//   sink-serve MS PORT       TCP on PORT reads a connection to its end and answers the number of bytes read
//   tcp-bulk HOST PORT BYTES one connection sends BYTES bytes (segments as large as the stack's path MTU
//                            allows, DF set as Linux does) and half-closes → {ok, received} with the count
//                            the server read, or {ok: false, error} (10 s timeout)
//   http HOST PORT METHOD PATH [N]  N requests (default 1) on one keep-alive connection → {ok, results:
//                            [{status, body}]} or {ok: false, error} (2 s timeout per request)
//   http-seq HOST PORT JSON  the requests of JSON ([{method, path, chunks?}]: chunks are written one by one,
//                            so the body goes chunked) in order on one keep-alive connection → {ok, results:
//                            [{status, body, localPort}]} or {ok: false, error, results}
const net = require("net");
const http = require("http");
const dgram = require("dgram");
const [mode, a, b, c, d] = process.argv.slice(2);
const print = (o) => process.stdout.write(JSON.stringify(o) + "\n");

function tcpOnce(host, port, timeout = 1500) {
  return new Promise((resolve) => {
    const s = net.connect({ host, port, timeout });
    let done = false;
    const finish = (o) => {
      if (!done) {
        done = true;
        s.destroy();
        resolve(o);
      }
    };
    s.on("connect", () => s.write("ping"));
    s.on("data", (x) => finish({ ok: true, reply: String(x) }));
    s.on("timeout", () => finish({ ok: false, error: "timeout" }));
    s.on("error", (e) => finish({ ok: false, error: e.code }));
  });
}

/**
 * One connection to HOST:PORT (from LPORT when not 0), a request every 100 ms for MS ms, lock-step: the next
 * request goes out only once the previous reply arrived, so TCP never coalesces two requests or two replies
 * into one read (which counted as a lost reply under load). maxGapMs is the longest wait for a reply: a
 * stall while the datapath had no agent would show there. `onReply` is called at the first reply.
 * Resolves {sent, recv, error, maxGapMs, localPort}.
 */
function holdConn(host, port, lport, ms, onReply) {
  return new Promise((resolve) => {
    const r = { sent: 0, recv: 0, error: null, maxGapMs: 0, localPort: 0 };
    let waiting = false;
    let sentAt = 0;
    let done = false;
    const finish = () => {
      if (done) return;
      done = true;
      s.destroy();
      resolve(r);
    };
    const s = net.connect({ host, port, ...(lport ? { localPort: lport } : {}) });
    s.setNoDelay(true);
    s.on("data", () => {
      if (!waiting) return;
      waiting = false;
      r.recv++;
      r.maxGapMs = Math.max(r.maxGapMs, Date.now() - sentAt);
      if (r.recv === 1 && onReply) onReply();
    });
    s.on("error", (e) => (r.error = e.code));
    s.on("connect", () => {
      r.localPort = s.localPort;
      const iv = setInterval(() => {
        if (waiting) return;
        waiting = true;
        sentAt = Date.now();
        r.sent++;
        s.write("ping");
      }, 100);
      // Room for the last reply (and a retransmission) before reporting.
      setTimeout(() => {
        clearInterval(iv);
        setTimeout(finish, 1500);
      }, ms);
    });
    setTimeout(finish, ms + 3000);
  });
}

(async () => {
  if (mode === "serve") {
    for (const port of (c || "8080").split(",").map(Number)) {
      net.createServer((s) => s.on("data", () => s.write(a)).on("error", () => {})).listen(port, "0.0.0.0");
      // IPv6 beside it (dual-stack pods); a namespace without IPv6 refuses it, which changes nothing.
      net.createServer((s) => s.on("data", () => s.write(a)).on("error", () => {})).on("error", () => {}).listen({ port, host: "::", ipv6Only: true });
    }
    const u = dgram.createSocket("udp4");
    u.on("message", (_m, r) => u.send(a, r.port, r.address));
    u.bind(5353);
    const u6 = dgram.createSocket({ type: "udp6", ipv6Only: true });
    u6.on("message", (_m, r) => u6.send(a, r.port, r.address));
    u6.on("error", () => {});
    u6.bind(5353, "::");
    setTimeout(() => process.exit(0), Number(b));
    print({ serving: a });
  } else if (mode === "tcp") {
    print(await tcpOnce(a, Number(b)));
  } else if (mode === "udp") {
    const u = dgram.createSocket(a.includes(":") ? "udp6" : "udp4");
    const t = setTimeout(() => {
      print({ ok: false, error: "timeout" });
      process.exit(0);
    }, 1000);
    u.on("message", (m) => {
      clearTimeout(t);
      print({ ok: true, reply: String(m) });
      process.exit(0);
    });
    u.send("ping", Number(b), a);
  } else if (mode === "udp-size" || mode === "udp-connected") {
    const u = dgram.createSocket("udp4");
    const t = setTimeout(() => {
      print({ ok: false, error: "timeout" });
      process.exit(0);
    }, 2000);
    const done = (o) => {
      clearTimeout(t);
      print(o);
      process.exit(0);
    };
    u.on("message", (m) => done({ ok: true, reply: String(m).trimEnd(), replyBytes: m.length }));
    u.on("error", (e) => done({ ok: false, error: e.code }));
    const payload = mode === "udp-size" ? Buffer.alloc(Number(c), 0x61) : Buffer.from("ping");
    if (mode === "udp-size") u.send(payload, Number(b), a);
    else u.connect(Number(b), a, () => u.send(payload));
  } else if (mode === "loop") {
    const end = Date.now() + Number(c);
    const r = { ok: 0, fail: 0, replies: {}, errors: {} };
    while (Date.now() < end) {
      const o = await tcpOnce(a, Number(b), 1000);
      if (o.ok) {
        r.ok++;
        r.replies[o.reply] = (r.replies[o.reply] || 0) + 1;
      } else {
        r.fail++;
        r.errors[o.error] = (r.errors[o.error] || 0) + 1;
      }
      await new Promise((res) => setTimeout(res, Number(d)));
    }
    print(r);
  } else if (mode === "peer-serve") {
    net.createServer((s) => s.on("data", () => s.write(`${s.remoteAddress}:${s.remotePort}`)).on("error", () => {})).listen(Number(b), "0.0.0.0");
    // IPv6 beside it, answering "[ADDR]:PORT"; a namespace without IPv6 refuses it, which changes nothing.
    net.createServer((s) => s.on("data", () => s.write(`[${s.remoteAddress}]:${s.remotePort}`)).on("error", () => {})).on("error", () => {}).listen({ port: Number(b), host: "::", ipv6Only: true });
    const u = dgram.createSocket("udp4");
    u.on("message", (m, r) => {
      const seen = m.length > 1000 ? `${r.address}:${r.port} ${m.length}` : `${r.address}:${r.port}`;
      u.send(seen.padEnd(m.length > 1000 ? m.length : 0, " "), r.port, r.address);
    });
    u.bind(Number(b));
    const u6 = dgram.createSocket({ type: "udp6", ipv6Only: true });
    u6.on("message", (_m, r) => u6.send(`[${r.address}]:${r.port}`, r.port, r.address));
    u6.on("error", () => {});
    u6.bind(Number(b), "::");
    setTimeout(() => process.exit(0), Number(a));
    print({ serving: b });
  } else if (mode === "sink-serve") {
    net
      .createServer((s) => {
        let n = 0;
        s.on("data", (x) => (n += x.length));
        s.on("end", () => s.end(String(n)));
        s.on("error", () => {});
      })
      .listen(Number(b), "0.0.0.0");
    setTimeout(() => process.exit(0), Number(a));
    print({ serving: b });
  } else if (mode === "tcp-bulk") {
    const s = net.connect({ host: a, port: Number(b) });
    const t = setTimeout(() => {
      print({ ok: false, error: "timeout" });
      process.exit(0);
    }, 10000);
    let reply = "";
    s.on("connect", () => s.end(Buffer.alloc(Number(c), 0x62)));
    s.on("data", (x) => (reply += x));
    s.on("end", () => {
      clearTimeout(t);
      print({ ok: true, received: Number(reply) });
      process.exit(0);
    });
    s.on("error", (e) => {
      clearTimeout(t);
      print({ ok: false, error: e.code });
      process.exit(0);
    });
  } else if (mode === "http-serve") {
    const handler = (req, res) => {
      let body = "";
      req.on("data", (x) => (body += x));
      req.on("end", () => res.end(JSON.stringify({ server: a, method: req.method, url: req.url, peer: req.socket.remoteAddress, ...(body ? { body } : {}) })));
    };
    http.createServer(handler).listen(Number(c), "0.0.0.0");
    // IPv6 beside it (dual-stack pods); a namespace without IPv6 refuses it, which changes nothing.
    http.createServer(handler).on("error", () => {}).listen({ port: Number(c), host: "::", ipv6Only: true });
    setTimeout(() => process.exit(0), Number(b));
    print({ serving: a });
  } else if (mode === "http" || mode === "http-seq") {
    const agent = new http.Agent({ keepAlive: true, maxSockets: 1 });
    const results = [];
    const one = ({ method, path, chunks }) =>
      new Promise((resolve) => {
        // Chunked by header: Node's client would not chunk a GET body by itself.
        const headers = chunks ? { "transfer-encoding": "chunked" } : {};
        const req = http.request({ host: a, port: Number(b), method, path, agent, headers, timeout: 2000 }, (res) => {
          let body = "";
          res.on("data", (x) => (body += x));
          res.on("end", () => resolve({ status: res.statusCode, body, ...(mode === "http-seq" ? { localPort: req.socket.localPort } : {}) }));
        });
        req.on("timeout", () => req.destroy(Object.assign(new Error("timeout"), { code: "timeout" })));
        req.on("error", (e) => resolve({ error: e.code || e.message }));
        for (const chunk of chunks || []) req.write(chunk);
        req.end();
      });
    const seq = mode === "http-seq" ? JSON.parse(c) : Array.from({ length: Number(process.argv[7] || 1) }, () => ({ method: c, path: d }));
    for (const spec of seq) {
      const r = await one(spec);
      if (r.error) {
        print({ ok: false, error: r.error, results });
        process.exit(0);
      }
      results.push(r);
    }
    print({ ok: true, results });
    process.exit(0);
  } else if (mode === "hold") {
    print(await holdConn(a, Number(b), 0, Number(c)));
    process.exit(0);
  } else if (mode === "pair") {
    // Two connections from one explicit local port (SO_REUSEADDR, which libuv sets on every TCP bind): the
    // first is connected and answered before the second is opened, so both hold the port at once.
    const lport = Number(a);
    const ms = Number(b);
    const [h1, p1, h2, p2] = process.argv.slice(5, 9);
    let firstUp;
    const up = new Promise((res) => (firstUp = res));
    const first = holdConn(h1, Number(p1), lport, ms + 1000, firstUp);
    await Promise.race([up, new Promise((res) => setTimeout(res, 5000))]);
    const second = holdConn(h2, Number(p2), lport, ms);
    const [x, y] = await Promise.all([first, second]);
    print({ first: x, second: y });
    process.exit(0);
  }
})();
