// Every error, from every layer, is a problem document; a path that exists under other methods is
// 405 with Allow; every answer carries the security headers; the bearer scheme is case-insensitive.

import assert from "node:assert/strict";
import { connect } from "node:net";
import { after, before, describe, test } from "node:test";
import type { Credentials } from "../src/tenants/bootstrap.ts";
import { bootstrapTenant, login, PASSWORD, startTestCloud, type TestCloud } from "./helpers.ts";

const PROBLEM = "application/problem+json; charset=utf-8";

/** Sends raw bytes to the listening server and answers what comes back until it closes. */
function rawRequest(port: number, request: string): Promise<string> {
  return new Promise((resolve, reject) => {
    const socket = connect(port, "127.0.0.1", () => socket.end(request));
    const chunks: Buffer[] = [];
    socket.on("data", (chunk) => chunks.push(chunk));
    socket.on("error", reject);
    socket.on("close", () => resolve(Buffer.concat(chunks).toString("utf8")));
  });
}

function parseRaw(answer: string): { status: number; headers: Record<string, string>; body: unknown } {
  const [head = "", body = ""] = answer.split("\r\n\r\n");
  const [statusLine = "", ...lines] = head.split("\r\n");
  const headers = Object.fromEntries(
    lines.map((line) => [line.slice(0, line.indexOf(":")).toLowerCase(), line.slice(line.indexOf(":") + 1).trim()]),
  );
  return { status: Number(statusLine.split(" ")[1]), headers, body: JSON.parse(body) };
}

describe("errors from every layer, methods and security headers", () => {
  let cloud: TestCloud;
  let port: number;
  let credentials: Credentials;
  let token: string;

  before(async () => {
    cloud = await startTestCloud();
    credentials = await bootstrapTenant(cloud.db, "Acme", ["dev-1"]);
    token = await login(cloud.app, credentials.admin.email);
    await cloud.app.listen({ port: 0, host: "127.0.0.1" });
    const address = cloud.app.server.address();
    port = typeof address === "object" && address ? address.port : 0;
  });
  after(() => cloud?.close());

  test("a path parameter over the router's limit is a 414 problem", async () => {
    const response = await cloud.app.inject({
      method: "DELETE",
      url: `/api/devices/${"d".repeat(300)}`,
      headers: { authorization: `Bearer ${token}` },
    });
    assert.equal(response.statusCode, 414);
    assert.equal(response.headers["content-type"], PROBLEM);
    assert.equal(response.json().code, "uri_too_long");
    assert.equal(response.headers["cache-control"], "no-store");
    assert.equal(response.headers["x-content-type-options"], "nosniff");
  });

  test("a URL that does not decode is a 400 problem", async () => {
    const response = await cloud.app.inject({ method: "GET", url: "/api/devices/%E0%A4%A" });
    assert.equal(response.statusCode, 400);
    assert.equal(response.headers["content-type"], PROBLEM);
    assert.equal(response.json().code, "bad_url");
  });

  test("headers over Node's limit are a 431 problem, written by the HTTP layer", async () => {
    const answer = parseRaw(
      await rawRequest(port, `GET /api/health HTTP/1.1\r\nHost: x\r\nX-Big: ${"a".repeat(20_000)}\r\n\r\n`),
    );
    assert.equal(answer.status, 431);
    assert.equal(answer.headers["content-type"], PROBLEM);
    assert.deepEqual(answer.body, {
      type: "about:blank",
      title: "Request Header Fields Too Large",
      status: 431,
      detail: "the request's headers exceed the server's limit",
      code: "headers_too_large",
    });
    assert.equal(answer.headers["cache-control"], "no-store");
  });

  test("a malformed request is a 400 problem from the HTTP layer", async () => {
    const answer = parseRaw(await rawRequest(port, "GET /api/health HTTP/1.1\r\nHost x\r\n\r\n"));
    assert.equal(answer.status, 400);
    assert.equal(answer.headers["content-type"], PROBLEM);
    assert.equal((answer.body as { code: string }).code, "bad_request");
  });

  test("a method the path does not have is 405 with Allow; a path that does not exist stays 404", async () => {
    const cases: Array<[string, string, string]> = [
      ["PUT", "/api/org", "GET, HEAD"],
      ["DELETE", "/api/auth/login", "POST"],
      ["POST", "/api/devices/dev-1/logs", "GET, HEAD"],
      ["TRACE", "/api/health", "GET, HEAD"],
      ["GET", "/api/org/members/abc", "PATCH, DELETE"],
    ];
    for (const [method, url, allow] of cases) {
      const response = await cloud.app.inject({ method: method as "PUT", url });
      assert.equal(response.statusCode, 405, `${method} ${url}`);
      assert.equal(response.headers.allow, allow, `${method} ${url}`);
      assert.equal(response.headers["content-type"], PROBLEM);
      assert.equal(response.json().code, "method_not_allowed");
    }
    // A method Fastify reads a body for, sent without Content-Type: still about the path, not the body.
    const query = parseRaw(
      await rawRequest(port, "QUERY /api/health HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n"),
    );
    assert.equal(query.status, 405);
    assert.equal(query.headers.allow, "GET, HEAD");
    const missing = await cloud.app.inject({ method: "PUT", url: "/api/nothing-here" });
    assert.equal(missing.statusCode, 404);
    assert.equal(missing.headers.allow, undefined);
  });

  test("answers that carry secrets, and the API in general, are not cached and not sniffed", async () => {
    const signIn = await cloud.app.inject({
      method: "POST",
      url: "/api/auth/login",
      payload: { email: credentials.admin.email, password: PASSWORD },
    });
    const key = await cloud.app.inject({
      method: "POST",
      url: "/api/keys",
      headers: { authorization: `Bearer ${token}` },
      payload: { name: "ci", scopes: ["read"] },
    });
    const devices = await cloud.app.inject({
      method: "GET",
      url: "/api/devices",
      headers: { authorization: `Bearer ${token}` },
    });
    for (const response of [signIn, key, devices]) {
      assert.ok(response.statusCode < 300, response.body);
      assert.equal(response.headers["cache-control"], "no-store");
      assert.equal(response.headers["x-content-type-options"], "nosniff");
      assert.match(String(response.headers["content-security-policy"]), /default-src 'none'/);
      assert.equal(response.headers["x-frame-options"], "SAMEORIGIN");
    }
  });

  test("the bearer scheme is case-insensitive", async () => {
    for (const scheme of ["bearer", "BEARER", "Bearer"]) {
      const response = await cloud.app.inject({
        method: "GET",
        url: "/api/auth/me",
        headers: { authorization: `${scheme} ${token}` },
      });
      assert.equal(response.statusCode, 200, scheme);
    }
    const other = await cloud.app.inject({
      method: "GET",
      url: "/api/auth/me",
      headers: { authorization: `Basic ${token}` },
    });
    assert.equal(other.statusCode, 401);
  });
});
