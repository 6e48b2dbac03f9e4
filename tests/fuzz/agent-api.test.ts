/*
 * Agent API fuzzing: the agent's HTTP server (serveApi with the agent's own routes, over a unix socket)
 * with random methods, paths and bodies — any JSON, JSON that is not an object, random bytes, bodies over
 * the 1 MiB limit — and raw garbage that is not HTTP at all. Every request must get an answer within 5 s:
 * a JSON {code, msg} with a CNI error code and status 200/400/404/413 (never 500: the stub agent does not
 * fail, so a 500 is the API failing on its input), and the server must keep serving afterwards.
 * The routes run against a stub agent (the real one needs the kernel: tests/fuzz/agent-security.test.ts
 * drives it); the stub refuses names exactly as the agent does (agent/endpoint-names.ts).
 * FUZZ_RUNS scales the case count (default 300).
 */
import { mkdtempSync, rmSync } from "node:fs";
import type { Server } from "node:http";
import { connect } from "node:net";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import fc from "fast-check";
import { agentRoutes, callApi, MAX_BODY_BYTES, serveApi } from "../../agent/api.ts";
import type { Agent } from "../../agent/agent.ts";
import { AgentError } from "../../agent/defaults.ts";
import { endpointNamesProblem } from "../../agent/endpoint-names.ts";

const RUNS = Number(process.env.FUZZ_RUNS ?? 300);
const dir = mkdtempSync(join(tmpdir(), "ciliate-fuzz-api-"));
const socket = join(dir, "agent.sock");
let server: Server | undefined;

const stub = {
  endpointList: () => [],
  addEndpoint(req: { containerId: string; netns: string; ifname: string; pod: string }) {
    const problem = endpointNamesProblem(req);
    if (problem) throw new AgentError("BAD_REQUEST", problem, 4);
    return { ...req, ip: "10.244.0.9" };
  },
  cniResult: (ep: unknown) => ({ cniVersion: "1.0.0", ep }),
  deleteEndpoint: () => true,
  checkEndpoint: () => [],
} as unknown as Agent;

beforeAll(async () => {
  server = await serveApi(socket, agentRoutes(stub));
});
afterAll(() => {
  server?.close();
  rmSync(dir, { recursive: true, force: true });
});

/** One raw HTTP/1.1 exchange; resolves with the status line's code and the body, or rejects after 5 s. */
function raw(bytes: Buffer): Promise<{ status: number; body: string }> {
  return new Promise((resolve, reject) => {
    const s = connect(socket);
    let text = "";
    const t = setTimeout(() => {
      s.destroy();
      reject(new Error(`no answer within 5 s to ${JSON.stringify(bytes.subarray(0, 120).toString("latin1"))}`));
    }, 5000);
    s.on("data", (d) => (text += d.toString("latin1")));
    s.on("error", () => undefined); // the server may close while we write an oversized body
    s.on("close", () => {
      clearTimeout(t);
      const m = /^HTTP\/1\.1 (\d{3})/.exec(text);
      resolve({ status: m ? Number(m[1]) : 0, body: text.slice(text.indexOf("\r\n\r\n") + 4) });
    });
    s.write(bytes);
    s.end();
  });
}

function request(method: string, path: string, body: Buffer): Buffer {
  return Buffer.concat([Buffer.from(`${method} ${path} HTTP/1.1\r\nhost: agent\r\ncontent-type: application/json\r\ncontent-length: ${body.length}\r\nconnection: close\r\n\r\n`, "latin1"), body]);
}

const body = fc.oneof(
  fc.record({ containerId: fc.string(), netns: fc.string(), ifname: fc.string(), pod: fc.string(), cniVersion: fc.string() }).map((o) => Buffer.from(JSON.stringify(o))),
  fc.jsonValue().map((v) => Buffer.from(JSON.stringify(v) ?? "null")),
  fc.uint8Array({ maxLength: 200 }).map((b) => Buffer.from(b)),
  fc.constantFrom(Buffer.alloc(0), Buffer.from("null"), Buffer.from("[]"), Buffer.from('"x"'), Buffer.from("{"), Buffer.alloc(MAX_BODY_BYTES + 1, 0x20)),
);
const method = fc.constantFrom("GET", "POST", "POST", "PUT", "DELETE", "OPTIONS");
const path = fc.oneof(fc.constantFrom("/v1/cni/add", "/v1/cni/del", "/v1/cni/check", "/v1/endpoints", "/v1/healthz", "/", "/v1/cni/add?x=1", "//v1/cni/add", "/v1/../v1/cni/add", "//", "///x"), fc.webPath().map((p) => (p.startsWith("/") ? p : `/${p}`)));

describe("agent API fuzzing", () => {
  it(`${RUNS} random requests: an answer within 5 s, JSON {code, msg}, no 500, the server keeps serving`, async () => {
    const statuses = new Map<number, number>();
    await fc.assert(
      fc.asyncProperty(method, path, body, async (m, p, b) => {
        const r = await raw(request(m, p, b));
        statuses.set(r.status, (statuses.get(r.status) ?? 0) + 1);
        expect([200, 400, 404, 413], `${m} ${p} → ${r.status} ${r.body}`).toContain(r.status);
        const o = JSON.parse(r.body) as { code?: number; msg?: string };
        if (r.status !== 200) {
          expect([1, 2, 3, 4, 5, 6, 7, 999]).toContain(o.code);
          expect(typeof o.msg).toBe("string");
        }
      }),
      { numRuns: RUNS, seed: process.env.FUZZ_SEED ? Number(process.env.FUZZ_SEED) : undefined },
    );
    console.log(`agent API fuzz: ${RUNS} requests, statuses ${[...statuses].map(([k, v]) => `${k}: ${v}`).join(", ")}`);
    expect((await callApi(socket, "GET", "/v1/healthz")).status).toBe(200);
  }, 300_000);

  it("answers bytes that are not HTTP with 400 and keeps serving", async () => {
    for (const g of ["\u0000\u0001\u0002", "GET\r\n\r\n", "POST /v1/cni/add HTTP/1.1\r\ncontent-length: -1\r\n\r\n", `GET /${"a".repeat(100_000)} HTTP/1.1\r\n\r\n`]) {
      const r = await raw(Buffer.from(g, "latin1"));
      expect([0, 400, 414, 431], g.slice(0, 40)).toContain(r.status);
    }
    expect((await callApi(socket, "GET", "/v1/healthz")).status).toBe(200);
  });

  it("refuses a body over 1 MiB with 413 and JSON that is not an object with error 7", async () => {
    const big = await raw(request("POST", "/v1/cni/add", Buffer.alloc(MAX_BODY_BYTES + 10, 0x20)));
    expect(big.status).toBe(413);
    expect(JSON.parse(big.body)).toMatchObject({ code: 7, details: "BODY_TOO_LARGE" });
    for (const v of ["null", "[]", "3", '"x"']) {
      const r = await raw(request("POST", "/v1/cni/add", Buffer.from(v)));
      expect(r.status, v).toBe(400);
      expect(JSON.parse(r.body), v).toMatchObject({ code: 7, msg: "the request body must be a JSON object" });
    }
  });
});
