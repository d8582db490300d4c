// Error reports and log context: a 5xx reaches Sentry (a local receiver stands in for it, as the
// DSN says) as an envelope tagged with the request id, organization and device, with no secret of
// the request in it; every log line of a request names it; the log level changes at run time.

import assert from "node:assert/strict";
import { createServer, type Server } from "node:http";
import type { AddressInfo } from "node:net";
import { Writable } from "node:stream";
import { after, before, describe, test } from "node:test";
import { gunzipSync } from "node:zlib";
import { buildApp } from "../src/app.ts";
import { loadConfig } from "../src/config.ts";
import { createLogger } from "../src/observability/logger.ts";
import type { Credentials } from "../src/tenants/bootstrap.ts";
import { bearer, bootstrapTenant, login, PASSWORD, startTestCloud, type TestCloud } from "./helpers.ts";

const OPS_TOKEN = "ops-token-0123456789abcdef";

interface Envelope {
  raw: string;
  items: unknown[];
}

async function startSentryReceiver(): Promise<{ server: Server; port: number; envelopes: Envelope[] }> {
  const envelopes: Envelope[] = [];
  const server = createServer((request, response) => {
    const parts: Buffer[] = [];
    request.on("data", (part: Buffer) => parts.push(part));
    request.on("end", () => {
      const body = Buffer.concat(parts);
      const raw = (request.headers["content-encoding"] === "gzip" ? gunzipSync(body) : body).toString("utf8");
      if (request.url?.startsWith("/api/1/envelope/")) {
        envelopes.push({
          raw,
          items: raw
            .split("\n")
            .filter(Boolean)
            .map((line) => JSON.parse(line)),
        });
      }
      response.writeHead(200, { "content-type": "application/json" });
      response.end("{}");
    });
  });
  await new Promise<void>((resolve) => server.listen(0, "127.0.0.1", resolve));
  return { server, port: (server.address() as AddressInfo).port, envelopes };
}

