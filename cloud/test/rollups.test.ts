import assert from "node:assert/strict";
import { after, before, describe, test } from "node:test";
import { downsample } from "../src/telemetry/history.ts";
import type { HistorySample } from "../src/telemetry/history-schema.ts";
import { TelemetryStore } from "../src/telemetry/telemetry-store.ts";
import type { Credentials } from "../src/tenants/bootstrap.ts";
import { bearer, bootstrapTenant, ingest, login, startTestCloud, type TestCloud } from "./helpers.ts";

// 23:58 UTC, so the samples cross minutes, hours and a day boundary.
const T0 = Date.UTC(2026, 10, 28, 23, 58, 0);

/** 600 samples, 7 s apart (about 70 minutes); integer values keep sums exact. */
function samples(): HistorySample[] {
  return Array.from({ length: 600 }, (_, seq) => ({
    boot: 2,
    seq,
    ts: T0 + seq * 7000,
    m: (seq % 3 === 0 ? { temperature: seq % 50, pressure: 1000 + (seq % 17) } : { temperature: seq % 50 }) as Record<
      string,
      number
    >,
  }));
}

describe("rollups and latest values", () => {
  let cloud: TestCloud;
  let acme: Credentials;
  let globex: Credentials;
  let session: string;
  const all = samples();
  const send = (list: HistorySample[]) =>
    ingest(cloud.app, acme.gatewayKey, {
      // A batch holds at most 100 samples.
      telemetry: Array.from({ length: Math.ceil(list.length / 100) }, (_, i) => ({
        deviceId: "dev-1",
        batch: { v: 1, boot: 2, samples: list.slice(i * 100, i * 100 + 100).map(({ boot, ...s }) => s) },
      })),
    });
  const get = (url: string, token = session) => cloud.app.inject({ method: "GET", url, headers: bearer(token) });

  before(async () => {
    cloud = await startTestCloud();
    acme = await bootstrapTenant(cloud.db, "Acme", ["dev-1", "dev-2"]);
    globex = await bootstrapTenant(cloud.db, "Globex", ["gx-1"]);
    session = await login(cloud.app, acme.admin.email);
    assert.deepEqual((await send(all.slice(0, 400))).json(), { accepted: 400, rejected: [] });
    // A retry overlapping what was stored, as a gateway resending after a lost answer would.
    assert.deepEqual((await send(all.slice(300))).json(), { accepted: 300, rejected: [] });
    await ingest(cloud.app, acme.gatewayKey, {
      telemetry: [{ deviceId: "dev-2", batch: { v: 1, boot: 1, samples: [{ seq: 1, ts: T0, m: { rssi: -70 } }] } }],
    });
    await ingest(cloud.app, globex.gatewayKey, {
      telemetry: [{ deviceId: "gx-1", batch: { v: 1, boot: 1, samples: [{ seq: 1, ts: T0, m: { rssi: -40 } }] } }],
    });
  });
  after(() => cloud?.close());

  for (const [resolution, widthS] of [
    ["1m", 60],
    ["300", 300],
    ["1h", 3600],
    ["1d", 86_400],
  ] as const) {
    test(`${resolution} rollups equal the aggregates of the raw samples, duplicates counted once`, async () => {
      const from = Date.UTC(2026, 10, 28);
      const to = Date.UTC(2026, 10, 30);
      const response = await get(`/api/devices/dev-1/telemetry?from=${from}&to=${to}&resolution=${resolution}`);
      assert.equal(response.statusCode, 200);
      const body = response.json();
      assert.equal(body.resolution, widthS);
      assert.deepEqual(body.series, downsample(all, widthS));
      const counted = body.series.temperature.reduce((sum: number, b: { count: number }) => sum + b.count, 0);
      assert.equal(counted, all.length);
    });
  }

  test("re-applying journalled samples (a crash before the journal was cleared) changes no rollup", async () => {
    const url = `/api/devices/dev-1/telemetry?from=${T0}&to=${T0 + 86_400_000}&resolution=1h`;
    const before = (await get(url)).json();
    await cloud.db.collection("telemetry_journal").insertOne({
      tenantId: acme.tenantId,
      items: JSON.stringify([{ deviceId: "dev-1", boot: 2, samples: all.slice(0, 50).map(({ boot, ...s }) => s) }]),
    });
    await new TelemetryStore(cloud.db).applyPending();
    assert.equal(await cloud.db.collection("telemetry_journal").countDocuments({}), 0);
    assert.deepEqual((await get(url)).json(), before);
  });

  test("auto counts the window's samples in rollups: few samples over 30 days still answer raw", async () => {
    const long = await get(`/api/devices/dev-1/telemetry?from=${T0}&to=${T0 + 30 * 86_400_000}`);
    assert.equal(long.json().resolution, "raw");
    assert.equal(long.json().samples.length, all.length);
    const short = await get(`/api/devices/dev-1/telemetry?from=${T0}&to=${T0 + 60_000}`);
    assert.equal(short.json().resolution, "raw");
    assert.equal(short.json().samples.length, 9);
  });

  test("latest answers each metric's newest value per device, only the caller's organization", async () => {
    const last = all.at(-1) as HistorySample;
    const lastPressure = all.filter((s) => s.m.pressure !== undefined).at(-1) as HistorySample;
    const response = await get("/api/telemetry/latest");
    assert.equal(response.statusCode, 200);
    assert.deepEqual(response.json(), {
      items: [
        {
          deviceId: "dev-1",
          metrics: {
            temperature: { value: last.m.temperature, ts: last.ts },
            pressure: { value: lastPressure.m.pressure, ts: lastPressure.ts },
          },
          // Dropped and counted: the overlapping retry's 100 old samples and the 50 re-applied ones.
          samples: { stored: all.length, duplicates: 150 },
        },
        { deviceId: "dev-2", metrics: { rssi: { value: -70, ts: T0 } }, samples: { stored: 1, duplicates: 0 } },
      ],
    });
    const listed = await get("/api/telemetry/latest?deviceIds=dev-2,gx-1");
    assert.deepEqual(
      listed.json().items.map((item: { deviceId: string }) => item.deviceId),
      ["dev-2"],
      "another organization's device is not there",
    );
    assert.equal((await get("/api/telemetry/latest?deviceIds=a,,b")).statusCode, 400);
  });
});
