// The TLS SNI handler on loopback: Node's TLS client through the proxy to a TLS server. The proxy never
// terminates TLS: the client verifies the server's own certificate end to end.
import { readFileSync } from "node:fs";
import { connect as netConnect, type AddressInfo } from "node:net";
import { connect as tlsConnect, createServer, type Server } from "node:tls";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { compileYaml, podsYaml } from "../../policy/test-helpers.ts";
import { readClientHello, TLS_HELLO_MAX } from "./tls-client-hello.ts";
import { TlsProxyHandler } from "./tls.ts";
import { startHarness, type Harness } from "./test-harness.ts";

const cert = readFileSync(new URL("./testdata/tls-test.crt", import.meta.url));
const key = readFileSync(new URL("./testdata/tls-test.key", import.meta.url));

const yaml =
  podsYaml([{ ns: "x", name: "client", labels: { app: "client" } }]) +
  `\n---\napiVersion: cilium.io/v2\nkind: CiliumNetworkPolicy\nmetadata: {name: sni, namespace: x}
spec:
  endpointSelector: {matchLabels: {app: client}}
  egress:
  - toCIDR: [127.0.0.0/8]
    toPorts: [{ports: [{port: '443', protocol: TCP}], serverNames: [api.empire.example, '*.cdn.empire.example']}]
`;
const { compiled } = compileYaml(yaml);
const listener = [...compiled.proxies.values()][0];

let server: Server;
let accepted = 0;
let h: Harness;

beforeAll(async () => {
  server = createServer({ cert, key }, (s) => {
    accepted++;
    s.on("data", (d) => s.write(`echo:${d}`));
    s.on("error", () => {});
  });
  await new Promise<void>((r) => server.listen(0, "127.0.0.1", r));
  h = await startHarness(new TlsProxyHandler(500), compiled, {
    proxyPort: listener.proxyPort,
    direction: "egress",
    sourceIdentity: compiled.identities.podIdentity.get("x/client")!,
    destinationIdentity: compiled.cidrIdentities[0].identity,
    upstreamPort: (server.address() as AddressInfo).port,
  });
});
afterAll(async () => {
  await h.close();
  await new Promise<void>((r) => server.close(() => r()));
});

function hello(servername: string | undefined): Promise<string> {
  return new Promise((resolve) => {
    const s = tlsConnect({ host: "127.0.0.1", port: h.port, servername, ca: cert, checkServerIdentity: () => undefined }, () => s.write("ping"));
    s.on("data", (d) => {
      resolve(String(d));
      s.end();
    });
    s.on("error", (e: NodeJS.ErrnoException) => resolve(`error ${e.code}`));
  });
}

describe("TLS SNI handler", () => {
  it("a listed server name passes end to end without termination (the client verifies the server's certificate)", async () => {
    expect(await new Promise<string>((resolve) => {
      const s = tlsConnect({ host: "127.0.0.1", port: h.port, servername: "api.empire.example", ca: cert }, () => s.write("ping"));
      s.on("data", (d) => (resolve(`${d} ${s.authorized}`), s.end()));
      s.on("error", (e) => resolve(`error ${e.message}`));
    })).toBe("echo:ping true");
    expect(await hello("img.cdn.empire.example")).toBe("echo:ping");
  });
  it("other names and a ClientHello without SNI are reset before anything reaches the server", async () => {
    const before = accepted;
    h.events.length = 0;
    expect(await hello("rebels.example")).toBe("error ECONNRESET");
    expect(await hello(undefined)).toBe("error ECONNRESET");
    expect(accepted).toBe(before);
    expect(h.events.map((e) => `${e.verdict} ${e.tls!.serverName}`)).toEqual(["DROPPED rebels.example", "DROPPED "]);
    expect(h.events[0].reason).toMatch(/not in serverNames/);
  });
  it("plain text, and silence, are refused (serverNames requires TLS)", async () => {
    const plain = await new Promise<string>((resolve) => {
      const s = netConnect(h.port, "127.0.0.1", () => s.write("GET / HTTP/1.1\r\n\r\n"));
      s.on("error", (e: NodeJS.ErrnoException) => resolve(e.code ?? "error"));
      s.on("close", () => resolve("closed"));
    });
    const silent = await new Promise<string>((resolve) => {
      const s = netConnect(h.port, "127.0.0.1");
      s.on("error", (e: NodeJS.ErrnoException) => resolve(e.code ?? "error"));
      s.on("close", () => resolve("closed"));
    });
    expect([plain, silent]).toEqual(["ECONNRESET", "ECONNRESET"]);
  });
});

describe("readClientHello", () => {
  /** A real ClientHello, captured from Node's TLS client. */
  async function captured(servername?: string): Promise<Buffer> {
    const { createServer: netServer } = await import("node:net");
    return new Promise((resolve) => {
      const srv = netServer((s) => s.once("data", (d) => (resolve(d), s.destroy(), srv.close())));
      srv.listen(0, "127.0.0.1", () => {
        const c = tlsConnect({ host: "127.0.0.1", port: (srv.address() as AddressInfo).port, servername });
        c.on("error", () => {});
      });
    });
  }
  it("reads SNI from a real ClientHello; every strict prefix needs more", async () => {
    const ch = await captured("api.empire.example");
    expect(readClientHello(ch)).toEqual({ serverName: "api.empire.example" });
    for (let n = 0; n < ch.length; n += 7) expect(readClientHello(ch.subarray(0, n))).toEqual({ need: true });
  });
  it("a ClientHello split over two TLS records is joined", async () => {
    const ch = await captured("a.cdn.empire.example");
    const body = ch.subarray(5);
    const rec = (b: Buffer) => Buffer.concat([Buffer.from([22, 3, 1, b.length >> 8, b.length & 0xff]), b]);
    expect(readClientHello(Buffer.concat([rec(body.subarray(0, 40)), rec(body.subarray(40))]))).toEqual({ serverName: "a.cdn.empire.example" });
  });
  it("malformed input is an error, never an exception, and sizes are bounded", async () => {
    const ch = await captured("api.empire.example");
    const flips = [0, 5, 9, 43, 44, 80, ch.length - 3];
    for (const i of flips) {
      const x = Buffer.from(ch);
      x[i] ^= 0xff;
      const r = readClientHello(x);
      expect("need" in r || "error" in r || "serverName" in r).toBe(true);
    }
    expect(readClientHello(Buffer.from("GET / HTTP/1.1\r\n"))).toEqual({ error: "not a TLS handshake" });
    const huge = Buffer.from([22, 3, 1, 0x10, 0, 1, 0xff, 0xff, 0xff]);
    expect(readClientHello(huge)).toEqual({ error: `ClientHello of ${4 + 0xffffff} bytes exceeds ${TLS_HELLO_MAX}` });
  });
});