describe("error tracking and request logs", () => {
  let cloud: TestCloud;
  let acme: Credentials;
  let sentry: Awaited<ReturnType<typeof startSentryReceiver>>;
  const lines: Array<Record<string, unknown>> = [];

  before(async () => {
    sentry = await startSentryReceiver();
    cloud = await startTestCloud({ SENTRY_DSN: `http://publickey@127.0.0.1:${sentry.port}/1`, OPS_TOKEN });
    acme = await bootstrapTenant(cloud.db, "Acme", ["dev-1"]);
    // A route that fails the way a bug does, with the request's secrets in reach of the error.
    cloud.app.get<{ Params: { deviceId: string }; Querystring: { token?: string } }>(
      "/api/devices/:deviceId/explode",
      { config: { permission: "devices:read" } },
      async (request) => {
        throw new Error(`crashed on ${request.headers.authorization} with ?token=${request.query.token}`);
      },
    );
  });
  after(async () => {
    await cloud?.close();
    sentry?.server.close();
  });

  test("a 5xx reaches Sentry tagged with request id, organization and device, and no secret", async () => {
    const session = await login(cloud.app, acme.admin.email);
    const keyAnswer = await cloud.app.inject({
      method: "POST",
      url: "/api/keys",
      headers: bearer(session),
      payload: { name: "ci", scopes: ["read"] },
    });
    const apiKey = keyAnswer.json<{ key: string }>().key;
    const response = await cloud.app.inject({
      method: "GET",
      url: `/api/devices/dev-1/explode?token=${acme.gatewayKey}`,
      headers: { ...bearer(apiKey), "x-request-id": "req-4711" },
    });
    assert.equal(response.statusCode, 500);
    assert.equal(response.headers["x-request-id"], "req-4711");
    assert.ok(!response.body.includes(apiKey));
    await cloud.app.errorTracker?.flush();
    const deadline = Date.now() + 10_000;
    while (sentry.envelopes.length === 0 && Date.now() < deadline) await new Promise((r) => setTimeout(r, 50));
    const [envelope] = sentry.envelopes;
    assert.ok(envelope, "an envelope arrived");
    const event = envelope.items.find((item) => typeof item === "object" && item !== null && "exception" in item) as {
      tags: Record<string, string>;
      exception: { values: Array<{ value: string }> };
      environment: string;
    };
    assert.ok(event, "with an event");
    assert.deepEqual(
      { request: event.tags.request_id, organization: event.tags.organization, device: event.tags.device_id },
      { request: "req-4711", organization: acme.tenantId, device: "dev-1" },
    );
    assert.match(event.exception.values[0]?.value ?? "", /^crashed on Bearer \[redacted\] with \?token=\[redacted\]$/);
    for (const secret of [apiKey, session, acme.gatewayKey, PASSWORD, ...acme.devices.map((d) => d.token)]) {
      assert.ok(!envelope.raw.includes(secret), `no ${secret.slice(0, 4)}… in the envelope`);
    }
  });

  test("a 4xx is not an error report", async () => {
    const before = sentry.envelopes.length;
    const response = await cloud.app.inject({ method: "GET", url: "/api/devices/dev-1/explode" });
    assert.equal(response.statusCode, 401);
    await cloud.app.errorTracker?.flush();
    assert.equal(sentry.envelopes.length, before);
  });

  test("a request's log lines carry its id, organization and device; the level changes at run time", async () => {
    const sink = new Writable({
      write(chunk: Buffer, _encoding, done) {
        for (const line of chunk.toString().split("\n").filter(Boolean)) lines.push(JSON.parse(line));
        done();
      },
    });
    const logger = createLogger({ service: "cloud", level: "info", destination: sink });
    const app = await buildApp({ db: cloud.db, logger, config: loadConfig({ OPS_TOKEN, EXPORT_SCHEDULER: "off" }) });
    try {
      const session = await login(app, acme.admin.email);
      const missing = await app.inject({
        method: "GET",
        url: "/api/devices/dev-9",
        headers: { ...bearer(session), "x-request-id": "req-42" },
      });
      assert.equal(missing.statusCode, 404);
      const own = lines.filter((line) => line.reqId === "req-42");
      assert.ok(own.length >= 2, "request and response lines");
      const problem = own.find((line) => line.code === "device_not_found");
      assert.deepEqual(
        { tenantId: problem?.tenantId, deviceId: problem?.deviceId },
        { tenantId: acme.tenantId, deviceId: "dev-9" },
      );

      const refused = await app.inject({ method: "PUT", url: "/ops/log-level", payload: { level: "debug" } });
      assert.equal(refused.statusCode, 401);
      const changed = await app.inject({
        method: "PUT",
        url: "/ops/log-level",
        headers: bearer(OPS_TOKEN),
        payload: { level: "debug" },
      });
      assert.deepEqual(changed.json(), { level: "debug" });
      const count = lines.length;
      app.log.debug("now visible");
      assert.ok(lines.slice(count).some((line) => line.msg === "now visible"));
      const bad = await app.inject({
        method: "PUT",
        url: "/ops/log-level",
        headers: bearer(OPS_TOKEN),
        payload: { level: "loud" },
      });
      assert.equal(bad.statusCode, 400);
    } finally {
      await app.close();
    }
  });

  test("the dashboard learns the DSN for its browser SDK, and its page may send there", async () => {
    const config = await cloud.app.inject({ method: "GET", url: "/dashboard-config.json" });
    assert.deepEqual(config.json(), {
      sentry: { dsn: `http://publickey@127.0.0.1:${sentry.port}/1`, environment: "production" },
    });
    const page = await cloud.app.inject({ method: "GET", url: "/" });
    assert.equal(page.statusCode, 200, "the dashboard is built (npm run build -w cloud)");
    assert.match(
      String(page.headers["content-security-policy"]),
      new RegExp(`connect-src 'self' http://127\\.0\\.0\\.1:${sentry.port};`),
    );
  });
});
