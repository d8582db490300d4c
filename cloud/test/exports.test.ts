import assert from "node:assert/strict";
import { after, before, describe, test } from "node:test";
import type { TelemetrySample } from "@kestrel/wire";
import { CSV_HEADER, csvField } from "../src/exports/export-format.ts";
import { exportWorkers, MAX_EXPORT_WORKERS } from "../src/exports/export-workers.ts";
import { TelemetryStore } from "../src/telemetry/telemetry-store.ts";
import type { Credentials } from "../src/tenants/bootstrap.ts";
import { parseCsv } from "./csv.ts";
import { addMember, bearer, bootstrapTenant, login, startTestCloud, type TestCloud } from "./helpers.ts";

// Just before an hour boundary, so the samples span two hourly buckets.
const T0 = Date.UTC(2026, 10, 29, 10, 59, 0);
// Enough CSV lines for the answer to be written in many chunks.
const BUSY_SAMPLES = 4000;

interface ExportedRecord {
  deviceId: string;
  boot: number;
  seq: number;
  ts: number;
  m: Record<string, number>;
}

/** Values that do not survive a careless number format: fractions, negatives, large and tiny. */
function samples(count: number, step: number): TelemetrySample[] {
  return Array.from(
    { length: count },
    (_, seq): TelemetrySample => ({
      seq,
      ts: T0 + seq * step,
      m:
        seq % 3 === 0
          ? { temperature: 0.1 + 0.2 + seq, pressure: 100_000 + seq * 1e-7 }
          : { temperature: -seq / 7, humidity: 1e21 + seq, wind: 5e-324 * seq },
    }),
  );
}

const quiet = samples(90, 1000);
const busy = samples(BUSY_SAMPLES, 1000);

function records(deviceId: string, list: TelemetrySample[], boot: number): ExportedRecord[] {
  return list.map((sample) => ({ deviceId, boot, ...sample }));
}

/** Back from the CSV long format: one record per (device, boot, seq), in order of appearance. */
function fromCsv(text: string): ExportedRecord[] {
  const [header, ...rows] = parseCsv(text);
  assert.deepEqual(header, [...CSV_HEADER]);
  const byKey = new Map<string, ExportedRecord>();
  for (const [ts, deviceId, boot, seq, metric, value] of rows) {
    assert.ok(ts && deviceId && boot && seq && metric && value !== undefined, "six fields per row");
    const key = `${deviceId}|${boot}|${seq}`;
    let record = byKey.get(key);
    if (!record) {
      record = { deviceId, boot: Number(boot), seq: Number(seq), ts: Date.parse(ts), m: {} };
      byKey.set(key, record);
    }
    record.m[metric] = Number(value);
  }
  return [...byKey.values()];
}

