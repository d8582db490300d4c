import assert from "node:assert/strict";
import { after, before, describe, test } from "node:test";
import type { Credentials } from "../src/tenants/bootstrap.ts";
import { bearer, bootstrapTenant, ingest, login, startTestCloud, type TestCloud } from "./helpers.ts";

// Just before an hour boundary, so the samples span two hourly buckets.
const T0 = Date.UTC(2026, 10, 29, 10, 59, 0);

interface Sample {
  seq: number;
  ts: number;
  m: Record<string, number>;
}

/** 120 samples, 1 s apart; temperature = seq, pressure only on even seqs. */
function samples(): Sample[] {
  return Array.from(
    { length: 120 },
    (_, seq): Sample => ({
      seq,
      ts: T0 + seq * 1000,
      m: seq % 2 === 0 ? { temperature: seq, pressure: 100_000 + seq } : { temperature: seq },
    }),
  );
}

describe("telemetry history", () => {
  let cloud: TestCloud;
  let acme: Credentials;
  let globex: Credentials;
  let session: string;

  const history = (deviceId: string, query: string, token = session) =>
    cloud.app.inject({ method: "GET", url: `/api/devices/${deviceId}/telemetry?${query}`, headers: bearer(token) });

  before(async () => {
    cloud = await startTestCloud();
    acme = await bootstrapTenant(cloud.db, "Acme", ["dev-1", "dev-quiet", "dev-busy"]);
    globex = await bootstrapTenant(cloud.db, "Globex", ["gx-1"]);
    session = await login(cloud.app, acme.admin.email);
    const all = samples();
    // Out of order and in two requests, as retries after an outage would deliver them.
    const stored = await ingest(cloud.app, acme.gatewayKey, {
      telemetry: [
        { deviceId: "dev-1", batch: { v: 1, boot: 3, samples: all.slice(60) } },
        { deviceId: "dev-1", batch: { v: 1, boot: 3, samples: all.slice(0, 60) } },
      ],
    });
    assert.deepEqual(stored.json(), { accepted: 120, rejected: [] });
    await ingest(cloud.app, globex.gatewayKey, {
      telemetry: [{ deviceId: "gx-1", batch: { v: 1, boot: 1, samples: all.slice(0, 3) } }],
    });
  });
  after(() => cloud?.close());

  test("raw returns exactly the stored samples in the window, ordered by time, across hourly buckets", async () => {
    const response = await history("dev-1", `from=${T0}&to=${T0 + 120_000}&resolution=raw`);
    assert.equal(response.statusCode, 200);
    const body = response.json();
    assert.equal(body.resolution, "raw");
    assert.equal(body.from, T0);
    assert.equal(body.to, T0 + 120_000);
    assert.deepEqual(
      body.samples,
      samples().map((s) => ({ boot: 3, ...s })),
    );
    const window = await history("dev-1", `from=${T0 + 10_000}&to=${T0 + 13_000}&resolution=raw`);
    assert.deepEqual(
      window.json().samples.map((s: Sample) => s.seq),
      [10, 11, 12],
      "from is inclusive, to exclusive",
    );
  });

  test("ISO 8601 times and a metrics filter select what is asked for", async () => {
    const from = new Date(T0 + 60_000).toISOString();
    const to = new Date(T0 + 64_000).toISOString();
    const response = await history("dev-1", `from=${from}&to=${to}&resolution=raw&metrics=pressure`);
    assert.deepEqual(response.json().samples, [
      { boot: 3, seq: 60, ts: T0 + 60_000, m: { pressure: 100_060 } },
      { boot: 3, seq: 62, ts: T0 + 62_000, m: { pressure: 100_062 } },
    ]);
  });

  test("downsampled buckets carry avg, min, max and count per metric", async () => {
    const response = await history("dev-1", `from=${T0}&to=${T0 + 120_000}&resolution=60`);
    assert.equal(response.statusCode, 200);
    const body = response.json();
    assert.equal(body.resolution, 60);
    // T0 is minute-aligned: seqs 0..59 fall in the first minute, 60..119 in the second.
    assert.deepEqual(body.series.temperature, [
      { ts: T0, avg: 29.5, min: 0, max: 59, count: 60 },
      { ts: T0 + 60_000, avg: 89.5, min: 60, max: 119, count: 60 },
    ]);
    assert.deepEqual(body.series.pressure, [
      { ts: T0, avg: 100_029, min: 100_000, max: 100_058, count: 30 },
      { ts: T0 + 60_000, avg: 100_089, min: 100_060, max: 100_118, count: 30 },
    ]);
    assert.equal(body.samples, undefined);
  });

  test("auto answers raw for a small window", async () => {
    const response = await history("dev-1", `from=${T0}&to=${T0 + 120_000}`);
    assert.equal(response.json().resolution, "raw");
    assert.equal(response.json().samples.length, 120);
  });

  test("auto downsamples a window holding more samples than a raw answer should", async () => {
    const start = T0 + 3_600_000;
    const telemetry = Array.from({ length: 31 }, (_, b) => ({
      deviceId: "dev-busy",
      batch: {
        v: 1,
        boot: 1,
        samples: Array.from({ length: 100 }, (_, i) => ({
          seq: b * 100 + i,
          ts: start + (b * 100 + i) * 1000,
          m: { temperature: 20 },
        })),
      },
    }));
    assert.equal((await ingest(cloud.app, acme.gatewayKey, { telemetry })).json().accepted, 3100);
    const response = await history("dev-busy", `from=${start}&to=${start + 3_600_000}`);
    const body = response.json();
    // 3,600 s in at most 1,000 points: 5 s buckets.
    assert.equal(body.resolution, 5);
    assert.equal(body.series.temperature.length, 620);
    assert.equal(
      body.series.temperature.reduce((n: number, a: { count: number }) => n + a.count, 0),
      3100,
    );
  });

  test("the default window is the last hour", async () => {
    const before = Date.now();
    const body = (await history("dev-quiet", "")).json();
    assert.ok(body.to >= before && body.to <= Date.now());
    assert.equal(body.to - body.from, 3_600_000);
    assert.deepEqual(body.samples, []);
  });

  test("queries that make no range are 400 invalid_query; malformed values are refused by the schema", async () => {
    for (const query of [
      `from=${T0 + 1000}&to=${T0}`,
      `from=${T0}&to=${T0 + 40 * 86_400_000}`,
      `from=${T0}&to=${T0 + 86_400_000}&resolution=1`,
    ]) {
      const response = await history("dev-1", query);
      assert.equal(response.statusCode, 400, query);
      assert.equal(response.json().code, "invalid_query", query);
    }
    for (const query of ["from=yesterday", "resolution=0", "resolution=fast", "metrics=Temperature", "to=2026-13-01"]) {
      const response = await history("dev-1", query);
      assert.equal(response.statusCode, 400, query);
      assert.equal(response.json().code, "invalid_request", query);
    }
    const unknown = await history("dev-1", "limit=5");
    assert.equal(unknown.statusCode, 400);
    assert.equal(unknown.json().code, "invalid_request");
  });

  test("another tenant's device and an unknown device answer 404", async () => {
    for (const deviceId of ["gx-1", "dev-404"]) {
      const response = await history(deviceId, `from=${T0}&to=${T0 + 120_000}`);
      assert.equal(response.statusCode, 404);
      assert.equal(response.json().code, "device_not_found");
      const device = await cloud.app.inject({
        method: "GET",
        url: `/api/devices/${deviceId}`,
        headers: bearer(session),
      });
      assert.equal(device.statusCode, 404);
    }
    const list = await cloud.app.inject({ method: "GET", url: "/api/devices", headers: bearer(session) });
    assert.deepEqual(
      list.json().items.map((d: { deviceId: string }) => d.deviceId),
      ["dev-1", "dev-busy", "dev-quiet"],
    );
    const globexSession = await login(cloud.app, globex.admin.email);
    const own = await history("gx-1", `from=${T0}&to=${T0 + 120_000}`, globexSession);
    assert.equal(own.json().samples.length, 3, "the owner sees it");
  });

  test("the history route needs a session", async () => {
    const response = await cloud.app.inject({ method: "GET", url: "/api/devices/dev-1/telemetry" });
    assert.equal(response.statusCode, 401);
  });
});
