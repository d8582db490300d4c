// The cloud's /metrics through prom-client: HTTP latency by route pattern and status, ingest and
// apply lag, journal depth, MongoDB command latency, alerts, webhooks, devices online, process
// metrics; valid for `promtool check metrics`; and closed with OPS_TOKEN.

import assert from "node:assert/strict";
import { after, before, describe, test } from "node:test";
import { promtoolCheckMetrics } from "../../gateway/test/promtool.ts";
import type { Credentials } from "../src/tenants/bootstrap.ts";
import { batch, bearer, bootstrapTenant, ingest, login, startTestCloud, type TestCloud } from "./helpers.ts";

const TOKEN = "scrape-token-0123456789abcdef";

describe("cloud metrics", () => {
  let cloud: TestCloud;
  let acme: Credentials;

  before(async () => {
    cloud = await startTestCloud({ OPS_TOKEN: TOKEN });
    acme = await bootstrapTenant(cloud.db, "Acme", ["dev-1"]);
  });
  after(() => cloud?.close());

  const scrape = (token?: string) =>
    cloud.app.inject({ method: "GET", url: "/metrics", headers: token ? bearer(token) : {} });

  test("a scrape after real traffic shows every family and passes promtool", async () => {
    const response = await ingest(cloud.app, acme.gatewayKey, {
      telemetry: [{ deviceId: "dev-1", batch: batch(1, 0, 5, Date.now() - 10_000) }],
      states: [{ deviceId: "dev-1", receivedAt: Date.now(), state: { v: 1, online: true } }],
    });
    assert.equal(response.statusCode, 200);
    const session = await login(cloud.app, acme.admin.email);
    // A GET settles the journal: the samples are applied (and observed) before it answers.
    const device = await cloud.app.inject({ method: "GET", url: "/api/devices/dev-1", headers: bearer(session) });
    assert.equal(device.statusCode, 200);
    assert.equal(
      (await cloud.app.inject({ method: "GET", url: "/api/devices/nope", headers: bearer(session) })).statusCode,
      404,
    );

    const scraped = await scrape(TOKEN);
    assert.equal(scraped.statusCode, 200);
    assert.match(String(scraped.headers["content-type"]), /^text\/plain; version=0\.0\.4/);
    const text = scraped.body;
    // Route patterns, never raw paths: one series per route, not per device.
    assert.match(
      text,
      /^kestrel_cloud_http_request_duration_seconds_count\{method="GET",route="\/api\/devices\/:deviceId",status_code="404"\} 1$/m,
    );
    assert.doesNotMatch(text, /route="\/api\/devices\/dev-1"/);
    assert.match(text, /^kestrel_cloud_ingest_samples_total 5$/m);
    assert.match(text, /^kestrel_cloud_ingest_apply_lag_seconds_count [1-9]/m);
    assert.match(text, /^kestrel_cloud_telemetry_journal_depth 0$/m);
    assert.match(text, /^kestrel_cloud_telemetry_journal_oldest_age_seconds 0$/m);
    assert.match(
      text,
      /^kestrel_cloud_mongodb_operation_duration_seconds_count\{command="insert",outcome="ok"\} [1-9]/m,
    );
    assert.match(text, /^kestrel_cloud_devices_online 1$/m);
    for (const name of [
      "kestrel_cloud_alerts_firing",
      "kestrel_cloud_alert_evaluations_total",
      "kestrel_cloud_webhook_deliveries_total",
      "kestrel_cloud_webhook_delivery_duration_seconds",
      "kestrel_cloud_webhook_queue_depth",
      "kestrel_cloud_webhook_queue_oldest_age_seconds",
      "process_resident_memory_bytes",
      "nodejs_eventloop_lag_seconds",
    ]) {
      assert.match(text, new RegExp(`^# TYPE ${name} `, "m"), name);
    }
    const check = await promtoolCheckMetrics(text);
    assert.equal(check.code, 0, check.output);
    assert.equal(check.output.trim(), "", "no lint findings");
  });

  test("with OPS_TOKEN set, a scrape without it is refused", async () => {
    assert.equal((await scrape()).statusCode, 401);
    assert.equal((await scrape("wrong-token-0123456789abcd")).statusCode, 401);
  });
});