describe("telemetry export", () => {
  let cloud: TestCloud;
  let acme: Credentials;
  let globex: Credentials;
  let session: string;

  const get = (url: string, token = session) => cloud.app.inject({ method: "GET", url, headers: bearer(token) });
  const range = `from=${T0}&to=${T0 + 3_600_000}`;

  before(async () => {
    cloud = await startTestCloud();
    acme = await bootstrapTenant(cloud.db, "Acme", ["dev-1", "dev-busy", "dev-none", "dev-long"]);
    globex = await bootstrapTenant(cloud.db, "Globex", ["gx-1"]);
    session = await login(cloud.app, acme.admin.email);
    const store = new TelemetryStore(cloud.db);
    // Out of order, as retries after an outage deliver them.
    await store.store(acme.tenantId, [
      { deviceId: "dev-1", batch: { v: 1, boot: 2, samples: quiet.slice(45) } },
      { deviceId: "dev-1", batch: { v: 1, boot: 2, samples: quiet.slice(0, 45) } },
      { deviceId: "dev-busy", batch: { v: 1, boot: 7, samples: busy } },
    ]);
    await store.store(globex.tenantId, [{ deviceId: "gx-1", batch: { v: 1, boot: 1, samples: quiet } }]);
  });
  after(() => cloud?.close());

  test("CSV parses back to exactly the stored samples, with its content type and file name", async () => {
    const response = await get(`/api/devices/dev-1/telemetry/export?format=csv&${range}`);
    assert.equal(response.statusCode, 200);
    assert.equal(response.headers["content-type"], "text/csv; charset=utf-8");
    assert.equal(
      response.headers["content-disposition"],
      'attachment; filename="telemetry-dev-1-20261129T105900Z-20261129T115900Z.csv"',
    );
    assert.deepEqual(fromCsv(response.body), records("dev-1", quiet, 2));
    const lines = quiet.reduce((n, sample) => n + Object.keys(sample.m).length, 0);
    assert.equal(response.body.split("\r\n").length, 1 + lines + 1, "header, one line per value, final CRLF");
  });

  test("a long CSV streamed in many chunks still parses back exactly", async () => {
    const response = await get(`/api/devices/dev-busy/telemetry/export?${range}`);
    assert.equal(response.statusCode, 200);
    assert.ok(response.body.length > 4 * 64 * 1024, "larger than a few chunks");
    assert.deepEqual(fromCsv(response.body), records("dev-busy", busy.slice(0, 3600), 7));
  });

  test("JSON and NDJSON parse back to exactly the stored samples", async () => {
    const json = await get(`/api/devices/dev-1/telemetry/export?format=json&${range}`);
    assert.equal(json.statusCode, 200);
    assert.equal(json.headers["content-type"], "application/json");
    assert.match(String(json.headers["content-disposition"]), /filename="telemetry-dev-1-.*\.json"$/);
    assert.deepEqual(json.json(), records("dev-1", quiet, 2));

    const ndjson = await get(`/api/devices/dev-1/telemetry/export?format=ndjson&${range}`);
    assert.equal(ndjson.headers["content-type"], "application/x-ndjson");
    const lines = ndjson.body.split("\n");
    assert.equal(lines.pop(), "", "every record ends with a newline");
    assert.deepEqual(
      lines.map((line) => JSON.parse(line)),
      records("dev-1", quiet, 2),
    );
  });

  test("an empty range is a header only, or an empty array", async () => {
    const csv = await get(`/api/devices/dev-none/telemetry/export?${range}`);
    assert.equal(csv.body, `${CSV_HEADER.join(",")}\r\n`);
    const json = await get(`/api/devices/dev-none/telemetry/export?format=json&${range}`);
    assert.deepEqual(json.json(), []);
  });

  test("the window and metrics select what is asked for; a sample without them is left out", async () => {
    const from = new Date(T0 + 10_000).toISOString();
    const to = new Date(T0 + 16_000).toISOString();
    const response = await get(
      `/api/devices/dev-1/telemetry/export?format=json&from=${from}&to=${to}&metrics=pressure`,
    );
    assert.deepEqual(
      response.json(),
      [12, 15].map((seq) => ({
        deviceId: "dev-1",
        boot: 2,
        seq,
        ts: T0 + seq * 1000,
        m: { pressure: 100_000 + seq * 1e-7 },
      })),
    );
  });

  test("an organization-wide export holds the listed devices, or all, and nothing of another organization", async () => {
    const listed = await get(`/api/telemetry/export?devices=dev-1,dev-busy&format=ndjson&${range}`);
    assert.equal(listed.statusCode, 200);
    assert.match(String(listed.headers["content-disposition"]), /filename="telemetry-devices-.*\.ndjson"$/);
    const expected = [...records("dev-1", quiet, 2), ...records("dev-busy", busy.slice(0, 3600), 7)];
    const parse = (body: string) =>
      body
        .split("\n")
        .filter(Boolean)
        .map((line) => JSON.parse(line));
    assert.deepEqual(parse(listed.body), expected);
    const all = await get(`/api/telemetry/export?devices=all&format=csv&${range}`);
    assert.deepEqual(fromCsv(all.body), expected);
  });

  test("a viewer may export", async () => {
    await addMember(cloud.db, acme.tenantId, "viewer@acme.test", "viewer");
    const viewer = await login(cloud.app, "viewer@acme.test");
    const response = await get(`/api/devices/dev-1/telemetry/export?format=json&${range}`, viewer);
    assert.equal(response.statusCode, 200);
    assert.equal(response.json().length, quiet.length);
  });

  test("bad input answers 400 before anything is streamed", async () => {
    for (const query of [
      `format=xml&${range}`,
      `from=${T0}&to=${T0}`,
      `from=${T0}&to=${T0 + 32 * 86_400_000}`,
      `from=yesterday&to=${T0}`,
      `metrics=Temp&${range}`,
      `extra=1&${range}`,
    ]) {
      const response = await get(`/api/devices/dev-1/telemetry/export?${query}`);
      assert.equal(response.statusCode, 400, query);
      assert.match(String(response.headers["content-type"]), /^application\/problem\+json/, query);
    }
    for (const devices of ["dev-1,bad id", "", Array.from({ length: 101 }, (_, i) => `d${i}`).join(",")]) {
      const response = await get(`/api/telemetry/export?devices=${encodeURIComponent(devices)}&${range}`);
      assert.equal(response.statusCode, 400, devices);
    }
  });

  test("another organization's device answers 404, also inside a list", async () => {
    for (const url of [
      `/api/devices/gx-1/telemetry/export?${range}`,
      `/api/devices/dev-404/telemetry/export?${range}`,
      `/api/telemetry/export?devices=dev-1,gx-1&${range}`,
    ]) {
      const response = await get(url);
      assert.equal(response.statusCode, 404, url);
      assert.equal(response.json().code, "device_not_found");
    }
    const globexSession = await login(cloud.app, globex.admin.email);
    const all = await get(`/api/telemetry/export?devices=all&format=json&${range}`, globexSession);
    assert.deepEqual(
      all.json().map((record: ExportedRecord) => record.deviceId),
      quiet.map(() => "gx-1"),
    );
  });

  test("encoded in worker threads: more exports than workers all complete, a reader leaving mid-way frees its worker, a stopped worker is replaced", async () => {
    const workers = exportWorkers(cloud.db);
    const url = `/api/devices/dev-busy/telemetry/export?${range}`;
    const expected = records("dev-busy", busy.slice(0, 3600), 7);
    const answers = await Promise.all(Array.from({ length: MAX_EXPORT_WORKERS + 2 }, () => get(url)));
    for (const answer of answers) assert.deepEqual(fromCsv(answer.body), expected);
    assert.equal(workers.stats().workers, MAX_EXPORT_WORKERS, "never more workers than the bound");

    // A day at 1 Hz, four metrics: ~20 MB of CSV, more than a loopback connection buffers, so an export of it
    // cannot have been encoded whole by the time its reader leaves or its worker is stopped.
    const day = Array.from({ length: 86_400 }, (_, i) => ({
      boot: 1,
      seq: i,
      ts: T0 + i * 1000,
      m: { temperature: 20 + i / 1e4, pressure: 100_000 + i, humidity: 40, battery: 3.7 },
    }));
    await new TelemetryStore(cloud.db).importSamples(acme.tenantId, "dev-long", day);
    const longUrl = `/api/devices/dev-long/telemetry/export?from=${T0}&to=${T0 + 86_400_000}`;

    // A real client that reads one chunk and leaves, as a browser tab closed mid-download does.
    const address = await cloud.app.listen({ port: 0, host: "127.0.0.1" });
    const leave = new AbortController();
    const response = await fetch(`${address}${longUrl}`, { headers: bearer(session), signal: leave.signal });
    const reader = (response.body as ReadableStream<Uint8Array>).getReader();
    assert.ok((await reader.read()).value, "a first chunk");
    assert.equal(workers.stats().busy, 1, "the long export is still being encoded");
    leave.abort();
    for (let waited = 0; workers.stats().busy > 0; waited += 50) {
      assert.ok(waited < 10_000, "the worker is freed once its reader has left");
      await new Promise((resolve) => setTimeout(resolve, 50));
    }

    // Workers stopped in the middle of an export: it fails, the next one gets a new worker.
    const cut = fetch(`${address}${longUrl}`, { headers: bearer(session) }).then(async (answer) => {
      const body = (answer.body as ReadableStream<Uint8Array>).getReader();
      await body.read();
      await workers.close();
      for (;;) if ((await body.read()).done) return;
    });
    await assert.rejects(cut, "the cut export does not end as if it were whole");
    assert.deepEqual(fromCsv((await get(url)).body), expected);
  });

  test("csvField quotes only what RFC 4180 requires, and the parser reads it back", () => {
    const fields = ["plain", "a,b", 'say "hi"', "two\r\nlines", "lf\nonly", ""];
    assert.deepEqual(fields.map(csvField), ["plain", '"a,b"', '"say ""hi"""', '"two\r\nlines"', '"lf\nonly"', ""]);
    assert.deepEqual(parseCsv(`${fields.map(csvField).join(",")}\r\n`), [fields]);
  });
});
